// Redirects are never followed: a 3xx from upstream (or a gateway before it) must not carry the
// user's prompt to whatever its Location names, and a redirected alert is a failed delivery.
// Alerts reach Slack-compatible webhooks with the user's `sub` escaped.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, eventually, mintToken, startProxy, within } from "./helpers.mjs";

/** A loopback server that records what it receives and answers with `answer(req, body)`. */
async function recordingServer(answer) {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      received.push({ method: req.method, path: req.url, headers: req.headers, body });
      const { status, headers = {}, body: reply = "" } = answer(req, body);
      res.writeHead(status, headers);
      res.end(reply);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    received,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const completion = JSON.stringify({
  id: "chatcmpl-elsewhere",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content: "answered by the redirect target" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});

describe("an upstream redirect", () => {
  let mock;
  let elsewhere;
  let proxy;
  before(async () => {
    mock = await startMockUpstream();
    elsewhere = await recordingServer(() => ({ status: 200, headers: { "content-type": "application/json" }, body: completion }));
    proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey });
  });
  after(async () => {
    await proxy?.dispose();
    await elsewhere?.close();
    await mock?.close();
  });

  for (const status of [307, 308, 302]) {
    test(`a ${status} from upstream is a 502, and the prompt never reaches the Location`, async () => {
      const target = `${elsewhere.url}/v1/chat/completions`;
      mock.failNext(status, { headers: { location: target }, body: {} });
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: browserHeaders(mintToken({ sub: "redirected-user" })),
        body: chatBody({ messages: [{ role: "user", content: "a secret prompt" }] }),
      });
      assert.equal(response.status, 502);
      assert.equal((await response.json()).error.code, "upstream_error");
      assert.equal(elsewhere.received.length, 0, "nothing was sent to the redirect target");
      // The log line travels through workerd's stdout: it may arrive after the response.
      const line = await eventually(5000, () => proxy.logs.findLast((l) => l.route === "chat.completions" && l.status === 502 && l.detail?.includes(target)), "the log line naming the Location");
      assert.match(line.detail, /redirects are not followed/);
    });
  }
});

describe("an alert to a webhook", () => {
  const sub = "<!channel> & <https://evil.example/login|open me>";
  let webhook;
  let elsewhere;
  let proxy;
  let mock;
  before(async () => {
    mock = await startMockUpstream();
    elsewhere = await recordingServer(() => ({ status: 200 }));
    webhook = await recordingServer(() => ({ status: 307, headers: { location: `${elsewhere.url}/collect` } }));
    proxy = await startProxy({
      UPSTREAM_BASE_URL: mock.url,
      OPENAI_API_KEY: mock.apiKey,
      ALERT_REQUESTS_PER_HOUR: "1",
      ALERT_WEBHOOK_URL: `${webhook.url}/hook`,
    });
    // The second request of the hour crosses the threshold.
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body: chatBody() });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    await eventually(5000, () => webhook.received[0], "the alert to reach the webhook");
  });
  after(async () => {
    await proxy?.dispose();
    await webhook?.close();
    await elsewhere?.close();
    await mock?.close();
  });

  test("carries the user's sub escaped, so Slack renders no mention and no link from it", () => {
    const { text } = JSON.parse(webhook.received[0].body);
    assert.match(text, /user &lt;!channel&gt; &amp; &lt;https:\/\/evil\.example\/login\|open me&gt; made 2 requests/);
    assert.ok(!/[<>]/.test(text), `no Slack markup survives: ${text}`);
  });

  test("fails its delivery on a redirect instead of following it", async () => {
    await eventually(5000, () => proxy.logs.find((l) => l.event === "alert_webhook_failed"), "the failed delivery in the log");
    assert.equal(elsewhere.received.length, 0, "the redirect was not followed");
  });
});
