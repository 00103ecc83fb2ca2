//! What upstream reports a request used, as OpenAI's answers and stream events state it.

use serde::Deserialize;

/// Token counts as OpenAI reports them (Chat Completions names; the Responses and Images
/// APIs' `input_tokens`/`output_tokens` are read into the same fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "UsageReport")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens served from OpenAI's prompt cache, billed at the cached-input price
    /// (`prompt_tokens_details.cached_tokens`; Responses: `input_tokens_details`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the cache (`cache_write_tokens`), billed at the cache-write
    /// price on models that have one.
    pub cache_write_tokens: u64,
    /// Image tokens of the prompt (`image_tokens`), billed at an image model's image price.
    pub image_input_tokens: u64,
    /// Image tokens of the output (`output_tokens_details.image_tokens`), when the report
    /// splits its output by kind.
    pub image_output_tokens: Option<u64>,
    /// Hosted tool calls the answer lists (Responses `output` items such as `web_search_call`),
    /// whose fees `usage` leaves out; `None` when the answer has no `output` (Chat Completions).
    pub hosted_tool_calls: Option<u64>,
    /// Prompt tokens that were audio (transcription: `input_token_details.audio_tokens`).
    pub audio_input_tokens: u64,
    /// Output tokens that were audio: a speech stream's every output token (its meter sets it).
    pub audio_output_tokens: u64,
    /// Audio billed by duration (`{"type": "duration", "seconds": …}`), in milliseconds.
    pub duration_millis: Option<u64>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.total_tokens
            .max(self.prompt_tokens.saturating_add(self.completion_tokens))
    }
}

/// A `usage` object as it arrives.
#[derive(Deserialize)]
struct UsageReport {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default, alias = "input_tokens_details", deserialize_with = "details")]
    prompt_tokens_details: Details,
    #[serde(default, alias = "output_tokens_details", deserialize_with = "details")]
    completion_tokens_details: Details,
    /// A transcription's (singular `input_token_details`, unlike the Responses API's).
    #[serde(default, deserialize_with = "details")]
    input_token_details: Details,
    #[serde(default, deserialize_with = "millis")]
    seconds: Option<u64>,
}

#[derive(Default)]
struct Details {
    cached_tokens: u64,
    cache_write_tokens: u64,
    image_tokens: Option<u64>,
    audio_tokens: u64,
}

/// A details object, read loosely: a missing or odd count is none (its tokens charged at the
/// full input or output price).
fn details<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Details, D::Error> {
    let details = serde_json::Value::deserialize(deserializer)?;
    let count = |name: &str| details.get(name).and_then(serde_json::Value::as_u64);
    Ok(Details {
        cached_tokens: count("cached_tokens").unwrap_or(0),
        cache_write_tokens: count("cache_write_tokens").unwrap_or(0),
        image_tokens: count("image_tokens"),
        audio_tokens: count("audio_tokens").unwrap_or(0),
    })
}

/// Seconds (a whole or decimal number) as milliseconds, rounded up; an odd value is a whole
/// day, far above any audio the proxy admits, so it is never charged as nothing.
fn millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    const ODD: u64 = 86_400_000;
    let seconds = serde_json::Value::deserialize(deserializer)?;
    let millis = match seconds.as_u64() {
        Some(whole) => whole.saturating_mul(1000),
        None => seconds
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
            .map_or(ODD, |s| (s * 1000.0).ceil() as u64),
    };
    Ok(Some(millis))
}

impl From<UsageReport> for Usage {
    fn from(report: UsageReport) -> Usage {
        Usage {
            prompt_tokens: report.prompt_tokens,
            completion_tokens: report.completion_tokens,
            total_tokens: report.total_tokens,
            cached_tokens: report.prompt_tokens_details.cached_tokens,
            cache_write_tokens: report.prompt_tokens_details.cache_write_tokens,
            image_input_tokens: report.prompt_tokens_details.image_tokens.unwrap_or(0),
            image_output_tokens: report.completion_tokens_details.image_tokens,
            hosted_tool_calls: None,
            audio_input_tokens: report.input_token_details.audio_tokens,
            audio_output_tokens: 0,
            duration_millis: report.seconds,
        }
    }
}
