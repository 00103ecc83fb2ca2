// The example app's backend, standing in for yours: it serves the page and mints a short-lived
// user token (`POST /token`) with the proxy's JWT_SECRET. It is never part of the Worker.
// With a Turnstile site key instead, it only serves files, as a static host would: the page
// runs in "no backend" mode and gets guest tokens from the proxy (`POST /v1/guest`).
// `node examples/browser/server.mjs [--port 8788] [--proxy http://127.0.0.1:8787] [--turnstile-site-key KEY]`
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { pathToFileURL } from "node:url";

const FILES = { "/": ["index.html", "text/html"], "/app.js": ["app.js", "text/javascript"] };
const TOKEN_TTL_SECONDS = 15 * 60;

/** Mints an HS256 token for `sub`; a real backend would take `sub` from its own session. */
function mintToken(secret, sub) {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub, iat: now, exp: now + TOKEN_TTL_SECONDS, jti: randomUUID() })}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

/**
 * Starts the example on 127.0.0.1:`port` (0: a free one); returns its URL, `close()`, and
 * `setProxyUrl()` (the proxy's allowed origins may need the page's URL first). With
 * `turnstileSiteKey` the page is in "no backend" mode and `jwtSecret` is not needed.
 */
export async function startExample({ port = 8788, proxyUrl = "http://127.0.0.1:8787", jwtSecret, turnstileSiteKey = "" }) {
  if (!turnstileSiteKey && (!jwtSecret || jwtSecret.length < 32)) {
    throw new Error("the example needs the proxy's JWT_SECRET (32+ bytes), or a Turnstile site key for guest mode");
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "POST" && url.pathname === "/token" && !turnstileSiteKey) {
      const sub = (url.searchParams.get("user") || "demo-user").slice(0, 64);
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      return res.end(JSON.stringify({ token: mintToken(jwtSecret, sub), expires_in: TOKEN_TTL_SECONDS }));
    }
    const file = FILES[url.pathname];
    if (req.method !== "GET" || !file) {
      res.writeHead(404);
      return res.end();
    }
    const body = readFileSync(new URL(file[0], import.meta.url), "utf8")
      .replace("__PROXY_URL__", proxyUrl)
      .replace('"__TURNSTILE_SITE_KEY__"', JSON.stringify(turnstileSiteKey));
    res.writeHead(200, { "content-type": `${file[1]}; charset=utf-8`, "cache-control": "no-store" });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setProxyUrl(url) {
      proxyUrl = url;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
  const devVars = (() => {
    try {
      return readFileSync(".dev.vars", "utf8");
    } catch {
      return "";
    }
  })();
  const jwtSecret = process.env.JWT_SECRET || devVars.match(/^JWT_SECRET=(.*)$/m)?.[1]?.trim();
  const turnstileSiteKey = arg("--turnstile-site-key", process.env.TURNSTILE_SITE_KEY ?? "");
  const example = await startExample({ port: Number(arg("--port", 8788)), proxyUrl: arg("--proxy", "http://127.0.0.1:8787"), jwtSecret, turnstileSiteKey });
  console.log(`example page on ${example.url}`);
}
