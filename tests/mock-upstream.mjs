// An OpenAI-compatible mock upstream on loopback, for the tests and for `make dev` without a key.
//
// It answers POST /v1/chat/completions and /v1/responses (JSON or SSE), /v1/embeddings,
// /v1/images/generations (JSON, or SSE with partial images; shapes from openai-node's
// `ImagesResponse`, `ImageGenPartialImageEvent` and `ImageGenCompletedEvent`), and
// /v1/audio/transcriptions and /v1/audio/speech (mock-audio.mjs),
// records every request, gives each response a new id and, like OpenAI, refuses a
// `previous_response_id` it did not create (400 `previous_response_not_found`), and can be told to pause streams, to answer the next requests with a
// given status, or to misbehave on the next one (slow headers, a reset, a stall, a cut stream,
// an event or a body longer than any cap of the proxy, a flood), or to take one of OpenAI's
// unhappy paths on the next one (a Responses stream ending in `response.incomplete`,
// `response.failed` or an `error` event; usage up to the request's output cap, or none; SSE
// events cut into pieces or several to a write; several hosted tool calls). Nothing changes
// unless a test asks, so every suite keeps the answers it was written for. Like OpenAI, it rejects a wrong key
// with a 401 whose message echoes part of that key, and it sends account headers
// (openai-organization, set-cookie, x-ratelimit-*) the proxy must not pass on.
import http from "node:http";
import { pathToFileURL } from "node:url";
import { answerAudio } from "./mock-audio.mjs";
import { mockLive } from "./mock-live.mjs";
import { mockRealtime } from "./mock-realtime.mjs";

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
 * @param {number} [options.firstChunkDelayMs] Pause before a stream's headers and first chunk
 *   (a model's time to first token).
 */
export async function startMockUpstream({ port = 0, apiKey = "sk-mock-upstream-key", chunkDelayMs = 5, firstChunkDelayMs = 0 } = {}) {
  const timing = { chunkDelayMs, firstChunkDelayMs };
  const requests = [];
  const queuedAnswers = [];
  const queuedFaults = [];
  const createdResponses = new Set();
  let pause = null;
  const realtime = mockRealtime({ apiKey });
  const live = mockLive({ apiKey });

  const server = http.createServer(async (req, res) => {
    const raw = await readBody(req);
    const body = raw.toString("utf8");
    if (realtime.serve(req, res, body) || live.serve(req, res, body)) return;
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
    const api = {
      "/v1/chat/completions": "chat",
      "/v1/responses": "responses",
      "/v1/embeddings": "embeddings",
      "/v1/images/generations": "images",
      "/v1/audio/transcriptions": "transcription",
      "/v1/audio/speech": "speech",
    }[req.url];
    if (!api || req.method !== "POST") {
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
    const queued = takeFor(queuedAnswers, json);
    if (queued) {
      return sendJson(res, queued.status, queued.body ?? { error: { message: "mock failure detail: internal trace at /srv/openai/app.py:42" } }, queued.headers);
    }
    if (api === "responses" && json?.previous_response_id != null && !createdResponses.has(json.previous_response_id)) {
      return sendJson(res, 400, {
        error: { message: `Previous response with id '${json.previous_response_id}' not found.`, type: "invalid_request_error", param: "previous_response_id", code: "previous_response_not_found" },
      });
    }
    const responseId = `resp_mock_${requests.length}`;
    if (api === "responses" && json?.store !== false) createdResponses.add(responseId);
    const fault = takeFor(queuedFaults, json) ?? {};
    record.fault = fault;
    if (fault.headerDelayMs) await sleep(fault.headerDelayMs);
    if (fault.kind === "reset-before-headers") return res.destroy();
    if (fault.kind === "unreadable-answer") {
      // Headers and half a JSON body, then the connection is reset: the answer cannot be read.
      res.writeHead(200, { "content-type": "application/json", ...ACCOUNT_HEADERS });
      res.write('{"id":"chatcmpl-cut","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Half an ans');
      await sleep(20);
      return res.destroy();
    }
    if (api === "transcription" || api === "speech") {
      return answerAudio(api, { res, raw, headers: req.headers, json, record, fault, pause, chunkDelayMs: timing.chunkDelayMs, sendJson, sleep, accountHeaders: ACCOUNT_HEADERS });
    }
    if (fault.kind === "huge-answer") return writeLong(res, 200, '{"choices":[{"message":{"content":"', '"}}]}');
    if (fault.kind === "endless-error") return writeLong(res, 400, '{"error":{"message":"', '"}}');
    if (fault.kind === "big-answer") return writeSlowly(res, JSON.stringify(api === "embeddings" ? embeddings(json, fault.bytes) : completion(json, fault, fault.bytes)));
    if (api === "embeddings") return sendJson(res, 200, embeddings(json));
    if (api === "images") return images(res, json, fault);
    if (json?.stream && fault.kind === "not-sse") return sendJson(res, 200, completion(json));
    if (json?.stream && fault.kind === "flood") {
      await flood(res, json, record, fault.bytes ?? 64 << 20);
    } else if (json?.stream) {
      await streamAnswer(res, json, record, api, fault, responseId);
    } else {
      sendJson(res, 200, api === "responses" ? responseObject(json, responseId, fault) : completion(json, fault));
    }
  });

  /**
   * An image generation, as OpenAI answers it: a 400 for a size or `n` the model does not
   * make; else the images with their `usage` last, or with `stream` the partial images and
   * then `image_generation.completed` with the usage. A stream takes the faults "reset",
   * "stall" and "cut" (no completed event) after its first event, and waits while streams
   * are paused; `usage: "none"` leaves the usage out.
   */
  async function images(res, request, fault) {
    const quality = resolvedQuality(request);
    const size = resolvedSize(request);
    const n = request.n ?? 1;
    if (imageTokens(request.model, quality, size) === undefined || !(n >= 1 && n <= 10)) {
      return sendJson(res, 400, { error: { message: `Invalid size or n for ${request.model}.`, type: "invalid_request_error", param: "size", code: "invalid_value" } });
    }
    const common = { background: "opaque", output_format: "png", quality, size };
    const reported = fault.usage === "none" ? {} : { usage: imageUsage(request) };
    const image = (index) => Buffer.alloc(fault.imageBytes ?? 48 << 10, index + 1).toString("base64");
    if (!request.stream) {
      const data = Array.from({ length: n }, (_, index) => ({ b64_json: image(index) }));
      return sendJson(res, 200, { created: Math.floor(Date.now() / 1000), data, ...common, ...reported });
    }
    if (timing.firstChunkDelayMs) await sleep(timing.firstChunkDelayMs);
    res.writeHead(200, { "content-type": "text/event-stream", ...ACCOUNT_HEADERS });
    const send = (event) => res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    const created_at = Math.floor(Date.now() / 1000);
    const partials = request.partial_images ?? 0;
    for (let index = 0; index < partials; index++) {
      send({ type: "image_generation.partial_image", b64_json: image(index), created_at, partial_image_index: index, ...common });
      if (index > 0) continue;
      if (pause) await pause.promise;
      if (fault.kind === "reset") return res.destroy();
      if (fault.kind === "stall") return;
      if (fault.kind === "cut") return res.end();
      await sleep(timing.chunkDelayMs);
    }
    send({ type: "image_generation.completed", b64_json: image(partials), created_at, ...common, ...reported });
    res.end();
  }

  async function streamAnswer(res, request, record, api, fault, responseId) {
    if (timing.firstChunkDelayMs) await sleep(timing.firstChunkDelayMs);
    res.writeHead(200, { "content-type": "text/event-stream", ...ACCOUNT_HEADERS });
    const writer = sseWriter(res, fault);
    const send = (event) => writer.write(`${api === "responses" ? `event: ${event.type}\n` : ""}data: ${JSON.stringify(event)}\n\n`);
    const words = answerText(request).split(/(?<= )/);
    const events = api === "responses" ? responsesEvents(request, words, responseId, fault) : chatEvents(request, words, requests.length, fault);
    for (const [index, event] of events.entries()) {
      if (event === FIRST_WORD_WRITTEN) {
        await writer.flush();
        if (fault.kind === "long-event" && !(await writeLong(res, null, 'data: {"choices":[{"index":0,"delta":{"content":"', '"}}]}\n\n'))) return;
        if (pause) await pause.promise;
        if (fault.kind === "reset") return res.destroy();
        if (fault.kind === "stall") return; // never writes again; the proxy must give up
        continue;
      }
      if (event === UPSTREAM_ENDS) {
        await writer.flush();
        return res.end(); // after an `error` event OpenAI sends nothing more
      }
      if (fault.kind === "cut" && index === events.length - 2) {
        await writer.flush();
        return res.end(); // no final event
      }
      await send(event);
      if (writer.batching) continue;
      await sleep(timing.chunkDelayMs);
    }
    if (api === "chat") await writer.write("data: [DONE]\n\n");
    await writer.flush();
    record.lastChunkWrittenAt = Date.now();
    res.end();
  }

  // Big chunks as fast as the reader takes them (waiting for "drain"), then a proper end.
  async function flood(res, request, record, bytes) {
    res.writeHead(200, { "content-type": "text/event-stream", ...ACCOUNT_HEADERS });
    const word = "flood ".repeat(2731); // about 16 KB
    const event = (delta, finish_reason = null) =>
      `data: ${JSON.stringify({ id: "chatcmpl-flood", object: "chat.completion.chunk", created: 0, model: request.model, choices: [{ index: 0, delta, finish_reason }] })}\n\n`;
    for (let sent = 0; sent < bytes && !res.destroyed; sent += word.length) {
      if (!res.write(event({ content: word }))) await drainedOrClosed(res);
    }
    if (res.destroyed) return;
    record.lastChunkWrittenAt = Date.now();
    res.end(`${event({}, "stop")}data: [DONE]\n\n`);
  }

  server.on("upgrade", (req, socket, head) => live.upgrade(req, socket, head) || realtime.upgrade(req, socket, head));
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}/v1`;

  return {
    url,
    apiKey,
    requests,
    /** The Realtime calls, their sidebands and hang-ups (tests/mock-realtime.mjs). */
    realtime,
    /** The GPT-Live sessions and their sidebands (tests/mock-live.mjs). */
    live,
    /**
     * Misbehave on the next request: `headerDelayMs` before answering, and for a stream `kind`
     * "reset" or "stall" after the first word, "cut" (no final event), "not-sse" (JSON),
     * "long-event" (a LONG_BODY_BYTES event after the first word), or "flood" (`bytes` of
     * text, 64 MB by default, as fast as the proxy reads it); without a stream "huge-answer"
     * (a 200 of LONG_BODY_BYTES) or "endless-error" (a 400 just as long); for any request
     * "reset-before-headers" (the connection is reset before a status line) or
     * "unreadable-answer" (a 200 whose JSON body is cut off by a reset); for a JSON answer
     * (chat or embeddings) "big-answer" (about `bytes` of a well-formed answer, with its usage,
     * written in 1 MiB pieces 10 ms apart).
     *
     * OpenAI's unhappy paths, each opt-in: for a Responses stream `kind` "incomplete" (ends with
     * `response.incomplete`, reason `max_output_tokens`, output at the cap), "failed" (ends with
     * `response.failed`, `error.code` `server_error`) or "error-event" (an `error` event after
     * the first word, then the end of the connection); a non-stream Responses answer takes
     * "incomplete" and "failed" as its `status`. `usage`: "cap" reports the request's whole
     * output cap (`max_completion_tokens`, `max_tokens` or `max_output_tokens`, × `n`) as
     * completion tokens, "over" ten times it (chat; a bound the proxy got wrong), "none" reports no usage at all (a gateway that drops it; a failed
     * response's `usage: null`). `chunking`: "split" writes every SSE event in pieces of
     * `pieceBytes` (default 7) bytes, so events and lines straddle reads; "batched" writes
     * `eventsPerWrite` (default 3) events in one write. `hostedCalls`: the answer lists that
     * many hosted tool calls (default: one when the request has a hosted tool).
     * With `match`, the next request whose JSON it accepts, so concurrent clients can each get
     * their own.
     */
    faultNext(fault) {
      queuedFaults.push(fault);
    },
    /** Answer the next request (that `match` accepts) with this status instead of a completion. */
    failNext(status, { body, headers, match } = {}) {
      queuedAnswers.push({ status, body, headers, match });
    },
    /** Changes the stream timing of the next streams (`chunkDelayMs`, `firstChunkDelayMs`). */
    setStreamTiming(changes) {
      Object.assign(timing, changes);
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
      realtime.close();
      live.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Removes and returns the first entry whose `match` (if any) accepts the request's JSON. */
function takeFor(queue, json) {
  const index = queue.findIndex((entry) => !entry.match || entry.match(json));
  return index < 0 ? undefined : queue.splice(index, 1)[0];
}

/** Marks where a stream may pause or fail: right after its first word. */
const FIRST_WORD_WRITTEN = Symbol("first word written");
/** Marks where upstream ends the connection without a final event (after an `error` event). */
const UPSTREAM_ENDS = Symbol("upstream ends");

/**
 * Writes SSE text as the fault asks: each write at once (the default), cut into pieces of
 * `pieceBytes` with a pause between them ("split"), or `eventsPerWrite` events per write
 * ("batched"). `flush` writes what a batch holds.
 */
function sseWriter(res, fault) {
  const pieceBytes = fault.pieceBytes ?? 7;
  const eventsPerWrite = fault.eventsPerWrite ?? 3;
  let batch = [];
  const flush = async () => {
    if (batch.length === 0) return;
    res.write(batch.join(""));
    batch = [];
    await sleep(1);
  };
  return {
    batching: fault.chunking === "batched",
    async write(text) {
      if (res.destroyed) return;
      if (fault.chunking === "split") {
        const bytes = Buffer.from(text);
        for (let at = 0; at < bytes.length; at += pieceBytes) {
          res.write(bytes.subarray(at, at + pieceBytes));
          // A pause, so that the pieces leave as separate TCP segments and reach the proxy in
          // separate reads (Node's http sockets have Nagle's algorithm off).
          await sleep(1);
        }
      } else if (fault.chunking === "batched") {
        batch.push(text);
        if (batch.length >= eventsPerWrite) await flush();
      } else {
        res.write(text);
      }
    },
    flush,
  };
}

/**
 * The output cap a request states (the proxy always states one; with both `max_tokens` and
 * `max_completion_tokens`, the larger), times its `n` choices.
 */
export function outputCap(request) {
  const caps = [request?.max_completion_tokens, request?.max_tokens, request?.max_output_tokens].filter((cap) => typeof cap === "number");
  if (caps.length === 0) throw new Error(`the mock was asked for the output cap of a request without one: ${JSON.stringify(request)}`);
  return Math.max(...caps) * (request?.n ?? 1);
}

function chatEvents(request, words, number, fault = {}) {
  const id = `chatcmpl-mock-${number}`;
  const chunk = (delta, finish_reason = null) => ({
    id,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    choices: [{ index: 0, delta, finish_reason }],
  });
  const events = [chunk({ role: "assistant", content: "" }), ...words.flatMap((word, i) => (i === 0 ? [chunk({ content: word }), FIRST_WORD_WRITTEN] : [chunk({ content: word })])), chunk({}, fault.usage === "cap" ? "length" : "stop")];
  if (request.stream_options?.include_usage && fault.usage !== "none") {
    events.push({ id, object: "chat.completion.chunk", created: 0, model: request.model, choices: [], usage: usage(request, fault) });
  }
  return events;
}

function responsesEvents(request, words, id, fault = {}) {
  const response = { id, object: "response", created_at: Math.floor(Date.now() / 1000), model: request.model, status: "in_progress", output: [], usage: null };
  let sequence_number = 0;
  const event = (type, fields) => ({ type, sequence_number: sequence_number++, ...fields });
  // Numbered in the order they are sent, as OpenAI numbers them.
  const created = event("response.created", { response });
  const deltas = words.flatMap((word, i) => {
    const delta = event("response.output_text.delta", { item_id: messageId(id), output_index: 0, content_index: 0, delta: word });
    return i === 0 ? [delta, FIRST_WORD_WRITTEN] : [delta];
  });
  if (fault.kind === "error-event") {
    // OpenAI's `error` event (type, code, message, param, sequence_number), then nothing more.
    const [first, marker] = deltas;
    const error = { type: "error", sequence_number: first.sequence_number + 1, code: "server_error", message: "The server had an error while processing your request.", param: null };
    return [created, first, marker, error, UPSTREAM_ENDS];
  }
  const done = responseObject(request, id, fault);
  const final = { incomplete: "response.incomplete", failed: "response.failed" }[fault.kind] ?? "response.completed";
  return [created, ...deltas, event(final, { response: done })];
}

/** The id of a response's message item: its own, as OpenAI's item ids are (so one user's cannot name another's). */
const messageId = (responseId) => `msg_${responseId}`;

function responseObject(request, id, fault = {}) {
  const text = answerText(request);
  const input_tokens = Math.ceil(JSON.stringify(request?.input ?? "").length / 4);
  const output_tokens = fault.usage === "cap" || fault.kind === "incomplete" ? outputCap(request) : text.split(" ").length;
  const hosted = (request?.tools ?? []).filter((tool) => tool.type !== "function");
  const calls = hosted.length === 0 ? 0 : (fault.hostedCalls ?? 1);
  const status = { incomplete: "incomplete", failed: "failed" }[fault.kind] ?? "completed";
  return {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status,
    // As OpenAI states why a response stopped short or failed.
    ...(status === "incomplete" ? { incomplete_details: { reason: "max_output_tokens" } } : {}),
    ...(status === "failed" ? { error: { code: "server_error", message: "The model failed to generate a response." } } : {}),
    model: request?.model,
    // Like OpenAI, one `<type>_call` item per hosted tool call it made (whose fee usage leaves
    // out): one for a hosted tool it was given, or `hostedCalls` of them, over its tools in turn.
    output: [
      ...Array.from({ length: calls }, (_, i) => ({ type: `${hosted[i % hosted.length].type}_call`, id: `ws_mock_${i}`, status: "completed" })),
      { type: "message", id: messageId(id), status, role: "assistant", content: [{ type: "output_text", text, annotations: [] }] },
    ],
    usage: fault.usage === "none" ? null : { input_tokens, output_tokens, total_tokens: input_tokens + output_tokens },
  };
}

/**
 * One image's output tokens (written from OpenAI's published facts, apart from the proxy's
 * code): gpt-image-1.5's table by size (low, medium, high), gpt-image-2's size formula; or
 * undefined for what the model does not make.
 */
export function imageTokens(model, quality, size) {
  const level = ["low", "medium", "high"].indexOf(quality);
  const [width, height] = String(size).split("x").map(Number);
  if (level < 0 || !(width > 0 && height > 0)) return undefined;
  if (/^gpt-image-1\.5(-20.*)?$/.test(model)) {
    const table = { "1024x1024": [272, 1056, 4160], "1024x1536": [408, 1584, 6240], "1536x1024": [408, 1584, 6240] };
    return table[size]?.[level];
  }
  if (/^gpt-image-2(-20.*)?$/.test(model)) {
    const [long, short] = [Math.max(width, height), Math.min(width, height)];
    const pixels = width * height;
    if (width % 16 || height % 16 || long > 3840 || long > 3 * short || pixels < 655_360 || pixels > 8_294_400) return undefined;
    const q = [16, 48, 96][level];
    const shortFactor = Math.floor((2 * q * short + long) / (2 * long));
    return Math.ceil((q * shortFactor * (2_000_000 + pixels)) / 4_000_000);
  }
  return undefined;
}

/** What `auto` becomes: the mock picks the dearest, as OpenAI may. */
const resolvedQuality = (request) => (request.quality == null || request.quality === "auto" ? "high" : request.quality);
const resolvedSize = (request) => (request.size == null || request.size === "auto" ? "1024x1536" : request.size);

/**
 * The usage the mock reports for an image generation: the prompt as text tokens (a quarter of
 * its characters, rounded up), each image's output tokens, and 100 more per partial image.
 */
export function imageUsage(request) {
  const text_tokens = Math.ceil(request.prompt.length / 4);
  const each = imageTokens(request.model, resolvedQuality(request), resolvedSize(request)) + (request.stream ? 100 * (request.partial_images ?? 0) : 0);
  const output_tokens = (request.n ?? 1) * each;
  return {
    input_tokens: text_tokens,
    input_tokens_details: { text_tokens, image_tokens: 0 },
    output_tokens,
    total_tokens: text_tokens + output_tokens,
    output_tokens_details: { image_tokens: output_tokens, text_tokens: 0 },
  };
}

/** An embeddings answer; with `bytes`, its vectors are long enough to make it about that big. */
function embeddings(request, bytes = 0) {
  const inputs = Array.isArray(request.input) ? request.input : [request.input];
  const vector = bytes ? Array(Math.ceil(bytes / inputs.length / 7)).fill(0.0625) : [0.25, -0.5, 0.125];
  const encode = (values) => (request.encoding_format === "base64" ? Buffer.from(new Float32Array(values).buffer).toString("base64") : values);
  const prompt_tokens = Math.ceil(JSON.stringify(request.input).length / 4);
  return {
    object: "list",
    model: request.model,
    data: inputs.map((_, index) => ({ object: "embedding", index, embedding: encode(vector) })),
    usage: { prompt_tokens, total_tokens: prompt_tokens },
  };
}

function answerText(request) {
  const last = [...(request?.messages ?? [])].reverse().find((m) => m.role === "user");
  const said = typeof last?.content === "string" ? last.content : typeof request?.input === "string" ? request.input : "something";
  return `This is the bundled mock upstream, not OpenAI. You said: ${said.slice(0, 200)}`;
}

/**
 * The usage the mock reports for `request` (what the proxy should charge): a function of the
 * request alone, so a test can compute it. With a `prompt_cache_key`, like a warm OpenAI
 * prompt cache, half the prompt is reported cached. `fault.usage` "cap": the completion is the
 * request's whole output cap (× `n`), as a model that writes until it is stopped.
 */
export function usage(request, fault = {}) {
  const prompt_tokens = Math.ceil(JSON.stringify(request?.messages ?? []).length / 4);
  // "over": more than any cap allows, as a model or field whose bound the proxy got wrong.
  const completion_tokens = fault.usage === "over" ? 10 * outputCap(request) : fault.usage === "cap" ? outputCap(request) : answerText(request).split(" ").length;
  const reported = { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
  if (request?.prompt_cache_key) reported.prompt_tokens_details = { cached_tokens: Math.floor(prompt_tokens / 2) };
  return reported;
}

/** A chat completion; with `bytes`, its text is padded to make it about that big. */
function completion(request, fault = {}, bytes = 0) {
  const content = answerText(request) + " ".repeat(bytes);
  return {
    id: "chatcmpl-mock",
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: request?.model,
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: fault.usage === "cap" ? "length" : "stop" }],
    ...(fault.usage === "none" ? {} : { usage: usage(request, fault) }),
  };
}

/** How long the bodies of the "long" faults are: past every cap of the proxy. */
export const LONG_BODY_BYTES = 32 << 20;

/**
 * Writes `head`, LONG_BODY_BYTES of filler in 64 KiB writes (as fast as the reader takes
 * them), then `tail`; with a `status`, as a whole JSON response. Stops early, returning false,
 * when the reader goes away.
 */
async function writeLong(res, status, head, tail) {
  if (status) res.writeHead(status, { "content-type": "application/json", ...ACCOUNT_HEADERS });
  const filler = "x".repeat(64 << 10);
  res.write(head);
  for (let written = 0; written < LONG_BODY_BYTES; written += filler.length) {
    if (res.destroyed) return false;
    if (!res.write(filler)) await drainedOrClosed(res);
  }
  if (res.destroyed) return false;
  if (status) res.end(tail);
  else res.write(tail);
  return true;
}

/** A 200 JSON `body` in 1 MiB writes 10 ms apart, so that several such answers overlap. */
async function writeSlowly(res, body) {
  res.writeHead(200, { "content-type": "application/json", ...ACCOUNT_HEADERS });
  for (let at = 0; at < body.length; at += 1 << 20) {
    if (res.destroyed) return;
    if (!res.write(body.slice(at, at + (1 << 20)))) await drainedOrClosed(res);
    await sleep(10);
  }
  res.end();
}

function drainedOrClosed(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...ACCOUNT_HEADERS, ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
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
