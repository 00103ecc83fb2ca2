// `make bench`: the proxy against its baselines, in workerd on this machine, over loopback.
//
//   mock      the mock upstream called directly: the floor
//   js        bench/baseline-js: what a developer would write by hand (HS256 WebCrypto check,
//             a Durable Object counter, stream passthrough)
//   rust      this proxy, all checks on (HS256, policy, admission + settlement Durable Object calls)
//   rust-es   the same with ES256 user tokens from an identity provider's key set (JWKS)
//   rust-rs   the same with RS256 user tokens
//   rust-global  HS256 with a global budget (GLOBAL_DAILY_TOKEN_BUDGET and GLOBAL_DAILY_BUDGET_USD):
//             each user's object spends from its lease of it, calling the global object only
//             to top the lease up or give it back
//   rust-guests  guest tokens (each connection a client of its own) with the guests' budget
//             (GLOBAL_GUEST_DAILY_BUDGET_USD): the guest's object and its client's, which holds
//             the lease
//
// Each connection is one user (BENCH_FRESH_USERS=true: each request a new user, so no request
// finds an earlier one's settlement to carry). Each figure is the median of BENCH_RUNS runs
// (default 5, BENCH_SECONDS each) with its min-max, after a warm-up run. "DO calls/req" is
// the Durable Object calls (all classes) the Worker made during a run, divided by the requests
// it served, read from its bench-only counters (BENCH_COUNTERS=true) once the Worker holds
// nothing back (settlements and usage wait in the isolate for a later call or a timer) and
// they stop moving.
// The production-like scenario streams from a mock that waits PROD_FIRST_CHUNK_MS before its
// first chunk and sends about 50 chunks PROD_CHUNK_MS apart; its figures are percentiles of
// all streams of all runs, shown as time added over the mock called directly.
// `--smoke` runs each once, briefly, to show the bench works (make test); it writes
// test-results/bench-smoke.json instead.
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { startMockUpstream } from "../tests/mock-upstream.mjs";
import { JWT_SECRET, chatBody, mintToken, startProxy, startWorker } from "../tests/e2e/helpers.mjs";
import { TURNSTILE_SECRET } from "../tests/mock-siteverify.mjs";

const ROOT = new URL("../", import.meta.url);
const smoke = process.argv.includes("--smoke");
// The smoke run is part of make test: a stream that never ends must fail it, not hang it.
if (smoke) {
  setTimeout(() => {
    console.error("bench --smoke: not done after 5 minutes (it takes about 30 s); giving up");
    process.exit(1);
  }, 300_000).unref();
}
const RUNS = smoke ? 1 : Number(process.env.BENCH_RUNS ?? 5);
const SECONDS = smoke ? 1 : Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = [1, 32];
const FRESH_USERS = process.env.BENCH_FRESH_USERS === "true";
const STREAMS_PER_RUN = smoke ? 5 : 40;
// Production-like streams: a model's time to first token, then ~50 chunks (smoke: scaled down).
const PROD_FIRST_CHUNK_MS = smoke ? 30 : 300;
const PROD_CHUNK_MS = smoke ? 2 : 20;
const PROD_STREAMS = { 1: smoke ? 2 : 6, 32: smoke ? 1 : 2 }; // per connection per run
// 37 words of the user's, echoed by the mock: role + 47 words + stop + usage = 50 chunks.
const PROD_BODY = chatBody({ stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: Array(37).fill("word").join(" ") }] });

// An identity provider's key set: user tokens signed with ES256 (kid "es") or RS256 (kid "rs").
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwks = JSON.stringify({
  keys: [
    { ...ec.publicKey.export({ format: "jwk" }), kid: "es", alg: "ES256", use: "sig" },
    { ...rsa.publicKey.export({ format: "jwk" }), kid: "rs", alg: "RS256", use: "sig" },
  ],
});
const PROVIDER_ISSUER = "https://id.example.com/";

function providerToken(kid, sub) {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const alg = kid === "es" ? "ES256" : "RS256";
  const input = `${encode({ alg, typ: "JWT", kid })}.${encode({ sub, iss: PROVIDER_ISSUER, iat: now, exp: now + 3600, jti: randomUUID() })}`;
  const key = kid === "es" ? { key: ec.privateKey, dsaEncoding: "ieee-p1363" } : rsa.privateKey;
  return `${input}.${sign("sha256", Buffer.from(input), key).toString("base64url")}`;
}

const mock = await startMockUpstream({ chunkDelayMs: 0 });
// Every limit is checked, none is reached: 1000 requests per 1 s window per user.
const generous = { BENCH_COUNTERS: "true", UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, RATE_LIMIT_REQUESTS: "1000", RATE_LIMIT_WINDOW_SECONDS: "1", DAILY_TOKEN_BUDGET: "1000000000000", MAX_CONCURRENT_STREAMS: "100" };
const targets = {
  mock: { url: mock.url.replace(/\/v1$/, ""), path: "/v1/chat/completions", token: () => mock.apiKey, worker: null },
  js: {
    worker: await startWorker(new URL("bench/baseline-js/worker.mjs", ROOT), { ...generous, JWT_SECRET, LIMIT: "1000000" }, { COUNTER: "Counter" }),
    path: "/",
    token: (sub) => mintToken({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }),
  },
  rust: { worker: await startProxy(generous), path: "/v1/chat/completions", token: (sub) => mintToken({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }) },
};
targets["rust-global"] = { ...targets.rust, worker: await startProxy({ ...generous, GLOBAL_DAILY_TOKEN_BUDGET: "1000000000000000", GLOBAL_DAILY_BUDGET_USD: "1000000" }) };
// Guest tokens signed as the proxy's /v1/guest signs them; the guest plan as generous as the rest.
const GUEST_TOKEN_SECRET = "bench-guest-token-secret-0123456789abcdef";
const guestPlan = { RATE_LIMIT_REQUESTS: 1000, RATE_LIMIT_WINDOW_SECONDS: 1, DAILY_TOKEN_BUDGET: 1000000000000, DAILY_BUDGET_USD: 1000000, MAX_CONCURRENT_STREAMS: 100 };
targets["rust-guests"] = {
  worker: await startProxy({ ...generous, TURNSTILE_SECRET_KEY: TURNSTILE_SECRET, GUEST_TOKEN_SECRET, PLANS: JSON.stringify({ guest: guestPlan }), GLOBAL_GUEST_DAILY_BUDGET_USD: "1000000" }),
  path: "/v1/chat/completions",
  token: (sub) => mintToken({ sub: `guest:${sub.replace(/[^A-Za-z0-9]/g, "").slice(-22).padStart(22, "g")}`, iss: "openai-edge-proxy/guest", exp: Math.floor(Date.now() / 1000) + 600 }, { secret: GUEST_TOKEN_SECRET }),
  // Each user a client of its own (its address names the client's object).
  headers: (sub) => ({ "cf-connecting-ip": `10.${sub.length % 250}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}` }),
};
// Without JWT_SECRET, safety_identifier needs its own key (chat requests fail closed otherwise).
const providerProxy = await startProxy({ ...generous, JWT_SECRET: undefined, JWKS: jwks, JWT_ISSUER: PROVIDER_ISSUER, SAFETY_IDENTIFIER_SECRET: "bench-safety-identifier-secret-0123456789" });
targets["rust-es"] = { worker: providerProxy, path: "/v1/chat/completions", token: (sub) => providerToken("es", sub) };
targets["rust-rs"] = { worker: providerProxy, path: "/v1/chat/completions", token: (sub) => providerToken("rs", sub) };
for (const target of Object.values(targets)) target.url ??= target.worker.url;
// BENCH_TARGETS=js,rust measures only those and the mock (the floor the others are compared with).
const only = process.env.BENCH_TARGETS?.split(",");

/** Total CPU seconds of all workerd processes (the idle ones add next to nothing). */
function workerdCpuSeconds() {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!stat.includes("(workerd)")) continue;
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]); // utime + stime
    } catch {} // the process ended meanwhile
  }
  return ticks / 100; // USER_HZ
}

/** The Worker's bench counters: requests served and Durable Object calls of all classes. */
async function counters(target) {
  const response = await fetch(`${target.worker.url}/__bench/counters`);
  if (!response.ok) throw new Error(`${target.worker.url}/__bench/counters answered ${response.status}`);
  const { requests, object_calls, held = 0 } = await response.json();
  return { requests, held, objectCalls: Object.values(object_calls).reduce((sum, calls) => sum + calls, 0) };
}

/** The counters once nothing is held back and they stopped moving (two equal reads), at most 5 s. */
async function settledCounters(target) {
  if (!target.worker) return null;
  let last = await counters(target);
  for (let waited = 0; waited < 5000; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await counters(target);
    if (now.held === 0 && now.objectCalls === last.objectCalls && now.requests === last.requests) return now;
    last = now;
  }
  return last;
}

/**
 * One autocannon run: each connection is its own user with its own token, for the whole run
 * (set per connection: autocannon starts a `requests` context afresh after every request).
 * BENCH_FRESH_USERS=true makes every request a new user instead.
 */
async function load(target, connections) {
  let user = 0;
  const headers = () => {
    const sub = `bench-user-${user++}-${randomUUID()}`;
    return { "content-type": "application/json", authorization: `Bearer ${target.token(sub)}`, ...target.headers?.(sub) };
  };
  const users = FRESH_USERS ? { requests: [{ setupRequest: (request) => ({ ...request, headers: headers() }) }] } : { setupClient: (client) => client.setHeaders(headers()) };
  const countedBefore = await settledCounters(target);
  const cpuBefore = workerdCpuSeconds();
  const result = await autocannon({
    url: target.url + target.path,
    connections,
    duration: SECONDS,
    method: "POST",
    body: chatBody(),
    ...users,
  });
  const cpu = workerdCpuSeconds() - cpuBefore;
  if (result.non2xx || result.errors) throw new Error(`${target.url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  const countedAfter = await settledCounters(target);
  const objectCallsPerRequest = countedBefore ? (countedAfter.objectCalls - countedBefore.objectCalls) / (countedAfter.requests - countedBefore.requests) : null;
  return { p50: result.latency.p50, p99: result.latency.p99, rps: result.requests.average, cpuMsPerRequest: (cpu * 1000) / result.requests.total, objectCallsPerRequest };
}

/**
 * The production-like scenario at `connections`: each connection is a user streaming
 * PROD_STREAMS[connections] answers one after another. Milliseconds to the first body chunk
 * and to the stream's end, for every stream.
 */
async function production(target, connections) {
  const first = [];
  const last = [];
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const sub = `prod-user-${randomUUID()}`;
      const token = target.token(sub);
      const extra = target.headers?.(sub);
      for (let i = 0; i < PROD_STREAMS[connections]; i++) {
        const started = performance.now();
        const response = await fetch(target.url + target.path, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...extra },
          body: PROD_BODY,
        });
        if (!response.ok) throw new Error(`${target.url}: ${response.status} ${await response.text()}`);
        const reader = response.body.getReader();
        let firstAt = null;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (firstAt === null && value.length > 0) firstAt = performance.now();
        }
        first.push(firstAt - started);
        last.push(performance.now() - started);
      }
    }),
  );
  return { first, last };
}

/** Milliseconds to the first streamed word, sequentially. */
async function firstChunk(target) {
  const sub = `stream-user-${randomUUID()}`;
  const token = target.token(sub);
  const extra = target.headers?.(sub);
  const times = [];
  for (let i = 0; i < STREAMS_PER_RUN; i++) {
    const started = performance.now();
    const response = await fetch(target.url + target.path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "accept-encoding": "gzip, deflate, br", ...extra },
      body: chatBody({ stream: true }),
    });
    // An error answer has no first word: fail the bench (and the smoke in make test) at once.
    if (!response.ok) throw new Error(`${target.url}: a stream answered ${response.status} ${await response.text()}`);
    const reader = response.body.getReader();
    const deadline = performance.now() + 10_000;
    let text = "";
    while (!text.includes('"content":"This ')) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`${target.url}: the stream ended without its first word: ${text.slice(0, 500)}`);
      if (performance.now() > deadline) throw new Error(`${target.url}: no first word within 10 s`);
      text += new TextDecoder().decode(value);
    }
    times.push(performance.now() - started);
    while (!(await reader.read()).done);
  }
  return median(times);
}

/** Nearest-rank percentile. */
const percentile = (values, p) => [...values].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * values.length) - 1)];
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const summary = (values) => ({ median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)) });
const round = (value) => Math.round(value * 100) / 100;

// Runs are interleaved (every target once per round) so that the machine's drift over the
// minutes of a bench touches all targets alike.
const measured = Object.keys(targets).filter((name) => name === "mock" || !only || only.includes(name));
const samples = Object.fromEntries(measured.map((name) => [name, { c1: [], c32: [], firstChunkMs: [], prod: Object.fromEntries(CONNECTIONS.map((c) => [`c${c}`, { first: [], last: [] }])) }]));
try {
  // V8 first runs wasm and JS unoptimised and tiers hot code up under load: warm every target.
  if (!smoke) for (const name of measured) await load(targets[name], 32);
  for (let run = 0; run < RUNS; run++) {
    for (const name of measured) {
      for (const connections of CONNECTIONS) samples[name][`c${connections}`].push(await load(targets[name], connections));
      samples[name].firstChunkMs.push(await firstChunk(targets[name]));
    }
    mock.setStreamTiming({ firstChunkDelayMs: PROD_FIRST_CHUNK_MS, chunkDelayMs: PROD_CHUNK_MS });
    for (const name of measured) {
      for (const connections of CONNECTIONS) {
        const { first, last } = await production(targets[name], connections);
        samples[name].prod[`c${connections}`].first.push(...first);
        samples[name].prod[`c${connections}`].last.push(...last);
      }
    }
    mock.setStreamTiming({ firstChunkDelayMs: 0, chunkDelayMs: 0 });
    console.error(`round ${run + 1}/${RUNS} done`);
  }
} finally {
  for (const worker of new Set(Object.values(targets).map((target) => target.worker))) await worker?.dispose();
  await mock.close();
}
const figures = Object.fromEntries(
  measured.map((name) => [
    name,
    {
      ...Object.fromEntries(
        CONNECTIONS.map((connections) => {
          const runs = samples[name][`c${connections}`];
          const keys = ["p50", "p99", "rps", "cpuMsPerRequest", ...(name === "mock" ? [] : ["objectCallsPerRequest"])];
          return [`c${connections}`, Object.fromEntries(keys.map((key) => [key, summary(runs.map((r) => r[key]))]))];
        }),
      ),
      firstChunkMs: summary(samples[name].firstChunkMs),
      production: Object.fromEntries(
        CONNECTIONS.map((connections) => {
          const { first, last } = samples[name].prod[`c${connections}`];
          const at = (values) => ({ p50: round(percentile(values, 0.5)), p99: round(percentile(values, 0.99)) });
          return [`c${connections}`, { streams: first.length, firstChunkMs: at(first), lastChunkMs: at(last) }];
        }),
      ),
    },
  ]),
);

const wasm = readFileSync(new URL("build/index_bg.wasm", ROOT));
const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
  method: {
    runs: RUNS,
    secondsPerRun: SECONDS,
    freshUsers: FRESH_USERS,
    connections: CONNECTIONS,
    streamsPerRun: STREAMS_PER_RUN,
    production: { firstChunkDelayMs: PROD_FIRST_CHUNK_MS, chunkDelayMs: PROD_CHUNK_MS, streamsPerConnectionPerRun: PROD_STREAMS },
    note: "median (min-max) of runs; latency in ms; cpu = workerd process CPU / requests; objectCallsPerRequest = Durable Object calls / requests served; production = percentiles over all streams of all runs",
  },
  wasm: { rawBytes: wasm.length, gzipBytes: gzipSync(wasm, { level: 9 }).length },
  figures,
};
const out = smoke ? new URL("test-results/bench-smoke.json", ROOT) : new URL(`bench/results/${results.date.slice(0, 10)}.json`, ROOT);
mkdirSync(new URL(".", out), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);

const cell = (figure) => `${figure.median} (${figure.min}–${figure.max})`;
const calls = (figure) => (figure ? cell(figure) : "–");
console.log(`| target | p50 c1 | p99 c1 | p50 c32 | p99 c32 | req/s c32 | first chunk ms | workerd CPU ms/req c32 | DO calls/req c1 | DO calls/req c32 |`);
console.log(`| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`);
for (const [name, f] of Object.entries(figures)) {
  console.log(
    `| ${name} | ${cell(f.c1.p50)} | ${cell(f.c1.p99)} | ${cell(f.c32.p50)} | ${cell(f.c32.p99)} | ${cell(f.c32.rps)} | ${cell(f.firstChunkMs)} | ${name === "mock" ? "–" : cell(f.c32.cpuMsPerRequest)} | ${calls(f.c1.objectCallsPerRequest)} | ${calls(f.c32.objectCallsPerRequest)} |`,
  );
}
// Production-like streams: the mock's own times, then what each target adds to them.
const floor = figures.mock.production;
const signed = (name, value) => (name === "mock" || value < 0 ? `${value}` : `+${value}`);
console.log(`\nProduction-like streams (first chunk after ${PROD_FIRST_CHUNK_MS} ms, ~50 chunks ${PROD_CHUNK_MS} ms apart); mock: ms, others: ms added over the mock`);
console.log(`| target | first p50 c1 | first p99 c1 | last p50 c1 | last p99 c1 | first p50 c32 | first p99 c32 | last p50 c32 | last p99 c32 | streams c1/c32 |`);
console.log(`| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`);
for (const [name, f] of Object.entries(figures)) {
  const shown = (c, which, p) => round(f.production[c][which][p] - (name === "mock" ? 0 : floor[c][which][p]));
  const row = ["c1", "c32"].flatMap((c) => ["firstChunkMs", "lastChunkMs"].flatMap((which) => ["p50", "p99"].map((p) => signed(name, shown(c, which, p)))));
  console.log(`| ${name} | ${row.join(" | ")} | ${f.production.c1.streams}/${f.production.c32.streams} |`);
}
// The shared budgets against the plain proxy: throughput and object calls per request at c32.
for (const name of ["rust-global", "rust-guests"].filter((name) => figures[name] && figures.rust)) {
  const ratio = round(figures[name].c32.rps.median / figures.rust.c32.rps.median);
  console.log(`${name}: ${ratio}× the plain proxy's req/s at c32; ${figures[name].c32.objectCallsPerRequest.median} object calls/request (plain: ${figures.rust.c32.objectCallsPerRequest.median})`);
}
console.log(`\nwasm: ${results.wasm.rawBytes} bytes raw, ${results.wasm.gzipBytes} gzip. Written to ${out.pathname}`);
