// OpenAI's Realtime "unified interface" on the mock upstream (tests/mock-upstream.mjs): the
// calls endpoint (multipart `sdp` + `session` in, 201 with an SDP answer and `Location` out),
// the call's sideband WebSocket (`GET /v1/realtime?call_id=…` with the key), scripted by the
// tests, and the hang-up endpoint, recording every call; and the primary WebSocket endpoint
// (`GET /v1/realtime?model=…` with the key), which the proxy's relay opens: scripted the same
// way, each session recorded like a call (id `ws_mockN`) with every client event it received.
// Shapes: openai-node src/resources/realtime/{calls,realtime}.ts (2026-08).
import { WebSocketServer } from "ws";
import { parseForm } from "./mock-audio.mjs";

export function mockRealtime({ apiKey }) {
  const calls = new Map(); // id -> { id, session, sdp, sideband, received, hangups, waiters }
  const hangups = [];
  const relays = []; // ids of the primary endpoint's sessions, in order
  // How long a sideband stays open after its call is hung up (OpenAI may deliver the last
  // events of a response under way before it closes). failCreates: how many of the next call
  // creations answer 503 (an outage at OpenAI). `webrtc`: answer offers with a real peer on
  // loopback (tests/mock-webrtc.mjs) instead of a fixed SDP no browser can connect to.
  // sessionCreatedAfterMs: how long the primary endpoint waits before its `session.created`.
  const settings = { lingerAfterHangupMs: 0, failCreates: 0, webrtc: false, sessionCreatedAfterMs: 0 };
  const wss = new WebSocketServer({ noServer: true });
  let next = 0;

  const callRecord = (id) => {
    if (!calls.has(id)) calls.set(id, { id, received: [], waiters: [], sideband: null, ended: false });
    return calls.get(id);
  };
  const wake = (call) => {
    for (const waiter of call.waiters.splice(0)) waiter();
  };

  /** Handles the HTTP requests of the Realtime API; returns false for any other. */
  function serve(req, res, body) {
    const url = new URL(req.url, "http://mock");
    const authorized = req.headers.authorization === `Bearer ${apiKey}`;
    if (url.pathname === "/v1/realtime/calls" && req.method === "POST") {
      if (!authorized) return sendJson(res, 401, { error: { message: "Incorrect API key provided", code: "invalid_api_key" } }), true;
      const form = callForm(req.headers["content-type"], body);
      if (!form.sdp?.startsWith("v=0") || !form.session) return sendJson(res, 400, { error: { message: "sdp and session are required" } }), true;
      if (settings.failCreates > 0) {
        settings.failCreates -= 1;
        return sendJson(res, 503, { error: { message: "The server is overloaded", type: "server_error" } }), true;
      }
      const id = `rtc_mock${++next}`;
      const call = Object.assign(callRecord(id), { session: JSON.parse(form.session), sdp: form.sdp, parts: form.names });
      answer(call).then((sdp) => {
        res.writeHead(201, { "content-type": "application/sdp", location: `/v1/realtime/calls/${id}`, "openai-organization": "org-mock-operator" });
        res.end(sdp);
      }, (error) => sendJson(res, 400, { error: { message: `the offer could not be answered: ${error.message}` } }));
      return true;
    }
    const hangup = url.pathname.match(/^\/v1\/realtime\/calls\/([^/]+)\/hangup$/);
    if (hangup && req.method === "POST") {
      if (!authorized) return sendJson(res, 401, { error: { message: "Incorrect API key provided" } }), true;
      hangups.push({ id: hangup[1], at: Date.now() });
      const call = calls.get(hangup[1]);
      if (!call) return sendJson(res, 404, { error: { code: "call_id_not_found" } }), true;
      call.ended = true;
      call.peer?.close();
      closeSideband(call, "hung up");
      wake(call);
      res.writeHead(200).end();
      return true;
    }
    return false;
  }

  /** The SDP answer: a real peer's when asked for, whose leaving ends the call as OpenAI's does. */
  async function answer(call) {
    if (!settings.webrtc) return `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=mock answer for ${call.id}\r\n`;
    const { answerOffer } = await import("./mock-webrtc.mjs");
    call.peer = await answerOffer(call.sdp, {
      onClose: () => {
        call.left = true;
        closeSideband(call, "the peer left");
        wake(call);
      },
    });
    call.peer.opened.then(() => {
      call.channelOpen = true;
      wake(call);
    });
    return call.peer.sdp;
  }

  function closeSideband(call, reason) {
    const sideband = call.sideband;
    setTimeout(() => sideband?.close(1000, reason), settings.lingerAfterHangupMs);
  }

  /** The sideband: a WebSocket upgrade of `/v1/realtime?call_id=…` with the key. */
  function upgrade(req, socket, head) {
    const url = new URL(req.url, "http://mock");
    if (url.pathname === "/v1/realtime" && url.searchParams.has("model")) return openSession(req, socket, head, url.searchParams.get("model"));
    const call = calls.get(url.searchParams.get("call_id"));
    if (url.pathname !== "/v1/realtime" || req.headers.authorization !== `Bearer ${apiKey}` || !call || call.ended) {
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      call.sideband = ws;
      call.upgradeHeaders = req.headers;
      ws.on("message", (data) => {
        call.received.push(JSON.parse(String(data)));
        wake(call);
      });
      ws.on("close", () => wake(call));
      ws.send(JSON.stringify({ type: "session.created", event_id: "event_0", session: call.session }));
      wake(call);
    });
  }

  /** The primary endpoint: a session OpenAI's defaults start, which `session.update` changes. */
  function openSession(req, socket, head, model) {
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      socket.end("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const id = `ws_mock${++next}`;
      const session = { type: "realtime", model, instructions: "OpenAI's default instructions", max_output_tokens: "inf", tools: [], audio: { input: { transcription: null }, output: { voice: "alloy" } } };
      Object.assign(callRecord(id), { session, sideband: ws, upgradeHeaders: req.headers });
      relays.push(id);
      ws.on("message", (data) => {
        const event = JSON.parse(String(data));
        call.received.push(event);
        if (event.type === "session.update") {
          merge(session, event.session);
          ws.send(JSON.stringify({ type: "session.updated", event_id: `event_${Date.now()}`, session }));
        }
        wake(call);
      });
      const call = calls.get(id);
      ws.on("close", () => wake(call));
      setTimeout(() => ws.send(JSON.stringify({ type: "session.created", event_id: "event_0", session })), settings.sessionCreatedAfterMs);
      wake(call);
    });
  }

  /** Waits (at most `ms`) until `check(call)` holds for the call `id`. */
  const until = (id, check, what, ms) => waitFor(callRecord(id), check, `mock realtime: ${what}`, ms);

  return {
    serve,
    upgrade,
    calls,
    hangups,
    relays,
    /** The id of the `index`th session of the primary endpoint, once it is open. */
    async relayAt(index, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (relays.length <= index) {
        if (Date.now() > deadline) throw new Error(`mock realtime: no relay session #${index}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return relays[index];
    },
    settings,
    /** The call once its sideband is open. */
    sidebandOf: (id, ms) => until(id, (call) => call.sideband?.readyState === 1, "the sideband", ms),
    /**
     * Sends a server event on the call's sideband, and on its data channel when a real peer
     * answered (OpenAI sends every server event to both); returns false once the sideband is
     * closed (hung up).
     */
    send(id, event) {
      const call = calls.get(id);
      if (call?.sideband?.readyState !== 1) return false;
      const frame = { event_id: `event_${Date.now()}`, ...event };
      call.sideband.send(JSON.stringify(frame));
      call.peer?.send(frame);
      return true;
    },
    /** The call once the page opened its data channel (a real peer answered). */
    channelOf: (id, ms) => until(id, (call) => call.channelOpen, "the data channel", ms),
    /** Waits for the call to be hung up by the proxy. */
    hungUp: (id, ms) => until(id, (call) => call.ended, "the hang-up", ms),
    /** Waits for the call to be hung up (by the proxy) or its sideband closed. */
    ended: (id, ms) => until(id, (call) => call.ended || call.sideband?.readyState === 3, "the end of the call", ms),
    /** Waits for a client event the proxy sent on the sideband. */
    receivedOf: (id, type, ms) => until(id, (call) => call.received.some((event) => event.type === type), `a ${type} event`, ms),
    close: () => {
      for (const call of calls.values()) {
        call.sideband?.terminate();
        call.peer?.close();
      }
      wss.close();
    },
  };
}

/** Waits (at most `ms`) until `check(record)` holds; `record.waiters` are woken on each change. */
export async function waitFor(record, check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check(record)) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out waiting for ${what} on ${record.id}`);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.min(left, 200));
      record.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  return record;
}

/** The most a response can use within the caps: every token audio, the dearest kind. */
export function maximalUsage(inputTokens, outputTokens) {
  return {
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    total_tokens: inputTokens + outputTokens,
    input_token_details: { audio_tokens: inputTokens, text_tokens: 0, cached_tokens: 0 },
    output_token_details: { audio_tokens: outputTokens, text_tokens: 0 },
  };
}

/** A `response.done` with this usage (`RealtimeResponseUsage`). */
export function responseDone(usage, id = `resp_${Math.random().toString(36).slice(2)}`) {
  return { type: "response.done", response: { object: "realtime.response", id, status: "completed", output: [], usage } };
}

/** The call's form: each part's text by name, and the names in order; empty when malformed (a 400). */
function callForm(contentType, body) {
  let parts = [];
  try {
    parts = parseForm(Buffer.from(body), contentType);
  } catch {
    // No sdp, no session: answered 400 like OpenAI's refusal of a bad form.
  }
  return { names: parts.map((part) => part.name), ...Object.fromEntries(parts.map((part) => [part.name, part.value.toString()])) };
}

/** `session.update`'s deep merge of a partial session into the session. */
function merge(target, patch) {
  for (const [key, value] of Object.entries(patch ?? {})) {
    if (value && typeof value === "object" && !Array.isArray(value) && target[key] && typeof target[key] === "object") merge(target[key], value);
    else target[key] = value;
  }
}

function sendJson(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
