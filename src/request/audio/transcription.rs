//! `POST /v1/audio/transcriptions`: the form checked field by field and rebuilt for upstream
//! around the client's file, reserved from the audio's duration bound.

use super::duration::bound_millis;
use super::multipart::{self, Field};
use super::{invalid, refuse, AUDIO_TOKENS_PER_SECOND, TRANSCRIPT_MAX_OUTPUT_TOKENS};
use crate::budget::prices::{per_million, per_minute};
use crate::error::ProxyError;
use crate::request::forwarding::UpstreamEndpoint;
use crate::request::{ApiRequest, Attachment, Rules};

/// File extensions OpenAI reads (its API reference: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav,
/// webm); it tells the format by the name, so the proxy keeps the extension.
const EXTENSIONS: [&str; 9] = ["flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"];

/// The form's fields as the proxy accepts them.
#[derive(Default)]
struct Checked<'a> {
    model: Option<String>,
    stream: Option<bool>,
    /// Fields sent on unchanged, in order (name, value).
    text: Vec<(&'a str, &'a str)>,
    /// Bytes and characters of the fields the model reads as text.
    text_bytes: u64,
    text_chars: usize,
    file: Option<Field<'a>>,
}

pub fn transcription(bytes: &[u8], rules: Rules) -> Result<ApiRequest, ProxyError> {
    let form = multipart::parse(bytes)?;
    let mut checked = Checked::default();
    for field in form.fields {
        check_field(&mut checked, field, bytes)?;
    }
    let model = checked.model.take().ok_or_else(|| refuse("model", "is required."))?;
    if !rules.plan.audio.transcribe_models.contains(&model) {
        return Err(ProxyError::ModelNotAllowed { model });
    }
    if checked.text_chars > rules.plan.request_limits.max_prompt_chars {
        let limit = rules.plan.request_limits.max_prompt_chars;
        return Err(invalid(
            format!("The prompt is longer than {limit} characters."),
            "prompt",
        ));
    }
    let file = checked.file.take().ok_or_else(|| refuse("file", "is required."))?;
    let millis = bound_millis(&bytes[file.value.clone()]);
    let max_seconds = rules.plan.audio.max_audio_seconds;
    if millis > max_seconds * 1000 {
        return Err(invalid(
            format!(
                "The audio may be longer than {max_seconds} seconds (by its WAV header, or by its size at 6 kbit/s)."
            ),
            "file",
        ));
    }
    // whisper-1 ignores `stream` and answers whole (OpenAI's API reference).
    let stream = checked.stream.unwrap_or(false) && model != "whisper-1";
    let mut head = String::new();
    let boundary = form.boundary;
    let mut part = |name: &str, value: &str| {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    };
    part("model", &model);
    if stream {
        part("stream", "true");
    }
    for (name, value) in &checked.text {
        part(name, value);
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.{}\"\r\nContent-Type: {}\r\n\r\n",
        extension(&file)?,
        content_type(&file)
    ));
    let audio_tokens = millis.div_ceil(1000) * AUDIO_TOKENS_PER_SECOND;
    let price = rules.settings.prices.of(&model);
    Ok(ApiRequest {
        reserve_tokens: checked.text_bytes + audio_tokens + TRANSCRIPT_MAX_OUTPUT_TOKENS,
        reserve_nano_usd: price.map_or(0, |price| {
            let text_input = price.input.max(price.cached_input);
            per_million(checked.text_bytes, text_input)
                .saturating_add(per_million(audio_tokens, price.audio_input.unwrap_or(text_input)))
                .saturating_add(per_million(TRANSCRIPT_MAX_OUTPUT_TOKENS, price.output))
                .saturating_add(price.per_minute.map_or(0, |per| per_minute(millis, per)))
        }),
        prompt_chars: checked.text_chars,
        attachment: Some(Box::new(Attachment {
            file: file.value,
            tail: format!("\r\n--{boundary}--\r\n"),
            boundary: boundary.to_owned(),
        })),
        ..ApiRequest::audio(UpstreamEndpoint::AudioTranscriptions, model, stream, head, price)
    })
}

/// One field: where it goes, and what it adds to the text the model reads.
fn check_field<'a>(checked: &mut Checked<'a>, field: Field<'a>, body: &'a [u8]) -> Result<(), ProxyError> {
    let name = field.name;
    if name == "file" {
        if checked.file.replace(field).is_some() {
            return Err(refuse("file", "is given twice."));
        }
        return Ok(());
    }
    let value = std::str::from_utf8(&body[field.value.clone()]).map_err(|_| refuse(name, "must be UTF-8 text."))?;
    let list = name.strip_suffix("[]").unwrap_or(name);
    let once = |seen: bool| {
        if seen {
            Err(refuse(name, "is given twice."))
        } else {
            Ok(())
        }
    };
    let one_of = |allowed: &[&str]| {
        if allowed.contains(&value) {
            Ok(())
        } else {
            Err(refuse(name, "has a value this proxy does not accept."))
        }
    };
    match list {
        "model" => {
            once(checked.model.is_some())?;
            checked.model = Some(value.to_owned());
            return Ok(());
        }
        "stream" => {
            once(checked.stream.is_some())?;
            checked.stream = Some(match value {
                "true" => true,
                "false" => false,
                _ => return Err(refuse(name, "must be true or false.")),
            });
            return Ok(());
        }
        "prompt" | "language" | "keywords" | "languages" => {
            checked.text_bytes += value.len() as u64;
            checked.text_chars += value.chars().count();
        }
        "response_format" => one_of(&["json", "text", "srt", "verbose_json", "vtt", "diarized_json"])?,
        "timestamp_granularities" => one_of(&["word", "segment"])?,
        "include" => one_of(&["logprobs"])?,
        "temperature" => {
            if !is_unit_interval(value) {
                return Err(refuse(name, "must be a number from 0 to 1."));
            }
        }
        _ if list.starts_with("chunking_strategy")
            && value.len() <= 64
            && list.bytes().all(|b| b.is_ascii_alphanumeric() || b"_[]".contains(&b)) => {}
        // Among them `known_speaker_references`: more audio, which nothing here bounds.
        _ => return Err(refuse(name, "is not accepted by this proxy.")),
    }
    let repeatable = list != name || matches!(list, "keywords" | "languages");
    if !repeatable && checked.text.iter().any(|(seen, _)| *seen == name) {
        return Err(refuse(name, "is given twice."));
    }
    checked.text.push((name, value));
    Ok(())
}

/// `0`, `1`, `0.25`, `1.0`: a decimal from 0 to 1, read as text (a float parser would cost the
/// wasm more than this field is worth).
fn is_unit_interval(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = fraction.bytes().all(|b| b.is_ascii_digit()) && !(value.ends_with('.'));
    digits && (whole == "0" || (whole == "1" && fraction.bytes().all(|b| b == b'0')))
}

/// The file's extension, one OpenAI reads.
fn extension(file: &Field) -> Result<&'static str, ProxyError> {
    let name = file.filename.unwrap_or("");
    let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    EXTENSIONS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(ext))
        .ok_or_else(|| {
            invalid(
                format!("The file's name must end in one of .{}.", EXTENSIONS.join(", .")),
                "file",
            )
        })
}

/// The file's media type when it is a plain `type/subtype`; else `application/octet-stream`
/// (the extension says the format). Never a value that could end the header line.
fn content_type(file: &Field) -> &'static str {
    let given = file.content_type.unwrap_or("");
    const KNOWN: [&str; 10] = [
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/webm",
        "audio/flac",
        "audio/m4a",
        "video/webm",
    ];
    KNOWN
        .into_iter()
        .find(|known| {
            given
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(known))
        })
        .unwrap_or("application/octet-stream")
}
