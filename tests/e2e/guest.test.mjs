// Guest access (issue 14) in workerd: a Turnstile token (checked by a mock siteverify on
// loopback) buys a short guest token; every guest token of one client shares that client's
// limits; guest tokens are neither user tokens nor admin tokens; no raw IP reaches a log.
//
// Clients are told apart by `CF-Connecting-IP`, which Cloudflare's edge sets and Miniflare
// passes through when a request carries it (and sets to the peer's address otherwise).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { startMockSiteverify, ACCEPTED_TOKEN, TURNSTILE_SECRET } from "../mock-siteverify.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, JWT_SECRET, chatBody, mintToken, reservedTokens, startProxy, within } from "./helpers.mjs";

const GUEST_TOKEN_SECRET = "guest-token-secret-for-e2e-tests-0123456789abcdef";
const ADMIN_TOKEN = "admin-token-for-guest-tests-0123456789abcdef";
const GUEST_ISSUER = "openai-edge-proxy/guest";
/** Every client address a test uses: none may appear in any log line. */
const CLIENT_IPS = new Set();

let upstream;
let siteverify;
before(async () => {
  upstream = await startMockUpstream();
  siteverify = await startMockSiteverify();
});
after(async () => {
  await upstream?.close();
  await siteverify?.close();
});

/** A proxy with guest access on, for the enclosing describe block. */
function proxyFor(bindings = {}) {
  const handle = {};
  before(async () => {
    handle.proxy = await startProxy({
      UPSTREAM_BASE_URL: upstream.url,
      OPENAI_API_KEY: upstream.apiKey,
      ADMIN_TOKEN,
      TURNSTILE_SECRET_KEY: TURNSTILE_SECRET,
      GUEST_TOKEN_SECRET,
      TURNSTILE_VERIFY_URL: siteverify.url,
      ...bindings,
    });
  });
  after(async () => {
    if (handle.proxy) assertNoClientAddress(handle.proxy.logs);
    await handle.proxy?.dispose();
  });
  return handle;
}

function assertNoClientAddress(logs) {
  const lines = logs.map((line) => JSON.stringify(line));
  for (const ip of CLIENT_IPS) {
    const leaked = lines.find((line) => line.includes(ip));
    assert.equal(leaked, undefined, `a log line carries the client address ${ip}`);
  }
}

/** A client of its own: a documentation address (RFC 5737) no other test uses. */
let nextClient = 1;
function newClient() {
  const ip = `198.51.100.${nextClient++}`;
  CLIENT_IPS.add(ip);
  return ip;
}

function mintGuest(proxy, ip, body = { turnstile_token: ACCEPTED_TOKEN }) {
  return fetch(`${proxy.url}/v1/guest`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: ALLOWED_ORIGIN, "cf-connecting-ip": ip },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function guestToken(proxy, ip) {
  const response = await mintGuest(proxy, ip);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).token;
}

function chat(proxy, token, ip, body = chatBody()) {
  return fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", origin: ALLOWED_ORIGIN, "cf-connecting-ip": ip },
    body,
  });
}

async function usageOf(proxy, token, ip) {
  return within(5000, (async () => {
    for (;;) {
      const response = await fetch(`${proxy.url}/v1/usage`, { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip } });
      assert.equal(response.status, 200);
      const usage = await response.json();
      if (usage.tokens.reserved === 0 && usage.streams.open === 0) return usage;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })(), "usage to settle");
}

const payloadOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url"));

/** Signs `claims` as an HS256 JWT with `secret`, as an attacker holding that secret would. */
function sign(claims, secret) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

describe("minting a guest token", () => {
  const setup = proxyFor();

  test("a Turnstile token siteverify accepts buys a short guest token, sent with what siteverify needs", async () => {
    const ip = newClient();
    const before = siteverify.requests.length;
    const response = await mintGuest(setup.proxy, ip);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const minted = await response.json();
    assert.deepEqual(Object.keys(minted).sort(), ["expires_in", "token", "token_type"]);
    assert.equal(minted.token_type, "Bearer");
    assert.equal(minted.expires_in, 900);
    const claims = payloadOf(minted.token);
    assert.equal(claims.iss, GUEST_ISSUER);
    assert.match(claims.sub, /^guest:[A-Za-z0-9_-]{22}$/);
    assert.equal(claims.exp - claims.iat, 900);

    const [call] = siteverify.requests.slice(before);
    assert.equal(call.contentType, "application/x-www-form-urlencoded");
    assert.equal(call.form.secret, TURNSTILE_SECRET);
    assert.equal(call.form.response, ACCEPTED_TOKEN);
    assert.equal(call.form.remoteip, ip);
    assert.match(call.form.idempotency_key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test("a refused or missing Turnstile token is a 403 turnstile_failed and mints nothing", async () => {
    const ip = newClient();
    for (const body of [{ turnstile_token: "a-forged-token" }, {}, { turnstile_token: "" }]) {
      const response = await mintGuest(setup.proxy, ip, body);
      assert.equal(response.status, 403, JSON.stringify(body));
      const { error } = await response.json();
      assert.equal(error.code, "turnstile_failed");
      assert.ok(!("token" in error));
    }
  });

  test("a malformed body is a 400 invalid_request and costs no siteverify call", async () => {
    const ip = newClient();
    const before = siteverify.requests.length;
    for (const body of ["not json", "[]", JSON.stringify({ turnstile_token: 42 })]) {
      const response = await mintGuest(setup.proxy, ip, body);
      assert.equal(response.status, 400, body);
      assert.equal((await response.json()).error.code, "invalid_request");
    }
    assert.equal(siteverify.requests.length, before);
  });

  test("siteverify unreachable fails closed with a 503; one lost answer is retried with the same idempotency key", async () => {
    const ip = newClient();
    siteverify.failNext(502, 2);
    const refused = await mintGuest(setup.proxy, ip);
    assert.equal(refused.status, 503);
    assert.equal((await refused.json()).error.code, "temporarily_unavailable");

    const before = siteverify.requests.length;
    siteverify.failNext(500, 1);
    const retried = await mintGuest(setup.proxy, ip);
    assert.equal(retried.status, 200);
    const calls = siteverify.requests.slice(before);
    assert.equal(calls.length, 2);
    assert.equal(calls[0].form.idempotency_key, calls[1].form.idempotency_key);
  });

  test("a minted guest token streams a chat on the guest plan's first model", async () => {
    const ip = newClient();
    const token = await guestToken(setup.proxy, ip);
    const response = await chat(setup.proxy, token, ip, chatBody({ stream: true }));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /text\/event-stream/);
    const text = await response.text();
    assert.match(text, /"content":"said: "/);
    assert.match(text, /data: \[DONE\]/);
    const sent = upstream.requests.at(-1).json;
    assert.equal(sent.max_completion_tokens, 256, "the guest plan's output cap");

    const models = await (await fetch(`${setup.proxy.url}/v1/models`, { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip } })).json();
    assert.deepEqual(models.data.map((model) => model.id), ["gpt-4o-mini"]);
    const refused = await chat(setup.proxy, token, ip, chatBody({ model: "gpt-4.1-nano" }));
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.code, "model_not_allowed");
  });

  test("three guest tokens minted from one client share one rate window and one budget", async () => {
    const ip = newClient();
    const tokens = [await guestToken(setup.proxy, ip), await guestToken(setup.proxy, ip), await guestToken(setup.proxy, ip)];
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      const response = await chat(setup.proxy, tokens[i % 3], ip);
      statuses.push(response.status);
      if (response.status === 429) {
        assert.equal((await response.json()).error.code, "rate_limit_exceeded");
        assert.ok(Number(response.headers.get("retry-after")) > 0);
      } else await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "5 requests per window for the client, not per token");

    // A fourth token of the same client starts from where the others left off.
    const fourth = await guestToken(setup.proxy, ip);
    const usage = await usageOf(setup.proxy, fourth, ip);
    assert.equal(usage.plan, "guest");
    assert.equal(usage.requests.remaining, 0);
    assert.equal(usage.requests.limit, 5);
    assert.equal(usage.cost.limit_usd, 0.01);
    assert.ok(usage.cost.used_usd > 0, "the client's budget carries what the other tokens spent");
    assert.equal(usage.tokens.used > 0, true);
    assert.equal((await chat(setup.proxy, fourth, ip)).status, 429);

    // Another client is untouched.
    const other = newClient();
    const response = await chat(setup.proxy, await guestToken(setup.proxy, other), other);
    assert.equal(response.status, 200);
    await response.arrayBuffer();
  });

  test("two IPv6 addresses of one /64 are one client: they share one rate window", async () => {
    const prefix = `2001:db8:${nextClient++}:7`;
    const [first, second] = [`${prefix}::1`, `${prefix}:ffff:0:0:9`];
    CLIENT_IPS.add(first).add(second);
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      const ip = i % 2 ? second : first;
      const response = await chat(setup.proxy, await guestToken(setup.proxy, ip), ip);
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "5 requests per window for the /64");
  });

  test("behind Pseudo IPv4, CF-Connecting-IPv6 names the client, not the class E address hashed from it", async () => {
    const prefix = `2001:db8:${nextClient++}:8`;
    CLIENT_IPS.add(prefix);
    const statuses = [];
    for (let i = 0; i < 6; i++) {
      // What Cloudflare's "Overwrite Headers" sends: a new class E address for every IPv6 address.
      const headers = { "cf-connecting-ip": `240.16.${nextClient}.${i + 1}`, "cf-connecting-ipv6": `${prefix}::${i + 1}` };
      const minted = await fetch(`${setup.proxy.url}/v1/guest`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ turnstile_token: ACCEPTED_TOKEN }),
      });
      assert.equal(minted.status, 200);
      assert.equal(siteverify.requests.at(-1).form.remoteip, `${prefix}::${i + 1}`, "siteverify sees the real address");
      const { token } = await minted.json();
      const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
        body: chatBody(),
      });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "one client, not six");
  });

  test("every guest token of one client sends OpenAI the same safety_identifier", async () => {
    const ip = newClient();
    const identifiers = [];
    for (const token of [await guestToken(setup.proxy, ip), await guestToken(setup.proxy, ip)]) {
      const content = `attribution ${token.slice(-12)}`;
      const response = await chat(setup.proxy, token, ip, chatBody({ messages: [{ role: "user", content }] }));
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      identifiers.push(upstream.requests.findLast((r) => r.json?.messages?.some((m) => m.content === content)).json.safety_identifier);
    }
    assert.match(identifiers[0], /^[A-Za-z0-9_-]{43}$/);
    assert.equal(identifiers[1], identifiers[0], "one visitor is one user to OpenAI's abuse monitoring");
    const other = newClient();
    const response = await chat(setup.proxy, await guestToken(setup.proxy, other), other);
    await response.arrayBuffer();
    assert.notEqual(upstream.requests.at(-1).json.safety_identifier, identifiers[0], "another client is another user");
  });

  test("user tokens claiming plan guest share their client's guest limits", async () => {
    const ip = newClient();
    const statuses = [];
    const visitor = `anonymous-visitor-${nextClient}`;
    for (let i = 0; i < 6; i++) {
      const response = await chat(setup.proxy, mintToken({ sub: `${visitor}-${i}`, plan: "guest" }), ip);
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "the guest plan's 5 requests for the client, not per token");
  });

  test("a guest token with an edited payload, signed with JWT_SECRET, or living too long is a 401", async () => {
    const ip = newClient();
    const token = await guestToken(setup.proxy, ip);
    const [header, , signature] = token.split(".");
    const claims = payloadOf(token);
    const edited = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: "guest:someone-else" })).toString("base64url")}.${signature}`;
    const calls = upstream.requests.length;
    const attempts = {
      edited,
      "signed with JWT_SECRET": sign(claims, JWT_SECRET),
      "living longer than GUEST_TOKEN_TTL_SECONDS": sign({ ...claims, exp: claims.iat + 3600 }, GUEST_TOKEN_SECRET),
      "a user token claiming the guest issuer": mintToken({ iss: GUEST_ISSUER, sub: "guest:abc" }),
    };
    for (const [what, forged] of Object.entries(attempts)) {
      const response = await chat(setup.proxy, forged, ip);
      assert.equal(response.status, 401, what);
      assert.equal((await response.json()).error.code, "invalid_token", what);
    }
    assert.equal(upstream.requests.length, calls, "nothing went upstream");
  });

  test("a guest token never verifies as a user token nor opens an admin route", async () => {
    const ip = newClient();
    const token = await guestToken(setup.proxy, ip);
    // Signed with the guest secret but without the guest issuer: checked as a user token, it fails.
    const claims = payloadOf(token);
    delete claims.iss;
    const response = await chat(setup.proxy, sign(claims, GUEST_TOKEN_SECRET), ip);
    assert.equal(response.status, 401);
    // A user token may not take a guest's name (it would share the guest's object).
    const named = await chat(setup.proxy, mintToken({ sub: claims.sub }), ip);
    assert.equal(named.status, 401);
    for (const path of ["/admin/usage", `/admin/users/${encodeURIComponent(claims.sub)}/usage`, "/admin/budget"]) {
      const admin = await fetch(`${setup.proxy.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(admin.status, 401, path);
      assert.equal((await admin.json()).error.code, "invalid_admin_token", path);
    }
  });
});

test("no log line carries a client's address, though every guest request is logged with its guest sub", async () => {
  // Runs after the suite above; its proxy is gone, so check a fresh one through a whole flow.
  const proxy = await startProxy({
    UPSTREAM_BASE_URL: upstream.url,
    OPENAI_API_KEY: upstream.apiKey,
    TURNSTILE_SECRET_KEY: TURNSTILE_SECRET,
    GUEST_TOKEN_SECRET,
    TURNSTILE_VERIFY_URL: siteverify.url,
  });
  try {
    const ip = newClient();
    await mintGuest(proxy, ip, { turnstile_token: "refused" });
    const token = await guestToken(proxy, ip);
    const response = await chat(proxy, token, ip);
    await response.arrayBuffer();
    const sub = payloadOf(token).sub;
    const lines = await within(5000, (async () => {
      for (;;) {
        const routes = proxy.logs.filter((line) => line.sub === sub).map((line) => line.route);
        if (routes.includes("chat.completions")) return proxy.logs;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(), "the chat's log line");
    assert.ok(lines.some((line) => line.route === "guest.mint" && line.error_code === "turnstile_failed"));
    assert.ok(lines.some((line) => line.route === "guest.mint" && line.status === 200 && line.plan === "guest"));
    assert.equal(siteverify.requests.at(-1).form.remoteip, ip, "siteverify did get the address");
    assertNoClientAddress(lines);
  } finally {
    await proxy.dispose();
  }
});

describe("the mint limit", () => {
  const setup = proxyFor({ GUEST_MINTS_PER_HOUR: "2" });

  test("a client past GUEST_MINTS_PER_HOUR gets a 429 with Retry-After and costs no siteverify call", async () => {
    const ip = newClient();
    const firstBefore = Date.now();
    await guestToken(setup.proxy, ip);
    const firstAfter = Date.now();
    await guestToken(setup.proxy, ip);
    const before = siteverify.requests.length;
    const refusedBefore = Date.now();
    const refused = await mintGuest(setup.proxy, ip);
    const refusedAfter = Date.now();
    assert.equal(refused.status, 429);
    assert.equal((await refused.json()).error.code, "rate_limit_exceeded");
    // Exactly the seconds until the first mint leaves the sliding hour, rounded up.
    const wait = Number(refused.headers.get("retry-after"));
    const earliest = Math.ceil((firstBefore + 3_600_000 - refusedAfter) / 1000);
    const latest = Math.ceil((firstAfter + 3_600_000 - refusedBefore) / 1000);
    assert.ok(wait >= earliest && wait <= latest, `Retry-After ${wait}, expected ${earliest}..${latest}`);
    assert.equal(refused.headers.get("access-control-expose-headers")?.toLowerCase().includes("retry-after"), true);
    assert.equal(siteverify.requests.length, before);
    // Another client mints as before.
    await guestToken(setup.proxy, newClient());
  });
});

describe("the budget of all guests", () => {
  // Less than one guest request's worst case: every guest is refused, users are not.
  const setup = proxyFor({ GLOBAL_GUEST_DAILY_BUDGET_USD: "0.00001" });

  test("GLOBAL_GUEST_DAILY_BUDGET_USD refuses guests and leaves signed-in users alone", async () => {
    const ip = newClient();
    const refused = await chat(setup.proxy, await guestToken(setup.proxy, ip), ip);
    assert.equal(refused.status, 429);
    const { error } = await refused.json();
    assert.equal(error.code, "insufficient_quota");
    assert.match(error.message, /service's daily spending budget/);
    const user = await chat(setup.proxy, mintToken({ sub: "signed-in-user" }), ip);
    assert.equal(user.status, 200);
    await user.arrayBuffer();
    // The operator sees the guests' budget beside the global one (none here), nothing spent.
    const budget = await (await fetch(`${setup.proxy.url}/admin/budget`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    assert.equal(budget.tokens, null);
    assert.equal(budget.guests.cost.limit_usd, 0.00001);
    assert.equal(budget.guests.cost.used_usd, 0);
    assert.equal(budget.guests.cost.leased_usd, 0);
    assert.equal(budget.guests.cost.remaining_usd, 0.00001);
  });
});

/**
 * Sends requests from `tokens` of one client (in turn) until one is refused, each answered
 * without a usage report, so each is charged its whole reservation. Returns what reached
 * upstream and the refusal.
 */
async function spendUntilRefused(proxy, tokens, ip) {
  const sent = [];
  for (let i = 0; i < 20; i++) {
    const content = `guest spend ${ip} ${String(i).padStart(2, "0")}`;
    upstream.faultNext({ usage: "none", match: (json) => json?.messages?.[0]?.content === content });
    const response = await chat(proxy, tokens[i % tokens.length], ip, chatBody({ messages: [{ role: "user", content }] }));
    if (response.status === 429) return { sent, refused: response };
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    sent.push(upstream.requests.findLast((r) => r.json?.messages?.[0]?.content === content));
    await usageOf(proxy, tokens[0], ip); // settled before the next one
  }
  throw new Error("never refused");
}

describe("the guest plan's token budget, per client", () => {
  const setup = proxyFor({ PLANS: JSON.stringify({ guest: { RATE_LIMIT_REQUESTS: 100, MAX_OUTPUT_TOKENS: 100, DAILY_TOKEN_BUDGET: 1000 } }) });

  test("is shared by every guest token of a client: exactly as many worst cases as fit are admitted", async () => {
    const ip = newClient();
    const tokens = [await guestToken(setup.proxy, ip), await guestToken(setup.proxy, ip)];
    const { sent, refused } = await spendUntilRefused(setup.proxy, tokens, ip);
    const each = reservedTokens(sent[0]);
    assert.equal(each, Buffer.byteLength(sent[0].body) + 100, "the guest plan's output cap is reserved");
    assert.ok(sent.every((r) => reservedTokens(r) === each), "one reservation for all");
    assert.equal(sent.length, Math.floor(1000 / each), `${sent.length} admitted at ${each} tokens each`);
    const { error } = await refused.json();
    assert.equal(error.code, "insufficient_quota");
    const standing = await usageOf(setup.proxy, tokens[1], ip);
    assert.equal(standing.tokens.limit, 1000);
    assert.equal(standing.tokens.used, sent.length * each, "no usage came: each charged its whole reservation");
    // A new token of the same client is refused too; another client is not.
    const third = await chat(setup.proxy, await guestToken(setup.proxy, ip), ip);
    assert.equal(third.status, 429);
    await third.arrayBuffer();
    const other = newClient();
    const fresh = await chat(setup.proxy, await guestToken(setup.proxy, other), other);
    assert.equal(fresh.status, 200);
    await fresh.arrayBuffer();
  });
});

describe("the guest plan's dollar budget, per client", () => {
  const setup = proxyFor({ PLANS: JSON.stringify({ guest: { RATE_LIMIT_REQUESTS: 100, MAX_OUTPUT_TOKENS: 100, DAILY_BUDGET_USD: 0.0005 } }) });

  test("is shared by every guest token of a client: exactly as many worst cases in dollars as fit are admitted", async () => {
    const ip = newClient();
    const tokens = [await guestToken(setup.proxy, ip), await guestToken(setup.proxy, ip)];
    const { sent, refused } = await spendUntilRefused(setup.proxy, tokens, ip);
    // gpt-4o-mini: $0.15 per million input tokens (each forwarded byte), $0.60 per million output.
    const worstNano = (request) => Buffer.byteLength(request.body) * 150 + 100 * 600;
    const each = worstNano(sent[0]);
    assert.ok(sent.every((r) => worstNano(r) === each), "one worst case for all");
    assert.equal(sent.length, Math.floor(500_000 / each), `${sent.length} admitted at ${each} nano-USD each`);
    const { error } = await refused.json();
    assert.equal(error.code, "insufficient_quota");
    assert.match(error.message, /daily spending budget/);
    const standing = await usageOf(setup.proxy, tokens[1], ip);
    assert.equal(standing.cost.limit_usd, 0.0005);
    assert.equal(standing.cost.used_usd, (sent.length * each) / 1e9, "no usage came: each charged its whole dollar reservation");
  });
});

describe("a hostname list", () => {
  const setup = proxyFor({ TURNSTILE_HOSTNAMES: "docs.example.com" });

  test("a challenge solved on another hostname is refused", async () => {
    const response = await mintGuest(setup.proxy, newClient());
    assert.equal(response.status, 403);
    assert.equal((await response.json()).error.code, "turnstile_failed");
  });
});

describe("half a configuration", () => {
  const setup = {};
  before(async () => {
    setup.proxy = await startProxy({ TURNSTILE_SECRET_KEY: TURNSTILE_SECRET, TURNSTILE_VERIFY_URL: siteverify.url });
  });
  after(() => setup.proxy?.dispose());

  test("TURNSTILE_SECRET_KEY without GUEST_TOKEN_SECRET leaves /v1/guest a 404 and logs a warning", async () => {
    for (const method of ["POST", "GET"]) {
      const response = await fetch(`${setup.proxy.url}/v1/guest`, { method, headers: { "content-type": "application/json" }, body: method === "POST" ? "{}" : undefined });
      assert.equal(response.status, 404, method);
      assert.equal((await response.json()).error.code, "not_found");
    }
    const warning = setup.proxy.logs.find((line) => line.event === "config_warning");
    assert.match(warning?.detail ?? "", /GUEST_TOKEN_SECRET/);
  });
});
