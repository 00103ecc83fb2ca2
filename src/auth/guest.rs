//! Guest access for apps with no backend: a Turnstile token in, a short guest token out, and
//! limits shared by every guest token of one client.
//!
//! Pure: the edge calls siteverify and reads the clock and the randomness; this module builds
//! and judges what goes over the wire, mints and verifies guest tokens, and names the object
//! a client's guests share.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::{self, ClaimRules, HmacAlgorithm, Identity, KeyEntry, KeySet, VerifyingKey};
use crate::error::{ProxyError, TokenProblem};
use crate::secret::Secret;

/// The `iss` of guest tokens and of no other: a token carrying it is checked with
/// `GUEST_TOKEN_SECRET` alone, and a user token can never carry it and verify.
pub const GUEST_ISSUER: &str = "openai-edge-proxy/guest";
/// The plan every guest is on (`PLANS.guest`, or the guest defaults).
pub const GUEST_PLAN: &str = "guest";
/// Every guest `sub` starts with it; user tokens with such a `sub` are refused while guest
/// access is on, so no user can share a guest's object.
pub const GUEST_SUB_PREFIX: &str = "guest:";
/// Turnstile's tokens are at most 2048 characters (Cloudflare, "Validate the token").
pub const MAX_TURNSTILE_TOKEN_BYTES: usize = 2048;
/// A mint body is `{"turnstile_token": "..."}`: a few KB at most.
pub const MAX_MINT_BODY_BYTES: usize = 4096;
/// Cloudflare's siteverify endpoint.
pub const DEFAULT_VERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// The window of `GUEST_MINTS_PER_HOUR`.
const MINT_WINDOW_MS: i64 = 3_600_000;
/// Domain separation: the client key names objects and signs nothing.
const CLIENT_KEY_LABEL: &[u8] = b"openai-edge-proxy guest client v1";

/// The per-plan defaults of plan `guest` when `PLANS` has no `guest` entry (besides
/// `ALLOWED_MODELS`, which defaults to the first allowed model only).
pub const GUEST_PLAN_DEFAULTS: [(&str, &str); 8] = [
    // Blank: unset, so no image model. A picture costs more than a guest's day of text.
    ("IMAGE_MODELS", ""),
    ("MAX_OUTPUT_TOKENS", "256"),
    ("MAX_PROMPT_CHARS", "2000"),
    ("RATE_LIMIT_REQUESTS", "5"),
    ("RATE_LIMIT_WINDOW_SECONDS", "900"),
    ("MAX_CONCURRENT_STREAMS", "1"),
    ("DAILY_TOKEN_BUDGET", "20000"),
    ("DAILY_BUDGET_USD", "0.01"),
];

/// The IPv6 grouping when `GUEST_IPV6_PREFIX` is unset: one host usually holds a whole /64.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// The widest grouping allowed: wider would put whole providers' customers behind one limit.
pub const MIN_IPV6_PREFIX: u8 = 32;

/// Names clients' objects: an HMAC of the client's address (so the raw address is never
/// stored), its IPv6 addresses grouped by a prefix. The key is derived from
/// `GUEST_TOKEN_SECRET` with a label of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    key: [u8; 32],
    /// Every IPv6 address in one prefix of this length is one client (32 to 64).
    ipv6_prefix: u8,
}

impl ClientKey {
    pub fn derive(secret: &str, ipv6_prefix: u8) -> ClientKey {
        ClientKey {
            key: hmac_sha256(secret.as_bytes(), CLIENT_KEY_LABEL),
            ipv6_prefix: ipv6_prefix.clamp(MIN_IPV6_PREFIX, DEFAULT_IPV6_PREFIX),
        }
    }

    /// The object all guests of this client share. An IPv6 client is its prefix
    /// (`GUEST_IPV6_PREFIX`): every address in it would otherwise be a new client. Without an
    /// address (Cloudflare's edge sets one; local runs may lack it) every guest is the one
    /// client `unknown`: they share one limit, which fails safe.
    pub fn object_name(&self, client_ip: Option<&str>) -> String {
        let client = match client_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            None => "unknown".to_owned(),
            Some(raw) => match raw.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => v4.to_string(),
                Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => ipv6_group(v6, self.ipv6_prefix),
                },
                Err(_) => raw.to_owned(),
            },
        };
        format!(
            "client:{}",
            Base64UrlUnpadded::encode_string(&hmac_sha256(&self.key, client.as_bytes()))
        )
    }
}

/// The prefix of `prefix` bits holding `address`, as `network/prefix`.
fn ipv6_group(address: Ipv6Addr, prefix: u8) -> String {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    format!("{}/{prefix}", Ipv6Addr::from(u128::from(address) & mask))
}

/// The client's address, from the headers Cloudflare's edge sets. With Pseudo IPv4 set to
/// "Overwrite Headers", `CF-Connecting-IP` is a class E IPv4 hashed from the whole IPv6
/// address (a new one for every address of a /64) and the real address is in
/// `CF-Connecting-IPv6`. That header is trusted only then: Cloudflare documents setting it in
/// that mode, not removing one a client sent otherwise.
pub fn client_address<'a>(connecting_ip: Option<&'a str>, connecting_ipv6: Option<&'a str>) -> Option<&'a str> {
    let pseudo_ipv4 = connecting_ip
        .and_then(|ip| ip.trim().parse::<Ipv4Addr>().ok())
        .is_some_and(|v4| v4.octets()[0] >= 240);
    let real_ipv6 = connecting_ipv6
        .map(str::trim)
        .filter(|ip| ip.parse::<Ipv6Addr>().is_ok());
    match real_ipv6 {
        Some(ipv6) if pseudo_ipv4 => Some(ipv6),
        _ => connecting_ip,
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(redacted)")
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    crate::secret::hmac_sha256(key, message)
}

/// The Turnstile token of a mint request. A body that is not `{"turnstile_token": string}`
/// is malformed (400); a missing, empty or oversized token is refused like a bad one (403).
pub fn turnstile_token(body: &[u8]) -> Result<String, ProxyError> {
    let malformed = || {
        ProxyError::invalid_request(
            "The body must be a JSON object like {\"turnstile_token\": \"...\"}.",
            None,
        )
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(malformed());
    };
    match fields.get("turnstile_token") {
        None | Some(Value::Null) => Err(ProxyError::TurnstileFailed {
            reason: "no turnstile_token".into(),
        }),
        Some(Value::String(token)) if token.is_empty() || token.len() > MAX_TURNSTILE_TOKEN_BYTES => {
            Err(ProxyError::TurnstileFailed {
                reason: format!("turnstile_token of {} bytes", token.len()),
            })
        }
        Some(Value::String(token)) => Ok(token.clone()),
        Some(_) => Err(ProxyError::invalid_request(
            "`turnstile_token` must be a string.",
            Some("turnstile_token"),
        )),
    }
}

/// The siteverify request body (`application/x-www-form-urlencoded`). The idempotency key
/// lets a retry after a lost answer verify the same token again instead of failing it as
/// already spent.
pub fn siteverify_form(secret: &Secret, response: &str, remote_ip: Option<&str>, idempotency_key: &str) -> String {
    let mut fields = vec![("secret", secret.expose()), ("response", response)];
    if let Some(ip) = remote_ip {
        fields.push(("remoteip", ip));
    }
    fields.push(("idempotency_key", idempotency_key));
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What siteverify's answer means: a human on one of our hostnames, or why not. Its own
/// trouble (`internal-error`) is a 503, our wrong secret a 500; anything else refuses the
/// token (403). The error codes are Cloudflare's words, safe for the log.
pub fn judge_siteverify(body: &[u8], hostnames: Option<&[String]>) -> Result<(), ProxyError> {
    #[derive(Deserialize)]
    struct Verdict {
        success: bool,
        #[serde(default)]
        hostname: Option<String>,
        #[serde(default, rename = "error-codes")]
        error_codes: Vec<String>,
    }
    let verdict: Verdict = serde_json::from_slice(body).map_err(|e| ProxyError::Unavailable {
        detail: format!("siteverify answered something that is not its JSON: {e}"),
    })?;
    let codes = verdict.error_codes.join(",");
    if !verdict.success {
        if verdict.error_codes.iter().any(|code| code == "internal-error") {
            return Err(ProxyError::Unavailable {
                detail: "siteverify: internal-error".into(),
            });
        }
        if verdict.error_codes.iter().any(|code| code.ends_with("-input-secret")) {
            return Err(ProxyError::misconfigured(format!(
                "siteverify refused TURNSTILE_SECRET_KEY ({codes}): set the widget's secret key"
            )));
        }
        return Err(ProxyError::TurnstileFailed {
            reason: format!("siteverify: {codes}"),
        });
    }
    if let Some(allowed) = hostnames {
        let hostname = verdict.hostname.unwrap_or_default();
        if !allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(&hostname)) {
            return Err(ProxyError::TurnstileFailed {
                reason: format!(
                    "solved on hostname {:?}, not in TURNSTILE_HOSTNAMES",
                    crate::error::truncate(&hostname, 64)
                ),
            });
        }
    }
    Ok(())
}

/// A UUID (version 4) from 16 random bytes: siteverify's `idempotency_key`.
pub fn uuid_v4(random: &[u8; 16]) -> String {
    let mut bytes = *random;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A freshly minted guest token, as `POST /v1/guest` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestToken {
    pub token: String,
    pub sub: String,
    pub expires_in: u64,
}

impl GuestToken {
    pub fn to_json(&self) -> String {
        json!({ "token": self.token, "token_type": "Bearer", "expires_in": self.expires_in }).to_string()
    }
}

/// Mints a guest token: HS256 with `GUEST_TOKEN_SECRET`, the guest issuer, a random `sub`
/// (`random` comes from the edge's CSPRNG), valid `ttl` from `now` (Unix seconds).
pub fn mint(secret: &Secret, random: &[u8; 16], now: i64, ttl: Duration) -> Result<GuestToken, ProxyError> {
    let sub = format!("{GUEST_SUB_PREFIX}{}", Base64UrlUnpadded::encode_string(random));
    let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(GUEST_ISSUER));
    claims.insert("sub".into(), json!(sub));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(ttl_seconds)));
    claims.insert("plan".into(), json!(GUEST_PLAN));
    let token = auth::mint_hmac_token(HmacAlgorithm::Hs256, secret.expose().as_bytes(), &claims)?;
    Ok(GuestToken {
        token,
        sub,
        expires_in: ttl.as_secs(),
    })
}

/// Verifies a token that carries the guest issuer: with `GUEST_TOKEN_SECRET` only (a token
/// signed with any other key fails), no longer-lived than `ttl`, on plan `guest` whatever it
/// claims.
pub fn verify(
    token: &str,
    secret: &Secret,
    ttl: Duration,
    leeway_seconds: i64,
    now: i64,
) -> Result<Identity, TokenProblem> {
    let keys = KeySet {
        keys: vec![KeyEntry {
            kid: None,
            key: VerifyingKey::Hmac {
                algorithm: HmacAlgorithm::Hs256,
                secret: secret.clone(),
            },
        }],
    };
    let rules = ClaimRules {
        issuer: Some(GUEST_ISSUER.to_owned()),
        audience: None,
        leeway_seconds,
        max_ttl_seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        plan_claim: "plan".to_owned(),
    };
    let mut identity = auth::verify(token, &keys, &rules, now)?;
    if !identity.sub.starts_with(GUEST_SUB_PREFIX) {
        return Err(TokenProblem::InvalidClaim("sub"));
    }
    identity.plan = Some(GUEST_PLAN.to_owned());
    Ok(identity)
}

/// Whether a token's requests are limited per client too (its client's object, named by
/// `ClientKey`): every guest's, and any user token on plan `guest`, which an app may sign for
/// its anonymous visitors; without it each such token would be a fresh set of guest limits.
pub fn limited_per_client(identity: &Identity) -> bool {
    identity.plan.as_deref() == Some(GUEST_PLAN)
}

/// The admission times (ms) of one client's guest mints in the last hour, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MintWindow(Vec<i64>);

impl MintWindow {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records a mint if fewer than `per_hour` happened in the hour before `now_ms`; else
    /// the seconds until one more may.
    pub fn admit(&mut self, per_hour: u32, now_ms: i64) -> Result<(), u64> {
        self.0.retain(|&at| at > now_ms.saturating_sub(MINT_WINDOW_MS));
        let per_hour = per_hour as usize;
        if per_hour == 0 {
            return Err(MINT_WINDOW_MS as u64 / 1000);
        }
        if self.0.len() >= per_hour {
            let oldest = self.0[self.0.len() - per_hour];
            let wait_ms = u64::try_from(oldest.saturating_add(MINT_WINDOW_MS).saturating_sub(now_ms)).unwrap_or(0);
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        self.0.push(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("a-guest-token-secret-that-is-32-bytes-long")
    }

    fn ttl() -> Duration {
        Duration::from_secs(900)
    }

    #[test]
    fn a_minted_guest_token_verifies_on_the_guest_plan_until_it_expires() {
        let minted = mint(&secret(), &[7; 16], NOW, ttl()).unwrap();
        assert!(minted.sub.starts_with("guest:") && minted.sub.len() > 20);
        assert_eq!(minted.expires_in, 900);
        let identity = verify(&minted.token, &secret(), ttl(), 0, NOW + 10).unwrap();
        assert_eq!(identity.sub, minted.sub);
        assert_eq!(identity.plan.as_deref(), Some("guest"));
        assert_eq!(
            verify(&minted.token, &secret(), ttl(), 0, NOW + 900),
            Err(TokenProblem::Expired)
        );
        let body: Value = serde_json::from_str(&minted.to_json()).unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
    }

    #[test]
    fn a_guest_token_verifies_with_the_guest_secret_only() {
        let user_secret = Secret::new("e2e-test-secret-that-is-long-enough-0123456789");
        let forged = mint(&user_secret, &[1; 16], NOW, ttl()).unwrap();
        assert_eq!(
            verify(&forged.token, &secret(), ttl(), 0, NOW),
            Err(TokenProblem::BadSignature)
        );
    }

    #[test]
    fn a_guest_token_may_not_outlive_the_guest_lifetime_or_lose_its_prefix() {
        let long = mint(&secret(), &[2; 16], NOW, Duration::from_secs(3600)).unwrap();
        assert_eq!(
            verify(&long.token, &secret(), ttl(), 0, NOW),
            Err(TokenProblem::LifetimeTooLong)
        );
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(GUEST_ISSUER));
        claims.insert("sub".into(), json!("alice"));
        claims.insert("iat".into(), json!(NOW));
        claims.insert("exp".into(), json!(NOW + 60));
        let token = auth::mint_hmac_token(HmacAlgorithm::Hs256, secret().expose().as_bytes(), &claims).unwrap();
        assert_eq!(
            verify(&token, &secret(), ttl(), 0, NOW),
            Err(TokenProblem::InvalidClaim("sub"))
        );
    }

    #[test]
    fn a_client_is_named_by_an_hmac_of_its_address_never_the_address() {
        let key = ClientKey::derive(secret().expose(), DEFAULT_IPV6_PREFIX);
        let name = key.object_name(Some("203.0.113.9"));
        assert!(name.starts_with("client:"));
        assert!(!name.contains("203.0.113"));
        assert_eq!(name, key.object_name(Some(" 203.0.113.9 ")));
        assert_ne!(name, key.object_name(Some("203.0.113.10")));
        assert_ne!(
            name,
            ClientKey::derive("another-secret-of-thirty-two-bytes!!", DEFAULT_IPV6_PREFIX)
                .object_name(Some("203.0.113.9"))
        );
        assert_eq!(
            key.object_name(None),
            key.object_name(Some("")),
            "no address: the one client `unknown`"
        );
    }

    #[test]
    fn every_address_of_one_ipv6_64_is_one_client() {
        let key = ClientKey::derive(secret().expose(), DEFAULT_IPV6_PREFIX);
        assert_eq!(
            key.object_name(Some("2001:db8:1:2::1")),
            key.object_name(Some("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            key.object_name(Some("2001:db8:1:2::1")),
            key.object_name(Some("2001:db8:1:3::1"))
        );
        assert_eq!(
            key.object_name(Some("::ffff:198.51.100.1")),
            key.object_name(Some("198.51.100.1"))
        );
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_the_configured_prefix() {
        let named =
            |prefix: u8, ip: Ipv6Addr| ClientKey::derive(secret().expose(), prefix).object_name(Some(&ip.to_string()));
        let host = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0xbbbb, 1, 2, 3, 4);
        let same_64 = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0xbbbb, 0xffff, 0, 0, 9);
        let same_48 = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0xcccc, 0, 0, 0, 1);
        let same_32 = Ipv6Addr::new(0x2001, 0xdb8, 0xdddd, 0, 0, 0, 0, 1);
        assert_eq!(named(64, host), named(64, same_64));
        assert_ne!(named(64, host), named(64, same_48), "another /64 of a routed /48");
        assert_eq!(named(48, host), named(48, same_48), "a /48 is one client at 48");
        assert_ne!(named(48, host), named(48, same_32));
        assert_eq!(named(32, host), named(32, same_32));
        assert_eq!(ipv6_group(host, 48), "2001:db8:aaaa::/48");
        assert_eq!(ipv6_group(host, 64), "2001:db8:aaaa:bbbb::/64");
        assert_eq!(ipv6_group(host, 33), "2001:db8:8000::/33");
        assert_eq!(
            ClientKey::derive(secret().expose(), 8),
            ClientKey::derive(secret().expose(), MIN_IPV6_PREFIX),
            "never wider than /32"
        );
    }

    #[test]
    fn the_real_ipv6_address_wins_over_cloudflares_pseudo_ipv4() {
        let ipv6 = "2001:db8:1:2::7";
        assert_eq!(client_address(Some("240.16.0.1"), Some(ipv6)), Some(ipv6));
        assert_eq!(
            client_address(Some(" 255.1.2.3 "), Some(&format!(" {ipv6} "))),
            Some(ipv6)
        );
        assert_eq!(
            client_address(Some(ipv6), None),
            Some(ipv6),
            "Pseudo IPv4 off or \"Add Header\""
        );
        // Cloudflare sets CF-Connecting-IPv6 only with Pseudo IPv4; from a client it is a lie.
        assert_eq!(client_address(Some("203.0.113.9"), Some(ipv6)), Some("203.0.113.9"));
        assert_eq!(
            client_address(Some("240.16.0.1"), Some("not an address")),
            Some("240.16.0.1")
        );
        assert_eq!(
            client_address(Some("240.16.0.1"), Some("198.51.100.1")),
            Some("240.16.0.1")
        );
        assert_eq!(client_address(None, Some(ipv6)), None);
    }

    #[test]
    fn any_token_on_plan_guest_is_limited_per_client() {
        let minted = mint(&secret(), &[3; 16], NOW, ttl()).unwrap();
        let mut identity = verify(&minted.token, &secret(), ttl(), 0, NOW).unwrap();
        assert!(limited_per_client(&identity));
        identity.sub = "a-user-of-the-app".into();
        assert!(limited_per_client(&identity), "a user token claiming plan guest");
        identity.plan = Some("pro".into());
        assert!(!limited_per_client(&identity));
        identity.plan = None;
        assert!(!limited_per_client(&identity));
    }

    #[test]
    fn a_mint_body_must_be_an_object_and_its_token_present_and_sane() {
        assert_eq!(turnstile_token(br#"{"turnstile_token":"abc"}"#), Ok("abc".into()));
        for malformed in [&b"not json"[..], b"[]", br#"{"turnstile_token":7}"#] {
            assert_eq!(turnstile_token(malformed).unwrap_err().status(), 400, "{malformed:?}");
        }
        let oversized = format!(
            r#"{{"turnstile_token":"{}"}}"#,
            "x".repeat(MAX_TURNSTILE_TOKEN_BYTES + 1)
        );
        for refused in [&b"{}"[..], br#"{"turnstile_token":""}"#, oversized.as_bytes()] {
            assert_eq!(turnstile_token(refused).unwrap_err().code(), "turnstile_failed");
        }
    }

    #[test]
    fn the_siteverify_form_carries_every_field_encoded() {
        let form = siteverify_form(&Secret::new("s&cret"), "tok=en+/", Some("2001:db8::1"), "k-1");
        assert_eq!(
            form,
            "secret=s%26cret&response=tok%3Den%2B%2F&remoteip=2001%3Adb8%3A%3A1&idempotency_key=k%2D1"
        );
        assert!(!siteverify_form(&Secret::new("s"), "t", None, "k").contains("remoteip"));
    }

    #[test]
    fn siteverify_verdicts_map_to_what_the_client_and_operator_need() {
        let hosts = vec!["app.example.com".to_owned()];
        assert_eq!(
            judge_siteverify(br#"{"success":true,"hostname":"app.example.com"}"#, Some(&hosts)),
            Ok(())
        );
        assert_eq!(
            judge_siteverify(br#"{"success":true,"hostname":"evil.example"}"#, None),
            Ok(())
        );
        let code = |body: &[u8]| judge_siteverify(body, Some(&hosts)).unwrap_err().code();
        assert_eq!(
            code(br#"{"success":true,"hostname":"evil.example"}"#),
            "turnstile_failed"
        );
        assert_eq!(
            code(br#"{"success":false,"error-codes":["timeout-or-duplicate"]}"#),
            "turnstile_failed"
        );
        assert_eq!(
            code(br#"{"success":false,"error-codes":["internal-error"]}"#),
            "temporarily_unavailable"
        );
        assert_eq!(
            code(br#"{"success":false,"error-codes":["invalid-input-secret"]}"#),
            "proxy_misconfigured"
        );
        assert_eq!(code(b"<html>bad gateway</html>"), "temporarily_unavailable");
    }

    #[test]
    fn an_idempotency_key_is_a_version_4_uuid() {
        let key = uuid_v4(&[0xff; 16]);
        assert_eq!(key, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4(&[0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn mints_are_limited_per_hour_with_the_wait_until_the_oldest_leaves() {
        let mut window = MintWindow::default();
        for i in 0..3 {
            assert_eq!(window.admit(3, NOW * 1000 + i * 1000), Ok(()));
        }
        assert_eq!(window.admit(3, NOW * 1000 + 10_000), Err(3590));
        assert_eq!(
            window.admit(3, NOW * 1000 + 3_600_001),
            Ok(()),
            "the oldest left the hour"
        );
    }
}
