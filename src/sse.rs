//! Incremental scanner of an upstream Server-Sent Events stream: Chat Completions chunks or
//! Responses API events.
//!
//! Chunks arrive split anywhere: inside a line, between `\r` and `\n`, several events at once.
//! The meter cuts the byte stream into whole events, reads each one's `usage` and streamed
//! text, and hands back the events to forward, whole and in order, so a client never sees half
//! an event. Hand-written because it must also decide per event (drop the usage-only event
//! when the client did not ask for it) and count as it goes; an SSE client crate does neither.

use serde::Deserialize;

use crate::budget::usage::Usage;
use crate::error::ProxyError;
use crate::objects::owned_responses::{MAX_CREATED_ITEMS, MAX_RESPONSE_ID_BYTES};

/// A final SSE event carrying an OpenAI-shaped error, for a stream that cannot go on.
pub fn error_event(error: &ProxyError) -> Vec<u8> {
    format!("data: {}\n\n", error.to_json()).into_bytes()
}

/// The longest event the meter holds. A line that never ends would otherwise grow until the
/// isolate's 128 MB memory limit ends every request it serves.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// What the proxy reads from a whole (non-stream) JSON answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub usage: Option<Usage>,
    /// The answer's `id`: for the Responses API, the response it created.
    pub id: Option<String>,
    /// The ids of its `output` items (Responses), at most `MAX_CREATED_ITEMS`.
    pub items: Vec<String>,
}

/// Reads a whole answer once, for its usage and its id.
pub fn read_answer(body: &[u8]) -> Answer {
    match serde_json::from_slice::<ResponseView>(body) {
        Ok(mut view) => {
            let mut items = Vec::new();
            view.item_ids(&mut items);
            Answer {
                id: view.take_id(),
                items,
                usage: view.usage(),
            }
        }
        Err(_) => Answer::default(),
    }
}

/// The bytes kept of the end of an answer passed through unread, for its `usage`.
pub const ANSWER_TAIL_BYTES: usize = 4096;

/// The most bytes a `usage` object may take to arrive whole.
const MAX_USAGE_BYTES: usize = 16 * 1024;

const USAGE_KEY: &[u8] = b"\"usage\"";

/// The `usage` of an answer passed to the client as it arrives, read as it passes: an
/// Embeddings answer (tens of MB of floats) or an image answer or stream (images in base64),
/// none of which the proxy may hold. A `"usage"` key followed by `:` is a key of the answer's
/// own: in JSON text, a quote inside a string is escaped, and these answers' only strings
/// are base64, names and enums (a chat answer's text could carry one). The last whole one wins:
/// an image stream's `image_generation.completed` event, or the answer's top level.
#[derive(Debug, Default)]
pub struct AnswerTail {
    tail: Vec<u8>,
    /// Bytes of `tail` searched for the key (one may straddle the next chunk).
    searched: usize,
    /// Where a key whose object has not arrived whole starts in `tail`.
    pending: Option<usize>,
    usage: Option<Usage>,
}

/// What follows a `"usage"` key so far.
enum UsageRead {
    Whole(Usage),
    Partial,
    NotUsage,
}

impl AnswerTail {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.tail.extend_from_slice(chunk);
        let from = self.searched.saturating_sub(USAGE_KEY.len() - 1);
        if let Some(at) = self.tail[from..].windows(USAGE_KEY.len()).rposition(|w| w == USAGE_KEY) {
            self.pending = Some(from + at);
        }
        self.searched = self.tail.len();
        if let Some(at) = self.pending {
            match read_usage(&self.tail[at + USAGE_KEY.len()..]) {
                UsageRead::Whole(usage) => (self.usage, self.pending) = (Some(usage), None),
                UsageRead::NotUsage => self.pending = None,
                UsageRead::Partial => {}
            }
        }
        // Trimmed in batches: each byte is moved at most once or twice.
        if self.tail.len() > 2 * ANSWER_TAIL_BYTES {
            let mut keep_from = self.tail.len() - ANSWER_TAIL_BYTES;
            self.pending = self.pending.filter(|at| self.tail.len() - at <= MAX_USAGE_BYTES);
            if let Some(at) = self.pending {
                keep_from = keep_from.min(at);
            }
            self.tail.drain(..keep_from);
            self.searched -= keep_from;
            self.pending = self.pending.map(|at| at - keep_from);
        }
    }

    /// The last whole usage the answer carried so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

fn read_usage(after_key: &[u8]) -> UsageRead {
    let rest = after_key.trim_ascii_start();
    if rest.is_empty() {
        return UsageRead::Partial;
    }
    let Some(value) = rest.strip_prefix(b":") else {
        return UsageRead::NotUsage;
    };
    match serde_json::Deserializer::from_slice(value).into_iter::<Usage>().next() {
        Some(Ok(usage)) => UsageRead::Whole(usage),
        None => UsageRead::Partial,
        Some(Err(error)) if error.is_eof() => UsageRead::Partial,
        Some(Err(_)) => UsageRead::NotUsage,
    }
}

/// The parts of a chat completion chunk the meter reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct ChunkView {
    #[serde(default)]
    choices: Vec<ChoiceView>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChoiceView {
    delta: Option<DeltaView>,
}

#[derive(Deserialize)]
struct DeltaView {
    content: Option<String>,
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallView>,
}

#[derive(Deserialize)]
struct ToolCallView {
    function: Option<FunctionView>,
}

#[derive(Deserialize)]
struct FunctionView {
    arguments: Option<String>,
}

/// Which event stream a meter reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamKind {
    /// Chat Completions: `chat.completion.chunk` events, then `data: [DONE]`.
    #[default]
    Chat,
    /// The Responses API: typed events; `response.completed` (or `.incomplete`/`.failed`)
    /// carries the usage and ends the stream.
    Responses,
    /// A transcription: `transcript.text.delta` events, then `transcript.text.done` with the
    /// usage.
    Transcription,
    /// Speech: `speech.audio.delta` events (base64 audio), then `speech.audio.done` with the
    /// usage, whose every output token is audio.
    Speech,
    /// A speech stream the client did not ask for: its audio goes out as bytes, its events
    /// are read and dropped.
    SpeechAudio,
}

/// A Responses API event, as far as the meter reads it.
#[derive(Deserialize)]
struct ResponsesEventView {
    #[serde(rename = "type")]
    event_type: String,
    delta: Option<serde_json::Value>,
    response: Option<ResponseView>,
    /// The item of `response.output_item.done`.
    item: Option<ItemView>,
    /// `transcript.text.done`'s and `speech.audio.done`'s.
    usage: Option<Usage>,
    /// `speech.audio.delta`'s base64 audio.
    audio: Option<String>,
}

#[derive(Deserialize)]
struct ItemView {
    id: Option<serde_json::Value>,
}

/// Adds an output item's id to `ids`: once, and only while fewer than `MAX_CREATED_ITEMS` and
/// as long as an id OpenAI could have given (an id not kept can never be named).
fn add_item_id(ids: &mut Vec<String>, id: Option<&serde_json::Value>) {
    if let Some(serde_json::Value::String(id)) = id {
        if ids.len() < MAX_CREATED_ITEMS && id.len() <= MAX_RESPONSE_ID_BYTES && !ids.contains(id) {
            ids.push(id.clone());
        }
    }
}

/// A whole answer, or the `response` of a final Responses event: its usage, and its `output`
/// items (read loosely: an odd `output` must not cost the usage).
#[derive(Deserialize)]
struct ResponseView {
    /// Read loosely too: an odd `id` must not cost the usage.
    id: Option<serde_json::Value>,
    usage: Option<Usage>,
    output: Option<serde_json::Value>,
}

impl ResponseView {
    fn take_id(&mut self) -> Option<String> {
        match self.id.take() {
            Some(serde_json::Value::String(id)) => Some(id),
            _ => None,
        }
    }

    /// The ids of its `output` items, added to `ids`.
    fn item_ids(&self, ids: &mut Vec<String>) {
        let items = self.output.as_ref().and_then(serde_json::Value::as_array);
        for item in items.into_iter().flatten() {
            add_item_id(ids, item.get("id"));
        }
    }

    fn usage(self) -> Option<Usage> {
        let mut usage = self.usage?;
        usage.hosted_tool_calls = self.output.as_ref().and_then(serde_json::Value::as_array).map(|items| {
            let is_hosted_call = |item: &&serde_json::Value| {
                item.get("type")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|kind| {
                        kind.ends_with("_call") && kind != "function_call" && kind != "custom_tool_call"
                    })
            };
            items.iter().filter(is_hosted_call).count() as u64
        });
        Some(usage)
    }
}

#[derive(Debug, Default)]
pub struct SseMeter {
    kind: StreamKind,
    /// Pass on the final usage-only event (the client asked for `include_usage`).
    forward_usage_event: bool,
    /// Bytes of the event being read, as received.
    event: Vec<u8>,
    /// The line being read, without its line end.
    line: Vec<u8>,
    /// The `data:` lines of the event, joined with `\n`.
    data: Vec<u8>,
    /// The last byte was `\r`: a `\n` right after it ends no new line.
    after_cr: bool,
    /// An event ended with `\r`; it is dispatched at the next byte, which may be its `\n`.
    dispatch_pending: bool,
    pub usage: Option<Usage>,
    /// The id of the response a Responses stream created (from `response.created`, or any
    /// later event that carries the response).
    pub response_id: Option<String>,
    /// The ids of the output items it created (`response.output_item.done`, and the final
    /// event's `output`), at most `MAX_CREATED_ITEMS`.
    pub item_ids: Vec<String>,
    /// Bytes of generated text seen (content, refusals, tool arguments), for estimates.
    pub streamed_text_bytes: usize,
    /// The stream reached its proper end (`[DONE]`, or a final Responses event). A stream
    /// that stops without it was cut off.
    pub complete: bool,
    /// An event grew past `MAX_EVENT_BYTES`: the meter dropped it and reads nothing more, and
    /// the stream must end with an error.
    pub event_too_long: bool,
}

impl SseMeter {
    pub fn new(kind: StreamKind, forward_usage_event: bool) -> Self {
        SseMeter {
            kind,
            forward_usage_event,
            ..SseMeter::default()
        }
    }

    /// Reads a chunk; returns the bytes of the events it completed, to forward.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.event_too_long {
            return out;
        }
        for &byte in chunk {
            if std::mem::take(&mut self.dispatch_pending) {
                if byte == b'\n' {
                    self.event.push(byte);
                    self.after_cr = false;
                    self.dispatch(&mut out);
                    continue;
                }
                self.dispatch(&mut out);
            }
            if self.event.len() >= MAX_EVENT_BYTES {
                self.give_up();
                return out;
            }
            self.event.push(byte);
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => self.end_line(byte, &mut out),
                _ => self.line.push(byte),
            }
        }
        out
    }

    /// The stream ended. An event cut off without its blank line is completed and read, as
    /// long as its last line was whole (`data: [DONE]\n` with no final `\n`, say); a half line
    /// is dropped, never forwarded.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let ends_with_line_end = matches!(self.event.last(), Some(b'\n' | b'\r'));
        if std::mem::take(&mut self.dispatch_pending) {
            self.dispatch(&mut out);
        } else if ends_with_line_end && !self.data.is_empty() {
            self.event.extend_from_slice(b"\n");
            self.dispatch(&mut out);
        }
        self.event.clear();
        self.line.clear();
        self.data.clear();
        out
    }

    /// Drops the over-long event; nothing after it can be cut into events safely.
    fn give_up(&mut self) {
        self.event_too_long = true;
        self.dispatch_pending = false;
        self.event = Vec::new();
        self.line = Vec::new();
        self.data = Vec::new();
    }

    /// Meters a whole `stream` as if it arrived cut at `cuts` (ascending offsets; out of range
    /// ones are clamped), then ended: what it forwarded, and the meter. Property tests and
    /// fuzzing compare the splits of one stream with it.
    pub fn meter_split(kind: StreamKind, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, SseMeter) {
        let mut meter = SseMeter::new(kind, false);
        let mut forwarded = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(start, stream.len());
            forwarded.extend(meter.feed(&stream[start..cut]));
            start = cut;
        }
        forwarded.extend(meter.finish());
        (forwarded, meter)
    }

    fn end_line(&mut self, line_end: u8, out: &mut Vec<u8>) {
        if self.line.is_empty() {
            if line_end == b'\r' {
                self.dispatch_pending = true;
            } else {
                self.dispatch(out);
            }
            return;
        }
        if let Some(value) = self.line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if !self.data.is_empty() {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
        }
        // Comments (`:`), `event:`, `id:` and `retry:` lines travel with their event unread.
        self.line.clear();
    }

    /// A blank line ended an event: read it, and forward it unless it is to be dropped (or
    /// its audio, for a stream turned back into audio).
    fn dispatch(&mut self, out: &mut Vec<u8>) {
        match self.kind {
            StreamKind::SpeechAudio => out.extend(self.read_audio_event().unwrap_or_default()),
            StreamKind::Chat | StreamKind::Responses | StreamKind::Transcription | StreamKind::Speech => {
                if self.read_event() {
                    out.extend_from_slice(&self.event);
                }
            }
        }
        self.event.clear();
        self.data.clear();
    }

    /// Reads the event's data; says whether to forward it.
    fn read_event(&mut self) -> bool {
        match self.kind {
            StreamKind::Chat => self.read_chat_event(),
            StreamKind::Responses => {
                self.read_responses_event();
                true
            }
            StreamKind::Transcription | StreamKind::Speech | StreamKind::SpeechAudio => {
                self.read_audio_event();
                true
            }
        }
    }

    /// The error event that ends a failed stream; none for raw audio, which the edge breaks
    /// off instead (an event in the middle of audio bytes would only be noise).
    pub fn error_event(&self, error: &ProxyError) -> Vec<u8> {
        match self.kind {
            StreamKind::SpeechAudio => Vec::new(),
            StreamKind::Chat | StreamKind::Responses | StreamKind::Transcription | StreamKind::Speech => {
                error_event(error)
            }
        }
    }

    /// Whether the client gets raw audio rather than events.
    pub fn is_audio(&self) -> bool {
        self.kind == StreamKind::SpeechAudio
    }

    /// Reads a transcription or speech event; returns a speech delta's audio.
    fn read_audio_event(&mut self) -> Option<Vec<u8>> {
        let event = serde_json::from_slice::<ResponsesEventView>(&self.data).ok()?;
        match event.event_type.as_str() {
            "transcript.text.delta" => {
                if let Some(serde_json::Value::String(delta)) = &event.delta {
                    self.streamed_text_bytes += delta.len();
                }
            }
            "speech.audio.delta" => {
                use base64ct::Encoding;
                return base64ct::Base64::decode_vec(event.audio.as_deref().unwrap_or_default()).ok();
            }
            "transcript.text.done" | "speech.audio.done" => {
                self.complete = true;
                self.usage = event.usage.map(|mut usage| {
                    if event.event_type == "speech.audio.done" {
                        usage.audio_output_tokens = usage.completion_tokens;
                    }
                    usage
                });
            }
            _ => {}
        }
        None
    }

    fn read_responses_event(&mut self) {
        let Ok(mut event) = serde_json::from_slice::<ResponsesEventView>(&self.data) else {
            return;
        };
        if self.response_id.is_none() {
            self.response_id = event.response.as_mut().and_then(ResponseView::take_id);
        }
        if event.event_type == "response.output_item.done" {
            add_item_id(&mut self.item_ids, event.item.and_then(|item| item.id).as_ref());
        }
        if event.event_type.ends_with(".delta") {
            if let Some(serde_json::Value::String(delta)) = &event.delta {
                self.streamed_text_bytes += delta.len();
            }
        }
        if matches!(
            event.event_type.as_str(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            self.complete = true;
            if let Some(response) = &event.response {
                response.item_ids(&mut self.item_ids);
            }
            if let Some(usage) = event.response.and_then(ResponseView::usage) {
                self.usage = Some(usage);
            }
        }
    }

    fn read_chat_event(&mut self) -> bool {
        if self.data == b"[DONE]" {
            self.complete = true;
            return true;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkView>(&self.data) else {
            return true;
        };
        for delta in chunk.choices.iter().filter_map(|choice| choice.delta.as_ref()) {
            self.streamed_text_bytes += delta.content.as_ref().map_or(0, String::len);
            self.streamed_text_bytes += delta.refusal.as_ref().map_or(0, String::len);
            for call in &delta.tool_calls {
                self.streamed_text_bytes += call
                    .function
                    .as_ref()
                    .and_then(|f| f.arguments.as_ref())
                    .map_or(0, String::len);
            }
        }
        match chunk.usage {
            Some(usage) => {
                self.usage = Some(usage);
                // The usage-only event (no choices) exists because the proxy asked for it.
                self.forward_usage_event || !chunk.choices.is_empty()
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive comment\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
        "data: [DONE]\n\n",
    );
    const USAGE_EVENT: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";

    /// An Embeddings answer of `inputs` vectors, as OpenAI writes it.
    fn embeddings_answer(inputs: usize) -> Vec<u8> {
        let vector = vec![0.0123456789_f64; 1536];
        let data: Vec<_> = (0..inputs)
            .map(|index| serde_json::json!({"object": "embedding", "index": index, "embedding": vector}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "object": "list",
            "data": data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8 * inputs, "total_tokens": 8 * inputs},
        }))
        .unwrap()
    }

    #[test]
    fn an_embeddings_answer_passed_through_in_any_chunks_yields_its_usage_from_its_tail() {
        let answer = embeddings_answer(64);
        assert!(answer.len() > 1 << 20);
        let whole = read_answer(&answer).usage.unwrap();
        assert_eq!(whole.total(), 512);
        for chunk_size in [1, 7, 4096, 65_536, answer.len()] {
            let mut tail = AnswerTail::default();
            for chunk in answer.chunks(chunk_size) {
                tail.feed(chunk);
                assert!(tail.tail.len() <= 2 * ANSWER_TAIL_BYTES + chunk.len());
            }
            assert_eq!(tail.usage(), Some(whole), "chunks of {chunk_size}");
        }
    }

    #[test]
    fn an_answer_cut_off_before_its_usage_has_none() {
        let answer = embeddings_answer(4);
        let cut = answer.len() - 40; // inside the usage object
        let mut tail = AnswerTail::default();
        tail.feed(&answer[..cut]);
        assert_eq!(tail.usage(), None);
        let mut odd = AnswerTail::default();
        odd.feed(br#"{"data":[],"usage":null}"#);
        assert_eq!(odd.usage(), None);
    }

    #[test]
    fn an_image_answer_yields_its_usage_wherever_it_stands_in_any_chunks() {
        let image = "QUJD".repeat(300_000); // 1.2 MB of base64
        let usage = r#"{"input_tokens":12,"input_tokens_details":{"text_tokens":12,"image_tokens":0},"output_tokens":4160,"total_tokens":4172}"#;
        let first = format!(r#"{{"created":1,"usage":{usage},"data":[{{"b64_json":"{image}"}}]}}"#);
        let last = format!(r#"{{"created":1,"data":[{{"b64_json":"{image}"}}],"usage":{usage}}}"#);
        let stream = format!(
            "event: image_generation.partial_image\ndata: {{\"type\":\"image_generation.partial_image\",\"b64_json\":\"{image}\",\"partial_image_index\":0}}\n\nevent: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"{image}\",\"usage\":{usage}}}\n\n"
        );
        let expected = Usage {
            prompt_tokens: 12,
            completion_tokens: 4_160,
            total_tokens: 4_172,
            ..Usage::default()
        };
        for answer in [first, last, stream] {
            for chunk_size in [1, 5, 4096, 65_536] {
                let mut tail = AnswerTail::default();
                for chunk in answer.as_bytes().chunks(chunk_size) {
                    tail.feed(chunk);
                    assert!(tail.tail.len() <= 2 * ANSWER_TAIL_BYTES + chunk.len());
                }
                assert_eq!(tail.usage(), Some(expected), "chunks of {chunk_size}");
            }
        }
    }

    fn run(input: &[u8], chunks: &[usize], forward_usage: bool) -> (Vec<u8>, SseMeter) {
        run_kind(StreamKind::Chat, input, chunks, forward_usage)
    }

    fn run_kind(kind: StreamKind, input: &[u8], chunks: &[usize], forward_usage: bool) -> (Vec<u8>, SseMeter) {
        let mut meter = SseMeter::new(kind, forward_usage);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in chunks.iter().chain(std::iter::once(&input.len())) {
            out.extend(meter.feed(&input[start..end]));
            start = end;
        }
        out.extend(meter.finish());
        (out, meter)
    }

    fn check(meter: &SseMeter) {
        assert_eq!(meter.usage.map(|u| u.total()), Some(12));
        assert_eq!(meter.streamed_text_bytes, "Héllo".len() + 2);
        assert!(meter.complete);
    }

    #[test]
    fn cached_prompt_tokens_are_read_from_either_api() {
        let chat = br#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(read_answer(chat).usage.unwrap().cached_tokens, 4);
        let responses = br#"{"usage":{"input_tokens":10,"output_tokens":2,"total_tokens":12,"input_tokens_details":{"cached_tokens":6}}}"#;
        assert_eq!(read_answer(responses).usage.unwrap().cached_tokens, 6);
        let odd = br#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":null}}"#;
        assert_eq!(
            read_answer(odd).usage.unwrap().cached_tokens,
            0,
            "none reported: all at the input price"
        );
    }

    #[test]
    fn whole_stream_in_one_chunk() {
        let (out, meter) = run(STREAM.as_bytes(), &[], true);
        assert_eq!(out, STREAM.as_bytes());
        check(&meter);
    }

    #[test]
    fn split_at_every_byte_position_gives_the_same_result() {
        let input = STREAM.as_bytes();
        for split in 0..=input.len() {
            let (out, meter) = run(input, &[split], true);
            assert_eq!(out, input, "split at {split}");
            check(&meter);
        }
    }

    #[test]
    fn byte_by_byte_and_crlf_line_ends() {
        let crlf = STREAM.replace('\n', "\r\n");
        let every_byte: Vec<usize> = (1..crlf.len()).collect();
        let (out, meter) = run(crlf.as_bytes(), &every_byte, true);
        assert_eq!(out, crlf.as_bytes());
        check(&meter);
        let cr_only = STREAM.replace('\n', "\r");
        let (out, meter) = run(cr_only.as_bytes(), &every_byte[..cr_only.len() - 1], true);
        assert_eq!(out, cr_only.as_bytes());
        check(&meter);
    }

    #[test]
    fn events_are_forwarded_only_when_complete() {
        let mut meter = SseMeter::new(StreamKind::Chat, true);
        assert!(meter.feed(b"data: {\"choices\":[]").is_empty());
        assert!(meter.feed(b"}\n").is_empty());
        assert_eq!(meter.feed(b"\ndata: [DO"), b"data: {\"choices\":[]}\n\n");
    }

    #[test]
    fn the_usage_event_is_dropped_unless_asked_for() {
        let (out, meter) = run(STREAM.as_bytes(), &[17, 200], false);
        assert_eq!(String::from_utf8(out).unwrap(), STREAM.replace(USAGE_EVENT, ""));
        check(&meter);
    }

    #[test]
    fn a_missing_final_blank_line_still_counts_but_half_lines_are_dropped() {
        let unterminated = STREAM.trim_end_matches('\n').to_owned() + "\n";
        let (out, meter) = run(unterminated.as_bytes(), &[], true);
        assert_eq!(out, STREAM.as_bytes());
        check(&meter);
        let cut = &STREAM.as_bytes()[..STREAM.find("Héllo").unwrap()];
        let (out, meter) = run(cut, &[], true);
        assert!(out.ends_with(b"\n\n"), "only whole events are forwarded");
        assert!(!String::from_utf8_lossy(&out).contains("delta\":{\"content\":\"H"));
        assert!(meter.usage.is_none() && !meter.complete);
    }

    #[test]
    fn error_events_are_whole_sse_events_with_openai_errors() {
        let event = error_event(&ProxyError::UpstreamTimeout);
        let mut meter = SseMeter::new(StreamKind::Chat, false);
        assert_eq!(meter.feed(&event), event, "a complete event");
        let text = String::from_utf8(event).unwrap();
        let json: serde_json::Value = serde_json::from_str(text.trim_start_matches("data: ").trim_end()).unwrap();
        assert_eq!(json["error"]["code"], "upstream_timeout");
    }

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi \"}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"there\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":2,\"total_tokens\":9}}}\n\n",
    );

    #[test]
    fn responses_streams_are_metered_from_their_completed_event() {
        let input = RESPONSES_STREAM.as_bytes();
        for split in 0..=input.len() {
            let (out, meter) = run_kind(StreamKind::Responses, input, &[split], false);
            assert_eq!(out, input, "split at {split}: every event is forwarded");
            assert_eq!(meter.usage.map(|u| u.total()), Some(9));
            assert_eq!(meter.streamed_text_bytes, "Hi there".len());
            assert!(meter.complete);
            assert_eq!(meter.response_id.as_deref(), Some("resp_1"), "split at {split}");
        }
        let cut = &RESPONSES_STREAM[..RESPONSES_STREAM.find("event: response.completed").unwrap()];
        let (_, meter) = run_kind(StreamKind::Responses, cut.as_bytes(), &[], false);
        assert!(!meter.complete && meter.usage.is_none());
        assert_eq!(
            meter.response_id.as_deref(),
            Some("resp_1"),
            "a cut stream still created its response"
        );
    }

    #[test]
    fn the_created_response_s_id_is_read_from_the_first_event_that_carries_one() {
        let late = concat!(
            "data: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_2\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n",
        );
        let (_, meter) = run_kind(StreamKind::Responses, late.as_bytes(), &[], false);
        assert_eq!(meter.response_id.as_deref(), Some("resp_2"));
        let (_, chat) = run(STREAM.as_bytes(), &[], false);
        assert_eq!(chat.response_id, None, "chat chunks create no stored response");
    }

    #[test]
    fn the_ids_of_a_response_s_output_items_are_read_once_each_and_bounded() {
        let stream = concat!(
            "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\"}}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_3\",\"output\":[{\"id\":\"rs_1\"},{\"id\":\"msg_1\"},{\"id\":7}],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n",
        );
        let (_, meter) = run_kind(StreamKind::Responses, stream.as_bytes(), &[], false);
        assert_eq!(meter.item_ids, ["rs_1", "msg_1"]);
        let mut output = vec![serde_json::json!({"id": "m".repeat(MAX_RESPONSE_ID_BYTES + 1)})];
        output.extend((0..100).map(|n| serde_json::json!({"id": format!("msg_{n}")})));
        let whole = serde_json::json!({"id": "resp_4", "output": output});
        let answer = read_answer(whole.to_string().as_bytes());
        assert_eq!(answer.items.len(), MAX_CREATED_ITEMS);
        assert_eq!(
            (answer.items[0].as_str(), answer.id.as_deref()),
            ("msg_0", Some("resp_4"))
        );
    }

    #[test]
    fn usage_of_a_whole_answer() {
        let answer = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(read_answer(answer).usage.map(|u| u.total()), Some(7));
        let response = br#"{"object":"response","usage":{"input_tokens":5,"output_tokens":4,"total_tokens":9}}"#;
        assert_eq!(read_answer(response).usage.map(|u| u.total()), Some(9));
        assert_eq!(read_answer(b"{}").usage, None);
        assert_eq!(read_answer(b"not json").usage, None);
        let answer = read_answer(
            br#"{"id":"resp_9","object":"response","usage":{"input_tokens":5,"output_tokens":4,"total_tokens":9}}"#,
        );
        assert_eq!(
            (answer.id.as_deref(), answer.usage.map(|u| u.total())),
            (Some("resp_9"), Some(9))
        );
        let odd = read_answer(br#"{"id":7,"usage":{"input_tokens":5,"output_tokens":4,"total_tokens":9}}"#);
        assert_eq!(
            (odd.id, odd.usage.map(|u| u.total())),
            (None, Some(9)),
            "an odd id does not cost the usage"
        );
    }

    #[test]
    fn hosted_tool_calls_in_an_answer_are_counted_for_their_fees() {
        let response = br#"{"object":"response","output":[{"type":"web_search_call","id":"ws_1"},
            {"type":"function_call","name":"f"},{"type":"message","content":[]},{"type":"file_search_call"}],
            "usage":{"input_tokens":5,"output_tokens":4,"total_tokens":9}}"#;
        assert_eq!(read_answer(response).usage.unwrap().hosted_tool_calls, Some(2));
        let chat = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(
            read_answer(chat).usage.unwrap().hosted_tool_calls,
            None,
            "no output: unknown"
        );
        let odd = br#"{"output":"what","usage":{"input_tokens":5,"output_tokens":4,"total_tokens":9}}"#;
        assert_eq!(
            read_answer(odd).usage.map(|u| u.total()),
            Some(9),
            "an odd output does not cost the usage"
        );
        let event = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"web_search_call\"}],\"usage\":{\"input_tokens\":7,\"output_tokens\":2,\"total_tokens\":9}}}\n\n";
        let (_, meter) = run_kind(StreamKind::Responses, event.as_bytes(), &[], false);
        assert_eq!(meter.usage.unwrap().hosted_tool_calls, Some(1));
    }

    #[test]
    fn an_event_longer_than_the_cap_ends_the_stream_instead_of_filling_memory() {
        let mut meter = SseMeter::new(StreamKind::Chat, true);
        let first = "data: {\"choices\":[]}\n\n";
        assert_eq!(meter.feed(first.as_bytes()), first.as_bytes());
        let endless_line = vec![b'x'; 64 * 1024];
        let mut forwarded = Vec::new();
        for _ in 0..(MAX_EVENT_BYTES / endless_line.len() + 2) {
            forwarded.extend(meter.feed(&endless_line));
        }
        assert!(meter.event_too_long, "the over-long event is reported");
        assert!(forwarded.is_empty(), "no part of it is forwarded");
        assert!(meter.event.capacity() + meter.line.capacity() + meter.data.capacity() < 1024);
        assert!(
            meter.feed(b"\n\ndata: [DONE]\n\n").is_empty(),
            "nothing after it is read"
        );
        assert!(meter.finish().is_empty() && !meter.complete);
    }

    #[test]
    fn an_event_of_exactly_the_cap_passes() {
        let prefix = "data: \"";
        let filler = MAX_EVENT_BYTES - prefix.len() - "\"\n\n".len();
        let event = format!("{prefix}{}\"\n\n", "y".repeat(filler));
        assert_eq!(event.len(), MAX_EVENT_BYTES);
        let (out, meter) = run(event.as_bytes(), &[1000], false);
        assert_eq!(out, event.as_bytes());
        assert!(!meter.event_too_long);
    }

    #[test]
    fn multi_line_data_and_unparsable_events_pass_through() {
        let odd = "event: ping\ndata: {\"a\":\ndata: 1}\n\ndata: not json\n\n";
        let (out, meter) = run(odd.as_bytes(), &[3], false);
        assert_eq!(out, odd.as_bytes());
        assert_eq!((meter.usage, meter.streamed_text_bytes), (None, 0));
    }

    #[test]
    fn a_transcription_stream_passes_whole_and_its_done_event_carries_the_usage() {
        let stream = concat!(
            "data: {\"type\":\"transcript.text.delta\",\"delta\":\"Hello \"}\n\n",
            "data: {\"type\":\"transcript.text.done\",\"text\":\"Hello\",\"usage\":{\"type\":\"tokens\",",
            "\"input_tokens\":14,\"input_token_details\":{\"text_tokens\":0,\"audio_tokens\":14},",
            "\"output_tokens\":45,\"total_tokens\":59}}\n\n",
        );
        let (forwarded, meter) = SseMeter::meter_split(StreamKind::Transcription, stream.as_bytes(), &[17, 90]);
        assert_eq!(forwarded, stream.as_bytes());
        assert!(meter.complete);
        assert_eq!(meter.streamed_text_bytes, 6);
        let usage = meter.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.audio_input_tokens, usage.completion_tokens),
            (14, 14, 45)
        );
    }

    #[test]
    fn a_speech_stream_turned_back_into_audio_gives_its_bytes_and_no_event() {
        let stream = concat!(
            "data: {\"type\":\"speech.audio.delta\",\"audio\":\"AAEC\"}\n\n",
            "data: {\"type\":\"speech.audio.delta\",\"audio\":\"AwQF\"}\n\n",
            "data: {\"type\":\"speech.audio.done\",\"usage\":{\"input_tokens\":14,\"output_tokens\":101,\"total_tokens\":115}}\n\n",
        );
        for cuts in [vec![], vec![5, 40, 41, 100]] {
            let (audio, meter) = SseMeter::meter_split(StreamKind::SpeechAudio, stream.as_bytes(), &cuts);
            assert_eq!(audio, [0, 1, 2, 3, 4, 5]);
            assert!(meter.complete && meter.is_audio());
            let usage = meter.usage.unwrap();
            assert_eq!(
                (usage.completion_tokens, usage.audio_output_tokens),
                (101, 101),
                "every output token is audio"
            );
            assert!(
                meter.error_event(&ProxyError::UpstreamTimeout).is_empty(),
                "no event inside audio"
            );
        }
        let (events, meter) = SseMeter::meter_split(StreamKind::Speech, stream.as_bytes(), &[]);
        assert_eq!(events, stream.as_bytes(), "a client that asked for events gets them");
        assert_eq!(meter.usage.unwrap().audio_output_tokens, 101);
    }
}
