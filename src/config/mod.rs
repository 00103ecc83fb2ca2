//! Typed configuration, parsed once per isolate from the Worker's vars and secrets.
//!
//! Defaults live here and only here; docs/configuration.md's table mirrors them. A bad value
//! is a `ProxyError::Misconfigured` naming the variable (for the log), never a panic. Each
//! variable's name is written once, at the `Vars` getter that reads it, inside the constructor
//! of its section.

mod alerts;
mod guests;
mod images;
mod keys;
mod plans;
mod vars;
pub mod voice;

use std::collections::BTreeMap;
use std::time::Duration;

pub use alerts::AlertSettings;
pub use guests::GuestSettings;
pub use keys::KeySources;
use vars::{parse_origin, DynLookup, Vars};

use crate::auth::guest::GUEST_PLAN;
use crate::auth::{ClaimRules, MIN_HMAC_SECRET_BYTES};
use crate::budget;
use crate::budget::plans::{Plan, DEFAULT_PLAN};
use crate::budget::prices::Prices;
use crate::budget::quota::Limits;
use crate::error::ProxyError;
use crate::request;
use crate::request::attribution::SafetyKey;
use crate::request::voice::VoiceSettings;
use crate::routes::ApiRoute;
use crate::secret::Secret;
use keys::{admin_token, claim_rules, key_sources};
use plans::{check_prices, global_limits, guest_plan, plan};
use vars::Lookup;

pub const DEFAULT_UPSTREAM_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
pub const DEFAULT_JWT_MAX_TTL_SECONDS: i64 = 86_400;
/// Admin bearer tokens are compared in constant time, and must be hard to guess.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;
const RANDOM_SECRET_HINT: &str = "use a random one, e.g. `openssl rand -base64 48`";

/// The least severe log lines written (`LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    const CHOICES: [(&'static str, LogLevel); 4] = [
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ];

    pub fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, level)| *level == self)
            .map_or("info", |(name, _)| name)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Base of the OpenAI-compatible API, without a trailing slash.
    pub upstream_base_url: String,
    /// Exact browser origins (`scheme://host[:port]`) allowed to call the proxy.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// The cap of a transcription's multipart body (`MAX_AUDIO_BYTES`), the audio file in it.
    pub max_audio_bytes: usize,
    /// The top-level per-user variables (`ALLOWED_MODELS`, limits, budgets): plan `default`.
    pub default_plan: Plan,
    /// `PLANS`, each built over the top-level variables.
    pub plans: BTreeMap<String, Plan>,
    /// What every request is checked against besides its plan.
    pub requests: request::Settings,
    /// How long to wait for upstream's response headers.
    pub upstream_timeout: Duration,
    /// How long a stream may go silent before the proxy ends it.
    pub stream_idle_timeout: Duration,
    /// Extra attempts after an upstream 429/500/502/503, before anything reached the client.
    pub upstream_retries: u32,
    /// What all users together may use per day (`GLOBAL_DAILY_TOKEN_BUDGET`,
    /// `GLOBAL_DAILY_BUDGET_USD`), if either is set.
    pub global_limits: Option<Limits>,
    /// Objects each day's usage index is spread over, by a hash of the `sub`
    /// (`USAGE_INDEX_SHARDS`).
    pub usage_index_shards: u32,
    /// What a user token's claims must satisfy.
    pub claim_rules: ClaimRules,
    pub keys: KeySources,
    pub log_level: LogLevel,
    /// Add the prompt's length (never its text) to log lines (`LOG_PROMPTS=true`).
    pub log_prompts: bool,
    pub alerts: AlertSettings,
    admin_token: Option<Secret>,
    openai_api_key: Option<Secret>,
    /// The key being rotated in (`OPENAI_API_KEY_NEXT`), tried when upstream refuses the first.
    openai_api_key_next: Option<Secret>,
    /// Guest access, when it is on.
    pub guest: Option<GuestSettings>,
    /// Voice calls, when a plan allows a voice model.
    pub voice: Option<VoiceSettings>,
    /// What the operator should hear about once per isolate (a half-configured feature).
    pub warnings: Vec<String>,
    /// Every secret read, registered by `Vars` as it read them.
    secrets: Vec<Secret>,
}

impl Config {
    /// Parses every variable and secret through `lookup` (name -> value, `None` when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ProxyError> {
        let vars = Vars::new(Box::new(lookup) as DynLookup);
        let default_plan = plan(DEFAULT_PLAN, &vars)?;
        let mut plans = overlaid_plans(&vars)?;
        let keys = key_sources(&vars)?;
        let (guest, guest_warning) = GuestSettings::from_vars(&vars, keys.jwt_secret())?;
        if guest.is_some() && !plans.contains_key(GUEST_PLAN) {
            plans.insert(GUEST_PLAN.to_owned(), guest_plan(&vars, default_plan.default_model())?);
        }
        let prices = Prices::parse(vars.text("MODEL_PRICES").as_deref())?;
        let global_limits = global_limits(&vars)?;
        let guest_global = guest.as_ref().and_then(|guest| guest.global_limits.as_ref());
        check_prices(&prices, &default_plan, &plans, global_limits.as_ref(), guest_global)?;
        let all_plans = std::iter::once(&default_plan).chain(plans.values());
        let voice = voice::voice_settings(&vars, all_plans, &prices)?;
        let requests = request::Settings {
            system_prompt: vars
                .raw("SYSTEM_PROMPT")
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned()),
            prices,
            safety_key: safety_key(&vars, &keys)?,
        };
        Ok(Config {
            upstream_base_url: vars
                .service_url("UPSTREAM_BASE_URL")?
                .unwrap_or_else(|| DEFAULT_UPSTREAM_BASE_URL.to_owned()),
            allowed_origins: allowed_origins(&vars)?,
            max_body_bytes: vars.number("MAX_BODY_BYTES", 65_536, 1..=1 << 24)?,
            // OpenAI takes files up to 25 MB; the default keeps an isolate's 128 MB for others.
            max_audio_bytes: vars.number("MAX_AUDIO_BYTES", 4 << 20, 1..=25_000_000)?,
            default_plan,
            plans,
            requests,
            upstream_timeout: vars.millis("UPSTREAM_TIMEOUT_MS", 30_000, 1..=600_000)?,
            stream_idle_timeout: vars.millis("STREAM_IDLE_TIMEOUT_MS", 60_000, 1..=600_000)?,
            upstream_retries: vars.number("UPSTREAM_RETRIES", 1, 0..=3)?,
            global_limits,
            usage_index_shards: index_shards(&vars)?,
            claim_rules: claim_rules(&vars)?,
            keys,
            log_level: vars.choice("LOG_LEVEL", &LogLevel::CHOICES, LogLevel::default())?,
            log_prompts: vars.flag("LOG_PROMPTS", false)?,
            alerts: AlertSettings::from_vars(&vars)?,
            admin_token: admin_token(&vars)?,
            openai_api_key: vars.trimmed_secret("OPENAI_API_KEY"),
            openai_api_key_next: vars.trimmed_secret("OPENAI_API_KEY_NEXT"),
            guest,
            voice,
            warnings: guest_warning.into_iter().collect(),
            secrets: vars.secrets_read(),
        })
    }

    /// `USAGE_INDEX_SHARDS` alone, for users' objects' alarms: reading the whole config there
    /// would link a second copy of its parsing into the wasm.
    pub fn usage_index_shards(lookup: impl Fn(&str) -> Option<String>) -> Result<u32, ProxyError> {
        index_shards(&Vars::new(lookup))
    }

    /// The upstream key; its absence only matters on routes that call upstream.
    pub fn openai_api_key(&self) -> Result<&Secret, ProxyError> {
        self.openai_api_key.as_ref().ok_or_else(|| {
            ProxyError::misconfigured(
                "secret OPENAI_API_KEY is not set: run `wrangler secret put OPENAI_API_KEY` (or set it in .dev.vars locally)",
            )
        })
    }

    /// The key to try after upstream refused `openai_api_key` (a rotation in progress).
    pub fn openai_api_key_next(&self) -> Option<&Secret> {
        self.openai_api_key_next.as_ref()
    }

    /// Every secret value, so that text passed on from upstream can be scrubbed of them.
    pub fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(Secret::expose).collect()
    }

    /// The admin bearer token; without one the admin routes do not exist (404).
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    pub fn default_model(&self) -> &str {
        self.default_plan.default_model()
    }

    /// The most bytes a request body of `route` may have.
    pub fn body_limit(&self, route: ApiRoute) -> usize {
        match route {
            ApiRoute::Transcriptions => self.max_audio_bytes,
            ApiRoute::ChatCompletions
            | ApiRoute::Responses
            | ApiRoute::Embeddings
            | ApiRoute::GenerateText
            | ApiRoute::ImageGenerations
            | ApiRoute::Speech => self.max_body_bytes,
        }
    }

    /// The plan of that name: `default` (the top-level variables) or one of `PLANS`.
    pub fn plan(&self, name: &str) -> Result<&Plan, ProxyError> {
        if name == DEFAULT_PLAN {
            return Ok(&self.default_plan);
        }
        self.plans
            .get(name)
            .ok_or_else(|| ProxyError::UnknownPlan { plan: name.to_owned() })
    }

    /// The default plan and every plan of `PLANS`.
    pub fn all_plans(&self) -> impl Iterator<Item = &Plan> {
        std::iter::once(&self.default_plan).chain(self.plans.values())
    }

    /// Each plan's per-user limits, for the user's object to pick the one in force.
    pub fn plan_limits(&self) -> BTreeMap<String, Limits> {
        // Inserts, not `collect`: a BTreeMap built from an iterator brings a sort into the wasm.
        let mut limits = BTreeMap::new();
        for plan in self.all_plans() {
            limits.insert(plan.name.clone(), plan.user_limits);
        }
        limits
    }
}

/// `ALLOWED_ORIGINS`, each one checked. A loop, not `collect::<Result<_, _>>`: each such
/// collect brings its own adapter into the wasm.
fn allowed_origins(vars: &Vars<impl Lookup>) -> Result<Vec<String>, ProxyError> {
    let mut origins = Vec::new();
    for origin in vars.list("ALLOWED_ORIGINS").unwrap_or_default() {
        origins.push(parse_origin(&origin)?);
    }
    Ok(origins)
}

/// `PLANS`: each plan's overlay over the top-level variables.
fn overlaid_plans(vars: &Vars<impl Lookup>) -> Result<BTreeMap<String, Plan>, ProxyError> {
    let mut plans = BTreeMap::new();
    for (name, overlay) in budget::plans::parse_overlays(vars.text("PLANS").as_deref())? {
        let overlaid = vars.overlaid(|variable: &str| overlay.get(variable).cloned());
        let built = plan(&name, &overlaid).map_err(|error| {
            ProxyError::misconfigured(format!(
                "PLANS: plan {name:?}: {}",
                error.log_detail().unwrap_or_default()
            ))
        })?;
        plans.insert(name, built);
    }
    Ok(plans)
}

/// The `safety_identifier` key: from `SAFETY_IDENTIFIER_SECRET`, else from `JWT_SECRET`.
fn safety_key(vars: &Vars<impl Lookup>, keys: &KeySources) -> Result<Option<SafetyKey>, ProxyError> {
    let own = vars.trimmed_secret("SAFETY_IDENTIFIER_SECRET");
    if own
        .as_ref()
        .is_some_and(|secret| secret.expose().len() < MIN_HMAC_SECRET_BYTES)
    {
        return Err(ProxyError::misconfigured(format!(
            "secret SAFETY_IDENTIFIER_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes: {RANDOM_SECRET_HINT}"
        )));
    }
    Ok(own
        .as_ref()
        .or(keys.jwt_secret())
        .map(|secret| SafetyKey::derive(secret.expose())))
}

/// Objects per day of the usage index (see `objects::usage_index`).
fn index_shards(vars: &Vars<impl Lookup>) -> Result<u32, ProxyError> {
    vars.number("USAGE_INDEX_SHARDS", 1, 1..=64)
}

#[cfg(test)]
impl Config {
    /// A config from these vars, with a JWT_SECRET unless they set a key source themselves.
    pub fn for_tests(pairs: &[(&str, &str)]) -> Result<Config, ProxyError> {
        let has_key_source = pairs
            .iter()
            .any(|(name, _)| name.starts_with("JWT_SECRET") || name.starts_with("JWKS"));
        Config::from_lookup(|name| match pairs.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => Some(value.to_string()),
            None if name == "JWT_SECRET" && !has_key_source => Some("a-test-secret-that-is-32-bytes-long!".into()),
            // The suites' arithmetic is written at gpt-4o-mini's prices.
            None if name == "ALLOWED_MODELS" => Some("gpt-4o-mini".into()),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::guest;
    use crate::budget::plans::RequestLimits;
    use crate::budget::quota::RateLimit;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ProxyError> {
        Config::for_tests(pairs)
    }

    fn detail(result: Result<Config, ProxyError>) -> String {
        result.unwrap_err().log_detail().unwrap()
    }

    #[test]
    fn defaults_apply_when_unset() {
        let config =
            Config::from_lookup(|name| (name == "JWT_SECRET").then(|| "a-test-secret-that-is-32-bytes-long!".into()))
                .unwrap();
        assert_eq!(config.upstream_base_url, DEFAULT_UPSTREAM_BASE_URL);
        assert_eq!(config.default_plan.allowed_models, ["gpt-6-luna"]);
        assert_eq!(config.default_model(), "gpt-6-luna");
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.max_body_bytes, 65_536);
        assert_eq!(config.requests.system_prompt, DEFAULT_SYSTEM_PROMPT);
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        let config = config(&[
            ("ALLOWED_MODELS", "gpt-4o-mini, gpt-4.1-nano"),
            ("ALLOWED_ORIGINS", "https://app.example.com  http://localhost:5173/"),
        ])
        .unwrap();
        assert_eq!(config.default_plan.allowed_models, ["gpt-4o-mini", "gpt-4.1-nano"]);
        assert!(config.default_plan.is_model_allowed("gpt-4.1-nano"));
        assert!(!config.default_plan.is_model_allowed("gpt-4"));
        assert_eq!(
            config.allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
    }

    #[test]
    fn origins_must_be_exact_origins() {
        for bad in [
            "not a url",
            "*",
            "https://*.example.com",
            "ftp://example.com",
            "https://a.com/path",
            "https://u@a.com",
            "https://a.com:http",
        ] {
            let message = detail(config(&[("ALLOWED_ORIGINS", bad)]));
            assert!(message.starts_with("ALLOWED_ORIGINS"), "{bad}: {message}");
        }
        let config = config(&[("ALLOWED_ORIGINS", "HTTPS://App.Example.com:8443")]).unwrap();
        assert_eq!(config.allowed_origins, ["https://app.example.com:8443"]);
    }

    #[test]
    fn upstream_must_be_https_unless_loopback() {
        assert_eq!(
            config(&[("UPSTREAM_BASE_URL", "http://127.0.0.1:9999/v1/")])
                .unwrap()
                .upstream_base_url,
            "http://127.0.0.1:9999/v1"
        );
        assert!(config(&[("UPSTREAM_BASE_URL", "https://gateway.example.com/openai/v1")]).is_ok());
        for bad in [
            "http://evil.example.com/v1",
            "api.openai.com",
            "https://a.com/v1?x=1",
            "https://user:pw@a.com/v1",
        ] {
            assert!(
                detail(config(&[("UPSTREAM_BASE_URL", bad)])).starts_with("UPSTREAM_BASE_URL"),
                "{bad}"
            );
        }
    }

    #[test]
    fn quota_defaults_and_overrides() {
        let defaults = config(&[]).unwrap();
        assert_eq!(
            defaults.default_plan.request_limits,
            RequestLimits {
                max_output_tokens: 1024,
                max_n: 1,
                max_prompt_chars: 8000
            }
        );
        assert_eq!(
            defaults.default_plan.user_limits.rate,
            Some(RateLimit {
                requests: 20,
                window: Duration::from_secs(900)
            })
        );
        assert_eq!(
            (
                defaults.default_plan.user_limits.max_streams,
                defaults.default_plan.user_limits.daily_tokens
            ),
            (Some(2), Some(100_000))
        );
        assert!(defaults.global_limits.is_none());
        let custom = config(&[("RATE_LIMIT_REQUESTS", "5"), ("GLOBAL_DAILY_TOKEN_BUDGET", "5000000")]).unwrap();
        assert_eq!(custom.default_plan.user_limits.rate.unwrap().requests, 5);
        assert_eq!(custom.global_limits.unwrap().daily_tokens, Some(5_000_000));
        for name in [
            "RATE_LIMIT_REQUESTS",
            "MAX_CONCURRENT_STREAMS",
            "DAILY_TOKEN_BUDGET",
            "GLOBAL_DAILY_TOKEN_BUDGET",
            "MAX_N",
        ] {
            assert!(detail(config(&[(name, "0")])).starts_with(name), "{name}");
        }
    }

    #[test]
    fn upstream_resilience_settings() {
        let defaults = config(&[]).unwrap();
        assert_eq!(
            (
                defaults.upstream_timeout.as_millis(),
                defaults.stream_idle_timeout.as_millis(),
                defaults.upstream_retries
            ),
            (30_000, 60_000, 1)
        );
        assert!(detail(config(&[("UPSTREAM_RETRIES", "9")])).starts_with("UPSTREAM_RETRIES"));
        let rotating = config(&[
            ("OPENAI_API_KEY", "sk-old-key-1234567890"),
            ("OPENAI_API_KEY_NEXT", "sk-new-key-1234567890"),
        ])
        .unwrap();
        assert_eq!(
            rotating.openai_api_key_next().unwrap().expose(),
            "sk-new-key-1234567890"
        );
        let secrets = rotating.secrets();
        assert!(secrets.contains(&"sk-old-key-1234567890") && secrets.contains(&"sk-new-key-1234567890"));
        assert!(secrets.contains(&"a-test-secret-that-is-32-bytes-long!"));
    }

    #[test]
    fn a_dollar_budget_needs_a_fee_for_every_allowed_hosted_tool() {
        let budget = ("DAILY_BUDGET_USD", "1");
        assert!(config(&[budget, ("ALLOWED_HOSTED_TOOLS", "web_search:5000")]).is_ok());
        let unknown = detail(config(&[budget, ("ALLOWED_HOSTED_TOOLS", "image_generation:2000")]));
        assert!(
            unknown.contains("image_generation") && unknown.contains("DAILY_BUDGET_USD"),
            "{unknown}"
        );
        assert!(config(&[budget, ("ALLOWED_HOSTED_TOOLS", "image_generation:2000:0.25")]).is_ok());
        assert!(
            config(&[("ALLOWED_HOSTED_TOOLS", "image_generation:2000")]).is_ok(),
            "a token budget counts tokens: no fee needed"
        );
    }

    #[test]
    fn alert_settings() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.alerts.user.requests_per_hour, None);
        assert_eq!(defaults.alerts.global.budget_percent, Some(80));
        let set = config(&[
            ("ALERT_REQUESTS_PER_HOUR", "100"),
            ("ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X"),
        ])
        .unwrap();
        assert_eq!(set.alerts.user.requests_per_hour, Some(100));
        assert!(set.alerts.webhook_url.is_some());
        assert!(detail(config(&[("ALERT_WEBHOOK_URL", "http://example.com/hook")])).starts_with("ALERT_WEBHOOK_URL"));
    }

    #[test]
    fn log_settings() {
        let defaults = config(&[]).unwrap();
        assert_eq!((defaults.log_level, defaults.log_prompts), (LogLevel::Info, false));
        let verbose = config(&[("LOG_LEVEL", "debug"), ("LOG_PROMPTS", "true")]).unwrap();
        assert_eq!((verbose.log_level, verbose.log_prompts), (LogLevel::Debug, true));
        assert!(LogLevel::Warn > LogLevel::Info);
        assert!(detail(config(&[("LOG_LEVEL", "loud")])).starts_with("LOG_LEVEL"));
        assert!(detail(config(&[("LOG_PROMPTS", "yes")])).starts_with("LOG_PROMPTS"));
    }

    #[test]
    fn cost_settings_default_to_refusing_what_cannot_be_priced() {
        let defaults = config(&[]).unwrap();
        let rules = &defaults.default_plan.cost_rules;
        assert_eq!((rules.max_image_inputs, rules.image_input_reserve_tokens), (0, 48_169));
        assert!(rules.hosted_tools.is_empty());
        assert_eq!((rules.max_hosted_tool_calls, rules.responses_store), (1, false));
        let nano = config(&[("ALLOWED_MODELS", "gpt-4.1-nano")]).unwrap();
        assert_eq!(nano.default_plan.cost_rules.image_input_reserve_tokens, 3_779);
        let set = config(&[
            ("ALLOWED_HOSTED_TOOLS", "web_search:12000"),
            ("RESPONSES_STORE", "true"),
        ])
        .unwrap();
        assert_eq!(
            set.default_plan
                .cost_rules
                .hosted_tool("web_search")
                .unwrap()
                .per_call
                .tokens,
            12_000
        );
        assert!(set.default_plan.cost_rules.responses_store);
        for (name, bad) in [
            ("ALLOWED_HOSTED_TOOLS", "web_search"),
            ("RESPONSES_STORE", "yes"),
            ("MAX_IMAGE_INPUTS", "-1"),
            ("SAFETY_IDENTIFIER_SECRET", "short"),
        ] {
            assert!(detail(config(&[(name, bad)])).contains(name), "{name}");
        }
        let secret = "a-safety-secret-of-32-bytes-long!!";
        assert!(!defaults.default_plan.cost_rules.allow_stored_context);
        assert!(config(&[("SAFETY_IDENTIFIER_SECRET", secret)])
            .unwrap()
            .secrets()
            .contains(&secret));
    }

    #[test]
    fn stored_context_needs_stored_responses_and_a_context_window_for_every_allowed_model() {
        let both = [("RESPONSES_STORE", "true"), ("ALLOW_STORED_CONTEXT", "true")];
        assert!(config(&both).unwrap().default_plan.cost_rules.allow_stored_context);
        let alone = detail(config(&[("ALLOW_STORED_CONTEXT", "true")]));
        assert!(
            alone.contains("ALLOW_STORED_CONTEXT") && alone.contains("RESPONSES_STORE=true"),
            "{alone}"
        );
        let unknown_model = [both[0], both[1], ("ALLOWED_MODELS", "gpt-4o-mini,my-model")];
        let message = detail(config(&unknown_model));
        assert!(
            message.contains("\"my-model\"") && message.contains("MODEL_CONTEXT_TOKENS"),
            "{message}"
        );
        let stated = [
            both[0],
            both[1],
            ("ALLOWED_MODELS", "gpt-4o-mini,my-model"),
            ("MODEL_CONTEXT_TOKENS", "my-model:32000"),
        ];
        assert_eq!(
            config(&stated)
                .unwrap()
                .default_plan
                .cost_rules
                .context_window("my-model"),
            Some(32_000)
        );
        assert!(
            config(&[("ALLOWED_MODELS", "my-model")]).is_ok(),
            "no window is needed while stored context is off"
        );
        assert!(detail(config(&[("MODEL_CONTEXT_TOKENS", "my-model")])).starts_with("MODEL_CONTEXT_TOKENS"));
    }

    #[test]
    fn plans_overlay_the_top_level_variables() {
        let config = config(&[
            ("RATE_LIMIT_REQUESTS", "7"),
            ("DAILY_TOKEN_BUDGET", "5000"),
            (
                "PLANS",
                r#"{"free":{"RATE_LIMIT_REQUESTS":2},"pro":{"RATE_LIMIT_REQUESTS":"50","ALLOWED_MODELS":"gpt-4o-mini,gpt-4.1","DAILY_BUDGET_USD":1.5}}"#,
            ),
        ])
        .unwrap();
        let free = config.plan("free").unwrap();
        assert_eq!(free.user_limits.rate.unwrap().requests, 2);
        assert_eq!(
            free.user_limits.daily_tokens,
            Some(5000),
            "what a plan does not set is the top level's"
        );
        assert_eq!(free.allowed_models, ["gpt-4o-mini"]);
        let pro = config.plan("pro").unwrap();
        assert_eq!(pro.user_limits.rate.unwrap().requests, 50);
        assert!(pro.is_model_allowed("gpt-4.1") && !free.is_model_allowed("gpt-4.1"));
        assert_eq!(pro.user_limits.daily_nano_usd, Some(1_500_000_000));
        assert_eq!(config.plan("default").unwrap().user_limits.rate.unwrap().requests, 7);
        assert_eq!(
            config.plan("gold"),
            Err(ProxyError::UnknownPlan { plan: "gold".into() })
        );
        assert_eq!(config.plan_limits().len(), 3);
    }

    #[test]
    fn a_bad_value_in_a_plan_names_the_plan_and_the_variable() {
        let message = detail(config(&[("PLANS", r#"{"pro":{"RATE_LIMIT_REQUESTS":0}}"#)]));
        assert!(
            message.contains("pro") && message.contains("RATE_LIMIT_REQUESTS"),
            "{message}"
        );
        let unknown = detail(config(&[("PLANS", r#"{"pro":{"UPSTREAM_BASE_URL":"https://x"}}"#)]));
        assert!(unknown.contains("UPSTREAM_BASE_URL"), "{unknown}");
    }

    #[test]
    fn dollar_budgets_are_read_as_nano_dollars() {
        let config = config(&[("DAILY_BUDGET_USD", "0.25"), ("GLOBAL_DAILY_BUDGET_USD", "100")]).unwrap();
        assert_eq!(config.default_plan.user_limits.daily_nano_usd, Some(250_000_000));
        let global = config.global_limits.unwrap();
        assert_eq!(
            (global.daily_tokens, global.daily_nano_usd),
            (None, Some(100_000_000_000))
        );
        assert_eq!(
            Config::for_tests(&[]).unwrap().default_plan.user_limits.daily_nano_usd,
            None,
            "no dollar budget unless set"
        );
        for bad in ["0", "-1", "1e2", "ten", "0.0000000001"] {
            assert!(
                detail(config_with(("DAILY_BUDGET_USD", bad))).starts_with("DAILY_BUDGET_USD"),
                "{bad}"
            );
        }
    }

    fn config_with(pair: (&str, &str)) -> Result<Config, ProxyError> {
        config(&[pair])
    }

    #[test]
    fn a_model_without_a_price_under_a_dollar_budget_is_a_configuration_error() {
        let unpriced = [("ALLOWED_MODELS", "gpt-4o-mini,o3-pro")];
        assert!(config(&unpriced).is_ok(), "without a dollar budget a price is optional");
        let message = detail(config(&[unpriced[0], ("DAILY_BUDGET_USD", "1")]));
        assert!(message.contains("\"o3-pro\""), "{message}");
        let in_a_plan = detail(config(&[(
            "PLANS",
            r#"{"free":{"DAILY_BUDGET_USD":"0.1"},"pro":{"ALLOWED_MODELS":"o3-pro"}}"#,
        )]));
        assert!(in_a_plan.contains("o3-pro") && in_a_plan.contains("pro"), "{in_a_plan}");
        assert!(detail(config(&[unpriced[0], ("GLOBAL_DAILY_BUDGET_USD", "5")])).contains("o3-pro"));
        let priced = config(&[
            unpriced[0],
            ("DAILY_BUDGET_USD", "1"),
            ("MODEL_PRICES", r#"{"o3-pro":{"input":20,"output":80}}"#),
        ]);
        assert!(priced.is_ok());
    }

    #[test]
    fn audio_models_need_a_price_under_a_dollar_budget_and_guests_get_none() {
        let unpriced = [("SPEECH_MODELS", "tts-1,voice-x"), ("DAILY_BUDGET_USD", "1")];
        assert!(detail(config(&unpriced)).contains("\"voice-x\""));
        let priced = config(&[
            unpriced[0],
            unpriced[1],
            ("TRANSCRIBE_MODELS", "whisper-1"),
            (
                "MODEL_PRICES",
                r#"{"voice-x":{"input":0,"output":0,"per_million_characters":20}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(priced.default_plan.audio.speech_models, ["tts-1", "voice-x"]);
        assert_eq!(priced.default_plan.audio.max_audio_seconds, 600);
        assert_eq!(priced.max_audio_bytes, 4 << 20);
        assert_eq!(priced.body_limit(ApiRoute::Transcriptions), 4 << 20);
        assert_eq!(priced.body_limit(ApiRoute::Speech), 65_536);
        let guests = config(&[
            ("TRANSCRIBE_MODELS", "whisper-1"),
            ("TURNSTILE_SECRET_KEY", "1x0000000000000000000000000000000AA"),
            ("GUEST_TOKEN_SECRET", "a-guest-secret-that-is-32-bytes-long!"),
        ])
        .unwrap();
        assert!(guests.plan("guest").unwrap().audio.transcribe_models.is_empty());
        assert!(detail(config(&[("MAX_AUDIO_BYTES", "25000001")])).starts_with("MAX_AUDIO_BYTES"));
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(config(&[("MAX_BODY_BYTES", "1024")]).unwrap().max_body_bytes, 1024);
        for bad in ["0", "-5", "lots", "99999999999"] {
            assert!(
                detail(config(&[("MAX_BODY_BYTES", bad)])).starts_with("MAX_BODY_BYTES"),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_key_is_reported_by_name_without_panicking() {
        let config = config(&[]).unwrap();
        let error = config.openai_api_key().unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(error.log_detail().unwrap().contains("OPENAI_API_KEY"));
    }

    #[test]
    fn token_keys_fail_closed() {
        let none = Config::from_lookup(|_| None).unwrap_err();
        assert!(none.log_detail().unwrap().contains("JWT_SECRET"));
        let short = config(&[("JWT_SECRET", "too-short")])
            .unwrap()
            .keys
            .secret_key()
            .unwrap_err();
        assert!(short.log_detail().unwrap().contains("shorter than 32 bytes"));
        let ok = config(&[("JWT_SECRET", &"s".repeat(32)), ("JWT_HMAC_ALGORITHM", "HS512")]).unwrap();
        assert!(ok.keys.secret_key().unwrap().is_some());
        assert!(detail(config(&[("JWT_HMAC_ALGORITHM", "RS256")])).starts_with("JWT_HMAC_ALGORITHM"));
    }

    #[test]
    fn a_key_set_with_its_issuer_is_enough() {
        let config = config(&[
            ("JWKS_URL", "https://id.example.com/.well-known/jwks.json"),
            ("JWT_ISSUER", "https://id.example.com/"),
        ])
        .unwrap();
        assert!(config.keys.secret_key().unwrap().is_none());
        assert_eq!(
            config.keys.jwks_url.as_deref(),
            Some("https://id.example.com/.well-known/jwks.json")
        );
        assert_eq!(config.keys.jwks_cache, Duration::from_secs(600));
        assert!(detail(config_with_url("http://id.example.com/jwks")).starts_with("JWKS_URL"));
    }

    fn config_with_url(url: &str) -> Result<Config, ProxyError> {
        config(&[("JWKS_URL", url), ("JWT_ISSUER", "https://id.example.com/")])
    }

    #[test]
    fn a_key_set_without_an_issuer_is_a_configuration_error() {
        let inline = r#"{"keys":[]}"#;
        for key_set in [("JWKS_URL", "https://id.example.com/jwks.json"), ("JWKS", inline)] {
            let message = detail(config(&[key_set]));
            assert!(message.starts_with("JWT_ISSUER is required"), "{message}");
            let blank = detail(config(&[key_set, ("JWT_ISSUER", "  ")]));
            assert!(blank.starts_with("JWT_ISSUER is required"), "{blank}");
        }
        assert!(
            config(&[("JWT_SECRET", &"s".repeat(32))]).is_ok(),
            "an HMAC secret is the app's own"
        );
    }

    #[test]
    fn admin_token_is_optional_but_strong() {
        assert!(config(&[]).unwrap().admin_token().is_none());
        assert!(detail(config(&[("ADMIN_TOKEN", "admin")])).contains("ADMIN_TOKEN"));
        assert!(config(&[("ADMIN_TOKEN", &"a".repeat(32))])
            .unwrap()
            .admin_token()
            .is_some());
    }

    #[test]
    fn claim_rules_come_from_vars() {
        let rules = config(&[
            ("JWT_ISSUER", "https://id.example"),
            ("JWT_AUDIENCE", "edge"),
            ("JWT_LEEWAY_SECONDS", "5"),
        ])
        .unwrap()
        .claim_rules;
        assert_eq!(rules.issuer.as_deref(), Some("https://id.example"));
        assert_eq!(rules.audience.as_deref(), Some("edge"));
        assert_eq!(rules.leeway_seconds, 5);
        assert_eq!(rules.max_ttl_seconds, DEFAULT_JWT_MAX_TTL_SECONDS);
        assert!(detail(config(&[("JWT_LEEWAY_SECONDS", "3600")])).starts_with("JWT_LEEWAY_SECONDS"));
    }

    #[test]
    fn key_never_shows_in_debug_output() {
        let config = config(&[
            ("OPENAI_API_KEY", "sk-test-very-secret"),
            ("JWT_SECRET", "jwt-very-secret-jwt-very-secret!"),
        ])
        .unwrap();
        assert_eq!(config.openai_api_key().unwrap().expose(), "sk-test-very-secret");
        assert!(!format!("{config:?}").contains("very-secret"));
    }

    const GUEST_SECRET: &str = "a-guest-token-secret-that-is-32-bytes-long";

    #[test]
    fn guest_access_is_on_only_with_both_secrets_and_otherwise_warns() {
        assert!(config(&[]).unwrap().guest.is_none());
        let half = config(&[("TURNSTILE_SECRET_KEY", "1x0000000000000000000000000000000AA")]).unwrap();
        assert!(half.guest.is_none());
        assert!(half.warnings[0].contains("GUEST_TOKEN_SECRET"));
        let other_half = config(&[("GUEST_TOKEN_SECRET", GUEST_SECRET)]).unwrap();
        assert!(other_half.guest.is_none() && other_half.warnings[0].contains("TURNSTILE_SECRET_KEY"));
        let on = config(&[("TURNSTILE_SECRET_KEY", "ts"), ("GUEST_TOKEN_SECRET", GUEST_SECRET)]).unwrap();
        let guest = on.guest.as_ref().unwrap();
        assert_eq!(guest.verify_url, guest::DEFAULT_VERIFY_URL);
        assert_eq!((guest.token_ttl.as_secs(), guest.mints_per_hour), (900, 10));
        assert!(guest.global_limits.is_none() && guest.hostnames.is_none());
        assert!(on.secrets().contains(&GUEST_SECRET) && on.secrets().contains(&"ts"));
        assert!(on.warnings.is_empty());
    }

    #[test]
    fn a_weak_or_reused_guest_secret_or_a_plain_http_siteverify_is_a_configuration_error() {
        let guest = |extra: &[(&'static str, &'static str)]| {
            // The first pair of a name wins: the extras come first.
            let mut pairs = extra.to_vec();
            pairs.extend([("TURNSTILE_SECRET_KEY", "ts"), ("GUEST_TOKEN_SECRET", GUEST_SECRET)]);
            config(&pairs)
        };
        assert!(detail(guest(&[("GUEST_TOKEN_SECRET", "short")])).contains("GUEST_TOKEN_SECRET"));
        assert!(detail(guest(&[("JWT_SECRET", GUEST_SECRET)])).contains("differ from JWT_SECRET"));
        assert!(
            detail(guest(&[("TURNSTILE_VERIFY_URL", "http://verify.example/siteverify")]))
                .contains("TURNSTILE_VERIFY_URL")
        );
        assert!(guest(&[("TURNSTILE_VERIFY_URL", "http://[::1]:9/siteverify")]).is_ok());
        assert!(detail(guest(&[("GUEST_MINTS_PER_HOUR", "0")])).contains("GUEST_MINTS_PER_HOUR"));
        for prefix in ["31", "65", "48.5"] {
            assert!(detail(guest(&[("GUEST_IPV6_PREFIX", prefix)])).contains("GUEST_IPV6_PREFIX"));
        }
        assert!(guest(&[("GUEST_IPV6_PREFIX", "48")]).is_ok());
    }

    #[test]
    fn without_a_guest_plan_guests_get_the_first_model_and_small_limits() {
        let on = config(&[
            ("TURNSTILE_SECRET_KEY", "ts"),
            ("GUEST_TOKEN_SECRET", GUEST_SECRET),
            ("ALLOWED_MODELS", "gpt-4o-mini,gpt-4.1"),
            ("IMAGE_MODELS", "gpt-image-2"),
            ("GLOBAL_GUEST_DAILY_BUDGET_USD", "2"),
        ])
        .unwrap();
        let plan = on.plan("guest").unwrap();
        assert_eq!(plan.allowed_models, ["gpt-4o-mini"]);
        assert!(
            plan.images.models.is_empty(),
            "no images for guests unless their plan says so"
        );
        assert_eq!(plan.request_limits.max_output_tokens, 256);
        assert_eq!(plan.user_limits.rate.map(|rate| rate.requests), Some(5));
        assert_eq!(plan.user_limits.daily_nano_usd, Some(10_000_000));
        assert_eq!(
            on.guest
                .as_ref()
                .and_then(|guest| guest.global_limits)
                .and_then(|limits| limits.daily_nano_usd),
            Some(2_000_000_000)
        );
        let own = config(&[
            ("TURNSTILE_SECRET_KEY", "ts"),
            ("GUEST_TOKEN_SECRET", GUEST_SECRET),
            ("PLANS", r#"{"guest":{"RATE_LIMIT_REQUESTS":3}}"#),
        ])
        .unwrap();
        assert_eq!(
            own.plan("guest").unwrap().user_limits.rate.map(|rate| rate.requests),
            Some(3)
        );
        assert_eq!(
            own.plan("guest").unwrap().request_limits.max_output_tokens,
            1024,
            "a PLANS entry is the whole plan"
        );
        assert!(
            config(&[]).unwrap().plan("guest").is_err(),
            "no guest plan without guest access"
        );
    }
}
