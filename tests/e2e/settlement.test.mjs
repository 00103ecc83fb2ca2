// Settlement off the critical path: a request's settlement rides on the next call its isolate
// makes to the same object, or goes on its own within about a second. Whoever reads right
// after a request (the user, the operator) sees it settled, and a user's back-to-back requests
// cost one Durable Object call each.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, proxyFor, usageOf, within } from "./helpers.mjs";

const ADMIN_TOKEN = "settlement-admin-token-0123456789abcdef";
let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

describe("a proxy with a stream slot per user and a global budget", () => {
  const setup = proxyFor(() => mock, { ADMIN_TOKEN, MAX_CONCURRENT_STREAMS: "1", GLOBAL_DAILY_TOKEN_BUDGET: "1000000000", BENCH_COUNTERS: "true" });

  const streamBody = () => chatBody({ stream: true, messages: [{ role: "user", content: "Settle this stream" }] });
  async function chat(sub, body = chatBody()) {
    const response = await fetch(`${setup.proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });
    assert.equal(response.status, 200);
    await within(5000, response.text(), "the answer");
    return usage(mock.requests.at(-1).json).total_tokens;
  }
  const admin = async (path) => (await fetch(`${setup.proxy.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();

  /** The Worker's requests served, its Durable Object calls per class, and what it holds back. */
  const counters = async () => (await fetch(`${setup.proxy.url}/__bench/counters`)).json();

  /** Polls `check` until it returns something, at most `ms`. */
  const until = (ms, what, check) =>
    within(ms, (async () => {
      for (;;) {
        const found = await check();
        if (found) return found;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })(), what);

  /**
   * `sub`'s standing as its object holds it, read from outside the Worker, as another isolate
   * would see it: nothing the Worker holds back rides on this read.
   */
  async function standingInObject(sub) {
    const users = await setup.proxy.objects("USERS");
    const object = users.get(users.idFromName(`user:${sub}`));
    // A delivery of the objects' protocol, version 3 (`PROTOCOL_VERSION` in src/objects/user/messages.rs).
    const status = { status: { limits: { rate: null, max_streams: 1, daily_tokens: null }, now_ms: Date.now() } };
    const response = await object.fetch("https://object/", { method: "POST", body: JSON.stringify({ version: 3, command: status }) });
    return (await response.json()).reply.status.standing;
  }

  test("with no further request, a finished stream's slot is free for other isolates within about a second", async () => {
    const spent = await chat("lone-streamer", streamBody());
    const ended = Date.now();
    const served = (await counters()).requests;
    const standing = await until(5000, "the slot to free with no further request", async () => {
      const standing = await standingInObject("lone-streamer");
      return standing.open_streams === 0 && standing.reserved_tokens === 0 && standing;
    });
    console.log(`# the slot was free ${Date.now() - ended} ms after the stream ended`);
    assert.equal(standing.used_tokens, spent, "charged what it used");
    assert.equal((await counters()).requests, served, "no request of the Worker's settled it");
  });

  test("a user at their stream limit is admitted the moment their stream ends", async () => {
    await chat("one-slot", streamBody());
    await chat("one-slot", streamBody());
  });

  test("/v1/usage right after a request shows what it cost, settled", async () => {
    const token = mintToken({ sub: "reader" });
    const whole = await chat("reader");
    const first = await usageOf(setup.proxy, token);
    assert.deepEqual([first.tokens.used, first.tokens.reserved], [whole, 0]);
    const streamed = await chat("reader", streamBody());
    const second = await usageOf(setup.proxy, token);
    assert.deepEqual([second.tokens.used, second.tokens.reserved, second.streams.open], [whole + streamed, 0, 0]);
  });

  test("the operator sees a request in the user's standing at once and in the day's index within seconds", async () => {
    const spent = await chat("listed");
    const standing = await admin("/admin/users/listed/usage");
    assert.deepEqual([standing.tokens.used, standing.tokens.reserved], [spent, 0], "the user's own object");
    // The user's object sends its charges to the day's index from an alarm, 2 s after them.
    await until(15_000, "the day's index to list it", async () => {
      const { users } = await admin("/admin/usage");
      return users.find((user) => user.sub === "listed")?.total_tokens === spent;
    });
  });

  test("back-to-back requests of one user cost one call to each of their objects, and what is held is sent soon after", async () => {
    const before = await until(5000, "earlier settlements to be sent", async () => {
      const counted = await counters();
      return counted.held === 0 && counted;
    });
    const requests = 10;
    const started = Date.now();
    for (let i = 0; i < requests; i++) await chat("regular");
    const after = await until(5000, "the last settlement to be sent", async () => {
      const counted = await counters();
      return counted.held === 0 && counted;
    });
    const calls = (binding) => (after.object_calls[binding] ?? 0) - (before.object_calls[binding] ?? 0);
    const seconds = (Date.now() - started) / 1000;
    console.log(`# ${requests} requests: ${calls("USERS")} calls to the user and global objects, ${calls("USAGE_INDEX")} to the usage index, in ${seconds} s`);
    // The user's object and the global budget admit each request; each request's settlement
    // rides on the next admission, and the last one's goes alone (2 calls). One more per object
    // is allowed for a machine so busy that a request came after a settlement's hold. The
    // user's object sends its charges to the usage index at most once every 2 s.
    assert.ok(calls("USERS") <= 2 * requests + 4, `${calls("USERS")} calls to the user and global objects`);
    assert.ok(calls("USAGE_INDEX") <= Math.ceil(seconds) + 1, `${calls("USAGE_INDEX")} calls to the usage index`);
  });
});
