// Quotas in workerd with real Durable Objects: exact rate limits under concurrency, stream
// slots, token budgets that concurrent streams cannot overrun, and /v1/usage.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, browserHeaders, chatBody, mintToken, proxyFor, settledUsage, startProxy, usageOf, within } from "./helpers.mjs";

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const chat = (proxy, sub, body = chatBody(), init = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body, ...init });

/** Reads a stream response to its end; returns its text. */
const drain = (response, ms = 5000) => within(ms, response.text(), "stream to end");

/** Waits until a stream response has delivered its first content. */
async function firstChunk(response) {
  const reader = response.body.getReader();
  const { value } = await within(5000, reader.read(), "first chunk");
  return { reader, first: new TextDecoder().decode(value) };
}

describe("rate limit (defaults: 20 per 900 s)", () => {
  const setup = proxyFor(() => mock, { RATE_LIMIT_REQUESTS: undefined });

  test("the 21st request in a window is refused, with Retry-After and RateLimit headers", async () => {
    for (let i = 0; i < 20; i++) {
      const response = await chat(setup.proxy, "rate-user");
      assert.equal(response.status, 200, `request ${i + 1}`);
      await response.arrayBuffer();
      assert.equal(response.headers.get("ratelimit-limit"), "20");
      assert.equal(response.headers.get("ratelimit-remaining"), String(19 - i));
    }
    const refused = await chat(setup.proxy, "rate-user");
    assert.equal(refused.status, 429);
    const { error } = await refused.json();
    assert.equal(error.code, "rate_limit_exceeded");
    const retryAfter = Number(refused.headers.get("retry-after"));
    assert.ok(retryAfter > 800 && retryAfter <= 900, `Retry-After ${retryAfter}`);
    assert.equal(refused.headers.get("ratelimit-remaining"), "0");
    assert.equal(refused.headers.get("ratelimit-reset"), String(retryAfter));
    assert.equal(refused.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN, "the page can read the 429");
    assert.match(refused.headers.get("access-control-expose-headers"), /ratelimit-remaining/);

    const other = await chat(setup.proxy, "another-user");
    assert.equal(other.status, 200, "users do not share limits");
    await other.arrayBuffer();
  });

  test("200 concurrent requests of one user: exactly 20 are admitted", async () => {
    const before = mock.requests.length;
    const responses = await within(30_000, Promise.all(Array.from({ length: 200 }, () => chat(setup.proxy, "burst-user"))), "200 requests");
    const statuses = await Promise.all(responses.map(async (r) => (await r.arrayBuffer(), r.status)));
    const admitted = statuses.filter((s) => s === 200).length;
    assert.equal(admitted, 20);
    assert.equal(statuses.filter((s) => s === 429).length, 180);
    assert.equal(mock.requests.length - before, 20, "refused requests never reach upstream");
  });
});

describe("streams", () => {
  const setup = proxyFor(() => mock, { DAILY_TOKEN_BUDGET: "2000", MAX_OUTPUT_TOKENS: "200", MAX_CONCURRENT_STREAMS: "2" });

  const streamBody = (content = "Count me", extra = {}) =>
    chatBody({ stream: true, max_tokens: 200, messages: [{ role: "user", content }], ...extra });

  test("usage from a stream is counted, and /v1/usage matches what was spent", async () => {
    const response = await chat(setup.proxy, "meter-user", streamBody("Meter this stream", { stream_options: { include_usage: true } }));
    const text = await drain(response);
    assert.match(text, /"usage":\{"prompt_tokens"/, "the client asked for usage, so it gets the usage chunk");
    const expected = usage(mock.requests.at(-1).json).total_tokens;
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "meter-user" }));
    assert.equal(spent.tokens.used, expected);
    assert.equal(spent.tokens.remaining, 2000 - expected);
    assert.equal(spent.requests.remaining, 999);

    const quiet = await drain(await chat(setup.proxy, "meter-user", streamBody("No usage please")));
    assert.doesNotMatch(quiet, /"usage":\{/, "a client that did not ask gets no usage chunk");
    assert.equal(mock.requests.at(-1).json.stream_options.include_usage, true, "but upstream was asked for it");
  });

  test("a third concurrent stream is refused, and a finished stream frees its slot", async () => {
    const release = mock.pauseStreams();
    try {
      const first = await chat(setup.proxy, "streamer", streamBody());
      const second = await chat(setup.proxy, "streamer", streamBody());
      assert.equal(first.status, 200);
      assert.equal(second.status, 200);
      const third = await chat(setup.proxy, "streamer", streamBody());
      assert.equal(third.status, 429);
      assert.equal((await third.json()).error.code, "too_many_concurrent_streams");
      assert.ok(Number(third.headers.get("retry-after")) > 0);
      const nonStream = await chat(setup.proxy, "streamer", chatBody({ max_tokens: 10 }));
      assert.equal(nonStream.status, 200, "requests without a stream need no slot");
      await nonStream.arrayBuffer();
      release();
      await Promise.all([drain(first), drain(second)]);
      await settledUsage(setup.proxy, mintToken({ sub: "streamer" }));
      const again = await chat(setup.proxy, "streamer", streamBody());
      assert.equal(again.status, 200);
      await drain(again);
    } finally {
      release();
    }
  });

});

describe("a client that goes away", () => {
  let slowMock;
  let proxy;
  before(async () => {
    // Long, steady streams (about 4 s): the proxy notices a vanished client at its next write.
    slowMock = await startMockUpstream({ chunkDelayMs: 100 });
    proxy = await startProxy({ UPSTREAM_BASE_URL: slowMock.url, OPENAI_API_KEY: slowMock.apiKey, MAX_CONCURRENT_STREAMS: "2" });
  });
  after(async () => {
    await proxy?.dispose();
    await slowMock?.close();
  });

  const longStream = () => chatBody({ stream: true, messages: [{ role: "user", content: "word ".repeat(40) }] });

  test("frees its stream slot, stops the upstream request, and is still charged", async () => {
    const controller = new AbortController();
    const leaving = await chat(proxy, "leaver", longStream(), { signal: controller.signal });
    const staying = await chat(proxy, "leaver", longStream());
    await firstChunk(leaving);
    const upstreamOfLeaving = slowMock.requests.at(-2);
    const abortedAt = Date.now();
    controller.abort();

    const replacement = await within(3000, (async () => {
      for (;;) {
        const response = await chat(proxy, "leaver", longStream());
        if (response.status === 200) return response;
        assert.equal((await response.json()).error.code, "too_many_concurrent_streams");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), "the slot of the stream whose client left");
    assert.ok(upstreamOfLeaving.closedAt, "the upstream request was stopped");
    assert.equal(upstreamOfLeaving.completed, false);
    const closeDelay = upstreamOfLeaving.closedAt - abortedAt;
    assert.ok(closeDelay < 1000, `upstream closed ${closeDelay} ms after the client left`);
    console.log(`# upstream closed ${closeDelay} ms after the client went away`);

    await Promise.all([drain(staying, 15_000), drain(replacement, 15_000)]);
    const settled = await settledUsage(proxy, mintToken({ sub: "leaver" }));
    const line = proxy.logs.find((l) => l.route === "chat.completions" && l.disconnected);
    assert.ok(line, "the log says the client went away");
    assert.equal(line.usage_reported, false);
    assert.ok(line.total_tokens > 0, "an abandoned stream is charged an estimate, never zero");
    assert.ok(settled.tokens.used >= line.total_tokens);
  });
});

describe("token budget", () => {
  const setup = proxyFor(() => mock, { DAILY_TOKEN_BUDGET: "2000", MAX_OUTPUT_TOKENS: "200", MAX_CONCURRENT_STREAMS: "50" });

  test("concurrent streams can never push usage past the budget", async () => {
    const before = mock.requests.length;
    const release = mock.pauseStreams();
    let responses;
    try {
      const body = (i) => chatBody({ stream: true, max_tokens: 200, messages: [{ role: "user", content: `budget ${i}` }] });
      responses = await within(10_000, Promise.all(Array.from({ length: 12 }, (_, i) => chat(setup.proxy, "spender", body(i)))), "12 streams");
    } finally {
      release();
    }
    const admitted = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    assert.ok(admitted.length >= 1 && admitted.length < 12, `admitted ${admitted.length}`);
    for (const response of refused) {
      const { error } = await response.json();
      assert.equal(error.code, "insufficient_quota");
      assert.equal(error.type, "insufficient_quota");
    }
    await Promise.all(admitted.map((response) => drain(response)));
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "spender" }));
    const upstreamCalls = mock.requests.slice(before);
    assert.equal(upstreamCalls.length, admitted.length, "refused requests never reach upstream");
    const expected = upstreamCalls.reduce((sum, request) => sum + usage(request.json).total_tokens, 0);
    assert.equal(spent.tokens.used, expected, "each stream is charged its real usage");
    assert.ok(spent.tokens.used <= 2000);
  });
});

describe("request policy before any quota is spent", () => {
  const setup = proxyFor(() => mock, { ADMIN_TOKEN: "admin-token-for-tests-0123456789abcdef" });

  test("rejected bodies are 400s naming the field, and cost no request, token or upstream call", async () => {
    const before = mock.requests.length;
    const cases = {
      max_tokens: chatBody({ max_tokens: 5000 }),
      n: chatBody({ n: 3 }),
      "messages[0].content": chatBody({ messages: [{ role: "user", content: "x".repeat(8001) }] }),
    };
    for (const [param, body] of Object.entries(cases)) {
      const response = await chat(setup.proxy, "careful-user", body);
      assert.equal(response.status, 400, param);
      assert.equal((await response.json()).error.param, param);
    }
    const untouched = await usageOf(setup.proxy, mintToken({ sub: "careful-user" }));
    assert.equal(untouched.requests.remaining, untouched.requests.limit);
    assert.equal(untouched.tokens.used + untouched.tokens.reserved, 0);
    assert.equal(mock.requests.length, before);
  });

  test("the setup.proxy caps the output when the client does not", async () => {
    const response = await chat(setup.proxy, "careful-user", chatBody());
    await response.arrayBuffer();
    assert.equal(mock.requests.at(-1).json.max_completion_tokens, 1024);
  });

  test("an operator sees a user's usage", async () => {
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "careful-user" }));
    const response = await fetch(`${setup.proxy.url}/admin/users/careful-user/usage`, {
      headers: { authorization: "Bearer admin-token-for-tests-0123456789abcdef" },
    });
    assert.equal(response.status, 200);
    const seen = await response.json();
    assert.equal(seen.tokens.used, spent.tokens.used);
    assert.equal(seen.requests.remaining, spent.requests.remaining);
    assert.equal(seen.revoked_at, null);
  });
});

describe("global budget", () => {
  // Room for one request (its body, safety_identifier included, plus 100 output tokens) and not for five.
  const setup = proxyFor(() => mock, { GLOBAL_DAILY_TOKEN_BUDGET: "320", MAX_OUTPUT_TOKENS: "100" });

  test("caps all users together, and a refused user gets their reservation back", async () => {
    const statuses = [];
    for (const sub of ["g1", "g2", "g3", "g4", "g5"]) {
      const response = await chat(setup.proxy, sub, chatBody());
      statuses.push(response.status);
      if (response.status === 429) {
        const { error } = await response.json();
        assert.equal(error.code, "insufficient_quota");
        assert.match(error.message, /service's daily token budget/);
        const own = await settledUsage(setup.proxy, mintToken({ sub }));
        assert.equal(own.tokens.used, 0, "nothing was spent");
        assert.equal(own.tokens.reserved, 0, "the user's reservation was given back");
      } else {
        await response.arrayBuffer();
      }
    }
    assert.equal(statuses[0], 200);
    assert.ok(statuses.includes(429), statuses.join());
  });
});

describe("a request the global budget refuses", () => {
  // Every request reserves more than the whole global budget, so the global object refuses it
  // after the user's own object admitted it.
  const setup = proxyFor(() => mock, { GLOBAL_DAILY_TOKEN_BUDGET: "50", MAX_OUTPUT_TOKENS: "100", RATE_LIMIT_REQUESTS: "3" });

  test("costs the user nothing: not a token, and not a request of their rate limit", async () => {
    const before = mock.requests.length;
    for (let i = 0; i < 5; i++) {
      const response = await chat(setup.proxy, "globally-refused", chatBody());
      assert.equal(response.status, 429, `request ${i + 1}`);
      const { error } = await response.json();
      assert.equal(error.code, "insufficient_quota", `request ${i + 1} is refused by the global budget, not the rate`);
      assert.match(error.message, /service's daily token budget/);
    }
    const own = await usageOf(setup.proxy, mintToken({ sub: "globally-refused" }));
    assert.equal(own.requests.remaining, 3, "every rate slot was given back");
    assert.equal(own.tokens.used + own.tokens.reserved, 0);
    assert.equal(mock.requests.length, before, "nothing reached upstream");
  });
});
