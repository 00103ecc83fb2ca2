//! User token (JWT) verification, given keys and "now".
//!
//! jwt-compact checks the signature and that `alg` matches the algorithm we verify with; it does
//! not check `crit`/`b64`/`jku`/..., `iss`, `aud`, and its time checks can overflow (see
//! ../shared/SECURITY.md). So this module checks structure, header and claims itself, with
//! integer arithmetic, and uses jwt-compact only for the signature, with the algorithm taken
//! from the key, never from the token.

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
use jwt_compact::{AlgorithmExt, Claims, Empty, UntrustedToken, ValidationError};
use serde_json::{Map, Value};

use crate::config::Secret;
use crate::error::{ProxyError, TokenProblem};

/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const MAX_SUB_BYTES: usize = 256;
/// RFC 8725 section 3.5: an HMAC secret has at least as many bits as the hash.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Time claims past the year 9999 are absurd; refusing them keeps every sum below in range.
const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// Header parameters that would make the token say how it must be checked.
const FORBIDDEN_HEADER_FIELDS: [&str; 6] = ["crit", "b64", "jku", "x5u", "jwk", "x5c"];

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    /// `iat` (or, without one, `nbf`), for revocation: tokens issued before a revocation fail.
    pub issued_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl HmacAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(HmacAlgorithm::Hs256),
            "HS384" => Some(HmacAlgorithm::Hs384),
            "HS512" => Some(HmacAlgorithm::Hs512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HmacAlgorithm::Hs256 => "HS256",
            HmacAlgorithm::Hs384 => "HS384",
            HmacAlgorithm::Hs512 => "HS512",
        }
    }
}

/// A key and the one algorithm it is used with (RFC 8725 section 3.1).
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    Hmac { algorithm: HmacAlgorithm, secret: Secret },
}

impl VerifyingKey {
    fn algorithm(&self) -> &'static str {
        match self {
            VerifyingKey::Hmac { algorithm, .. } => algorithm.name(),
        }
    }

    fn verify(&self, token: &UntrustedToken<'_>) -> Result<(), ValidationError> {
        match self {
            VerifyingKey::Hmac { algorithm, secret } => {
                let secret = secret.expose().as_bytes();
                match algorithm {
                    HmacAlgorithm::Hs256 => Hs256.validator::<Empty>(&Hs256Key::new(secret)).validate(token).map(drop),
                    HmacAlgorithm::Hs384 => Hs384.validator::<Empty>(&Hs384Key::new(secret)).validate(token).map(drop),
                    HmacAlgorithm::Hs512 => Hs512.validator::<Empty>(&Hs512Key::new(secret)).validate(token).map(drop),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// `kid` only indexes this set; it is never fetched or used as a path.
    pub kid: Option<String>,
    pub key: VerifyingKey,
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<KeyEntry>,
}

impl KeySet {
    /// The key a token must be checked with: by `kid` when the token names one, else the one key
    /// for its algorithm. The key's algorithm must equal the header's.
    fn select(&self, kid: Option<&str>, algorithm: &str) -> Result<&VerifyingKey, TokenProblem> {
        let mut candidates = self.keys.iter().filter(|entry| match kid {
            Some(kid) => entry.kid.as_deref() == Some(kid),
            None => entry.key.algorithm() == algorithm,
        });
        let entry = candidates.next().ok_or(TokenProblem::UnknownKey)?;
        if entry.key.algorithm() != algorithm {
            return Err(TokenProblem::UnsupportedHeader);
        }
        Ok(&entry.key)
    }
}

/// What a valid token's claims must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: i64,
    pub max_ttl_seconds: i64,
}

/// The token of an `Authorization` header (RFC 6750 section 2.1). The Fetch API joins repeated
/// headers with ", ", which a JWT never contains, so two headers fail here too.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, ProxyError> {
    let value = authorization.map(str::trim).filter(|v| !v.is_empty()).ok_or(ProxyError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ProxyError::MissingToken)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains([',', ' ']) {
        return Err(ProxyError::MissingToken);
    }
    Ok(token)
}

/// Verifies `token` at time `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, rules: &ClaimRules, now: i64) -> Result<Identity, TokenProblem> {
    let (header, claims) = decode_unverified(token)?;
    let times = TimeClaims::parse(&claims)?;

    let algorithm = header.get("alg").and_then(Value::as_str).ok_or(TokenProblem::Malformed)?;
    if FORBIDDEN_HEADER_FIELDS.iter().any(|field| header.contains_key(*field)) {
        return Err(TokenProblem::UnsupportedHeader);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= 256 => Some(kid.as_str()),
        Some(_) => return Err(TokenProblem::Malformed),
    };
    let key = keys.select(kid, algorithm)?;
    let untrusted = UntrustedToken::new(token).map_err(|_| TokenProblem::Malformed)?;
    key.verify(&untrusted).map_err(|error| match error {
        ValidationError::InvalidSignature | ValidationError::MalformedSignature(_) => TokenProblem::BadSignature,
        ValidationError::AlgorithmMismatch { .. } => TokenProblem::UnsupportedHeader,
        _ => TokenProblem::Malformed,
    })?;

    check_claims(&claims, times, rules, now)
}

/// Splits and decodes header and claims, refusing oversized or malformed tokens before crypto.
fn decode_unverified(token: &str) -> Result<(Map<String, Value>, Map<String, Value>), TokenProblem> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenProblem::Malformed);
    }
    let segments: Vec<&str> = token.split('.').collect();
    let base64url = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if segments.len() != 3 || !segments.iter().all(|s| base64url(s)) {
        return Err(TokenProblem::Malformed);
    }
    let decode_object = |segment: &str| -> Result<Map<String, Value>, TokenProblem> {
        let bytes = Base64UrlUnpadded::decode_vec(segment).map_err(|_| TokenProblem::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(object)) => Ok(object),
            _ => Err(TokenProblem::Malformed),
        }
    };
    Ok((decode_object(segments[0])?, decode_object(segments[1])?))
}

/// The time claims, type-checked before any crypto (jwt-compact would round floats).
#[derive(Debug, Clone, Copy)]
struct TimeClaims {
    expires_at: i64,
    not_before: Option<i64>,
    issued_at: Option<i64>,
}

impl TimeClaims {
    fn parse(claims: &Map<String, Value>) -> Result<Self, TokenProblem> {
        // An integer in `0..=MAX_TIMESTAMP`; floats, strings and negatives are refused.
        let claim = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(value) => match value.as_i64() {
                Some(seconds) if (0..=MAX_TIMESTAMP).contains(&seconds) => Ok(Some(seconds)),
                _ => Err(TokenProblem::InvalidClaim(name)),
            },
        };
        Ok(TimeClaims {
            expires_at: claim("exp")?.ok_or(TokenProblem::MissingClaim("exp"))?,
            not_before: claim("nbf")?,
            issued_at: claim("iat")?,
        })
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    times: TimeClaims,
    rules: &ClaimRules,
    now: i64,
) -> Result<Identity, TokenProblem> {
    let TimeClaims { expires_at, not_before, issued_at } = times;
    let leeway = rules.leeway_seconds;

    // RFC 7519 4.1.4: now must be before `exp`; so `exp == now` (with no leeway) is expired.
    if now >= expires_at.saturating_add(leeway) {
        return Err(TokenProblem::Expired);
    }
    if not_before.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(TokenProblem::NotYetValid);
    }
    if issued_at.is_some_and(|iat| now.saturating_add(leeway) < iat) {
        return Err(TokenProblem::IssuedInFuture);
    }
    let valid_from = issued_at.or(not_before).unwrap_or(now);
    if expires_at.saturating_sub(valid_from) > rules.max_ttl_seconds {
        return Err(TokenProblem::LifetimeTooLong);
    }

    if let Some(issuer) = &rules.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(TokenProblem::WrongIssuer);
        }
    }
    if let Some(audience) = &rules.audience {
        let matches = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience.as_str())),
            _ => false,
        };
        if !matches {
            return Err(TokenProblem::WrongAudience);
        }
    }

    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= MAX_SUB_BYTES => sub.clone(),
        Some(_) => return Err(TokenProblem::InvalidClaim("sub")),
        None => return Err(TokenProblem::MissingClaim("sub")),
    };
    Ok(Identity { sub, issued_at: issued_at.or(not_before) })
}

/// Claims for a dev token, shared by `mint-token` and the tests. Not used to verify.
pub fn mint_hmac_token(
    algorithm: HmacAlgorithm,
    secret: &[u8],
    claims: &Map<String, Value>,
) -> Result<String, ProxyError> {
    let header = jwt_compact::Header::empty().with_token_type("JWT");
    let claims = Claims::new(claims.clone());
    let token = match algorithm {
        HmacAlgorithm::Hs256 => Hs256.token(&header, &claims, &Hs256Key::new(secret)),
        HmacAlgorithm::Hs384 => Hs384.token(&header, &claims, &Hs384Key::new(secret)),
        HmacAlgorithm::Hs512 => Hs512.token(&header, &claims, &Hs512Key::new(secret)),
    };
    token.map_err(|error| ProxyError::Internal { detail: format!("cannot sign token: {error}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";
    const NOW: i64 = 1_800_000_000;

    fn keys() -> KeySet {
        KeySet {
            keys: vec![KeyEntry {
                kid: None,
                key: VerifyingKey::Hmac { algorithm: HmacAlgorithm::Hs256, secret: Secret::new(SECRET) },
            }],
        }
    }

    fn rules() -> ClaimRules {
        ClaimRules { issuer: None, audience: None, leeway_seconds: 30, max_ttl_seconds: 86_400 }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut claims = json!({ "sub": "alice", "iat": NOW - 10, "exp": NOW + 600 });
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        claims.as_object().unwrap().clone()
    }

    fn claims_map() -> Map<String, Value> {
        claims(json!({}))
    }

    fn token(extra: Value) -> String {
        mint_hmac_token(HmacAlgorithm::Hs256, SECRET.as_bytes(), &claims(extra)).unwrap()
    }

    /// A token with a hand-made header and claims, signed with the test secret.
    fn raw_token(header: Value, claims: Value) -> String {
        use hmac::{Hmac, Mac};
        let signing_input = format!(
            "{}.{}",
            Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
            Base64UrlUnpadded::encode_string(claims.to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes()))
    }

    fn check(token: &str) -> Result<Identity, TokenProblem> {
        verify(token, &keys(), &rules(), NOW)
    }

    #[test]
    fn a_valid_token_yields_its_subject() {
        let identity = check(&token(json!({}))).unwrap();
        assert_eq!(identity, Identity { sub: "alice".into(), issued_at: Some(NOW - 10) });
    }

    #[test]
    fn signature_must_match() {
        let good = token(json!({}));
        let [header, claims, signature]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();

        let other_key = mint_hmac_token(HmacAlgorithm::Hs256, b"another-secret-of-32-bytes-length", &claims_map()).unwrap();
        let other_signature = other_key.rsplit('.').next().unwrap();
        assert_eq!(check(&format!("{header}.{claims}.{other_signature}")), Err(TokenProblem::BadSignature));

        let mallory = Base64UrlUnpadded::encode_string(json!({"sub":"mallory","exp":NOW+600}).to_string().as_bytes());
        assert_eq!(check(&format!("{header}.{mallory}.{signature}")), Err(TokenProblem::BadSignature));
    }

    #[test]
    fn algorithm_comes_from_the_key() {
        let claims = json!({"sub":"alice","exp":NOW+600});
        let none = format!(
            "{}.{}.",
            Base64UrlUnpadded::encode_string(br#"{"alg":"none"}"#),
            Base64UrlUnpadded::encode_string(claims.to_string().as_bytes())
        );
        assert_eq!(check(&none), Err(TokenProblem::Malformed));
        let none_with_sig = format!("{none}c2ln");
        assert_eq!(check(&none_with_sig), Err(TokenProblem::UnknownKey));
        let hs384 = mint_hmac_token(HmacAlgorithm::Hs384, SECRET.as_bytes(), &claims.as_object().unwrap().clone()).unwrap();
        assert_eq!(check(&hs384), Err(TokenProblem::UnknownKey));
    }

    #[test]
    fn header_parameters_that_redirect_checking_are_refused() {
        for field in FORBIDDEN_HEADER_FIELDS {
            let mut header = json!({"alg":"HS256"});
            header[field] = json!("https://evil.example/keys");
            let token = raw_token(header, json!({"sub":"alice","exp":NOW+600}));
            assert_eq!(check(&token), Err(TokenProblem::UnsupportedHeader), "{field}");
        }
    }

    #[test]
    fn structure_is_checked_before_crypto() {
        let good = token(json!({}));
        let cases = [
            "".to_string(),
            "abc".into(),
            "a.b".into(),
            format!("{good}.extra"),
            good.replacen('.', ".=", 1),
            format!("{good}+"),
            format!("{}.{}", "e30", good.split_once('.').unwrap().1), // header `{}`: no alg
            raw_token(json!({"alg":"HS256"}), json!([1, 2])),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ];
        for token in cases {
            assert!(check(&token).is_err(), "{token:.40}");
        }
        assert_eq!(check(&raw_token(json!({"alg":"HS256"}), json!("claims"))), Err(TokenProblem::Malformed));
    }

    #[test]
    fn expiry_is_required_and_exclusive() {
        let no_leeway = ClaimRules { leeway_seconds: 0, ..rules() };
        let at = |exp: i64| verify(&raw_token(json!({"alg":"HS256"}), json!({"sub":"a","exp":exp})), &keys(), &no_leeway, NOW);
        assert_eq!(at(NOW), Err(TokenProblem::Expired));
        assert!(at(NOW + 1).is_ok());
        assert_eq!(check(&token(json!({"exp": NOW - 31}))), Err(TokenProblem::Expired));
        assert!(check(&token(json!({"exp": NOW - 29}))).is_ok(), "inside the leeway");
        assert_eq!(check(&raw_token(json!({"alg":"HS256"}), json!({"sub":"a"}))), Err(TokenProblem::MissingClaim("exp")));
    }

    #[test]
    fn time_claims_must_be_sane_integers() {
        for bad in [json!(1.8e9), json!("1800000600"), json!(-8_334_601_228_800_i64), json!(-1), json!(1e300), json!(u64::MAX)] {
            for claim in ["exp", "nbf", "iat"] {
                let mut claims = json!({"sub":"a","exp":NOW+600});
                claims[claim] = bad.clone();
                let result = check(&raw_token(json!({"alg":"HS256"}), claims));
                assert_eq!(result, Err(TokenProblem::InvalidClaim(claim)), "{claim}={bad}");
            }
        }
    }

    #[test]
    fn not_before_and_issued_at_are_honoured() {
        assert_eq!(check(&token(json!({"nbf": NOW + 60}))), Err(TokenProblem::NotYetValid));
        assert!(check(&token(json!({"nbf": NOW + 20}))).is_ok(), "inside the leeway");
        assert_eq!(check(&token(json!({"iat": NOW + 60}))), Err(TokenProblem::IssuedInFuture));
    }

    #[test]
    fn lifetime_is_capped() {
        assert_eq!(check(&token(json!({"iat": NOW, "exp": NOW + 86_401}))), Err(TokenProblem::LifetimeTooLong));
        assert!(check(&token(json!({"iat": NOW, "exp": NOW + 86_400}))).is_ok());
        let no_iat = raw_token(json!({"alg":"HS256"}), json!({"sub":"a","exp":NOW + 90_000}));
        assert_eq!(check(&no_iat), Err(TokenProblem::LifetimeTooLong));
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let strict = ClaimRules { issuer: Some("https://id.example".into()), audience: Some("edge".into()), ..rules() };
        let run = |extra: Value| verify(&token(extra), &keys(), &strict, NOW);
        assert!(run(json!({"iss":"https://id.example","aud":"edge"})).is_ok());
        assert!(run(json!({"iss":"https://id.example","aud":["other","edge"]})).is_ok());
        assert_eq!(run(json!({"iss":"https://evil.example","aud":"edge"})), Err(TokenProblem::WrongIssuer));
        assert_eq!(run(json!({"aud":"edge"})), Err(TokenProblem::WrongIssuer));
        assert_eq!(run(json!({"iss":"https://id.example","aud":"other"})), Err(TokenProblem::WrongAudience));
        assert_eq!(run(json!({"iss":"https://id.example"})), Err(TokenProblem::WrongAudience));
    }

    #[test]
    fn subject_is_required_and_bounded() {
        assert_eq!(check(&token(json!({"sub": ""}))), Err(TokenProblem::InvalidClaim("sub")));
        assert_eq!(check(&token(json!({"sub": 42}))), Err(TokenProblem::InvalidClaim("sub")));
        assert_eq!(check(&token(json!({"sub": "x".repeat(257)}))), Err(TokenProblem::InvalidClaim("sub")));
        let no_sub = raw_token(json!({"alg":"HS256"}), json!({"exp":NOW+600}));
        assert_eq!(check(&no_sub), Err(TokenProblem::MissingClaim("sub")));
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(Some("bearer abc.def.ghi")), Ok("abc.def.ghi"));
        for bad in [None, Some(""), Some("Bearer"), Some("Bearer "), Some("Basic dXNlcjpwdw=="), Some("Bearer a.b.c, Bearer d.e.f"), Some("abc.def.ghi")] {
            assert_eq!(bearer_token(bad), Err(ProxyError::MissingToken), "{bad:?}");
        }
    }
}
