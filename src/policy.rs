//! Request policy: what a client may ask for, checked before any Durable Object or upstream call.
//!
//! The body is parsed once; the proxy forwards the JSON it validated, re-serialised, never the
//! client's bytes (so a duplicate key cannot mean one thing here and another upstream).
//! Fields the proxy does not know pass through untouched, so new OpenAI parameters keep working.

use serde_json::{json, Map, Value};

use crate::config::{Config, RequestLimits};
use crate::error::ProxyError;
use crate::forwarding::UpstreamEndpoint;
use crate::routes::ApiRoute;

const VALID_ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// A validated API request (chat, Responses, embeddings), ready to send upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    upstream_body: String,
    pub endpoint: UpstreamEndpoint,
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`). The proxy
    /// always asks upstream for it, to meter, and passes it on only then.
    pub client_wants_usage: bool,
    /// Tokens to reserve before calling upstream: the upstream body's bytes (a text prompt
    /// never has more tokens than bytes) plus the output cap for each of the `n` choices.
    pub reserve_tokens: u64,
    /// A rough count of the prompt's tokens, charged when a stream ends without usage.
    pub prompt_token_estimate: u64,
    /// Characters of prompt text (logged only with `LOG_PROMPTS=true`; never the text).
    pub prompt_chars: usize,
}

impl ApiRequest {
    /// The JSON to send upstream.
    pub fn upstream_body(&self) -> &str {
        &self.upstream_body
    }
}

/// Roughly 4 bytes a token, never zero: the charge when upstream reported no usage.
pub fn estimate_tokens(text_bytes: usize) -> u64 {
    (text_bytes as u64).div_ceil(4).max(1)
}

/// Parses and checks the body of a call to `route`: the one way a client's body becomes an
/// upstream request.
pub fn parse(route: ApiRoute, bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
    match route {
        ApiRoute::ChatCompletions => parse_chat_request(bytes, config),
        ApiRoute::Responses => parse_responses_request(bytes, config),
        ApiRoute::Embeddings => parse_embeddings_request(bytes, config),
        ApiRoute::GenerateText => parse_generate_text(bytes, config),
    }
}

/// Parses and checks a chat completion request.
pub fn parse_chat_request(bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
    checked(parse_object(bytes)?, config)
}

/// `POST /api/generate-text` `{"userPrompt": "..."}`: the simple form, turned into a chat
/// request with the operator's system prompt and the default model. HTML tags are stripped
/// from the prompt (a convenience for apps that send markup, not a security boundary).
pub fn parse_generate_text(bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
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
    if prompt.chars().count() > config.request_limits.max_prompt_chars {
        return Err(ProxyError::invalid_request(
            format!(
                "`userPrompt` is longer than {} characters.",
                config.request_limits.max_prompt_chars
            ),
            Some("userPrompt"),
        ));
    }
    let chat = json!({
        "model": config.default_model(),
        "messages": [
            { "role": "system", "content": config.system_prompt },
            { "role": "user", "content": prompt },
        ],
    });
    let Value::Object(body) = chat else {
        unreachable!("json! object literal")
    };
    checked(body, config)
}

/// The checks every chat request passes, and the rewriting for upstream.
fn checked(mut body: Map<String, Value>, config: &Config) -> Result<ApiRequest, ProxyError> {
    let limits = &config.request_limits;
    let model = check_model(&body, config)?;
    let prompt = check_messages(body.get("messages"))?;
    check_prompt_size(&prompt, limits, "messages")?;
    let output_cap = output_cap(&mut body, limits, &["max_completion_tokens", "max_tokens"])?;
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=limits.max_n).contains(&n) => n,
            _ => {
                return Err(ProxyError::invalid_request(
                    format!("`n` must be a whole number from 1 to {}.", limits.max_n),
                    Some("n"),
                ))
            }
        },
    };
    let stream = check_stream(&body)?;
    let mut client_wants_usage = false;
    if stream {
        let options = body.entry("stream_options").or_insert_with(|| json!({}));
        let Value::Object(options) = options else {
            return Err(ProxyError::invalid_request(
                "`stream_options` must be an object.",
                Some("stream_options"),
            ));
        };
        client_wants_usage = options.get("include_usage") == Some(&Value::Bool(true));
        options.insert("include_usage".into(), Value::Bool(true));
    }
    Ok(finish(
        body,
        UpstreamEndpoint::ChatCompletions,
        model,
        stream,
        client_wants_usage,
        output_cap * n,
        &prompt,
    ))
}

/// `POST /v1/responses`: `input` (a string or items) and `instructions` count toward the
/// prompt size; `max_output_tokens` is the output cap. Its streams always end with the usage
/// (in `response.completed`), so there is nothing to ask for or to hide.
pub fn parse_responses_request(bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
    let mut body = parse_object(bytes)?;
    let limits = &config.request_limits;
    let model = check_model(&body, config)?;
    let mut prompt = PromptText::default();
    match body.get("input") {
        Some(Value::String(text)) => prompt.add(text),
        Some(Value::Array(items)) if !items.is_empty() => items.iter().for_each(|item| prompt.add_all_text(item)),
        _ => {
            return Err(ProxyError::invalid_request(
                "`input` must be a string or a non-empty array of items.",
                Some("input"),
            ))
        }
    }
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => prompt.add(text),
        Some(_) => {
            return Err(ProxyError::invalid_request(
                "`instructions` must be a string.",
                Some("instructions"),
            ))
        }
    }
    check_prompt_size(&prompt, limits, "input")?;
    let output_cap = output_cap(&mut body, limits, &["max_output_tokens"])?;
    let stream = check_stream(&body)?;
    Ok(finish(
        body,
        UpstreamEndpoint::Responses,
        model,
        stream,
        true,
        output_cap,
        &prompt,
    ))
}

/// `POST /v1/embeddings`: `input` (a string, strings, or token arrays) is bounded like a
/// prompt; the cost is the input, so the reservation is the body's bytes.
pub fn parse_embeddings_request(bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
    let body = parse_object(bytes)?;
    let model = check_model(&body, config)?;
    let invalid = || {
        ProxyError::invalid_request(
            "`input` must be a string, an array of strings, or token arrays.",
            Some("input"),
        )
    };
    let mut prompt = PromptText::default();
    match body.get("input") {
        Some(Value::String(text)) => prompt.add(text),
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::String(text) => prompt.add(text),
                    // A token id stands for about four characters of text.
                    Value::Number(_) => prompt.add_tokens(1),
                    Value::Array(tokens) if tokens.iter().all(Value::is_number) => prompt.add_tokens(tokens.len()),
                    _ => return Err(invalid()),
                }
            }
        }
        _ => return Err(invalid()),
    }
    check_prompt_size(&prompt, &config.request_limits, "input")?;
    Ok(finish(
        body,
        UpstreamEndpoint::Embeddings,
        model,
        false,
        false,
        0,
        &prompt,
    ))
}

/// The request as it goes upstream, with its reservation: the body's bytes (a text prompt never
/// has more tokens than bytes) plus what the answer may add.
fn finish(
    body: Map<String, Value>,
    endpoint: UpstreamEndpoint,
    model: String,
    stream: bool,
    client_wants_usage: bool,
    output_tokens: u64,
    prompt: &PromptText,
) -> ApiRequest {
    let upstream_body = Value::Object(body).to_string();
    ApiRequest {
        reserve_tokens: upstream_body.len() as u64 + output_tokens,
        prompt_token_estimate: estimate_tokens(prompt.bytes),
        prompt_chars: prompt.chars,
        upstream_body,
        endpoint,
        model,
        stream,
        client_wants_usage,
    }
}

fn check_model(body: &Map<String, Value>, config: &Config) -> Result<String, ProxyError> {
    let model = match body.get("model") {
        Some(Value::String(model)) => model.clone(),
        Some(_) => return Err(ProxyError::invalid_request("`model` must be a string.", Some("model"))),
        None => return Err(ProxyError::invalid_request("`model` is required.", Some("model"))),
    };
    if config.is_model_allowed(&model) {
        Ok(model)
    } else {
        Err(ProxyError::ModelNotAllowed { model })
    }
}

fn check_stream(body: &Map<String, Value>) -> Result<bool, ProxyError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(stream)) => Ok(*stream),
        Some(_) => Err(ProxyError::invalid_request(
            "`stream` must be a boolean.",
            Some("stream"),
        )),
    }
}

fn check_prompt_size(prompt: &PromptText, limits: &RequestLimits, param: &str) -> Result<(), ProxyError> {
    if prompt.chars > limits.max_prompt_chars {
        return Err(ProxyError::invalid_request(
            format!(
                "The input holds more than {} characters of text.",
                limits.max_prompt_chars
            ),
            Some(param),
        ));
    }
    if !prompt.has_content {
        return Err(ProxyError::invalid_request("The input holds no text.", Some(param)));
    }
    Ok(())
}

/// The output cap: each of `fields` the client sets is at most `MAX_OUTPUT_TOKENS`; when it
/// sets none, the proxy sets the first to `MAX_OUTPUT_TOKENS`.
fn output_cap(body: &mut Map<String, Value>, limits: &RequestLimits, fields: &[&str]) -> Result<u64, ProxyError> {
    let mut cap = None;
    for &field in fields {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(value) => match value.as_u64() {
                Some(tokens) if (1..=limits.max_output_tokens).contains(&tokens) => {
                    // With both set, which one upstream applies is not ours to guess: reserve the larger.
                    cap = Some(cap.map_or(tokens, |other: u64| other.max(tokens)));
                }
                _ => {
                    return Err(ProxyError::invalid_request(
                        format!(
                            "`{field}` must be a whole number from 1 to {}.",
                            limits.max_output_tokens
                        ),
                        Some(field),
                    ))
                }
            },
        }
    }
    Ok(match cap {
        Some(cap) => cap,
        None => {
            body.insert(fields[0].into(), json!(limits.max_output_tokens));
            limits.max_output_tokens
        }
    })
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

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(ProxyError::invalid_request(
            "The request body must be a JSON object.",
            None,
        )),
        Err(_) => Err(ProxyError::invalid_request("The request body is not valid JSON.", None)),
    }
}

/// The text of the input, measured.
#[derive(Default)]
struct PromptText {
    chars: usize,
    bytes: usize,
    has_content: bool,
}

fn check_messages(messages: Option<&Value>) -> Result<PromptText, ProxyError> {
    let messages = match messages {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(_) => {
            return Err(ProxyError::invalid_request(
                "`messages` must be a non-empty array.",
                Some("messages"),
            ))
        }
        None => return Err(ProxyError::invalid_request("`messages` is required.", Some("messages"))),
    };
    let mut prompt = PromptText::default();
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
            _ => {
                let roles = VALID_ROLES.join(", ");
                return Err(invalid(".role", &format!("must be one of {roles}.")));
            }
        }
        match message.get("content") {
            Some(Value::String(text)) => prompt.add(text),
            Some(Value::Array(parts)) => {
                for (part_index, part) in parts.iter().enumerate() {
                    let Value::Object(part) = part else {
                        return Err(invalid(
                            &format!(".content[{part_index}]"),
                            "must be a content part object.",
                        ));
                    };
                    if let Some(Value::String(text)) = part.get("text") {
                        prompt.add(text);
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(invalid(".content", "must be a string or an array of content parts.")),
        }
    }
    Ok(prompt)
}

impl PromptText {
    fn add(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.bytes += text.len();
        self.has_content |= !text.trim().is_empty();
    }

    fn add_tokens(&mut self, tokens: usize) {
        self.chars += tokens * 4;
        self.bytes += tokens * 4;
        self.has_content |= tokens > 0;
    }

    /// Every text a Responses input item may carry: `content` strings, parts' `text`, and
    /// tool `output`s.
    fn add_all_text(&mut self, item: &Value) {
        match item {
            Value::String(text) => self.add(text),
            Value::Array(items) => items.iter().for_each(|item| self.add_all_text(item)),
            Value::Object(fields) => {
                for name in ["content", "text", "output"] {
                    if let Some(value) = fields.get(name) {
                        self.add_all_text(value);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_tests(&[
            ("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1-nano"),
            ("SYSTEM_PROMPT", "Be brief."),
        ])
        .unwrap()
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
        let forwarded = forwarded(&request);
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
        let forwarded = forwarded(&request);
        assert_eq!(forwarded["model"], request.model);
        assert_eq!(request.upstream_body().matches("\"model\"").count(), 1);
    }

    #[test]
    fn model_must_be_allowed() {
        assert!(matches!(
            rejected(r#"{"model":"gpt-4-expensive","messages":[{"role":"user","content":"hi"}]}"#),
            ProxyError::ModelNotAllowed { .. }
        ));
        assert_eq!(
            param(&rejected(r#"{"messages":[{"role":"user","content":"hi"}]}"#)).unwrap(),
            "model"
        );
        assert_eq!(param(&rejected(r#"{"model":5,"messages":[]}"#)).unwrap(), "model");
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let cases = [
            (r#"{"model":"gpt-4o-mini"}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":[]}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":"hi"}"#, "messages"),
            (r#"{"model":"gpt-4o-mini","messages":[1]}"#, "messages[0]"),
            (
                r#"{"model":"gpt-4o-mini","messages":[{"content":"hi"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"},{"role":"boss","content":"b"}]}"#,
                "messages[1].role",
            ),
            (
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":7}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#,
                "stream",
            ),
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
        let forwarded = forwarded(&request);
        assert_eq!(forwarded["model"], "gpt-4o-mini");
        assert_eq!(forwarded["messages"][0]["content"], "Be brief.");
        assert_eq!(forwarded["messages"][1]["content"], "Tell me a joke");
        assert!(!request.stream);
        for body in [r#"{}"#, r#"{"userPrompt":3}"#, r#"{"userPrompt":"  "}"#] {
            let error = parse_generate_text(body.as_bytes(), &config()).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some("userPrompt"), "{body}");
        }
    }

    fn forwarded(request: &ApiRequest) -> Value {
        serde_json::from_str(request.upstream_body()).unwrap()
    }

    fn chat(extra: Value) -> Result<ApiRequest, ProxyError> {
        chat_with(extra, &config())
    }

    fn chat_with(extra: Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        let mut body = json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_chat_request(body.to_string().as_bytes(), config)
    }

    #[test]
    fn the_output_cap_is_bounded_and_defaulted() {
        let defaulted = chat(json!({})).unwrap();
        assert_eq!(forwarded(&defaulted)["max_completion_tokens"], 1024);
        assert_eq!(defaulted.reserve_tokens, defaulted.upstream_body().len() as u64 + 1024);
        let own = chat(json!({"max_tokens": 100})).unwrap();
        assert_eq!(
            forwarded(&own).get("max_completion_tokens"),
            None,
            "the client's own field is kept alone"
        );
        assert_eq!(own.reserve_tokens, own.upstream_body().len() as u64 + 100);
        let both = chat(json!({"max_tokens": 500, "max_completion_tokens": 200})).unwrap();
        assert_eq!(
            both.reserve_tokens,
            both.upstream_body().len() as u64 + 500,
            "the larger of two caps is the worst case"
        );
        for (field, value) in [
            ("max_tokens", json!(1025)),
            ("max_completion_tokens", json!(0)),
            ("max_tokens", json!(-1)),
            ("max_tokens", json!(10.5)),
            ("max_tokens", json!("10")),
        ] {
            let error = chat(json!({ field: value })).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some(field), "{field}={value}");
        }
    }

    #[test]
    fn more_than_one_choice_needs_max_n() {
        assert_eq!(param(&chat(json!({"n": 2})).unwrap_err()).as_deref(), Some("n"));
        assert!(chat(json!({"n": 1})).is_ok());
        let generous = Config::for_tests(&[("MAX_N", "4")]).unwrap();
        let two = chat_with(json!({"n": 2, "max_tokens": 100}), &generous).unwrap();
        assert_eq!(
            two.reserve_tokens,
            two.upstream_body().len() as u64 + 200,
            "each choice is reserved"
        );
    }

    #[test]
    fn prompt_size_counts_all_message_text() {
        let long = "x".repeat(5000);
        let parts = json!({"messages":[
            {"role":"system","content": long},
            {"role":"user","content":[{"type":"text","text": long}, {"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
        ]});
        assert_eq!(param(&chat(parts).unwrap_err()).as_deref(), Some("messages"));
        assert!(
            chat(json!({"messages":[{"role":"user","content":"é".repeat(8000)}]})).is_ok(),
            "characters, not bytes"
        );
        let empty =
            chat(json!({"messages":[{"role":"user","content":"   "},{"role":"user","content":[]}]})).unwrap_err();
        assert!(empty.client_message().contains("no text"));
        assert!(matches!(
            chat(json!({"model": "gpt-4-expensive"})).unwrap_err(),
            ProxyError::ModelNotAllowed { .. }
        ));
    }

    #[test]
    fn streams_always_ask_upstream_for_usage() {
        let plain = chat(json!({"stream": true})).unwrap();
        assert_eq!(forwarded(&plain)["stream_options"]["include_usage"], true);
        assert!(!plain.client_wants_usage);
        let asked = chat(json!({"stream": true, "stream_options": {"include_usage": true}})).unwrap();
        assert!(asked.client_wants_usage);
        assert_eq!(
            forwarded(&chat(json!({})).unwrap()).get("stream_options"),
            None,
            "non-streams are left alone"
        );
        assert_eq!(
            param(&chat(json!({"stream": true, "stream_options": 1})).unwrap_err()).as_deref(),
            Some("stream_options")
        );
    }

    #[test]
    fn html_tags_are_stripped_from_simple_prompts() {
        assert_eq!(strip_html_tags("<b>bold</b> and <a href='x'>link</a>"), "bold and link");
        assert_eq!(strip_html_tags("1 < 2 and <!-- note --> 3 > 2"), "1 < 2 and  3 > 2");
        assert_eq!(strip_html_tags("<unclosed"), "");
        let request = parse_generate_text(br#"{"userPrompt":"<p>Hi <i>there</i></p>"}"#, &config()).unwrap();
        assert_eq!(forwarded(&request)["messages"][1]["content"], "Hi there");
        let only_tags = parse_generate_text(br#"{"userPrompt":"<br><br>"}"#, &config()).unwrap_err();
        assert_eq!(param(&only_tags).as_deref(), Some("userPrompt"));
        let long = format!(r#"{{"userPrompt":"{}"}}"#, "x".repeat(8001));
        assert_eq!(
            param(&parse_generate_text(long.as_bytes(), &config()).unwrap_err()).as_deref(),
            Some("userPrompt")
        );
    }

    #[test]
    fn responses_requests_are_bounded_like_chats() {
        let request =
            parse_responses_request(br#"{"model":"gpt-4o-mini","input":"Hi","stream":true}"#, &config()).unwrap();
        assert_eq!(request.endpoint, UpstreamEndpoint::Responses);
        assert!(request.stream);
        assert_eq!(forwarded(&request)["max_output_tokens"], 1024);
        assert_eq!(request.reserve_tokens, request.upstream_body().len() as u64 + 1024);
        let items = json!({"model":"gpt-4o-mini","instructions":"x".repeat(4000),"input":[
            {"role":"user","content":[{"type":"input_text","text":"y".repeat(4000)}]},
            {"type":"function_call_output","call_id":"c","output":"z"}]});
        assert_eq!(
            param(&parse_responses_request(items.to_string().as_bytes(), &config()).unwrap_err()).as_deref(),
            Some("input")
        );
        for (body, field) in [
            (r#"{"model":"gpt-4o-mini"}"#, "input"),
            (r#"{"model":"gpt-4o-mini","input":[]}"#, "input"),
            (
                r#"{"model":"gpt-4o-mini","input":"hi","max_output_tokens":4096}"#,
                "max_output_tokens",
            ),
            (
                r#"{"model":"gpt-4o-mini","input":"hi","instructions":7}"#,
                "instructions",
            ),
        ] {
            assert_eq!(
                param(&parse_responses_request(body.as_bytes(), &config()).unwrap_err()).as_deref(),
                Some(field),
                "{body}"
            );
        }
    }

    #[test]
    fn embeddings_inputs_are_bounded() {
        let request = parse_embeddings_request(br#"{"model":"gpt-4o-mini","input":["a","b"]}"#, &config()).unwrap();
        assert_eq!(request.endpoint, UpstreamEndpoint::Embeddings);
        assert_eq!(request.reserve_tokens, request.upstream_body().len() as u64);
        assert!(parse_embeddings_request(br#"{"model":"gpt-4o-mini","input":[[1,2,3]]}"#, &config()).is_ok());
        let long = json!({"model":"gpt-4o-mini","input":["x".repeat(8001)]});
        for body in [
            long.to_string(),
            r#"{"model":"gpt-4o-mini","input":[{}]}"#.into(),
            r#"{"model":"gpt-4o-mini"}"#.into(),
        ] {
            assert_eq!(
                param(&parse_embeddings_request(body.as_bytes(), &config()).unwrap_err()).as_deref(),
                Some("input"),
                "{body}"
            );
        }
    }

    #[test]
    fn generate_text_result_extracts_the_answer() {
        let answer = br#"{"choices":[{"message":{"role":"assistant","content":"Hello!"}}]}"#;
        assert_eq!(generate_text_result(answer).unwrap(), r#"{"result":"Hello!"}"#);
        assert_eq!(generate_text_result(b"{}").unwrap_err().status(), 502);
    }
}
