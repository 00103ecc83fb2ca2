//! Arbitrary bytes as a request body, through every route's policy: never a panic, and what
//! is accepted goes upstream as JSON with an allowed model, a reservation that covers it, a
//! no-usage charge of at least its bytes / 4, and none of the fields that cannot be priced.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openai_edge_proxy::testing::config::Config;
use openai_edge_proxy::testing::policy;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_lookup(|name| match name {
            "ALLOWED_MODELS" => Some("gpt-4o-mini,text-embedding-3-small".to_owned()),
            "JWT_SECRET" => Some("a-fuzzing-secret-that-is-32-bytes-long".to_owned()),
            _ => None,
        })
        .expect("config")
    })
}

fuzz_target!(|body: &[u8]| {
    let config = config();
    for parse in [
        policy::parse_chat_request,
        policy::parse_responses_request,
        policy::parse_embeddings_request,
        policy::parse_generate_text,
    ] {
        if let Ok(request) = parse(body, config, "alice") {
            let forwarded: serde_json::Value =
                serde_json::from_str(request.upstream_body()).expect("forwarded body is JSON");
            let body_bytes = request.upstream_body().len() as u64;
            assert!(config
                .default_plan
                .is_model_allowed(forwarded["model"].as_str().expect("model is set")));
            assert!(request.reserve_tokens >= body_bytes);
            // Without usage the whole body is charged, and never more than was reserved.
            // Without usage the whole reservation is charged: nothing unmeasured slips by.
            assert_eq!(request.tariff().without_usage().tokens, request.reserve_tokens);
            for field in [
                "background",
                "previous_response_id",
                "conversation",
                "prompt",
                "prediction",
            ] {
                assert!(
                    forwarded[field].is_null() || forwarded[field] == false,
                    "{field} went upstream"
                );
            }
        }
    }
});
