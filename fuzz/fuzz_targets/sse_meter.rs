//! Arbitrary bytes as an upstream event stream, cut at arbitrary places: never a panic, and the
//! forwarded bytes, usage and completeness are the same however the stream was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openai_edge_proxy::testing::sse::{SseMeter, StreamKind};

fn run(stream: &[u8], cuts: &[usize], kind: StreamKind) -> (Vec<u8>, Option<u64>, usize, bool) {
    let (forwarded, meter) = SseMeter::meter_split(kind, stream, cuts);
    (
        forwarded,
        meter.usage.map(|usage| usage.total()),
        meter.streamed_text_bytes,
        meter.complete,
    )
}

// The first bytes choose the stream kind and the cut points; the rest is the stream.
fuzz_target!(|data: &[u8]| {
    let Some((&header, rest)) = data.split_first() else {
        return;
    };
    let cut_count = usize::from(header & 0x0f).min(rest.len());
    let (cut_bytes, stream) = rest.split_at(cut_count);
    let kind = match header >> 4 {
        0..=3 => StreamKind::Chat,
        4..=7 => StreamKind::Responses,
        8..=10 => StreamKind::Transcription,
        11..=12 => StreamKind::Speech,
        _ => StreamKind::SpeechAudio,
    };
    let mut cuts: Vec<usize> = cut_bytes.iter().map(|&b| usize::from(b) * stream.len() / 255).collect();
    cuts.sort_unstable();
    let whole = run(stream, &[], kind);
    assert_eq!(whole, run(stream, &cuts, kind), "split changed the result");
    let one_by_one: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(whole, run(stream, &one_by_one, kind), "byte-by-byte changed the result");
});
