// `node bench/memory.mjs [build-dir]`: the workerd process's resident memory while one isolate
// serves N concurrent large answers: Embeddings answers of EMBED_MB each (passed through) and
// whole chat answers of CHAT_MB each (held, within the isolate's budget). Prints the baseline
// RSS, the peak over it for each load, and how the requests were answered.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { startMockUpstream } from "../tests/mock-upstream.mjs";
import { browserHeaders, chatBody, mintToken, startWorker } from "../tests/e2e/helpers.mjs";

const BUILD = new URL(`${process.argv[2] ?? new URL("../build", import.meta.url).pathname}/index.js`, "file:///");
const N = Number(process.env.MEMORY_CONCURRENCY ?? 6);
const EMBED_MB = Number(process.env.EMBED_MB ?? 24);
const CHAT_MB = Number(process.env.CHAT_MB ?? 12);

const mock = await startMockUpstream();
let proxy;
let workerd;
const rss = () => Number(readFileSync(`/proc/${workerd}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]) / 1024;

/** Runs `make(i)` N times at once against a fresh workerd, warmed up. */
async function load(name, make) {
  proxy = await startWorker(
    BUILD,
    { UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ALLOWED_ORIGINS: "https://app.example.com", ALLOWED_MODELS: "gpt-4o-mini,text-embedding-3-small", JWT_SECRET: "e2e-test-secret-that-is-long-enough-0123456789", RATE_LIMIT_REQUESTS: "1000" },
    { USERS: "UserState", USAGE_INDEX: "UsageIndex" },
  );
  workerd = execFileSync("pgrep", ["-P", String(process.pid), "workerd"]).toString().trim().split("\n")[0];
  for (let i = 0; i < 3; i++) await (await post("/v1/chat/completions", "warm", chatBody())).arrayBuffer();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20);
  const before = rss();
  const statuses = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const response = await make(i);
      await response.arrayBuffer();
      return response.status;
    }),
  );
  clearInterval(sampler);
  console.log(`${name}: ${N} at once, RSS ${before.toFixed(0)} MB before, peak ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)} MB); statuses ${statuses.join(",")}`);
  await proxy.dispose();
}

const post = (path, sub, body) => fetch(`${proxy.url}${path}`, { method: "POST", headers: browserHeaders(mintToken({ sub })), body });
await load(`embeddings of ${EMBED_MB} MB`, (i) => {
  const input = [`embed ${i} a`, `embed ${i} b`];
  mock.faultNext({ kind: "big-answer", bytes: EMBED_MB << 20, match: (json) => json?.input?.[0] === input[0] });
  return post("/v1/embeddings", `embedder-${i}`, JSON.stringify({ model: "text-embedding-3-small", input }));
});
await load(`whole chat answers of ${CHAT_MB} MB`, (i) => {
  const content = `whole ${i}`;
  mock.faultNext({ kind: "big-answer", bytes: CHAT_MB << 20, match: (json) => json?.messages?.at(-1)?.content === content });
  return post("/v1/chat/completions", `reader-${i}`, chatBody({ messages: [{ role: "user", content }] }));
});
await mock.close();
