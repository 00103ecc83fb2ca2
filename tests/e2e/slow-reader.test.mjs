// A client that stops reading (a frozen tab, a stuck consumer) keeps its connection open but
// takes nothing: once a write has waited STREAM_IDLE_TIMEOUT_MS, the proxy ends that stream,
// stops upstream and frees the user's slot and reservation.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, chatBody, logLineOf, mintToken, reservedTokens, startProxy, within } from "./helpers.mjs";

const IDLE_MS = 1000;
let mock;
let proxy;
before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS),
    MAX_CONCURRENT_STREAMS: "1",
    // Room for the flood's whole reservation and the next stream's.
    DAILY_TOKEN_BUDGET: "100000",
  });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

const chat = (sub, body) =>
  fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });

async function usageOf(sub) {
  const response = await fetch(`${proxy.url}/v1/usage`, { headers: { authorization: `Bearer ${mintToken({ sub })}` } });
  return response.json();
}

test("a client that stops reading loses its stream, and its slot and reservation are freed", async () => {
  const content = "Flood me";
  // Far more than the socket buffers between the proxy and this client can hold.
  mock.faultNext({ kind: "flood", match: (json) => json?.messages?.[0]?.content === content });
  const stalled = await chat("slow-reader", chatBody({ stream: true, messages: [{ role: "user", content }] }));
  assert.equal(stalled.status, 200);
  const reader = stalled.body.getReader();
  await within(5000, reader.read(), "first chunk");
  const upstreamOfStalled = mock.requests.at(-1);
  const stoppedReadingAt = Date.now();

  // The client still holds its connection and reads nothing; the user can stream again soon.
  const freed = await within(IDLE_MS * 8, (async () => {
    for (;;) {
      const usage = await usageOf("slow-reader");
      if (usage.streams.open === 0 && usage.tokens.reserved === 0) return usage;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })(), "the stalled stream's slot to be freed");
  const freedAfter = Date.now() - stoppedReadingAt;
  console.log(`# slot freed ${freedAfter} ms after the client stopped reading (STREAM_IDLE_TIMEOUT_MS=${IDLE_MS})`);
  assert.ok(freedAfter >= IDLE_MS, "a slow reader is given the idle timeout");
  // No usage report came: the whole reservation, whatever the flood's bytes were.
  assert.equal(freed.tokens.used, reservedTokens(upstreamOfStalled), "charged its whole reservation");
  assert.equal(freed.tokens.used, Buffer.byteLength(upstreamOfStalled.body) + 1024);
  assert.ok(upstreamOfStalled.closedAt, "the upstream request was stopped");
  assert.equal(upstreamOfStalled.completed, false);

  const next = await chat("slow-reader", chatBody({ stream: true }));
  assert.equal(next.status, 200, "the freed slot takes a new stream");
  assert.match(await within(10_000, next.text(), "the next stream"), /data: \[DONE\]/);

  // What the stalled client gets when it reads again: a broken-off stream, never a whole answer.
  const rest = await within(10_000, (async () => {
    let text = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return { text, broken: false };
        text += new TextDecoder().decode(value);
      }
    } catch {
      return { text, broken: true };
    }
  })(), "the stalled stream to end");
  assert.ok(rest.broken || !rest.text.includes("[DONE]"), "the cut stream does not claim to be complete");

  const line = await logLineOf(proxy, stalled.headers.get("x-request-id"));
  assert.equal(line.disconnected, true, "the stalled stream's log line says its client went away");
  assert.match(line.detail, /read nothing for 1000 ms/);
  assert.equal(line.usage_reported, false);
  assert.equal(line.total_tokens, freed.tokens.used);
});
