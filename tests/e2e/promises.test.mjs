// README promises that no other suite exercised: what a failed upstream call is charged (an
// error status or a connection that failed: 0; an answer that could not be read: the whole
// reservation), an unreachable Durable Object failing closed, what a bad token and a request
// cost in object calls, the reservations of /api/generate-text, `n` and `web_search_options`
// end to end, and LOG_LEVEL and LOG_PROMPTS.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { Miniflare } from "miniflare";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, JWT_SECRET, PRICES, bodyText, browserHeaders, chatBody, eventually, logLineOf, mintToken, nanoUsd, proxyFor, reservedTokens, settledUsage, startProxy, usd, within, workerOptions, PROXY_SCRIPT, compatibilityDate } from "./helpers.mjs";

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

let sequence = 0;
/** A fresh user's request to `path`, with `fault` for the mock; its answer, what reached upstream, its log line and the settled usage. */
async function exchange(proxy, path, body, fault) {
  const sub = `promised-${++sequence}`;
  const marker = `promise ${sequence}`;
  const tagged = path === "/api/generate-text" ? { userPrompt: marker, ...body } : { model: "gpt-4o-mini", messages: [{ role: "user", content: marker }], ...body };
  const matches = (json) => json?.messages?.some((m) => m.role === "user" && m.content === marker);
  if (fault) fault(matches);
  const before = mock.requests.length;
  const response = await fetch(`${proxy.url}${path}`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body: JSON.stringify(tagged) });
  const text = await bodyText(response);
  const upstream = mock.requests.slice(before).filter((r) => matches(r.json));
  const line = await logLineOf(proxy, response.headers.get("x-request-id"));
  const spent = await settledUsage(proxy, mintToken({ sub }));
  return { status: response.status, text, upstream, line, spent };
}

describe("a request that fails before an answer", () => {
  const setup = proxyFor(() => mock, { UPSTREAM_TIMEOUT_MS: "10000" });

  for (const [what, fault, expectedStatus, code] of [
    ["an upstream 400", (match) => mock.failNext(400, { match }), 400, undefined],
    ["an upstream 500, and again on the retry", (match) => [1, 2].forEach(() => mock.failNext(500, { match })), 502, "upstream_error"],
    ["an upstream 429 with a long Retry-After", (match) => mock.failNext(429, { match, headers: { "retry-after": "30" } }), 429, "upstream_rate_limited"],
    ["an upstream 401 to the operator's key", (match) => mock.failNext(401, { match }), 502, "upstream_auth_failed"],
    ["a connection reset before any status", (match) => mock.faultNext({ kind: "reset-before-headers", match }), 502, "upstream_error"],
  ]) {
    test(`${what} is charged 0: OpenAI does not bill it`, async () => {
      const { status, text, upstream, line, spent } = await exchange(setup.proxy, "/v1/chat/completions", {}, fault);
      assert.equal(status, expectedStatus);
      if (code) assert.equal(JSON.parse(text).error.code, code);
      assert.ok(upstream.length >= 1, "it reached upstream");
      assert.deepEqual([spent.tokens.used, spent.tokens.reserved, spent.cost.used_usd], [0, 0, 0]);
      assert.equal(line.total_tokens, 0);
    });
  }

  test("a whole answer that cannot be read (cut off by a reset) is charged its whole reservation", async () => {
    const { status, text, upstream, line, spent } = await exchange(setup.proxy, "/v1/chat/completions", {}, (match) => mock.faultNext({ kind: "unreadable-answer", match }));
    assert.equal(status, 502);
    assert.equal(JSON.parse(text).error.code, "upstream_error");
    assert.equal(upstream.length, 1);
    assert.equal(spent.tokens.used, reservedTokens(upstream[0]), "the request was sent and may have been billed");
    assert.equal(spent.tokens.used, Buffer.byteLength(upstream[0].body) + 1024);
    assert.deepEqual([line.usage_reported, line.total_tokens], [false, spent.tokens.used]);
  });
});

describe("an upstream that refuses the connection", () => {
  let proxy;
  before(async () => {
    // A port that was free a moment ago and is closed now: nothing listens there.
    const probe = http.createServer();
    await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = probe.address().port;
    await new Promise((resolve) => probe.close(resolve));
    proxy = await startProxy({ UPSTREAM_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_API_KEY: mock.apiKey });
  });
  after(() => proxy?.dispose());

  test("is a 502 upstream_error, charged 0: counted as never reached", async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "refused-connection" })), body: chatBody() });
    assert.equal(response.status, 502);
    assert.equal((await response.json()).error.code, "upstream_error");
    const line = await logLineOf(proxy, response.headers.get("x-request-id"));
    assert.equal(line.total_tokens, 0);
    const spent = await settledUsage(proxy, mintToken({ sub: "refused-connection" }));
    assert.deepEqual([spent.tokens.used, spent.tokens.reserved], [0, 0]);
  });
});

describe("a Durable Object that cannot be reached", () => {
  let mf;
  const logs = [];
  before(async () => {
    // The proxy as built, but its object bindings lead to another Worker's classes, whose
    // every call throws: to the proxy, the object call fails as an unreachable object's would.
    const down = `class Down { fetch() { throw new Error("the object is unreachable"); } }
      export class UserState extends Down {}
      export class UsageIndex extends Down {}
      export default { fetch() { return new Response("objects only", { status: 404 }); } };`;
    mf = new Miniflare({
      host: "127.0.0.1",
      port: 0,
      workers: [
        {
          name: "proxy",
          ...workerOptions(
            PROXY_SCRIPT,
            { ALLOWED_ORIGINS: ALLOWED_ORIGIN, ALLOWED_MODELS: "gpt-4o-mini", JWT_SECRET, UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey },
            { USERS: { className: "UserState", scriptName: "objects-down" }, USAGE_INDEX: { className: "UsageIndex", scriptName: "objects-down" } },
          ),
        },
        {
          name: "objects-down",
          modules: true,
          script: down,
          compatibilityDate,
          durableObjects: { DOWN_USERS: "UserState", DOWN_INDEX: "UsageIndex" },
        },
      ],
      handleRuntimeStdio(stdout, stderr) {
        for (const stream of [stdout, stderr]) stream.on("data", (chunk) => logs.push(...String(chunk).split("\n").filter(Boolean)));
      },
    });
    await mf.ready;
  });
  after(() => mf?.dispose());

  test("fails closed: 503 temporarily_unavailable, and nothing goes upstream", async () => {
    const url = (await mf.ready).toString().replace(/\/$/, "");
    const before = mock.requests.length;
    for (const body of [chatBody(), chatBody({ stream: true })]) {
      const response = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "objectless" })), body });
      assert.equal(response.status, 503);
      assert.equal((await response.json()).error.code, "temporarily_unavailable");
    }
    const usage = await fetch(`${url}/v1/usage`, { headers: { authorization: `Bearer ${mintToken({ sub: "objectless" })}` } });
    assert.equal(usage.status, 503);
    await usage.arrayBuffer();
    assert.equal(mock.requests.length, before, "nothing reached upstream");
    assert.ok(!logs.join("\n").includes(mock.apiKey));
  });
});

describe("object calls, as the Worker counts them", () => {
  const setup = proxyFor(() => mock, { BENCH_COUNTERS: "true" });
  const counters = async () => (await fetch(`${setup.proxy.url}/__bench/counters`)).json();
  /** The counters once nothing is held back for a later call (bounded). */
  const quiet = () =>
    within(5000, (async () => {
      for (;;) {
        const counted = await counters();
        if (counted.held === 0) return counted;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })(), "the Worker to hold nothing back");
  const calls = (before, after) => Object.values(after.object_calls).reduce((a, b) => a + b, 0) - Object.values(before.object_calls).reduce((a, b) => a + b, 0);

  test("a bad token costs no Durable Object call and no upstream call", async () => {
    const now = Math.floor(Date.now() / 1000);
    const before = await quiet();
    const upstreamBefore = mock.requests.length;
    for (const token of [
      "garbage",
      mintToken({ sub: "mallory" }, { secret: "not-the-secret-of-the-proxy-0123456789abcdef" }),
      mintToken({ sub: "mallory", iat: now - 7200, exp: now - 3600 }),
      `${mintToken({ sub: "mallory" })}x`,
    ]) {
      const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chatBody() });
      assert.equal(response.status, 401);
      await response.arrayBuffer();
    }
    const after = await quiet();
    assert.equal(after.requests - before.requests, 4, "the four requests were served");
    assert.equal(calls(before, after), 0, "and made no object call");
    assert.equal(mock.requests.length, upstreamBefore);
  });

  test("without a global budget, back-to-back requests of one user cost one object call each, and the last settlement one more", async () => {
    const before = await quiet();
    const requests = 10;
    for (let i = 0; i < requests; i++) {
      const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "one-call-each" })), body: chatBody() });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    const after = await quiet();
    const users = (after.object_calls.USERS ?? 0) - (before.object_calls.USERS ?? 0);
    // Each admission carries the previous request's settlement; the last one's goes alone.
    // One more is allowed for a machine so busy that a request came after a settlement's
    // 0.8 s hold (a settlement sent alone each time would be 2 per request).
    assert.ok(users >= requests + 1 && users <= requests + 2, `${users} calls to the user's object for ${requests} requests`);
  });
});

describe("reservations end to end, seen as the charge of an answer without usage", () => {
  const WEB_SEARCH = 7000;
  const setup = proxyFor(() => mock, { MAX_N: "3", ALLOWED_HOSTED_TOOLS: `web_search:${WEB_SEARCH}`, DAILY_TOKEN_BUDGET: "1000000", DAILY_BUDGET_USD: "5" });
  const noUsage = (match) => mock.faultNext({ usage: "none", match });

  test("/api/generate-text reserves the bytes it sends (system prompt included) and the output cap", async () => {
    const { status, text, upstream, spent } = await exchange(setup.proxy, "/api/generate-text", {}, noUsage);
    assert.equal(status, 200);
    assert.match(JSON.parse(text).result, /You said: promise/);
    assert.equal(upstream[0].json.messages[0].role, "system");
    assert.equal(spent.tokens.used, Buffer.byteLength(upstream[0].body) + 1024);
  });

  test("n choices reserve the output cap n times", async () => {
    const { status, upstream, spent } = await exchange(setup.proxy, "/v1/chat/completions", { n: 3, max_completion_tokens: 100 }, noUsage);
    assert.equal(status, 200);
    assert.equal(upstream[0].json.n, 3);
    assert.equal(spent.tokens.used, Buffer.byteLength(upstream[0].body) + 3 * 100);
  });

  test("web_search_options reserves the input twice with the search's reserve, the output cap, and the search's fee in dollars", async () => {
    const { status, upstream, spent } = await exchange(setup.proxy, "/v1/chat/completions", { web_search_options: {} }, noUsage);
    assert.equal(status, 200);
    const bytes = Buffer.byteLength(upstream[0].body);
    assert.equal(spent.tokens.used, (bytes + WEB_SEARCH) * 2 + 1024);
    const price = PRICES["gpt-4o-mini"];
    const worst = (BigInt((bytes + WEB_SEARCH) * 2) * price.input + 1024n * price.output + 999_999n) / 1_000_000n;
    assert.equal(spent.cost.used_usd, usd(worst + 10_000_000n), "the worst case at the model's price, and $0.01 for the search");
  });

  test("web_search_options with a usage report is charged the usage and one search's fee", async () => {
    const { upstream, spent, line } = await exchange(setup.proxy, "/v1/chat/completions", { web_search_options: {} });
    assert.equal(spent.tokens.used, usage(upstream[0].json).total_tokens);
    assert.equal(spent.cost.used_usd, usd(nanoUsd("gpt-4o-mini", usage(upstream[0].json)) + 10_000_000n));
    assert.equal(line.total_tokens, spent.tokens.used);
  });
});

describe("LOG_LEVEL=warn", () => {
  const setup = proxyFor(() => mock, { LOG_LEVEL: "warn" });

  test("drops the info lines of answered requests and keeps the warnings and errors", async () => {
    const ok = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "quiet" })), body: chatBody() });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const bad = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub: "quiet" })), body: chatBody({ max_tokens: 999_999 }) });
    assert.equal(bad.status, 400);
    await bad.arrayBuffer();
    mock.faultNext({ kind: "cut", match: (json) => json?.messages?.[0]?.content === "cut me" });
    const broken = await fetch(`${setup.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: browserHeaders(mintToken({ sub: "quiet" })),
      body: chatBody({ stream: true, messages: [{ role: "user", content: "cut me" }] }),
    });
    await bodyText(broken);
    // The 400's and the broken stream's lines are written; by then the 200's would have been.
    assert.equal((await logLineOf(setup.proxy, bad.headers.get("x-request-id"))).level, "warn");
    assert.equal((await logLineOf(setup.proxy, broken.headers.get("x-request-id"))).level, "error");
    assert.equal(setup.proxy.logs.filter((l) => l.request_id === ok.headers.get("x-request-id")).length, 0, "no info line");
    assert.ok(!setup.proxy.logs.some((l) => l.route && l.level === "info"), "no request's info line");
  });
});

describe("LOG_PROMPTS", () => {
  const logging = proxyFor(() => mock, { LOG_PROMPTS: "true" });

  test("=true adds the prompt's length in characters, never its text", async () => {
    const prompt = "Count these characters: é, ü and 🙂.";
    const response = await fetch(`${logging.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: browserHeaders(mintToken({ sub: "counted" })),
      body: chatBody({ messages: [{ role: "system", content: "Be brief." }, { role: "user", content: prompt }] }),
    });
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    const line = await logLineOf(logging.proxy, response.headers.get("x-request-id"));
    assert.equal(line.prompt_chars, [..."Be brief."].length + [...prompt].length);
    assert.ok(!JSON.stringify(logging.proxy.logs).includes("Count these characters"));
  });
});

describe("a usage report above the reservation", () => {
  // The reservation (about 350 tokens) fits; the usage reported (over 1,000) does not.
  const setup = proxyFor(() => mock, { DAILY_TOKEN_BUDGET: "600" });

  test("is charged as reported, logged as an overrun, and leaves the user nothing until midnight", async () => {
    const { status, upstream, line, spent } = await exchange(setup.proxy, "/v1/chat/completions", { max_completion_tokens: 100 }, (match) => mock.faultNext({ usage: "over", match }));
    assert.equal(status, 200);
    const reported = usage(upstream[0].json, { usage: "over" });
    assert.ok(reported.total_tokens > reservedTokens(upstream[0]), "the mock reported more than the reservation");
    assert.equal(spent.tokens.used, reported.total_tokens, "charged what OpenAI reported, not clamped");
    assert.equal(line.total_tokens, reported.total_tokens);
    assert.ok(spent.tokens.used > spent.tokens.limit, "the budget ends the day over by the overrun");
    assert.equal(spent.tokens.remaining, 0);
    const overrun = await eventually(10_000, () => setup.proxy.logs.find((l) => l.event === "overrun"), "the overrun log line");
    assert.match(overrun.detail, new RegExp(`charged ${reported.total_tokens} tokens`));
  });
});
