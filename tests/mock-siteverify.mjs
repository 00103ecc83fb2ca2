// A mock of Turnstile's siteverify on loopback, for the tests and for `make dev`.
//
// It accepts one token (`acceptedToken`; unlike Cloudflare's, it accepts it again and again, so
// one test can mint several guest tokens), refuses any other the way siteverify does
// (`success: false`, `invalid-input-response`), refuses a wrong secret (`invalid-input-secret`),
// records every form it was sent, and can be told to fail the next calls with a status.
import http from "node:http";
import { pathToFileURL } from "node:url";

export const ACCEPTED_TOKEN = "XXXX.DUMMY.TOKEN.XXXX";
export const TURNSTILE_SECRET = "1x0000000000000000000000000000000AA";

/**
 * @param {object} [options]
 * @param {string} [options.acceptedToken] The one token it accepts.
 * @param {string} [options.secret] The secret it expects.
 * @param {string} [options.hostname] The hostname it says the challenge was solved on.
 */
export async function startMockSiteverify({ port = 0, acceptedToken = ACCEPTED_TOKEN, secret = TURNSTILE_SECRET, hostname = "app.example.com" } = {}) {
  const requests = [];
  const failures = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString("utf8")));
    requests.push({ method: req.method, path: req.url, contentType: req.headers["content-type"], form });
    const failure = failures.shift();
    if (failure) {
      res.writeHead(failure, { "content-type": "text/plain" });
      return res.end("mock siteverify failure");
    }
    let verdict;
    if (form.secret !== secret) verdict = { success: false, "error-codes": ["invalid-input-secret"] };
    else if (form.response !== acceptedToken) verdict = { success: false, "error-codes": ["invalid-input-response"] };
    else verdict = { success: true, challenge_ts: new Date().toISOString(), hostname, "error-codes": [], action: "", cdata: "" };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(verdict));
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/turnstile/v0/siteverify`,
    requests,
    /** The next `count` calls answer `status` with no verdict. */
    failNext(status, count = 1) {
      for (let i = 0; i < count; i++) failures.push(status);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// `node tests/mock-siteverify.mjs [--port N]`: run it on its own.
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const index = process.argv.indexOf("--port");
  const mock = await startMockSiteverify({ port: index > 0 ? Number(process.argv[index + 1]) : 0 });
  console.log(`mock siteverify listening on ${mock.url} (accepts ${ACCEPTED_TOKEN})`);
  process.on("SIGINT", () => mock.close().then(() => process.exit(0)));
}
