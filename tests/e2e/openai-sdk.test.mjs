// The official `openai` npm SDK as the client, with the proxy as its baseURL and a user token
// as its "API key": what an app developer writes.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { startMockUpstream } from "../mock-upstream.mjs";
import { mintToken, settledUsage, startProxy } from "./helpers.mjs";

let mock;
let proxy;
let client;

before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey });
  client = new OpenAI({ apiKey: mintToken({ sub: "sdk-user" }), baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 10_000 });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

test("chat.completions.create without streaming", async () => {
  const completion = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Hi from the SDK" }],
  });
  assert.match(completion.choices[0].message.content, /You said: Hi from the SDK/);
  assert.ok(completion.usage.total_tokens > 0);
  // What the proxy decided: it stated the output cap it reserved, and charged the usage it read.
  assert.equal(mock.requests.at(-1).json.max_completion_tokens, 1024);
  const own = await settledUsage(proxy, mintToken({ sub: "sdk-user" }));
  assert.equal(own.tokens.used, completion.usage.total_tokens);
});

test("chat.completions.create with stream: true", async () => {
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Stream to the SDK" }],
    stream: true,
  });
  const parts = [];
  for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? "");
  assert.ok(parts.filter(Boolean).length > 5, "arrived as many chunks");
  assert.equal(parts.join(""), "This is the bundled mock upstream, not OpenAI. You said: Stream to the SDK");
  // The proxy asked upstream for the usage it meters, though the SDK did not ask for it.
  assert.deepEqual(mock.requests.at(-1).json.stream_options, { include_usage: true });
});

test("the SDK surfaces proxy errors as typed API errors", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "gpt-4-expensive", messages: [{ role: "user", content: "x" }] }),
    (error) => error instanceof OpenAI.BadRequestError && error.code === "model_not_allowed",
  );
  const stranger = new OpenAI({ apiKey: "not-a-token", baseURL: `${proxy.url}/v1`, maxRetries: 0 });
  await assert.rejects(
    stranger.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] }),
    OpenAI.AuthenticationError,
  );
});

test("models.list shows what the proxy allows", async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.deepEqual(ids, ["gpt-4o-mini", "gpt-4.1-nano"]);
});
