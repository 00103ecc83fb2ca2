//! Arbitrary values for the vars and secrets: never a panic; an accepted configuration has
//! every limit in its range (a zero limit would refuse every request) and an http(s) upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openai_edge_proxy::testing::config::Config;

const NAMES: &[&str] = &[
    "UPSTREAM_BASE_URL",
    "ALLOWED_ORIGINS",
    "ALLOWED_MODELS",
    "MAX_BODY_BYTES",
    "MAX_OUTPUT_TOKENS",
    "JWT_SECRET",
    "JWKS_URL",
    "JWKS",
    "RATE_LIMIT_REQUESTS",
    "RATE_LIMIT_WINDOW_SECONDS",
    "DAILY_TOKEN_BUDGET",
    "GLOBAL_DAILY_TOKEN_BUDGET",
    "JWT_LEEWAY_SECONDS",
    "JWT_MAX_TTL_SECONDS",
    "LOG_LEVEL",
    "ALERT_WEBHOOK_URL",
    "UPSTREAM_RETRIES",
    "MAX_CONCURRENT_STREAMS",
];

// The input is the values, separated by newlines, in the order of NAMES.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let lookup = |name: &str| {
        NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i))
            .map(|v| v.to_string())
    };
    if let Ok(config) = Config::from_lookup(lookup) {
        assert!((1..=1 << 24).contains(&config.max_body_bytes));
        assert!(config.default_plan.request_limits.max_output_tokens >= 1);
        let rate = config
            .default_plan
            .user_limits
            .rate
            .expect("a user always has a rate limit");
        assert!(rate.requests >= 1 && rate.window.as_secs() >= 1);
        assert!(config
            .default_plan
            .user_limits
            .max_streams
            .is_some_and(|streams| streams >= 1));
        assert!(config
            .default_plan
            .user_limits
            .daily_tokens
            .is_some_and(|tokens| tokens >= 1));
        assert!(config.upstream_base_url.starts_with("https://") || config.upstream_base_url.starts_with("http://"));
        assert!(!config.upstream_base_url.ends_with('/'));
    }
});
