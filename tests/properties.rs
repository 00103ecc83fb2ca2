//! Invariants of the parsers and the limiter over generated inputs: no panic on any input
//! (a panic can take down the isolate and the requests in flight), and the same answers
//! however a stream is split.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test crate: a failed unwrap is a failed test"
)]

use openai_edge_proxy::testing::auth::{
    self, mint_hmac_token, ClaimRules, HmacAlgorithm, KeyEntry, KeySet, VerifyingKey,
};
use openai_edge_proxy::testing::config::{Config, Secret};
use openai_edge_proxy::testing::guest;
use openai_edge_proxy::testing::policy;
use openai_edge_proxy::testing::quota::{Ask, Limits, QuotaState, RateLimit, Spend};
use openai_edge_proxy::testing::sse::{SseMeter, StreamKind};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{json, Value};
use std::cell::Cell;

const SECRET: &str = "a-property-test-secret-of-32-bytes!";
const NOW: i64 = 1_800_000_000;

fn config() -> Config {
    Config::from_lookup(|name| match name {
        "JWT_SECRET" => Some(SECRET.into()),
        "ALLOWED_MODELS" => Some("gpt-4o-mini".into()),
        _ => None,
    })
    .unwrap()
}

fn keys() -> KeySet {
    KeySet {
        keys: vec![KeyEntry {
            kid: None,
            key: VerifyingKey::Hmac {
                algorithm: HmacAlgorithm::Hs256,
                secret: Secret::new(SECRET),
            },
        }],
    }
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: None,
        audience: None,
        leeway_seconds: 30,
        max_ttl_seconds: 86_400,
        plan_claim: "plan".into(),
    }
}

/// SSE-like text: data lines (JSON chunks, usage, [DONE]), comments and other fields, with
/// every kind of line end.
fn sse_stream() -> impl Strategy<Value = String> {
    let data = prop_oneof![
        "[a-zA-Z é]{0,12}".prop_map(|text| format!("data: {}", json!({"choices":[{"delta":{"content": text}}]}))),
        (0u64..1000, 0u64..1000).prop_map(|(p, c)| format!(
            "data: {}",
            json!({"choices":[],"usage":{"prompt_tokens":p,"completion_tokens":c,"total_tokens":p + c}})
        )),
        Just("data: [DONE]".to_owned()),
        Just(": keep-alive".to_owned()),
        Just("event: ping".to_owned()),
        "[ -~]{0,20}".prop_map(|junk| format!("data: {junk}")),
    ];
    let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    prop::collection::vec((data, line_end.clone(), proptest::bool::ANY, line_end), 0..12).prop_map(|events| {
        events
            .into_iter()
            .map(|(line, end, blank, blank_end)| format!("{line}{end}{}", if blank { blank_end } else { "" }))
            .collect()
    })
}

fn meter_run(input: &[u8], cuts: &[usize], kind: StreamKind) -> (Vec<u8>, Option<u64>, usize, bool) {
    let (forwarded, meter) = SseMeter::meter_split(kind, input, cuts);
    (
        forwarded,
        meter.usage.map(|u| u.total()),
        meter.streamed_text_bytes,
        meter.complete,
    )
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![Just("gpt-4o-mini".to_owned()), Just("user".to_owned()), "[ -~]{0,16}"].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("model"),
                    Just("messages"),
                    Just("role"),
                    Just("content"),
                    Just("text"),
                    Just("stream"),
                    Just("n"),
                    Just("max_tokens"),
                    Just("max_completion_tokens"),
                    Just("max_output_tokens"),
                    Just("input"),
                    Just("stream_options"),
                    Just("tools"),
                    Just("type"),
                    Just("background"),
                    Just("previous_response_id"),
                    Just("user"),
                    Just("x")
                ]
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_sse_meter_gives_the_same_result_however_the_stream_is_split(
        stream in sse_stream(),
        mut cuts in prop::collection::vec(0usize..400, 0..8),
        responses in any::<bool>(),
    ) {
        let kind = if responses { StreamKind::Responses } else { StreamKind::Chat };
        cuts.sort_unstable();
        let whole = meter_run(stream.as_bytes(), &[], kind);
        let split = meter_run(stream.as_bytes(), &cuts, kind);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn the_sse_meter_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let (out, ..) = meter_run(&bytes, &[cut], StreamKind::Chat);
        prop_assert!(out.len() <= bytes.len() + 2, "it forwards what it got, at most completing the last event");
    }

    #[test]
    fn the_token_verifier_takes_any_string(token in "[ -~]{0,300}") {
        let _ = auth::verify(&token, &keys(), &rules(), NOW);
        let _ = auth::bearer_token(Some(&token));
    }

    #[test]
    fn no_changed_token_verifies(position in 0usize..200, replacement in "[A-Za-z0-9_.-]") {
        let claims = json!({"sub": "alice", "iat": NOW, "exp": NOW + 600}).as_object().unwrap().clone();
        let token = mint_hmac_token(HmacAlgorithm::Hs256, SECRET.as_bytes(), &claims).unwrap();
        let position = position % token.len();
        let mut changed = token.clone();
        changed.replace_range(position..position + 1, &replacement);
        prop_assume!(changed != token);
        // A change in base64 padding bits can decode to the same bytes; anything else must fail.
        if let Ok(identity) = auth::verify(&changed, &keys(), &rules(), NOW) {
            prop_assert_eq!(identity.sub, "alice");
        }
    }

    #[test]
    fn the_request_policy_takes_any_json(body in json_value()) {
        let bytes = body.to_string().into_bytes();
        let config = config();
        for parse in [policy::parse_chat_request, policy::parse_responses_request, policy::parse_embeddings_request, policy::parse_generate_text] {
            if let Ok(request) = parse(&bytes, &config, "alice") {
                let forwarded: Value = serde_json::from_str(request.upstream_body()).unwrap();
                let body_bytes = request.upstream_body().len() as u64;
                prop_assert_eq!(forwarded["model"].as_str(), Some("gpt-4o-mini"));
                prop_assert!(request.reserve_tokens >= body_bytes);
                // Without usage the whole reservation is charged: nothing unmeasured slips by.
                prop_assert_eq!(request.tariff().without_usage().tokens, request.reserve_tokens);
                // Nothing that cannot be priced goes upstream, and never the client's user id.
                for field in ["background", "previous_response_id", "conversation", "prompt", "prediction"] {
                    prop_assert!(forwarded[field].is_null() || forwarded[field] == false, "{}", field);
                }
                prop_assert!(forwarded.get("safety_identifier").or(forwarded.get("user")).is_some_and(|id| id != "alice"));
            }
        }
    }

    #[test]
    fn the_guest_parsers_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), text in "[ -~]{0,300}") {
        let _ = guest::turnstile_token(&bytes);
        let _ = guest::turnstile_token(text.as_bytes());
        let _ = guest::judge_siteverify(&bytes, Some(&["app.example.com".to_owned()]));
        let _ = guest::judge_siteverify(text.as_bytes(), None);
        let prefix = bytes.first().map_or(64, |byte| byte % 70);
        let name = guest::ClientKey::derive(SECRET, prefix).object_name(Some(&text));
        prop_assert!(name.starts_with("client:"));
        let chosen = guest::client_address(Some(&text), Some(&text));
        prop_assert!(chosen == Some(text.as_str()) || chosen == Some(text.trim()));
        prop_assert!(guest::verify(&text, &Secret::new(SECRET), std::time::Duration::from_secs(900), 30, NOW).is_err());
    }

    #[test]
    fn the_configuration_takes_any_values(values in prop::collection::vec("[ -~]{0,40}", 23)) {
        let names = ["UPSTREAM_BASE_URL", "ALLOWED_ORIGINS", "ALLOWED_MODELS", "MAX_BODY_BYTES", "JWT_SECRET", "JWKS_URL",
                     "RATE_LIMIT_REQUESTS", "DAILY_TOKEN_BUDGET", "JWT_LEEWAY_SECONDS", "LOG_LEVEL", "ALERT_WEBHOOK_URL", "UPSTREAM_RETRIES",
                     "PLANS", "MODEL_PRICES", "DAILY_BUDGET_USD", "TURNSTILE_SECRET_KEY", "GUEST_TOKEN_SECRET",
                     "TURNSTILE_VERIFY_URL", "GUEST_TOKEN_TTL_SECONDS", "GLOBAL_GUEST_DAILY_BUDGET_USD", "GUEST_IPV6_PREFIX",
                     "SAFETY_IDENTIFIER_SECRET", "JWKS_CACHE_SECONDS"];
        let _ = Config::from_lookup(|name| names.iter().position(|n| *n == name).map(|i| values[i].clone()));
    }

    /// Upstream may report more than was reserved (the reservation is a bound the proxy computes,
    /// not one OpenAI promises). What is charged is what was used, never the reservation's
    /// clamp; an overrun spends the day's budget, and then every admission is refused, with a
    /// `Retry-After` of the next UTC midnight, until the day turns. Admission itself never
    /// commits past a budget, and without an overrun `used + reserved` stays within it.
    #[test]
    fn no_sequence_of_requests_passes_the_limits(
        steps in prop::collection::vec(
            (0u64..400, any::<bool>(), 0i64..5_000, prop::option::of(0u64..1_200), prop::bool::weighted(0.03)),
            1..80,
        ),
    ) {
        const DAY_MS: i64 = 86_400_000;
        let limits = Limits {
            rate: Some(RateLimit { requests: 5, window: std::time::Duration::from_secs(10) }),
            max_streams: Some(2),
            daily_tokens: Some(1_000),
            daily_nano_usd: Some(100_000),
        };
        let mut state = QuotaState::default();
        let mut now = 1_800_000_000_000i64;
        let mut open: Vec<(u64, u64)> = Vec::new();
        let mut admitted_at = Vec::new();
        // What this test says must have been charged today, and whether a settlement passed its
        // reservation today.
        let (mut used, mut overrun_today) = (0u64, false);
        for (tokens, stream, step_ms, finish_with, next_day) in steps {
            now += step_ms;
            if next_day {
                // Past the next midnight and the reservations' timeout: the day's use starts
                // over, and every reservation still open expires, charged in full to the day it
                // was made, which is over: the new day's budget is whole.
                now = (now.div_euclid(DAY_MS) + 1) * DAY_MS + 20 * 60 * 1000;
                open.clear();
                used = 0;
                overrun_today = false;
                admitted_at.clear();
            }
            let before = state.standing(&limits, now);
            let ask = Ask { tokens, stream, nano_usd: tokens * 150 };
            match state.admit(&limits, ask, now) {
                Ok(reservation) => {
                    prop_assert!(before.used_tokens + before.reserved_tokens + tokens <= 1_000, "admitted past the token budget");
                    prop_assert!(before.used_nano_usd + before.reserved_nano_usd + tokens * 150 <= 100_000);
                    admitted_at.push(now);
                    open.push((reservation.id, tokens));
                }
                Err(refusal) => {
                    if before.used_tokens > 1_000 {
                        // After an overrun nothing is admitted before the day turns.
                        let refusal = format!("{refusal:?}");
                        let retry = format!("retry_after_seconds: {}", before.budget_reset_seconds);
                        let until_midnight = refusal.starts_with("BudgetExhausted") && refusal.contains(&retry);
                        let other_limit = refusal.starts_with("RateLimited") || refusal.starts_with("TooManyStreams");
                        prop_assert!(other_limit || until_midnight, "{}", refusal);
                    }
                }
            }
            if let (Some(spent), Some((id, reserved))) = (finish_with, open.first().copied()) {
                state.finish(&limits, id, Spend { tokens: spent, nano_usd: spent * 150 }, now);
                open.remove(0);
                used += spent;
                overrun_today |= spent > reserved;
            }
            let standing = state.standing(&limits, now);
            // Whatever is charged is what was used: an overrun is not clamped to its reservation.
            prop_assert_eq!(standing.used_tokens, used);
            prop_assert_eq!(standing.used_nano_usd, used * 150);
            prop_assert_eq!(standing.reserved_tokens, open.iter().map(|(_, reserved)| reserved).sum::<u64>());
            if !overrun_today {
                prop_assert!(standing.used_tokens + standing.reserved_tokens <= 1_000);
                prop_assert!(standing.used_nano_usd + standing.reserved_nano_usd <= 100_000);
            }
            if standing.used_tokens > 1_000 {
                prop_assert!(overrun_today, "only a settlement past its reservation passes the budget");
                let nothing = Ask { tokens: 0, stream: false, nano_usd: 0 };
                prop_assert!(state.clone().admit(&limits, nothing, now).is_err(), "admitted after an overrun");
            }
            prop_assert!(standing.open_streams <= 2);
            prop_assert!(admitted_at.iter().filter(|&&at| at > now - 10_000).count() <= 5);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Valid requests, mutated: the policy's invariants on requests it accepts.
//
// Arbitrary JSON (above) almost never makes a request the policy accepts, so the invariants of
// an accepted request need bodies built to be valid, with at most one deliberate break. Each
// case knows whether it should be accepted; the test checks that verdict, a minimum acceptance
// rate (so the invariants are really exercised), and on every accepted request the reservation
// computed here from what is forwarded.

/// A user id that no generated text contains (`|` is in no alphabet below), so finding it in a
/// forwarded body can only mean the proxy forwarded it.
const SUB: &str = "user|7";
const MAX_OUTPUT: u64 = 2_000;
const MAX_N: u64 = 3;
const MAX_IMAGES: u64 = 2;
const IMAGE_TOKENS: u64 = 1_000;
const WEB_SEARCH_TOKENS: u64 = 12_000;
const MAX_TOOL_CALLS: u64 = 3;
const MODELS: [&str; 2] = ["gpt-4o-mini", "gpt-4.1-nano"];

/// The two operators: `open` allows images, web search, stored responses and their
/// continuations; the other keeps every default (none of them).
fn policy_config(open: bool) -> Config {
    let mut vars = vec![
        ("JWT_SECRET", SECRET.to_owned()),
        ("ALLOWED_MODELS", MODELS.join(",")),
        ("MAX_OUTPUT_TOKENS", MAX_OUTPUT.to_string()),
        ("MAX_N", MAX_N.to_string()),
        ("DAILY_BUDGET_USD", "5".to_owned()),
        ("IMAGE_INPUT_RESERVE_TOKENS", IMAGE_TOKENS.to_string()),
    ];
    if open {
        vars.extend([
            ("MAX_IMAGE_INPUTS", MAX_IMAGES.to_string()),
            ("ALLOWED_HOSTED_TOOLS", format!("web_search:{WEB_SEARCH_TOKENS}")),
            ("MAX_HOSTED_TOOL_CALLS", MAX_TOOL_CALLS.to_string()),
            ("RESPONSES_STORE", "true".to_owned()),
            ("ALLOW_STORED_CONTEXT", "true".to_owned()),
        ]);
    }
    Config::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Responses,
    Embeddings,
    GenerateText,
}

/// A generated request and what the policy must make of it.
#[derive(Debug, Clone)]
struct Case {
    route: Route,
    open: bool,
    body: Value,
    /// Image inputs in the body.
    images: u64,
    /// Why it must be refused (empty: it must be accepted); with one reason, a word the
    /// refusal names.
    refused_for: Vec<&'static str>,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![8 => "[a-z][a-z .,]{0,80}", 1 => "[a-z][a-z ]{200,1200}"]
}

fn output_cap_value() -> impl Strategy<Value = Option<u64>> {
    // Up to a quarter past the cap: one value in five that are set is refused.
    prop::option::weighted(0.5, 1..=MAX_OUTPUT + MAX_OUTPUT / 4)
}

/// One of the hosted-tool choices: none, a function tool, the web_search tool, and (chat only)
/// a search model's `web_search_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tools {
    None,
    Function,
    WebSearch,
    SearchOptions,
}

fn tools(chat: bool) -> impl Strategy<Value = Tools> {
    let options = if chat { 1 } else { 0 };
    prop_oneof![5 => Just(Tools::None), 2 => Just(Tools::Function), 2 => Just(Tools::WebSearch), options => Just(Tools::SearchOptions)]
}

fn chat_case() -> impl Strategy<Value = Case> {
    let message = (
        prop::sample::select(vec!["user", "user", "system", "developer", "assistant"]),
        text(),
        any::<bool>(),
    );
    (
        (0usize..2, prop::collection::vec(message, 1..6), prop::option::weighted(0.2, 0u64..=MAX_IMAGES + 1)),
        (output_cap_value(), output_cap_value(), prop::option::weighted(0.3, 1..=MAX_N + 1)),
        (prop::option::of(any::<bool>()), prop::option::of(any::<bool>()), tools(true)),
        (any::<bool>(), any::<bool>(), prop::option::weighted(0.2, 0usize..8)),
    )
        .prop_map(|((model, messages, images), (max_completion, max_tokens, n), (stream, usage, tools), (client_user, open, broken))| {
            let mut refused_for = Vec::new();
            let images = images.unwrap_or(0);
            let last = messages.len() - 1;
            let messages: Vec<Value> = messages
                .into_iter()
                .enumerate()
                .map(|(index, (role, text, parts))| {
                    if index == last && (parts || images > 0) {
                        let mut content = vec![json!({"type": "text", "text": text})];
                        content.extend((0..images).map(|i| json!({"type": "image_url", "image_url": {"url": format!("https://example.com/{i}.png")}})));
                        json!({"role": "user", "content": content})
                    } else {
                        json!({"role": role, "content": text})
                    }
                })
                .collect();
            if images > if open { MAX_IMAGES } else { 0 } {
                refused_for.push("image");
            }
            let mut body = json!({"model": MODELS[model], "messages": messages});
            for (field, value) in [("max_completion_tokens", max_completion), ("max_tokens", max_tokens)] {
                if let Some(value) = value {
                    body[field] = json!(value);
                    if value > MAX_OUTPUT {
                        refused_for.push(field);
                    }
                }
            }
            if let Some(n) = n {
                body["n"] = json!(n);
                if n > MAX_N {
                    refused_for.push("\"n\"");
                }
            }
            if let Some(stream) = stream {
                body["stream"] = json!(stream);
            }
            if let Some(include_usage) = usage {
                body["stream_options"] = json!({"include_usage": include_usage});
            }
            match tools {
                Tools::None => {}
                Tools::Function => body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]),
                Tools::WebSearch => body["tools"] = json!([{"type": "web_search"}]),
                Tools::SearchOptions => body["web_search_options"] = json!({}),
            }
            if matches!(tools, Tools::WebSearch | Tools::SearchOptions) && !open {
                refused_for.push("web_search");
            }
            if client_user {
                body["user"] = json!(SUB);
            }
            if let Some(broken) = broken {
                let (field, value, reason) = [
                    ("model", json!("gpt-4o"), "ModelNotAllowed"),
                    ("stream", json!("yes"), "stream"),
                    ("prediction", json!({"type": "content", "content": "x"}), "prediction"),
                    ("audio", json!({"voice": "alloy"}), "audio"),
                    ("service_tier", json!("flex"), "service_tier"),
                    ("modalities", json!(["text", "audio"]), "modalities"),
                    ("n", json!(0), "\"n\""),
                    ("messages", json!([{"role": "boss", "content": "hi"}]), "role"),
                ][broken].clone();
                body[field] = value;
                // The break replaces its field: a reason the field gave before is gone.
                let replaced = |r: &str| (field == "n" && r == "\"n\"") || (field == "messages" && r == "image");
                refused_for.retain(|&r| !replaced(r));
                refused_for.push(reason);
            }
            Case { route: Route::Chat, open, body, images, refused_for }
        })
}

fn responses_case() -> impl Strategy<Value = Case> {
    let item = (text(), any::<bool>());
    (
        (
            0usize..2,
            prop::option::weighted(0.7, prop::collection::vec(item, 1..5)),
            text(),
            prop::option::weighted(0.2, 0u64..=MAX_IMAGES + 1),
        ),
        (
            prop::option::of(text()),
            output_cap_value(),
            prop::option::of(any::<bool>()),
            tools(false),
        ),
        (
            prop::option::weighted(0.5, 1..=MAX_TOOL_CALLS + 1),
            prop::option::of(any::<bool>()),
            prop::option::weighted(0.2, "resp_[a-z0-9]{4,20}"),
        ),
        (any::<bool>(), any::<bool>(), prop::option::weighted(0.2, 0usize..6)),
    )
        .prop_map(
            |(
                (model, items, input, images),
                (instructions, max_output, stream, tools),
                (max_calls, store, previous),
                (client_user, open, broken),
            )| {
                let mut refused_for = Vec::new();
                let images = images.unwrap_or(0);
                let input = match items {
                    None if images == 0 => json!(input),
                    items => {
                        let mut items: Vec<Value> = items
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(text, parts)| {
                                if parts {
                                    json!({"role": "user", "content": [{"type": "input_text", "text": text}]})
                                } else {
                                    json!({"role": "user", "content": text})
                                }
                            })
                            .collect();
                        let mut content = vec![json!({"type": "input_text", "text": input})];
                        content.extend((0..images).map(
                            |i| json!({"type": "input_image", "image_url": format!("https://example.com/{i}.png")}),
                        ));
                        items.push(json!({"role": "user", "content": content}));
                        json!(items)
                    }
                };
                if images > if open { MAX_IMAGES } else { 0 } {
                    refused_for.push("image");
                }
                let mut body = json!({"model": MODELS[model], "input": input});
                if let Some(instructions) = instructions {
                    body["instructions"] = json!(instructions);
                }
                if let Some(value) = max_output {
                    body["max_output_tokens"] = json!(value);
                    if value > MAX_OUTPUT {
                        refused_for.push("max_output_tokens");
                    }
                }
                if let Some(stream) = stream {
                    body["stream"] = json!(stream);
                }
                match tools {
                    Tools::None | Tools::SearchOptions => {}
                    Tools::Function => {
                        body["tools"] =
                            json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}])
                    }
                    Tools::WebSearch => body["tools"] = json!([{"type": "web_search"}]),
                }
                if let Some(calls) = max_calls {
                    body["max_tool_calls"] = json!(calls);
                    if tools == Tools::WebSearch && open && calls > MAX_TOOL_CALLS {
                        refused_for.push("max_tool_calls");
                    }
                }
                if tools == Tools::WebSearch && !open {
                    refused_for.push("web_search");
                }
                if let Some(store) = store {
                    body["store"] = json!(store);
                }
                if let Some(previous) = previous {
                    body["previous_response_id"] = json!(previous);
                    if !open {
                        refused_for.push("previous_response_id");
                    }
                }
                if client_user {
                    body["safety_identifier"] = json!(SUB);
                }
                // With stored context a stored item is a reference the user's object checks,
                // not a refusal of the policy's (tests/e2e/stored-context.test.mjs).
                let broken = broken.filter(|&broken| !(open && broken == 5));
                if let Some(broken) = broken {
                    let (field, value, reason) = [
                        ("model", json!("gpt-4o"), "ModelNotAllowed"),
                        ("background", json!(true), "background"),
                        ("conversation", json!("conv_1"), "conversation"),
                        ("prompt", json!({"id": "pmpt_1"}), "prompt"),
                        ("instructions", json!(7), "instructions"),
                        (
                            "input",
                            json!([{"type": "item_reference", "id": "msg_1"}]),
                            "stored item",
                        ),
                    ][broken]
                        .clone();
                    body[field] = value;
                    if field == "input" {
                        refused_for.retain(|&r| r != "image");
                    }
                    refused_for.push(reason);
                }
                Case {
                    route: Route::Responses,
                    open,
                    body,
                    images,
                    refused_for,
                }
            },
        )
}

fn embeddings_case() -> impl Strategy<Value = Case> {
    let input = prop_oneof![
        text().prop_map(Value::from),
        prop::collection::vec(text(), 1..6).prop_map(Value::from),
        prop::collection::vec(prop::collection::vec(0u32..100_000, 1..20), 1..4).prop_map(|tokens| json!(tokens)),
    ];
    (
        0usize..2,
        input,
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.2, 0usize..3),
    )
        .prop_map(|(model, input, client_user, open, broken)| {
            let mut body = json!({"model": MODELS[model], "input": input});
            if client_user {
                body["user"] = json!(SUB);
            }
            let mut refused_for = Vec::new();
            if let Some(broken) = broken {
                let (field, value, reason) = [
                    ("model", json!("text-embedding-3-large"), "ModelNotAllowed"),
                    ("input", json!([]), "input"),
                    ("input", json!([{"text": "x"}]), "input"),
                ][broken]
                    .clone();
                body[field] = value;
                refused_for.push(reason);
            }
            Case {
                route: Route::Embeddings,
                open,
                body,
                images: 0,
                refused_for,
            }
        })
}

fn generate_text_case() -> impl Strategy<Value = Case> {
    let prompt = prop_oneof![4 => text(), 1 => text().prop_map(|t| format!("<p>{t}</p><br/>"))];
    (prompt, any::<bool>(), prop::option::weighted(0.2, 0usize..3)).prop_map(|(prompt, open, broken)| {
        let mut body = json!({"userPrompt": prompt});
        let mut refused_for = Vec::new();
        if let Some(broken) = broken {
            let (value, reason) = [
                (json!("  "), "userPrompt"),
                (json!(5), "userPrompt"),
                (Value::Null, "userPrompt"),
            ][broken]
                .clone();
            body["userPrompt"] = value;
            refused_for.push(reason);
        }
        Case {
            route: Route::GenerateText,
            open,
            body,
            images: 0,
            refused_for,
        }
    })
}

/// The nano-USD price per million tokens (input, output) of the default prices.
fn price_of(model: &str) -> (u64, u64) {
    match model {
        "gpt-4o-mini" => (150_000_000, 600_000_000),
        "gpt-4.1-nano" => (100_000_000, 400_000_000),
        other => panic!("no price for {other}"),
    }
}

/// What the test reads of an accepted request (`ApiRequest` is not exported by name).
struct Accepted<'a> {
    upstream_body: &'a str,
    model: &'a str,
    continues: Option<&'a str>,
    reserve_tokens: u64,
    reserve_nano_usd: u64,
    no_usage: Spend,
    stream: bool,
    client_wants_usage: bool,
    records_response: bool,
}

/// Checks an accepted request against the README's cost model, computed here from what is
/// forwarded: the reservation, its dollar worst case, the no-usage charge, what is never sent.
fn check_accepted(case: &Case, request: &Accepted) -> Result<(), TestCaseError> {
    let forwarded: Value = serde_json::from_str(request.upstream_body).unwrap();
    let body_bytes = request.upstream_body.len() as u64;
    prop_assert_eq!(forwarded["model"].as_str(), Some(request.model));
    prop_assert!(MODELS.contains(&request.model));
    // The user id: never forwarded, in any field; an HMAC of it identifies the user upstream.
    prop_assert!(!request.upstream_body.contains(SUB), "the raw sub was forwarded");
    let id_field = if case.route == Route::Embeddings {
        "user"
    } else {
        "safety_identifier"
    };
    prop_assert!(
        forwarded[id_field].as_str().is_some_and(|id| id.len() == 43),
        "{}",
        id_field
    );
    // Nothing that cannot be priced.
    for field in ["background", "conversation", "prompt", "prediction", "audio"] {
        prop_assert!(forwarded[field].is_null() || forwarded[field] == false, "{}", field);
    }
    prop_assert!(forwarded["service_tier"].is_null());
    prop_assert_eq!(forwarded["previous_response_id"].as_str(), request.continues);
    prop_assert!(request.continues.is_none() || case.open);

    // The output cap: present, at most MAX_OUTPUT_TOKENS; the reservation counts the largest.
    let cap_fields: &[&str] = match case.route {
        Route::Chat | Route::GenerateText => &["max_completion_tokens", "max_tokens"],
        Route::Responses => &["max_output_tokens"],
        Route::Embeddings => &[],
    };
    let caps: Vec<u64> = cap_fields.iter().filter_map(|f| forwarded[*f].as_u64()).collect();
    prop_assert!(caps.iter().all(|&cap| (1..=MAX_OUTPUT).contains(&cap)), "{:?}", caps);
    prop_assert_eq!(
        caps.is_empty(),
        case.route == Route::Embeddings,
        "an output cap is always set"
    );
    let n = forwarded["n"].as_u64().unwrap_or(1);
    let output = caps.iter().max().copied().unwrap_or(0) * n;

    // Hosted tools: one reserved call in chat, `max_tool_calls` (forced to a bound) in Responses.
    let per_call = match case.route {
        Route::Chat => {
            let web = forwarded["tools"][0]["type"] == "web_search" || !forwarded["web_search_options"].is_null();
            if web {
                WEB_SEARCH_TOKENS
            } else {
                0
            }
        }
        Route::Responses if forwarded["tools"][0]["type"] == "web_search" => WEB_SEARCH_TOKENS,
        Route::Responses | Route::Embeddings | Route::GenerateText => 0,
    };
    let calls = match case.route {
        Route::Responses if per_call > 0 => {
            let calls = forwarded["max_tool_calls"].as_u64().unwrap_or(0);
            prop_assert!((1..=MAX_TOOL_CALLS).contains(&calls), "max_tool_calls {}", calls);
            calls
        }
        Route::Chat | Route::Responses | Route::Embeddings | Route::GenerateText => u64::from(per_call > 0),
    };
    // A continuation reads its stored context, up to the model's context window.
    let stored = match (request.continues, request.model) {
        (None, _) => 0,
        (Some(_), "gpt-4o-mini") => 128_000,
        (Some(_), _) => 1_047_576,
    };
    let input = (body_bytes + case.images * IMAGE_TOKENS + calls * per_call).max(stored);
    let input_side = input * (calls + 1);
    // Each hosted call's fee is dollars, the same on every model: $0.01 a web search.
    let fees_nano_usd = if per_call > 0 { calls * 10_000_000 } else { 0 };
    prop_assert!(
        request.reserve_tokens >= body_bytes + output,
        "reservation below bytes + output cap × n"
    );
    prop_assert_eq!(
        request.reserve_tokens,
        input_side + output,
        "the reservation of {:?}",
        case.route
    );
    let (input_price, output_price) = price_of(request.model);
    let worst_usd = (u128::from(input_side) * u128::from(input_price) + u128::from(output) * u128::from(output_price))
        .div_ceil(1_000_000) as u64;
    prop_assert_eq!(
        request.reserve_nano_usd,
        worst_usd + fees_nano_usd,
        "the dollar worst case"
    );
    // Without a usage report the whole reservation is charged, in tokens and in dollars.
    prop_assert_eq!(
        request.no_usage,
        Spend {
            tokens: request.reserve_tokens,
            nano_usd: request.reserve_nano_usd
        }
    );

    match case.route {
        Route::Chat | Route::GenerateText => {
            prop_assert_eq!(request.stream, forwarded["stream"] == true);
            if request.stream {
                // Upstream always reports usage on a stream; the client sees it only if it asked.
                prop_assert_eq!(&forwarded["stream_options"]["include_usage"], &json!(true));
                prop_assert_eq!(
                    request.client_wants_usage,
                    case.body["stream_options"]["include_usage"] == true
                );
            }
            prop_assert!(!request.records_response);
        }
        Route::Responses => {
            // Stored responses: only with RESPONSES_STORE; recorded for their user only then.
            let client_store = case.body["store"].as_bool();
            if case.open {
                prop_assert_eq!(&forwarded["store"], &case.body["store"]);
                prop_assert_eq!(request.records_response, client_store != Some(false));
            } else {
                prop_assert_eq!(&forwarded["store"], &json!(false), "store must be forced false");
                prop_assert!(!request.records_response);
            }
        }
        Route::Embeddings => prop_assert!(!request.stream),
    }
    Ok(())
}

#[test]
fn every_accepted_request_is_reserved_in_full_and_forwards_nothing_unpriced() {
    use openai_edge_proxy::testing::policy as p;
    let configs = [policy_config(false), policy_config(true)];
    let case = prop_oneof![chat_case(), responses_case(), embeddings_case(), generate_text_case()];
    let tried = [Cell::new(0usize), Cell::new(0), Cell::new(0), Cell::new(0)];
    let accepted = [Cell::new(0usize), Cell::new(0), Cell::new(0), Cell::new(0)];
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 2_000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&case, |case| {
        let bytes = case.body.to_string().into_bytes();
        let config = &configs[usize::from(case.open)];
        let (index, parsed) = match case.route {
            Route::Chat => (0, p::parse_chat_request(&bytes, config, SUB)),
            Route::Responses => (1, p::parse_responses_request(&bytes, config, SUB)),
            Route::Embeddings => (2, p::parse_embeddings_request(&bytes, config, SUB)),
            Route::GenerateText => (3, p::parse_generate_text(&bytes, config, SUB)),
        };
        tried[index].set(tried[index].get() + 1);
        match (parsed, case.refused_for.as_slice()) {
            (Ok(request), []) => {
                accepted[index].set(accepted[index].get() + 1);
                let accepted = Accepted {
                    upstream_body: request.upstream_body(),
                    model: &request.model,
                    continues: request.continues.as_deref(),
                    reserve_tokens: request.reserve_tokens,
                    reserve_nano_usd: request.reserve_nano_usd,
                    no_usage: request.tariff().without_usage(),
                    stream: request.stream,
                    client_wants_usage: request.client_wants_usage,
                    records_response: request.records_response,
                };
                check_accepted(&case, &accepted)?;
            }
            (Ok(_), reasons) => prop_assert!(false, "accepted, though it must be refused for {:?}", reasons),
            (Err(error), []) => prop_assert!(false, "refused: {:?}", error),
            (Err(error), [reason]) => {
                let detail = format!("{error:?}").to_lowercase();
                prop_assert!(
                    detail.contains(&reason.to_lowercase()),
                    "refused for {} but not for {}",
                    detail,
                    reason
                );
            }
            (Err(_), _) => {}
        }
        Ok(())
    });
    result.unwrap();
    let rates: Vec<f64> = tried
        .iter()
        .zip(&accepted)
        .map(|(t, a)| a.get() as f64 / t.get().max(1) as f64)
        .collect();
    let total =
        accepted.iter().map(Cell::get).sum::<usize>() as f64 / tried.iter().map(Cell::get).sum::<usize>() as f64;
    eprintln!(
        "acceptance: chat {:.2}, responses {:.2}, embeddings {:.2}, generate-text {:.2}, all {total:.2}",
        rates[0], rates[1], rates[2], rates[3]
    );
    assert!(total >= 0.5, "only {total:.2} of the generated requests were accepted");
    assert!(
        rates.iter().all(|&rate| rate >= 0.3),
        "an endpoint's requests are mostly refused: {rates:?}"
    );
}

/// Image generation on a plan that allows every size the proxy knows for `model`.
fn image_config(model: &str) -> Config {
    let sizes = match model {
        "gpt-image-2" => "1024x1024,1024x1536,1536x1024,1536x864,2048x2048,3840x2160,auto",
        _ => "1024x1024,1024x1536,1536x1024,auto",
    };
    let model = model.to_owned();
    Config::from_lookup(move |name| match name {
        "JWT_SECRET" => Some(SECRET.into()),
        "IMAGE_MODELS" => Some(model.clone()),
        "IMAGE_SIZES" => Some(sizes.into()),
        "MAX_IMAGES_PER_REQUEST" => Some("4".into()),
        _ => None,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever quality and size upstream picks for `auto` (or an absent field), and however
    /// many partial images it streams, the bill (each image's output tokens, 100 per partial
    /// image, the prompt's tokens at most its bytes) never passes the reservation, in tokens
    /// or dollars.
    #[test]
    fn an_image_request_reserves_at_least_any_bill_it_allows(
        model in prop::sample::select(vec!["gpt-image-1.5", "gpt-image-2"]),
        quality in prop::option::of(prop::sample::select(vec!["low", "medium", "high", "auto"])),
        size in prop::option::of(prop::sample::select(vec!["1024x1024", "1024x1536", "1536x1024", "1536x864", "2048x2048", "3840x2160", "auto"])),
        n in 1u64..=4,
        stream in any::<bool>(),
        partial_images in 0u64..=3,
        prompt in "\\PC{1,200}",
    ) {
        use openai_edge_proxy::testing::images::{image_tokens, Usage, PARTIAL_IMAGE_TOKENS, QUALITIES, STANDARD_SIZES};
        let mut body = json!({"model": model, "prompt": prompt, "n": n, "stream": stream, "partial_images": partial_images});
        if let Some(quality) = quality {
            body["quality"] = json!(quality);
        }
        if let Some(size) = size {
            body["size"] = json!(size);
        }
        let parsed = policy::parse_image_request(body.to_string().as_bytes(), &image_config(model), "alice");
        let known_size = size.is_none_or(|size| size == "auto" || image_tokens(model, "low", size).is_some());
        let Ok(request) = parsed else {
            prop_assert!(!known_size || (stream && n > 1) || prompt.trim().is_empty(), "refused: {:?}", parsed.err());
            return Ok(());
        };
        prop_assert!(known_size && !(stream && n > 1));
        let qualities: Vec<&str> = match quality {
            None | Some("auto") => QUALITIES.to_vec(),
            Some(quality) => vec![quality],
        };
        let sizes: Vec<&str> = match size {
            None | Some("auto") => STANDARD_SIZES.to_vec(),
            Some(size) => vec![size],
        };
        let partial_tokens = if stream { partial_images * PARTIAL_IMAGE_TOKENS } else { 0 };
        let prompt_tokens = prompt.len() as u64;
        for quality in &qualities {
            for size in &sizes {
                let output_tokens = n * (image_tokens(model, quality, size).unwrap() + partial_tokens);
                let usage: Usage = serde_json::from_value(json!({
                    "input_tokens": prompt_tokens,
                    "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                    "output_tokens": output_tokens,
                    "total_tokens": prompt_tokens + output_tokens,
                })).unwrap();
                let bill = request.tariff().with_usage(&usage);
                prop_assert!(bill.tokens <= request.reserve_tokens, "{} {}: {} > {} tokens", quality, size, bill.tokens, request.reserve_tokens);
                prop_assert!(bill.nano_usd <= request.reserve_nano_usd, "{} {}: {} > {} nano-USD", quality, size, bill.nano_usd, request.reserve_nano_usd);
            }
        }
    }
}
