//! Request policy: what a client may ask for, checked before any Durable Object or upstream call.
//!
//! The body is parsed once; the proxy forwards the JSON it validated, re-serialised, never the
//! client's bytes (so a duplicate key cannot mean one thing here and another upstream).
//! Fields the proxy does not know pass through untouched, so new OpenAI parameters keep working.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::ProxyError;

const VALID_ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// A validated `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
}

impl ChatRequest {
    /// The JSON to send upstream.
    pub fn upstream_body(&self) -> String {
        Value::Object(self.body.clone()).to_string()
    }
}

/// Parses and checks a chat completion request.
pub fn parse_chat_request(bytes: &[u8], config: &Config) -> Result<ChatRequest, ProxyError> {
    let body = parse_object(bytes)?;
    let model = match body.get("model") {
        Some(Value::String(model)) => model.clone(),
        Some(_) => return Err(ProxyError::invalid_request("`model` must be a string.", Some("model"))),
        None => return Err(ProxyError::invalid_request("`model` is required.", Some("model"))),
    };
    if !config.is_model_allowed(&model) {
        return Err(ProxyError::ModelNotAllowed { model });
    }
    check_messages(body.get("messages"))?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(ProxyError::invalid_request("`stream` must be a boolean.", Some("stream"))),
    };
    Ok(ChatRequest { body, model, stream })
}

/// `POST /api/generate-text` `{"userPrompt": "..."}`: the simple form, turned into a chat
/// request with the operator's system prompt and the default model.
pub fn parse_generate_text(bytes: &[u8], config: &Config) -> Result<ChatRequest, ProxyError> {
    let body = parse_object(bytes)?;
    let prompt = match body.get("userPrompt") {
        Some(Value::String(prompt)) if !prompt.trim().is_empty() => prompt,
        Some(Value::String(_)) => {
            return Err(ProxyError::invalid_request("`userPrompt` is empty.", Some("userPrompt")))
        }
        Some(_) => {
            return Err(ProxyError::invalid_request("`userPrompt` must be a string.", Some("userPrompt")))
        }
        None => return Err(ProxyError::invalid_request("`userPrompt` is required.", Some("userPrompt"))),
    };
    let model = config.default_model().to_owned();
    let chat = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": config.system_prompt },
            { "role": "user", "content": prompt },
        ],
    });
    let Value::Object(body) = chat else { unreachable!("json! object literal") };
    Ok(ChatRequest { body, model, stream: false })
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

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(ProxyError::invalid_request("The request body must be a JSON object.", None)),
        Err(_) => Err(ProxyError::invalid_request("The request body is not valid JSON.", None)),
    }
}

fn check_messages(messages: Option<&Value>) -> Result<(), ProxyError> {
    let messages = match messages {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(_) => {
            return Err(ProxyError::invalid_request("`messages` must be a non-empty array.", Some("messages")))
        }
        None => return Err(ProxyError::invalid_request("`messages` is required.", Some("messages"))),
    };
    for (index, message) in messages.iter().enumerate() {
        let field = |name: &str| format!("messages[{index}]{name}");
        let invalid = |name: &str, why: &str| {
            let param = field(name);
            ProxyError::invalid_request(format!("`{param}` {why}"), Some(&param))
        };
        let Value::Object(message) = message else {
            return Err(invalid("", "must be an object."));
        };
        match message.get("role") {
            Some(Value::String(role)) if VALID_ROLES.contains(&role.as_str()) => {}
            _ => return Err(invalid(".role", "must be one of system, developer, user, assistant, tool.")),
        }
        match message.get("content") {
            Some(Value::String(_) | Value::Array(_) | Value::Null) | None => {}
            Some(_) => return Err(invalid(".content", "must be a string or an array of content parts.")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_tests(&[("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1-nano"), ("SYSTEM_PROMPT", "Be brief.")]).unwrap()
    }

    fn rejected(body: &str) -> ProxyError {
        parse_chat_request(body.as_bytes(), &config()).unwrap_err()
    }

    fn param(error: &ProxyError) -> Option<String> {
        match error {
            ProxyError::InvalidRequest { param, .. } => param.clone(),
            _ => None,
        }
    }

    #[test]
    fn valid_request_keeps_unknown_fields() {
        let request = parse_chat_request(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7,"future_param":{"x":1}}"#,
            &config(),
        )
        .unwrap();
        assert!(request.stream);
        assert_eq!(request.model, "gpt-4o-mini");
        let forwarded: Value = serde_json::from_str(&request.upstream_body()).unwrap();
        assert_eq!(forwarded["seed"], 7);
        assert_eq!(forwarded["future_param"]["x"], 1);
    }

    #[test]
    fn duplicate_keys_forward_what_was_checked() {
        let request = parse_chat_request(
            br#"{"model":"gpt-4-expensive","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            &config(),
        )
        .unwrap();
        let forwarded: Value = serde_json::from_str(&request.upstream_body()).unwrap();
        assert_eq!(forwarded["model"], request.model);
        assert_eq!(request.upstream_body().matches("\"model\"").count(), 1);
    }

    #[test]
    fn model_must_be_allowed() {
        assert!(matches!(
            rejected(r#"{"model":"gpt-4-expensive","messages":[{"role":"user","content":"hi"}]}"#),
            ProxyError::ModelNotAllowed { .. }
        ));
        assert_eq!(param(&rejected(r#"{"messages":[{"role":"user","content":"hi"}]}"#)).unwrap(), "model");
        assert_eq!(param(&rejected(r#"{"model":5,"messages":[]}"#)).unwrap(), "model");
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let cases = [
            (r#"{"model":"gpt-4o-mini"}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":[]}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":"hi"}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":[1]}"#, "messages[0]"),
            (r#"{"model":"gpt-4o-mini","messages":[{"content":"hi"}]}"#, "messages[0].role"),
            (r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"},{"role":"boss","content":"b"}]}"#, "messages[1].role"),
            (r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":7}]}"#, "messages[0].content"),
            (r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#, "stream"),
        ];
        for (body, field) in cases {
            let error = rejected(body);
            assert_eq!(error.status(), 400, "{body}");
            assert_eq!(param(&error).as_deref(), Some(field), "{body}");
            assert!(error.client_message().contains(field), "{body}");
        }
    }

    #[test]
    fn non_objects_are_rejected() {
        for body in ["", "not json", "[1,2]", "\"text\"", "null"] {
            assert_eq!(rejected(body).status(), 400, "{body}");
        }
    }

    #[test]
    fn generate_text_uses_system_prompt_and_default_model() {
        let request = parse_generate_text(br#"{"userPrompt":"Tell me a joke"}"#, &config()).unwrap();
        let forwarded: Value = serde_json::from_str(&request.upstream_body()).unwrap();
        assert_eq!(forwarded["model"], "gpt-4o-mini");
        assert_eq!(forwarded["messages"][0]["content"], "Be brief.");
        assert_eq!(forwarded["messages"][1]["content"], "Tell me a joke");
        assert!(!request.stream);
        for body in [r#"{}"#, r#"{"userPrompt":3}"#, r#"{"userPrompt":"  "}"#] {
            let error = parse_generate_text(body.as_bytes(), &config()).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some("userPrompt"), "{body}");
        }
    }

    #[test]
    fn generate_text_result_extracts_the_answer() {
        let answer = br#"{"choices":[{"message":{"role":"assistant","content":"Hello!"}}]}"#;
        assert_eq!(generate_text_result(answer).unwrap(), r#"{"result":"Hello!"}"#);
        assert_eq!(generate_text_result(b"{}").unwrap_err().status(), 502);
    }
}
