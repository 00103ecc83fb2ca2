// The example page's voice mode in real headless Chromium, end to end: a fake microphone, the
// page's own SDP offer through the proxy's POST /v1/realtime/calls, a real WebRTC answer from the
// mock (werift on loopback, tests/mock-webrtc.mjs), the data channel open, the transcript and
// each reply's charge on the page, the page's hang-up ending the call upstream and settling it,
// and a refused second call explained in words.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { startExample } from "../../examples/browser/server.mjs";
import { startMockUpstream } from "../mock-upstream.mjs";
import { responseDone } from "../mock-realtime.mjs";
import { JWT_SECRET, chromiumMissing, eventually, launchChromium, mintToken, startProxy, usageOf, usd } from "./helpers.mjs";

const skip = chromiumMissing;
const ADMIN_TOKEN = "voice-browser-admin-token-long-enough-0123456789";
const RESULTS = new URL("../../test-results/", import.meta.url);
// gpt-realtime-2.1-mini, nano-USD per token: audio in 10,000, text out 2,400, audio out 20,000.
const USAGE = {
  input_tokens: 200,
  output_tokens: 60,
  total_tokens: 260,
  input_token_details: { audio_tokens: 200, text_tokens: 0, cached_tokens: 0 },
  output_token_details: { audio_tokens: 50, text_tokens: 10 },
};
const REPLY = 200n * 10_000n + 10n * 2_400n + 50n * 20_000n; // 3,024,000
// The user's words, transcribed by gpt-4o-mini-transcribe (1,250 in, 5,000 out).
const HEARD = { type: "tokens", input_tokens: 40, output_tokens: 5, total_tokens: 45, input_token_details: { audio_tokens: 40, text_tokens: 0 } };
const CHARGE = REPLY + 40n * 1_250n + 5n * 5_000n; // 3,099,000: $0.003099

let mock;
let proxy;
let site;
let browser;

before(async () => {
  if (skip) return;
  mock = await startMockUpstream();
  mock.realtime.settings.webrtc = true;
  site = await startExample({ port: 0, jwtSecret: JWT_SECRET });
  proxy = await startProxy({
    UPSTREAM_BASE_URL: mock.url,
    OPENAI_API_KEY: mock.apiKey,
    ALLOWED_ORIGINS: site.url,
    ALLOWED_MODELS: "gpt-6-luna",
    VOICE_MODELS: "gpt-realtime-2.1-mini",
    VOICE_TRANSCRIPTION_MODEL: "gpt-4o-mini-transcribe",
    VOICE_MAX_OUTPUT_TOKENS: "100",
    VOICE_CONTEXT_TOKENS: "1000",
    VOICE_MAX_CONCURRENT: "1",
    DAILY_BUDGET_USD: "1",
    ADMIN_TOKEN,
  });
  site.setProxyUrl(proxy.url);
  browser = await launchChromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]);
});
after(async () => {
  await browser?.close();
  await site?.close();
  await proxy?.dispose();
  await mock?.close();
});

/** The page as `sub`, recording the offers it posts and every response body it receives. */
async function open(sub) {
  const page = await browser.newPage();
  const offers = [];
  const bodies = [];
  page.on("request", (request) => request.url().includes("/v1/realtime/calls") && offers.push(request.postData()));
  page.on("response", async (response) => bodies.push((await response.text().catch(() => "")) + JSON.stringify(await response.allHeaders().catch(() => ({})))));
  await page.goto(site.url);
  await page.fill("#user", sub);
  return { page, offers, bodies };
}

const textOf = (page, selector) => page.textContent(selector);

test("Talk calls through the proxy with the page's own offer, shows the live transcript and each reply's charge, and Hang up ends the call", { skip }, async () => {
  const { page, offers, bodies } = await open("talker");
  const before = mock.realtime.calls.size;
  await page.click("#talk");
  await page.waitForFunction(() => document.getElementById("call-state").textContent.startsWith("Live"), null, { timeout: 10_000 });
  assert.equal(mock.realtime.calls.size, before + 1);
  const [id] = [...mock.realtime.calls.keys()].slice(-1);
  const call = await mock.realtime.channelOf(id);
  assert.equal(offers.length, 1);
  assert.equal(call.sdp, offers[0], "upstream got the page's own offer");
  assert.match(call.sdp, /^v=0\r\n[\s\S]*m=audio [\s\S]*m=application [\s\S]*webrtc-datachannel/);
  assert.equal(call.session.model, "gpt-realtime-2.1-mini");
  assert.equal(await page.isVisible("#hang-up"), true);

  mock.realtime.send(id, { type: "conversation.item.input_audio_transcription.completed", item_id: "item_user", content_index: 0, transcript: "Is it sunny?", usage: HEARD });
  mock.realtime.send(id, { type: "response.created", response: { id: "resp_1" } });
  for (const delta of ["Yes, ", "it is ", "sunny."]) {
    mock.realtime.send(id, { type: "response.output_audio_transcript.delta", response_id: "resp_1", item_id: "item_reply", output_index: 0, content_index: 0, delta });
  }
  mock.realtime.send(id, responseDone(USAGE, "resp_1"));
  await page.waitForFunction(() => document.getElementById("transcript").textContent.includes("Assistant: Yes, it is sunny."), null, { timeout: 5000 });
  const lines = await page.$$eval("#transcript p", (lines) => lines.map((line) => line.textContent));
  assert.deepEqual(lines, ["You: Is it sunny?", "Assistant: Yes, it is sunny."]);
  const charged = `This call: $${usd(CHARGE).toFixed(6)} so far`;
  await page.waitForFunction((charged) => document.getElementById("call-cost").textContent.startsWith(charged), charged, { timeout: 5000 });
  const token = mintToken({ sub: "talker" });
  const during = await usageOf(proxy, token);
  assert.equal(during.cost.used_usd, usd(CHARGE), "the page shows what the budget was charged");
  assert.match(await textOf(page, "#call-cost"), new RegExp(`\\$${during.cost.remaining_usd.toFixed(6)} of \\$1\\.00 left today`));
  mkdirSync(RESULTS, { recursive: true });
  await page.screenshot({ path: new URL("voice-example.png", RESULTS).pathname, fullPage: true });

  await page.click("#hang-up");
  assert.equal(await textOf(page, "#call-state"), "Call ended.");
  // The peer leaving ends the call upstream; the proxy sees its sideband close and settles it.
  await mock.realtime.ended(id, 10_000);
  const settled = await eventually(10_000, () => proxy.logs.find((line) => line.event === "voice_call_end" && line.detail.includes(`call ${id} `)), "the call's settlement");
  assert.match(settled.detail, /ended: closed;/);
  const after = await usageOf(proxy, token);
  assert.deepEqual([after.cost.used_usd, after.cost.reserved_usd], [usd(CHARGE), 0], "nothing more than the reply, nothing held");
  for (const seen of bodies) assert.ok(!seen.includes(mock.apiKey), "the OpenAI key reached the browser");
  await page.close();
});

test("a second call past the user's one live call is refused in words, and a call the operator ends is shown ended", { skip }, async () => {
  const first = await open("busy");
  await first.page.click("#talk");
  await first.page.waitForFunction(() => document.getElementById("call-state").textContent.startsWith("Live"), null, { timeout: 10_000 });
  const second = await open("busy");
  await second.page.click("#talk");
  await second.page.waitForFunction(() => document.getElementById("call-state").textContent === "No call.", null, { timeout: 10_000 });
  assert.equal(await textOf(second.page, "#message"), "You already have a voice call open: hang it up before starting another.");
  assert.equal(await second.page.isVisible("#talk"), true, "the page can call again");
  assert.equal(second.offers.length, 1);
  const [id] = [...mock.realtime.calls.keys()].slice(-1);
  const ended = await fetch(`${proxy.url}/admin/calls/${id}`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(ended.status, 200);
  await first.page.waitForFunction(() => document.getElementById("call-state").textContent.includes("ended by the service"), null, { timeout: 10_000 });
  assert.equal(await first.page.isVisible("#hang-up"), false);
  await second.page.close();
  await first.page.close();
});
