// An upstream that misbehaves, and the rest of the OpenAI surface (Responses, Embeddings)
// through the official SDK. Every fault ends in a well-formed answer for the client.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, logLineOf, mintToken, reservedTokens, settledUsage, startProxy, within } from "./helpers.mjs";

let mock;
let proxy;
// The product's promises, with headroom for a loaded 2-core machine: a 504 comes once
// UPSTREAM_TIMEOUT_MS has passed without headers (never before it, and not many seconds
// after), and a stream silent for STREAM_IDLE_TIMEOUT_MS ends. The idle timeout applies to
// every stream of this file, SDK streams included, so it is far above a busy machine's pauses.
const TIMEOUT_MS = 1500;
const IDLE_MS = 3000;

before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS),
    STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS),
    ALLOWED_MODELS: "gpt-4o-mini,text-embedding-3-small",
  });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

const post = (body, path = "/v1/chat/completions", sub = "fault-user") =>
  fetch(`${proxy.url}${path}`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });

/** The data payloads of an SSE body. */
const events = (text) => text.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));

/** Asserts a stream that ended with one final error event, no [DONE], and whole events only. */
function assertEndsWithError(text, code) {
  assert.ok(text.endsWith("\n\n"), "the stream ends on an event boundary");
  const payloads = events(text);
  assert.ok(!payloads.includes("[DONE]"), "a broken stream must not claim to be done");
  const last = JSON.parse(payloads.at(-1));
  assert.equal(last.error.code, code);
  for (const payload of payloads) JSON.parse(payload); // no half events
}

describe("before the first byte", () => {
  test("no response headers within UPSTREAM_TIMEOUT_MS is a 504, and upstream is abandoned", async () => {
    mock.faultNext({ headerDelayMs: TIMEOUT_MS * 5 });
    const started = Date.now();
    const response = await post(chatBody());
    const took = Date.now() - started;
    assert.equal(response.status, 504);
    assert.equal((await response.json()).error.code, "upstream_timeout");
    // Never before the timeout; after it, within 5 s of headroom for a busy machine.
    assert.ok(took >= TIMEOUT_MS && took < TIMEOUT_MS + 5000, `answered after ${took} ms`);
    const upstream = mock.requests.at(-1);
    await within(TIMEOUT_MS * 3, (async () => {
      while (upstream.closedAt === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    })(), "the proxy to drop the upstream connection");
    assert.equal(upstream.completed, false, "before upstream answered");
  });

  test("a 500 then a 200: one retry, and the client sees the 200", async () => {
    const before = mock.requests.length;
    mock.failNext(500);
    const response = await post(chatBody());
    assert.equal(response.status, 200);
    assert.match((await response.json()).choices[0].message.content, /You said/);
    assert.equal(mock.requests.length - before, 2);
  });

  test("OpenAI's 400 reaches the client with its message, param and code, scrubbed", async () => {
    mock.failNext(400, {
      body: { error: { message: `This model's maximum context length is 128000 tokens. Key: ${mock.apiKey}`, type: "invalid_request_error", param: "messages", code: "context_length_exceeded" } },
    });
    const response = await post(chatBody());
    assert.equal(response.status, 400);
    const { error } = await response.json();
    assert.equal(error.code, "context_length_exceeded");
    assert.equal(error.param, "messages");
    assert.match(error.message, /maximum context length is 128000 tokens/);
    assert.ok(!error.message.includes(mock.apiKey.slice(3)), "the key was scrubbed");
  });
});

describe("mid-stream", () => {
  for (const [fault, code] of [["reset", "upstream_error"], ["cut", "upstream_error"], ["not-sse", "upstream_error"], ["stall", "upstream_timeout"]]) {
    test(`${fault}: the client gets a final error event and a clean end, and is charged its whole reservation`, async () => {
      const sub = `fault-${fault}`;
      const content = `Break this stream: ${fault}`;
      mock.faultNext({ kind: fault, match: (json) => json?.messages?.[0]?.content === content });
      const response = await post(chatBody({ stream: true, messages: [{ role: "user", content }] }), "/v1/chat/completions", sub);
      assert.equal(response.status, 200);
      const text = await within(IDLE_MS * 5, response.text(), `${fault} stream to end`);
      assertEndsWithError(text, code);
      const upstream = mock.requests.findLast((r) => r.json?.messages?.[0]?.content === content);
      // This request's own line, found by its x-request-id, not the last line with a failure.
      const line = await logLineOf(proxy, response.headers.get("x-request-id"));
      assert.equal(line.stream, true);
      assert.ok(line.failure.length > 0, "the log says what happened");
      assert.equal(line.level, "error");
      assert.equal(line.usage_reported, false);
      assert.equal(line.total_tokens, reservedTokens(upstream), "no usage came: the whole reservation");
      const spent = await settledUsage(proxy, mintToken({ sub }));
      assert.equal(spent.tokens.used, line.total_tokens);
    });
  }
});

describe("key rotation", () => {
  let rotating;
  before(async () => {
    rotating = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: "sk-old-revoked-key-0000000000", OPENAI_API_KEY_NEXT: mock.apiKey });
  });
  after(() => rotating?.dispose());

  test("a 401 with the primary key is retried with the next key", async () => {
    const response = await fetch(`${rotating.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken()), body: chatBody() });
    assert.equal(response.status, 200);
    assert.equal(mock.requests.at(-1).headers.authorization, `Bearer ${mock.apiKey}`);
    const warning = rotating.logs.find((l) => l.event === "key_rotation");
    assert.ok(warning, "the operator is told to finish the rotation");
    assert.ok(!JSON.stringify(rotating.logs).includes("sk-old-revoked") && !JSON.stringify(rotating.logs).includes(mock.apiKey));
  });
});

describe("the rest of the OpenAI surface through the SDK", () => {
  let client;
  before(() => {
    client = new OpenAI({ apiKey: mintToken({ sub: "sdk-user" }), baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 10_000 });
  });

  test("responses.create with stream: true", async () => {
    const stream = await client.responses.create({ model: "gpt-4o-mini", input: "Stream via Responses", stream: true });
    let text = "";
    let completed;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    assert.equal(text, "This is the bundled mock upstream, not OpenAI. You said: Stream via Responses");
    const upstream = mock.requests.at(-1);
    assert.equal(upstream.json.store, false, "the proxy forced store: false");
    assert.equal(upstream.json.max_output_tokens, 1024, "the proxy stated the output cap it reserved");
    assert.ok(completed.usage.total_tokens > 0);
  });

  test("responses.create without streaming, and its usage is charged", async () => {
    const before = (await settledUsage(proxy, mintToken({ sub: "sdk-user" }))).tokens.used;
    const response = await client.responses.create({ model: "gpt-4o-mini", input: "Whole response" });
    assert.equal(response.output_text, "This is the bundled mock upstream, not OpenAI. You said: Whole response");
    const upstream = mock.requests.at(-1);
    assert.equal(upstream.json.store, false, "the proxy forced store: false");
    const spent = await settledUsage(proxy, mintToken({ sub: "sdk-user" }));
    // What the proxy charged: the usage it read from the answer, exactly.
    assert.equal(spent.tokens.used - before, response.usage.total_tokens);
    assert.ok(response.usage.total_tokens < reservedTokens(upstream), "and not the reservation");
  });

  test("embeddings.create", async () => {
    const embedder = new OpenAI({ apiKey: mintToken({ sub: "sdk-embedder" }), baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 10_000 });
    const result = await embedder.embeddings.create({ model: "text-embedding-3-small", input: ["one", "two"] });
    assert.equal(result.data.length, 2);
    assert.deepEqual(Array.from(result.data[0].embedding), [0.25, -0.5, 0.125]);
    const upstream = mock.requests.at(-1);
    assert.equal(typeof upstream.json.user, "string", "the proxy's safety identifier goes as `user`");
    assert.notEqual(upstream.json.user, "sdk-embedder");
    const spent = await settledUsage(proxy, mintToken({ sub: "sdk-embedder" }));
    assert.equal(spent.tokens.used, result.usage.total_tokens, "charged the usage the proxy read");
  });

  test("limits apply to the new endpoints too", async () => {
    await assert.rejects(
      client.responses.create({ model: "gpt-4o-mini", input: "x", max_output_tokens: 5000 }),
      (error) => error instanceof OpenAI.BadRequestError && error.param === "max_output_tokens",
    );
    await assert.rejects(client.embeddings.create({ model: "gpt-4-expensive", input: "x" }), OpenAI.BadRequestError);
  });
});
