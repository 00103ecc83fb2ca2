//! What upstream reports a request used, as OpenAI's answers and stream events state it.

use serde::Deserialize;

/// Token counts as OpenAI reports them (Chat Completions names; the Responses API's
/// `input_tokens`/`output_tokens` are read into the same fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens served from OpenAI's prompt cache, billed at the cached-input price
    /// (`prompt_tokens_details.cached_tokens`; Responses: `input_tokens_details`).
    #[serde(
        default,
        rename = "prompt_tokens_details",
        alias = "input_tokens_details",
        deserialize_with = "cached_tokens"
    )]
    pub cached_tokens: u64,
    /// Hosted tool calls the answer lists (Responses `output` items such as `web_search_call`),
    /// whose fees `usage` leaves out; `None` when the answer has no `output` (Chat Completions).
    #[serde(skip)]
    pub hosted_tool_calls: Option<u64>,
    /// Input tokens that were audio (transcription: `input_token_details.audio_tokens`).
    #[serde(default, rename = "input_token_details", deserialize_with = "audio_tokens")]
    pub audio_input_tokens: u64,
    /// Output tokens that were audio: a speech stream's every output token (its meter sets it).
    #[serde(skip)]
    pub audio_output_tokens: u64,
    /// Audio billed by duration (`{"type": "duration", "seconds": …}`), in milliseconds.
    #[serde(default, rename = "seconds", deserialize_with = "millis")]
    pub duration_millis: Option<u64>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.total_tokens
            .max(self.prompt_tokens.saturating_add(self.completion_tokens))
    }
}

/// `cached_tokens` of a details object; a missing or odd one is no cached tokens (charged at
/// the full input price).
fn cached_tokens<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let details = serde_json::Value::deserialize(deserializer)?;
    Ok(details
        .get("cached_tokens")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0))
}

/// `audio_tokens` of a details object; missing is none (the tokens are charged as text).
fn audio_tokens<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let details = serde_json::Value::deserialize(deserializer)?;
    Ok(details
        .get("audio_tokens")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0))
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
