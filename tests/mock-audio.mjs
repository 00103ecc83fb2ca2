// The mock upstream's audio endpoints, in OpenAI's wire shapes (openai-node's
// src/resources/audio/{transcriptions,speech}.ts and its OpenAPI spec's SpeechAudioDeltaEvent /
// SpeechAudioDoneEvent, read 2026-12-06): POST /v1/audio/transcriptions (multipart: a JSON, text
// or SSE answer whose usage is `{type: "tokens", …}` or `{type: "duration", seconds}`) and POST
// /v1/audio/speech (the audio itself, or with `stream_format: "sse"` `speech.audio.delta`
// events and a `speech.audio.done` with the usage). What it bills is a function of the request
// alone, exported so tests compute the exact charge.

/** Models the mock bills by duration; the others by tokens. */
export const PER_MINUTE_MODELS = ["whisper-1", "gpt-transcribe"];
/** Models that cannot stream speech as events (OpenAI: `sse` is not supported for tts-1 and tts-1-hd). */
const NO_SSE_SPEECH = ["tts-1", "tts-1-hd"];
/** The mock's assumed bitrate of a compressed file: above the proxy's 6 kbit/s floor. */
const COMPRESSED_BYTES_PER_SECOND = 4000;

/** A multipart body's fields: name -> { value: Buffer, filename }. Throws on a malformed one. */
export function parseForm(raw, contentType) {
  const boundary = /boundary=([^;]+)/.exec(contentType ?? "")?.[1];
  if (!boundary) throw new Error("no boundary");
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  if (!raw.subarray(0, boundary.length + 4).equals(Buffer.from(`--${boundary}\r\n`))) throw new Error("the body does not start with its boundary");
  const fields = [];
  let at = boundary.length + 4;
  for (;;) {
    const headersEnd = raw.indexOf("\r\n\r\n", at);
    const end = raw.indexOf(delimiter, headersEnd + 4);
    if (headersEnd < 0 || end < 0) throw new Error("a part does not end");
    const headers = raw.subarray(at, headersEnd).toString();
    const name = /name="([^"]*)"/.exec(headers)?.[1];
    const filename = /filename="([^"]*)"/.exec(headers)?.[1];
    fields.push({ name, filename, value: raw.subarray(headersEnd + 4, end) });
    at = end + delimiter.length;
    if (raw.subarray(at, at + 2).toString() === "--") return fields;
    at += 2;
  }
}

/** How long the mock says a file plays, in seconds: a WAV file's header, else its size at 32 kbit/s. */
export function audioSeconds(file) {
  if (file.subarray(0, 4).toString() === "RIFF" && file.subarray(8, 12).toString() === "WAVE") {
    const rate = file.readUInt32LE(24) * file.readUInt16LE(22) * Math.ceil(file.readUInt16LE(34) / 8);
    const data = file.indexOf("data", 12);
    return (file.length - data - 8) / rate;
  }
  return file.length / COMPRESSED_BYTES_PER_SECOND;
}

/**
 * The usage the mock reports for a transcription of `file` by `model` with `prompt`. With
 * `fault.usage` "cap": the most the proxy's bounds allow (20 audio tokens a second, a token a
 * prompt byte, 2,000 out), as a model at its worst.
 */
export function transcriptionUsage(model, file, prompt = "", fault = {}) {
  const seconds = audioSeconds(file);
  if (PER_MINUTE_MODELS.includes(model)) return { type: "duration", seconds: Math.ceil(seconds) };
  const cap = fault.usage === "cap";
  const audio_tokens = cap ? Math.ceil(seconds) * 20 : Math.ceil(seconds * 10);
  const text_tokens = cap ? Buffer.byteLength(prompt) : Math.ceil(Buffer.byteLength(prompt) / 4);
  const output_tokens = cap ? 2000 : transcript(seconds).split(" ").length;
  const input_tokens = audio_tokens + text_tokens;
  return { type: "tokens", input_tokens, input_token_details: { text_tokens, audio_tokens }, output_tokens, total_tokens: input_tokens + output_tokens };
}

const transcript = (seconds) => `This is the bundled mock upstream, not OpenAI. I heard ${seconds.toFixed(1)} seconds of audio.`;

/** The audio the mock speaks for `input`: 200 bytes a character, a pattern a test can compare. */
export function speechAudio(input) {
  const bytes = Buffer.alloc(200 * [...input].length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  return bytes;
}

/** The usage a speech stream reports: its JSON body's bytes / 4 in, 1.5 audio tokens a byte of input out ("cap": 3 a byte). */
export function speechUsage(request, body, fault = {}) {
  const input_tokens = Math.ceil(Buffer.byteLength(body) / 4);
  const perByte = fault.usage === "cap" ? 3 : 1.5;
  const output_tokens = Math.ceil(Buffer.byteLength(request.input) * perByte);
  return { input_tokens, output_tokens, total_tokens: input_tokens + output_tokens };
}

const MEDIA_TYPES = { mp3: "audio/mpeg", opus: "audio/ogg", aac: "audio/aac", flac: "audio/flac", wav: "audio/wav", pcm: "audio/pcm" };

/**
 * Answers an audio request. `ctx`: { res, raw, headers, json, record, fault, pause, chunkDelayMs,
 * sendJson, sleep, accountHeaders }.
 */
export async function answerAudio(api, ctx) {
  return api === "transcription" ? transcribe(ctx) : speak(ctx);
}

async function transcribe({ res, raw, headers, record, fault, pause, chunkDelayMs, sendJson, sleep, accountHeaders }) {
  let fields;
  try {
    fields = parseForm(raw, headers["content-type"]);
  } catch (error) {
    return sendJson(res, 400, { error: { message: `Could not parse multipart form: ${error.message}`, type: "invalid_request_error" } });
  }
  const field = (name) => fields.find((f) => f.name === name);
  const text = (name) => field(name)?.value.toString();
  record.form = fields;
  const file = field("file")?.value;
  if (!file || !text("model")) return sendJson(res, 400, { error: { message: "file and model are required", type: "invalid_request_error" } });
  const model = text("model");
  const seconds = audioSeconds(file);
  const usage = transcriptionUsage(model, file, text("prompt") ?? "", fault);
  const said = transcript(seconds);
  if (text("stream") === "true" && model !== "whisper-1") {
    res.writeHead(200, { "content-type": "text/event-stream", ...accountHeaders });
    const words = said.split(/(?<= )/);
    for (const [i, delta] of words.entries()) {
      res.write(`data: ${JSON.stringify({ type: "transcript.text.delta", delta })}\n\n`);
      if (i === 0 && pause) await pause.promise;
      if (res.destroyed) return;
      await sleep(chunkDelayMs);
    }
    if (fault.kind === "cut") return res.end();
    res.write(`data: ${JSON.stringify({ type: "transcript.text.done", text: said, ...(fault.usage === "none" ? {} : { usage }) })}\n\n`);
    record.lastChunkWrittenAt = Date.now();
    return res.end();
  }
  if (text("response_format") === "text") {
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8", ...accountHeaders });
    return res.end(said);
  }
  return sendJson(res, 200, { text: said, ...(fault.usage === "none" ? {} : { usage }) });
}

async function speak({ res, raw, json, record, fault, pause, chunkDelayMs, sendJson, sleep, accountHeaders }) {
  if (typeof json?.input !== "string" || !json.model || !json.voice) {
    return sendJson(res, 400, { error: { message: "input, model and voice are required", type: "invalid_request_error" } });
  }
  const audio = speechAudio(json.input);
  const pieces = [];
  for (let at = 0; at < audio.length; at += 1000) pieces.push(audio.subarray(at, at + 1000));
  if (json.stream_format === "sse") {
    if (NO_SSE_SPEECH.includes(json.model)) {
      return sendJson(res, 400, { error: { message: `stream_format 'sse' is not supported for ${json.model}`, type: "invalid_request_error", param: "stream_format" } });
    }
    res.writeHead(200, { "content-type": "text/event-stream", ...accountHeaders });
    for (const [i, piece] of pieces.entries()) {
      res.write(`data: ${JSON.stringify({ type: "speech.audio.delta", audio: piece.toString("base64") })}\n\n`);
      if (i === 0 && pause) await pause.promise;
      if (res.destroyed) return;
      await sleep(chunkDelayMs);
    }
    if (fault.kind === "cut") return res.end();
    const done = { type: "speech.audio.done", usage: speechUsage(json, raw, fault) };
    res.write(`data: ${JSON.stringify(done)}\n\n`);
    record.lastChunkWrittenAt = Date.now();
    return res.end();
  }
  res.writeHead(200, { "content-type": MEDIA_TYPES[json.response_format ?? "mp3"] ?? "audio/mpeg", ...accountHeaders });
  for (const [i, piece] of pieces.entries()) {
    res.write(piece);
    if (i === 0 && pause) await pause.promise;
    if (res.destroyed) return;
    await sleep(chunkDelayMs);
  }
  record.lastChunkWrittenAt = Date.now();
  res.end();
}
