// Budgets in dollars, plans per user, and an operator's plan override, in workerd with real
// Durable Objects: what a user is charged is the mock's reported usage at the model's price,
// exactly, and no order or race of requests spends past a budget.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, nanoUsd, proxyFor, settledUsage, startProxy, usageOf, usd, within, worstNanoUsd } from "./helpers.mjs";

const ADMIN_TOKEN = "admin-token-for-plan-tests-0123456789abcdef";

const sum = (values) => values.reduce((total, value) => total + value, 0n);

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const tokenOf = (sub, plan) => mintToken(plan === undefined ? { sub } : { sub, plan });

const chat = (proxy, token, body = chatBody()) =>
  fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body });

function admin(proxy, method, path, body) {
  return fetch(`${proxy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

describe("a daily budget in dollars", () => {
  const setup = proxyFor(() => mock, { ADMIN_TOKEN, DAILY_BUDGET_USD: "0.0002", MAX_OUTPUT_TOKENS: "200" });
  // A cache key makes the mock report half the prompt cached, priced at the cached rate.
  const body = chatBody({ max_tokens: 200, prompt_cache_key: "greeting", messages: [{ role: "user", content: "What does this cost?" }] });

  test("admits a user until the next worst case would not fit, then answers 429 insufficient_quota", async () => {
    const token = tokenOf("usd-spender");
    const before = mock.requests.length;
    const standings = [];
    let refused;
    for (let i = 0; i < 60 && !refused; i++) {
      standings.push(await settledUsage(setup.proxy, token));
      const response = await chat(setup.proxy, token, body);
      if (response.status === 200) await response.arrayBuffer();
      else refused = response;
    }
    assert.ok(refused, "the budget ran out within 60 requests");
    assert.equal(refused.status, 429);
    const { error } = await refused.json();
    assert.equal(error.code, "insufficient_quota");
    assert.equal(error.type, "insufficient_quota");
    assert.match(error.message, /daily spending budget/);
    assert.ok(Number(refused.headers.get("retry-after")) > 0);

    const calls = mock.requests.slice(before);
    assert.ok(calls.length >= 2, `${calls.length} admitted`);
    const worst = usd(worstNanoUsd("gpt-4o-mini", calls[0].body, 200));
    calls.forEach((_, i) => assert.ok(standings[i].cost.remaining_usd >= worst, `request ${i + 1} fitted its worst case`));
    assert.ok(standings.at(-1).cost.remaining_usd < worst, "refused only once the worst case no longer fitted");

    const charged = sum(calls.map((call) => nanoUsd("gpt-4o-mini", usage(call.json))));
    const spent = await settledUsage(setup.proxy, token);
    assert.equal(spent.plan, "default");
    assert.deepEqual(spent.cost, {
      limit_usd: 0.0002,
      used_usd: usd(charged),
      reserved_usd: 0,
      remaining_usd: usd(200_000n - charged),
      reset_seconds: spent.cost.reset_seconds,
    });
    assert.ok(spent.cost.used_usd <= spent.cost.limit_usd);
    assert.ok(spent.cost.reset_seconds > 0 && spent.cost.reset_seconds <= 86_400);
  });

  test("the log line and the day's usage index carry the cost in dollars", async () => {
    const token = tokenOf("usd-logged");
    const response = await chat(setup.proxy, token, body);
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    const call = mock.requests.at(-1);
    const cost = usd(nanoUsd("gpt-4o-mini", usage(call.json)));
    const line = setup.proxy.logs.find((l) => l.route === "chat.completions" && l.sub === "usd-logged");
    assert.equal(line.cost_usd, cost);
    assert.equal(line.plan, "default");
    const listed = await within(15_000, (async () => {
      for (;;) {
        const day = await (await admin(setup.proxy, "GET", "/admin/usage")).json();
        const entry = day.users.find((user) => user.sub === "usd-logged");
        if (entry) return entry;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(), "the usage index to list the user");
    assert.equal(listed.total_usd, cost);
    assert.equal(listed.total_tokens, usage(call.json).total_tokens);
  });
});

describe("a dollar budget under concurrency", () => {
  const setup = proxyFor(() => mock, { ADMIN_TOKEN, DAILY_BUDGET_USD: "0.001", MAX_OUTPUT_TOKENS: "200", MAX_CONCURRENT_STREAMS: "50" });

  test("50 concurrent streams: exactly as many worst cases as fit $0.001 are admitted, and each is charged its usage at its price", async () => {
    const token = tokenOf("usd-racer");
    const before = mock.requests.length;
    const release = mock.pauseStreams();
    let responses;
    let held;
    try {
      // Bodies of one length, so every request's worst case is the same and the number that fits is exact.
      const body = (i) => chatBody({ stream: true, max_tokens: 200, messages: [{ role: "user", content: `race ${String(i).padStart(2, "0")}` }] });
      responses = await within(15_000, Promise.all(Array.from({ length: 50 }, (_, i) => chat(setup.proxy, token, body(i)))), "50 streams");
      held = await usageOf(setup.proxy, token);
    } finally {
      release();
    }
    const admitted = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    assert.equal(admitted.length + refused.length, 50);
    const calls = mock.requests.slice(before);
    assert.equal(calls.length, admitted.length, "refused requests never reach upstream");
    // The worst case the proxy must have reserved, from what it forwarded (README, "Plans and prices").
    const worst = calls.map((call) => worstNanoUsd("gpt-4o-mini", call.body, 200));
    assert.equal(new Set(worst).size, 1, "one worst case for all");
    assert.equal(BigInt(admitted.length), 1_000_000n / worst[0], `admitted ${admitted.length} at ${worst[0]} nano-USD each`);
    // While the streams are held open: reserved is the admitted worst cases, and nothing passes the budget.
    assert.equal(held.cost.used_usd, 0);
    assert.equal(held.cost.reserved_usd, usd(BigInt(admitted.length) * worst[0]));
    assert.ok(held.cost.used_usd + held.cost.reserved_usd <= 0.001);
    assert.equal(held.tokens.reserved, calls.reduce((total, call) => total + Buffer.byteLength(call.body) + 200, 0));
    for (const response of refused) {
      assert.equal((await response.json()).error.code, "insufficient_quota");
      assert.equal(response.headers.get("retry-after"), "2", "only requests under way stand in the way");
    }
    await Promise.all(admitted.map((response) => within(5000, response.text(), "stream to end")));

    const charged = sum(calls.map((call) => nanoUsd("gpt-4o-mini", usage(call.json))));
    const spent = await settledUsage(setup.proxy, token);
    assert.equal(spent.cost.used_usd, usd(charged));
    assert.equal(spent.cost.reserved_usd, 0);
  });
});

describe("a global budget in dollars", () => {
  // Room for one request's worst case (about $0.00016: 120,000 nano-USD of output cap plus its
  // 200-odd body bytes as input) and not for two.
  const setup = proxyFor(() => mock, { ADMIN_TOKEN, GLOBAL_DAILY_BUDGET_USD: "0.0002", MAX_OUTPUT_TOKENS: "200" });

  test("caps all users together, and the user it refuses keeps their own budget", async () => {
    const release = mock.pauseStreams();
    let first;
    try {
      first = await chat(setup.proxy, tokenOf("usd-global-1"), chatBody({ stream: true }));
      assert.equal(first.status, 200);
      const second = await chat(setup.proxy, tokenOf("usd-global-2"), chatBody({ stream: true }));
      assert.equal(second.status, 429);
      const { error } = await second.json();
      assert.equal(error.code, "insufficient_quota");
      assert.match(error.message, /service's daily spending budget/);
      const own = await settledUsage(setup.proxy, tokenOf("usd-global-2"));
      assert.equal(own.cost.used_usd + own.cost.reserved_usd, 0, "the refused user's reservation was given back");
    } finally {
      release();
    }
    await within(5000, first.text(), "stream to end");
  });
});

describe("plans", () => {
  const setup = proxyFor(() => mock, {
    ADMIN_TOKEN,
    ALLOWED_MODELS: "gpt-4o-mini",
    PLANS: JSON.stringify({ free: { RATE_LIMIT_REQUESTS: 2 }, pro: { RATE_LIMIT_REQUESTS: 50, ALLOWED_MODELS: "gpt-4o-mini,gpt-4.1-nano" } }),
  });
  const nano = chatBody({ model: "gpt-4.1-nano" });

  test("two plans with different rate limits and model lists behave differently for two tokens", async () => {
    const free = tokenOf("plan-free-user", "free");
    const pro = tokenOf("plan-pro-user", "pro");

    const refusedModel = await chat(setup.proxy, free, nano);
    assert.equal(refusedModel.status, 400);
    assert.equal((await refusedModel.json()).error.code, "model_not_allowed");
    for (let i = 0; i < 2; i++) {
      const response = await chat(setup.proxy, free);
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    const limited = await chat(setup.proxy, free);
    assert.equal(limited.status, 429);
    assert.equal((await limited.json()).error.code, "rate_limit_exceeded");

    for (const body of [nano, chatBody(), chatBody()]) {
      const response = await chat(setup.proxy, pro, body);
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    const [freeUsage, proUsage] = [await usageOf(setup.proxy, free), await usageOf(setup.proxy, pro)];
    assert.deepEqual([freeUsage.plan, freeUsage.requests.limit], ["free", 2]);
    assert.deepEqual([proUsage.plan, proUsage.requests.limit, proUsage.requests.remaining], ["pro", 50, 47]);
    assert.equal(proUsage.cost.limit_usd, null, "no dollar budget");
    assert.equal(proUsage.cost.remaining_usd, null);
    assert.ok(proUsage.cost.used_usd > 0, "spending is shown without a dollar budget too");

    const models = async (token) => (await (await fetch(`${setup.proxy.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).json()).data.map((m) => m.id);
    assert.deepEqual(await models(free), ["gpt-4o-mini"]);
    assert.deepEqual(await models(pro), ["gpt-4o-mini", "gpt-4.1-nano"]);
  });

  test("a token naming a plan the proxy lacks gets 403 unknown_plan, and costs nothing", async () => {
    const before = mock.requests.length;
    const gold = tokenOf("plan-gold-user", "gold");
    for (const response of [await chat(setup.proxy, gold), await fetch(`${setup.proxy.url}/v1/usage`, { headers: { authorization: `Bearer ${gold}` } })]) {
      assert.equal(response.status, 403);
      const { error } = await response.json();
      assert.deepEqual([error.code, error.type], ["unknown_plan", "permission_error"]);
    }
    assert.equal(mock.requests.length, before, "nothing went upstream");
    const seen = await (await admin(setup.proxy, "GET", "/admin/users/plan-gold-user/usage")).json();
    assert.equal(seen.requests.remaining, seen.requests.limit, "no request was counted");
    assert.equal(seen.plan_source, "default", "the user's object never saw a request");
    const line = setup.proxy.logs.find((l) => l.sub === "plan-gold-user" && l.error_code === "unknown_plan");
    assert.match(line.detail, /gold/);
  });

  test("an override changes a user's limits from the next request, and lifting it restores the claim's plan", async () => {
    const token = tokenOf("plan-upgraded", "free");
    const first = await chat(setup.proxy, token);
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    assert.equal((await chat(setup.proxy, token, nano)).status, 400, "free has no gpt-4.1-nano");

    const set = await admin(setup.proxy, "PUT", "/admin/users/plan-upgraded/plan", { plan: "pro" });
    assert.equal(set.status, 200);
    const setView = await set.json();
    assert.deepEqual([setView.plan, setView.plan_source, setView.requests.limit], ["pro", "override", 50]);

    const upgraded = await chat(setup.proxy, token, nano);
    assert.equal(upgraded.status, 200, "the override wins over the token's claim at once");
    await upgraded.arrayBuffer();
    const onPro = await usageOf(setup.proxy, token);
    assert.deepEqual([onPro.plan, onPro.requests.limit, onPro.requests.remaining], ["pro", 50, 48], "today's use counts against the new limits");
    const seen = await (await admin(setup.proxy, "GET", "/admin/users/plan-upgraded/usage")).json();
    assert.deepEqual([seen.plan, seen.plan_source], ["pro", "override"]);

    const lifted = await admin(setup.proxy, "DELETE", "/admin/users/plan-upgraded/plan");
    assert.equal(lifted.status, 200);
    const liftedView = await lifted.json();
    assert.deepEqual([liftedView.plan, liftedView.plan_source, liftedView.requests.limit], ["free", "claim", 2]);

    const limited = await chat(setup.proxy, token);
    assert.equal(limited.status, 429, "back on free, whose 2 requests are used up");
    assert.equal((await limited.json()).error.code, "rate_limit_exceeded");
    const refused = await chat(setup.proxy, token, nano);
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).error.code, "model_not_allowed");
    assert.equal((await usageOf(setup.proxy, token)).plan, "free");
  });

  test("an override must name a plan the proxy has", async () => {
    for (const body of [{ plan: "gold" }, { plan: 3 }, {}]) {
      const response = await admin(setup.proxy, "PUT", "/admin/users/plan-someone/plan", body);
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal((await response.json()).error.param, "plan");
    }
    const toDefault = await admin(setup.proxy, "PUT", "/admin/users/plan-someone/plan", { plan: "default" });
    assert.deepEqual(await toDefault.json().then((v) => [v.plan, v.plan_source]), ["default", "override"]);
  });
});

describe("a model without a price under a dollar budget", () => {
  for (const [what, bindings] of [
    ["at the top level", { DAILY_BUDGET_USD: "1", ALLOWED_MODELS: "gpt-4o-mini,o3-pro" }],
    ["in a plan", { PLANS: JSON.stringify({ free: { DAILY_BUDGET_USD: 0.1 }, pro: { ALLOWED_MODELS: "o3-pro" } }) }],
  ]) {
    test(`is a configuration error ${what}: every proxy route answers 500 and the log names the model`, async () => {
      const proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ...bindings });
      try {
        for (const path of ["/v1/chat/completions", "/v1/usage"]) {
          const response = await fetch(`${proxy.url}${path}`, { method: path === "/v1/usage" ? "GET" : "POST", headers: browserHeaders(tokenOf("priceless")), body: path === "/v1/usage" ? undefined : chatBody() });
          assert.equal(response.status, 500, path);
          assert.equal((await response.json()).error.code, "proxy_misconfigured");
        }
        const line = proxy.logs.find((l) => l.error_code === "proxy_misconfigured");
        assert.match(line.detail, /"o3-pro"/);
      } finally {
        await proxy.dispose();
      }
    });
  }

  test("is fine once MODEL_PRICES prices it", async () => {
    const proxy = await startProxy({
      UPSTREAM_BASE_URL: mock.url,
      OPENAI_API_KEY: mock.apiKey,
      DAILY_BUDGET_USD: "1",
      ALLOWED_MODELS: "gpt-4o-mini,o3-pro",
      MODEL_PRICES: JSON.stringify({ "o3-pro": { input: 20, output: 80 } }),
    });
    try {
      const response = await chat(proxy, tokenOf("priced"), chatBody({ model: "o3-pro" }));
      assert.equal(response.status, 200);
      const { usage: reported } = await response.json();
      const spent = await settledUsage(proxy, tokenOf("priced"));
      const micro = BigInt(reported.prompt_tokens) * 20_000_000_000n + BigInt(reported.completion_tokens) * 80_000_000_000n;
      assert.equal(spent.cost.used_usd, usd((micro + 999_999n) / 1_000_000n));
    } finally {
      await proxy.dispose();
    }
  });
});
