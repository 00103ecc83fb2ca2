// The proxy in workerd against the mock upstream, over real HTTP.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream, usage } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, browserHeaders, chatBody, mintToken, startProxy, within } from "./helpers.mjs";

let mock;
let proxy;
const token = mintToken();

before(async () => {
  mock = await startMockUpstream();
  proxy = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey });
});
after(async () => {
  await proxy?.dispose();
  await mock?.close();
});

const post = (path, body, headers = browserHeaders(token)) => fetch(proxy.url + path, { method: "POST", headers, body });

/** Asserts an OpenAI-shaped error and returns it. */
async function expectError(response, status, code) {
  assert.equal(response.status, status);
  assert.match(response.headers.get("content-type"), /application\/json/);
  const { error } = await response.json();
  assert.equal(typeof error.message, "string");
  assert.equal(typeof error.type, "string");
  assert.equal(error.code, code);
  return error;
}

function assertNoKeyIn(text) {
  assert.ok(!text.includes(mock.apiKey), "the OpenAI key leaked");
  assert.ok(!text.includes(mock.apiKey.slice(0, 8)), "a part of the OpenAI key leaked");
}

const allHeaders = (response) => JSON.stringify([...response.headers]);

test("health check answers without secrets or upstream", async () => {
  const before = mock.requests.length;
  const response = await fetch(`${proxy.url}/healthz`);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { status: "ok" });
  assert.equal(mock.requests.length, before);
});

test("a stream reaches a browser chunk by chunk, before the upstream has finished", async () => {
  const release = mock.pauseStreams();
  try {
    const response = await post("/v1/chat/completions", chatBody({ stream: true }));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    assert.equal(response.headers.get("cache-control"), "no-cache");
    assert.equal(response.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let received = "";
    // The mock is paused after its first word: that word can only arrive if nothing buffers.
    while (!received.includes('"content":"This "')) {
      const { value, done } = await within(5000, reader.read(), "first streamed word while upstream is paused");
      assert.ok(!done, "stream ended early");
      received += decoder.decode(value, { stream: true });
    }
    const upstream = mock.requests.at(-1);
    assert.equal(upstream.lastChunkWrittenAt, undefined, "upstream already finished: the first chunk was not early");

    release();
    for (;;) {
      const { value, done } = await within(5000, reader.read(), "rest of the stream");
      if (done) break;
      received += decoder.decode(value, { stream: true });
    }
    assert.ok(upstream.lastChunkWrittenAt > 0);
    assert.ok(received.trimEnd().endsWith("data: [DONE]"));
    const text = received
      .split("\n")
      .filter((line) => line.startsWith("data: {"))
      .map((line) => JSON.parse(line.slice(6)).choices[0]?.delta?.content ?? "")
      .join("");
    assert.equal(text, "This is the bundled mock upstream, not OpenAI. You said: Hello proxy");
  } finally {
    release();
  }
});

test("a non-stream answer is JSON", async () => {
  const response = await post("/v1/chat/completions", chatBody());
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /application\/json/);
  const answer = await response.json();
  assert.equal(answer.object, "chat.completion");
  assert.match(answer.choices[0].message.content, /You said: Hello proxy/);
});

test("upstream gets the operator key and the validated body, never the client's credentials", async () => {
  const response = await post(
    "/v1/chat/completions",
    chatBody({ seed: 7 }),
    browserHeaders(token, { cookie: "session=abc", "openai-organization": "org-attacker", "openai-project": "proj-x", "x-custom": "1" }),
  );
  assert.equal(response.status, 200);
  const upstream = mock.requests.at(-1);
  assert.equal(upstream.headers.authorization, `Bearer ${mock.apiKey}`);
  assert.equal(upstream.headers["content-type"], "application/json");
  for (const header of ["cookie", "openai-organization", "openai-project", "x-custom", "origin"]) {
    assert.equal(upstream.headers[header], undefined, `${header} was forwarded`);
  }
  assert.ok(!JSON.stringify(upstream.headers).includes(token), "the user token went upstream");
  assert.equal(upstream.json.seed, 7, "unknown fields pass through");
});

test("upstream account headers are not passed to the client", async () => {
  const response = await post("/v1/chat/completions", chatBody());
  await response.arrayBuffer();
  for (const header of ["openai-organization", "set-cookie", "x-ratelimit-remaining-tokens"]) {
    assert.equal(response.headers.get(header), null, `${header} leaked`);
  }
  assert.equal(response.headers.get("openai-processing-ms"), "7");
  assert.ok(response.headers.get("x-request-id"));
});

test("an upstream 5xx, retried once, becomes a generic 502 without upstream detail", async () => {
  const before = mock.requests.length;
  mock.failNext(500);
  mock.failNext(502);
  const response = await post("/v1/chat/completions", chatBody());
  assert.equal(mock.requests.length - before, 2, "one retry, then the error");
  const error = await expectError(response, 502, "upstream_error");
  assert.ok(!JSON.stringify(error).includes("/srv/openai"), "upstream detail leaked");
});

test("an upstream 429 becomes a 429 with its Retry-After", async () => {
  mock.failNext(429, { headers: { "retry-after": "3" } });
  const response = await post("/v1/chat/completions", chatBody());
  await expectError(response, 429, "upstream_rate_limited");
  assert.equal(response.headers.get("retry-after"), "3");
});

test("the user-facing form: /api/generate-text", async () => {
  const response = await post("/api/generate-text", JSON.stringify({ userPrompt: "Tell me a joke" }));
  assert.equal(response.status, 200);
  const { result } = await response.json();
  assert.match(result, /You said: Tell me a joke/);
  const upstream = mock.requests.at(-1).json;
  assert.equal(upstream.model, "gpt-4o-mini");
  assert.equal(upstream.messages[0].role, "system");
});

test("/v1/models lists the allowed models without calling upstream", async () => {
  const before = mock.requests.length;
  const response = await fetch(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  const list = await response.json();
  assert.equal(list.object, "list");
  assert.deepEqual(list.data.map((m) => m.id), ["gpt-4o-mini", "gpt-4.1-nano"]);
  assert.equal(mock.requests.length, before);
});

describe("CORS", () => {
  test("a preflight from an allowed origin lists methods, headers and max age", async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: ALLOWED_ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
    assert.match(response.headers.get("access-control-allow-headers"), /authorization/);
    assert.match(response.headers.get("access-control-allow-headers"), /content-type/);
    assert.match(response.headers.get("access-control-allow-methods"), /POST/);
    assert.equal(response.headers.get("access-control-max-age"), "7200");
    assert.match(response.headers.get("vary"), /Origin/);
  });

  test("a disallowed origin gets 403, no CORS headers, and no upstream call", async () => {
    const before = mock.requests.length;
    for (const origin of ["https://app.example.com.evil.tld", "http://app.example.com", "null"]) {
      const preflight = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST" },
      });
      assert.equal(preflight.status, 403, origin);
      assert.equal(preflight.headers.get("access-control-allow-origin"), null);
      const actual = await post("/v1/chat/completions", chatBody(), browserHeaders(token, { origin }));
      await expectError(actual, 403, "origin_not_allowed");
      assert.equal(actual.headers.get("access-control-allow-origin"), null);
    }
    assert.equal(mock.requests.length, before);
  });

  test("errors to an allowed origin are readable by the page", async () => {
    const response = await post("/v1/chat/completions", chatBody(), browserHeaders("not-a-token"));
    await expectError(response, 401, "invalid_token");
    assert.equal(response.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
    assert.match(response.headers.get("access-control-expose-headers"), /retry-after/);
  });
});

describe("errors", () => {
  test("unknown paths are 404 and wrong methods 405, OpenAI-shaped", async () => {
    await expectError(await fetch(`${proxy.url}/v1/files`, { headers: { authorization: `Bearer ${token}` } }), 404, "not_found");
    await expectError(await fetch(`${proxy.url}/`), 404, "not_found");
    await expectError(await fetch(`${proxy.url}/v1/chat/completions`, { headers: { authorization: `Bearer ${token}` } }), 405, "method_not_allowed");
  });

  test("no token is 401 with an RFC 6750 challenge, before any upstream call", async () => {
    const before = mock.requests.length;
    const response = await post("/v1/chat/completions", chatBody(), { "content-type": "application/json" });
    await expectError(response, 401, "missing_token");
    assert.match(response.headers.get("www-authenticate"), /^Bearer .*error="invalid_request"/);
    const forged = await post("/v1/chat/completions", chatBody(), browserHeaders(mintToken({}, { secret: "x".repeat(40) })));
    await expectError(forged, 401, "invalid_token");
    assert.match(forged.headers.get("www-authenticate"), /error="invalid_token"/);
    assert.equal(mock.requests.length, before);
  });

  test("a model outside ALLOWED_MODELS is refused", async () => {
    const error = await expectError(await post("/v1/chat/completions", chatBody({ model: "gpt-4-expensive" })), 400, "model_not_allowed");
    assert.equal(error.param, "model");
  });

  test("a bad body names the field", async () => {
    const error = await expectError(await post("/v1/chat/completions", chatBody({ messages: [] })), 400, "invalid_request");
    assert.equal(error.param, "messages");
    await expectError(await post("/v1/chat/completions", "{not json"), 400, "invalid_request");
  });

  test("an oversized body is 413, with or without Content-Length", async () => {
    const huge = chatBody({ messages: [{ role: "user", content: "x".repeat(70_000) }] });
    await expectError(await post("/v1/chat/completions", huge), 413, "request_too_large");
    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 8; i++) controller.enqueue(new TextEncoder().encode("x".repeat(10_000)));
        controller.close();
      },
    });
    const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chunked, duplex: "half" });
    await expectError(response, 413, "request_too_large");
  });
});

describe("the key stays secret", () => {
  let misconfigured;
  before(async () => {
    misconfigured = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: "sk-proj-wrongkey0123456789" });
  });
  after(() => misconfigured?.dispose());

  test("an upstream 401 to our key is a 502 for the client, without the key or upstream text", async () => {
    const response = await fetch(`${misconfigured.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chatBody() });
    const error = await expectError(response, 502, "upstream_auth_failed");
    const seen = JSON.stringify(error) + allHeaders(response);
    assert.ok(!seen.includes("sk-proj"), "key material leaked");
    assert.ok(!seen.includes("Incorrect API key"), "upstream text leaked");
    const line = misconfigured.logs.find((l) => l.error_code === "upstream_auth_failed");
    assert.ok(line, "the log says what happened");
    assert.match(line.detail, /OPENAI_API_KEY/);
    assert.ok(!JSON.stringify(misconfigured.logs).includes("wrongkey0123"), "the key reached the log");
  });

  test("no response or log line of the suite contains the key", async () => {
    const response = await post("/v1/chat/completions", chatBody());
    assertNoKeyIn(await response.text() + allHeaders(response));
    assertNoKeyIn(JSON.stringify(proxy.logs));
  });
});

describe("missing secret", () => {
  let keyless;
  before(async () => {
    keyless = await startProxy({ UPSTREAM_BASE_URL: mock.url });
  });
  after(() => keyless?.dispose());

  test("proxy routes answer 500 proxy_misconfigured and the log names the secret", async () => {
    const health = await fetch(`${keyless.url}/healthz`);
    assert.equal(health.status, 200);
    const response = await fetch(`${keyless.url}/v1/chat/completions`, { method: "POST", headers: browserHeaders(token), body: chatBody() });
    const error = await expectError(response, 500, "proxy_misconfigured");
    assert.ok(!error.message.includes("OPENAI_API_KEY"), "internal detail in the client message");
    assert.ok(keyless.logs.some((l) => l.error_code === "proxy_misconfigured" && /OPENAI_API_KEY/.test(l.detail)));
  });

  test("a bad variable is a 500 naming it in the log, not a crash", async () => {
    const broken = await startProxy({ UPSTREAM_BASE_URL: mock.url, OPENAI_API_KEY: mock.apiKey, ALLOWED_ORIGINS: "not a url" });
    try {
      const response = await fetch(`${broken.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      await expectError(response, 500, "proxy_misconfigured");
      assert.ok(broken.logs.some((l) => /ALLOWED_ORIGINS/.test(l.detail ?? "")));
    } finally {
      await broken.dispose();
    }
  });
});

describe("audit log", () => {
  test("one JSON line per request, with the fields operators need and no secrets or text", async () => {
    const response = await post("/v1/chat/completions", chatBody({ stream: true }));
    await response.text();
    const requestId = response.headers.get("x-request-id");
    const line = await within(2000, (async () => {
      for (;;) {
        const found = proxy.logs.find((l) => l.request_id === requestId);
        if (found) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(), "the stream's log line");
    assert.equal(proxy.logs.filter((l) => l.request_id === requestId).length, 1, "exactly one line per request");
    for (const field of ["time", "route", "status", "sub", "model", "origin", "stream", "disconnected", "prompt_tokens", "completion_tokens", "total_tokens", "upstream_ms", "duration_ms"]) {
      assert.ok(field in line, `missing ${field}`);
    }
    assert.equal(line.sub, "alice");
    assert.equal(line.route, "chat.completions");
    assert.equal(line.stream, true);
    // What the request was charged: exactly the usage upstream reported.
    const reported = usage(mock.requests.at(-1).json);
    assert.equal(line.usage_reported, true);
    assert.deepEqual([line.prompt_tokens, line.completion_tokens, line.total_tokens], [reported.prompt_tokens, reported.completion_tokens, reported.total_tokens]);
    assert.ok(!("prompt_chars" in line), "prompt length only with LOG_PROMPTS=true");

    const everything = JSON.stringify(proxy.logs);
    assert.ok(proxy.logs.every((l) => !l.raw), "every line is JSON");
    for (const secret of [mock.apiKey, token, "Hello proxy", "You said", "Tell me a joke"]) {
      assert.ok(!everything.includes(secret), `the log contains ${secret.slice(0, 12)}`);
    }
  });
});
