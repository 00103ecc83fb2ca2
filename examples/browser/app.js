// The example page: a user token from the app's backend (or, with a Turnstile site key and no
// backend, a guest token from the proxy), a streamed chat completion through the proxy rendered
// as it arrives, dictation into the prompt (transcription) and a "read aloud" button on the
// answer (speech), each showing what it cost, a voice conversation (WebRTC, through the proxy's
// `POST /v1/realtime/calls`) with its live transcript and what it has cost so far, the quota, and
// clear messages when something fails.
const PROXY = "__PROXY_URL__";
const TURNSTILE_SITE_KEY = "__TURNSTILE_SITE_KEY__";
const GUEST_MODE = TURNSTILE_SITE_KEY !== "" && !TURNSTILE_SITE_KEY.startsWith("__");
// The operator allows these with TRANSCRIBE_MODELS and SPEECH_MODELS.
const TRANSCRIBE_MODEL = "gpt-4o-mini-transcribe";
const SPEECH_MODEL = "gpt-4o-mini-tts";
// And this one with VOICE_MODELS.
const VOICE_MODEL = "gpt-realtime-2.1-mini";
const $ = (id) => document.getElementById(id);
let token = null;
let turnstileWidget = null;

async function userToken() {
  if (GUEST_MODE) return guestToken();
  if (token && token.user === $("user").value && token.expiresAt > Date.now() + 30_000) return token.value;
  const response = await fetch(`/token?user=${encodeURIComponent($("user").value)}`, { method: "POST" });
  if (!response.ok) throw new Error("The app's backend did not give a token.");
  const { token: value, expires_in } = await response.json();
  token = { value, user: $("user").value, expiresAt: Date.now() + expires_in * 1000 };
  return value;
}

/** The guest token, if the human check got one that has not expired; else a fresh check. */
function guestToken() {
  if (token && token.expiresAt > Date.now() + 30_000) return token.value;
  if (token) restartHumanCheck();
  return null;
}

/** Loads Turnstile's widget; each token it gives is exchanged at once (it expires in 300 s). */
function startGuestMode() {
  $("signed-in").hidden = true;
  $("guest").hidden = false;
  $("mode-hint").textContent =
    "This page never sees an OpenAI key and has no backend: a human check (Cloudflare Turnstile) gets it a short guest token from the proxy.";
  window.onTurnstileLoad = () => {
    turnstileWidget = window.turnstile.render("#turnstile", {
      sitekey: TURNSTILE_SITE_KEY,
      callback: exchangeForGuestToken,
      "expired-callback": restartHumanCheck,
      "error-callback": () => show("The human check could not run: reload the page.", true),
    });
  };
  const script = document.createElement("script");
  script.src = "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit&onload=onTurnstileLoad";
  script.async = true;
  document.head.append(script);
}

async function exchangeForGuestToken(turnstileToken) {
  try {
    const response = await fetch(`${PROXY}/v1/guest`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ turnstile_token: turnstileToken }),
    });
    if (!response.ok) {
      $("guest-status").textContent = "The human check did not go through.";
      return show(await explain(response), true);
    }
    const { token: value, expires_in } = await response.json();
    token = { value, expiresAt: Date.now() + expires_in * 1000 };
    $("guest-status").textContent = "Verified: you are chatting as a guest.";
    show("");
    refreshQuota();
  } catch (error) {
    show(`Network error: the proxy cannot be reached from this page (${error.message}).`, true);
  }
}

function restartHumanCheck() {
  token = null;
  $("guest-status").textContent = "Waiting for the human check…";
  if (turnstileWidget !== null) window.turnstile.reset(turnstileWidget);
}

function show(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

/** Explains a failed answer the way a user can act on. */
async function explain(response) {
  const { error } = await response.json().catch(() => ({}));
  if (response.status === 401) {
    if (GUEST_MODE) {
      restartHumanCheck();
      return "Your guest session has expired: complete the human check again.";
    }
    token = null;
    return "Your session has expired: sign in again.";
  }
  if (response.status === 429) {
    const wait = response.headers.get("retry-after");
    return `${error?.message ?? "Too many requests."} You can send again in ${wait ?? "a few"} s.`;
  }
  return error?.message ?? `The proxy answered ${response.status}.`;
}

async function refreshQuota() {
  try {
    const bearer = await userToken();
    if (!bearer) return;
    const response = await fetch(`${PROXY}/v1/usage`, { headers: { authorization: `Bearer ${bearer}` } });
    if (!response.ok) return;
    const usage = await response.json();
    $("quota").textContent =
      `Quota: ${usage.requests.remaining} of ${usage.requests.limit} requests left in this window · ` +
      `${usage.tokens.remaining} of ${usage.tokens.limit} tokens left today`;
  } catch {
    $("quota").textContent = "Quota: unavailable";
  }
}

async function send() {
  const prompt = $("prompt").value.trim();
  if (!prompt) return show("Type a prompt first.", true);
  if (GUEST_MODE && !guestToken()) return show("Complete the human check first.", true);
  $("send").disabled = true;
  $("answer").textContent = "";
  show("Thinking…");
  try {
    const response = await fetch(`${PROXY}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${await userToken()}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-6-luna", stream: true, messages: [{ role: "user", content: prompt }] }),
    });
    if (!response.ok) return show(await explain(response), true);
    await render(response.body);
  } catch (error) {
    // fetch rejects without a status for network failures and CORS refusals alike.
    show(`Network error: the proxy cannot be reached from this page (${error.message}).`, true);
  } finally {
    $("send").disabled = false;
    $("read-aloud").hidden = $("answer").textContent === "";
    $("speech-cost").textContent = "";
    refreshQuota();
  }
}

/** The dollars the user has spent today, once nothing is reserved (settlement follows the answer). */
async function spentUsd(bearer) {
  for (let tries = 0; tries < 20; tries++) {
    const response = await fetch(`${PROXY}/v1/usage`, { headers: { authorization: `Bearer ${bearer}` } });
    if (!response.ok) return null;
    const usage = await response.json();
    if (usage.cost.reserved_usd === 0 && usage.streams.open === 0) return usage.cost.used_usd;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  return null;
}

/** Runs `call` with the user's token and shows in `costId` what it cost in dollars. */
async function withCost(costId, call) {
  const bearer = await userToken();
  if (!bearer) return show("Complete the human check first.", true);
  const before = await spentUsd(bearer);
  const done = await call(bearer);
  const after = done ? await spentUsd(bearer) : null;
  if (before !== null && after !== null) $(costId).textContent = `cost $${(after - before).toFixed(6)}`;
}

let recorder = null;

/** Click once to record from the microphone, again to stop: the speech is transcribed into the prompt. */
async function dictate() {
  if (recorder) return recorder.stop();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    return show(`The microphone is not available (${error.message}).`, true);
  }
  // A low bitrate keeps the reservation small: the proxy bounds a compressed file's length by its size.
  recorder = new MediaRecorder(stream, { mimeType: "audio/webm;codecs=opus", audioBitsPerSecond: 16_000 });
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((track) => track.stop());
    recorder = null;
    $("dictate").classList.remove("recording");
    $("dictate").textContent = "🎤 Dictate";
    transcribe(new Blob(chunks, { type: "audio/webm" }));
  };
  recorder.start();
  $("dictate").classList.add("recording");
  $("dictate").textContent = "■ Stop";
  show("Listening… click Stop when you are done.");
}

async function transcribe(audio) {
  show("Transcribing…");
  $("dictate").disabled = true;
  try {
    await withCost("dictate-cost", async (bearer) => {
      const form = new FormData();
      form.append("model", TRANSCRIBE_MODEL);
      form.append("file", audio, "dictation.webm");
      const response = await fetch(`${PROXY}/v1/audio/transcriptions`, { method: "POST", headers: { authorization: `Bearer ${bearer}` }, body: form });
      if (!response.ok) {
        show(await explain(response), true);
        return false;
      }
      const { text } = await response.json();
      $("prompt").value = [$("prompt").value.trim(), text].filter(Boolean).join(" ");
      show("");
      return true;
    });
  } catch (error) {
    show(`Network error: the proxy cannot be reached from this page (${error.message}).`, true);
  } finally {
    $("dictate").disabled = false;
    refreshQuota();
  }
}

/** Reads the answer aloud: the audio arrives as the proxy streams it, and plays once whole. */
async function readAloud() {
  $("read-aloud").disabled = true;
  show("Fetching the voice…");
  try {
    await withCost("speech-cost", async (bearer) => {
      const response = await fetch(`${PROXY}/v1/audio/speech`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ model: SPEECH_MODEL, voice: "alloy", input: $("answer").textContent.slice(0, 4096) }),
      });
      if (!response.ok) {
        show(await explain(response), true);
        return false;
      }
      const reader = response.body.getReader();
      const chunks = [];
      let bytes = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        bytes += value.length;
        show(`Receiving the voice… ${Math.round(bytes / 1024)} KB`);
      }
      $("player").src = URL.createObjectURL(new Blob(chunks, { type: response.headers.get("content-type") ?? "audio/mpeg" }));
      $("player").dataset.bytes = String(bytes);
      await $("player").play().catch(() => {});
      show("");
      return true;
    });
  } catch (error) {
    show(`Network error: the proxy cannot be reached from this page (${error.message}).`, true);
  } finally {
    $("read-aloud").disabled = false;
    refreshQuota();
  }
}

let voiceCall = null;

/**
 * Starts a voice call the way @openai/agents-realtime's WebRTC transport does: the microphone on
 * a peer connection with an `oai-events` data channel, its SDP offer posted as application/sdp
 * with the user token, the answer applied. Audio then flows between the browser and OpenAI; the
 * data channel carries the session's events (the transcript), and the proxy meters the call.
 */
async function talk() {
  let bearer;
  try {
    bearer = await userToken();
  } catch (error) {
    return show(error.message, true);
  }
  if (!bearer) return show("Complete the human check first.", true);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    return show(`The microphone is not available (${error.message}).`, true);
  }
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel("oai-events");
  const call = { pc, stream, bearer, id: null, spentBefore: null, hungUpHere: false, lines: new Map() };
  voiceCall = call;
  $("talk").hidden = true;
  $("hang-up").hidden = false;
  $("transcript").replaceChildren();
  $("call-cost").textContent = "";
  callState("Calling…");
  show("");
  pc.ontrack = (event) => ($("voice-player").srcObject = event.streams[0]);
  pc.addTrack(stream.getAudioTracks()[0]);
  channel.onopen = () => {
    callState("Live: speak, the model answers aloud.");
    // Transcriptions are charged too, apart from replies: the figure follows every charge.
    call.timer = setInterval(() => showCallCost(call, 1), 2000);
  };
  channel.onmessage = (event) => voiceEvent(call, JSON.parse(event.data));
  // The proxy ends a call its budget or time limit cannot go on with (or an operator does).
  channel.onclose = () => endCall(call, call.hungUpHere ? "Call ended." : "The call was ended by the service: its budget, its time limit or an operator.");
  pc.onconnectionstatechange = () => pc.connectionState === "failed" && endCall(call, "The connection to the voice server was lost.");
  try {
    call.spentBefore = call.lastUsed = (await usage(bearer))?.cost.used_usd ?? null;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const response = await fetch(`${PROXY}/v1/realtime/calls?model=${encodeURIComponent(VOICE_MODEL)}`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/sdp" },
      body: offer.sdp,
    });
    if (!response.ok) {
      show(await explainCall(response), true);
      return endCall(call, "No call.");
    }
    // As the SDK does: the call id is Location's last segment.
    call.id = response.headers.get("location")?.split("/").pop() ?? null;
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    if (voiceCall === call && channel.readyState !== "open") callState("Connecting…");
  } catch (error) {
    show(`Network error: the voice call could not be set up (${error.message}).`, true);
    endCall(call, "No call.");
  }
}

/** A refused call in words: most refusals of a call are about its budget or its slot. */
async function explainCall(response) {
  const { error } = await response.clone().json().catch(() => ({}));
  if (response.status === 429 && error?.code === "too_many_concurrent_streams") {
    return "You already have a voice call open: hang it up before starting another.";
  }
  if (response.status === 429 && error?.type === "insufficient_quota") {
    return "Your budget has no room for a voice call now: a call holds its next two replies' worst case. It frees as other requests end, and resets at 00:00 UTC.";
  }
  if (response.status === 403) return `Voice calls are refused here: ${error?.message ?? "permission denied."}`;
  if (error?.code === "model_not_allowed") return "Voice calls are not offered to you on this proxy.";
  return explain(response);
}

/** The session's events that this page shows: the transcript as it grows, and each reply's cost. */
function voiceEvent(call, event) {
  switch (event.type) {
    case "conversation.item.input_audio_transcription.delta":
      return transcriptLine(call, event.item_id, "You", event.delta, true);
    case "conversation.item.input_audio_transcription.completed":
      return transcriptLine(call, event.item_id, "You", event.transcript, false);
    case "response.output_audio_transcript.delta":
      return transcriptLine(call, event.item_id, "Assistant", event.delta, true);
    case "response.output_audio_transcript.done":
      return transcriptLine(call, event.item_id, "Assistant", event.transcript, false);
    case "response.done":
      return showCallCost(call);
    case "error":
      return show(event.error?.message ?? "The voice session reported an error.", true);
  }
}

/** One line per item: deltas append to it, the final transcript replaces it. */
function transcriptLine(call, itemId, speaker, text, append) {
  let line = call.lines.get(itemId);
  if (!line) {
    line = document.createElement("p");
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = `${speaker}: `;
    line.append(who, document.createElement("span"));
    call.lines.set(itemId, line);
    $("transcript").append(line);
    $("transcript").hidden = false;
  }
  const said = line.lastChild;
  said.textContent = append ? said.textContent + (text ?? "") : text ?? "";
}

async function usage(bearer) {
  const response = await fetch(`${PROXY}/v1/usage`, { headers: { authorization: `Bearer ${bearer}` } });
  return response.ok ? response.json() : null;
}

/**
 * What the call has cost so far and what is left of the day's budget. The proxy charges each
 * reply from its usage as OpenAI reports it, a moment after the page sees the reply end, so
 * this asks until the charge has landed (`tries` times, 200 ms apart).
 */
async function showCallCost(call, tries = 10) {
  try {
    let current;
    for (let tried = 1; tried <= tries; tried++) {
      current = await usage(call.bearer);
      if (!current || current.cost.used_usd !== call.lastUsed || tried === tries) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (!current || call.spentBefore === null) return;
    call.lastUsed = current.cost.used_usd;
    const { cost } = current;
    const left =
      cost.remaining_usd === null
        ? "no daily dollar limit"
        : `$${cost.remaining_usd.toFixed(6)} of $${cost.limit_usd.toFixed(2)} left today, $${cost.reserved_usd.toFixed(6)} held for the next replies`;
    $("call-cost").textContent = `This call: $${(cost.used_usd - call.spentBefore).toFixed(6)} so far · ${left}`;
  } catch {
    // The figure stays as it was; the call goes on.
  }
}

function callState(text) {
  $("call-state").textContent = text;
}

/** Ends the call on this side: OpenAI sees the peer leave and ends it, and the proxy settles it. */
function hangUp() {
  if (!voiceCall) return;
  voiceCall.hungUpHere = true;
  endCall(voiceCall, "Call ended.");
}

function endCall(call, text) {
  if (call.ended) return;
  call.ended = true;
  clearInterval(call.timer);
  call.pc.close();
  call.stream.getTracks().forEach((track) => track.stop());
  if (voiceCall === call) voiceCall = null;
  $("talk").hidden = false;
  $("hang-up").hidden = true;
  callState(text);
  if (call.id) setTimeout(() => showCallCost(call).then(refreshQuota), 500);
}

/** Appends each `data:` event's text as it arrives; a final error event is shown as an error. */
async function render(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    const events = pending.split("\n\n");
    pending = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) return show(chunk.error.message, true);
      $("answer").textContent += chunk.choices?.[0]?.delta?.content ?? "";
    }
  }
  show("");
}

$("send").addEventListener("click", send);
$("dictate").addEventListener("click", dictate);
$("read-aloud").addEventListener("click", readAloud);
$("talk").addEventListener("click", talk);
$("hang-up").addEventListener("click", hangUp);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) send();
});
if (GUEST_MODE) startGuestMode();
else refreshQuota();
