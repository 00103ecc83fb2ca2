// Quotas in workerd with real Durable Objects: exact rate limits under concurrency, stream
// slots, token budgets that concurrent streams cannot overrun, and /v1/usage.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, browserHeaders, chatBody, logLineOf, mintToken, proxyFor, reservedTokens, settledUsage, startProxy, usageOf, within } from "./helpers.mjs";

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
    let firstAdmittedBefore;
    let firstAdmittedAfter;
    for (let i = 0; i < 20; i++) {
      if (i === 0) firstAdmittedBefore = Date.now();
      const response = await chat(setup.proxy, "rate-user");
      if (i === 0) firstAdmittedAfter = Date.now();
      assert.equal(response.status, 200, `request ${i + 1}`);
      await response.arrayBuffer();
      assert.equal(response.headers.get("ratelimit-limit"), "20");
      assert.equal(response.headers.get("ratelimit-remaining"), String(19 - i));
    }
    const refusedBefore = Date.now();
    const refused = await chat(setup.proxy, "rate-user");
    const refusedAfter = Date.now();
    assert.equal(refused.status, 429);
    const { error } = await refused.json();
    assert.equal(error.code, "rate_limit_exceeded");
    // Exactly the seconds until the first request leaves the 900 s window, rounded up: the
    // object read its clock somewhere within each of the two requests.
    const retryAfter = Number(refused.headers.get("retry-after"));
    const earliest = Math.ceil((firstAdmittedBefore + 900_000 - refusedAfter) / 1000);
    const latest = Math.ceil((firstAdmittedAfter + 900_000 - refusedBefore) / 1000);
    assert.ok(retryAfter >= earliest && retryAfter <= latest, `Retry-After ${retryAfter}, expected ${earliest}..${latest}`);
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
      assert.equal(third.headers.get("retry-after"), "2", "README: a slot frees when a stream ends; retry in 2 s");
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

  test("frees its stream slot, stops the upstream request, and is charged its whole reservation", async () => {
    const controller = new AbortController();
    const leaving = await chat(proxy, "leaver", longStream(), { signal: controller.signal });
    const staying = await chat(proxy, "leaver", longStream());
    await firstChunk(leaving);
    const upstreamOfLeaving = slowMock.requests.at(-2);
    const upstreamOfStaying = slowMock.requests.at(-1);
    const abortedAt = Date.now();
    controller.abort();

    const replacement = await within(10_000, (async () => {
      for (;;) {
        const response = await chat(proxy, "leaver", longStream());
        if (response.status === 200) return response;
        assert.equal((await response.json()).error.code, "too_many_concurrent_streams");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), "the slot of the stream whose client left");
    const upstreamOfReplacement = slowMock.requests.at(-1);
    assert.ok(upstreamOfLeaving.closedAt, "the upstream request was stopped");
    assert.equal(upstreamOfLeaving.completed, false);
    // Not a product promise beyond "at the proxy's next write" (chunks are 100 ms apart): shown, not asserted.
    console.log(`# upstream closed ${upstreamOfLeaving.closedAt - abortedAt} ms after the client went away`);

    await Promise.all([drain(staying, 15_000), drain(replacement, 15_000)]);
    const settled = await settledUsage(proxy, mintToken({ sub: "leaver" }));
    const line = await logLineOf(proxy, leaving.headers.get("x-request-id"));
    assert.equal(line.disconnected, true, "the log says the client went away");
    assert.equal(line.usage_reported, false);
    // The whole reservation: its forwarded bytes and its output cap, never an estimate.
    assert.equal(line.total_tokens, reservedTokens(upstreamOfLeaving));
    assert.equal(line.total_tokens, Buffer.byteLength(upstreamOfLeaving.body) + 1024);
    const finished = usage(upstreamOfStaying.json).total_tokens + usage(upstreamOfReplacement.json).total_tokens;
    assert.equal(settled.tokens.used, reservedTokens(upstreamOfLeaving) + finished, "the two finished streams are charged their usage");
  });
});

describe("token budget", () => {
  const setup = proxyFor(() => mock, { DAILY_TOKEN_BUDGET: "2000", MAX_OUTPUT_TOKENS: "200", MAX_CONCURRENT_STREAMS: "50" });

  test("12 concurrent streams: exactly as many as fit are admitted, and used + reserved never passes the budget", async () => {
    const before = mock.requests.length;
    const token = mintToken({ sub: "spender" });
    const release = mock.pauseStreams();
    let responses;
    let held;
    try {
      // Bodies of one length, so every request reserves the same and the number that fits is exact.
      const body = (i) => chatBody({ stream: true, max_tokens: 200, messages: [{ role: "user", content: `budget ${String(i).padStart(2, "0")}` }] });
      responses = await within(10_000, Promise.all(Array.from({ length: 12 }, (_, i) => chat(setup.proxy, "spender", body(i)))), "12 streams");
      held = await usageOf(setup.proxy, token);
    } finally {
      release();
    }
    const admitted = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    const upstreamCalls = mock.requests.slice(before);
    assert.equal(upstreamCalls.length, admitted.length, "refused requests never reach upstream");
    const reservations = upstreamCalls.map(reservedTokens);
    assert.equal(new Set(reservations).size, 1, `one reservation for all: ${reservations}`);
    const each = reservations[0];
    assert.equal(each, Buffer.byteLength(upstreamCalls[0].body) + 200);
    assert.equal(admitted.length, Math.floor(2000 / each), `admitted ${admitted.length} of 12 at ${each} tokens each`);
    assert.equal(refused.length, 12 - admitted.length);
    // While the streams are held open: what is reserved is exactly the admitted requests' reservations.
    assert.equal(held.tokens.used, 0);
    assert.equal(held.tokens.reserved, admitted.length * each);
    assert.ok(held.tokens.used + held.tokens.reserved <= 2000, `used + reserved ${held.tokens.used + held.tokens.reserved}`);
    assert.equal(held.streams.open, admitted.length);
    for (const response of refused) {
      const { error } = await response.json();
      assert.equal(error.code, "insufficient_quota");
      assert.equal(error.type, "insufficient_quota");
      // Only requests under way stand in the way: their unused reservations free when they end.
      assert.equal(response.headers.get("retry-after"), "2");
    }
    await Promise.all(admitted.map((response) => drain(response)));
    const spent = await settledUsage(setup.proxy, token);
    const expected = upstreamCalls.reduce((sum, request) => sum + usage(request.json).total_tokens, 0);
    assert.equal(spent.tokens.used, expected, "each stream is charged its real usage");
  });

  test("a budget spent by used tokens is refused until 00:00 UTC, and Retry-After says exactly when", async () => {
    const token = mintToken({ sub: "day-spender" });
    const before = mock.requests.length;
    // Each request reports its whole output cap as used (a model that writes until stopped),
    // so the budget is gone after a few of them.
    let refused;
    for (let i = 0; i < 10 && !refused; i++) {
      mock.faultNext({ usage: "cap", match: (json) => json?.messages?.[0]?.content === `cap ${i}` });
      const response = await chat(setup.proxy, "day-spender", chatBody({ max_tokens: 200, messages: [{ role: "user", content: `cap ${i}` }] }));
      if (response.status === 429) refused = response;
      else await response.arrayBuffer();
      await settledUsage(setup.proxy, token);
    }
    assert.ok(refused, "the budget ran out within 10 requests");
    const answeredAt = Date.now();
    assert.equal((await refused.json()).error.code, "insufficient_quota");
    const calls = mock.requests.slice(before);
    const charges = calls.map((call) => usage(call.json, { usage: "cap" }).total_tokens);
    assert.ok(charges.every((charge) => charge > 200), "each was charged its cap as completion, and its prompt");
    const spent = await usageOf(setup.proxy, token);
    assert.equal(spent.tokens.used, charges.reduce((sum, charge) => sum + charge, 0));
    // Refused exactly when the next worst case no longer fitted (all the bodies have one length).
    const each = reservedTokens(calls[0]);
    assert.ok(spent.tokens.used + each > 2000, `refused with ${spent.tokens.used} used and ${each} to reserve`);
    assert.ok(spent.tokens.used - charges.at(-1) + each <= 2000, "the last admitted one fitted");
    const midnight = new Date(answeredAt);
    midnight.setUTCHours(24, 0, 0, 0);
    const retryAfter = Number(refused.headers.get("retry-after"));
    const expected = Math.ceil((midnight.getTime() - answeredAt) / 1000);
    assert.ok(retryAfter >= expected && retryAfter <= expected + 2, `Retry-After ${retryAfter}, seconds to midnight UTC ${expected}`);
    assert.ok(spent.tokens.reset_seconds <= retryAfter && spent.tokens.reset_seconds >= retryAfter - 2, "/v1/usage says the same reset");
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

  // Each admitted user's object holds a lease of the global budget until it is idle (a
  // minute): here the lease is the request's reservation (the budget is too small to lease
  // more), and it stays leased after the request used less, so the next user is refused
  // while the first one's lease is out: the budget is never overrun, and may be refused early.
  test("caps all users together, and a refused user gets their reservation back", async () => {
    const statuses = [];
    const expected = [];
    let used = 0;
    let leased = 0;
    let each;
    for (const sub of ["g1", "g2", "g3", "g4", "g5"]) {
      const sent = mock.requests.length;
      const response = await chat(setup.proxy, sub, chatBody());
      statuses.push(response.status);
      // Every user's body has one length (the safety identifier too), so one reservation for all.
      if (mock.requests.length > sent) each ??= reservedTokens(mock.requests.at(-1));
      expected.push(each === undefined || leased + each <= 320 ? 200 : 429);
      if (response.status === 200) {
        used += usage(mock.requests.at(-1).json).total_tokens;
        leased += each;
      }
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
    assert.deepEqual(statuses, expected, `admitted while the leased ${leased} tokens and a ${each}-token reservation fit 320`);
    assert.ok(used <= 320, `used ${used}`);
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
