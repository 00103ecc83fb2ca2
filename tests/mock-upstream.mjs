// An OpenAI-compatible mock upstream on loopback, for the tests and for `make dev` without a key.
//
// It answers POST /v1/chat/completions (JSON or SSE), records every request, and can be told to
// pause a stream mid-way or to answer the next requests with a given status. Like OpenAI, it
// rejects a wrong key with a 401 whose message echoes part of that key, and it sends account
// headers (openai-organization, set-cookie, x-ratelimit-*) the proxy must not pass on.
import http from "node:http";
import { pathToFileURL } from "node:url";

const ACCOUNT_HEADERS = {
  "openai-organization": "org-mock-operator",
  "openai-processing-ms": "7",
  "x-ratelimit-remaining-tokens": "149990",
  "set-cookie": "__cf_bm=mock; path=/; HttpOnly",
};

/**
 * @param {object} [options]
 * @param {number} [options.port] 0 picks a free port.
 * @param {string} [options.apiKey] The key it accepts; any other gets OpenAI's 401.
 * @param {number} [options.chunkDelayMs] Pause between streamed chunks.
 */
export async function startMockUpstream({ port = 0, apiKey = "sk-mock-upstream-key", chunkDelayMs = 5 } = {}) {
  const requests = [];
  const queuedAnswers = [];
  let pause = null;

  const server = http.createServer(async (req, res) => {
    const body = await readBody(req);
    let json = null;
    try {
      json = JSON.parse(body);
    } catch {}
    const record = { method: req.method, path: req.url, headers: req.headers, body, json, at: Date.now() };
    requests.push(record);
    // When the proxy drops the connection (a client went away, a timeout), for the tests.
    res.on("close", () => {
      record.closedAt = Date.now();
      record.completed = res.writableFinished;
    });

    if (req.url === "/v1/models" && req.method === "GET") {
      return sendJson(res, 200, { object: "list", data: [{ id: "gpt-4o-mini", object: "model" }] });
    }
    if (req.url !== "/v1/chat/completions" || req.method !== "POST") {
      return sendJson(res, 404, { error: { message: "Unknown mock route", type: "invalid_request_error" } });
    }
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      const shown = String(req.headers.authorization ?? "").replace(/^Bearer /, "");
      return sendJson(res, 401, {
        error: {
          message: `Incorrect API key provided: ${shown.slice(0, 8)}****${shown.slice(-4)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          type: "invalid_request_error",
          code: "invalid_api_key",
        },
      });
    }
    const queued = queuedAnswers.shift();
    if (queued) {
      return sendJson(res, queued.status, queued.body ?? { error: { message: "mock failure detail: internal trace at /srv/openai/app.py:42" } }, queued.headers);
    }
    if (json?.stream) {
      await streamAnswer(res, json, record, () => pause);
    } else {
      sendJson(res, 200, completion(json));
    }
  });

  async function streamAnswer(res, request, record, currentPause) {
    res.writeHead(200, { "content-type": "text/event-stream", ...ACCOUNT_HEADERS });
    const id = `chatcmpl-mock-${requests.length}`;
    const words = answerText(request).split(/(?<= )/);
    const chunk = (delta, finish_reason = null) => ({
      id,
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: [{ index: 0, delta, finish_reason }],
    });
    const send = (event) => res.write(`data: ${JSON.stringify(event)}\n\n`);
    send(chunk({ role: "assistant", content: "" }));
    for (const [index, word] of words.entries()) {
      send(chunk({ content: word }));
      if (index === 0 && currentPause()) await currentPause().promise;
      await sleep(chunkDelayMs);
    }
    send(chunk({}, "stop"));
    if (request.stream_options?.include_usage) {
      send({ id, object: "chat.completion.chunk", created: 0, model: request.model, choices: [], usage: usage(request) });
    }
    record.lastChunkWrittenAt = Date.now();
    res.end("data: [DONE]\n\n");
  }

  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/v1`;

  return {
    url,
    apiKey,
    requests,
    /** Answer the next request with this status (and body/headers) instead of a completion. */
    failNext(status, { body, headers } = {}) {
      queuedAnswers.push({ status, body, headers });
    },
    /** Streams stop after their first word until the returned function is called. */
    pauseStreams() {
      let release;
      const promise = new Promise((resolve) => (release = resolve));
      pause = { promise };
      return () => {
        pause = null;
        release();
      };
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function answerText(request) {
  const last = [...(request?.messages ?? [])].reverse().find((m) => m.role === "user");
  const said = typeof last?.content === "string" ? last.content : "something";
  return `This is the bundled mock upstream, not OpenAI. You said: ${said.slice(0, 200)}`;
}

/** The usage the mock reports for `request` (what the proxy should charge). */
export function usage(request) {
  const prompt_tokens = Math.ceil(JSON.stringify(request?.messages ?? []).length / 4);
  const completion_tokens = answerText(request).split(" ").length;
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

function completion(request) {
  return {
    id: "chatcmpl-mock",
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: request?.model,
    choices: [{ index: 0, message: { role: "assistant", content: answerText(request) }, finish_reason: "stop" }],
    usage: usage(request),
  };
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...ACCOUNT_HEADERS, ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// `node tests/mock-upstream.mjs [--port N] [--api-key K]`: run it on its own (make dev does).
if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name, fallback) => {
    const index = process.argv.indexOf(name);
    return index > 0 ? process.argv[index + 1] : fallback;
  };
  const mock = await startMockUpstream({ port: Number(arg("--port", 0)), apiKey: arg("--api-key", undefined), chunkDelayMs: 40 });
  console.log(`mock upstream listening on ${mock.url}`);
  const stop = async () => {
    await mock.close();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
