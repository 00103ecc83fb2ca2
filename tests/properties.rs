//! Invariants of the parsers and the limiter over generated inputs: no panic on any input
//! (a panic can take down the isolate and the requests in flight), and the same answers
//! however a stream is split.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
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
use serde_json::{json, Value};

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

    #[test]
    fn no_sequence_of_requests_passes_the_limits(
        steps in prop::collection::vec((0u64..400, any::<bool>(), 0i64..5_000, prop::option::of(0u64..400)), 1..80),
    ) {
        let limits = Limits {
            rate: Some(RateLimit { requests: 5, window: std::time::Duration::from_secs(10) }),
            max_streams: Some(2),
            daily_tokens: Some(1_000),
            daily_nano_usd: Some(100_000),
        };
        let mut state = QuotaState::default();
        let mut now = 1_800_000_000_000i64;
        let mut open = Vec::new();
        let mut admitted_at = Vec::new();
        for (tokens, stream, step_ms, finish_with) in steps {
            now += step_ms;
            // Some price per token, as the policy's worst case would compute it.
            if let Ok(reservation) = state.admit(&limits, Ask { tokens, stream, nano_usd: tokens * 150 }, now) {
                admitted_at.push(now);
                open.push((reservation.id, tokens));
            }
            if let (Some(used), Some((id, reserved))) = (finish_with, open.first().copied()) {
                // Upstream never reports more than the worst case that was reserved.
                let used = used.min(reserved);
                state.finish(&limits, id, Spend { tokens: used, nano_usd: used * 150 }, now);
                open.remove(0);
            }
            let standing = state.standing(&limits, now);
            prop_assert!(standing.used_tokens + standing.reserved_tokens <= 1_000);
            prop_assert!(standing.used_nano_usd + standing.reserved_nano_usd <= 100_000);
            prop_assert!(standing.open_streams <= 2);
            prop_assert!(admitted_at.iter().filter(|&&at| at > now - 10_000).count() <= 5);
        }
    }
}
