// The soak: many users at once against the built Worker in workerd and the mock upstream, each
// ending its streams a different way (read to the end, gone after the first event, stopped
// reading, upstream faults, bad tokens). Each kind of request may end only the ways it allows
// (a clean stream ends with [DONE]; a leaver may meet its own stream limit; a fault ends in the
// answer that fault must give), and at least a minimum of clean streams must get through, so a
// proxy that refuses everything fails. Then no traffic, and every user's stream slots and
// reservations must be back to zero, every admitted stream must have written its end-of-stream
// log line, and every user must be charged exactly: clean users upstream's usage; leavers,
// slow readers and broken streams their whole reservation (no usage came); refused and failed
// upstream calls nothing.
//
// `make soak` runs it for minutes; `make test` runs a short one (tests/e2e/soak.test.mjs).
// `node tests/soak.mjs [--short] [--seconds N]`. Loopback only; every wait is bounded.
import { pathToFileURL } from "node:url";
import { startMockUpstream, usage } from "./mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, reservedTokens, startProxy, within } from "./e2e/helpers.mjs";

const ADMIN_TOKEN = "soak-admin-token-that-is-long-enough-0123456789";
// Short enough for stalls and slow readers to end within the soak, long enough for a busy machine.
const IDLE_MS = 2000;
/** How long every user's slots and reservations may take to come back once traffic stops. */
const SETTLE_MS = 5000;

// `minCleanStreams`: clean streams that must end with [DONE]. A clean stream takes about 2 s
// (SHORT) or 4 s (LONG) alone; the minimum allows each clean user one every 10 s or so, a
// quarter of what an idle machine does, so only a proxy that refuses or breaks them fails it.
export const SHORT = { seconds: 20, clean: 4, leavers: 8, slow: 1, faulty: 2, badTokens: 1, chunkDelayMs: 50, minCleanStreams: 8 };
export const LONG = { seconds: 180, clean: 8, leavers: 8, slow: 2, faulty: 4, badTokens: 2, chunkDelayMs: 100, minCleanStreams: 144 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the soak; returns its numbers and the problems it found (none is a pass). */
export async function runSoak(options = SHORT, log = () => {}) {
  const { seconds, chunkDelayMs } = options;
  const mock = await startMockUpstream({ chunkDelayMs });
  const proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    ADMIN_TOKEN,
    MAX_CONCURRENT_STREAMS: "2",
    RATE_LIMIT_REQUESTS: "1000",
    RATE_LIMIT_WINDOW_SECONDS: "60",
    DAILY_TOKEN_BUDGET: "1000000000",
    STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS),
    UPSTREAM_TIMEOUT_MS: String(IDLE_MS * 2),
    UPSTREAM_RETRIES: "1",
  });
  const problems = [];
  const counts = {};
  const count = (name, n = 1) => (counts[name] = (counts[name] ?? 0) + n);
  const streamsAdmitted = {};
  const started = Date.now();
  const deadline = started + seconds * 1000;

  /** A request of `sub`, tagged so that the mock's records (and targeted faults) know whose it is. */
  let sequence = 0;
  const tagged = (sub, extra = {}) => {
    const tag = `${sub} #${++sequence}`;
    return { tag, body: chatBody({ stream: true, messages: [{ role: "user", content: `${tag} ${"word ".repeat(30)}` }], ...extra }) };
  };
  const matching = (tag) => (json) => json?.messages?.[0]?.content?.startsWith(`${tag} `);
  const send = (sub, body, signal, token = mintToken({ sub })) =>
    fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body, signal });

  const ownUsage = async (sub) => (await fetch(`${proxy.url}/v1/usage`, { headers: { authorization: `Bearer ${mintToken({ sub })}` } })).json();

  /**
   * Says whether a request was admitted. A refusal is counted, and is a problem unless its code
   * is one of `allowed` (a leaver may find its stream limit still held by the stream it just
   * left, until the proxy's next write notices; a clean user, one stream at a time, never may).
   */
  async function admitted(sub, response, { stream = true, allowed = [] } = {}) {
    if (response.status === 200) {
      if (stream) streamsAdmitted[sub] = (streamsAdmitted[sub] ?? 0) + 1;
      return true;
    }
    const { error } = await within(10_000, response.json(), `${sub}'s refusal`);
    count(`refused ${response.status} ${error?.code}`);
    if (!(response.status === 429 && allowed.includes(error?.code))) problems.push(`${sub}: unexpected ${response.status} ${error?.code}`);
    await sleep(100);
    return false;
  }
  const ownStreamLimit = { allowed: ["too_many_concurrent_streams"] };

  /** What each faulty request must get, and what it costs: "reserve" (no usage came) or 0. */
  const faultsByTag = new Map();

  const behaviours = {
    // Streams read to the end (some with the usage chunk), and now and then a whole answer.
    async clean(sub) {
      for (let n = 0; Date.now() < deadline; n++) {
        const stream = n % 4 !== 3;
        const { body } = tagged(sub, stream ? (n % 2 ? { stream_options: { include_usage: true } } : {}) : { stream: false });
        const response = await send(sub, body, AbortSignal.timeout(30_000));
        if (!(await admitted(sub, response, { stream }))) continue;
        const text = await within(30_000, response.text(), `${sub}'s answer`);
        if (stream && !text.endsWith("data: [DONE]\n\n")) problems.push(`${sub}: a clean stream did not end with [DONE]`);
        else count(stream ? "clean streams" : "whole answers");
      }
    },
    // A closed tab or a "stop" button: the first event, then the connection is gone.
    async leaver(sub) {
      while (Date.now() < deadline) {
        const controller = new AbortController();
        const response = await send(sub, tagged(sub).body, controller.signal);
        if (!(await admitted(sub, response, ownStreamLimit))) continue;
        await within(10_000, response.body.getReader().read(), `${sub}'s first event`);
        controller.abort();
        count("disconnects");
        await sleep(50);
      }
    },
    // A client that holds its connection and stops reading: the proxy must let go of it.
    async slow(sub) {
      while (Date.now() < deadline) {
        const { tag, body } = tagged(sub);
        mock.faultNext({ kind: "flood", match: matching(tag) });
        const controller = new AbortController();
        const response = await send(sub, body, controller.signal);
        if (!(await admitted(sub, response, ownStreamLimit))) continue;
        await within(10_000, response.body.getReader().read(), `${sub}'s first event`);
        // Still connected, reading nothing: its slot must come back after about IDLE_MS.
        const freed = Date.now() + IDLE_MS * 5;
        while ((await ownUsage(sub)).streams.open > 0 && Date.now() < freed) await sleep(100);
        if ((await ownUsage(sub)).streams.open > 0) problems.push(`${sub}: a client that stopped reading kept its slot for ${IDLE_MS * 5} ms`);
        controller.abort();
        count("slow readers");
      }
    },
    // Upstream misbehaving mid-stream or before its headers; the client reads what it gets.
    async faulty(sub) {
      // Each fault, what the client must see (a status, and the final error event's code for a
      // stream), and what it is charged: the reservation when upstream may have billed it
      // without a report, 0 for an error status (OpenAI does not bill a refused request).
      const faults = [
        { set: (tag) => mock.faultNext({ kind: "reset", match: matching(tag) }), status: 200, event: "upstream_error", charge: "reserve" },
        { set: (tag) => mock.faultNext({ kind: "cut", match: matching(tag) }), status: 200, event: "upstream_error", charge: "reserve" },
        { set: (tag) => mock.faultNext({ kind: "stall", match: matching(tag) }), status: 200, event: "upstream_timeout", charge: "reserve" },
        { set: (tag) => mock.faultNext({ kind: "not-sse", match: matching(tag) }), status: 200, event: "upstream_error", charge: "reserve" },
        { set: (tag) => mock.faultNext({ headerDelayMs: IDLE_MS * 4, match: matching(tag) }), status: 504, code: "upstream_timeout", charge: "reserve" },
        { set: (tag) => [1, 2].forEach(() => mock.failNext(500, { match: matching(tag) })), status: 502, code: "upstream_error", charge: 0 },
        { set: (tag) => mock.failNext(429, { headers: { "retry-after": "30" }, match: matching(tag) }), status: 429, code: "upstream_rate_limited", charge: 0 },
      ];
      for (let n = 0; Date.now() < deadline; n++) {
        const { tag, body } = tagged(sub);
        const fault = faults[n % faults.length];
        fault.set(tag);
        faultsByTag.set(tag, fault);
        const response = await send(sub, body, AbortSignal.timeout(30_000));
        count(`upstream faults (client saw ${response.status})`);
        if (response.status === 200) streamsAdmitted[sub] = (streamsAdmitted[sub] ?? 0) + 1;
        const text = await within(30_000, response.text(), `${sub}'s faulty answer`);
        if (response.status !== fault.status) {
          problems.push(`${sub}: a fault answered ${response.status}, expected ${fault.status}: ${text.slice(0, 200)}`);
        } else if (fault.event) {
          const last = text.split("\n").filter((line) => line.startsWith("data: ")).at(-1)?.slice(6);
          const code = (() => {
            try {
              return JSON.parse(last).error?.code;
            } catch {
              return undefined;
            }
          })();
          if (code !== fault.event || text.includes("[DONE]")) problems.push(`${sub}: a broken stream ended with ${last?.slice(0, 200)}, expected a final ${fault.event} event`);
        } else if (JSON.parse(text).error?.code !== fault.code) {
          problems.push(`${sub}: a fault answered ${text.slice(0, 200)}, expected ${fault.code}`);
        }
      }
    },
    // Expired, wrongly signed and missing tokens: 401, and never a reservation or a request counted.
    async badToken(sub) {
      const now = () => Math.floor(Date.now() / 1000);
      const tokens = [
        () => mintToken({ sub, iat: now() - 7200, exp: now() - 3600 }),
        () => mintToken({ sub }, { secret: "not-the-secret-of-the-proxy-0123456789abcdef" }),
        () => `${mintToken({ sub })}x`,
        () => "",
      ];
      for (let n = 0; Date.now() < deadline; n++) {
        const response = await send(sub, tagged(sub).body, AbortSignal.timeout(10_000), tokens[n % tokens.length]());
        await response.arrayBuffer();
        count("bad tokens");
        if (response.status !== 401) problems.push(`${sub}: a bad token got ${response.status}`);
        await sleep(50);
      }
    },
  };

  const users = [];
  for (const [kind, number] of [["clean", options.clean], ["leaver", options.leavers], ["slow", options.slow], ["faulty", options.faulty], ["badToken", options.badTokens]]) {
    for (let i = 0; i < number; i++) users.push({ kind, sub: `soak-${kind}-${i}` });
  }
  log(`# soak: ${users.length} users for ${seconds} s (${users.map((u) => u.sub).join(", ")})`);
  const results = await Promise.allSettled(users.map(({ kind, sub }) => behaviours[kind](sub)));
  for (const [index, result] of results.entries()) {
    if (result.status === "rejected") problems.push(`${users[index].sub}: ${result.reason?.message ?? result.reason}`);
  }
  const loadSeconds = (Date.now() - started) / 1000;

  const usageOf = async (sub) => {
    const response = await fetch(`${proxy.url}/admin/users/${encodeURIComponent(sub)}/usage`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    return response.json();
  };
  const leftovers = async () => {
    const all = await Promise.all(users.map(async ({ sub }) => ({ sub, usage: await usageOf(sub) })));
    return all.filter(({ usage }) => usage.streams.open > 0 || usage.tokens.reserved > 0);
  };
  const atEnd = await leftovers();
  const settleStarted = Date.now();
  let left = atEnd;
  while (left.length > 0 && Date.now() - settleStarted < SETTLE_MS) {
    await sleep(250);
    left = await leftovers();
  }
  const describe = (list) =>
    list.length === 0
      ? "none"
      : `${list.reduce((sum, { usage }) => sum + usage.streams.open, 0)} slots and ${list.reduce((sum, { usage }) => sum + usage.tokens.reserved, 0)} reserved tokens of ${list.length} users`;
  for (const { sub, usage: u } of left) {
    problems.push(`${sub}: ${u.streams.open} stream slots open and ${u.tokens.reserved} tokens reserved ${SETTLE_MS / 1000} s after the traffic stopped`);
  }

  const endLines = {};
  for (const line of proxy.logs) {
    if (line.stream && line.status === 200 && line.sub) endLines[line.sub] = (endLines[line.sub] ?? 0) + 1;
  }
  for (const { sub } of users) {
    const admittedStreams = streamsAdmitted[sub] ?? 0;
    if ((endLines[sub] ?? 0) !== admittedStreams) {
      problems.push(`${sub}: ${admittedStreams} streams admitted, ${endLines[sub] ?? 0} end-of-stream log lines`);
    }
  }

  const cleanStreams = counts["clean streams"] ?? 0;
  if (cleanStreams < options.minCleanStreams) problems.push(`only ${cleanStreams} clean streams ended with [DONE], fewer than ${options.minCleanStreams}`);

  /** What upstream received for `sub`'s requests. */
  const upstreamOf = (sub) => mock.requests.filter((r) => r.json?.messages?.[0]?.content?.startsWith(`${sub} #`));
  /** What `sub` must have been charged, exactly, from what reached upstream. */
  const expectedCharge = (kind, sub) => {
    const sent = upstreamOf(sub);
    if (kind === "clean") return sent.reduce((sum, r) => sum + usage(r.json).total_tokens, 0);
    // Gone, stopped reading, or the flood cut off: no usage came, the whole reservation.
    if (kind === "leaver" || kind === "slow") return sent.reduce((sum, r) => sum + reservedTokens(r), 0);
    if (kind === "faulty") {
      // One charge per client request (a 500 is sent twice, the retry with the same body).
      const tags = new Set(sent.map((r) => r.json.messages[0].content.split(" ").slice(0, 2).join(" ")));
      return [...tags].reduce((sum, tag) => {
        const fault = faultsByTag.get(tag);
        return sum + (fault.charge === "reserve" ? reservedTokens(sent.find((r) => r.json.messages[0].content.startsWith(`${tag} `))) : fault.charge);
      }, 0);
    }
    return 0;
  };
  for (const { kind, sub } of users) {
    const u = await usageOf(sub);
    if (kind === "badToken") {
      if (u.tokens.used !== 0 || u.requests.remaining !== u.requests.limit) problems.push(`${sub}: bad tokens were counted (${JSON.stringify(u)})`);
      if (upstreamOf(sub).length > 0) problems.push(`${sub}: a bad token reached upstream`);
      continue;
    }
    const expected = expectedCharge(kind, sub);
    if (u.tokens.used !== expected) problems.push(`${sub}: charged ${u.tokens.used} tokens, expected ${expected} from what reached upstream`);
  }

  await proxy.dispose();
  await mock.close();
  const requests = Object.values(counts).reduce((sum, n) => sum + n, 0);
  return {
    problems,
    numbers: {
      seconds: Math.round(loadSeconds),
      users: users.length,
      requests,
      upstreamRequests: mock.requests.length,
      ...counts,
      leftWhenTrafficStopped: describe(atEnd),
      leftAfterSettling: describe(left),
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name) => {
    const index = process.argv.indexOf(name);
    return index > 0 ? process.argv[index + 1] : undefined;
  };
  const options = { ...(process.argv.includes("--short") ? SHORT : LONG) };
  if (arg("--seconds")) options.seconds = Number(arg("--seconds"));
  const { problems, numbers } = await runSoak(options, console.log);
  for (const [name, value] of Object.entries(numbers)) console.log(`${name.padEnd(40)} ${value}`);
  if (problems.length > 0) {
    console.log(`\nFAILED: ${problems.length} problems`);
    const times = new Map();
    for (const problem of problems) times.set(problem, (times.get(problem) ?? 0) + 1);
    for (const [problem, n] of times) console.log(`  ${problem}${n > 1 ? ` (${n} times)` : ""}`);
    process.exit(1);
  }
  console.log("\nok: every request ended as its kind allows, every slot and reservation released, every user charged exactly");
}
