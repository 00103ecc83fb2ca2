// Upstream bodies far past the proxy's caps (an SSE event over 1 MiB, a whole answer over
// 16 MiB, a 4xx body over 64 KiB): the proxy stops reading at the cap, answers the client, and
// closes the upstream connection instead of buffering until the isolate runs out of memory.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { LONG_BODY_BYTES, startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, logLineOf, mintToken, reservedTokens, settledUsage, startProxy, within } from "./helpers.mjs";

let mock;
let proxy;
before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, UPSTREAM_RETRIES: "0" });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

// One user per test: an answer charged in full must not exhaust the next test's budget.
const post = (body, sub) =>
  fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });

/** Waits until upstream's side of `record` closed; says whether it finished writing. */
async function upstreamClosed(record) {
  await within(10_000, (async () => {
    while (record.closedAt === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
  })(), "the upstream connection to close");
  return record.completed;
}

test("a stream event over 1 MiB ends the stream with an error event and closes upstream", async () => {
  mock.faultNext({ kind: "long-event" });
  const response = await post(chatBody({ stream: true }), "long-event-user");
  assert.equal(response.status, 200);
  const text = await within(20_000, response.text(), "the stream to end");
  assert.ok(text.length < 2 << 20, `the client got ${text.length} bytes, not the whole event`);
  const payloads = text.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
  assert.ok(!payloads.includes("[DONE]"), "a stream cut short must not claim to be done");
  assert.equal(JSON.parse(payloads.at(-1)).error.code, "upstream_error");
  assert.equal(await upstreamClosed(mock.requests.at(-1)), false, "upstream was stopped before it finished");
  const spent = await settledUsage(proxy, mintToken({ sub: "long-event-user" }));
  assert.equal(spent.tokens.used, reservedTokens(mock.requests.at(-1)), "no usage came: the whole reservation");
});

test("a whole answer over 16 MiB is a 502, and upstream is not read to its end", async () => {
  mock.faultNext({ kind: "huge-answer" });
  const response = await post(chatBody(), "huge-answer-user");
  assert.equal(response.status, 502);
  assert.equal((await response.json()).error.code, "upstream_error");
  assert.equal(await upstreamClosed(mock.requests.at(-1)), false, `upstream wrote less than ${LONG_BODY_BYTES} bytes`);
  // The log line travels through workerd's stdout: it may arrive after the response.
  const line = await logLineOf(proxy, response.headers.get("x-request-id"));
  assert.equal(line.status, 502);
  assert.match(line.detail, /larger than 16777216 bytes/);
  // An answer that could not be read: the whole reservation.
  const spent = await settledUsage(proxy, mintToken({ sub: "huge-answer-user" }));
  assert.equal(spent.tokens.used, reservedTokens(mock.requests.at(-1)));
  assert.equal(line.total_tokens, spent.tokens.used);
});

test("an upstream 4xx with an endless body is answered without reading past 64 KiB", async () => {
  mock.faultNext({ kind: "endless-error" });
  const response = await post(chatBody(), "endless-error-user");
  assert.equal(response.status, 400);
  assert.equal((await response.json()).error.code, "upstream_rejected");
  assert.equal(await upstreamClosed(mock.requests.at(-1)), false, "upstream was stopped before it finished");
});
