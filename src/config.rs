//! Typed configuration, parsed once per request from the Worker's vars and secrets.
//!
//! Defaults live here and only here; README's configuration table mirrors them. A bad value
//! is a `ProxyError::Misconfigured` naming the variable (for the log), never a panic.

use std::fmt;
use std::str::FromStr;

use crate::alerts::AlertRules;
use crate::attribution::SafetyKey;
use crate::auth::{ClaimRules, HmacAlgorithm, KeyEntry, VerifyingKey, MIN_HMAC_SECRET_BYTES};
use crate::cost::{self, CostRules};
use crate::error::ProxyError;
use crate::quota::{Limits, RateLimit};

pub const DEFAULT_UPSTREAM_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ALLOWED_MODELS: &str = "gpt-4o-mini";
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
pub const DEFAULT_JWT_LEEWAY_SECONDS: i64 = 30;
pub const DEFAULT_JWT_MAX_TTL_SECONDS: i64 = 86_400;
pub const DEFAULT_JWKS_CACHE_SECONDS: u64 = 600;
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 1024;
pub const DEFAULT_MAX_PROMPT_CHARS: usize = 8000;
pub const DEFAULT_RATE_LIMIT_REQUESTS: u32 = 20;
pub const DEFAULT_RATE_LIMIT_WINDOW_SECONDS: i64 = 900;
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 2;
pub const DEFAULT_DAILY_TOKEN_BUDGET: u64 = 100_000;
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_UPSTREAM_RETRIES: u32 = 1;
/// Admin bearer tokens are compared in constant time, and must be hard to guess.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// A secret value whose `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

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
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_output_tokens: u64,
    pub max_n: u64,
    pub max_prompt_chars: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Base of the OpenAI-compatible API, without a trailing slash.
    pub upstream_base_url: String,
    /// Exact browser origins (`scheme://host[:port]`) allowed to call the proxy.
    pub allowed_origins: Vec<String>,
    /// Models clients may ask for; the first is the default for `/api/generate-text`.
    pub allowed_models: Vec<String>,
    pub system_prompt: String,
    pub max_body_bytes: usize,
    /// What one request may ask for.
    pub request_limits: RequestLimits,
    /// What a request may spend beyond text: images, hosted tools, stored responses.
    pub cost_rules: CostRules,
    /// How long to wait for upstream's response headers.
    pub upstream_timeout_ms: u64,
    /// How long a stream may go silent before the proxy ends it.
    pub stream_idle_timeout_ms: u64,
    /// Extra attempts after an upstream 429/500/502/503, before anything reached the client.
    pub upstream_retries: u32,
    /// What one user may use.
    pub user_limits: Limits,
    /// What all users together may use per day (`GLOBAL_DAILY_TOKEN_BUDGET`), if set.
    pub global_limits: Option<Limits>,
    /// What a user token's claims must satisfy.
    pub claim_rules: ClaimRules,
    pub log_level: LogLevel,
    /// Alert thresholds for a user's object.
    pub user_alerts: AlertRules,
    /// Alert thresholds for the global budget's object.
    pub global_alerts: AlertRules,
    /// Where alerts are POSTed (`{"text": ...}`, Slack-compatible), besides the log.
    pub alert_webhook_url: Option<String>,
    /// Add the prompt's length (never its text) to log lines (`LOG_PROMPTS=true`).
    pub log_prompts: bool,
    jwt_secret: Option<(HmacAlgorithm, Secret)>,
    /// A JSON Web Key Set given inline (`JWKS`), parsed and cached by the edge.
    pub inline_jwks: Option<String>,
    /// The identity provider's key set URL (`JWKS_URL`), fetched and cached by the edge.
    pub jwks_url: Option<String>,
    pub jwks_cache_seconds: u64,
    admin_token: Option<Secret>,
    openai_api_key: Option<Secret>,
    /// The key being rotated in (`OPENAI_API_KEY_NEXT`), tried when upstream refuses the first.
    openai_api_key_next: Option<Secret>,
    /// `SAFETY_IDENTIFIER_SECRET`, kept only to scrub it from upstream text.
    safety_identifier_secret: Option<Secret>,
    /// Keys the `safety_identifier` HMAC (see `attribution`).
    safety_key: Option<SafetyKey>,
}

impl Config {
    /// Parses every variable and secret through `lookup` (name -> value, `None` when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ProxyError> {
        let value = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let upstream_base_url = parse_service_url(
            "UPSTREAM_BASE_URL",
            value("UPSTREAM_BASE_URL")
                .as_deref()
                .unwrap_or(DEFAULT_UPSTREAM_BASE_URL),
        )?;
        let allowed_origins = split_list(value("ALLOWED_ORIGINS").as_deref().unwrap_or(""))
            .map(parse_origin)
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_models: Vec<String> =
            split_list(value("ALLOWED_MODELS").as_deref().unwrap_or(DEFAULT_ALLOWED_MODELS))
                .map(str::to_owned)
                .collect();
        let system_prompt = value("SYSTEM_PROMPT").unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_owned());
        let max_body_bytes = parse_number(
            "MAX_BODY_BYTES",
            value("MAX_BODY_BYTES"),
            DEFAULT_MAX_BODY_BYTES,
            1..=1 << 24,
        )?;
        let number = |name: &str, default: u64, max: u64| parse_number(name, value(name), default, 1..=max);
        let request_limits = RequestLimits {
            max_output_tokens: number("MAX_OUTPUT_TOKENS", DEFAULT_MAX_OUTPUT_TOKENS, 1_000_000)?,
            max_n: number("MAX_N", 1, 128)?,
            max_prompt_chars: number("MAX_PROMPT_CHARS", DEFAULT_MAX_PROMPT_CHARS as u64, 10_000_000)? as usize,
        };
        // Cost beyond text (issue 12). The image reserve defaults to the allowed models' worst case.
        let cost_rules = CostRules {
            max_image_inputs: parse_number("MAX_IMAGE_INPUTS", value("MAX_IMAGE_INPUTS"), 0, 0..=100)?,
            image_input_reserve_tokens: number(
                "IMAGE_INPUT_RESERVE_TOKENS",
                cost::default_image_reserve(&allowed_models),
                10_000_000,
            )?,
            hosted_tools: cost::parse_hosted_tools(value("ALLOWED_HOSTED_TOOLS").as_deref().unwrap_or(""))?,
            max_hosted_tool_calls: number("MAX_HOSTED_TOOL_CALLS", 1, 100)?,
            responses_store: match value("RESPONSES_STORE").as_deref().map(str::trim) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ProxyError::misconfigured(format!(
                        "RESPONSES_STORE={other:?} is not true or false"
                    )))
                }
            },
        };
        let safety_identifier_secret = value("SAFETY_IDENTIFIER_SECRET").map(|secret| Secret::new(secret.trim()));
        if safety_identifier_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < MIN_HMAC_SECRET_BYTES)
        {
            return Err(ProxyError::misconfigured(format!(
                "secret SAFETY_IDENTIFIER_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes: use a random one, e.g. `openssl rand -base64 48`"
            )));
        }
        let user_limits = Limits {
            rate: Some(RateLimit {
                requests: number("RATE_LIMIT_REQUESTS", DEFAULT_RATE_LIMIT_REQUESTS.into(), 1000)? as u32,
                window_ms: number(
                    "RATE_LIMIT_WINDOW_SECONDS",
                    DEFAULT_RATE_LIMIT_WINDOW_SECONDS as u64,
                    604_800,
                )? as i64
                    * 1000,
            }),
            max_streams: Some(number("MAX_CONCURRENT_STREAMS", DEFAULT_MAX_CONCURRENT_STREAMS.into(), 100)? as u32),
            daily_tokens: Some(number(
                "DAILY_TOKEN_BUDGET",
                DEFAULT_DAILY_TOKEN_BUDGET,
                1_000_000_000_000,
            )?),
        };
        let global_limits = match value("GLOBAL_DAILY_TOKEN_BUDGET") {
            Some(_) => Some(Limits {
                rate: None,
                max_streams: None,
                daily_tokens: Some(number("GLOBAL_DAILY_TOKEN_BUDGET", 0, 1_000_000_000_000_000)?),
            }),
            None => None,
        };
        let user_alerts = AlertRules {
            requests_per_hour: value("ALERT_REQUESTS_PER_HOUR")
                .map(|raw| parse_number("ALERT_REQUESTS_PER_HOUR", Some(raw), 0, 1..=10_000_000))
                .transpose()?,
            budget_percent: None,
        };
        let global_alerts = AlertRules {
            requests_per_hour: None,
            budget_percent: Some(parse_number(
                "ALERT_BUDGET_PERCENT",
                value("ALERT_BUDGET_PERCENT"),
                80,
                1..=100,
            )?),
        };
        let alert_webhook_url = value("ALERT_WEBHOOK_URL")
            .map(|url| parse_service_url("ALERT_WEBHOOK_URL", &url))
            .transpose()?;
        let log_level = match value("LOG_LEVEL").as_deref().map(str::trim) {
            None => LogLevel::default(),
            Some("debug") => LogLevel::Debug,
            Some("info") => LogLevel::Info,
            Some("warn") => LogLevel::Warn,
            Some("error") => LogLevel::Error,
            Some(other) => {
                return Err(ProxyError::misconfigured(format!(
                    "LOG_LEVEL={other:?} is not one of debug, info, warn, error"
                )))
            }
        };
        let log_prompts = match value("LOG_PROMPTS").as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ProxyError::misconfigured(format!(
                    "LOG_PROMPTS={other:?} is not true or false"
                )))
            }
        };
        let claim_rules = ClaimRules {
            issuer: value("JWT_ISSUER").map(|v| v.trim().to_owned()),
            audience: value("JWT_AUDIENCE").map(|v| v.trim().to_owned()),
            leeway_seconds: parse_number(
                "JWT_LEEWAY_SECONDS",
                value("JWT_LEEWAY_SECONDS"),
                DEFAULT_JWT_LEEWAY_SECONDS,
                0..=300,
            )?,
            max_ttl_seconds: parse_number(
                "JWT_MAX_TTL_SECONDS",
                value("JWT_MAX_TTL_SECONDS"),
                DEFAULT_JWT_MAX_TTL_SECONDS,
                60..=31_536_000,
            )?,
        };
        let hmac_algorithm = match value("JWT_HMAC_ALGORITHM") {
            None => HmacAlgorithm::Hs256,
            Some(name) => HmacAlgorithm::parse(name.trim()).ok_or_else(|| {
                ProxyError::misconfigured(format!("JWT_HMAC_ALGORITHM={name:?} is not one of HS256, HS384, HS512"))
            })?,
        };
        let jwt_secret = value("JWT_SECRET").map(|secret| (hmac_algorithm, Secret::new(secret)));
        let safety_key = safety_identifier_secret
            .as_ref()
            .or(jwt_secret.as_ref().map(|(_, secret)| secret))
            .map(|secret| SafetyKey::derive(secret.expose()));
        let inline_jwks = value("JWKS");
        let jwks_url = value("JWKS_URL")
            .map(|url| parse_service_url("JWKS_URL", &url))
            .transpose()?;
        if inline_jwks.is_some() && jwks_url.is_some() {
            return Err(ProxyError::misconfigured(
                "set JWKS (inline key set) or JWKS_URL, not both",
            ));
        }
        if jwt_secret.is_none() && inline_jwks.is_none() && jwks_url.is_none() {
            return Err(ProxyError::misconfigured(
                "no key to verify user tokens: set the JWT_SECRET secret, or the JWKS_URL (or JWKS) var",
            ));
        }
        let jwks_cache_seconds = parse_number(
            "JWKS_CACHE_SECONDS",
            value("JWKS_CACHE_SECONDS"),
            DEFAULT_JWKS_CACHE_SECONDS,
            0..=86_400,
        )?;
        let admin_token = value("ADMIN_TOKEN").map(Secret::new);
        if admin_token
            .as_ref()
            .is_some_and(|token| token.expose().len() < MIN_ADMIN_TOKEN_BYTES)
        {
            return Err(ProxyError::misconfigured(format!(
                "secret ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_BYTES} bytes: use a random one, e.g. `openssl rand -base64 48`"
            )));
        }
        let openai_api_key = value("OPENAI_API_KEY").map(|key| Secret::new(key.trim()));
        let openai_api_key_next = value("OPENAI_API_KEY_NEXT").map(|key| Secret::new(key.trim()));
        let upstream_timeout_ms = number("UPSTREAM_TIMEOUT_MS", DEFAULT_UPSTREAM_TIMEOUT_MS, 600_000)?;
        let stream_idle_timeout_ms = number("STREAM_IDLE_TIMEOUT_MS", DEFAULT_STREAM_IDLE_TIMEOUT_MS, 600_000)?;
        let upstream_retries = parse_number(
            "UPSTREAM_RETRIES",
            value("UPSTREAM_RETRIES"),
            DEFAULT_UPSTREAM_RETRIES,
            0..=3,
        )?;

        Ok(Config {
            upstream_base_url,
            allowed_origins,
            allowed_models,
            system_prompt,
            max_body_bytes,
            request_limits,
            cost_rules,
            upstream_timeout_ms,
            stream_idle_timeout_ms,
            upstream_retries,
            user_limits,
            global_limits,
            claim_rules,
            log_level,
            log_prompts,
            user_alerts,
            global_alerts,
            alert_webhook_url,
            jwt_secret,
            inline_jwks,
            jwks_url,
            jwks_cache_seconds,
            admin_token,
            openai_api_key,
            openai_api_key_next,
            safety_identifier_secret,
            safety_key,
        })
    }

    /// The `safety_identifier` key: `SAFETY_IDENTIFIER_SECRET`, else derived from `JWT_SECRET`.
    /// Without either, requests that would carry one fail closed rather than send the raw `sub`.
    pub fn safety_key(&self) -> Result<&SafetyKey, ProxyError> {
        self.safety_key.as_ref().ok_or_else(|| {
            ProxyError::misconfigured(
                "no key for safety_identifier: set the SAFETY_IDENTIFIER_SECRET secret (at least 32 bytes) when JWT_SECRET is not set",
            )
        })
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
        let hmac = self.jwt_secret.as_ref().map(|(_, secret)| secret);
        [
            self.openai_api_key.as_ref(),
            self.openai_api_key_next.as_ref(),
            self.admin_token.as_ref(),
            hmac,
            self.safety_identifier_secret.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(Secret::expose)
        .collect()
    }

    /// The `JWT_SECRET` key, if one is set. A short secret fails closed rather than being used.
    pub fn secret_key(&self) -> Result<Option<KeyEntry>, ProxyError> {
        let Some((algorithm, secret)) = &self.jwt_secret else {
            return Ok(None);
        };
        if secret.expose().len() < MIN_HMAC_SECRET_BYTES {
            return Err(ProxyError::misconfigured(format!(
                "secret JWT_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes: use a random one, e.g. `openssl rand -base64 48`"
            )));
        }
        Ok(Some(KeyEntry {
            kid: None,
            key: VerifyingKey::Hmac {
                algorithm: *algorithm,
                secret: secret.clone(),
            },
        }))
    }

    /// The admin bearer token; without one the admin routes do not exist (404).
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    pub fn default_model(&self) -> &str {
        // from_lookup guarantees at least one model.
        &self.allowed_models[0]
    }

    pub fn is_model_allowed(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|allowed| allowed == model)
    }
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
            None => None,
        })
    }
}

/// Items of a comma- or whitespace-separated list.
fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
}

fn parse_number<T>(
    name: &str,
    raw: Option<String>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ProxyError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<T>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(ProxyError::misconfigured(format!(
            "{name}={raw:?} is not a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// `scheme://host[:port]`, lowercased, as browsers send it in `Origin`.
fn parse_origin(raw: &str) -> Result<String, ProxyError> {
    let invalid = || {
        ProxyError::misconfigured(format!(
            "ALLOWED_ORIGINS: {raw:?} is not an origin like https://app.example.com (exact scheme, host and port; no path, no wildcard)"
        ))
    };
    let candidate = raw.strip_suffix('/').unwrap_or(raw).to_ascii_lowercase();
    let (scheme, authority) = candidate.split_once("://").ok_or_else(invalid)?;
    if !matches!(scheme, "http" | "https") || !is_valid_authority(authority) {
        return Err(invalid());
    }
    Ok(candidate)
}

/// Splits `host[:port]`; `None` when the shape is wrong. IPv6 literals keep their brackets.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, rest) = if authority.starts_with('[') {
        authority.split_at(authority.find(']')? + 1)
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    let port = if rest.is_empty() {
        None
    } else {
        Some(rest.strip_prefix(':')?)
    };
    Some((host, port))
}

/// `host[:port]` with no userinfo, path, query or wildcard.
fn is_valid_authority(authority: &str) -> bool {
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    host_ok && port.is_none_or(|port| port.parse::<u16>().is_ok())
}

/// A URL the proxy calls. It carries our key (upstream) or decides who gets in (JWKS), so it
/// must be HTTPS; plain HTTP only to this machine (dev, tests).
fn parse_service_url(name: &str, raw: &str) -> Result<String, ProxyError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let invalid = |why: &str| ProxyError::misconfigured(format!("{name}={raw:?} is not usable: {why}"));
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| invalid("not an absolute URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if rest.contains(['?', '#', '@']) || !is_valid_authority(authority) {
        return Err(invalid(
            "expected https://host[:port]/path with no query, fragment or credentials",
        ));
    }
    let host = split_authority(authority).map_or(authority, |(host, _)| host);
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match scheme {
        "https" => Ok(trimmed.to_owned()),
        "http" if loopback => Ok(trimmed.to_owned()),
        _ => Err(invalid("must be https (http only for 127.0.0.1/localhost)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ProxyError> {
        Config::for_tests(pairs)
    }

    fn detail(result: Result<Config, ProxyError>) -> String {
        result.unwrap_err().log_detail().unwrap()
    }

    #[test]
    fn defaults_apply_when_unset() {
        let config = config(&[]).unwrap();
        assert_eq!(config.upstream_base_url, DEFAULT_UPSTREAM_BASE_URL);
        assert_eq!(config.allowed_models, ["gpt-4o-mini"]);
        assert_eq!(config.default_model(), "gpt-4o-mini");
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.max_body_bytes, 65_536);
        assert_eq!(config.system_prompt, DEFAULT_SYSTEM_PROMPT);
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        let config = config(&[
            ("ALLOWED_MODELS", "gpt-4o-mini, gpt-4.1-nano"),
            ("ALLOWED_ORIGINS", "https://app.example.com  http://localhost:5173/"),
        ])
        .unwrap();
        assert_eq!(config.allowed_models, ["gpt-4o-mini", "gpt-4.1-nano"]);
        assert!(config.is_model_allowed("gpt-4.1-nano"));
        assert!(!config.is_model_allowed("gpt-4"));
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
            defaults.request_limits,
            RequestLimits {
                max_output_tokens: 1024,
                max_n: 1,
                max_prompt_chars: 8000
            }
        );
        assert_eq!(
            defaults.user_limits.rate,
            Some(RateLimit {
                requests: 20,
                window_ms: 900_000
            })
        );
        assert_eq!(
            (defaults.user_limits.max_streams, defaults.user_limits.daily_tokens),
            (Some(2), Some(100_000))
        );
        assert!(defaults.global_limits.is_none());
        let custom = config(&[("RATE_LIMIT_REQUESTS", "5"), ("GLOBAL_DAILY_TOKEN_BUDGET", "5000000")]).unwrap();
        assert_eq!(custom.user_limits.rate.unwrap().requests, 5);
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
                defaults.upstream_timeout_ms,
                defaults.stream_idle_timeout_ms,
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
    fn alert_settings() {
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.user_alerts.requests_per_hour, None);
        assert_eq!(defaults.global_alerts.budget_percent, Some(80));
        let set = config(&[
            ("ALERT_REQUESTS_PER_HOUR", "100"),
            ("ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X"),
        ])
        .unwrap();
        assert_eq!(set.user_alerts.requests_per_hour, Some(100));
        assert!(set.alert_webhook_url.is_some());
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
        let rules = &defaults.cost_rules;
        assert_eq!((rules.max_image_inputs, rules.image_input_reserve_tokens), (0, 48_169));
        assert!(rules.hosted_tools.is_empty());
        assert_eq!((rules.max_hosted_tool_calls, rules.responses_store), (1, false));
        let nano = config(&[("ALLOWED_MODELS", "gpt-4.1-nano")]).unwrap();
        assert_eq!(nano.cost_rules.image_input_reserve_tokens, 3_779);
        let set = config(&[
            ("ALLOWED_HOSTED_TOOLS", "web_search:12000"),
            ("RESPONSES_STORE", "true"),
        ])
        .unwrap();
        assert_eq!(
            set.cost_rules
                .hosted_tool("web_search")
                .unwrap()
                .reserve_tokens_per_call,
            12_000
        );
        assert!(set.cost_rules.responses_store);
        for (name, bad) in [
            ("ALLOWED_HOSTED_TOOLS", "web_search"),
            ("RESPONSES_STORE", "yes"),
            ("MAX_IMAGE_INPUTS", "-1"),
            ("SAFETY_IDENTIFIER_SECRET", "short"),
        ] {
            assert!(detail(config(&[(name, bad)])).contains(name), "{name}");
        }
        let secret = "a-safety-secret-of-32-bytes-long!!";
        assert!(config(&[("SAFETY_IDENTIFIER_SECRET", secret)])
            .unwrap()
            .secrets()
            .contains(&secret));
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
            .secret_key()
            .unwrap_err();
        assert!(short.log_detail().unwrap().contains("shorter than 32 bytes"));
        let ok = config(&[("JWT_SECRET", &"s".repeat(32)), ("JWT_HMAC_ALGORITHM", "HS512")]).unwrap();
        assert!(ok.secret_key().unwrap().is_some());
        assert!(detail(config(&[("JWT_HMAC_ALGORITHM", "RS256")])).starts_with("JWT_HMAC_ALGORITHM"));
    }

    #[test]
    fn a_key_set_alone_is_enough() {
        let config = config(&[("JWKS_URL", "https://id.example.com/.well-known/jwks.json")]).unwrap();
        assert!(config.secret_key().unwrap().is_none());
        assert_eq!(
            config.jwks_url.as_deref(),
            Some("https://id.example.com/.well-known/jwks.json")
        );
        assert_eq!(config.jwks_cache_seconds, 600);
        assert!(detail(config_with_url("http://id.example.com/jwks")).starts_with("JWKS_URL"));
    }

    fn config_with_url(url: &str) -> Result<Config, ProxyError> {
        config(&[("JWKS_URL", url)])
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
}
