// The operator console (GET /admin) and the admin API it is built on: usage over a range of
// days, the global budget, and, in real headless Chromium, signing in, seeing who spent what,
// revoking and lifting, plan overrides, a wrong token, a phone-sized screen and the keyboard.
// Without Chromium the browser tests skip, except under CI=true, where they fail.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { chatBody, chromiumMissing, launchChromium, mintToken, startProxy, within } from "./helpers.mjs";

const noBrowser = chromiumMissing;
const RESULTS = new URL("../../test-results/", import.meta.url);
const ADMIN_TOKEN = "admin-token-for-console-tests-0123456789abcdef";
// A dollar per thousand tokens, so that a few mock requests cost whole cents.
const PRICE_USD_PER_MILLION = 1000;

let mock;
let proxy;
let bare;
let browser;

before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    ADMIN_TOKEN,
    DAILY_TOKEN_BUDGET: "100000",
    GLOBAL_DAILY_TOKEN_BUDGET: "1000000",
    MODEL_PRICES: JSON.stringify({ "gpt-4o-mini": { input: PRICE_USD_PER_MILLION, output: PRICE_USD_PER_MILLION } }),
    DAILY_BUDGET_USD: "100",
    GLOBAL_DAILY_BUDGET_USD: "1000",
    PLANS: JSON.stringify({ pro: { DAILY_TOKEN_BUDGET: 500000 } }),
    VOICE_MODELS: "gpt-realtime-2.1-mini",
  });
  bare = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey });
  if (!noBrowser) {
    browser = await launchChromium();
  }
});
after(async () => {
  await browser?.close();
  await proxy?.dispose();
  await bare?.dispose();
  await mock?.close();
});

const PER_CALL = usage(JSON.parse(chatBody())).total_tokens;

function admin(path, init = {}) {
  return fetch(`${proxy.url}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers } });
}
async function adminJson(path) {
  const response = await admin(path);
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}
async function chat(sub, token = mintToken({ sub })) {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: chatBody(),
  });
  await response.arrayBuffer();
  return response.status;
}
/** Waits until today's index lists `sub` with `tokens` (users' objects send it within seconds). */
async function indexed(sub, tokens) {
  await within(15_000, (async () => {
    for (;;) {
      const { users } = await adminJson("/admin/usage?limit=1000");
      if (users.some((user) => user.sub === sub && user.total_tokens === tokens)) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })(), `${sub} with ${tokens} tokens in the day index`);
}
function addDays(day, n) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + n);
  return date.toISOString().slice(0, 10);
}

// ---- The admin API ----

test("GET /admin/usage?from&to has every day of the range, empty days included, with each day's totals and top spenders", async () => {
  for (let i = 0; i < 2; i++) assert.equal(await chat("ranger"), 200);
  await indexed("ranger", 2 * PER_CALL);
  const { day: today } = await adminJson("/admin/budget");
  const from = addDays(today, -2);
  const report = await adminJson(`/admin/usage?from=${from}&to=${today}`);
  assert.equal(report.from, from);
  assert.equal(report.to, today);
  assert.deepEqual(report.days.map((day) => day.day), [from, addDays(today, -1), today]);
  for (const empty of report.days.slice(0, 2)) {
    assert.deepEqual([empty.total_tokens, empty.user_count, empty.top], [0, 0, []]);
  }
  const last = report.days[2];
  const ranger = last.top.find((user) => user.sub === "ranger");
  assert.equal(ranger.total_tokens, 2 * PER_CALL);
  const { users } = await adminJson(`/admin/usage?day=${today}&limit=1000`);
  assert.equal(last.user_count, users.length);
  assert.equal(last.total_tokens, users.reduce((sum, user) => sum + user.total_tokens, 0));
});

test("a range of 31 days is answered, and one of 32 days, backwards or half given is a 400 naming the parameter", async () => {
  const month = await adminJson("/admin/usage?from=2026-01-01&to=2026-01-31");
  assert.equal(month.days.length, 31);
  for (const [query, param] of [
    ["from=2026-01-01&to=2026-02-01", "to"],
    ["from=2026-03-02&to=2026-03-01", "from"],
    ["from=2026-03-01", "to"],
    ["from=2026-02-30&to=2026-03-01", "from"],
  ]) {
    const response = await admin(`/admin/usage?${query}`);
    assert.equal(response.status, 400, query);
    assert.equal((await response.json()).error.param, param, query);
  }
});

test("GET /admin/budget shows today's spending against the global budget", async () => {
  assert.equal(await chat("budgeted"), 200);
  await indexed("budgeted", PER_CALL);
  const budget = await adminJson("/admin/budget");
  assert.match(budget.day, /^\d{4}-\d{2}-\d{2}$/);
  assert.equal(budget.tokens.limit, 1000000);
  // Users' objects spend from leases and report at a top-up or a give-back: what they spent is
  // within what is used, reserved or leased, and the four parts are the whole budget.
  const { used, reserved, leased, remaining } = budget.tokens;
  assert.ok(used + reserved + leased >= 3 * PER_CALL, JSON.stringify(budget.tokens));
  assert.equal(remaining, budget.tokens.limit - used - reserved - leased);
  const { used_usd, reserved_usd, leased_usd, remaining_usd } = budget.cost;
  assert.ok(Math.abs(used_usd + reserved_usd + leased_usd + remaining_usd - 1000) < 1e-6, JSON.stringify(budget.cost));
  const stranger = await fetch(`${proxy.url}/admin/budget`, { headers: { authorization: `Bearer ${mintToken()}` } });
  assert.equal(stranger.status, 401);
});

test("a day's dollars in the range are what its users' usage cost at the configured prices", async () => {
  assert.equal(await chat("payer"), 200);
  await indexed("payer", PER_CALL);
  const { day: today } = await adminJson("/admin/budget");
  const report = await adminJson(`/admin/usage?day=${today}&limit=1000`);
  const payer = report.users.find((user) => user.sub === "payer");
  assert.ok(Math.abs(payer.total_usd - (PER_CALL * PRICE_USD_PER_MILLION) / 1e6) < 1e-9, `${payer.total_usd}`);
  const sum = report.users.reduce((total, user) => total + user.total_usd, 0);
  assert.ok(Math.abs(report.total_usd - sum) < 1e-9);
});

test("the console page and its files are served with their types and a strict CSP", async () => {
  const page = await fetch(`${proxy.url}/admin`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = page.headers.get("content-security-policy");
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(directive), `${directive} in ${csp}`);
  }
  assert.ok(!csp.includes("unsafe"), csp);
  const html = await page.text();
  assert.ok(!/<script(?![^>]*\ssrc=)[^>]*>/i.test(html), "an inline script");
  assert.ok(!/\sstyle=|\son[a-z]+=/i.test(html), "an inline style or handler");
  for (const [path, type] of [["/admin/console.js", "text/javascript"], ["/admin/console.css", "text/css"]]) {
    const file = await fetch(`${proxy.url}${path}`);
    assert.equal(file.status, 200, path);
    assert.equal(file.headers.get("content-type"), `${type}; charset=utf-8`);
    assert.equal(file.headers.get("x-content-type-options"), "nosniff");
    assert.ok((await file.text()).length > 100);
  }
});

test("without ADMIN_TOKEN the console is a 404, like the admin routes", async () => {
  for (const path of ["/admin", "/admin/console.js", "/admin/budget", "/admin/usage?from=2026-01-01&to=2026-01-02"]) {
    const response = await fetch(`${bare.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(response.status, 404, path);
    await response.arrayBuffer();
  }
});

// ---- The page in Chromium ----

/** A fresh tab (its own sessionStorage) that records console errors and uncaught exceptions. */
async function openConsole({ width = 1100, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, locale: "en-US", timezoneId: "America/New_York" });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  page.on("pageerror", (error) => errors.push(error.message));
  const response = await page.goto(`${proxy.url}/admin`);
  return { page, errors, response, close: () => context.close() };
}
async function signIn(page, token = ADMIN_TOKEN) {
  await page.fill("#token", token);
  await page.press("#token", "Enter");
}
async function lookUp(page, sub) {
  await page.fill("#sub", sub);
  await page.press("#sub", "Enter");
  await page.waitForFunction((sub) => document.getElementById("user-sub").textContent === sub && !document.getElementById("user").hidden, sub, { timeout: 5000 });
}
async function confirm(page) {
  await page.waitForSelector("#confirm[open]", { timeout: 5000 });
  await page.click("#confirm-ok");
}
const text = (page, selector) => page.textContent(selector);

test("the console asks for the token, then shows today's top user with their tokens, and no console errors", { skip: noBrowser }, async () => {
  for (let i = 0; i < 3; i++) assert.equal(await chat("spender"), 200);
  await indexed("spender", 3 * PER_CALL);
  const { page, errors, response, close } = await openConsole();
  try {
    assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
    assert.equal(await page.isVisible("#console"), false, "nothing shown before the token");
    await signIn(page);
    await page.waitForSelector('#top-users li[data-sub="spender"]', { timeout: 5000 });
    const figure = await text(page, '#top-users li[data-sub="spender"] .figure');
    assert.ok(figure.includes(`${3 * PER_CALL} tokens`), figure);
    assert.match(await text(page, "#budget"), /Global token budget: .* of 1M tokens/);
    assert.equal(await page.$$eval("#chart rect.bar", (bars) => bars.length), 14);
    const kept = await page.evaluate(() => ({ url: location.href, stored: Object.values(sessionStorage) }));
    assert.deepEqual(kept.stored, [ADMIN_TOKEN], "kept in sessionStorage");
    assert.ok(!kept.url.includes(ADMIN_TOKEN), "never in the URL");

    await lookUp(page, "spender");
    assert.match(await text(page, "#user-status"), /Active/);
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: new URL("operator-console.png", RESULTS).pathname, fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("the console shows a user's dollars as their usage cost", { skip: noBrowser }, async () => {
  assert.equal(await chat("big-spender"), 200);
  await indexed("big-spender", PER_CALL);
  const expected = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" }).format((PER_CALL * PRICE_USD_PER_MILLION) / 1e6);
  const { page, errors, close } = await openConsole();
  try {
    await signIn(page);
    await page.waitForSelector('#top-users li[data-sub="big-spender"]', { timeout: 5000 });
    assert.ok((await text(page, '#top-users li[data-sub="big-spender"] .figure')).startsWith(expected));
    assert.match(await text(page, "#today-usd"), /^\$\d+\.\d\d$/);
    await lookUp(page, "big-spender");
    assert.ok((await text(page, "#user-usd")).startsWith(`${expected} used`));
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("revoking a user from the console refuses their next request, and lifting it lets them back, without a reload", { skip: noBrowser }, async () => {
  const oldToken = mintToken({ sub: "suspect", iat: Math.floor(Date.now() / 1000) - 5 });
  assert.equal(await chat("suspect", oldToken), 200);
  await indexed("suspect", PER_CALL);
  const { page, errors, close } = await openConsole();
  try {
    await signIn(page);
    await page.waitForSelector('#top-users li[data-sub="suspect"]', { timeout: 5000 });
    await page.evaluate(() => (window.sameDocument = true));
    await page.click('#top-users li[data-sub="suspect"] button');
    await page.waitForFunction(() => document.getElementById("user-sub").textContent === "suspect", null, { timeout: 5000 });

    // Spend the page has not seen yet: the action's refresh must show it.
    assert.equal(await chat("suspect", oldToken), 200);
    await indexed("suspect", 2 * PER_CALL);
    await page.click("#revoke");
    assert.match(await text(page, "#confirm-text"), /Revoke every token of “suspect”/);
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "Revoked the tokens of suspect.", null, { timeout: 5000 });
    assert.match(await text(page, "#user-status"), /^Revoked tokens issued until .+ are refused$/);
    assert.ok((await text(page, '#top-users li[data-sub="suspect"] .figure')).includes(`${2 * PER_CALL} tokens`));
    assert.equal(await chat("suspect", oldToken), 401, "the revoked user's next request");

    await page.click("#lift");
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "Lifted the revocation of suspect.", null, { timeout: 5000 });
    assert.equal(await text(page, "#user-status"), "Active");
    assert.equal(await chat("suspect", oldToken), 200, "lifted");
    assert.equal(await page.evaluate(() => window.sameDocument), true, "no reload");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("blocking a user from the console refuses even a token minted after it, and unblocking lets them back", { skip: noBrowser }, async () => {
  assert.equal(await chat("troll"), 200);
  const { page, errors, close } = await openConsole();
  try {
    await signIn(page);
    await page.waitForSelector("#top-users", { timeout: 5000 });
    await lookUp(page, "troll");
    assert.equal(await page.isVisible("#unblock"), false);
    await page.click("#block");
    assert.match(await text(page, "#confirm-text"), /Block “troll”/);
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "Blocked troll.", null, { timeout: 5000 });
    assert.match(await text(page, "#user-status"), /^Blocked every token is refused, since .+$/);
    assert.equal(await page.isVisible("#block"), false);
    const refreshed = mintToken({ sub: "troll", iat: Math.floor(Date.now() / 1000) + 1 });
    assert.equal(await chat("troll", refreshed), 401, "a token minted after the block");

    await page.click("#unblock");
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "Unblocked troll.", null, { timeout: 5000 });
    assert.equal(await text(page, "#user-status"), "Active");
    assert.equal(await chat("troll", refreshed), 200, "unblocked");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a plan override set from the console changes the user's limit, and clearing it restores it", { skip: noBrowser }, async () => {
  assert.equal(await chat("planned"), 200);
  assert.equal((await adminJson("/admin/users/planned/usage")).plan, "default");
  const { page, errors, close } = await openConsole();
  const limit = () => page.getAttribute("#user-token-limit", "data-limit");
  try {
    await signIn(page);
    await page.waitForSelector("#top-users", { timeout: 5000 });
    await lookUp(page, "planned");
    assert.equal(await limit(), "100000");
    assert.match(await text(page, "#user-plan"), /default/);
    await page.fill("#plan-name", "pro");
    await page.click("#set-plan");
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "planned is now on plan pro.", null, { timeout: 5000 });
    assert.equal(await limit(), "500000");
    assert.match(await text(page, "#user-plan"), /^pro \(set by an operator\)$/);
    assert.match(await text(page, "#user-token-limit"), /daily limit 500k tokens/);

    await page.click("#clear-plan");
    await confirm(page);
    await page.waitForFunction(() => document.getElementById("message").textContent === "Cleared the plan override of planned.", null, { timeout: 5000 });
    assert.equal(await limit(), "100000");
    assert.doesNotMatch(await text(page, "#user-plan"), /set by an operator/);
    assert.equal(await page.isDisabled("#clear-plan"), true, "nothing left to clear");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a user's live voice call is listed, and its End call button hangs it up and takes it off the list", { skip: noBrowser }, async () => {
  const { page, errors, close } = await openConsole();
  try {
    const answer = await fetch(`${proxy.url}/v1/realtime/calls`, {
      method: "POST",
      headers: { authorization: `Bearer ${mintToken({ sub: "talker" })}`, "content-type": "application/sdp" },
      body: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    });
    assert.equal(answer.status, 201, await answer.text());
    const id = answer.headers.get("location").split("/").pop();
    await mock.realtime.sidebandOf(id);
    // Lifting a revocation (none here) answers with the live calls, and ends none of them.
    const lifted = await fetch(`${proxy.url}/admin/users/talker/revoke`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(lifted.status, 200);
    assert.deepEqual((await lifted.json()).calls, [id]);
    await signIn(page);
    await page.waitForSelector("#sub", { timeout: 5000 });
    // The call's object tells the user's object its id at its first charge, just after it starts.
    await within(5000, (async () => {
      for (;;) {
        await lookUp(page, "talker");
        if (await page.$(`#user-calls li[data-call="${id}"]`)) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })(), "the call in the user's view");
    assert.equal(mock.realtime.hangups.some((hangup) => hangup.id === id), false, "still live");
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: new URL("operator-console-call.png", RESULTS).pathname, fullPage: true });
    await page.click(`#user-calls li[data-call="${id}"] button`);
    assert.match(await text(page, "#confirm-text"), new RegExp(`End voice call ${id} of “talker”`));
    await confirm(page);
    await page.waitForFunction((id) => document.getElementById("message").textContent === `Ended voice call ${id}.`, id, { timeout: 10_000 });
    assert.ok(mock.realtime.hangups.some((hangup) => hangup.id === id), "the mock was asked to hang it up");
    assert.equal(await page.$(`#user-calls li[data-call="${id}"]`), null, "the call left the list");
    assert.ok(proxy.logs.some((line) => line.event === "voice_call_end" && line.detail.includes(`call ${id} `) && / ended: operator;/.test(line.detail)));
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a wrong admin token is refused with a clear message and is not kept", { skip: noBrowser }, async () => {
  const { page, close } = await openConsole();
  try {
    await signIn(page, "not-the-admin-token-at-all-0123456789");
    await page.waitForFunction(() => !document.getElementById("message").hidden, null, { timeout: 5000 });
    assert.equal(await text(page, "#message"), "The admin token was refused. Check ADMIN_TOKEN and enter it again.");
    assert.equal(await page.isVisible("#console"), false);
    assert.equal(await page.isVisible("#token"), true);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  } finally {
    await close();
  }
});

test("the console fits a 375 px wide screen and works from the keyboard alone", { skip: noBrowser }, async () => {
  assert.equal(await chat("pocket"), 200);
  await indexed("pocket", PER_CALL);
  const { page, errors, close } = await openConsole({ width: 375, height: 740 });
  try {
    await page.waitForFunction(() => document.activeElement.id === "token", null, { timeout: 5000 });
    await page.keyboard.type(ADMIN_TOKEN);
    await page.keyboard.press("Enter");
    await page.waitForSelector('#top-users li[data-sub="pocket"]', { timeout: 5000 });
    // Signing in moves the focus to the user lookup.
    await page.keyboard.type("pocket");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.getElementById("user-sub").textContent === "pocket", null, { timeout: 5000 });
    const focused = [];
    for (let i = 0; i < 6 && focused.at(-1) !== "revoke"; i++) {
      await page.keyboard.press("Tab");
      focused.push(await page.evaluate(() => document.activeElement.id));
    }
    assert.equal(focused.at(-1), "revoke", `tabbed through ${focused}`);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#confirm[open]", { timeout: 5000 });
    assert.equal(await page.evaluate(() => document.activeElement.id), "confirm-cancel", "the safe choice has the focus");
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => !document.getElementById("confirm").open, null, { timeout: 5000 });
    assert.match(await text(page, "#user-status"), /Active/, "Escape revoked nothing");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `the page is ${width} px wide`);
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});
