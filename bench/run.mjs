// `make bench`: the proxy against its baselines, in workerd on this machine, over loopback.
//
//   mock      the mock upstream called directly: the floor
//   js        bench/baseline-js: what a developer would write by hand (HS256 WebCrypto check,
//             a Durable Object counter, stream passthrough)
//   rust      this proxy, all checks on (HS256, policy, admission + settlement Durable Object calls)
//   rust-es   the same with ES256 user tokens from an identity provider's key set (JWKS)
//   rust-rs   the same with RS256 user tokens
//
// Each figure is the median of BENCH_RUNS runs (default 5, BENCH_SECONDS each) with its
// min-max, after a warm-up run. `--smoke` runs each once, briefly, to show the bench works
// (make test); it writes test-results/bench-smoke.json instead.
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { startMockUpstream } from "../tests/mock-upstream.mjs";
import { JWT_SECRET, chatBody, mintToken, startProxy, startWorker } from "../tests/e2e/helpers.mjs";

const ROOT = new URL("../", import.meta.url);
const smoke = process.argv.includes("--smoke");
const RUNS = smoke ? 1 : Number(process.env.BENCH_RUNS ?? 5);
const SECONDS = smoke ? 1 : Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTIONS = [1, 32];
const STREAMS_PER_RUN = smoke ? 5 : 40;

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
const generous = { UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, RATE_LIMIT_REQUESTS: "1000", RATE_LIMIT_WINDOW_SECONDS: "1", DAILY_TOKEN_BUDGET: "1000000000000", MAX_CONCURRENT_STREAMS: "100" };
const targets = {
  mock: { url: mock.url.replace(/\/v1$/, ""), path: "/v1/chat/completions", token: () => mock.apiKey, worker: null },
  js: {
    worker: await startWorker(new URL("bench/baseline-js/worker.mjs", ROOT), { ...generous, JWT_SECRET, LIMIT: "1000000" }, { COUNTER: "Counter" }),
    path: "/",
    token: (sub) => mintToken({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }),
  },
  rust: { worker: await startProxy(generous), path: "/v1/chat/completions", token: (sub) => mintToken({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }) },
};
// Without JWT_SECRET, safety_identifier needs its own key (chat requests fail closed otherwise).
const providerProxy = await startProxy({ ...generous, JWT_SECRET: undefined, JWKS: jwks, JWT_ISSUER: PROVIDER_ISSUER, SAFETY_IDENTIFIER_SECRET: "bench-safety-identifier-secret-0123456789" });
targets["rust-es"] = { worker: providerProxy, path: "/v1/chat/completions", token: (sub) => providerToken("es", sub) };
targets["rust-rs"] = { worker: providerProxy, path: "/v1/chat/completions", token: (sub) => providerToken("rs", sub) };
for (const target of Object.values(targets)) target.url ??= target.worker.url;
// BENCH_TARGETS=js,rust measures only those (the mock always runs: it is the upstream).
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

/** One autocannon run: each connection is its own user with its own token. */
async function load(target, connections) {
  let user = 0;
  const cpuBefore = workerdCpuSeconds();
  const result = await autocannon({
    url: target.url + target.path,
    connections,
    duration: SECONDS,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: chatBody(),
    requests: [
      {
        setupRequest(request, context) {
          context.token ??= target.token(`bench-user-${user++}-${randomUUID()}`);
          return { ...request, headers: { ...request.headers, authorization: `Bearer ${context.token}` } };
        },
      },
    ],
  });
  const cpu = workerdCpuSeconds() - cpuBefore;
  if (result.non2xx || result.errors) throw new Error(`${target.url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { p50: result.latency.p50, p99: result.latency.p99, rps: result.requests.average, cpuMsPerRequest: (cpu * 1000) / result.requests.total };
}

/** Milliseconds to the first streamed word, sequentially. */
async function firstChunk(target) {
  const token = target.token(`stream-user-${randomUUID()}`);
  const times = [];
  for (let i = 0; i < STREAMS_PER_RUN; i++) {
    const started = performance.now();
    const response = await fetch(target.url + target.path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "accept-encoding": "gzip, deflate, br" },
      body: chatBody({ stream: true }),
    });
    const reader = response.body.getReader();
    let text = "";
    while (!text.includes('"content":"This ')) text += new TextDecoder().decode((await reader.read()).value);
    times.push(performance.now() - started);
    while (!(await reader.read()).done);
  }
  return median(times);
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const summary = (values) => ({ median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)) });
const round = (value) => Math.round(value * 100) / 100;

// Runs are interleaved (every target once per round) so that the machine's drift over the
// minutes of a bench touches all targets alike.
const measured = Object.keys(targets).filter((name) => !only || only.includes(name));
const samples = Object.fromEntries(measured.map((name) => [name, { c1: [], c32: [], firstChunkMs: [] }]));
try {
  // V8 first runs wasm and JS unoptimised and tiers hot code up under load: warm every target.
  if (!smoke) for (const name of measured) await load(targets[name], 32);
  for (let run = 0; run < RUNS; run++) {
    for (const name of measured) {
      for (const connections of CONNECTIONS) samples[name][`c${connections}`].push(await load(targets[name], connections));
      samples[name].firstChunkMs.push(await firstChunk(targets[name]));
    }
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
          return [`c${connections}`, Object.fromEntries(["p50", "p99", "rps", "cpuMsPerRequest"].map((key) => [key, summary(runs.map((r) => r[key]))]))];
        }),
      ),
      firstChunkMs: summary(samples[name].firstChunkMs),
    },
  ]),
);

const wasm = readFileSync(new URL("build/index_bg.wasm", ROOT));
const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
  method: { runs: RUNS, secondsPerRun: SECONDS, connections: CONNECTIONS, streamsPerRun: STREAMS_PER_RUN, note: "median (min-max) of runs; latency in ms; cpu = workerd process CPU / requests" },
  wasm: { rawBytes: wasm.length, gzipBytes: gzipSync(wasm, { level: 9 }).length },
  figures,
};
const out = smoke ? new URL("test-results/bench-smoke.json", ROOT) : new URL(`bench/results/${results.date.slice(0, 10)}.json`, ROOT);
mkdirSync(new URL(".", out), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);

const cell = (figure) => `${figure.median} (${figure.min}–${figure.max})`;
console.log(`| target | p50 c1 | p99 c1 | p50 c32 | p99 c32 | req/s c32 | first chunk ms | workerd CPU ms/req c32 |`);
console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
for (const [name, f] of Object.entries(figures)) {
  console.log(`| ${name} | ${cell(f.c1.p50)} | ${cell(f.c1.p99)} | ${cell(f.c32.p50)} | ${cell(f.c32.p99)} | ${cell(f.c32.rps)} | ${cell(f.firstChunkMs)} | ${name === "mock" ? "–" : cell(f.c32.cpuMsPerRequest)} |`);
}
console.log(`\nwasm: ${results.wasm.rawBytes} bytes raw, ${results.wasm.gzipBytes} gzip. Written to ${out.pathname}`);
