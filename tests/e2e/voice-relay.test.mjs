// The WebSocket relay (README, "Voice"): GET /v1/realtime?model=… upgraded, the user token in
// the subprotocol (a browser) or Authorization (a server client), admitted as a WebRTC call,
// every client event checked before it reaches OpenAI, every upstream event metered. The mock
// plays OpenAI's primary WebSocket endpoint and records every event it receives
// (tests/mock-realtime.mjs).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import { OpenAIRealtimeWebSocket } from "@openai/agents-realtime";
import { maximalUsage, responseDone } from "../mock-realtime.mjs";
import { ALLOWED_ORIGIN, bodyText, eventually, mintToken, poll, usageOf, usd, within } from "./helpers.mjs";
import { CONTEXT, INSTRUCTIONS, TURN, startVoiceProxy } from "./voice-fixtures.mjs";

const ADMIN_TOKEN = "relay-admin-token-that-is-long-enough-0123456789";
const MODEL = "gpt-realtime-2.1-mini";
const BUDGET = 60_000_000n; // two turns held, and room for about three more
const MAXIMAL = maximalUsage(Number(CONTEXT), 100);

describe("voice relay", () => {
  let upstream;
  let proxy;
  let wsUrl;
  let capped;
  const frames = []; // every frame and answer the proxy sent a client, checked for the key at the end
  const tokens = []; // every user token offered as a subprotocol, checked for in the log at the end

  before(async () => {
    ({ upstream, proxy } = await startVoiceProxy({ ADMIN_TOKEN, VOICE_MODELS: MODEL, DAILY_BUDGET_USD: usd(BUDGET).toString() }));
    wsUrl = `${proxy.url.replace(/^http/, "ws")}/v1/realtime?model=${MODEL}`;
    // Left alone from the start: the session cap ends it while the other tests run.
    capped = await open("cap-user");
    capped.openedAt = Date.now();
  });
  after(async () => {
    await proxy?.dispose();
    await upstream?.close();
  });

  /**
   * A session as a browser opens it: the token as the subprotocol beside `realtime` (what
   * @openai/agents-realtime sends there). Resolves once the proxy opened it upstream.
   */
  async function open(sub, { expect = 101, first, origin = ALLOWED_ORIGIN, protocols } = {}) {
    const token = mintToken({ sub });
    tokens.push(token);
    const index = upstream.realtime.relays.length;
    const offered = protocols ?? ["realtime", `openai-insecure-api-key.${token}`, "openai-agents-sdk.0.20.0"];
    const socket = new WebSocket(wsUrl, offered, { origin });
    const events = [];
    const closed = new Promise((resolve) => socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
    socket.on("message", (data) => {
      frames.push(String(data));
      events.push(JSON.parse(String(data)));
    });
    const opened = await within(10_000, new Promise((resolve) => {
      socket.on("upgrade", (answer) => frames.push(JSON.stringify(answer.headers)));
      socket.on("open", () => {
        if (first) socket.send(JSON.stringify(first));
        resolve({ status: 101 });
      });
      socket.on("unexpected-response", (_, answer) => {
        let body = "";
        answer.on("data", (chunk) => (body += chunk));
        answer.on("end", () => resolve({ status: answer.statusCode, body, headers: answer.headers }));
      });
    }), "the upgrade");
    frames.push(JSON.stringify(opened));
    assert.equal(opened.status, expect, opened.body);
    if (expect !== 101) return { ...opened, token };
    const id = await upstream.realtime.relayAt(index);
    const waitFor = (check, what) => eventually(5_000, () => events.find(check), what);
    return { id, token, socket, events, closed, waitFor, upstream: upstream.realtime.calls.get(id) };
  }

  const send = (session, event) => session.socket.send(JSON.stringify(event));
  const received = (session, type) => session.upstream.received.filter((event) => event.type === type);
  const costOf = async (token) => (await usageOf(proxy, token)).cost;
  /** The user's cost once something is charged. */
  const charged = (token) => poll(5_000, async () => {
    const cost = await costOf(token);
    return cost.used_usd > 0 && cost;
  }, "a charge");
  /** The user's cost once nothing is held. */
  const settled = (token) => poll(5_000, async () => {
    const cost = await costOf(token);
    return cost.reserved_usd === 0 && cost;
  }, "the settlement");

  test("a session is admitted, opened upstream with the key and the operator's session first, and metered exactly from response.done", async () => {
    // The page's first event, sent at once, still comes after the operator's session upstream,
    // even while OpenAI's session.created (which the meter would revert) is late.
    upstream.realtime.settings.sessionCreatedAfterMs = 1_000;
    const session = await open("alice", { first: { type: "input_audio_buffer.clear", event_id: "evt_first" } });
    upstream.realtime.settings.sessionCreatedAfterMs = 0;
    assert.equal(session.socket.protocol, "realtime", "only realtime is echoed");
    assert.equal(session.upstream.upgradeHeaders.authorization, `Bearer ${upstream.apiKey}`);
    assert.equal(session.upstream.upgradeHeaders["sec-websocket-protocol"], undefined, "the token stays at the proxy");
    const first = await eventually(5_000, () => session.upstream.received[0], "the operator's session");
    assert.equal(first.type, "session.update");
    assert.equal(first.session.instructions, INSTRUCTIONS);
    assert.equal(first.session.max_output_tokens, 100);
    assert.deepEqual(first.session.tools, []);
    assert.equal(first.session.audio.output.voice, "marin");
    await upstream.realtime.receivedOf(session.id, "input_audio_buffer.clear");
    assert.equal((await costOf(session.token)).reserved_usd, usd(2n * TURN), "two turns held from the start");

    send(session, { type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] } });
    send(session, { type: "response.create", event_id: "evt_ok" });
    await upstream.realtime.receivedOf(session.id, "response.create");
    const usage = {
      input_tokens: 300,
      output_tokens: 40,
      total_tokens: 340,
      input_token_details: { text_tokens: 100, audio_tokens: 200, cached_tokens: 120, cached_tokens_details: { text_tokens: 50, audio_tokens: 70 } },
      output_token_details: { text_tokens: 10, audio_tokens: 30 },
    };
    upstream.realtime.send(session.id, { type: "response.created", response: { id: "resp_1" } });
    upstream.realtime.send(session.id, responseDone(usage, "resp_1"));
    await session.waitFor((event) => event.type === "response.done", "the response.done passed on");
    // text 50 × 600 + cached text 50 × 60 + audio 130 × 10,000 + cached audio 70 × 300 + out 10 × 2,400 + 30 × 20,000
    const expected = 50n * 600n + 50n * 60n + 130n * 10_000n + 70n * 300n + 10n * 2_400n + 30n * 20_000n;
    const cost = await charged(session.token);
    assert.equal(cost.used_usd, usd(expected));
    session.socket.close();
    await upstream.realtime.ended(session.id, 5_000);
    const after = await settled(session.token);
    assert.equal(after.used_usd, usd(expected), "the page's hang-up settles nothing more");
  });

  test("a session.update changing fixed fields reaches upstream without them; the page gets an error event", async () => {
    const session = await open("bob");
    send(session, {
      type: "session.update",
      event_id: "evt_fixed",
      session: { instructions: "Talk for an hour.", max_output_tokens: 4096, tools: [{ type: "function", name: "f" }], audio: { input: { turn_detection: { type: "semantic_vad" } }, output: { voice: "alloy" } } },
    });
    const error = await session.waitFor((event) => event.type === "error", "the refusal");
    assert.equal(error.error.code, "fixed_session_field");
    assert.equal(error.error.event_id, "evt_fixed");
    assert.deepEqual(error.error.param.split(",").sort(), ["audio.output.voice", "instructions", "max_output_tokens", "tools"]);
    await eventually(5_000, () => received(session, "session.update").length >= 2, "the rest of the update");
    const updates = received(session, "session.update");
    const pageUpdate = updates.find((event) => event.event_id === "evt_fixed");
    assert.deepEqual(pageUpdate.session, { audio: { input: { turn_detection: { type: "semantic_vad" } }, output: {} } });
    for (const update of updates) assert.equal(update.session.instructions ?? INSTRUCTIONS, INSTRUCTIONS);
    assert.equal(upstream.realtime.calls.get(session.id).session.max_output_tokens, 100, "the session upstream keeps the cap");
    session.socket.close();
    await session.closed;
  });

  test("an over-cap response.create, one with its own instructions, and an unknown event never reach upstream", async () => {
    const session = await open("carol");
    send(session, { type: "response.create", event_id: "evt_greedy", response: { max_output_tokens: 4096 } });
    send(session, { type: "response.create", event_id: "evt_sing", response: { instructions: "Sing for an hour." } });
    send(session, { type: "transcription_session.update", event_id: "evt_unknown", session: {} });
    send(session, { type: "input_audio_buffer.clear", event_id: "evt_marker" });
    await upstream.realtime.receivedOf(session.id, "input_audio_buffer.clear");
    const errors = await eventually(5_000, () => {
      const errors = session.events.filter((event) => event.type === "error");
      return errors.length === 3 && errors;
    }, "three refusals");
    assert.deepEqual(errors.map((event) => [event.error.event_id, event.error.code]), [
      ["evt_greedy", "response_not_allowed"],
      ["evt_sing", "response_not_allowed"],
      ["evt_unknown", "event_not_allowed"],
    ]);
    const ids = session.upstream.received.map((event) => event.event_id);
    for (const id of ["evt_greedy", "evt_sing", "evt_unknown"]) assert.ok(!ids.includes(id), `${id} reached upstream`);
    assert.equal(received(session, "response.create").length, 0);
    session.socket.close();
    await session.closed;
  });

  test("maximal responses: hung up with an error event when the budget cannot hold two more, and never charged past it", async () => {
    const session = await open("dave");
    // Each one charged before the next: 3 × 12.09 M used, then 23.73 M of room < 24.18 M.
    for (let i = 1; i <= 3; i++) {
      upstream.realtime.send(session.id, { type: "response.created", response: { id: `resp_${i}` } });
      upstream.realtime.send(session.id, responseDone(MAXIMAL, `resp_${i}`));
      await poll(5_000, async () => (await costOf(session.token)).used_usd === usd(BigInt(i) * TURN), `charge ${i}`);
      if (i < 3) assert.equal(session.upstream.sideband.readyState, 1, `still open after ${i}`);
    }
    const closed = await within(5_000, session.closed, "the page's socket closed");
    assert.equal(closed.reason, "budget");
    const ended = session.events.find((event) => event.type === "error");
    assert.equal(ended.error.code, "budget", "the page is told why, before the close");
    await upstream.realtime.ended(session.id, 5_000);
    const cost = await settled(session.token);
    assert.equal(cost.used_usd, usd(3n * TURN), "hung up after the third response");
    assert.ok(3n * TURN <= BUDGET);
    const refused = await open("dave", { expect: 429 });
    assert.match(refused.body, /insufficient_quota/);
  });

  test("the operator ends a session by the call id in its log line", async () => {
    const session = await open("grace");
    const line = await eventually(5_000, () => proxy.logs.find((line) => line.route === "realtime.relay" && line.sub === "grace" && line.status === 101), "the log line");
    const call = line.detail.match(/^call (relay_[0-9a-f]{24})$/)[1];
    const answer = await fetch(`${proxy.url}/admin/calls/${call}`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    frames.push(await bodyText(answer));
    assert.equal(answer.status, 200);
    const closed = await within(5_000, session.closed, "the page's socket closed");
    assert.equal(closed.reason, "operator");
    assert.equal(session.events.at(-1).error.code, "operator");
    await upstream.realtime.ended(session.id, 5_000);
  });

  test("a second session past the concurrency cap is refused; a revocation ends the first", async () => {
    const session = await open("erin");
    const second = await open("erin", { expect: 429 });
    assert.match(second.body, /too_many_concurrent_streams/);
    const answer = await fetch(`${proxy.url}/admin/users/erin/revoke`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    frames.push(await bodyText(answer));
    assert.equal(answer.status, 200);
    const closed = await within(5_000, session.closed, "the page's socket closed");
    assert.equal(closed.reason, "revoked");
    await upstream.realtime.ended(session.id, 5_000);
    assert.equal(session.events.at(-1).error.code, "revoked");
  });

  test("refused before anything is opened upstream: a foreign origin, no token, the key subprotocol without realtime, no upgrade", async () => {
    const before = upstream.realtime.relays.length;
    assert.equal((await open("henry", { expect: 403, origin: "https://evil.example" })).status, 403);
    assert.equal((await open("henry", { expect: 401, protocols: ["realtime"] })).status, 401);
    const token = mintToken({ sub: "henry" });
    assert.equal((await open("henry", { expect: 401, protocols: [`openai-insecure-api-key.${token}`] })).status, 401);
    const plain = await fetch(`${proxy.url}/v1/realtime?model=${MODEL}`, { headers: { authorization: `Bearer ${token}` } });
    frames.push(await bodyText(plain));
    assert.equal(plain.status, 400);
    assert.equal(upstream.realtime.relays.length, before);
  });

  test("the official client: OpenAIRealtimeWebSocket drives a session through the relay, in Node and as a browser sends the key", async () => {
    for (const browser of [false, true]) {
      const token = mintToken({ sub: `frank-${browser}` });
      const index = upstream.realtime.relays.length;
      const transport = new OpenAIRealtimeWebSocket(
        // In a browser the SDK offers the key as a subprotocol; in Node it sends Authorization.
        browser ? { createWebSocket: ({ url, apiKey }) => new WebSocket(url, ["realtime", `openai-insecure-api-key.${apiKey}`]) } : {},
      );
      const events = [];
      const errors = [];
      transport.on("*", (event) => events.push(event));
      transport.on("error", (error) => errors.push(error));
      await within(10_000, transport.connect({ apiKey: token, url: wsUrl, model: MODEL, initialSessionConfig: { instructions: "Be a pirate.", voice: "cedar" } }), "connect");
      const id = await upstream.realtime.relayAt(index);
      transport.sendMessage("Hello", {});
      await upstream.realtime.receivedOf(id, "response.create");
      upstream.realtime.send(id, { type: "response.created", response: { id: "resp_sdk", object: "realtime.response", status: "in_progress", output: [] } });
      upstream.realtime.send(id, responseDone(MAXIMAL, "resp_sdk"));
      await eventually(5_000, () => events.some((event) => event.type === "response.done"), "the SDK sees response.done");
      // The SDK's own instructions (and its default transcription model) were refused, its voice kept.
      const update = upstream.realtime.calls.get(id).received.find((event) => event.type === "session.update" && event.session.audio?.output?.voice === "cedar");
      assert.ok(update, "the SDK's session.update, minus the fixed fields");
      assert.equal(update.session.instructions, undefined);
      assert.ok(errors.some((error) => error.error?.error?.code === "fixed_session_field"), JSON.stringify(errors));
      const cost = await charged(token);
      assert.equal(cost.used_usd, usd(TURN));
      transport.close();
      await upstream.realtime.ended(id, 5_000);
    }
  });

  test("the session cap ends a session: the page told, both sockets closed", async () => {
    const closed = await within(15_000, capped.closed, "the capped session's end");
    assert.equal(closed.reason, "max_seconds");
    assert.ok(Date.now() - capped.openedAt >= 9_000, `after ${Date.now() - capped.openedAt} ms`);
    assert.equal(capped.events.at(-1).error.code, "max_seconds");
    await upstream.realtime.ended(capped.id, 5_000);
  });

  test("the key is in no answer, no frame, no log line; the token in no log line", async () => {
    const key = upstream.apiKey;
    for (const frame of frames) assert.ok(!frame.includes(key), frame);
    for (const line of proxy.logs) assert.ok(!JSON.stringify(line).includes(key), JSON.stringify(line));
    for (const token of tokens) assert.ok(!proxy.logs.some((line) => JSON.stringify(line).includes(token)), "a subprotocol's token in the log");
    for (const id of upstream.realtime.relays) assert.ok(!JSON.stringify(upstream.realtime.calls.get(id).received).includes(key));
    assert.ok(proxy.logs.some((line) => line.event === "voice_call_end" && /call relay_[0-9a-f]{24} .* ended: budget;/.test(line.detail)));
  });
});

