// What each layer of the proxy adds to a request, measured in workerd on this machine:
// `node bench/latency.mjs [requests]` (after `make build`). Sequential requests, so the
// numbers are latencies, not throughput. Prints p50/p99 in milliseconds.
import { startMockUpstream } from "../tests/mock-upstream.mjs";
import { chatBody, mintToken, startProxy } from "../tests/e2e/helpers.mjs";

const requests = Number(process.argv[2] ?? 300);
const mock = await startMockUpstream();
const proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, RATE_LIMIT_REQUESTS: "1000", DAILY_TOKEN_BUDGET: "1000000000" });
const token = mintToken({ sub: "bench-user", exp: Math.floor(Date.now() / 1000) + 3600 });
const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };

async function measure(name, send) {
  for (let i = 0; i < 20; i++) await (await send()).arrayBuffer(); // warm up
  const times = [];
  for (let i = 0; i < requests; i++) {
    const start = performance.now();
    const response = await send();
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${name}: ${response.status}`);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(2);
  console.log(`${name.padEnd(52)} p50 ${at(0.5).padStart(7)} ms   p99 ${at(0.99).padStart(7)} ms`);
}

try {
  console.log(`${requests} sequential requests each, after 20 to warm up`);
  await measure("mock upstream directly (the floor)", () => fetch(`${mock.url}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${mock.apiKey}`, "content-type": "application/json" }, body: chatBody() }));
  await measure("proxy GET /healthz (no token, no Durable Object)", () => fetch(`${proxy.url}/healthz`));
  await measure("proxy GET /v1/models (token + 1 Durable Object call)", () => fetch(`${proxy.url}/v1/models`, { headers: auth }));
  await measure("proxy POST /v1/chat/completions (+ upstream)", () => fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: auth, body: chatBody() }));
} finally {
  await proxy.dispose();
  await mock.close();
}
