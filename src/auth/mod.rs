//! User token (JWT) verification, given keys and "now", in three steps: the token's shape
//! (`check_shape`), what its signature must be checked with (`TokenShape::signature_check`: the
//! key its header names, with the key's own algorithm, never the token's), and, once that
//! signature holds, its claims (`TokenShape::identity`). A secret's MAC is checked here; a
//! provider's public key is checked by the platform on the edge (WebCrypto), natively in Rust.
//!
//! The checks are this module's own, with integer arithmetic: jwt-compact (used to mint) would
//! not check `crit`/`b64`/`jku`/..., `iss` or `aud`, and its time checks can overflow on a
//! validly signed `nbf` near `i64::MIN`.

pub mod guest;
pub mod jwks;
pub mod key_refresh;
mod keys;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

use crate::error::{ProxyError, TokenProblem};
use crate::secret::Secret;
pub use keys::{mint_hmac_token, HmacAlgorithm, KeyEntry, KeySet, VerifyingKey};

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
    /// The plan the token's plan claim (`PLAN_CLAIM`) names, if it has one. A value that is
    /// not a string is kept as its JSON text, so it names no plan and is refused as unknown.
    pub plan: Option<String>,
    /// For a token on plan `guest` (a guest's, or a user token claiming it): the object its
    /// client's guests share (`client:` + an HMAC of its address), set by the edge. `None`
    /// otherwise.
    pub guest_client: Option<String>,
}

impl Identity {
    /// Whom OpenAI's abuse monitoring should see (`safety_identifier`): a guest's client, not
    /// its token's random `sub`, or one abusive visitor minting tokens looks like many users.
    pub fn abuse_subject(&self) -> &str {
        self.guest_client.as_deref().unwrap_or(&self.sub)
    }
}

/// What a valid token's claims must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: i64,
    pub max_ttl_seconds: i64,
    /// The claim that names the user's plan (`PLAN_CLAIM`).
    pub plan_claim: String,
}

/// The token of an `Authorization` header (RFC 6750 section 2.1). The Fetch API joins repeated
/// headers with ", ", which a JWT never contains, so two headers fail here too.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, ProxyError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ProxyError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ProxyError::MissingToken)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains([',', ' ']) {
        return Err(ProxyError::MissingToken);
    }
    Ok(token)
}

/// A token's header and claims, decoded and checked for shape, not yet for its signature.
pub struct TokenShape<'t> {
    header: JsonObject,
    claims: JsonObject,
    times: TimeClaims,
    /// `header.claims` as sent: the bytes the signature covers.
    signing_input: &'t str,
    signature: Vec<u8>,
}

/// What must hold before a token's claims are believed: `signature` is `key`'s over
/// `signing_input`. Its verdict is the only way to a `VerifiedToken`.
pub struct SignatureCheck<'a> {
    pub key: &'a VerifyingKey,
    pub signing_input: &'a [u8],
    pub signature: &'a [u8],
    shape: &'a TokenShape<'a>,
}

impl<'a> SignatureCheck<'a> {
    /// The check in Rust: a secret's MAC (cheap and synchronous), or natively a public key's
    /// signature. The edge asks WebCrypto for public keys instead, and `concludes` with its verdict.
    pub fn verify_in_rust(self) -> Result<VerifiedToken<'a>, TokenProblem> {
        let holds = match self.key {
            VerifyingKey::Hmac { algorithm, secret } => {
                algorithm.mac_matches(secret, self.signing_input, self.signature)
            }
            VerifyingKey::Public(key) => key.verifies(self.signing_input, self.signature),
        };
        self.concludes(holds)
    }

    /// The platform's verdict on this check's signature (WebCrypto on the edge).
    pub fn concludes(self, signature_holds: bool) -> Result<VerifiedToken<'a>, TokenProblem> {
        if !signature_holds {
            return Err(TokenProblem::BadSignature);
        }
        Ok(VerifiedToken {
            claims: &self.shape.claims,
            times: self.shape.times,
        })
    }
}

/// A token whose signature held, as jwt-compact's `Token` is an `UntrustedToken` that passed
/// validation: its claims can be read only from here.
pub struct VerifiedToken<'a> {
    claims: &'a JsonObject,
    times: TimeClaims,
}

impl VerifiedToken<'_> {
    /// The caller, if the claims satisfy `rules` at `now` (Unix seconds).
    pub fn identity(self, rules: &ClaimRules, now: i64) -> Result<Identity, TokenProblem> {
        check_claims(self.claims, self.times, rules, now)
    }
}

impl<'t> TokenShape<'t> {
    /// The `iss` the token claims, not yet verified: it only decides which key checks it.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// What this token's signature must be checked with, taken from `keys`. A signature of
    /// another length than the key's is bad before any crypto.
    pub fn signature_check<'a>(&'a self, keys: &'a KeySet) -> Result<SignatureCheck<'a>, TokenProblem> {
        let algorithm = self.header.get("alg").and_then(Value::as_str).unwrap_or_default();
        let kid = self.header.get("kid").and_then(Value::as_str);
        let key = keys.select(kid, algorithm)?;
        if self.signature.len() != key.signature_bytes() {
            return Err(TokenProblem::BadSignature);
        }
        Ok(SignatureCheck {
            key,
            signing_input: self.signing_input.as_bytes(),
            signature: &self.signature,
            shape: self,
        })
    }
}

/// Decodes `token` and checks its shape. Costs no key: garbage is refused before anything (a
/// key set fetch included) is spent on it.
pub fn check_shape(token: &str) -> Result<TokenShape<'_>, TokenProblem> {
    let [header, claims, signature] = segments(token)?;
    let signing_input = &token[..header.len() + 1 + claims.len()];
    let (header, claims) = (decode_object(header)?, decode_object(claims)?);
    let times = TimeClaims::parse(&claims)?;
    if !header.get("alg").is_some_and(Value::is_string) {
        return Err(TokenProblem::Malformed);
    }
    if FORBIDDEN_HEADER_FIELDS.iter().any(|field| header.contains_key(*field)) {
        return Err(TokenProblem::UnsupportedHeader);
    }
    match header.get("kid") {
        None => {}
        Some(Value::String(kid)) if kid.len() <= 256 => {}
        Some(_) => return Err(TokenProblem::Malformed),
    }
    Ok(TokenShape {
        header,
        claims,
        times,
        signing_input,
        signature: decode(signature)?,
    })
}

/// Verifies `token` at time `now` (Unix seconds) with every signature checked in Rust: guest
/// tokens (a secret's) on the edge, and tokens of every key type natively.
pub fn verify(token: &str, keys: &KeySet, rules: &ClaimRules, now: i64) -> Result<Identity, TokenProblem> {
    check_shape(token)?
        .signature_check(keys)?
        .verify_in_rust()?
        .identity(rules, now)
}

type JsonObject = Map<String, Value>;

/// The three base64url segments of a compact JWS, refusing oversized or malformed tokens.
fn segments(token: &str) -> Result<[&str; 3], TokenProblem> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenProblem::Malformed);
    }
    let base64url = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let segments: [&str; 3] = token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| TokenProblem::Malformed)?;
    if !segments.iter().all(|s| base64url(s)) {
        return Err(TokenProblem::Malformed);
    }
    Ok(segments)
}

fn decode(segment: &str) -> Result<Vec<u8>, TokenProblem> {
    Base64UrlUnpadded::decode_vec(segment).map_err(|_| TokenProblem::Malformed)
}

fn decode_object(segment: &str) -> Result<JsonObject, TokenProblem> {
    match serde_json::from_slice(&decode(segment)?) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenProblem::Malformed),
    }
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
    let TimeClaims {
        expires_at,
        not_before,
        issued_at,
    } = times;
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
    let plan = match claims.get(&rules.plan_claim) {
        None | Some(Value::Null) => None,
        Some(Value::String(plan)) => Some(plan.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(Identity {
        sub,
        issued_at: issued_at.or(not_before),
        plan,
        guest_client: None,
    })
}

/// Compares a presented admin token with the configured one in constant time. Both are
/// hashed first so that not even their lengths leak through timing.
pub fn admin_token_matches(presented: &str, expected: &Secret) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(presented.as_bytes())
        .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::alg::{Hs256, Hs256Key};
    use jwt_compact::{AlgorithmExt, Claims};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-32-bytes-long!";
    const NOW: i64 = 1_800_000_000;

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

    fn claims(extra: Value) -> Map<String, Value> {
        let mut claims = json!({ "sub": "alice", "iat": NOW - 10, "exp": NOW + 600 });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
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
        format!(
            "{signing_input}.{}",
            Base64UrlUnpadded::encode_string(&mac.finalize().into_bytes())
        )
    }

    fn check(token: &str) -> Result<Identity, TokenProblem> {
        verify(token, &keys(), &rules(), NOW)
    }

    #[test]
    fn a_valid_token_yields_its_subject() {
        let identity = check(&token(json!({}))).unwrap();
        assert_eq!(
            identity,
            Identity {
                sub: "alice".into(),
                issued_at: Some(NOW - 10),
                plan: None,
                guest_client: None,
            }
        );
    }

    #[test]
    fn a_guest_is_attributed_to_its_client_and_a_user_to_its_sub() {
        let mut identity = check(&token(json!({}))).unwrap();
        assert_eq!(identity.abuse_subject(), "alice");
        identity.guest_client = Some("client:abc".into());
        assert_eq!(identity.abuse_subject(), "client:abc");
    }

    #[test]
    fn garbage_is_refused_by_its_shape_before_any_key_is_needed() {
        let garbage = [
            "a.b".to_owned(),
            "x.y.z".to_owned(),
            "e30.e30.c2ln".to_owned(),                             // `{}` header: no alg
            raw_token(json!({"alg":"RS256"}), json!({"sub":"a"})), // no exp
            raw_token(json!({"alg":"RS256","kid":7}), json!({"sub":"a","exp":NOW})),
            raw_token(
                json!({"alg":"RS256","jku":"https://evil"}),
                json!({"sub":"a","exp":NOW}),
            ),
        ];
        for token in &garbage {
            assert!(check_shape(token).is_err(), "{token}");
        }
        assert!(check_shape(&token(json!({}))).is_ok());
        let other_key = raw_token(
            json!({"alg":"ES256","kid":"rotated"}),
            json!({"sub":"a","exp":NOW + 60}),
        );
        assert!(
            check_shape(&other_key).is_ok(),
            "well-formed tokens go on to the key set"
        );
    }

    #[test]
    fn signature_must_match() {
        let good = token(json!({}));
        let [header, claims, signature]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();

        let other_key = mint_hmac_token(
            HmacAlgorithm::Hs256,
            b"another-secret-of-32-bytes-length",
            &claims_map(),
        )
        .unwrap();
        let other_signature = other_key.rsplit('.').next().unwrap();
        assert_eq!(
            check(&format!("{header}.{claims}.{other_signature}")),
            Err(TokenProblem::BadSignature)
        );

        let mallory = Base64UrlUnpadded::encode_string(json!({"sub":"mallory","exp":NOW+600}).to_string().as_bytes());
        assert_eq!(
            check(&format!("{header}.{mallory}.{signature}")),
            Err(TokenProblem::BadSignature)
        );
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
        let hs384 = mint_hmac_token(
            HmacAlgorithm::Hs384,
            SECRET.as_bytes(),
            &claims.as_object().unwrap().clone(),
        )
        .unwrap();
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
        assert_eq!(
            check(&raw_token(json!({"alg":"HS256"}), json!("claims"))),
            Err(TokenProblem::Malformed)
        );
    }

    #[test]
    fn expiry_is_required_and_exclusive() {
        let no_leeway = ClaimRules {
            leeway_seconds: 0,
            ..rules()
        };
        let at = |exp: i64| {
            verify(
                &raw_token(json!({"alg":"HS256"}), json!({"sub":"a","exp":exp})),
                &keys(),
                &no_leeway,
                NOW,
            )
        };
        assert_eq!(at(NOW), Err(TokenProblem::Expired));
        assert!(at(NOW + 1).is_ok());
        assert_eq!(check(&token(json!({"exp": NOW - 31}))), Err(TokenProblem::Expired));
        assert!(check(&token(json!({"exp": NOW - 29}))).is_ok(), "inside the leeway");
        assert_eq!(
            check(&raw_token(json!({"alg":"HS256"}), json!({"sub":"a"}))),
            Err(TokenProblem::MissingClaim("exp"))
        );
    }

    #[test]
    fn time_claims_must_be_sane_integers() {
        for bad in [
            json!(1.8e9),
            json!("1800000600"),
            json!(-8_334_601_228_800_i64),
            json!(-1),
            json!(1e300),
            json!(u64::MAX),
        ] {
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
        assert_eq!(
            check(&token(json!({"iat": NOW + 60}))),
            Err(TokenProblem::IssuedInFuture)
        );
    }

    #[test]
    fn lifetime_is_capped() {
        assert_eq!(
            check(&token(json!({"iat": NOW, "exp": NOW + 86_401}))),
            Err(TokenProblem::LifetimeTooLong)
        );
        assert!(check(&token(json!({"iat": NOW, "exp": NOW + 86_400}))).is_ok());
        let no_iat = raw_token(json!({"alg":"HS256"}), json!({"sub":"a","exp":NOW + 90_000}));
        assert_eq!(check(&no_iat), Err(TokenProblem::LifetimeTooLong));
    }

    #[test]
    fn the_plan_claim_names_the_user_s_plan() {
        let plan = |extra: Value| verify(&token(extra), &keys(), &rules(), NOW).unwrap().plan;
        assert_eq!(plan(json!({})), None);
        assert_eq!(plan(json!({ "plan": "pro" })), Some("pro".into()));
        assert_eq!(
            plan(json!({ "plan": 3 })),
            Some("3".into()),
            "names no plan: refused as unknown"
        );
        let tier = ClaimRules {
            plan_claim: "https://app.example/tier".into(),
            ..rules()
        };
        let claims = json!({ "https://app.example/tier": "free", "plan": "pro" });
        assert_eq!(
            verify(&token(claims), &keys(), &tier, NOW).unwrap().plan,
            Some("free".into())
        );
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let strict = ClaimRules {
            issuer: Some("https://id.example".into()),
            audience: Some("edge".into()),
            ..rules()
        };
        let run = |extra: Value| verify(&token(extra), &keys(), &strict, NOW);
        assert!(run(json!({"iss":"https://id.example","aud":"edge"})).is_ok());
        assert!(run(json!({"iss":"https://id.example","aud":["other","edge"]})).is_ok());
        assert_eq!(
            run(json!({"iss":"https://evil.example","aud":"edge"})),
            Err(TokenProblem::WrongIssuer)
        );
        assert_eq!(run(json!({"aud":"edge"})), Err(TokenProblem::WrongIssuer));
        assert_eq!(
            run(json!({"iss":"https://id.example","aud":"other"})),
            Err(TokenProblem::WrongAudience)
        );
        assert_eq!(
            run(json!({"iss":"https://id.example"})),
            Err(TokenProblem::WrongAudience)
        );
    }

    #[test]
    fn subject_is_required_and_bounded() {
        assert_eq!(
            check(&token(json!({"sub": ""}))),
            Err(TokenProblem::InvalidClaim("sub"))
        );
        assert_eq!(
            check(&token(json!({"sub": 42}))),
            Err(TokenProblem::InvalidClaim("sub"))
        );
        assert_eq!(
            check(&token(json!({"sub": "x".repeat(257)}))),
            Err(TokenProblem::InvalidClaim("sub"))
        );
        let no_sub = raw_token(json!({"alg":"HS256"}), json!({"exp":NOW+600}));
        assert_eq!(check(&no_sub), Err(TokenProblem::MissingClaim("sub")));
    }

    mod key_sets {
        use super::*;
        use crate::auth::jwks::parse_jwks;
        use jwt_compact::alg::{Ed25519, Es256, Rsa};
        use jwt_compact::jwk::JsonWebKey;
        use jwt_compact::Header;
        use rand_core::OsRng;

        /// Every RSA algorithm, each published with its own kid (named after it) for one key.
        const RSA_ALGORITHMS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

        struct Issuer {
            jwks: Value,
            rsa: rsa::RsaPrivateKey,
            es256: p256::ecdsa::SigningKey,
            ed25519: ed25519_compact::SecretKey,
        }

        fn jwk(public: JsonWebKey<'_>, kid: &str, alg: &str) -> Value {
            let mut jwk = serde_json::to_value(&public).unwrap();
            jwk["kid"] = json!(kid);
            jwk["alg"] = json!(alg);
            jwk["use"] = json!("sig");
            jwk
        }

        fn issuer() -> Issuer {
            let (rsa, rsa_public) = rsa_pair(2048);
            let es256 = p256::ecdsa::SigningKey::random(&mut OsRng);
            let ed25519 = ed25519_compact::KeyPair::generate();
            let mut keys: Vec<Value> = RSA_ALGORITHMS
                .iter()
                .map(|alg| jwk(JsonWebKey::from(&rsa_public), alg, alg))
                .collect();
            keys.push(jwk(JsonWebKey::from(es256.verifying_key()), "ec-1", "ES256"));
            keys.push(jwk(JsonWebKey::from(&ed25519.pk), "ed-1", "EdDSA"));
            Issuer {
                jwks: json!({ "keys": keys }),
                rsa,
                es256,
                ed25519: ed25519.sk,
            }
        }

        fn keys_of(issuer: &Issuer) -> KeySet {
            let parsed = parse_jwks(issuer.jwks.to_string().as_bytes()).unwrap();
            assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
            KeySet {
                keys: parsed.keys.into_iter().map(KeyEntry::from).collect(),
            }
        }

        fn good_claims() -> Claims<Map<String, Value>> {
            Claims::new(claims(json!({})))
        }

        fn header(kid: &str) -> Header {
            Header::empty().with_key_id(kid)
        }

        /// A valid token of every algorithm a provider's key can have.
        fn tokens_of_every_algorithm(issuer: &Issuer) -> Vec<String> {
            let mut tokens: Vec<String> = RSA_ALGORITHMS
                .iter()
                .map(|alg| {
                    Rsa::with_name(alg)
                        .token(&header(alg), &good_claims(), &issuer.rsa)
                        .unwrap()
                })
                .collect();
            tokens.push(Es256.token(&header("ec-1"), &good_claims(), &issuer.es256).unwrap());
            tokens.push(Ed25519.token(&header("ed-1"), &good_claims(), &issuer.ed25519).unwrap());
            tokens
        }

        #[test]
        fn tokens_of_every_provider_algorithm_verify() {
            let issuer = issuer();
            let keys = keys_of(&issuer);
            for token in tokens_of_every_algorithm(&issuer) {
                assert_eq!(verify(&token, &keys, &rules(), NOW).unwrap().sub, "alice", "{token}");
            }
        }

        #[test]
        fn a_changed_cut_or_out_of_range_signature_is_bad_for_every_algorithm() {
            let issuer = issuer();
            let keys = keys_of(&issuer);
            for token in tokens_of_every_algorithm(&issuer) {
                let (signing_input, signature) = token.rsplit_once('.').unwrap();
                let mut changed = Base64UrlUnpadded::decode_vec(signature).unwrap();
                changed[7] ^= 1;
                let cut = &changed[1..];
                // All ones: above the RSA modulus, r and s above the P-256 order, S above Ed25519's.
                let out_of_range = vec![0xff; changed.len()];
                for signature in [&changed[..], cut, &out_of_range] {
                    let forged = format!("{signing_input}.{}", Base64UrlUnpadded::encode_string(signature));
                    assert_eq!(
                        verify(&forged, &keys, &rules(), NOW),
                        Err(TokenProblem::BadSignature),
                        "{token}"
                    );
                }
            }
        }

        #[test]
        fn the_key_decides_the_algorithm() {
            let issuer = issuer();
            let keys = keys_of(&issuer);
            // HS256 signed with the RSA public key's JWK as the "secret": the classic confusion.
            let public_jwk = issuer.jwks["keys"][0].to_string();
            let confused = Hs256
                .token(&header("RS256"), &good_claims(), &Hs256Key::new(public_jwk.as_bytes()))
                .unwrap();
            assert_eq!(
                verify(&confused, &keys, &rules(), NOW),
                Err(TokenProblem::UnsupportedHeader)
            );
            // A valid RS384 signature with a key published for RS256, and a PKCS#1 v1.5
            // signature under the kid published for PSS with the same hash.
            for (alg, kid) in [("RS384", "RS256"), ("RS256", "PS256")] {
                let token = Rsa::with_name(alg)
                    .token(&header(kid), &good_claims(), &issuer.rsa)
                    .unwrap();
                assert_eq!(
                    verify(&token, &keys, &rules(), NOW),
                    Err(TokenProblem::UnsupportedHeader),
                    "{alg} as {kid}"
                );
            }
            // The EC key's token presented under the Ed25519 key's kid.
            let swapped = Es256.token(&header("ed-1"), &good_claims(), &issuer.es256).unwrap();
            assert_eq!(
                verify(&swapped, &keys, &rules(), NOW),
                Err(TokenProblem::UnsupportedHeader)
            );
        }

        #[test]
        fn unknown_kids_and_other_issuers_fail() {
            let issuer = issuer();
            let keys = keys_of(&issuer);
            let unknown = Es256.token(&header("ec-2"), &good_claims(), &issuer.es256).unwrap();
            assert_eq!(verify(&unknown, &keys, &rules(), NOW), Err(TokenProblem::UnknownKey));
            let stranger = p256::ecdsa::SigningKey::random(&mut OsRng);
            let forged = Es256.token(&header("ec-1"), &good_claims(), &stranger).unwrap();
            assert_eq!(verify(&forged, &keys, &rules(), NOW), Err(TokenProblem::BadSignature));
        }

        #[test]
        fn hmac_tokens_with_a_kid_still_use_the_secret() {
            let mut keys = keys_of(&issuer());
            keys.keys.push(KeyEntry {
                kid: None,
                key: VerifyingKey::Hmac {
                    algorithm: HmacAlgorithm::Hs256,
                    secret: Secret::new(SECRET),
                },
            });
            let with_kid = Hs256
                .token(&header("backend-1"), &good_claims(), &Hs256Key::new(SECRET.as_bytes()))
                .unwrap();
            assert!(verify(&with_kid, &keys, &rules(), NOW).is_ok());
        }

        #[test]
        fn unusable_keys_are_skipped_with_a_reason() {
            let (_, weak) = rsa_pair(1024);
            let strong_private = issuer().rsa;
            let mut private_jwk = serde_json::to_value(JsonWebKey::from(&strong_private)).unwrap();
            private_jwk["kid"] = json!("leaked");
            let mut off_curve = jwk(
                JsonWebKey::from(p256::ecdsa::SigningKey::random(&mut OsRng).verifying_key()),
                "off-curve",
                "ES256",
            );
            off_curve["y"] = off_curve["x"].clone();
            let document = json!({ "keys": [
                jwk(JsonWebKey::from(&weak), "weak", "RS256"),
                private_jwk,
                { "kty": "oct", "k": "c2VjcmV0", "kid": "oct" },
                { "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384" },
                { "kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc", "kid": "enc" },
                { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "ES256", "kid": "mismatch" },
                jwk(JsonWebKey::from(&strong_private.to_public_key()), "rsa-as-ec", "ES256"),
                off_curve,
            ]});
            let parsed = parse_jwks(document.to_string().as_bytes()).unwrap();
            assert!(parsed.keys.is_empty());
            let reasons = parsed.skipped.join("\n");
            for reason in [
                "shorter than 2048",
                "private key",
                "symmetric",
                "unsupported",
                "not a signature key",
                "alg ES256 does not fit an RSA key",
                "bad ES256 key",
            ] {
                assert!(reasons.contains(reason), "{reason} in {reasons}");
            }
            assert_eq!(parsed.skipped.len(), 8);
            assert!(parse_jwks(b"[]").is_err());
            assert!(parse_jwks(b"{\"keys\": 1}").is_err());
        }

        fn rsa_pair(bits: usize) -> (rsa::RsaPrivateKey, rsa::RsaPublicKey) {
            let private = rsa::RsaPrivateKey::new(&mut OsRng, bits).unwrap();
            let public = private.to_public_key();
            (private, public)
        }
    }

    #[test]
    fn admin_tokens_must_match_exactly() {
        let expected = Secret::new("admin-token-admin-token-admin-token");
        assert!(admin_token_matches("admin-token-admin-token-admin-token", &expected));
        for wrong in [
            "",
            "admin-token-admin-token-admin-toke",
            "admin-token-admin-token-admin-token ",
            "ADMIN-token-admin-token-admin-token",
        ] {
            assert!(!admin_token_matches(wrong, &expected), "{wrong}");
        }
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(Some("bearer abc.def.ghi")), Ok("abc.def.ghi"));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic dXNlcjpwdw=="),
            Some("Bearer a.b.c, Bearer d.e.f"),
            Some("abc.def.ghi"),
        ] {
            assert_eq!(bearer_token(bad), Err(ProxyError::MissingToken), "{bad:?}");
        }
    }
}
