//! `POST /v1/embeddings`: inputs bounded like a prompt, reserved at their bytes.

use serde_json::Value;

use super::billable::attribute;
use super::forwarding::UpstreamEndpoint;
use super::prompt::PromptMeter;
use super::{check_model, finish, parse_object, require_content, ApiRequest, Draft, Rules};
use crate::budget::cost::Cost;
use crate::error::ProxyError;

/// `POST /v1/embeddings`: `input` (a string, strings, or token arrays) is bounded like a
/// prompt; the cost is the input, so the reservation is the body's bytes.
pub(super) fn embeddings(bytes: &[u8], rules: Rules, sub: &str) -> Result<ApiRequest, ProxyError> {
    let Rules { settings, plan } = rules;
    let mut body = parse_object(bytes)?;
    let model = check_model(&body, plan)?;
    let invalid = || {
        ProxyError::invalid_request(
            "`input` must be a string, an array of strings, or token arrays.",
            Some("input"),
        )
    };
    let mut meter = PromptMeter::new(plan.request_limits.max_prompt_chars, 0);
    match body.get("input") {
        Some(Value::String(text)) => meter.at("input", |meter| meter.text(text))?,
        Some(Value::Array(items)) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                meter.at(&format!("input[{index}]"), |meter| match item {
                    Value::String(text) => meter.text(text),
                    Value::Number(_) => meter.tokens(1),
                    Value::Array(tokens) if tokens.iter().all(Value::is_number) => meter.tokens(tokens.len()),
                    Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(invalid()),
                })?;
            }
        }
        _ => return Err(invalid()),
    }
    require_content(&meter, "input")?;
    attribute(&mut body, settings.safety_key()?, sub, UpstreamEndpoint::Embeddings)?;
    let price = settings.prices.of(&model);
    Ok(finish(
        body,
        Draft {
            endpoint: UpstreamEndpoint::Embeddings,
            model,
            stream: false,
            client_wants_usage: false,
            cost: Cost::default(),
            prompt_chars: meter.chars,
            continues: None,
            references: vec![],
            records_response: false,
            price,
        },
    ))
}
