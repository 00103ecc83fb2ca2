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
