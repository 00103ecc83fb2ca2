// What the voice suites share: a browser's offer, the operator's voice settings they run
// with, a turn's worst case under those settings, and the mock upstream with a proxy on it.
import { startMockUpstream } from "../mock-upstream.mjs";
import { startProxy } from "./helpers.mjs";

export const INSTRUCTIONS = "Be brief.";
/** An SDP offer as a browser's WebRTC stack starts one. */
export const OFFER = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
/** The operator's voice settings of the suites (a file adds its models and budgets). */
export const VOICE_SETTINGS = {
  VOICE_INSTRUCTIONS: INSTRUCTIONS,
  VOICE_VOICES: "marin,cedar",
  VOICE_MAX_OUTPUT_TOKENS: "100",
  VOICE_CONTEXT_TOKENS: "1000",
  VOICE_MAX_SESSION_SECONDS: "10",
  VOICE_MAX_CONCURRENT: "1",
};
/** What a response reads at most: the instructions' bytes and VOICE_CONTEXT_TOKENS. */
export const CONTEXT = BigInt(INSTRUCTIONS.length + 1000);
/** Nano-USD per token of gpt-realtime-2.1-mini's audio, its dearest input and output. */
export const AUDIO_IN = 10_000n;
export const AUDIO_OUT = 20_000n;
/** A turn's worst case: CONTEXT in and VOICE_MAX_OUTPUT_TOKENS out at those prices (12,090,000). */
export const TURN = CONTEXT * AUDIO_IN + 100n * AUDIO_OUT;

/** The mock upstream, and a proxy on it with the voice settings and `bindings`. */
export async function startVoiceProxy(bindings, options) {
  const upstream = await startMockUpstream();
  const proxy = await startProxy({ UPSTREAM_BASE_URL: upstream.url, OPENAI_API_KEY: upstream.apiKey, ...VOICE_SETTINGS, ...bindings }, options);
  return { upstream, proxy };
}
