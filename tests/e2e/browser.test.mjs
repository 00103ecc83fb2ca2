// The example page in real headless Chromium, on another origin than the proxy: the streamed
// answer grows over several frames, the quota drops, a disallowed origin gets nothing, the
// OpenAI key is nowhere in the page, its network traffic or its storage, and the page's
// "no backend" mode gets a guest token through a (stubbed) Turnstile widget.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { startExample } from "../../examples/browser/server.mjs";
import { ACCEPTED_TOKEN, TURNSTILE_SECRET, startMockSiteverify } from "../mock-siteverify.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { JWT_SECRET, chromiumMissing, launchChromium, startProxy } from "./helpers.mjs";

const skip = chromiumMissing;
const RESULTS = new URL("../../test-results/", import.meta.url);

let mock;
let proxy;
let allowed;
let disallowed;
let browser;

before(async () => {
  if (skip) return;
  mock = await startMockUpstream({ chunkDelayMs: 60 });
  // The proxy must allow the page's origin, and the page must know the proxy's URL.
  allowed = await startExample({ port: 0, jwtSecret: JWT_SECRET });
  // The example page asks for gpt-6-luna, the default model.
  proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ALLOWED_ORIGINS: allowed.url, ALLOWED_MODELS: "gpt-6-luna", RATE_LIMIT_REQUESTS: "5" });
  allowed.setProxyUrl(proxy.url);
  disallowed = await startExample({ port: 0, jwtSecret: JWT_SECRET, proxyUrl: proxy.url });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await allowed?.close();
  await disallowed?.close();
  await proxy?.dispose();
  await mock?.close();
});

/** Opens a page that records every response body it receives. */
async function open(url) {
  const page = await browser.newPage();
  const bodies = [];
  // A response can still be arriving when its test closes the page: read nothing from it then.
  page.on("response", async (response) =>
    bodies.push((await response.text().catch(() => "")) + JSON.stringify(await response.allHeaders().catch(() => ({})))),
  );
  await page.goto(url);
  return { page, bodies };
}

test("the page streams an answer, shows the quota drop, and never sees the key", { skip }, async () => {
  const { page, bodies } = await open(allowed.url);
  await page.waitForFunction(() => document.getElementById("quota").textContent.includes("5 of 5 requests left"), null, { timeout: 5000 });
  await page.fill("#prompt", "Hello from Chromium");
  // Sample the answer's length on every animation frame while it streams.
  const lengths = page.evaluate(
    () =>
      new Promise((resolve) => {
        const seen = [];
        const sample = () => {
          const length = document.getElementById("answer").textContent.length;
          if (seen.at(-1) !== length) seen.push(length);
          if (document.getElementById("answer").textContent.endsWith("Hello from Chromium")) return resolve(seen);
          requestAnimationFrame(sample);
        };
        requestAnimationFrame(sample);
      }),
  );
  await page.click("#send");
  const grew = await lengths;
  assert.ok(grew.filter((length) => length > 0).length >= 5, `the answer grew in ${grew.length} steps: ${grew}`);
  assert.equal(await page.textContent("#answer"), "This is the bundled mock upstream, not OpenAI. You said: Hello from Chromium");
  await page.waitForFunction(() => document.getElementById("quota").textContent.includes("4 of 5 requests left"), null, { timeout: 5000 });

  mkdirSync(RESULTS, { recursive: true });
  await page.screenshot({ path: new URL("browser-example.png", RESULTS).pathname, fullPage: true });

  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.documentElement.outerHTML);
  for (const seen of [storage, ...bodies]) assert.ok(!seen.includes(mock.apiKey), "the OpenAI key reached the browser");
  await page.close();
});

test("a 429 tells the user when to retry", { skip }, async () => {
  const { page } = await open(allowed.url);
  await page.fill("#user", "impatient-user");
  for (let i = 0; i < 6; i++) {
    await page.fill("#prompt", `Request ${i}`);
    await page.click("#send");
    await page.waitForFunction(() => !document.getElementById("send").disabled, null, { timeout: 10_000 });
  }
  assert.match(await page.textContent("#message"), /Too many requests.*You can send again in \d+ s/);
  await page.close();
});

test("a page on a disallowed origin gets a CORS error and no answer", { skip }, async () => {
  const { page } = await open(disallowed.url);
  const errors = [];
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  await page.fill("#prompt", "Let me in");
  await page.click("#send");
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Network error"), null, { timeout: 5000 });
  assert.equal(await page.textContent("#answer"), "");
  assert.ok(errors.some((text) => /CORS|Access-Control-Allow-Origin/i.test(text)), errors.join("\n"));
  await page.close();
});

// Turnstile's widget script (challenges.cloudflare.com) cannot load offline: the page's own
// guest flow runs as written, but the widget is replaced by this stub, served at the real
// script URL, which "solves" the check at once with Cloudflare's dummy token. The proxy then
// verifies that token with the mock siteverify, as it would with Cloudflare's.
const TURNSTILE_STUB = `
  window.turnstileStub = { renders: [], resets: 0 };
  window.turnstile = {
    render(target, options) {
      window.turnstileStub.renders.push({ target, sitekey: options.sitekey });
      window.turnstileStub.options = options;
      setTimeout(() => options.callback(${JSON.stringify(ACCEPTED_TOKEN)}), 20);
      return "stub-widget";
    },
    reset() {
      window.turnstileStub.resets += 1;
      setTimeout(() => window.turnstileStub.options.callback(${JSON.stringify(ACCEPTED_TOKEN)}), 20);
    },
  };
  // Like api.js, call the function its URL names in \`onload\`.
  {
    const onloadName = new URL(document.currentScript.src).searchParams.get("onload");
    if (onloadName) window[onloadName]();
  }
`;

test("with a Turnstile site key and no backend, the page passes the (stubbed) check, gets a guest token and streams", { skip }, async () => {
  const siteverify = await startMockSiteverify();
  const staticSite = await startExample({ port: 0, turnstileSiteKey: "1x00000000000000000000AA" });
  const guestProxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    ALLOWED_ORIGINS: staticSite.url,
    ALLOWED_MODELS: "gpt-6-luna",
    TURNSTILE_SECRET_KEY: TURNSTILE_SECRET,
    GUEST_TOKEN_SECRET: "guest-token-secret-for-the-browser-test-0123456789",
    TURNSTILE_VERIFY_URL: siteverify.url,
  });
  staticSite.setProxyUrl(guestProxy.url);
  const page = await browser.newPage();
  try {
    await page.route("https://challenges.cloudflare.com/**", (route) => route.fulfill({ contentType: "text/javascript", body: TURNSTILE_STUB }));
    const bodies = [];
    page.on("response", async (response) => bodies.push(await response.text().catch(() => "")));
    await page.goto(staticSite.url);
    assert.equal(await page.isVisible("#user"), false, "no sign-in field without a backend");
    await page.waitForFunction(() => document.getElementById("guest-status").textContent.startsWith("Verified"), null, { timeout: 5000 });
    assert.deepEqual(await page.evaluate(() => window.turnstileStub.renders), [{ target: "#turnstile", sitekey: "1x00000000000000000000AA" }]);
    assert.equal(siteverify.requests.at(-1).form.response, ACCEPTED_TOKEN, "the proxy verified the widget's token");
    await page.waitForFunction(() => document.getElementById("quota").textContent.includes("5 of 5 requests left"), null, { timeout: 5000 });

    await page.fill("#prompt", "Hello as a guest");
    await page.click("#send");
    await page.waitForFunction(() => document.getElementById("answer").textContent.endsWith("Hello as a guest"), null, { timeout: 10_000 });
    assert.equal(await page.textContent("#answer"), "This is the bundled mock upstream, not OpenAI. You said: Hello as a guest");
    await page.waitForFunction(() => document.getElementById("quota").textContent.includes("4 of 5 requests left"), null, { timeout: 5000 });
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: new URL("browser-guest-example.png", RESULTS).pathname, fullPage: true });
    for (const seen of bodies) assert.ok(!seen.includes(mock.apiKey), "the OpenAI key reached the browser");
    assert.ok(guestProxy.logs.some((line) => line.route === "chat.completions" && line.plan === "guest" && line.status === 200));
  } finally {
    await page.close();
    await guestProxy.dispose();
    await staticSite.close();
    await siteverify.close();
  }
});
