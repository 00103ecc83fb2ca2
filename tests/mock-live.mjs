// OpenAI's GPT-Live API on the mock upstream (tests/mock-upstream.mjs): the create endpoint
// (`POST /v1/live/sessions`, JSON `{session, transport: {type: "webrtc", sdp}}` in,
// `{session: {id}, transport: {type, sdp}}` out; a session field it does not know is a 400, as
// OpenAI's strict `MediaSessionConfig` refuses it), and the session's sideband WebSocket
// (`/v1/live/sessions/{id}/attach` with the key), scripted by the tests: `session.started` on
// attach; `session.close` answered with `session.closed` and its cumulative `usage.seconds`,
// then the socket closes. Shapes: the Live API reference's examples (developers.openai.com,
// stored copy 2026-12-06) and Microsoft's GPT-Live reference.
import { WebSocketServer } from "ws";
import { waitFor } from "./mock-realtime.mjs";

const SESSION_FIELDS = new Set(["model", "instructions", "audio", "client", "delegation", "input", "store"]);

export function mockLive({ apiKey }) {
  const sessions = new Map(); // id -> { id, session, sdp, createdAt, sideband, attaches, received, closed, reportSeconds, waiters }
  const wss = new WebSocketServer({ noServer: true });
  // `refuseAttach`: every sideband is answered 404 (a session the proxy cannot watch).
  const settings = { refuseAttach: false };
  const sockets = new Set(); // every socket of an upgrade, destroyed on close whatever its state

  let next = 0;

  const record = (id) => {
    if (!sessions.has(id)) sessions.set(id, { id, received: [], waiters: [], sideband: null, attaches: 0, closed: false });
    return sessions.get(id);
  };
  const wake = (session) => {
    for (const waiter of session.waiters.splice(0)) waiter();
  };
  const send = (session, event) => {
    if (session.sideband?.readyState !== 1) return false;
    session.sideband.send(JSON.stringify({ event_id: `event_${Date.now()}`, ...event }));
    return true;
  };
  /** Ends the session upstream: `session.closed` with its usage, then the sideband closes. */
  const close = (session, reason) => {
    if (session.closed) return;
    session.closed = true;
    const seconds = session.reportSeconds ?? (Date.now() - session.createdAt) / 1000;
    send(session, { type: "session.closed", reason, session: session.session, usage: { seconds } });
    session.sideband?.close(1000, reason);
    wake(session);
  };

  /** Handles `POST /v1/live/sessions`; returns false for any other request. */
  function serve(req, res, body) {
    const url = new URL(req.url, "http://mock");
    if (url.pathname !== "/v1/live/sessions" || req.method !== "POST") return false;
    if (req.headers.authorization !== `Bearer ${apiKey}`) return sendJson(res, 401, { error: { message: "Incorrect API key provided", code: "invalid_api_key" } }), true;
    let asked = null;
    try {
      asked = JSON.parse(body);
    } catch {}
    const unknown = Object.keys(asked?.session ?? {}).filter((field) => !SESSION_FIELDS.has(field));
    if (asked?.transport?.type !== "webrtc" || !asked.transport.sdp?.startsWith("v=0") || !asked.session?.model || unknown.length) {
      return sendJson(res, 400, { error: { type: "invalid_request_error", message: `bad session or transport ${unknown}` } }), true;
    }
    const id = `live_mock${++next}`;
    Object.assign(record(id), { session: asked.session, sdp: asked.transport.sdp, createdAt: Date.now(), headers: req.headers });
    sendJson(res, 200, { session: { id }, transport: { type: "webrtc", sdp: `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=mock answer for ${id}\r\n` } });
    return true;
  }

  /** The sideband; returns false for an upgrade of another path. */
  function upgrade(req, socket, head) {
    const url = new URL(req.url, "http://mock");
    const attach = url.pathname.match(/^\/v1\/live\/sessions\/([^/]+)\/attach$/);
    if (!attach) return false;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const session = sessions.get(attach[1]);
    if (req.headers.authorization !== `Bearer ${apiKey}` || !session || session.closed || settings.refuseAttach) {
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
      return true;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      session.sideband = ws;
      session.attaches += 1;
      session.upgradeHeaders = req.headers;
      ws.on("message", (data) => {
        const event = JSON.parse(String(data));
        session.received.push(event);
        if (event.type === "session.close") close(session, "close_requested");
        wake(session);
      });
      ws.on("close", () => wake(session));
      send(session, { type: "session.started", session: { id: session.id, ...session.session } });
      wake(session);
    });
    return true;
  }

  /** Waits (at most `ms`) until `check(session)` holds for the session `id`. */
  const until = (id, check, what, ms) => waitFor(record(id), check, `mock live: ${what}`, ms);

  return {
    serve,
    upgrade,
    sessions,
    settings,
    /** The session once its sideband is open. */
    sidebandOf: (id, ms) => until(id, (session) => session.sideband?.readyState === 1, "the sideband", ms),
    /** Sends a server event on the session's sideband; false once it is closed. */
    send: (id, event) => send(record(id), event),
    /** The page hung up: the session closes upstream (`remote_hangup`). */
    hangUpPage: (id) => close(record(id), "remote_hangup"),
    /** Waits until the proxy sent `session.close` and the session closed. */
    closedByProxy: (id, ms) =>
      until(id, (session) => session.closed && session.received.some((event) => event.type === "session.close"), "the proxy's session.close", ms),
    close: () => {
      for (const socket of sockets) socket.destroy();
      wss.close();
    },
  };
}

function sendJson(res, status, body) {
  res.writeHead(status, { "content-type": "application/json", "openai-organization": "org-mock-operator" });
  res.end(JSON.stringify(body));
}
