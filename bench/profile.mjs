// `node bench/profile.mjs`: where the proxy's CPU goes under load. Runs the build with its
// function names (target/index_bg.named.wasm, from make build) in workerd with the V8
// inspector on, loads it like `make bench` (one connection as one user, non-stream
// chat) and prints the functions with the most self time, wasm and JS, and the share of
// time in wasm, JS and idle.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { Miniflare } from "miniflare";
import WebSocket from "ws";
import { startMockUpstream } from "../tests/mock-upstream.mjs";
import { JWT_SECRET, chatBody, mintToken } from "../tests/e2e/helpers.mjs";

const ROOT = new URL("../", import.meta.url).pathname;
// Short: workerd's inspector did not answer Profiler.stop with much larger profiles here.
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 2);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 1);

const dir = mkdtempSync(path.join(os.tmpdir(), "proxy-profile-"));
cpSync(path.join(ROOT, "build"), dir, { recursive: true });
cpSync(path.join(ROOT, "target/index_bg.named.wasm"), path.join(dir, "index_bg.wasm"));
const mock = await startMockUpstream({ chunkDelayMs: 0 });
const inspectorPort = 9229 + Math.floor(Math.random() * 500);
const mf = new Miniflare({
  modules: true,
  modulesRoot: dir,
  scriptPath: path.join(dir, "index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  compatibilityDate: "2026-04-01",
  bindings: { JWT_SECRET, UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ALLOWED_MODELS: "gpt-4o-mini", RATE_LIMIT_REQUESTS: "1000", RATE_LIMIT_WINDOW_SECONDS: "1", DAILY_TOKEN_BUDGET: "1000000000000", MAX_CONCURRENT_STREAMS: "100" },
  durableObjects: { USERS: { className: "UserState", useSQLite: true }, USAGE_INDEX: { className: "UsageIndex", useSQLite: true } },
  host: "127.0.0.1",
  port: 0,
  inspectorPort,
  handleRuntimeStdio() {},
});
const url = (await mf.ready).toString().replace(/\/$/, "");
try {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  let id = 0;
  const pending = new Map();
  socket.on("message", (data) => {
    const message = JSON.parse(data);
    pending.get(message.id)?.(message.result);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      pending.set(++id, resolve);
      socket.send(JSON.stringify({ id, method, params }));
    });
  const run = async (seconds) => {
    let user = 0;
    return autocannon({
      url: `${url}/v1/chat/completions`,
      connections: CONNECTIONS,
      duration: seconds,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chatBody(),
      requests: [
        {
          setupRequest(request, context) {
            context.token ??= mintToken({ sub: `profile-${user++}`, exp: Math.floor(Date.now() / 1000) + 3600 });
            return { ...request, headers: { ...request.headers, authorization: `Bearer ${context.token}` } };
          },
        },
      ],
    });
  };
  await run(1); // warm-up: compiled code, objects created
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 1000 });
  await send("Profiler.start");
  const result = await run(SECONDS);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // held settlements flush
  // workerd's inspector sometimes never answers a stop: say so instead of hanging.
  const stopped = send("Profiler.stop");
  const gaveUp = new Promise((_, reject) => setTimeout(() => reject(new Error("workerd's inspector did not answer Profiler.stop within 30 s; try a shorter PROFILE_SECONDS")), 30_000).unref());
  const { profile } = await Promise.race([stopped, gaveUp]);
  socket.close();

  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let total = 0;
  profile.timeDeltas.forEach((delta, index) => {
    const frame = byId.get(profile.samples[index]).callFrame;
    const name = frame.functionName || `(anonymous ${path.basename(frame.url)})`;
    const kind = frame.url.startsWith("wasm://") ? "wasm" : name.startsWith("(") ? name : "js";
    const key = `${kind}\t${name}`;
    self.set(key, (self.get(key) ?? 0) + delta);
    total += delta;
  });
  const kinds = new Map();
  for (const [key, time] of self) kinds.set(key.split("\t")[0], (kinds.get(key.split("\t")[0]) ?? 0) + time);
  const busy = total - (self.get("(idle)\t(idle)") ?? 0);
  console.log(`${result.requests.total} requests in ${SECONDS} s (${Math.round(result.requests.average)} req/s), ${(busy / 1000 / result.requests.total).toFixed(2)} ms of busy main-thread time per request`);
  console.log([...kinds].sort((a, b) => b[1] - a[1]).map(([kind, time]) => `${kind} ${((100 * time) / total).toFixed(1)}%`).join(", "));
  for (const [key, time] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 30))) {
    console.log(`${((100 * time) / total).toFixed(1).padStart(5)}%  ${key.replace("\t", "  ").slice(0, 150)}`);
  }
} finally {
  await mf.dispose();
  await mock.close();
  rmSync(dir, { recursive: true, force: true });
}
