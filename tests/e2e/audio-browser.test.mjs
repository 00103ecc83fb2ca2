// Dictation and read-aloud on the example page in real headless Chromium: a fake microphone fed
// from a short WAV file records into the page, the proxy transcribes it (the mock answers) into
// the prompt, and the answer's "read aloud" button fetches its speech; each shows what it cost,
// which is what the user's budget was charged.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { startExample } from "../../examples/browser/server.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { JWT_SECRET, chromiumMissing, launchChromium, mintToken, startProxy, usageOf } from "./helpers.mjs";

const skip = chromiumMissing;
const RESULTS = new URL("../../test-results/", import.meta.url);

/** One second of a 440 Hz tone, 16 kHz mono 16-bit PCM: Chromium's fake capture plays it in a loop. */
function toneWav() {
  const samples = 16_000;
  const file = Buffer.alloc(44 + samples * 2);
  file.write("RIFF", 0);
  file.writeUInt32LE(36 + samples * 2, 4);
  file.write("WAVEfmt ", 8);
  file.writeUInt32LE(16, 16);
  file.writeUInt16LE(1, 20);
  file.writeUInt16LE(1, 22);
  file.writeUInt32LE(16_000, 24);
  file.writeUInt32LE(32_000, 28);
  file.writeUInt16LE(2, 32);
  file.writeUInt16LE(16, 34);
  file.write("data", 36);
  file.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) file.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 16_000)), 44 + 2 * i);
  return file;
}

let mock;
let proxy;
let site;
let browser;

before(async () => {
  if (skip) return;
  mkdirSync(RESULTS, { recursive: true });
  const wavPath = new URL("fake-microphone.wav", RESULTS).pathname;
  writeFileSync(wavPath, toneWav());
  mock = await startMockUpstream({ chunkDelayMs: 20 });
  site = await startExample({ port: 0, jwtSecret: JWT_SECRET });
  proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    ALLOWED_ORIGINS: site.url,
    // The example page asks for gpt-6-luna, the default model.
    ALLOWED_MODELS: "gpt-6-luna",
    TRANSCRIBE_MODELS: "gpt-4o-mini-transcribe",
    SPEECH_MODELS: "gpt-4o-mini-tts",
    DAILY_BUDGET_USD: "1",
  });
  site.setProxyUrl(proxy.url);
  browser = await launchChromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${wavPath}`]);
});
after(async () => {
  await browser?.close();
  await site?.close();
  await proxy?.dispose();
  await mock?.close();
});

test("the microphone dictates into the prompt and the answer is read aloud, each showing its cost", { skip }, async () => {
  const page = await browser.newPage();
  await page.goto(site.url);
  await page.fill("#user", "speaker");
  await page.click("#dictate");
  await page.waitForFunction(() => document.getElementById("dictate").textContent.includes("Stop"), null, { timeout: 5000 });
  await page.waitForTimeout(1200);
  await page.click("#dictate");
  await page.waitForFunction(() => document.getElementById("prompt").value.includes("seconds of audio"), null, { timeout: 10_000 });
  await page.waitForFunction(() => document.getElementById("dictate-cost").textContent.startsWith("cost $"), null, { timeout: 10_000 });
  const upload = mock.requests.find((request) => request.path === "/v1/audio/transcriptions");
  const file = upload.form.find((field) => field.name === "file");
  assert.equal(file.filename, "audio.webm");
  assert.equal(file.value.subarray(0, 4).toString("hex"), "1a45dfa3", "the recording is a WebM file");
  const dictated = await usageOf(proxy, mintToken({ sub: "speaker" }));
  assert.ok(dictated.cost.used_usd > 0);
  assert.equal(await page.textContent("#dictate-cost"), `cost $${dictated.cost.used_usd.toFixed(6)}`);

  await page.click("#send");
  await page.waitForFunction(() => !document.getElementById("read-aloud").hidden, null, { timeout: 10_000 });
  await page.click("#read-aloud");
  await page.waitForFunction(() => document.getElementById("speech-cost").textContent.startsWith("cost $"), null, { timeout: 10_000 });
  const speech = mock.requests.find((request) => request.path === "/v1/audio/speech");
  assert.equal(speech.json.input, await page.textContent("#answer"));
  const bytes = Number(await page.getAttribute("#player", "data-bytes"));
  assert.equal(bytes, 200 * [...speech.json.input].length, "every byte of the mock's audio reached the page");
  await page.screenshot({ path: new URL("audio-example.png", RESULTS).pathname, fullPage: true });
  await page.close();
});
