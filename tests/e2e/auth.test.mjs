// User tokens in workerd: the key types identity providers use, every rejection, a JWKS served
// over HTTP and its caching, and revocation. Tokens are signed here with node:crypto, not with
// the proxy's code.
import assert from "node:assert/strict";
import { constants, createHmac, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { JWT_SECRET, startProxy, within } from "./helpers.mjs";

const ISSUER = "https://id.example.com/";
const AUDIENCE = "edge-proxy";
const ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef";

// Each RSA algorithm with a key of its own (one key, one algorithm: RFC 8725), kid `rs256-1` etc.
const RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
const rsaKeys = Object.fromEntries(RSA_ALGORITHMS.map((alg) => [alg, generateKeyPairSync("rsa", { modulusLength: 2048 })]));
const rsa = rsaKeys.RS256;
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ed = generateKeyPairSync("ed25519");
const jwk = (pair, kid, alg) => ({ ...pair.publicKey.export({ format: "jwk" }), kid, alg, use: "sig" });
const PROVIDER_KEYS = [
  jwk(rsa, "rsa-1", "RS256"),
  jwk(ec, "ec-1", "ES256"),
  jwk(ed, "ed-1", "EdDSA"),
  ...RSA_ALGORITHMS.slice(1).map((alg) => jwk(rsaKeys[alg], `${alg.toLowerCase()}-1`, alg)),
];
/** A valid token of every algorithm a provider's key can have. */
const providerTokens = () => ({
  ...Object.fromEntries(RSA_ALGORITHMS.map((alg) => [alg, jwt({ alg, kid: alg === "RS256" ? "rsa-1" : `${alg.toLowerCase()}-1`, key: rsaKeys[alg].privateKey })])),
  ES256: jwt({ alg: "ES256", kid: "ec-1", key: ec.privateKey }),
  EdDSA: jwt({ alg: "EdDSA", kid: "ed-1", key: ed.privateKey }),
});

const b64 = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** A JWT signed with `alg`; `key` is a private KeyObject, or a secret for HS256. */
function jwt({ alg, kid, key, claims = {}, header = {} }) {
  const payload = { sub: "alice", iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 300, jti: randomUUID(), ...claims };
  const input = `${b64({ alg, typ: "JWT", ...(kid && { kid }), ...header })}.${b64(payload)}`;
  return `${input}.${signature(alg, key, Buffer.from(input)).toString("base64url")}`;
}

function signature(alg, key, data) {
  const rsaHash = `sha${alg.slice(2)}`;
  // PS*: the salt as long as the hash (RFC 7518 section 3.5).
  const pss = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST };
  return {
    ...Object.fromEntries(["HS256", "HS384", "HS512"].map((hs) => [hs, () => createHmac(`sha${hs.slice(2)}`, key).update(data).digest()])),
    ES256: () => sign("sha256", data, { key, dsaEncoding: "ieee-p1363" }),
    EdDSA: () => sign(null, data, key),
    none: () => Buffer.alloc(0),
    ...Object.fromEntries(RSA_ALGORITHMS.map((rsaAlg) => [rsaAlg, () => sign(rsaHash, data, rsaAlg.startsWith("PS") ? pss : key)])),
  }[alg]();
}

/** `token` with its signature's bytes changed by `change`. */
function resigned(token, change) {
  const [header, claims, signature] = token.split(".");
  return `${header}.${claims}.${change(Buffer.from(signature, "base64url")).toString("base64url")}`;
}

const hs256 = (claims, extra) => jwt({ alg: "HS256", key: JWT_SECRET, claims, ...extra });

async function status(proxy, token) {
  const response = await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
  const body = await response.json();
  return { status: response.status, code: body.error?.code, message: body.error?.message, challenge: response.headers.get("www-authenticate") };
}

describe("tokens checked against JWT_SECRET and an inline JWKS", () => {
  let proxy;
  before(async () => {
    proxy = await startProxy({ JWKS: JSON.stringify({ keys: PROVIDER_KEYS }), JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, ADMIN_TOKEN });
  });
  after(() => proxy?.dispose());

  test("HS256 tokens and tokens of every provider algorithm (RS*, PS*, ES256, EdDSA) are accepted", async () => {
    const tokens = { HS256: hs256(), ...providerTokens() };
    for (const [alg, token] of Object.entries(tokens)) assert.equal((await status(proxy, token)).status, 200, alg);
  });

  test("a changed, cut or out-of-range signature is a bad signature, for every algorithm", async () => {
    const flipped = (bytes) => Buffer.from(bytes.map((byte, i) => (i === 7 ? byte ^ 1 : byte)));
    // All ones: above the RSA modulus, r and s above the P-256 order, S above Ed25519's.
    const outOfRange = (bytes) => Buffer.alloc(bytes.length, 0xff);
    for (const [alg, token] of Object.entries({ HS256: hs256(), ...providerTokens() })) {
      for (const change of [flipped, (bytes) => bytes.subarray(1), outOfRange]) {
        const result = await status(proxy, resigned(token, change));
        assert.deepEqual([result.status, result.message], [401, "The access token has a bad signature."], alg);
      }
    }
  });

  const rejections = {
    "token expired": () => hs256({ iat: now() - 400, exp: now() - 100 }),
    "not yet valid": () => hs256({ nbf: now() + 300 }),
    "issued in the future": () => hs256({ iat: now() + 300, exp: now() + 600 }),
    "lifetime is longer": () => hs256({ exp: now() + 2 * 86_400 }),
    "wrong issuer": () => hs256({ iss: "https://evil.example.com/" }),
    "wrong audience": () => hs256({ aud: ["other-app"] }),
    "no `sub`": () => hs256({ sub: undefined }),
    "bad signature": () => {
      const [header, , signature] = hs256().split(".");
      return `${header}.${b64({ sub: "admin", iss: ISSUER, aud: AUDIENCE, exp: now() + 300 })}.${signature}`;
    },
    "algorithm this proxy does not accept (alg none)": () => jwt({ alg: "none" }),
    "HS256 signed with the RSA public key": () =>
      jwt({ alg: "HS256", kid: "rsa-1", key: rsa.publicKey.export({ format: "pem", type: "spki" }) }),
    "RS256 key presented as EdDSA": () => jwt({ alg: "EdDSA", kid: "rsa-1", key: ed.privateKey }),
    "unknown key": () => jwt({ alg: "ES256", kid: "ec-404", key: ec.privateKey }),
    "jku header": () => jwt({ alg: "RS256", kid: "rsa-1", key: rsa.privateKey, header: { jku: "https://evil.example.com/jwks" } }),
    "crit header": () => hs256({}, { header: { crit: ["exp"] } }),
    "malformed": () => "a.b",
  };
  for (const [name, makeToken] of Object.entries(rejections)) {
    test(`401 invalid_token: ${name}`, async () => {
      const result = await status(proxy, makeToken());
      assert.equal(result.status, 401);
      assert.match(result.challenge, /error="invalid_token"/);
      assert.ok(result.message.length > 0);
    });
  }

  test("messages name the kind of problem, never the token", async () => {
    const expired = hs256({ iat: now() - 400, exp: now() - 100 });
    const result = await status(proxy, expired);
    assert.equal(result.message, "The access token expired.");
    assert.ok(!result.message.includes(expired.split(".")[1]));
  });

  describe("revocation", () => {
    const admin = (method, sub, token = ADMIN_TOKEN) =>
      fetch(`${proxy.url}/admin/users/${encodeURIComponent(sub)}/revoke`, { method, headers: { authorization: `Bearer ${token}` } });

    test("revoking a user stops their old tokens; new tokens work; lifting restores", async () => {
      const sub = "auth0|bob";
      const old = hs256({ sub, iat: now() - 5 });
      assert.equal((await status(proxy, old)).status, 200);

      const revoked = await admin("POST", sub);
      assert.equal(revoked.status, 200);
      const record = await revoked.json();
      assert.equal(record.sub, sub);
      assert.ok(record.revoked_at >= now() - 5);

      const after = await status(proxy, old);
      assert.equal(after.status, 401);
      assert.equal(after.message, "The access token was revoked.");
      const fresh = hs256({ sub, iat: record.revoked_at + 1 });
      assert.equal((await status(proxy, fresh)).status, 200, "a token issued after the revocation works");
      assert.equal((await status(proxy, hs256({ sub: "carol", iat: now() - 5 }))).status, 200, "other users are untouched");

      assert.equal((await admin("DELETE", sub)).status, 200);
      assert.equal((await status(proxy, old)).status, 200);
    });

    test("admin routes need the admin token", async () => {
      assert.equal((await admin("POST", "alice", "wrong-admin-token-0123456789abcdefgh")).status, 401);
      const missing = await fetch(`${proxy.url}/admin/users/alice/revoke`, { method: "POST" });
      assert.equal(missing.status, 401);
      assert.equal((await admin("POST", "alice", hs256())).status, 401, "a user token is not an admin token");
    });
  });
});

// The Worker checks HS384 and HS512 with WebCrypto, HS256 in Rust.
for (const alg of ["HS384", "HS512"]) {
  test(`JWT_HMAC_ALGORITHM=${alg}: its tokens are accepted; a changed signature, another key or HS256 is refused`, async () => {
    const proxy = await startProxy({ JWT_HMAC_ALGORITHM: alg, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE });
    try {
      const token = jwt({ alg, key: JWT_SECRET });
      assert.equal((await status(proxy, token)).status, 200);
      const flipped = resigned(token, (bytes) => Buffer.from(bytes.map((byte, i) => (i === 7 ? byte ^ 1 : byte))));
      const otherKey = jwt({ alg, key: `${JWT_SECRET}-other` });
      for (const bad of [flipped, otherKey]) {
        assert.deepEqual(Object.values(await status(proxy, bad)).slice(0, 2), [401, "invalid_token"]);
      }
      assert.equal((await status(proxy, hs256())).status, 401);
    } finally {
      await proxy.dispose();
    }
  });
}

test("without ADMIN_TOKEN the admin routes do not exist", async () => {
  const proxy = await startProxy();
  try {
    const response = await fetch(`${proxy.url}/admin/users/alice/revoke`, { method: "POST", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(response.status, 404);
  } finally {
    await proxy.dispose();
  }
});

describe("a JWKS fetched from JWKS_URL", () => {
  let server;
  let proxy;
  let keys = [PROVIDER_KEYS[1]];
  let fetches = 0;

  before(async () => {
    server = http.createServer((req, res) => {
      fetches++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${server.address().port}/.well-known/jwks.json`;
    proxy = await startProxy({ JWT_SECRET: undefined, JWKS_URL: url, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE });
  });
  after(async () => {
    await proxy?.dispose();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  test("is fetched once and cached across requests", async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await status(proxy, jwt({ alg: "ES256", kid: "ec-1", key: ec.privateKey }))).status, 200);
    }
    assert.equal(fetches, 1);
  });

  test("is fetched again when a token names a new key, but not for every unknown kid", async () => {
    keys = [PROVIDER_KEYS[1], PROVIDER_KEYS[2]]; // the provider rotates in an Ed25519 key
    assert.equal((await status(proxy, jwt({ alg: "EdDSA", kid: "ed-1", key: ed.privateKey }))).status, 200);
    assert.equal(fetches, 2);
    for (let i = 0; i < 10; i++) {
      const random = jwt({ alg: "ES256", kid: `random-${i}`, key: ec.privateKey });
      assert.equal((await status(proxy, random)).status, 401);
    }
    assert.equal(fetches, 2, "a flood of unknown kids must not hammer the provider");
  });

  test("HS256 tokens are refused when no JWT_SECRET is configured", async () => {
    assert.equal((await status(proxy, hs256())).status, 401);
  });
});

test("keys the proxy cannot use are skipped with a logged reason, and the others still verify", async () => {
  const weak = generateKeyPairSync("rsa", { modulusLength: 1024 });
  // Coordinates of no point on P-256: only WebCrypto's import can tell, in the Worker.
  const offCurve = { ...jwk(ec, "off-curve-1", "ES256") };
  offCurve.y = offCurve.x;
  const keys = [jwk(weak, "weak-1", "RS256"), offCurve, jwk(ec, "ec-1", "ES256")];
  const proxy = await startProxy({ JWT_SECRET: undefined, JWKS: JSON.stringify({ keys }), JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE });
  try {
    assert.equal((await status(proxy, jwt({ alg: "ES256", kid: "ec-1", key: ec.privateKey }))).status, 200);
    const refused = await status(proxy, jwt({ alg: "RS256", kid: "weak-1", key: weak.privateKey }));
    assert.deepEqual([refused.status, refused.message], [401, "The access token was signed by an unknown key."]);
    assert.equal((await status(proxy, jwt({ alg: "ES256", kid: "off-curve-1", key: ec.privateKey }))).status, 401);
    const skipped = () => proxy.logs.filter((line) => line.event === "jwks_key_skipped").map((line) => line.detail);
    await within(5000, (async () => {
      while (skipped().length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    })(), "both skipped keys in the log");
    assert.match(skipped().find((detail) => detail.includes("weak-1")), /shorter than 2048 bits/);
    assert.match(skipped().find((detail) => detail.includes("off-curve-1")), /WebCrypto refused it/);
    assert.ok(!skipped().some((detail) => detail.includes(offCurve.x)), "the key itself is not logged");
  } finally {
    await proxy.dispose();
  }
});

test("a key set without JWT_ISSUER is refused as a misconfiguration: any app's token of the provider would pass", async () => {
  // Signed by a key the set holds, for another app of the same provider.
  const foreign = jwt({ alg: "ES256", kid: "ec-1", key: ec.privateKey, claims: { iss: "https://another-app.example.com/" } });
  const proxy = await startProxy({ JWT_SECRET: undefined, JWKS: JSON.stringify({ keys: PROVIDER_KEYS }) });
  try {
    const answer = await status(proxy, foreign);
    assert.equal(answer.status, 500);
    assert.equal(answer.code, "proxy_misconfigured");
    assert.ok(proxy.logs.some((line) => line.error_code === "proxy_misconfigured" && line.detail?.includes("JWT_ISSUER")));
  } finally {
    await proxy.dispose();
  }
});
