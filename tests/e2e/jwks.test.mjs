// The identity provider's key set (JWKS_URL) under stress: garbage tokens, a provider that is
// down, no cache time, a redirect, an endless body, and keys planted in the zone's cache. The
// provider is a loopback server that counts its fetches; each test starts its own proxy, so
// each starts with an empty isolate.
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import http from "node:http";
import { after, before, beforeEach, test } from "node:test";
import { Miniflare } from "miniflare";
import { ALLOWED_ORIGIN, PROXY_SCRIPT, compatibilityDate, startProxy, within, workerOptions } from "./helpers.mjs";

const ISSUER = "https://id.example.com/";
const AUDIENCE = "edge-proxy";
const provider = generateKeyPairSync("ec", { namedCurve: "P-256" });
const attacker = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = (pair, kid) => ({ ...pair.publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" });
const PROVIDER_SET = JSON.stringify({ keys: [jwk(provider, "provider-1")] });
const ATTACKER_SET = JSON.stringify({ keys: [jwk(attacker, "planted-1")] });

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** An ES256 token signed with `pair`'s private key. */
function es256(pair, kid) {
  const input = `${b64({ alg: "ES256", typ: "JWT", kid })}.${b64({ sub: "jwks-user", iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 300, jti: randomUUID() })}`;
  return `${input}.${sign("sha256", Buffer.from(input), { key: pair.privateKey, dsaEncoding: "ieee-p1363" }).toString("base64url")}`;
}

/** A key-set server; `answer(res)` writes each response. Counts fetches per path. */
async function keySetServer() {
  const server = http.createServer((req, res) => {
    state.fetches[req.url] = (state.fetches[req.url] ?? 0) + 1;
    res.on("close", () => (state.lastCompleted = res.writableFinished));
    state.answer(req, res);
  });
  const state = { fetches: {}, answer: serve(PROVIDER_SET), lastCompleted: undefined };
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.base = `http://127.0.0.1:${server.address().port}`;
  state.url = `${state.base}/.well-known/jwks.json`;
  state.count = () => state.fetches["/.well-known/jwks.json"] ?? 0;
  state.close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return state;
}

const serve = (body) => (req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body);
};

let keys;
let proxy;
before(async () => {
  keys = await keySetServer();
});
after(() => keys?.close());
beforeEach(() => {
  keys.fetches = {};
  keys.answer = serve(PROVIDER_SET);
  keys.lastCompleted = undefined;
});

/** A proxy with an empty isolate, verifying against the key-set server. */
async function freshProxy(bindings = {}) {
  await proxy?.dispose();
  proxy = await startProxy({ JWT_SECRET: undefined, JWKS_URL: keys.url, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, ...bindings });
  return proxy;
}
after(() => proxy?.dispose());

async function status(target, token) {
  const response = await fetch(`${target.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, code: (await response.json()).error?.code };
}

test("garbage tokens are refused without fetching the key set", async () => {
  await freshProxy();
  const valid = es256(provider, "provider-1");
  const [header, claims] = valid.split(".");
  const garbage = ["a.b", "x.y.z", "e30.e30.c2ln", `${header}.${b64({ sub: "no-exp" })}.c2ln`, `${header}.${claims}`, "not a token"];
  for (const token of garbage) assert.equal((await status(proxy, token)).status, 401, token);
  assert.equal(keys.count(), 0, "no token was worth a fetch");
  assert.equal((await status(proxy, valid)).status, 200);
  assert.equal(keys.count(), 1);
});

test("a provider that is down is asked once per 30 s, and requests fail closed meanwhile", async () => {
  keys.answer = (req, res) => res.writeHead(500).end();
  await freshProxy();
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await status(proxy, es256(provider, "provider-1")), { status: 503, code: "temporarily_unavailable" });
  }
  assert.equal(keys.count(), 1, "a failed fetch is not repeated by every request");
});

test("with JWKS_CACHE_SECONDS=0 the key set is still fetched at most once per 30 s", async () => {
  await freshProxy({ JWKS_CACHE_SECONDS: "0" });
  for (let i = 0; i < 5; i++) assert.equal((await status(proxy, es256(provider, "provider-1"))).status, 200);
  assert.equal(keys.count(), 1);
});

test("a key set behind a redirect is not trusted, and its Location is never asked", async () => {
  keys.fetches = {};
  keys.answer = (req, res) => {
    if (req.url === "/attacker.json") return serve(ATTACKER_SET)(req, res);
    res.writeHead(307, { location: `${keys.base}/attacker.json` }).end();
  };
  await freshProxy();
  assert.deepEqual(await status(proxy, es256(attacker, "planted-1")), { status: 503, code: "temporarily_unavailable" });
  assert.equal(keys.fetches["/attacker.json"], undefined);
  // The log line travels through workerd's stdout: it may arrive after the response.
  await within(5000, (async () => {
    while (!proxy.logs.some((l) => l.status === 503 && /307 redirecting to/.test(l.detail))) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })(), "the log line saying the key set was redirected");
});

test("a key set larger than 1 MiB is refused without reading it to its end", async () => {
  keys.answer = (req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    const filler = " ".repeat(64 << 10);
    let written = 0;
    const more = () => {
      while (!res.destroyed && written < 32 << 20) {
        written += filler.length;
        if (!res.write(filler)) return res.once("drain", more);
      }
      if (!res.destroyed) res.end(PROVIDER_SET);
    };
    more();
  };
  await freshProxy();
  assert.deepEqual(await status(proxy, es256(provider, "provider-1")), { status: 503, code: "temporarily_unavailable" });
  await within(5000, (async () => {
    while (keys.lastCompleted === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
  })(), "the key-set connection to close");
  assert.equal(keys.lastCompleted, false, "the proxy stopped reading at the cap");
});

/**
 * The proxy beside a "neighbour" Worker of the same zone, which plants `body` in the Cache API
 * (`cacheName`, or the zone's default cache) under `key` with `headers`. Runs `check(url)`.
 */
async function withNeighbour(bindings, { cacheName, key, body, headers }, check) {
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    workers: [
      {
        name: "proxy",
        ...workerOptions(PROXY_SCRIPT, { ALLOWED_ORIGINS: ALLOWED_ORIGIN, JWKS_URL: keys.url, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, ...bindings }, { USERS: { className: "UserState", useSQLite: true } }),
      },
      {
        // Shares the zone's caches, as Workers on one custom domain do.
        name: "neighbour",
        modules: true,
        compatibilityDate,
        script: `export default {
          async fetch(request) {
            const { cacheName, key, body, headers } = await request.json();
            const cache = cacheName ? await caches.open(cacheName) : caches.default;
            await cache.put(key, new Response(body, { headers: { "content-type": "application/json", "cache-control": "max-age=600", ...headers } }));
            return new Response("planted");
          },
        };`,
      },
    ],
  });
  try {
    const url = (await mf.ready).toString().replace(/\/$/, "");
    const neighbour = await mf.getWorker("neighbour");
    const planted = await neighbour.fetch("http://neighbour/", { method: "POST", body: JSON.stringify({ cacheName, key, body, headers }) });
    assert.equal(await planted.text(), "planted");
    await check(url);
  } finally {
    await mf.dispose();
  }
}

test("keys another Worker of the zone plants in the cache under the key set's URL are not trusted", async () => {
  await withNeighbour({}, { key: keys.url, body: ATTACKER_SET, headers: {} }, async (url) => {
    assert.equal((await status({ url }, es256(attacker, "planted-1"))).status, 401, "the planted key verifies nothing");
    assert.equal((await status({ url }, es256(provider, "provider-1"))).status, 200, "the provider's own key still works");
  });
});

test("a key set planted in the proxy's own named cache, without this Worker's seal, is ignored", async () => {
  // The proxy's entry, as its name and key are in its source: only the seal is missing or forged.
  const entry = {
    cacheName: "openai-edge-proxy:jwks",
    key: `https://jwks.openai-edge-proxy.invalid/${createHash("sha256").update(keys.url).digest("hex")}`,
    body: ATTACKER_SET,
  };
  const planted = { "x-openai-edge-proxy-jwks-source": keys.url, "x-openai-edge-proxy-fetched-at-ms": String(Date.now()) };
  const secret = { SAFETY_IDENTIFIER_SECRET: "a-safety-secret-for-the-jwks-tests-0123456789" };
  for (const headers of [planted, { ...planted, "x-openai-edge-proxy-seal": "A".repeat(43) }]) {
    keys.fetches = {};
    await withNeighbour(secret, { ...entry, headers }, async (url) => {
      assert.equal((await status({ url }, es256(attacker, "planted-1"))).status, 401, "the planted key verifies nothing");
      // Once for the set, once more for the unknown `kid` (a rotation, for all it knows).
      assert.equal(keys.count(), 2, "the provider was asked instead");
      assert.equal((await status({ url }, es256(provider, "provider-1"))).status, 200, "the provider's own key works");
    });
  }
});
