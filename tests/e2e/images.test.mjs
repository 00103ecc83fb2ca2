// Issue 23 item 3, POST /v1/images/generations in workerd: each image reserved at the output
// tokens of its model, quality and size before upstream, the answer or stream passed through
// and charged its usage exactly, and nothing past a budget.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { imageTokens, imageUsage, startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, eventually, mintToken, proxyFor, settledUsage, usageOf, usd, within } from "./helpers.mjs";

// The README's prices in nano-USD per 1M tokens (text input and output, image input and output).
const IMAGE_PRICES = {
  "gpt-image-1.5": { input: 5_000_000_000n, output: 10_000_000_000n, imageInput: 8_000_000_000n, imageOutput: 32_000_000_000n },
  "gpt-image-2": { input: 5_000_000_000n, output: 10_000_000_000n, imageInput: 8_000_000_000n, imageOutput: 30_000_000_000n },
};
const QUALITIES = ["low", "medium", "high"];
const SIZES = ["1024x1024", "1024x1536", "1536x1024"];

/** What an image usage report costs, rounded up as the proxy does: BigInt, exact. */
function chargeOf(model, usage) {
  const price = IMAGE_PRICES[model];
  const imageIn = BigInt(usage.input_tokens_details?.image_tokens ?? 0);
  const imageOut = BigInt(usage.output_tokens_details?.image_tokens ?? usage.output_tokens);
  const textIn = BigInt(usage.input_tokens) - imageIn;
  const textOut = BigInt(usage.output_tokens) - imageOut;
  const micro = textIn * price.input + imageIn * price.imageInput + textOut * price.output + imageOut * price.imageOutput;
  return (micro + 999_999n) / 1_000_000n;
}

/**
 * What the proxy must reserve for a request it forwarded (README, "Prices"; docs/limits-and-costs.md,
 * "Images"): the body's bytes at the dearest input price, and each image's dearest output
 * (`auto`: any quality, any standard size) with 100 tokens per partial image, at the image
 * output price.
 */
function reservedOf(upstream) {
  const { model, quality, size, n = 1, partial_images = 0 } = upstream.json;
  const qualities = quality == null || quality === "auto" ? QUALITIES : [quality];
  const sizes = size == null || size === "auto" ? SIZES : [size];
  const each = Math.max(...qualities.flatMap((q) => sizes.map((s) => imageTokens(model, q, s))));
  const output = n * (each + 100 * partial_images);
  const bytes = Buffer.byteLength(upstream.body);
  const nano = (BigInt(bytes) * IMAGE_PRICES[model].imageInput + BigInt(output) * IMAGE_PRICES[model].imageOutput + 999_999n) / 1_000_000n;
  return { tokens: bytes + output, nano };
}

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const generate = (proxy, sub, body, init = {}) =>
  fetch(`${proxy.url}/v1/images/generations`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body: JSON.stringify({ prompt: "A lighthouse at dawn", ...body }), ...init });

/** The SSE events of a whole stream body. */
const eventsOf = (text) =>
  text
    .split("\n\n")
    .filter(Boolean)
    .map((event) => JSON.parse(event.split("\n").find((line) => line.startsWith("data: ")).slice(6)));

describe("image generation charged its usage", () => {
  const setup = proxyFor(() => mock, { IMAGE_MODELS: "gpt-image-1.5,gpt-image-2", MAX_IMAGES_PER_REQUEST: "3", DAILY_BUDGET_USD: "5", DAILY_TOKEN_BUDGET: "10000000" });

  test("/v1/models lists the image models after the text ones", async () => {
    const models = await (await fetch(`${setup.proxy.url}/v1/models`, { headers: { authorization: `Bearer ${mintToken({ sub: "lister" })}` } })).json();
    assert.deepEqual(models.data.map((model) => model.id), ["gpt-4o-mini", "gpt-4.1-nano", "gpt-image-1.5", "gpt-image-2"]);
  });

  test("a normal call returns its images and is charged exactly the mock's usage at the model's image prices", async () => {
    const response = await generate(setup.proxy, "painter", { model: "gpt-image-1.5", n: 2, quality: "medium", size: "1024x1024" });
    assert.equal(response.status, 200);
    const answer = await within(10_000, response.json(), "the images");
    assert.equal(answer.data.length, 2);
    assert.ok(answer.data.every((image) => image.b64_json.length > 60_000));
    const upstream = mock.requests.at(-1);
    assert.equal(upstream.path, "/v1/images/generations");
    assert.ok(upstream.json.user && upstream.json.user !== "painter", "an opaque user id, never the sub");
    const usage = imageUsage(upstream.json);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "painter" }));
    assert.equal(spent.tokens.used, usage.total_tokens);
    assert.equal(spent.cost.used_usd, usd(chargeOf("gpt-image-1.5", usage)));
  });

  test("a stream passes its partial images through as they come and is charged the completed event's usage", async () => {
    const response = await generate(setup.proxy, "streamer", { model: "gpt-image-2", stream: true, partial_images: 2, quality: "low", size: "1536x1024" });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    const events = eventsOf(await within(10_000, response.text(), "the stream"));
    assert.deepEqual(
      events.map((event) => event.type),
      ["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"],
    );
    const usage = imageUsage(mock.requests.at(-1).json);
    assert.deepEqual(events[2].usage, usage, "the usage reaches the client untouched");
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "streamer" }));
    assert.equal(spent.tokens.used, usage.total_tokens);
    assert.equal(spent.cost.used_usd, usd(chargeOf("gpt-image-2", usage)));
  });

  test("a request OpenAI refuses is passed on as its error, scrubbed, and charged nothing", async () => {
    mock.failNext(400, { body: { error: { message: "Your request was rejected by the safety system (key sk-proj-abcdefgh1234).", type: "image_generation_user_error", param: null, code: "moderation_blocked" } } });
    const response = await generate(setup.proxy, "blocked", { model: "gpt-image-2", quality: "high", size: "1024x1024" });
    assert.equal(response.status, 400);
    const { error } = await response.json();
    assert.match(error.message, /rejected by the safety system/);
    assert.doesNotMatch(error.message, /sk-proj-abcdefgh1234/);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "blocked" }));
    assert.equal(spent.tokens.used, 0);
    assert.equal(spent.cost.used_usd, 0);
  });

  test("every quality, size and count the plan allows reserves at least what the mock bills", async () => {
    const before = setup.proxy.logs.length;
    const cases = [];
    for (const model of ["gpt-image-1.5", "gpt-image-2"]) {
      for (const [quality, size, n] of [["low", "1024x1536", 3], ["high", "1536x1024", 1], ["auto", "1024x1024", 2], [undefined, undefined, 1]]) {
        cases.push({ model, quality, size, n });
      }
    }
    for (const [index, body] of cases.entries()) {
      const sub = `bound-${index}`;
      const response = await generate(setup.proxy, sub, body);
      assert.equal(response.status, 200, JSON.stringify(body));
      await response.arrayBuffer();
      const upstream = mock.requests.at(-1);
      const usage = imageUsage(upstream.json);
      const reserved = reservedOf(upstream);
      const spent = await settledUsage(setup.proxy, mintToken({ sub }));
      assert.equal(spent.tokens.used, usage.total_tokens, JSON.stringify(body));
      assert.ok(BigInt(usage.total_tokens) <= BigInt(reserved.tokens), `${JSON.stringify(body)}: ${usage.total_tokens} > ${reserved.tokens}`);
      assert.ok(chargeOf(body.model, usage) <= reserved.nano, `${JSON.stringify(body)}: ${chargeOf(body.model, usage)} > ${reserved.nano}`);
    }
    assert.equal(setup.proxy.logs.slice(before).filter((line) => line.event === "overrun").length, 0, "no overrun logged");
  });
});

describe("an image takes longer than text", () => {
  const setup = proxyFor(() => mock, { IMAGE_MODELS: "gpt-image-2", UPSTREAM_TIMEOUT_MS: "300" });

  test("an image answer slower than UPSTREAM_TIMEOUT_MS is waited for, where a chat answer times out", async () => {
    mock.faultNext({ headerDelayMs: 1000, match: (json) => json?.model === "gpt-image-2" });
    const image = await generate(setup.proxy, "patient", { model: "gpt-image-2", quality: "low", size: "1024x1024" });
    assert.equal(image.status, 200);
    await image.arrayBuffer();
    mock.faultNext({ headerDelayMs: 1000, match: (json) => json?.model === "gpt-4o-mini" });
    const chat = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "patient" })), body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }) });
    assert.equal(chat.status, 504);
    await chat.arrayBuffer();
  });
});

describe("image requests refused before they cost anything", () => {
  const setup = proxyFor(() => mock, { IMAGE_MODELS: "gpt-image-1.5", MAX_BODY_BYTES: "4096", IMAGE_QUALITIES: "low,medium" });

  test("an over-cap body is a 413 before any object call, and a model, a quality or a count the plan does not allow a 400", async () => {
    const before = mock.requests.length;
    const big = await generate(setup.proxy, "refused", { model: "gpt-image-1.5", prompt: "x".repeat(5000) });
    assert.equal(big.status, 413);
    for (const [body, code, param] of [
      [{ model: "gpt-image-2" }, "model_not_allowed", "model"],
      [{ model: "gpt-4o-mini" }, "model_not_allowed", "model"],
      [{ model: "gpt-image-1.5", quality: "high" }, "invalid_request", "quality"],
      [{ model: "gpt-image-1.5", quality: "low", n: 2 }, "invalid_request", "n"],
    ]) {
      const response = await generate(setup.proxy, "refused", body);
      assert.equal(response.status, 400, JSON.stringify(body));
      const { error } = await response.json();
      assert.equal(error.code, code, JSON.stringify(body));
      assert.equal(error.param, param);
    }
    assert.equal(mock.requests.length, before, "nothing went upstream");
    const usage = await usageOf(setup.proxy, mintToken({ sub: "refused" }));
    assert.equal(usage.requests.remaining, usage.requests.limit, "no admission: the user's object counted nothing");
    assert.equal(usage.tokens.used + usage.tokens.reserved, 0);
  });
});

describe("image streams and budgets", () => {
  const setup = proxyFor(() => mock, { IMAGE_MODELS: "gpt-image-1.5", DAILY_BUDGET_USD: "0.05", MAX_CONCURRENT_STREAMS: "50", DAILY_TOKEN_BUDGET: "10000000" });

  test("a client that leaves mid-stream is charged the whole reservation", async () => {
    const release = mock.pauseStreams();
    const controller = new AbortController();
    try {
      const response = await generate(setup.proxy, "leaver", { model: "gpt-image-1.5", stream: true, partial_images: 2, quality: "low", size: "1024x1024" }, { signal: controller.signal });
      assert.equal(response.status, 200);
      await within(5000, response.body.getReader().read(), "the first partial image");
      controller.abort();
    } finally {
      release();
    }
    const reserved = reservedOf(mock.requests.at(-1));
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "leaver" }));
    assert.equal(spent.tokens.used, reserved.tokens);
    assert.equal(spent.cost.used_usd, usd(reserved.nano));
    await eventually(5000, () => setup.proxy.logs.find((line) => line.route === "images.generations" && line.sub === "leaver" && line.disconnected), "the log line");
  });

  test("50 concurrent image streams under $0.05: exactly the worst cases that fit are admitted, and the day ends within the budget", async () => {
    const sub = "crowd";
    const before = mock.requests.length;
    const release = mock.pauseStreams();
    let responses;
    let held;
    try {
      // Prompts of one length, so every worst case is the same.
      const body = (i) => ({ model: "gpt-image-1.5", stream: true, partial_images: 1, quality: "low", size: "1024x1024", prompt: `crowd ${String(i).padStart(2, "0")}` });
      responses = await within(20_000, Promise.all(Array.from({ length: 50 }, (_, i) => generate(setup.proxy, sub, body(i)))), "50 streams");
      held = await usageOf(setup.proxy, mintToken({ sub }));
    } finally {
      release();
    }
    const admitted = responses.filter((response) => response.status === 200);
    assert.equal(admitted.length + responses.filter((response) => response.status === 429).length, 50);
    const calls = mock.requests.slice(before);
    assert.equal(calls.length, admitted.length, "refused requests never reach upstream");
    const worst = calls.map((call) => reservedOf(call).nano);
    assert.equal(new Set(worst).size, 1);
    assert.equal(BigInt(admitted.length), 50_000_000n / worst[0], `admitted ${admitted.length} at ${worst[0]} nano-USD each`);
    assert.ok(held.cost.used_usd + held.cost.reserved_usd <= 0.05);
    await Promise.all(admitted.map((response) => within(10_000, response.text(), "stream to end")));
    const charged = calls.reduce((total, call) => total + chargeOf("gpt-image-1.5", imageUsage(call.json)), 0n);
    const spent = await settledUsage(setup.proxy, mintToken({ sub }));
    assert.equal(spent.cost.used_usd, usd(charged));
    assert.ok(charged <= 50_000_000n);
  });
});
