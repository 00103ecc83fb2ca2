// Voice calls under a global budget (README, "Voice"): a call's hold is leased from the global
// budget as a request's worst case is, the call object tops the lease up as the call spends,
// and the call is hung up when the global budget cannot hold its next two turns, however large
// the user's own budget.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { maximalUsage, responseDone } from "../mock-realtime.mjs";
import { ALLOWED_ORIGIN, bodyText, eventually, mintToken, usageOf, usd, within } from "./helpers.mjs";
import { CONTEXT, OFFER, TURN, startVoiceProxy } from "./voice-fixtures.mjs";

const ADMIN_TOKEN = "voice-global-admin-token-long-enough-0123456789";
const GLOBAL = 80_000_000n; // $0.08 for everyone: four turns and the hold of two more fit, five do not
const OWN = 1_000_000_000n; // $1 each: never what stops a call here
const MAXIMAL = maximalUsage(Number(CONTEXT), 100);

describe("voice under a global budget", () => {
  let upstream;
  let proxy;

  before(async () => {
    ({ upstream, proxy } = await startVoiceProxy({
      ADMIN_TOKEN,
      VOICE_MODELS: "gpt-realtime-2.1-mini",
      VOICE_MAX_SESSION_SECONDS: "600",
      DAILY_BUDGET_USD: usd(OWN).toString(),
      GLOBAL_DAILY_BUDGET_USD: usd(GLOBAL).toString(),
    }));
  });
  after(async () => {
    await proxy?.dispose();
    await upstream?.close();
  });

  async function call(sub, expect) {
    const token = mintToken({ sub });
    const response = await within(10_000, fetch(`${proxy.url}/v1/realtime/calls`, {
      method: "POST",
      headers: { "content-type": "application/sdp", authorization: `Bearer ${token}`, origin: ALLOWED_ORIGIN },
      body: OFFER,
    }), "the call's answer");
    const body = await bodyText(response);
    assert.equal(response.status, expect, body);
    return { token, body, id: response.headers.get("location")?.split("/").pop() };
  }

  test("maximal responses are charged until the global budget cannot hold two more turns; then the call is hung up and the next refused", async () => {
    const { id, token } = await call("alice", 201);
    await upstream.realtime.sidebandOf(id);
    // The first k with k turns spent and two more held past the global budget: hung up there.
    let stop = 1n;
    while (stop * TURN + 2n * TURN <= GLOBAL) stop += 1n;
    for (let i = 1n; i <= stop; i++) {
      assert.equal(upstream.realtime.calls.get(id).ended, false, `still up before response ${i}`);
      upstream.realtime.send(id, { type: "response.created", response: { id: `resp_${i}` } });
      upstream.realtime.send(id, responseDone(MAXIMAL, `resp_${i}`));
      await eventually(5_000, async () => (await usageOf(proxy, token)).cost.used_usd === usd(i * TURN), `response ${i}'s charge`);
    }
    await upstream.realtime.ended(id, 5_000);
    assert.ok(upstream.realtime.hangups.some((hangup) => hangup.id === id), "the proxy hung up");
    const cost = await eventually(5_000, async () => {
      const { cost } = await usageOf(proxy, token);
      return cost.reserved_usd === 0 && cost;
    }, "the call's settlement");
    assert.equal(cost.used_usd, usd(stop * TURN), "each response charged once, nothing past the hang-up");
    // The one response that may still start before the hang-up lands fits the budget.
    assert.ok((stop + 1n) * TURN <= GLOBAL);
    assert.ok(cost.used_usd < usd(OWN), "the user's own budget had room: the global one ended the call");
    assert.ok(proxy.logs.some((line) => line.event === "voice_call_end" && / ended: budget;/.test(line.detail)));

    const refused = await call("bob", 429);
    assert.match(refused.body, /insufficient_quota/);
    assert.match(refused.body, /service's daily spending budget/, "refused by the global budget, not bob's own");
  });
});
