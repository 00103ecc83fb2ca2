// Memory under concurrent whole answers (issue 22): an isolate has 128 MB for every request it
// serves. Embeddings answers pass through as they arrive, however large, their usage read from
// their tail; other whole answers are held only within the isolate's budget, past which a
// request gets a 503 with Retry-After instead of resetting the isolate under everyone.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { bodyText, browserHeaders, chatBody, logLineOf, mintToken, settledUsage, startProxy } from "./helpers.mjs";

let mock;
let proxy;
before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ALLOWED_MODELS: "gpt-4o-mini,text-embedding-3-small" });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

const post = (path, sub, body) => fetch(`${proxy.url}${path}`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });

test("an Embeddings answer larger than the whole-answer cap reaches the client whole, charged its usage", async () => {
  const input = ["big one", "big two", "big three", "big four"];
  mock.faultNext({ kind: "big-answer", bytes: 24 << 20, match: (json) => json?.input?.[0] === "big one" });
  const response = await post("/v1/embeddings", "big-embedder", JSON.stringify({ model: "text-embedding-3-small", input }));
  assert.equal(response.status, 200, "not held whole, so not past the 16 MiB cap");
  const text = await bodyText(response, 60_000);
  assert.ok(text.length > 20 << 20, `${text.length} bytes`);
  const answer = JSON.parse(text);
  assert.equal(answer.data.length, 4);
  const spent = await settledUsage(proxy, mintToken({ sub: "big-embedder" }));
  assert.equal(spent.tokens.used, answer.usage.total_tokens, "charged the usage read from the answer's tail");
});

test("whole answers past the isolate's memory budget get a 503 with Retry-After, and the budget is given back", async () => {
  // 12 MiB each, written slowly so they overlap: more than the isolate's budget holds at once.
  const contents = ["whole 1", "whole 2", "whole 3", "whole 4"];
  for (const content of contents) {
    mock.faultNext({ kind: "big-answer", bytes: 12 << 20, match: (json) => json?.messages?.at(-1)?.content === content });
  }
  const responses = await Promise.all(contents.map((content) => post("/v1/chat/completions", "whole-reader", chatBody({ messages: [{ role: "user", content }] }))));
  const outcomes = await Promise.all(responses.map(async (response) => ({ response, text: await bodyText(response, 60_000) })));
  const served = outcomes.filter(({ response }) => response.status === 200);
  const refused = outcomes.filter(({ response }) => response.status === 503);
  assert.equal(served.length + refused.length, 4, `statuses ${outcomes.map(({ response }) => response.status)}`);
  assert.ok(served.length >= 1, "at least one is served");
  assert.ok(refused.length >= 1, "not all four held at once");
  for (const { text } of served) assert.ok(JSON.parse(text).choices[0].message.content.length > 12 << 20);
  for (const { response, text } of refused) {
    assert.equal(JSON.parse(text).error.code, "temporarily_unavailable");
    assert.equal(response.headers.get("retry-after"), "1");
    assert.match(response.headers.get("access-control-expose-headers") ?? "", /retry-after/i);
    const line = await logLineOf(proxy, response.headers.get("x-request-id"));
    assert.match(line.detail, /memory budget/);
  }
  // Every answer is done: its memory is given back, and the next one is served.
  const next = await post("/v1/chat/completions", "whole-reader", chatBody());
  assert.equal(next.status, 200);
  await next.arrayBuffer();
});
