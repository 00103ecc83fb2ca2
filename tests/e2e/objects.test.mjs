// The user's Durable Object keeps its record in memory between requests, but storage stays
// the source of truth; and the bench's counters stay closed unless the bench opens them.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { chatBody, mintToken, startProxy } from "./helpers.mjs";

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(async () => {
  await mock?.close();
});

const chat = (proxy, sub) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${mintToken({ sub })}`, "content-type": "application/json" },
    body: chatBody(),
  });

test("a user's rate limit still counts after the objects restart with their storage", async () => {
  const persist = mkdtempSync(path.join(os.tmpdir(), "proxy-objects-"));
  const vars = { UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, RATE_LIMIT_REQUESTS: "3", RATE_LIMIT_WINDOW_SECONDS: "3600" };
  let proxy;
  try {
    proxy = await startProxy(vars, { persist });
    for (let i = 0; i < 2; i++) {
      const response = await chat(proxy, "restarted-user");
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    }
    await proxy.dispose();
    // A new workerd: every object starts with empty memory and must read its storage.
    proxy = await startProxy(vars, { persist });
    const third = await chat(proxy, "restarted-user");
    assert.equal(third.status, 200);
    assert.equal(third.headers.get("ratelimit-remaining"), "0", "the two requests before the restart count");
    await third.arrayBuffer();
    const fourth = await chat(proxy, "restarted-user");
    assert.equal(fourth.status, 429);
    assert.equal((await fourth.json()).error.code, "rate_limit_exceeded");
  } finally {
    await proxy?.dispose();
    rmSync(persist, { recursive: true, force: true });
  }
});

test("the bench counters are a 404 unless BENCH_COUNTERS is true", async () => {
  const closed = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey });
  try {
    const response = await fetch(`${closed.url}/__bench/counters`);
    assert.equal(response.status, 404);
    assert.doesNotMatch(await response.text(), /object_calls/);
  } finally {
    await closed.dispose();
  }
  const open = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, BENCH_COUNTERS: "true" });
  try {
    const answered = await chat(open, "counted-user");
    assert.equal(answered.status, 200);
    await answered.arrayBuffer();
    const counters = await (await fetch(`${open.url}/__bench/counters`)).json();
    assert.equal(counters.requests, 1);
    assert.ok(counters.object_calls.USERS >= 1, "the admission call is counted");
  } finally {
    await open.dispose();
  }
});
