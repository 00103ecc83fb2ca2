// A real WebRTC answerer for the mock Realtime upstream (tests/mock-realtime.mjs), on loopback:
// it answers a browser's SDP offer as OpenAI's media server would, accepts the page's audio
// (and drops it), and carries server events on the page's `oai-events` data channel. Only the
// tests that ask for it (`mockRealtime({ webrtc: true })`) use it; werift is plain TypeScript,
// so it needs no native build.
import { RTCPeerConnection } from "werift";

/**
 * Answers `offer` (SDP text); returns the answer's SDP (with its candidates, no trickle: the
 * unified interface answers once) and the peer: `send(event)` on the data channel once open,
 * `opened` (a promise of the channel), `close()`, and `onClose` (called once when the page leaves).
 */
export async function answerOffer(offer, { onClose = () => {} } = {}) {
  // Loopback only: the browser in the tests runs on this machine, and no other host candidate
  // (a container's interfaces may not route to each other) can slow ICE down.
  const pc = new RTCPeerConnection({ iceAdditionalHostAddresses: ["127.0.0.1"], iceUseIpv6: false, iceInterfaceAddresses: { udp4: "127.0.0.1" } });
  let channel = null;
  let closed = false;
  const opened = new Promise((resolve) => {
    pc.onDataChannel.subscribe((dc) => {
      if (dc.label !== "oai-events") return;
      channel = dc;
      // The page closing its channel (or its peer connection) is its hang-up.
      dc.stateChanged.subscribe((state) => (state === "open" ? resolve(dc) : state === "closed" && close()));
      if (dc.readyState === "open") resolve(dc);
    });
  });
  const close = () => {
    if (closed) return;
    closed = true;
    pc.close().catch(() => {});
    onClose();
  };
  pc.connectionStateChange.subscribe((state) => {
    if (state === "closed" || state === "failed" || state === "disconnected") close();
  });
  await pc.setRemoteDescription({ type: "offer", sdp: offer });
  await pc.setLocalDescription(await pc.createAnswer());
  return {
    sdp: pc.localDescription.sdp,
    opened,
    send(event) {
      if (channel?.readyState !== "open") return false;
      channel.send(JSON.stringify(event));
      return true;
    },
    close,
  };
}
