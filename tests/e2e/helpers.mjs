// Starts the built Worker (build/, from `make build`) in workerd through Miniflare, on a free
// loopback port, and mints user tokens the way an app's backend would.
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { after, before } from "node:test";
import { Miniflare } from "miniflare";
import { outputCap } from "../mock-upstream.mjs";

const ROOT = new URL("../../", import.meta.url);
export const JWT_SECRET = "e2e-test-secret-that-is-long-enough-0123456789";
export const ALLOWED_ORIGIN = "https://app.example.com";

const compatibilityDate = readFileSync(new URL("wrangler.toml", ROOT), "utf8").match(/^compatibility_date = "(.+)"$/m)[1];

/**
 * Starts the proxy with these vars/secrets over test defaults. Returns its URL, the JSON log
 * lines it printed so far, `objects(binding)` (a Durable Object namespace, reached from outside
 * the Worker as another isolate would reach it) and `dispose()`. `persist`: a directory that keeps the Durable
 * Objects' storage across a dispose and a new start (objects start afresh, as after eviction).
 */
export async function startProxy(bindings = {}, { persist } = {}) {
  if (!existsSync(PROXY_SCRIPT)) {
    throw new Error("build/index.js is missing: run `make build` (make test does) first");
  }
  // Suites about other things make many requests as one user; quota.test.mjs sets its limits.
  const defaults = { ALLOWED_ORIGINS: ALLOWED_ORIGIN, ALLOWED_MODELS: "gpt-4o-mini,gpt-4.1-nano", JWT_SECRET, RATE_LIMIT_REQUESTS: "1000" };
  return startWorker(PROXY_SCRIPT, { ...defaults, ...bindings }, { USERS: "UserState", USAGE_INDEX: "UsageIndex", CALLS: "VoiceCall" }, { persist });
}

/**
 * Starts a module Worker (`script`, with its wasm beside it) in workerd on a free loopback port.
 * A binding given as `undefined` is left out. `durableObjects` maps binding names to classes.
 */
export async function startWorker(script, bindings, durableObjects = {}, { persist } = {}) {
  const logs = [];
  const mf = new Miniflare({
    ...workerOptions(script, bindings, Object.fromEntries(Object.entries(durableObjects).map(([name, className]) => [name, { className, useSQLite: true }]))),
    durableObjectsPersist: persist ?? false,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      for (const stream of [stdout, stderr]) {
        let pending = "";
        stream.on("data", (chunk) => {
          pending += chunk;
          const lines = pending.split("\n");
          pending = lines.pop();
          for (const line of lines) {
            try {
              logs.push(JSON.parse(line));
            } catch {
              logs.push({ raw: line });
            }
          }
        });
      }
    },
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, logs, objects: (binding) => mf.getDurableObjectNamespace(binding), dispose: () => mf.dispose() };
}

/**
 * Miniflare's options for a module Worker (`script`, with its wasm beside it): for suites that
 * run the proxy beside other Workers (`PROXY_SCRIPT` is the built proxy). `durableObjects` is
 * Miniflare's own map; a binding given as `undefined` is left out.
 */
export function workerOptions(script, bindings, durableObjects = {}) {
  return {
    modules: true,
    modulesRoot: new URL(".", script).pathname,
    scriptPath: script.pathname,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate,
    bindings: Object.fromEntries(Object.entries(bindings).filter(([, value]) => value !== undefined)),
    durableObjects,
  };
}

export const PROXY_SCRIPT = new URL("build/index.js", ROOT);
export { compatibilityDate };

/** An HS256 token like an app backend would mint (node:crypto, independent of the proxy's code). */
export function mintToken(claims = {}, { secret = JWT_SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub: "alice", iat: now, exp: now + 600, jti: randomUUID(), ...claims };
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const signingInput = `${encode(header)}.${encode(payload)}`;
  const signature = createHmac("sha256", secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

export function chatBody(overrides = {}) {
  return JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello proxy" }], ...overrides });
}

/** Headers a browser on an allowed origin sends, including its Accept-Encoding. */
export function browserHeaders(token, extra = {}) {
  return {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
    origin: ALLOWED_ORIGIN,
    "accept-encoding": "gzip, deflate, br",
    ...extra,
  };
}

/**
 * A proxy on `upstream()` (a started mock upstream) with these vars, started before and
 * disposed after the enclosing describe block. Returns a handle whose `proxy` is set by then.
 */
export function proxyFor(upstream, bindings = {}) {
  const handle = {};
  before(async () => {
    handle.proxy = await startProxy({ UPSTREAM_BASE_URL: upstream().url, OPENAI_API_KEY: upstream().apiKey, ...bindings });
  });
  after(() => handle.proxy?.dispose());
  return handle;
}

/** The `/v1/usage` of the token's user. */
export async function usageOf(proxy, token) {
  const response = await within(10_000, fetch(`${proxy.url}/v1/usage`, { headers: { authorization: `Bearer ${token}` } }), "/v1/usage");
  assert.equal(response.status, 200);
  return within(10_000, response.json(), "the body of /v1/usage");
}

/** A response's body as text, within `ms`: a stream that never ends fails the test instead of hanging it. */
export function bodyText(response, ms = 10_000) {
  return within(ms, response.text(), `the body of a ${response.status} answer`);
}

/**
 * The tokens a request without hosted tools, images or stored context reserves, from what the
 * proxy forwarded (README, "What a request costs"): the bytes of the JSON it sent upstream,
 * plus the output cap it sent (`max_completion_tokens`, `max_tokens` or `max_output_tokens`)
 * times `n`. `upstream` is the mock's record of the request. Without a usage report, this is
 * the whole charge.
 */
export function reservedTokens(upstream) {
  return Buffer.byteLength(upstream.body) + outputCap(upstream.json);
}

/** The one log line of the request whose `x-request-id` is `requestId`, once it is written (a stream's at its end). */
export function logLineOf(proxy, requestId, ms = 10_000) {
  assert.ok(requestId, "the answer carries an x-request-id");
  return within(ms, (async () => {
    for (;;) {
      const lines = proxy.logs.filter((line) => line.request_id === requestId && line.route);
      if (lines.length > 0) {
        assert.equal(lines.length, 1, `one log line per request, got ${lines.length}`);
        return lines[0];
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })(), `the log line of request ${requestId}`);
}

/** Polls `check` (sync or async) every 20 ms until it gives something truthy, for at most `ms`. */
export const eventually = (ms, check, what) =>
  within(ms, (async () => {
    for (;;) {
      const found = await check();
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })(), what);

/** Awaits `check` every 50 ms until it gives something truthy, for at most `ms`. */
export const poll = (ms, check, what) =>
  within(ms, (async () => {
    for (;;) {
      const found = await check();
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })(), what);

/** Polls `/v1/usage` until nothing is reserved and no stream is open: settlement runs after the response. */
export function settledUsage(proxy, token) {
  return within(8000, (async () => {
    for (;;) {
      const current = await usageOf(proxy, token);
      if (current.tokens.reserved === 0 && current.streams.open === 0) return current;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })(), "usage to settle");
}

const CHROMIUM = "/usr/bin/chromium";
/**
 * Why the browser suites skip (Debian's Chromium is missing), or `false`. Under `CI=true` a
 * browser suite never skips: it runs, and `launchChromium` fails it, so a CI without a browser
 * cannot stay green with ten tests unrun.
 */
export const chromiumMissing =
  existsSync(CHROMIUM) || process.env.CI === "true" ? false : `${CHROMIUM} is missing (make test installs it as root with apt-get)`;

/** Debian's headless Chromium through playwright-core, as every browser suite runs it (`extraArgs`: a suite's own flags). */
export async function launchChromium(extraArgs = []) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing, and CI=true forbids skipping the browser suites (scripts/ensure-chromium.sh installs it as root with apt-get)`);
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}

/** Rejects if `promise` takes longer than `ms`: every wait in the suite is bounded. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The proxy's default prices in nano-USD per 1M tokens (README, "Plans and prices").
export const PRICES = {
  "gpt-4o-mini": { input: 150_000_000n, cached: 75_000_000n, output: 600_000_000n },
  "gpt-4.1-nano": { input: 100_000_000n, cached: 25_000_000n, output: 400_000_000n },
};

/** What a usage report costs in nano-USD, rounded up as the proxy does; BigInt, so exact. */
export function nanoUsd(model, reported) {
  const price = PRICES[model];
  // Chat Completions' names, or the Responses API's.
  const input = BigInt(reported.prompt_tokens ?? reported.input_tokens);
  const output = BigInt(reported.completion_tokens ?? reported.output_tokens);
  const cached = BigInt((reported.prompt_tokens_details ?? reported.input_tokens_details)?.cached_tokens ?? 0);
  const micro = (input - cached) * price.input + cached * price.cached + output * price.output;
  return (micro + 999_999n) / 1_000_000n;
}

/** A request's worst case in nano-USD: every byte sent as an input token, the output cap as output. */
export function worstNanoUsd(model, upstreamBody, maxTokens) {
  const price = PRICES[model];
  return (BigInt(Buffer.byteLength(upstreamBody)) * price.input + BigInt(maxTokens) * price.output + 999_999n) / 1_000_000n;
}

export const usd = (nano) => Number(nano) / 1e9;
