// OpenAI's unhappy paths, as its wire format has them, and what the proxy charges for each:
// Responses streams that end with `response.incomplete` or `response.failed` (with or without
// usage) or with an `error` event; answers that use the whole output cap; SSE events cut into
// pieces or several to a chunk; answers listing several hosted tool calls. Event shapes follow
// OpenAI's API reference (ResponseIncompleteEvent, ResponseFailedEvent, ResponseErrorEvent).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { outputCap, startMockUpstream, usage } from "../mock-upstream.mjs";
import { bodyText, browserHeaders, chatBody, logLineOf, mintToken, proxyFor, reservedTokens, settledUsage } from "./helpers.mjs";

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const WEB_SEARCH = 5000;
const FILE_SEARCH = 3000;
const BINDINGS = {
  ALLOWED_HOSTED_TOOLS: `web_search:${WEB_SEARCH},file_search:${FILE_SEARCH}`,
  MAX_HOSTED_TOOL_CALLS: "3",
  MAX_N: "2",
  DAILY_TOKEN_BUDGET: "10000000",
};
/** The proxy of the enclosing describe block (each block starts its own). */
let setup;

let sequence = 0;
/**
 * Sends `body` to `path` as a fresh user, with the mock told to answer it with `fault`.
 * Returns the answer's text, the mock's record of what the proxy forwarded, the request's log
 * line, and the user's settled usage.
 */
async function exchange(path, body, fault = {}) {
  const sub = `unhappy-${++sequence}`;
  const marker = `unhappy request ${sequence}`;
  const tagged = path === "/v1/responses" ? { input: marker, ...body } : { messages: [{ role: "user", content: marker }], ...body };
  const matches = (json) => json?.input === marker || json?.messages?.[0]?.content === marker;
  mock.faultNext({ ...fault, match: matches });
  const response = await fetch(`${setup.proxy.url}${path}`, {
    method: "POST",
    headers: browserHeaders(mintToken({ sub })),
    body: JSON.stringify({ model: "gpt-4o-mini", ...tagged }),
  });
  const text = await bodyText(response);
  const upstream = mock.requests.findLast((r) => matches(r.json));
  const line = await logLineOf(setup.proxy, response.headers.get("x-request-id"));
  const spent = await settledUsage(setup.proxy, mintToken({ sub }));
  return { status: response.status, text, upstream, line, spent };
}

/** The SSE events of a text: `{ event, data }`, data parsed unless it is [DONE]; asserts each is whole. */
function sseEvents(text) {
  assert.ok(text.endsWith("\n\n"), "the stream ends on an event boundary");
  return text
    .split("\n\n")
    .filter((block) => block.length > 0)
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
      const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      return { event, data: data === "[DONE]" ? data : JSON.parse(data) };
    });
}

/** What a Responses answer's usage is charged in tokens: its total (hosted call fees are dollars). */
const responsesUsage = (answer) => answer.usage.total_tokens;

describe("Responses streams that do not complete", () => {
  const own = proxyFor(() => mock, BINDINGS);
  before(() => (setup = own));
  test("response.incomplete at max_output_tokens is a clean end, charged the usage it reports: the input and the whole output cap", async () => {
    const { status, text, upstream, line, spent } = await exchange("/v1/responses", { stream: true, max_output_tokens: 300 }, { kind: "incomplete" });
    assert.equal(status, 200);
    const events = sseEvents(text);
    const last = events.at(-1);
    assert.equal(last.event, "response.incomplete");
    assert.equal(last.data.response.incomplete_details.reason, "max_output_tokens");
    assert.ok(!events.some((e) => e.data?.error), "no error event: the response ended as OpenAI ended it");
    assert.equal(last.data.response.usage.output_tokens, 300);
    assert.equal(spent.tokens.used, last.data.response.usage.total_tokens);
    assert.ok(spent.tokens.used < reservedTokens(upstream), "the usage, not the reservation");
    assert.deepEqual([line.usage_reported, line.total_tokens, line.completion_tokens], [true, spent.tokens.used, 300]);
  });

  test("response.failed with usage is charged that usage", async () => {
    const { status, text, line, spent } = await exchange("/v1/responses", { stream: true }, { kind: "failed" });
    assert.equal(status, 200);
    const last = sseEvents(text).at(-1);
    assert.equal(last.event, "response.failed");
    assert.equal(last.data.response.status, "failed");
    assert.equal(last.data.response.error.code, "server_error");
    assert.equal(spent.tokens.used, last.data.response.usage.total_tokens);
    assert.deepEqual([line.usage_reported, line.total_tokens], [true, spent.tokens.used]);
  });

  test("response.failed with usage: null is charged the whole reservation", async () => {
    const { status, text, upstream, line, spent } = await exchange("/v1/responses", { stream: true }, { kind: "failed", usage: "none" });
    assert.equal(status, 200);
    const last = sseEvents(text).at(-1);
    assert.equal(last.event, "response.failed");
    assert.equal(last.data.response.usage, null);
    assert.equal(upstream.json.max_output_tokens, 1024, "the proxy set the output cap it reserved");
    assert.equal(spent.tokens.used, Buffer.byteLength(upstream.body) + 1024);
    assert.deepEqual([line.usage_reported, line.total_tokens], [false, spent.tokens.used]);
  });

  test("an error event, then the end of the connection: the client gets OpenAI's event, a final error and no more; charged the whole reservation", async () => {
    const { status, text, upstream, line, spent } = await exchange("/v1/responses", { stream: true }, { kind: "error-event" });
    assert.equal(status, 200);
    const events = sseEvents(text);
    const openaiError = events.find((e) => e.data?.type === "error");
    assert.ok(openaiError, "OpenAI's error event is passed on");
    assert.equal(openaiError.data.code, "server_error");
    assert.ok(!events.some((e) => e.event === "response.completed"));
    assert.equal(events.at(-1).data.error.code, "upstream_error", "the proxy says the stream broke off");
    assert.equal(spent.tokens.used, reservedTokens(upstream), "no usage came: the whole reservation");
    assert.deepEqual([line.usage_reported, line.total_tokens, line.level], [false, spent.tokens.used, "error"]);
  });

  test("a whole Responses answer with status incomplete is charged its usage", async () => {
    const { status, text, line, spent } = await exchange("/v1/responses", { max_output_tokens: 200 }, { kind: "incomplete" });
    assert.equal(status, 200);
    const answer = JSON.parse(text);
    assert.equal(answer.status, "incomplete");
    assert.equal(answer.usage.output_tokens, 200);
    assert.equal(spent.tokens.used, answer.usage.total_tokens);
    assert.equal(line.total_tokens, spent.tokens.used);
  });
});

describe("an answer that uses its whole output cap", () => {
  const own = proxyFor(() => mock, BINDINGS);
  before(() => (setup = own));
  test("n = 2 choices at max_completion_tokens: charged the prompt and both caps, as reported", async () => {
    const { status, text, upstream, line, spent } = await exchange("/v1/chat/completions", { n: 2, max_completion_tokens: 50 }, { usage: "cap" });
    assert.equal(status, 200);
    const answer = JSON.parse(text);
    assert.equal(answer.usage.completion_tokens, 100);
    assert.equal(spent.tokens.used, usage(upstream.json, { usage: "cap" }).total_tokens);
    assert.equal(spent.tokens.used, answer.usage.total_tokens);
    // The reservation covered it: the body's bytes bound the prompt, the caps the completion.
    assert.equal(reservedTokens(upstream), Buffer.byteLength(upstream.body) + 2 * 50);
    assert.ok(spent.tokens.used <= reservedTokens(upstream));
    assert.deepEqual([line.completion_tokens, line.total_tokens], [100, spent.tokens.used]);
  });

  test("a stream whose usage chunk reports the whole cap is charged it", async () => {
    const { text, upstream, spent } = await exchange("/v1/chat/completions", { stream: true, max_tokens: 80 }, { usage: "cap" });
    assert.equal(sseEvents(text).at(-1).data, "[DONE]");
    assert.equal(outputCap(upstream.json), 80);
    assert.equal(spent.tokens.used, usage(upstream.json, { usage: "cap" }).total_tokens);
  });
});

describe("SSE events however upstream's chunks cut them", () => {
  const own = proxyFor(() => mock, BINDINGS);
  before(() => (setup = own));
  for (const [chunking, what] of [
    ["split", "each event in 7-byte pieces, lines and events straddling reads"],
    ["batched", "three events in one chunk"],
  ]) {
    test(`chat, ${what}: the client gets whole events, the usage chunk it asked for, and is charged the usage`, async () => {
      const { text, upstream, spent } = await exchange("/v1/chat/completions", { stream: true, stream_options: { include_usage: true } }, { chunking });
      const events = sseEvents(text);
      assert.equal(events.at(-1).data, "[DONE]");
      const said = events.flatMap((e) => e.data.choices?.map((c) => c.delta?.content ?? "") ?? []).join("");
      assert.equal(said, `This is the bundled mock upstream, not OpenAI. You said: ${upstream.json.messages[0].content}`);
      const reported = events.find((e) => e.data.usage)?.data.usage;
      assert.deepEqual(reported, usage(upstream.json));
      assert.equal(spent.tokens.used, reported.total_tokens);
    });

    test(`Responses, ${what}: the client gets every event whole and is charged the completed usage`, async () => {
      const { text, spent } = await exchange("/v1/responses", { stream: true }, { chunking });
      const events = sseEvents(text);
      assert.deepEqual(events.map((e) => e.data.sequence_number), events.map((_, i) => i), "every event, in order");
      const completed = events.at(-1);
      assert.equal(completed.event, "response.completed");
      assert.equal(spent.tokens.used, completed.data.response.usage.total_tokens);
    });
  }
});

describe("an answer listing several hosted tool calls", () => {
  const own = proxyFor(() => mock, BINDINGS);
  before(() => (setup = own));
  const tools = [{ type: "web_search" }, { type: "file_search" }];

  for (const stream of [false, true]) {
    test(`${stream ? "streamed" : "whole"}: charged the usage, search content once, whatever the calls listed`, async () => {
      const { text, upstream, spent, line } = await exchange("/v1/responses", { tools, stream }, { hostedCalls: 3 });
      assert.equal(upstream.json.max_tool_calls, 3, "the proxy set the calls it reserved");
      const answer = stream ? sseEvents(text).at(-1).data.response : JSON.parse(text);
      assert.deepEqual(answer.output.filter((item) => item.type.endsWith("_call")).map((item) => item.type), ["web_search_call", "file_search_call", "web_search_call"]);
      assert.equal(spent.tokens.used, responsesUsage(answer));
      assert.equal(line.total_tokens, spent.tokens.used);
    });
  }



  test("without a usage report: charged the whole reservation, every pass of the input and every call", async () => {
    const { upstream, spent } = await exchange("/v1/responses", { tools }, { hostedCalls: 3, usage: "none" });
    const calls = 3;
    // docs/limits-and-costs.md, "What a request costs": (body bytes + c × the largest per-call
    // reserve) × (1 + c) + max_output_tokens.
    const expected = (Buffer.byteLength(upstream.body) + calls * WEB_SEARCH) * (1 + calls) + 1024;
    assert.equal(spent.tokens.used, expected);
  });
});
