// Issue 12, "Nothing billable escapes the budget", in workerd: every string the model reads is
// bounded, a request that ends without a usage report is charged its whole reservation, and what the
// proxy cannot price (background and stored responses, hosted tools, priced tiers, predictions,
// images, files, audio) is refused before it costs anything.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, logLineOf, mintToken, nanoUsd, proxyFor, reservedTokens, settledUsage, usageOf, usd, within } from "./helpers.mjs";

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const post = (proxy, sub, path, body, init = {}) =>
  fetch(`${proxy.url}${path}`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body: JSON.stringify(body), ...init });
const chat = (proxy, sub, body, init) => post(proxy, sub, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], ...body }, init);
const respond = (proxy, sub, body) => post(proxy, sub, "/v1/responses", { model: "gpt-4o-mini", input: "Hello", ...body });

/** Asserts a 400 naming `param`, and returns the error. */
async function expectRefused(response, param) {
  assert.equal(response.status, 400, `expected a 400 naming ${param}`);
  const { error } = await response.json();
  assert.equal(error.code, "invalid_request");
  assert.equal(error.param, param);
  return error;
}

/** Asserts that `sub` spent nothing: no request counted, no token used or reserved. */
async function assertNothingSpent(proxy, sub) {
  const usage = await usageOf(proxy, mintToken({ sub }));
  assert.equal(usage.requests.remaining, usage.requests.limit, "no request was counted");
  assert.equal(usage.tokens.used + usage.tokens.reserved, 0, "no token was spent");
}

describe("every string the model reads counts toward MAX_PROMPT_CHARS", () => {
  const setup = proxyFor(() => mock, {});
  const long = "x".repeat(50_000);

  test("50,000 characters in tool-call arguments, a tool description, a schema or a name are refused, naming the field", async () => {
    const before = mock.requests.length;
    const cases = {
      "messages[1].tool_calls[0].function.arguments": {
        messages: [
          { role: "user", content: "Hi" },
          { role: "assistant", tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: long } }] },
          { role: "tool", tool_call_id: "call_1", content: "ok" },
        ],
      },
      "tools[0].function.description": { tools: [{ type: "function", function: { name: "f", description: long, parameters: { type: "object" } } }] },
      response_format: { response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object", description: long } } } },
      "messages[0].name": { messages: [{ role: "user", content: "Hi", name: long }] },
    };
    for (const [param, body] of Object.entries(cases)) {
      const error = await expectRefused(await chat(setup.proxy, "wordy", body), param);
      assert.match(error.message, /more than 8000 characters/);
    }
    assert.equal(mock.requests.length, before, "nothing went upstream");
    await assertNothingSpent(setup.proxy, "wordy");
  });
});

describe("a request that ends without a usage report", () => {
  let slowMock;
  before(async () => {
    // Steady streams (about 2 s): the proxy notices a vanished client at its next write.
    slowMock = await startMockUpstream({ chunkDelayMs: 100 });
  });
  after(() => slowMock?.close());
  const setup = proxyFor(() => slowMock, { MAX_PROMPT_CHARS: "100000", UPSTREAM_TIMEOUT_MS: "500", DAILY_TOKEN_BUDGET: "1000000" });

  test("a stream with a 60 KB tool schema that the client aborts after the first event is charged its whole reservation", async () => {
    const schema = { type: "object", properties: { query: { type: "string", description: "q".repeat(60_000) } } };
    const controller = new AbortController();
    const response = await chat(
      setup.proxy,
      "aborter",
      { stream: true, tools: [{ type: "function", function: { name: "search", description: "Searches", parameters: schema } }] },
      { signal: controller.signal },
    );
    assert.equal(response.status, 200);
    const reader = response.body.getReader();
    await within(5000, reader.read(), "the first event");
    controller.abort();
    const upstream = slowMock.requests.at(-1);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "aborter" }));
    const bodyBytes = Buffer.byteLength(upstream.body);
    assert.ok(bodyBytes > 60_000);
    assert.equal(upstream.json.max_completion_tokens, 1024, "the proxy states the output cap it reserved");
    // Not bytes / 4: without a usage report nothing bounds what OpenAI bills but the reservation.
    assert.equal(spent.tokens.used, bodyBytes + 1024, `charged ${spent.tokens.used} tokens for a ${bodyBytes}-byte body`);
    assert.equal(spent.tokens.used, reservedTokens(upstream));
    const line = await logLineOf(setup.proxy, response.headers.get("x-request-id"));
    assert.equal(line.disconnected, true);
    assert.equal(line.usage_reported, false, "upstream reported no usage");
    assert.equal(line.total_tokens, spent.tokens.used, "the log line says what was charged");
  });

  test("an upstream timeout after the request was sent is charged its whole reservation, not zero", async () => {
    slowMock.faultNext({ headerDelayMs: 3000 });
    const response = await chat(setup.proxy, "timed-out", { messages: [{ role: "user", content: "y".repeat(4000) }] });
    assert.equal(response.status, 504);
    assert.equal((await response.json()).error.code, "upstream_timeout");
    const upstream = slowMock.requests.at(-1);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "timed-out" }));
    // OpenAI may well have processed and billed it, output included.
    assert.equal(spent.tokens.used, Buffer.byteLength(upstream.body) + 1024);
    assert.equal(spent.tokens.used, reservedTokens(upstream));
    const line = await logLineOf(setup.proxy, response.headers.get("x-request-id"));
    assert.equal(line.status, 504);
    assert.equal(line.total_tokens, spent.tokens.used);
  });
});

describe("Responses fields and hosted tools the proxy cannot price", () => {
  const setup = proxyFor(() => mock, { DAILY_TOKEN_BUDGET: "3000", MAX_OUTPUT_TOKENS: "200" });

  test("background, stored context and hosted tools are refused, naming the field", async () => {
    const before = mock.requests.length;
    const cases = {
      background: { background: true },
      previous_response_id: { previous_response_id: "resp_of_someone_else" },
      conversation: { conversation: "conv_123" },
      prompt: { prompt: { id: "pmpt_123" } },
      "tools[0].type": { tools: [{ type: "web_search" }] },
      "tools[1].type": { tools: [{ type: "function", name: "f", parameters: { type: "object" } }, { type: "mcp", server_label: "x", server_url: "https://attacker.example/mcp" }] },
    };
    for (const [param, body] of Object.entries(cases)) {
      await expectRefused(await respond(setup.proxy, "responder", body), param);
    }
    assert.equal(mock.requests.length, before, "nothing went upstream");
    await assertNothingSpent(setup.proxy, "responder");
  });

  test("20 concurrent requests with hosted tools or previous_response_id under a small budget are all refused and cost nothing", async () => {
    const before = mock.requests.length;
    const bodies = Array.from({ length: 20 }, (_, i) =>
      i % 2 ? { tools: [{ type: ["web_search", "file_search", "code_interpreter", "image_generation", "computer_use_preview"][i % 5] }] } : { previous_response_id: `resp_${i}` },
    );
    const responses = await within(10_000, Promise.all(bodies.map((body) => respond(setup.proxy, "swarm", { max_output_tokens: 200, ...body }))), "20 requests");
    const statuses = await Promise.all(responses.map(async (r) => (await r.arrayBuffer(), r.status)));
    assert.deepEqual(statuses, Array(20).fill(400));
    assert.equal(mock.requests.length, before, "nothing went upstream");
    await assertNothingSpent(setup.proxy, "swarm");
  });

  test("upstream receives store: false and a safety_identifier that is not the sub, in place of the client's user", async () => {
    const answered = await respond(setup.proxy, "alice", { store: true, user: "bob", safety_identifier: "bob" });
    assert.equal(answered.status, 200);
    await answered.arrayBuffer();
    const sent = mock.requests.at(-1).json;
    assert.equal(sent.store, false);
    assert.equal(typeof sent.safety_identifier, "string");
    assert.ok(sent.safety_identifier.length > 0 && sent.safety_identifier.length <= 64);
    assert.ok(!sent.safety_identifier.includes("alice") && sent.safety_identifier !== "bob");
    assert.equal(sent.user, undefined, "the client's user is not forwarded");

    const chatted = await chat(setup.proxy, "alice", { user: "bob" });
    await chatted.arrayBuffer();
    assert.equal(mock.requests.at(-1).json.safety_identifier, sent.safety_identifier, "stable for a user, across endpoints");
    assert.equal(mock.requests.at(-1).json.user, undefined);
    const other = await chat(setup.proxy, "carol", {});
    await other.arrayBuffer();
    assert.notEqual(mock.requests.at(-1).json.safety_identifier, sent.safety_identifier, "another user, another id");
  });

  test("a priced service tier or a prediction is refused", async () => {
    await expectRefused(await chat(setup.proxy, "tiered", { service_tier: "priority" }), "service_tier");
    await expectRefused(await respond(setup.proxy, "tiered", { service_tier: "flex" }), "service_tier");
    await expectRefused(await chat(setup.proxy, "tiered", { prediction: { type: "content", content: "x".repeat(2000) } }), "prediction");
    await assertNothingSpent(setup.proxy, "tiered");
  });
});

describe("an allowed hosted tool", () => {
  const setup = proxyFor(() => mock, { ALLOWED_HOSTED_TOOLS: "web_search:5000", MAX_HOSTED_TOOL_CALLS: "2", DAILY_BUDGET_USD: "5" });

  test("is bounded by max_tool_calls and charged its usage plus, in dollars, the fee of each call it made", async () => {
    for (const stream of [false, true]) {
      const sub = `searcher-${stream}`;
      const response = await respond(setup.proxy, sub, { tools: [{ type: "web_search" }], stream });
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.equal(mock.requests.at(-1).json.max_tool_calls, 2, "the proxy bounds the calls it reserved");
      const answer = stream
        ? JSON.parse(text.split("\n").find((line) => line.startsWith("data: ") && line.includes('"response.completed"')).slice(6)).response
        : JSON.parse(text);
      assert.equal(answer.output.filter((item) => item.type === "web_search_call").length, 1);
      const spent = await settledUsage(setup.proxy, mintToken({ sub }));
      assert.equal(spent.tokens.used, answer.usage.total_tokens, `stream: ${stream}: the usage (search content included), once`);
      // OpenAI's web search fee, $10 per 1,000 calls, on any model.
      assert.equal(spent.cost.used_usd, usd(nanoUsd("gpt-4o-mini", answer.usage) + 10_000_000n), `stream: ${stream}: one search's fee`);
    }
  });
});

describe("images, files and audio", () => {
  const refusing = proxyFor(() => mock, {});
  const allowing = proxyFor(() => mock, { MAX_IMAGE_INPUTS: "1", IMAGE_INPUT_RESERVE_TOKENS: "5000", DAILY_TOKEN_BUDGET: "4000", MAX_OUTPUT_TOKENS: "200" });
  const image = { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "high" } };

  test("are refused by default, naming the part, and cost nothing", async () => {
    const before = mock.requests.length;
    const parts = [
      image,
      { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
      { type: "file", file: { filename: "a.pdf", file_data: "data:application/pdf;base64,JVBERi0=" } },
    ];
    for (const part of parts) {
      const body = { messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, part] }] };
      await expectRefused(await chat(refusing.proxy, "looker", body), "messages[0].content[1]");
    }
    const input = [{ role: "user", content: [{ type: "input_text", text: "And this?" }, { type: "input_image", image_url: "https://example.com/dog.png" }] }];
    await expectRefused(await respond(refusing.proxy, "looker", { input }), "input[0].content[1]");
    assert.equal(mock.requests.length, before);
    await assertNothingSpent(refusing.proxy, "looker");
  });

  test("an allowed image reserves IMAGE_INPUT_RESERVE_TOKENS, whatever its bytes", async () => {
    const text = await chat(allowing.proxy, "viewer", { messages: [{ role: "user", content: "What is a cat?" }] });
    assert.equal(text.status, 200, "a text request fits the budget");
    await text.arrayBuffer();
    const withImage = await chat(allowing.proxy, "viewer", { messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, image] }] });
    assert.equal(withImage.status, 429, "an image's worst case does not fit what is left of the budget");
    assert.equal((await withImage.json()).error.code, "insufficient_quota");
  });
});
