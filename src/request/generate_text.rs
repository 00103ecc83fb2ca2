//! `POST /api/generate-text`: the simple form for apps that want one answer as text.

use serde_json::{json, Value};

use super::chat::checked;
use super::{parse_object, ApiRequest, Rules};
use crate::error::ProxyError;

/// `POST /api/generate-text` `{"userPrompt": "..."}`: the simple form, turned into a chat
/// request with the operator's system prompt and the default model. HTML tags are stripped
/// from the prompt (a convenience for apps that send markup, not a security boundary).
pub(super) fn generate_text(bytes: &[u8], rules: Rules, sub: &str) -> Result<ApiRequest, ProxyError> {
    let Rules { settings, plan } = rules;
    let body = parse_object(bytes)?;
    let prompt = match body.get("userPrompt") {
        Some(Value::String(prompt)) => strip_html_tags(prompt),
        Some(_) => {
            return Err(ProxyError::invalid_request(
                "`userPrompt` must be a string.",
                Some("userPrompt"),
            ))
        }
        None => {
            return Err(ProxyError::invalid_request(
                "`userPrompt` is required.",
                Some("userPrompt"),
            ))
        }
    };
    if prompt.trim().is_empty() {
        return Err(ProxyError::invalid_request(
            "`userPrompt` is empty.",
            Some("userPrompt"),
        ));
    }
    if prompt.chars().count() > plan.request_limits.max_prompt_chars {
        return Err(ProxyError::invalid_request(
            format!(
                "`userPrompt` is longer than {} characters.",
                plan.request_limits.max_prompt_chars
            ),
            Some("userPrompt"),
        ));
    }
    let chat = json!({
        "model": plan.default_model(),
        "messages": [
            { "role": "system", "content": settings.system_prompt },
            { "role": "user", "content": prompt },
        ],
    });
    let Value::Object(body) = chat else {
        unreachable!("json! object literal")
    };
    checked(body, rules, sub)
}

/// Removes `<tag ...>` sequences (a `<` followed by a letter, `/` or `!`); a lone `<` stays.
pub fn strip_html_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let starts_tag = c == '<'
            && chars
                .peek()
                .is_some_and(|next| next.is_ascii_alphabetic() || matches!(next, '/' | '!'));
        if starts_tag {
            for inside in chars.by_ref() {
                if inside == '>' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `{"result": "..."}` from a non-stream chat completion answer.
pub fn generate_text_result(upstream_body: &[u8]) -> Result<String, ProxyError> {
    let answer: Value = serde_json::from_slice(upstream_body).map_err(|e| ProxyError::UpstreamFailed {
        detail: format!("upstream chat completion is not JSON: {e}"),
    })?;
    let text = answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::UpstreamFailed {
            detail: "upstream chat completion has no choices[0].message.content".into(),
        })?;
    Ok(json!({ "result": text }).to_string())
}
