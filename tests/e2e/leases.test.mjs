// Many users under a small global budget, admitted by leases their objects hold of it: the
// budget is never overrun, what each user was charged adds up to what upstream reported, and
// the operator's budget and day index agree with it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, proxyFor, settledUsage, within } from "./helpers.mjs";

const ADMIN_TOKEN = "admin-token-for-lease-tests-0123456789";
const BUDGET = 4000;
const USERS = 24;
const REQUESTS_PER_USER = 4;
const CAP = { usage: "cap" };
let mock;

before(async () => {
  mock = await startMockUpstream({ chunkDelayMs: 0 });
});
after(() => mock?.close());

async function admin(proxy, path) {
  const response = await within(10_000, fetch(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }), path);
  assert.equal(response.status, 200, path);
  return response.json();
}

describe("a small global budget shared by many users", () => {
  // The day's usage index in shards too: read back, merged and paged, it is one list.
  const setup = proxyFor(() => mock, { ADMIN_TOKEN, GLOBAL_DAILY_TOKEN_BUDGET: String(BUDGET), MAX_OUTPUT_TOKENS: "100", USAGE_INDEX_SHARDS: "4" });

  test("is never overrun, and everyone's charges add up to what upstream reported", async () => {
    const { proxy } = setup;
    const sent = mock.requests.length;
    const statuses = [];
    // Every user at once, each request after the one before; each answer uses its whole cap.
    await Promise.all(
      Array.from({ length: USERS }, async (_, user) => {
        const token = mintToken({ sub: `leaser-${user}` });
        for (let i = 0; i < REQUESTS_PER_USER; i++) {
          mock.faultNext(CAP);
          const response = await within(10_000, fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chatBody() }), "an answer");
          statuses.push(response.status);
          if (response.status === 429) {
            const { error } = await response.json();
            assert.match(error.message, /service's daily token budget/);
          } else {
            assert.equal(response.status, 200);
            await response.arrayBuffer();
          }
        }
      }),
    );
    const admitted = statuses.filter((status) => status === 200).length;
    assert.ok(admitted > 0 && statuses.includes(429), statuses.join());
    const upstream = mock.requests.slice(sent);
    assert.equal(upstream.length, admitted, "every admitted request, and only those, reached upstream");
    const reported = upstream.reduce((sum, request) => sum + usage(request.json, CAP).total_tokens, 0);
    let charged = 0;
    for (let user = 0; user < USERS; user++) {
      const settled = await settledUsage(proxy, mintToken({ sub: `leaser-${user}` }));
      charged += settled.tokens.used;
    }
    assert.equal(charged, reported, "each user was charged what upstream reported for them");
    assert.ok(charged <= BUDGET, `charged ${charged} of a ${BUDGET}-token budget`);

    const budget = await admin(proxy, "/admin/budget");
    const { limit, used, reserved, leased, remaining } = budget.tokens;
    assert.equal(limit, BUDGET);
    assert.equal(used + reserved + leased + remaining, BUDGET, JSON.stringify(budget.tokens));
    assert.ok(BUDGET - remaining >= charged, `leased ${BUDGET - remaining}, charged ${charged}`);

    // The day's index lists what the users' objects charged, within seconds.
    await within(15_000, (async () => {
      while ((await admin(proxy, `/admin/usage?day=${budget.day}&limit=1000`)).total_tokens !== charged) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })(), `the day's index to add up to the ${charged} tokens charged`);
    // Five users a page, from four shards: every user once, in order, adding up.
    const listed = [];
    let cursor = "";
    for (let page = 0; page < USERS; page++) {
      const day = await admin(proxy, `/admin/usage?day=${budget.day}&limit=5${cursor}`);
      listed.push(...day.users);
      if (day.next_cursor === null) break;
      cursor = `&cursor=${encodeURIComponent(day.next_cursor)}`;
    }
    const subs = listed.map((user) => user.sub);
    assert.deepEqual(subs, [...subs].sort(), "in sub order");
    assert.equal(new Set(subs).size, subs.length, "each user once");
    assert.equal(listed.reduce((sum, user) => sum + user.total_tokens, 0), charged);
  });
});
