//! Request policy: what a client may ask for, checked before any Durable Object or upstream call.
//!
//! The body is parsed once; the proxy forwards the JSON it validated, re-serialised, never the
//! client's bytes (so a duplicate key cannot mean one thing here and another upstream).
//! Fields the proxy does not know pass through untouched, so new OpenAI parameters keep working;
//! the known fields that would cost what the proxy cannot see or bound are refused (400, `param`
//! names the field): see `billable`.

pub mod attribution;
pub mod audio;
pub mod billable;
mod chat;
mod embeddings;
pub mod forwarding;
pub mod generate_text;
mod images;
pub mod prompt;
mod responses;
pub mod voice;

use serde_json::{json, Map, Value};

use crate::budget::cost::{Cost, CostRules, ToolFees};
use crate::budget::plans::Plan;
use crate::budget::plans::RequestLimits;
use crate::budget::prices::{Price, Prices};
use crate::budget::quota::Spend;
use crate::budget::usage::Usage;
use crate::error::ProxyError;
use crate::request::forwarding::UpstreamEndpoint;
use crate::request::prompt::PromptMeter;
use crate::routes::ApiRoute;
use attribution::SafetyKey;

/// A validated API request (chat, Responses, embeddings, audio), ready to send upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// The JSON sent upstream; for a multipart body, its parts before the file.
    upstream_body: String,
    /// A multipart body's file, sent from the client's own bytes (copied once, by the edge).
    pub attachment: Option<Box<Attachment>>,
    /// The media type of the audio the client gets when the proxy asked upstream for a speech
    /// stream the client did not ask for: the stream's audio is turned back into bytes.
    pub audio_out: Option<&'static str>,
    /// The charge is the reservation whatever the answer says (speech priced per character:
    /// known before the call).
    pub charged_as_reserved: bool,
    pub endpoint: UpstreamEndpoint,
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`). The proxy
    /// always asks upstream for it, to meter, and passes it on only then.
    pub client_wants_usage: bool,
    /// Tokens to reserve before calling upstream: the worst case of `Cost::reserve` (the body's
    /// bytes, images, hosted tool calls, and the output cap for each of the `n` choices).
    pub reserve_tokens: u64,
    /// Characters the model reads (logged only with `LOG_PROMPTS=true`; never the text).
    pub prompt_chars: usize,
    /// Hosted tool fees, added to a usage report (`ToolFees::charge`).
    pub tool_fees: ToolFees,
    /// The stored response this request continues (`previous_response_id`): admitted only if
    /// its user created it.
    pub continues: Option<String>,
    /// The stored items its input names by id (`ALLOW_STORED_CONTEXT`): admitted only if its
    /// user created each (an output item of one of their stored responses).
    pub references: Vec<String>,
    /// The answer is a response OpenAI stores and this user may continue later, so its id is
    /// recorded for them (Responses with `ALLOW_STORED_CONTEXT`, unless `store: false`).
    pub records_response: bool,
    /// The worst case in nano-USD: `Price::worst_case` of the token reserve's parts.
    pub reserve_nano_usd: u64,
    /// The model's price; `None` only when no dollar budget is set (config checks it).
    pub price: Option<Price>,
}

/// The file of a multipart body: where it lies in the client's body, and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub file: std::ops::Range<usize>,
    tail: String,
    boundary: String,
}

impl ApiRequest {
    /// The JSON to send upstream (for a multipart body, its parts before the file).
    pub fn upstream_body(&self) -> &str {
        &self.upstream_body
    }

    /// The body to send upstream, in pieces: the proxy's own bytes and the client's file.
    pub fn upstream_pieces<'a>(&'a self, client_body: &'a [u8]) -> [&'a [u8]; 3] {
        match &self.attachment {
            Some(attachment) => [
                self.upstream_body.as_bytes(),
                client_body.get(attachment.file.clone()).unwrap_or_default(),
                attachment.tail.as_bytes(),
            ],
            None => [self.upstream_body.as_bytes(), &[], &[]],
        }
    }

    pub fn upstream_content_type(&self) -> String {
        match &self.attachment {
            Some(attachment) => format!("multipart/form-data; boundary={}", attachment.boundary),
            None => "application/json".into(),
        }
    }

    /// An audio request with nothing reserved yet: its endpoint's module fills the rest.
    fn audio(
        endpoint: UpstreamEndpoint,
        model: String,
        stream: bool,
        upstream_body: String,
        price: Option<Price>,
    ) -> Self {
        ApiRequest {
            upstream_body,
            attachment: None,
            audio_out: None,
            charged_as_reserved: false,
            endpoint,
            model,
            stream,
            client_wants_usage: false,
            reserve_tokens: 0,
            prompt_chars: 0,
            tool_fees: ToolFees::default(),
            continues: None,
            references: vec![],
            records_response: false,
            reserve_nano_usd: 0,
            price,
        }
    }

    /// What a request that got no answer from upstream is charged. After a timeout the request
    /// was sent and OpenAI may well have processed (and billed) it, output and reasoning
    /// included, which nothing here can measure: its whole reservation. Any other failure is an
    /// error status from upstream (not billed) or a connection that failed.
    pub fn charge_after_failure(&self, error: &ProxyError) -> Spend {
        match error {
            ProxyError::UpstreamTimeout => self.reserve(),
            ProxyError::MissingToken
            | ProxyError::InvalidToken(_)
            | ProxyError::AdminUnauthorized
            | ProxyError::OriginNotAllowed
            | ProxyError::NotFound
            | ProxyError::UnknownResponse { .. }
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ModelNotAllowed { .. }
            | ProxyError::UnknownPlan { .. }
            | ProxyError::TurnstileFailed { .. }
            | ProxyError::GuestMintsExhausted { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::UpstreamAuthFailed { .. }
            | ProxyError::UpstreamRateLimited { .. }
            | ProxyError::Quota { .. }
            | ProxyError::UpstreamRejected { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::Unavailable { .. }
            | ProxyError::Busy { .. }
            | ProxyError::Internal { .. } => Spend::default(),
        }
    }

    /// What is reserved before upstream: the worst case in tokens and in dollars.
    pub fn reserve(&self) -> Spend {
        Spend {
            tokens: self.reserve_tokens,
            nano_usd: self.reserve_nano_usd,
        }
    }

    /// How the request's answer is charged, apart from the request (for a stream's end).
    pub fn tariff(&self) -> Tariff {
        Tariff {
            reserve: self.reserve(),
            tool_fees: self.tool_fees,
            price: self.price,
            as_reserved: self.charged_as_reserved,
        }
    }
}

/// How an answer is charged, in tokens and at the model's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tariff {
    reserve: Spend,
    tool_fees: ToolFees,
    price: Option<Price>,
    /// Charged its reservation, usage or not (`ApiRequest::charged_as_reserved`).
    as_reserved: bool,
}

impl Tariff {
    /// What an answer is charged: its usage report, else its whole reservation.
    pub fn charge(&self, usage: Option<&Usage>) -> Spend {
        usage.map_or_else(|| self.without_usage(), |usage| self.with_usage(usage))
    }

    /// Whether `spent` passed the reservation: OpenAI reported more than the worst case the
    /// proxy reserved (a bound that does not hold for a model or field). It is charged all
    /// the same, the budget may end the day over by that much, and the user's next admission
    /// is refused until midnight; the edge logs an `overrun` so the operator can fix the bound.
    pub fn overran(&self, spent: Spend) -> bool {
        spent.tokens > self.reserve.tokens || spent.nano_usd > self.reserve.nano_usd
    }

    /// An answer with a usage report: its tokens, and in dollars their price with the fees
    /// of the hosted calls it lists (which `usage` leaves out). A report the price cannot
    /// read (seconds of audio for a model without a price per minute) is no report.
    pub fn with_usage(&self, usage: &Usage) -> Spend {
        if self.as_reserved || self.price.is_some_and(|price| !price.reads(usage)) {
            return self.without_usage();
        }
        Spend {
            tokens: usage.total(),
            nano_usd: self.price.map_or(0, |price| {
                price.charge(usage).saturating_add(self.tool_fees.charge(usage))
            }),
        }
    }

    /// An answer without one (a client gone, an idle or cut stream, a gateway that drops
    /// `usage`): the whole reservation. Neither the input's tokens (bytes are not a bound on
    /// tokens below 4 bytes each) nor reasoning tokens (never streamed) can be measured, and
    /// only the reservation is known to cover what OpenAI may bill.
    pub fn without_usage(&self) -> Spend {
        self.reserve
    }
}

/// Parses and checks the body of a call to `route` by the user `sub` (for a guest, its client:
/// `Identity::abuse_subject`) on `plan`: the one way a client's body becomes an upstream request.
pub fn parse(
    route: ApiRoute,
    bytes: &[u8],
    settings: &Settings,
    plan: &Plan,
    sub: &str,
) -> Result<ApiRequest, ProxyError> {
    let rules = Rules { settings, plan };
    match route {
        ApiRoute::ChatCompletions => chat::checked(parse_object(bytes)?, rules, sub),
        ApiRoute::Responses => responses::responses(bytes, rules, sub),
        ApiRoute::Embeddings => embeddings::embeddings(bytes, rules, sub),
        ApiRoute::GenerateText => generate_text::generate_text(bytes, rules, sub),
        ApiRoute::ImageGenerations => images::image_generation(bytes, rules, sub),
        ApiRoute::Transcriptions => audio::transcription(bytes, rules),
        ApiRoute::Speech => audio::speech(bytes, rules),
    }
}

/// What every request is checked against besides its plan; config builds it once per isolate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The system message of `/api/generate-text` (`SYSTEM_PROMPT`).
    pub system_prompt: String,
    /// Every model's price (`MODEL_PRICES` over the defaults).
    pub prices: Prices,
    /// Keys `safety_identifier` (see `attribution`); `None` without a secret to derive it from.
    pub safety_key: Option<SafetyKey>,
}

impl Settings {
    /// The `safety_identifier` key. Without one, requests that would carry one fail closed
    /// rather than send the raw `sub`.
    pub fn safety_key(&self) -> Result<&SafetyKey, ProxyError> {
        self.safety_key.as_ref().ok_or_else(|| {
            ProxyError::misconfigured(
                "no key for safety_identifier: set the SAFETY_IDENTIFIER_SECRET secret (at least 32 bytes) when JWT_SECRET is not set",
            )
        })
    }
}

/// What a request is checked against: the proxy's settings and the user's plan.
#[derive(Clone, Copy)]
struct Rules<'a> {
    settings: &'a Settings,
    plan: &'a Plan,
}

/// A request's parts before its body is serialised.
struct Draft {
    endpoint: UpstreamEndpoint,
    model: String,
    stream: bool,
    client_wants_usage: bool,
    /// Everything but the body's bytes, known only once it is serialised.
    cost: Cost,
    prompt_chars: usize,
    continues: Option<String>,
    references: Vec<String>,
    records_response: bool,
    price: Option<Price>,
}

/// The request as it goes upstream, with its reservation and its no-usage charge.
fn finish(body: Map<String, Value>, draft: Draft) -> ApiRequest {
    let upstream_body = Value::Object(body).to_string();
    let cost = Cost {
        body_bytes: upstream_body.len() as u64,
        ..draft.cost
    };
    ApiRequest {
        reserve_tokens: cost.reserve(),
        reserve_nano_usd: draft.price.map_or(0, |price| {
            price.worst_case(&cost).saturating_add(cost.hosted_fees_nano_usd())
        }),
        price: draft.price,
        prompt_chars: draft.prompt_chars,
        tool_fees: ToolFees {
            calls: cost.hosted_tool_calls,
            nano_usd_per_call: cost.hosted_per_call.nano_usd,
        },
        upstream_body,
        attachment: None,
        audio_out: None,
        charged_as_reserved: false,
        endpoint: draft.endpoint,
        model: draft.model,
        stream: draft.stream,
        client_wants_usage: draft.client_wants_usage,
        continues: draft.continues,
        references: draft.references,
        records_response: draft.records_response,
    }
}

fn meter(limits: &RequestLimits, rules: &CostRules) -> PromptMeter {
    PromptMeter::new(limits.max_prompt_chars, rules.max_image_inputs)
}

fn image_cost(meter: &PromptMeter, rules: &CostRules) -> Cost {
    Cost {
        images: meter.images,
        image_tokens_each: rules.image_input_reserve_tokens,
        ..Cost::default()
    }
}

fn check_model(body: &Map<String, Value>, plan: &Plan) -> Result<String, ProxyError> {
    check_model_in(body, |model| plan.is_model_allowed(model))
}

/// `model`, which `allowed` must accept.
fn check_model_in(body: &Map<String, Value>, allowed: impl Fn(&str) -> bool) -> Result<String, ProxyError> {
    let model = match body.get("model") {
        Some(Value::String(model)) => model.clone(),
        Some(_) => return Err(ProxyError::invalid_request("`model` must be a string.", Some("model"))),
        None => return Err(ProxyError::invalid_request("`model` is required.", Some("model"))),
    };
    if allowed(&model) {
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

fn require_content(meter: &PromptMeter, param: &str) -> Result<(), ProxyError> {
    if meter.has_content {
        Ok(())
    } else {
        Err(ProxyError::invalid_request("The input holds no text.", Some(param)))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::objects::owned_responses::MAX_RESPONSE_ID_BYTES;
    use crate::testing::policy::{
        parse_chat_request, parse_embeddings_request, parse_generate_text, parse_responses_request,
    };
    use generate_text::{generate_text_result, strip_html_tags};

    fn config() -> Config {
        Config::for_tests(&[
            ("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1-nano"),
            ("SYSTEM_PROMPT", "Be brief."),
        ])
        .unwrap()
    }

    fn rejected(body: &str) -> ProxyError {
        parse_chat_request(body.as_bytes(), &config(), "alice").unwrap_err()
    }

    fn param(error: &ProxyError) -> Option<String> {
        let ProxyError::InvalidRequest { param, .. } = error else {
            return None;
        };
        param.clone()
    }

    #[test]
    fn valid_request_keeps_unknown_fields() {
        let request = parse_chat_request(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7,"future_param":{"x":1}}"#,
            &config(),
            "alice",
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
            "alice",
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
        let request = parse_generate_text(br#"{"userPrompt":"Tell me a joke"}"#, &config(), "alice").unwrap();
        let forwarded = forwarded(&request);
        assert_eq!(forwarded["model"], "gpt-4o-mini");
        assert_eq!(forwarded["messages"][0]["content"], "Be brief.");
        assert_eq!(forwarded["messages"][1]["content"], "Tell me a joke");
        assert!(!request.stream);
        for body in [r#"{}"#, r#"{"userPrompt":3}"#, r#"{"userPrompt":"  "}"#] {
            let error = parse_generate_text(body.as_bytes(), &config(), "alice").unwrap_err();
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
        parse_chat_request(body.to_string().as_bytes(), config, "alice")
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
            {"role":"user","content":[{"type":"text","text": long}]},
        ]});
        assert_eq!(
            param(&chat(parts).unwrap_err()).as_deref(),
            Some("messages[1].content[0].text"),
            "the part that passes the limit is named"
        );
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
        let request = parse_generate_text(br#"{"userPrompt":"<p>Hi <i>there</i></p>"}"#, &config(), "alice").unwrap();
        assert_eq!(forwarded(&request)["messages"][1]["content"], "Hi there");
        let only_tags = parse_generate_text(br#"{"userPrompt":"<br><br>"}"#, &config(), "alice").unwrap_err();
        assert_eq!(param(&only_tags).as_deref(), Some("userPrompt"));
        let long = format!(r#"{{"userPrompt":"{}"}}"#, "x".repeat(8001));
        assert_eq!(
            param(&parse_generate_text(long.as_bytes(), &config(), "alice").unwrap_err()).as_deref(),
            Some("userPrompt")
        );
    }

    #[test]
    fn responses_requests_are_bounded_like_chats() {
        let request = parse_responses_request(
            br#"{"model":"gpt-4o-mini","input":"Hi","stream":true}"#,
            &config(),
            "alice",
        )
        .unwrap();
        assert_eq!(request.endpoint, UpstreamEndpoint::Responses);
        assert!(request.stream);
        assert_eq!(forwarded(&request)["max_output_tokens"], 1024);
        assert_eq!(request.reserve_tokens, request.upstream_body().len() as u64 + 1024);
        let items = json!({"model":"gpt-4o-mini","instructions":"x".repeat(4000),"input":[
            {"role":"user","content":[{"type":"input_text","text":"y".repeat(4000)}]},
            {"type":"function_call_output","call_id":"c","output":"z"}]});
        assert_eq!(
            param(&parse_responses_request(items.to_string().as_bytes(), &config(), "alice").unwrap_err()).as_deref(),
            Some("instructions"),
            "input items and instructions add up"
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
                param(&parse_responses_request(body.as_bytes(), &config(), "alice").unwrap_err()).as_deref(),
                Some(field),
                "{body}"
            );
        }
    }

    #[test]
    fn embeddings_inputs_are_bounded() {
        let request =
            parse_embeddings_request(br#"{"model":"gpt-4o-mini","input":["a","b"]}"#, &config(), "alice").unwrap();
        assert_eq!(request.endpoint, UpstreamEndpoint::Embeddings);
        assert_eq!(request.reserve_tokens, request.upstream_body().len() as u64);
        assert!(parse_embeddings_request(br#"{"model":"gpt-4o-mini","input":[[1,2,3]]}"#, &config(), "alice").is_ok());
        let long = json!({"model":"gpt-4o-mini","input":["x", "x".repeat(8000)]});
        for (body, field) in [
            (long.to_string(), "input[1]"),
            (r#"{"model":"gpt-4o-mini","input":[{}]}"#.into(), "input"),
            (r#"{"model":"gpt-4o-mini"}"#.into(), "input"),
        ] {
            assert_eq!(
                param(&parse_embeddings_request(body.as_bytes(), &config(), "alice").unwrap_err()).as_deref(),
                Some(field),
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

    fn responses(body: Value) -> Result<ApiRequest, ProxyError> {
        responses_with(body, &config())
    }

    fn responses_with(mut body: Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        let fields = body.as_object_mut().unwrap();
        fields.entry("model").or_insert(json!("gpt-4o-mini"));
        fields.entry("input").or_insert(json!("hi"));
        parse_responses_request(body.to_string().as_bytes(), config, "alice")
    }

    #[test]
    fn every_string_the_model_reads_counts_toward_the_prompt_limit() {
        let long = "x".repeat(9000);
        let tool = |description: &str, parameters: Value| json!({"type": "function", "function": {"name": "f", "description": description, "parameters": parameters}});
        let chat_cases = [
            (
                json!({"messages": [{"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": long}}]}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"tools": [tool(&long, json!({}))]}),
                "tools[0].function.description",
            ),
            (
                json!({"tools": [tool("d", json!({"type": "object", "description": long}))]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": long}}}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi", "name": long}]}),
                "messages[0].name",
            ),
            (
                json!({"functions": [{"name": "f", "description": long}]}),
                "functions[0].description",
            ),
        ];
        for (extra, field) in chat_cases {
            let error = chat(extra).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some(field));
            assert!(error.client_message().contains("more than 8000 characters"), "{field}");
        }
        let responses_cases = [
            (
                json!({"tools": [{"type": "function", "name": "f", "description": long}]}),
                "tools[0].description",
            ),
            (
                json!({"text": {"format": {"type": "json_schema", "name": "s", "schema": {"description": long}}}}),
                "text.format",
            ),
            (
                json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": long}]}),
                "input[0].arguments",
            ),
            (
                json!({"input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": long}]}),
                "input[0].encrypted_content",
            ),
        ];
        for (extra, field) in responses_cases {
            assert_eq!(param(&responses(extra).unwrap_err()).as_deref(), Some(field));
        }
        let small_tool = chat(json!({"tools": [tool("Looks up the weather", json!({"type": "object"}))]})).unwrap();
        assert_eq!(
            small_tool.prompt_chars,
            "hi".len() + "f".len() + "Looks up the weather".len() + r#"{"type":"object"}"#.len()
        );
    }

    #[test]
    fn fields_that_cannot_be_priced_are_refused_and_name_the_field() {
        for (extra, field) in [
            (json!({"service_tier": "priority"}), "service_tier"),
            (json!({"service_tier": "flex"}), "service_tier"),
            (json!({"prediction": {"type": "content", "content": "x"}}), "prediction"),
            (json!({"audio": {"voice": "alloy", "format": "wav"}}), "audio"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"web_search_options": {}}), "web_search_options"),
        ] {
            assert_eq!(
                param(&chat(extra.clone()).unwrap_err()).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        for (extra, field) in [
            (json!({"background": true}), "background"),
            (json!({"previous_response_id": "resp_123"}), "previous_response_id"),
            (json!({"conversation": "conv_123"}), "conversation"),
            (json!({"prompt": {"id": "pmpt_123"}}), "prompt"),
            (json!({"service_tier": "priority"}), "service_tier"),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}),
                "tools[1].type",
            ),
            (
                json!({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://evil.example"}]}),
                "tools[0].type",
            ),
            (
                json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
                "tools[0].type",
            ),
        ] {
            assert_eq!(
                param(&responses(extra.clone()).unwrap_err()).as_deref(),
                Some(field),
                "{extra}"
            );
        }
        for fine in [
            json!({"service_tier": "auto"}),
            json!({"service_tier": "default"}),
            json!({"service_tier": null, "prediction": null}),
            json!({"background": false, "previous_response_id": null}),
        ] {
            assert!(responses(fine.clone()).is_ok(), "{fine}");
        }
        for fine in [
            json!({"service_tier": "auto", "modalities": ["text"]}),
            json!({"service_tier": "default", "modalities": null, "audio": null}),
            json!({"modalities": []}),
        ] {
            assert!(chat(fine.clone()).is_ok(), "{fine}");
        }
        assert_eq!(
            param(&chat(json!({"modalities": "text"})).unwrap_err()).as_deref(),
            Some("modalities")
        );
    }

    #[test]
    fn an_allowed_hosted_tool_is_reserved_for_every_call_it_may_make() {
        let config = Config::for_tests(&[
            ("ALLOWED_HOSTED_TOOLS", "web_search:5000,file_search:800"),
            ("MAX_HOSTED_TOOL_CALLS", "2"),
            ("ALLOWED_VECTOR_STORES", "vs_1"),
        ])
        .unwrap();
        let tools = json!({"tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]});
        let request = responses_with(tools.clone(), &config).unwrap();
        assert_eq!(forwarded(&request)["max_tool_calls"], 2, "the proxy bounds the calls");
        let body = request.upstream_body().len() as u64;
        // Three passes, each reading the body and both calls' results; the fees are dollars:
        // the dearer tool's ($10 per 1,000 web searches) for each call.
        assert_eq!(request.reserve_tokens, (body + 2 * 5000) * 3 + 1024);
        assert_eq!(
            request.tool_fees,
            ToolFees {
                calls: 2,
                nano_usd_per_call: 10_000_000
            },
            "a usage report is charged each call's fee on top"
        );
        let mut too_many = tools.clone();
        too_many["max_tool_calls"] = json!(3);
        assert_eq!(
            param(&responses_with(too_many, &config).unwrap_err()).as_deref(),
            Some("max_tool_calls")
        );
        let other = json!({"tools": [{"type": "image_generation"}]});
        assert_eq!(
            param(&responses_with(other, &config).unwrap_err()).as_deref(),
            Some("tools[0].type")
        );
        let search = chat_with(json!({"web_search_options": {}}), &config).unwrap();
        assert_eq!(
            search.reserve_tokens,
            (search.upstream_body().len() as u64 + 5000) * 2 + 1024
        );
    }

    #[test]
    fn a_hosted_call_costs_its_fee_in_dollars_on_every_model_and_its_content_once() {
        let config = Config::for_tests(&[
            ("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1"),
            ("ALLOWED_HOSTED_TOOLS", "web_search:5000"),
            ("DAILY_BUDGET_USD", "5"),
        ])
        .unwrap();
        // OpenAI's usage includes the search content the model read as input tokens.
        let usage = Usage {
            prompt_tokens: 4_000,
            completion_tokens: 100,
            total_tokens: 4_100,
            hosted_tool_calls: Some(1),
            ..Usage::default()
        };
        for model in ["gpt-4o-mini", "gpt-4.1"] {
            let request = responses_with(json!({"model": model, "tools": [{"type": "web_search"}]}), &config).unwrap();
            let price = config.requests.prices.of(model).unwrap();
            let spent = request.tariff().with_usage(&usage);
            assert_eq!(spent.tokens, 4_100, "{model}: the content is in usage, counted once");
            assert_eq!(
                spent.nano_usd,
                price.charge(&usage) + 10_000_000,
                "{model}: $0.01 per search, whatever the model"
            );
            let cost = Cost {
                body_bytes: request.upstream_body().len() as u64,
                output_tokens: 1024,
                hosted_tool_calls: 1,
                hosted_per_call: crate::budget::cost::PerCall {
                    tokens: 5000,
                    nano_usd: 10_000_000,
                },
                ..Cost::default()
            };
            assert_eq!(
                request.reserve_nano_usd,
                price.worst_case(&cost) + 10_000_000,
                "{model}: the call's fee reserved in dollars"
            );
        }
    }

    #[test]
    fn responses_are_not_stored_unless_the_operator_says_so() {
        assert_eq!(forwarded(&responses(json!({})).unwrap())["store"], false);
        assert_eq!(forwarded(&responses(json!({"store": true})).unwrap())["store"], false);
        let storing = Config::for_tests(&[("RESPONSES_STORE", "true")]).unwrap();
        assert_eq!(
            forwarded(&responses_with(json!({"store": true}), &storing).unwrap())["store"],
            true
        );
        assert_eq!(
            forwarded(&responses_with(json!({}), &storing).unwrap()).get("store"),
            None
        );
        assert_eq!(
            param(&responses_with(json!({"previous_response_id": "resp_1"}), &storing).unwrap_err()).as_deref(),
            Some("previous_response_id"),
            "storing does not open stored context"
        );
        assert!(
            !responses_with(json!({}), &storing).unwrap().records_response,
            "nobody may continue it, so its id is not kept"
        );
    }

    #[test]
    fn with_stored_context_a_continuation_reserves_its_model_s_context_window_and_names_its_response() {
        let config = Config::for_tests(&[
            ("RESPONSES_STORE", "true"),
            ("ALLOW_STORED_CONTEXT", "true"),
            ("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1-nano"),
            ("MAX_OUTPUT_TOKENS", "500"),
        ])
        .unwrap();
        let fresh = responses_with(json!({}), &config).unwrap();
        assert_eq!((fresh.continues.as_deref(), fresh.records_response), (None, true));
        assert!(
            fresh.reserve_tokens < 1000,
            "a fresh response reserves only what it sends"
        );

        let continuation = responses_with(json!({"previous_response_id": "resp_abc"}), &config).unwrap();
        assert_eq!(continuation.continues.as_deref(), Some("resp_abc"));
        assert_eq!(forwarded(&continuation)["previous_response_id"], "resp_abc");
        assert_eq!(continuation.reserve_tokens, 128_000 + 500);
        let nano = responses_with(
            json!({"model": "gpt-4.1-nano", "previous_response_id": "resp_abc"}),
            &config,
        )
        .unwrap();
        assert_eq!(nano.reserve_tokens, 1_047_576 + 500);

        let unstored = responses_with(json!({"previous_response_id": "resp_abc", "store": false}), &config).unwrap();
        assert!(
            !unstored.records_response,
            "a response OpenAI does not keep cannot be continued"
        );
        for bad in [json!(5), json!(""), json!("r".repeat(MAX_RESPONSE_ID_BYTES + 1))] {
            let error = responses_with(json!({"previous_response_id": bad}), &config).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some("previous_response_id"));
        }
        for (extra, field) in [
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
            (json!({"background": true}), "background"),
        ] {
            let error = responses_with(extra.clone(), &config).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some(field), "{extra} stays refused");
        }
    }

    #[test]
    fn images_are_refused_by_default_and_reserved_at_their_worst_case_when_allowed() {
        let image = json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}});
        let message =
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}]});
        let refused = chat(message.clone()).unwrap_err();
        assert_eq!(param(&refused).as_deref(), Some("messages[0].content[1]"));
        let allowing = Config::for_tests(&[("MAX_IMAGE_INPUTS", "1"), ("IMAGE_INPUT_RESERVE_TOKENS", "3000")]).unwrap();
        let request = chat_with(message, &allowing).unwrap();
        let body = request.upstream_body().len() as u64;
        assert_eq!(request.reserve_tokens, body + 3000 + 1024);
        let input_image = json!({"input": [{"role": "user", "content": [
            {"type": "input_text", "text": "and this?"}, {"type": "input_image", "image_url": "https://example.com/dog.png"}]}]});
        assert_eq!(
            param(&responses(input_image.clone()).unwrap_err()).as_deref(),
            Some("input[0].content[1]")
        );
        assert!(responses_with(input_image, &allowing).is_ok());
        assert_eq!(
            Config::for_tests(&[])
                .unwrap()
                .default_plan
                .cost_rules
                .image_input_reserve_tokens,
            48_169,
            "gpt-4o-mini's worst image by default"
        );
        for (part, field) in [
            (
                json!({"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}),
                "messages[0].content[0]",
            ),
            (
                json!({"type": "file", "file": {"file_data": "JVBE", "filename": "a.pdf"}}),
                "messages[0].content[0]",
            ),
        ] {
            let body = json!({"messages": [{"role": "user", "content": [part]}]});
            assert_eq!(param(&chat_with(body, &allowing).unwrap_err()).as_deref(), Some(field));
        }
        let file = json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]});
        assert_eq!(
            param(&responses_with(file, &allowing).unwrap_err()).as_deref(),
            Some("input[0].content[0]")
        );
    }

    #[test]
    fn upstream_learns_an_opaque_stable_user_id_and_never_the_client_s() {
        let config = config();
        let expected = config.requests.safety_key().unwrap().identifier("alice");
        let chat_request = chat(json!({"user": "bob", "safety_identifier": "bob"})).unwrap();
        let forwarded_chat = forwarded(&chat_request);
        assert_eq!(forwarded_chat["safety_identifier"], expected.as_str());
        assert_eq!(forwarded_chat.get("user"), None);
        assert_ne!(expected, "alice");
        assert_eq!(
            forwarded(&responses(json!({"user": "bob"})).unwrap())["safety_identifier"],
            expected.as_str()
        );
        let embeddings =
            parse_embeddings_request(br#"{"model":"gpt-4o-mini","input":"a","user":"bob"}"#, &config, "alice").unwrap();
        assert_eq!(
            forwarded(&embeddings)["user"],
            expected.as_str(),
            "Embeddings knows only `user`"
        );
        let other = parse_chat_request(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            &config,
            "bob",
        )
        .unwrap();
        assert_ne!(forwarded(&other)["safety_identifier"], expected.as_str());
        let own_secret =
            Config::for_tests(&[("SAFETY_IDENTIFIER_SECRET", "a-safety-secret-of-32-bytes-long!!")]).unwrap();
        assert_ne!(own_secret.requests.safety_key().unwrap().identifier("alice"), expected);
        let keyless =
            Config::for_tests(&[("JWKS", r#"{"keys":[]}"#), ("JWT_ISSUER", "https://id.example.com/")]).unwrap();
        assert_eq!(
            chat_with(json!({}), &keyless).unwrap_err().status(),
            500,
            "fails closed"
        );
    }

    #[test]
    fn without_usage_or_after_a_timeout_a_request_is_charged_its_whole_reservation() {
        let schema = json!({"type": "object", "description": "z".repeat(7000)});
        let request = chat(json!({"stream": true,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}))
        .unwrap();
        let body = request.upstream_body().len() as u64;
        assert!(request.reserve_tokens >= body, "the schema is reserved");
        assert_eq!(request.tariff().without_usage(), request.reserve());
        assert_eq!(
            request.charge_after_failure(&ProxyError::UpstreamTimeout),
            request.reserve()
        );
        let answered = ProxyError::UpstreamFailed {
            detail: "upstream answered 500".into(),
        };
        assert_eq!(request.charge_after_failure(&answered), Spend::default());
        assert_eq!(
            request.charge_after_failure(&ProxyError::UpstreamRateLimited { retry_after: None }),
            Spend::default()
        );
    }

    #[test]
    fn a_usage_report_is_charged_its_tokens_and_hosted_fees_at_the_model_s_price() {
        let config = Config::for_tests(&[
            ("ALLOWED_HOSTED_TOOLS", "web_search:5000"),
            ("MAX_HOSTED_TOOL_CALLS", "2"),
            ("DAILY_BUDGET_USD", "5"),
        ])
        .unwrap();
        let request = responses_with(json!({"tools": [{"type": "web_search"}]}), &config).unwrap();
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 200,
            total_tokens: 1_200,
            cached_tokens: 400,
            hosted_tool_calls: Some(1),
            ..Usage::default()
        };
        // gpt-4o-mini: $0.15 input, $0.075 cached, $0.60 output per million tokens; one
        // search's fee, $0.01, in dollars.
        let tokens_nano_usd = (600 * 150_000_000 + 400 * 75_000_000 + 200 * 600_000_000_u64).div_ceil(1_000_000);
        assert_eq!(
            request.tariff().with_usage(&usage),
            Spend {
                tokens: 1_200,
                nano_usd: tokens_nano_usd + 10_000_000
            }
        );
        let unlisted = Usage {
            hosted_tool_calls: None,
            ..usage
        };
        assert_eq!(
            request.tariff().with_usage(&unlisted).nano_usd,
            tokens_nano_usd + 2 * 10_000_000,
            "calls the answer does not list are charged as reserved"
        );
        let no_tools = chat(json!({})).unwrap();
        assert_eq!(
            no_tools.tariff().with_usage(&usage),
            Spend {
                tokens: 1_200,
                nano_usd: tokens_nano_usd
            },
            "no fee without hosted tools, whatever the answer lists"
        );
    }

    #[test]
    fn a_usage_report_above_the_reservation_is_charged_as_reported_and_is_an_overrun() {
        let request = chat(json!({"max_completion_tokens": 100})).unwrap();
        let tariff = request.tariff();
        assert_eq!(tariff.charge(None), request.reserve(), "no report: the reservation");
        assert!(!tariff.overran(tariff.charge(None)));
        let within = Usage {
            prompt_tokens: 10,
            completion_tokens: 100,
            total_tokens: 110,
            ..Usage::default()
        };
        assert!(!tariff.overran(tariff.charge(Some(&within))));
        let over = Usage {
            completion_tokens: 10 * request.reserve_tokens,
            total_tokens: 10 + 10 * request.reserve_tokens,
            ..within
        };
        let spent = tariff.charge(Some(&over));
        assert_eq!(spent.tokens, over.total_tokens, "not clamped to the reservation");
        assert!(tariff.overran(spent));
    }

    #[test]
    fn a_stored_response_is_recorded_for_its_user_only_when_it_may_be_continued() {
        let config = Config::for_tests(&[("RESPONSES_STORE", "true"), ("ALLOW_STORED_CONTEXT", "true")]).unwrap();
        assert!(responses_with(json!({}), &config).unwrap().records_response);
        let unstored = responses_with(json!({"store": false}), &config).unwrap();
        assert!(!unstored.records_response, "store: false: nothing to continue");
        assert!(!responses(json!({})).unwrap().records_response, "continuing is off");
    }

    #[test]
    fn hosted_tool_calls_are_bounded_from_one_to_the_cap_and_default_to_it() {
        let config = Config::for_tests(&[
            ("ALLOWED_HOSTED_TOOLS", "web_search:5000"),
            ("MAX_HOSTED_TOOL_CALLS", "3"),
        ])
        .unwrap();
        let tools = |calls: Value| json!({"tools": [{"type": "web_search"}], "max_tool_calls": calls});
        let defaulted = responses_with(tools(Value::Null), &config).unwrap();
        assert_eq!(defaulted.tool_fees.calls, 3);
        let reserve = |request: &ApiRequest, calls: u64| {
            let body = request.upstream_body().len() as u64;
            (body + calls * 5000) * (calls + 1) + 1024
        };
        assert_eq!(defaulted.reserve_tokens, reserve(&defaulted, 3));
        for calls in [1, 3] {
            let request = responses_with(tools(json!(calls)), &config).unwrap();
            assert_eq!(forwarded(&request)["max_tool_calls"], calls);
            assert_eq!(request.reserve_tokens, reserve(&request, calls));
        }
        for calls in [json!(0), json!(4), json!(-1), json!("2")] {
            let error = responses_with(tools(calls.clone()), &config).unwrap_err();
            assert_eq!(param(&error).as_deref(), Some("max_tool_calls"), "{calls}");
        }
        let functions_only = json!({"tools": [{"type": "function", "name": "f"}], "max_tool_calls": 50});
        let request = responses_with(functions_only, &config).unwrap();
        assert_eq!(request.tool_fees.calls, 0, "function calls run in the app: no fee");
    }
}
