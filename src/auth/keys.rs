//! The keys that verify user tokens, each with the one algorithm it is used with, and the
//! minting of HMAC tokens for development and tests.

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::auth::jwks::{PublicKey, Sha};
use crate::error::{ProxyError, TokenProblem};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl HmacAlgorithm {
    /// Each algorithm by its JOSE name (`JWT_HMAC_ALGORITHM`).
    pub const CHOICES: [(&'static str, HmacAlgorithm); 3] = [
        ("HS256", HmacAlgorithm::Hs256),
        ("HS384", HmacAlgorithm::Hs384),
        ("HS512", HmacAlgorithm::Hs512),
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(choice, _)| *choice == name)
            .map(|(_, algorithm)| *algorithm)
    }

    fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, algorithm)| *algorithm == self)
            .map_or("HS256", |(name, _)| name)
    }

    /// The hash; a MAC is as long as its output.
    pub fn hash(self) -> Sha {
        match self {
            HmacAlgorithm::Hs256 => Sha::Sha256,
            HmacAlgorithm::Hs384 => Sha::Sha384,
            HmacAlgorithm::Hs512 => Sha::Sha512,
        }
    }

    /// Whether `mac` is the MAC of `signing_input` under `secret`, compared in constant time.
    /// The Worker checks HS384 and HS512 with WebCrypto (SHA-512 in Rust is ~9 KB of wasm), so
    /// on wasm only HS256 is computed here, and the others never hold.
    pub(super) fn mac_matches(self, secret: &Secret, signing_input: &[u8], mac: &[u8]) -> bool {
        let secret = secret.expose().as_bytes();
        match self.hash() {
            Sha::Sha256 => mac_matches::<Hmac<Sha256>>(secret, signing_input, mac),
            #[cfg(not(target_arch = "wasm32"))]
            Sha::Sha384 => mac_matches::<Hmac<sha2::Sha384>>(secret, signing_input, mac),
            #[cfg(not(target_arch = "wasm32"))]
            Sha::Sha512 => mac_matches::<Hmac<sha2::Sha512>>(secret, signing_input, mac),
            #[cfg(target_arch = "wasm32")]
            Sha::Sha384 | Sha::Sha512 => false,
        }
    }
}

fn mac_matches<M: Mac + hmac::digest::KeyInit>(secret: &[u8], signing_input: &[u8], mac: &[u8]) -> bool {
    <M as Mac>::new_from_slice(secret).is_ok_and(|hmac| hmac.chain_update(signing_input).verify_slice(mac).is_ok())
}

/// A key and the one algorithm it is used with (RFC 8725 section 3.1).
#[derive(Debug, Clone)]
pub enum VerifyingKey {
    Hmac {
        algorithm: HmacAlgorithm,
        secret: Secret,
    },
    /// An identity provider's key (RS*/PS*, ES256, EdDSA), from its key set.
    Public(PublicKey),
}

impl VerifyingKey {
    pub(super) fn algorithm(&self) -> &'static str {
        match self {
            VerifyingKey::Hmac { algorithm, .. } => algorithm.name(),
            VerifyingKey::Public(key) => key.algorithm().name(),
        }
    }

    pub(super) fn signature_bytes(&self) -> usize {
        match self {
            VerifyingKey::Hmac { algorithm, .. } => algorithm.hash().bytes(),
            VerifyingKey::Public(key) => key.signature_bytes(),
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
    /// The key a token must be checked with: the one its `kid` names, else the key without a
    /// kid (`JWT_SECRET`) for its algorithm. Either way the key's algorithm must be the header's.
    pub(super) fn select(&self, kid: Option<&str>, algorithm: &str) -> Result<&VerifyingKey, TokenProblem> {
        let by_kid = kid.and_then(|kid| self.keys.iter().find(|entry| entry.kid.as_deref() == Some(kid)));
        let entry = by_kid
            .or_else(|| {
                self.keys
                    .iter()
                    .find(|entry| entry.kid.is_none() && entry.key.algorithm() == algorithm)
            })
            .ok_or(TokenProblem::UnknownKey)?;
        if entry.key.algorithm() != algorithm {
            return Err(TokenProblem::UnsupportedHeader);
        }
        Ok(&entry.key)
    }
}

/// An HMAC token with `claims`: guest tokens (HS256) on the Worker, dev tokens (`mint-token`)
/// and the tests. Written here rather than by jwt-compact, whose token builder is ~1.5 KB gzip
/// of wasm; natively jwt-compact's own verification is the tests' cross-check.
pub fn mint_hmac_token(
    algorithm: HmacAlgorithm,
    secret: &[u8],
    claims: &Map<String, Value>,
) -> Result<String, ProxyError> {
    let encode = |value: Value| Base64UrlUnpadded::encode_string(value.to_string().as_bytes());
    let header = json!({ "alg": algorithm.name(), "typ": "JWT" });
    let signing_input = format!("{}.{}", encode(header), encode(Value::Object(claims.clone())));
    let mac = match algorithm.hash() {
        Sha::Sha256 => mac::<Hmac<Sha256>>(secret, &signing_input),
        #[cfg(not(target_arch = "wasm32"))]
        Sha::Sha384 => mac::<Hmac<sha2::Sha384>>(secret, &signing_input),
        #[cfg(not(target_arch = "wasm32"))]
        Sha::Sha512 => mac::<Hmac<sha2::Sha512>>(secret, &signing_input),
        // The Worker mints guest tokens only, always HS256 (see `mac_matches`).
        #[cfg(target_arch = "wasm32")]
        Sha::Sha384 | Sha::Sha512 => None,
    }
    .ok_or_else(|| ProxyError::Internal {
        detail: format!("cannot sign a {} token", algorithm.name()),
    })?;
    Ok(format!("{signing_input}.{}", Base64UrlUnpadded::encode_string(&mac)))
}

fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], signing_input: &str) -> Option<Vec<u8>> {
    let hmac = <M as Mac>::new_from_slice(secret).ok()?;
    Some(hmac.chain_update(signing_input).finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use jwt_compact::alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
    use jwt_compact::{AlgorithmExt, UntrustedToken};

    use super::*;

    #[test]
    fn minted_tokens_are_what_jwt_compact_accepts_for_their_algorithm_only() {
        let secret = b"a-test-secret-that-is-32-bytes-long!";
        let claims = json!({ "sub": "alice", "exp": 1_800_000_000, "plan": "pro" });
        let Value::Object(claims) = claims else { unreachable!() };
        for (_, algorithm) in HmacAlgorithm::CHOICES {
            let minted = mint_hmac_token(algorithm, secret, &claims).unwrap();
            let token = UntrustedToken::new(&minted).unwrap();
            assert_eq!(token.algorithm(), algorithm.name());
            let checks = [
                Hs256
                    .validator::<Map<String, Value>>(&Hs256Key::new(secret))
                    .validate(&token)
                    .is_ok(),
                Hs384
                    .validator::<Map<String, Value>>(&Hs384Key::new(secret))
                    .validate(&token)
                    .is_ok(),
                Hs512
                    .validator::<Map<String, Value>>(&Hs512Key::new(secret))
                    .validate(&token)
                    .is_ok(),
            ];
            let expected = HmacAlgorithm::CHOICES.map(|(_, other)| other == algorithm);
            assert_eq!(checks, expected, "{}", algorithm.name());
            if algorithm == HmacAlgorithm::Hs256 {
                let key = Hs256Key::new(secret);
                let verified = Hs256.validator::<Map<String, Value>>(&key).validate(&token).unwrap();
                let mut custom = claims.clone();
                custom.remove("exp"); // jwt-compact reads it into its own field
                assert_eq!(verified.claims().custom, custom);
                assert!(verified.claims().expiration.is_some());
            }
        }
    }
}
