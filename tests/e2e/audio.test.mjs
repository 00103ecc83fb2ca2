// Issue 23, dictation and read-aloud within the budget: /v1/audio/transcriptions and
// /v1/audio/speech in workerd against the mock upstream, each call charged exactly the mock's
// usage at the model's price (BigInt nano-USD), refused before any object call when its body
// is over MAX_AUDIO_BYTES or its model is not allowed, charged its reservation when the client
// leaves mid-answer, and never past a small dollar budget under 50 concurrent calls.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import OpenAI, { toFile } from "openai";
import { speechAudio, speechUsage, transcriptionUsage } from "../mock-audio.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { ALLOWED_ORIGIN, logLineOf, mintToken, proxyFor, settledUsage, usageOf, usd, within } from "./helpers.mjs";

// The proxy's default audio prices, nano-USD (per 1M tokens, per minute, per 1M characters).
const PRICE = {
  "gpt-4o-transcribe": { input: 2_500_000_000n, audio: 2_500_000_000n, output: 10_000_000_000n },
  "whisper-1": { perMinute: 6_000_000n },
  "gpt-4o-mini-tts": { input: 600_000_000n, audioOut: 12_000_000_000n },
  "tts-1": { perMillionChars: 15_000_000_000n },
};
const ceilDiv = (a, b) => (a + b - 1n) / b;
const perMillion = (count, price) => ceilDiv(BigInt(count) * price, 1_000_000n);

/** A mono 16-bit PCM WAV file of `seconds` at 8 kHz. */
function wav(seconds) {
  const data = Buffer.alloc(Math.round(8000 * seconds) * 2);
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVEfmt ", 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(8000, 24);
  header.writeUInt32LE(16000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
  return Buffer.concat([header, data]);
}

const headers = (sub, extra = {}) => ({ authorization: `Bearer ${mintToken({ sub })}`, origin: ALLOWED_ORIGIN, "accept-encoding": "gzip, deflate, br", ...extra });

function formOf(fields, file, name) {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append("file", new Blob([file], { type: "audio/wav" }), name);
  return form;
}

function transcribe(proxy, sub, fields, file, name = "clip.wav", init = {}) {
  return fetch(`${proxy.url}/v1/audio/transcriptions`, { method: "POST", headers: headers(sub), body: formOf(fields, file, name), ...init });
}

/** The status of a POST of `body`, even when the server answers before taking all of it. */
function statusOf(url, requestHeaders, body) {
  return within(10_000, new Promise((resolve, reject) => {
    const request = http.request(url, { method: "POST", headers: { ...requestHeaders, "content-length": body.length } }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on("error", (error) => (error.code === "EPIPE" || error.code === "ECONNRESET" ? undefined : reject(error)));
    request.end(body);
  }), "the status of an upload");
}

function speak(proxy, sub, body, init = {}) {
  return fetch(`${proxy.url}/v1/audio/speech`, { method: "POST", headers: headers(sub, { "content-type": "application/json" }), body: JSON.stringify({ voice: "alloy", ...body }), ...init });
}

/** What a usage costs at the model's default price, nano-USD. */
function charge(model, usage) {
  const price = PRICE[model];
  if (usage.type === "duration") return ceilDiv(BigInt(usage.seconds) * 1000n * price.perMinute, 60_000n);
  if (price.audioOut) return perMillion(usage.input_tokens, price.input) + perMillion(usage.output_tokens, price.audioOut);
  const audio = usage.input_token_details.audio_tokens;
  return perMillion(usage.input_tokens - audio, price.input) + perMillion(audio, price.audio) + perMillion(usage.output_tokens, price.output);
}

const MODELS = { TRANSCRIBE_MODELS: "whisper-1,gpt-4o-transcribe,gpt-4o-mini-transcribe", SPEECH_MODELS: "gpt-4o-mini-tts,tts-1" };

let mock;
before(async () => {
  mock = await startMockUpstream({ chunkDelayMs: 20 });
});
after(() => mock?.close());

describe("a transcription", () => {
  const setup = proxyFor(() => mock, { ...MODELS, DAILY_BUDGET_USD: "5", MAX_AUDIO_BYTES: "200000" });

  test("is charged exactly the mock's usage, in tokens or by duration, and its file reaches upstream byte for byte", async () => {
    const file = wav(2.5);
    const cases = [
      ["gpt-4o-transcribe", { prompt: "Names: Zoë" }, file, "clip.wav"],
      ["whisper-1", {}, Buffer.alloc(12_000, 9), "clip.webm"],
    ];
    for (const [model, fields, audio, name] of cases) {
      const sub = `scribe-${model}`;
      const response = await transcribe(setup.proxy, sub, { model, ...fields }, audio, name);
      assert.equal(response.status, 200, await response.clone().text());
      const answer = await response.json();
      assert.deepEqual(answer.usage, transcriptionUsage(model, audio, fields.prompt ?? ""));
      const sent = mock.requests.at(-1);
      assert.match(sent.headers["content-type"], /^multipart\/form-data; boundary=/);
      assert.ok(sent.form.find((f) => f.name === "file").value.equals(audio), "the file, byte for byte");
      assert.equal(sent.form.find((f) => f.name === "file").filename, `audio.${name.split(".")[1]}`);
      const spent = await settledUsage(setup.proxy, mintToken({ sub }));
      assert.equal(spent.cost.used_usd, usd(charge(model, answer.usage)), model);
    }
  });

  test("streamed, is metered like a chat stream and charged transcript.text.done's usage", async () => {
    const file = wav(1.5);
    const response = await transcribe(setup.proxy, "scribe-stream", { model: "gpt-4o-mini-transcribe", stream: "true" }, file);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    const text = await within(10_000, response.text(), "the transcript stream");
    const done = JSON.parse(text.split("\n").find((line) => line.includes("transcript.text.done")).slice(6));
    assert.deepEqual(done.usage, transcriptionUsage("gpt-4o-mini-transcribe", file));
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "scribe-stream" }));
    assert.equal(spent.tokens.used, done.usage.total_tokens);
  });

  test("over MAX_AUDIO_BYTES is a 413, and a model not allowed a 400, before any object or upstream call", async () => {
    const before = mock.requests.length;
    // The proxy answers 413 before the upload ends, so fetch can fail writing the rest: read
    // the status with node:http, which reports the answer even when its write is cut.
    const form = new Response(formOf({ model: "whisper-1" }, Buffer.alloc(250_000), "clip.webm"));
    const body = Buffer.from(await form.arrayBuffer());
    assert.equal(await statusOf(`${setup.proxy.url}/v1/audio/transcriptions`, { ...headers("scribe-refused"), "content-type": form.headers.get("content-type") }, body), 413);
    const model = await transcribe(setup.proxy, "scribe-refused", { model: "gpt-4o-mini" }, wav(0.5));
    assert.equal(model.status, 400);
    assert.equal((await model.json()).error.code, "model_not_allowed");
    const extra = await transcribe(setup.proxy, "scribe-refused", { model: "whisper-1", "known_speaker_references[]": "data:audio/wav;base64,UklG" }, wav(0.5));
    assert.equal(extra.status, 400);
    assert.equal(mock.requests.length, before, "nothing went upstream");
    const usage = await usageOf(setup.proxy, mintToken({ sub: "scribe-refused" }));
    assert.equal(usage.requests.remaining, usage.requests.limit, "no request was counted");
  });

  test("answered as plain text (no usage) is charged its whole reservation", async () => {
    const response = await transcribe(setup.proxy, "scribe-text", { model: "whisper-1", response_format: "text" }, wav(4));
    assert.equal(response.status, 200);
    assert.match(await response.text(), /^This is the bundled mock upstream/);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "scribe-text" }));
    // 4 s: 80 audio tokens and 2,000 out reserved; $0.006 a minute for 4 s.
    assert.equal(spent.tokens.used, 80 + 2000);
    assert.equal(spent.cost.used_usd, usd(ceilDiv(4000n * PRICE["whisper-1"].perMinute, 60_000n)));
  });

  test("whose client leaves mid-answer is charged its whole reservation", async () => {
    const release = mock.pauseStreams();
    const controller = new AbortController();
    const file = wav(3);
    const response = await transcribe(setup.proxy, "scribe-leaver", { model: "gpt-4o-transcribe", stream: "true", prompt: "abc" }, file, "clip.wav", { signal: controller.signal });
    const reader = response.body.getReader();
    await within(10_000, reader.read(), "the first delta");
    controller.abort();
    release();
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "scribe-leaver" }));
    // 3 s: 60 audio tokens, the prompt's 3 bytes, 2,000 out, at gpt-4o-transcribe's prices.
    assert.equal(spent.tokens.used, 60 + 3 + 2000);
    const price = PRICE["gpt-4o-transcribe"];
    assert.equal(spent.cost.used_usd, usd(perMillion(3, price.input) + perMillion(60, price.audio) + perMillion(2000, price.output)));
  });
});

describe("the openai SDK as the client", () => {
  const setup = proxyFor(() => mock, { ...MODELS, DAILY_BUDGET_USD: "5" });

  test("transcribes (its form, array fields included, passes the proxy's parser) and speaks", async () => {
    const client = new OpenAI({ apiKey: mintToken({ sub: "sdk-audio" }), baseURL: `${setup.proxy.url}/v1`, maxRetries: 0, timeout: 10_000 });
    const file = wav(1);
    const transcript = await client.audio.transcriptions.create({
      file: await toFile(file, "note.wav"),
      model: "gpt-4o-transcribe",
      include: ["logprobs"],
      temperature: 0.2,
      prompt: "Zoë",
    });
    assert.match(transcript.text, /1\.0 seconds of audio/);
    const form = mock.requests.at(-1).form;
    assert.ok(form.find((f) => f.name === "file").value.equals(file));
    assert.deepEqual(form.filter((f) => f.name.startsWith("include")).map((f) => f.value.toString()), ["logprobs"]);
    const speech = await client.audio.speech.create({ model: "gpt-4o-mini-tts", voice: "alloy", input: "Hello from the SDK" });
    assert.ok(Buffer.from(await speech.arrayBuffer()).equals(speechAudio("Hello from the SDK")));
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "sdk-audio" }));
    const speechUsed = speechUsage(mock.requests.at(-1).json, mock.requests.at(-1).body);
    assert.equal(spent.tokens.used, transcript.usage.total_tokens + speechUsed.total_tokens);
  });
});

describe("audio uploads in one isolate", () => {
  const setup = proxyFor(() => mock, { ...MODELS, MAX_AUDIO_BYTES: "8000000" });

  test("count in its memory budget until sent: past it a 503 before any object or upstream call", async () => {
    for (let i = 0; i < 4; i++) mock.faultNext({ headerDelayMs: 800 });
    const before = mock.requests.length;
    const file = wav(437); // 7 MB: 21 MB of the isolate's 64 MiB while it is held
    const responses = await within(30_000, Promise.all(Array.from({ length: 4 }, () => transcribe(setup.proxy, "uploader", { model: "whisper-1" }, file))), "4 uploads");
    const statuses = responses.map((response) => response.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 503], "three fit in 64 MiB at three times their size");
    const busy = responses.find((response) => response.status === 503);
    assert.ok(busy.headers.get("retry-after"));
    assert.equal(mock.requests.length - before, 3, "the refused one went nowhere");
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "uploader" }));
    assert.equal(spent.requests.limit - spent.requests.remaining, 3, "and was not counted");
  });
});

describe("speech", () => {
  const setup = proxyFor(() => mock, { ...MODELS, DAILY_BUDGET_USD: "5" });

  test("per character passes the audio through and is charged its characters", async () => {
    const input = "Read this aloud, s'il vous plaît.";
    const response = await speak(setup.proxy, "reader-tts1", { model: "tts-1", input });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "audio/mpeg");
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(speechAudio(input)));
    assert.equal(mock.requests.at(-1).json.stream_format, undefined, "tts-1 is not asked for a stream");
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "reader-tts1" }));
    assert.equal(spent.cost.used_usd, usd(perMillion([...input].length, PRICE["tts-1"].perMillionChars)));
  });

  test("per token is asked for SSE, streams the audio back as bytes as it comes, and is charged speech.audio.done's usage", async () => {
    const input = "A longer answer to read aloud, long enough for several pieces of audio. ".repeat(3);
    const started = Date.now();
    const response = await speak(setup.proxy, "reader-mini", { model: "gpt-4o-mini-tts", input, response_format: "wav" }, { headers: headers("reader-mini", { "content-type": "application/json", accept: "application/octet-stream" }) });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "audio/wav");
    const reader = response.body.getReader();
    const chunks = [];
    let firstAt;
    for (;;) {
      const { done, value } = await within(10_000, reader.read(), "audio bytes");
      if (done) break;
      firstAt ??= Date.now();
      chunks.push(value);
    }
    const sent = mock.requests.at(-1);
    assert.equal(sent.json.stream_format, "sse");
    assert.equal(sent.headers.accept, "text/event-stream", "not the client's application/octet-stream");
    assert.ok(Buffer.concat(chunks).equals(speechAudio(input)), "the stream's audio, decoded");
    assert.ok(firstAt < sent.lastChunkWrittenAt, `the first bytes (${firstAt - started} ms) came before upstream's last (${sent.lastChunkWrittenAt - started} ms)`);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "reader-mini" }));
    const usage = speechUsage(sent.json, sent.body);
    assert.equal(spent.tokens.used, usage.total_tokens);
    assert.equal(spent.cost.used_usd, usd(charge("gpt-4o-mini-tts", usage)));
  });

  test("a model not allowed is a 400 before any call, and a client leaving mid-answer is charged the reservation", async () => {
    const before = mock.requests.length;
    const refused = await speak(setup.proxy, "reader-leaver", { model: "gpt-4o-mini", input: "hi" });
    assert.equal(refused.status, 400);
    assert.equal(mock.requests.length, before);
    const release = mock.pauseStreams();
    const controller = new AbortController();
    const input = "Stop me after the first piece. ".repeat(20);
    const response = await speak(setup.proxy, "reader-leaver", { model: "gpt-4o-mini-tts", input }, { signal: controller.signal });
    await within(10_000, response.body.getReader().read(), "the first audio");
    controller.abort();
    release();
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "reader-leaver" }));
    const sentBytes = Buffer.byteLength(mock.requests.at(-1).body);
    const audioTokens = Buffer.byteLength(input) * 3;
    assert.equal(spent.tokens.used, sentBytes + audioTokens);
    const price = PRICE["gpt-4o-mini-tts"];
    assert.equal(spent.cost.used_usd, usd(perMillion(sentBytes, price.input) + perMillion(audioTokens, price.audioOut)));
  });
});

describe("a speech stream upstream cuts off", () => {
  const setup = proxyFor(() => mock, { ...MODELS, DAILY_BUDGET_USD: "5" });

  // The proxy aborts the client's body (raw audio has no error event), but in workerd the
  // client still sees a clean end: only the log and the charge tell (see the report).
  test("puts no error text inside the audio, logs the failure and is charged the reservation", async () => {
    mock.faultNext({ kind: "cut" });
    const input = "Cut me off before the end. ".repeat(8);
    const response = await speak(setup.proxy, "reader-cut", { model: "gpt-4o-mini-tts", input });
    assert.equal(response.status, 200);
    const audio = Buffer.from(await within(10_000, response.arrayBuffer(), "the cut audio"));
    assert.ok(speechAudio(input).equals(audio), "the audio upstream sent, and nothing else");
    const line = await logLineOf(setup.proxy, response.headers.get("x-request-id"));
    assert.equal(line.failure, "upstream stream stopped before its end");
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "reader-cut" }));
    assert.equal(spent.tokens.used, Buffer.byteLength(mock.requests.at(-1).body) + Buffer.byteLength(input) * 3);
  });
});

describe("50 concurrent audio calls under a small dollar budget", () => {
  // tts-1: 400 characters cost $0.006 each; a transcription of 2 s on whisper-1, $0.0002.
  const setup = proxyFor(() => mock, { ...MODELS, DAILY_BUDGET_USD: "0.02", RATE_LIMIT_REQUESTS: "1000", MAX_CONCURRENT_STREAMS: "100" });

  test("never pass it", async () => {
    const input = "x".repeat(400);
    const calls = Array.from({ length: 50 }, (_, i) =>
      i % 2 ? speak(setup.proxy, "crowd", { model: "tts-1", input }) : transcribe(setup.proxy, "crowd", { model: "whisper-1" }, wav(2)),
    );
    const responses = await within(60_000, Promise.all(calls), "50 calls");
    await Promise.all(responses.map((response) => response.arrayBuffer()));
    const statuses = responses.map((response) => response.status);
    assert.ok(statuses.includes(200) && statuses.includes(429), `some admitted, some refused: ${statuses}`);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "crowd" }));
    assert.ok(spent.cost.used_usd <= 0.02, `spent $${spent.cost.used_usd} of $0.02`);
  });
});
