// `make dev`: the proxy on http://127.0.0.1:8787 through `wrangler dev`, working with no key
// and no internet (the bundled mock upstream stands in for OpenAI), plus a curl to try it.
import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { startExample } from "../examples/browser/server.mjs";
import { startMockUpstream } from "../tests/mock-upstream.mjs";

const PORT = 8787;
const BASE = `http://127.0.0.1:${PORT}`;
const READY_TIMEOUT_MS = 10 * 60 * 1000; // the first build installs tools and compiles

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Created .dev.vars from .dev.vars.example (git ignores it). Put your OPENAI_API_KEY there to use OpenAI.");
}
const devVars = Object.fromEntries(
  readFileSync(".dev.vars", "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#") && line.includes("="))
    .map((line) => [line.slice(0, line.indexOf("=")).trim(), line.slice(line.indexOf("=") + 1).trim().replace(/^"|"$/g, "")]),
);

const wranglerArgs = ["dev", "--ip", "127.0.0.1", "--port", String(PORT), "--show-interactive-dev-session=false"];
let mock = null;
if (!(process.env.OPENAI_API_KEY || devVars.OPENAI_API_KEY)) {
  mock = await startMockUpstream({ chunkDelayMs: 60 });
  wranglerArgs.push("--var", `UPSTREAM_BASE_URL:${mock.url}`, "--var", `OPENAI_API_KEY:${mock.apiKey}`);
  console.log(
    [
      "",
      "#################################################################################",
      "#  NO OPENAI_API_KEY SET: using the bundled MOCK upstream (not OpenAI).          #",
      `#  Mock: ${mock.url.padEnd(71)}#`,
      "#  Answers are canned. Set OPENAI_API_KEY in .dev.vars to talk to OpenAI.        #",
      "#################################################################################",
      "",
    ].join("\n"),
  );
}

// Its own process group, so that stopping it stops workerd and the build it started too.
const wrangler = spawn("node_modules/.bin/wrangler", wranglerArgs, {
  stdio: "inherit",
  detached: true,
  env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
});
let stopping = false;
let example = null;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  try {
    process.kill(-wrangler.pid, "SIGINT");
  } catch {} // already gone
  await mock?.close();
  await example?.close();
  process.exit(code);
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));
wrangler.on("exit", (code) => stop(code ?? 0));

const deadline = Date.now() + READY_TIMEOUT_MS;
while (!stopping && Date.now() < deadline) {
  try {
    // One patient request: wrangler holds requests while it builds, and an abandoned one makes
    // workerd log a broken pipe.
    const left = Math.max(1000, deadline - Date.now());
    if ((await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(left) })).ok) break;
  } catch {}
  await new Promise((resolve) => setTimeout(resolve, 500));
}
if (!stopping && Date.now() >= deadline) {
  console.error(`The proxy did not answer on ${BASE}/healthz in time.`);
  await stop(1);
}

// The example page, on its own origin (listed in .dev.vars.example's ALLOWED_ORIGINS).
example = await startExample({ port: 8788, proxyUrl: BASE, jwtSecret: devVars.JWT_SECRET || process.env.JWT_SECRET }).catch((error) => {
  console.error(`The example page could not start: ${error.message}`);
  return null;
});

const token = execFileSync("cargo", ["run", "--quiet", "--bin", "mint-token", "--", "--sub", "dev-user", "--ttl", "1h"], { encoding: "utf8" }).trim();
const model = (devVars.ALLOWED_MODELS || "gpt-6-luna").split(/[\s,]+/)[0];
console.log(`
The proxy is up on ${BASE}. Stream a chat completion through it (token valid for 1 hour):

curl -N ${BASE}/v1/chat/completions \\
  -H 'Authorization: Bearer ${token}' \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"${model}","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'

${example ? `The example chat page: ${example.url}\n` : ""}More tokens: cargo run --bin mint-token -- --sub alice --ttl 15m
Stop with Ctrl-C.
`);
