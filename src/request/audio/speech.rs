//! `POST /v1/audio/speech`: text in, audio out, reserved from the text.
//!
//! Models priced per character (tts-1, tts-1-hd) cost exactly their input's characters,
//! known before the call: the answer passes through as it comes and is charged that. Models
//! priced per token (gpt-4o-mini-tts) report their usage only in a stream's
//! `speech.audio.done`, so the proxy always asks them for `stream_format: "sse"`; a client
//! that asked for the audio itself gets the stream's audio turned back into bytes as it comes
//! (`sse::StreamKind::SpeechAudio`), and is charged the usage, not the reservation.

use serde_json::{json, Map, Value};

use super::{refuse, MAX_SPEECH_INPUT_CHARS, SPEECH_AUDIO_TOKENS_PER_BYTE};
use crate::budget::prices::per_million;
use crate::error::ProxyError;
use crate::request::forwarding::UpstreamEndpoint;
use crate::request::{check_model_in, parse_object, ApiRequest, Rules};

const FIELDS: [&str; 7] = [
    "model",
    "input",
    "voice",
    "instructions",
    "response_format",
    "speed",
    "stream_format",
];

/// `response_format`s and the media type of their bytes.
const FORMATS: [(&str, &str); 6] = [
    ("mp3", "audio/mpeg"),
    ("opus", "audio/ogg"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/pcm"),
];

pub fn speech(bytes: &[u8], rules: Rules) -> Result<ApiRequest, ProxyError> {
    let mut body = parse_object(bytes)?;
    if let Some(unknown) = body.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(refuse(unknown, "is not accepted by this proxy."));
    }
    let model = check_model_in(&body, |model| rules.plan.audio.speech_models.iter().any(|m| m == model))?;
    let text = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(refuse(name, "must be a string.")),
    };
    let input = text("input")?;
    let chars = input.chars().count();
    if input.trim().is_empty() || chars > MAX_SPEECH_INPUT_CHARS {
        return Err(refuse("input", "must hold 1 to 4096 characters."));
    }
    let prompt_chars = chars + text("instructions")?.chars().count();
    if prompt_chars > rules.plan.request_limits.max_prompt_chars {
        let limit = rules.plan.request_limits.max_prompt_chars;
        return Err(refuse(
            "input",
            &format!("and `instructions` hold more than {limit} characters."),
        ));
    }
    let input_bytes = input.len() as u64;
    check_voice(&body)?;
    let media_type = match text("response_format")? {
        "" => "audio/mpeg",
        format => FORMATS
            .iter()
            .find(|(name, _)| *name == format)
            .map(|(_, media_type)| *media_type)
            .ok_or_else(|| refuse("response_format", "must be mp3, opus, aac, flac, wav or pcm."))?,
    };
    let client_wants_sse = match text("stream_format")? {
        "" | "audio" => false,
        "sse" => true,
        _ => return Err(refuse("stream_format", "must be sse or audio.")),
    };
    let slowdown = slowdown(&body)?;
    let price = rules.settings.prices.of(&model);
    if let Some(per_character) = price.and_then(|price| price.per_million_characters) {
        let mut request = ApiRequest::audio(
            UpstreamEndpoint::AudioSpeech,
            model,
            client_wants_sse,
            Value::Object(body).to_string(),
            price,
        );
        request.reserve_tokens = chars as u64;
        request.reserve_nano_usd = per_million(chars as u64, per_character);
        request.prompt_chars = prompt_chars;
        request.charged_as_reserved = true;
        return Ok(request);
    }
    body.insert("stream_format".into(), json!("sse"));
    let upstream_body = Value::Object(body).to_string();
    let text_tokens = upstream_body.len() as u64;
    let audio_tokens = input_bytes * SPEECH_AUDIO_TOKENS_PER_BYTE * slowdown;
    let mut request = ApiRequest::audio(UpstreamEndpoint::AudioSpeech, model, true, upstream_body, price);
    request.reserve_tokens = text_tokens + audio_tokens;
    request.reserve_nano_usd = price.map_or(0, |price| {
        per_million(text_tokens, price.input.max(price.cached_input))
            .saturating_add(per_million(audio_tokens, price.audio_output.unwrap_or(price.output)))
    });
    request.prompt_chars = prompt_chars;
    request.audio_out = (!client_wants_sse).then_some(media_type);
    Ok(request)
}

/// `voice`: a built-in voice's name or a custom voice `{"id": "voice_…"}`.
fn check_voice(body: &Map<String, Value>) -> Result<(), ProxyError> {
    let is_id = |voice: &Map<String, Value>| voice.len() == 1 && voice.get("id").is_some_and(Value::is_string);
    match body.get("voice") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Object(voice)) if is_id(voice) => Ok(()),
        _ => Err(refuse("voice", "must be a voice's name or {\"id\": …}.")),
    }
}

/// How many times longer than at speed 1 the audio may be: `speed` is 0.25 to 4 (OpenAI's
/// range), and only a speed below 1 lengthens it.
fn slowdown(body: &Map<String, Value>) -> Result<u64, ProxyError> {
    let speed = match body.get("speed") {
        None | Some(Value::Null) => 1.0,
        Some(value) => value
            .as_f64()
            .filter(|speed| (0.25..=4.0).contains(speed))
            .ok_or_else(|| refuse("speed", "must be a number from 0.25 to 4."))?,
    };
    Ok((1.0 / speed.min(1.0)).ceil() as u64)
}
