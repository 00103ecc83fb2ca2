// The operator's figures add up to the charges: users' objects report what they charged to the
// day's index themselves, so usage survives the Worker that served it; a day is listed a
// bounded page at a time, with a summary that never reads every user.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, settledUsage, startProxy, within } from "./helpers.mjs";

const ADMIN_TOKEN = "admin-token-for-usage-index-tests-0123456789";
const PER_CALL = usage(JSON.parse(chatBody())).total_tokens;
let mock;
let persist;

before(async () => {
  mock = await startMockUpstream();
  persist = mkdtempSync(join(tmpdir(), "usage-index-"));
});
after(async () => {
  await mock?.close();
  rmSync(persist, { recursive: true, force: true });
});

const start = () => startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ADMIN_TOKEN }, { persist });

async function chat(proxy, sub) {
  const token = mintToken({ sub });
  const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chatBody() });
  assert.equal(response.status, 200);
  await response.arrayBuffer();
  return token;
}

async function usageOfDay(proxy, query = "") {
  const response = await fetch(`${proxy.url}/admin/usage${query}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(response.status, 200, query);
  return response.json();
}

/** Polls today's listing until `sub` has `tokens`: objects report their charges within seconds. */
function listed(proxy, sub, tokens) {
  return within(15_000, (async () => {
    for (;;) {
      const { users } = await usageOfDay(proxy, "?limit=1000");
      if (users.some((user) => user.sub === sub && user.total_tokens === tokens)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })(), `${sub} with ${tokens} tokens in today's index`);
}

test("what a Worker charged reaches the day's index though the Worker is gone before sending it", async () => {
  const first = await start();
  try {
    const token = await chat(first, "evicted");
    // Settled in the user's object; the Worker goes at once, before any batch of its own.
    assert.equal((await settledUsage(first, token)).tokens.used, PER_CALL);
  } finally {
    await first.dispose();
  }
  const second = await start();
  try {
    await listed(second, "evicted", PER_CALL);
    const day = await usageOfDay(second);
    assert.equal(day.total_tokens, PER_CALL, "the summary adds up to the charge");
  } finally {
    await second.dispose();
  }
});

test("a day is listed a bounded page at a time, every user once, with a summary of them all", async () => {
  const proxy = await start();
  try {
    const subs = ["page-a", "page-b", "page-c", "page-d", "page-e"];
    for (const sub of subs) await chat(proxy, sub);
    for (const sub of subs) await listed(proxy, sub, PER_CALL);
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const page = await usageOfDay(proxy, `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      assert.ok(page.users.length <= 2, `a page of ${page.users.length}`);
      seen.push(...page.users.map((user) => user.sub));
      cursor = page.next_cursor;
      pages++;
    } while (cursor && pages < 10);
    assert.deepEqual(seen, [...seen].sort(), "in id order");
    assert.equal(new Set(seen).size, seen.length, "each user once");
    for (const sub of subs) assert.ok(seen.includes(sub), sub);
    const day = await usageOfDay(proxy, "?limit=1");
    assert.equal(day.user_count, seen.length);
    assert.equal(day.total_tokens, seen.length * PER_CALL);
    assert.ok(day.top.length <= 10 && day.top.length === Math.min(10, seen.length));
    for (const [query, param] of [["?limit=0", "limit"], ["?limit=1001", "limit"], ["?from=2026-01-01&to=2026-01-02&limit=5", "limit"]]) {
      const response = await fetch(`${proxy.url}/admin/usage${query}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(response.status, 400, query);
      assert.equal((await response.json()).error.param, param, query);
    }
  } finally {
    await proxy.dispose();
  }
});
