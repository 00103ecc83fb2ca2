//! An identity provider's key set (JWKS, RFC 7517): which of its keys the proxy can use, each
//! with its one algorithm (RFC 8725 section 3.1). The Worker checks their signatures with
//! WebCrypto, importing `PublicKey::jwk`; natively (tests, mint-token, the fuzz targets) the
//! `native` module checks them in Rust. So the checks that decide whether a key is usable run
//! here, on both, and do not lean on either verifier.

#[cfg(not(target_arch = "wasm32"))]
mod native;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;

use crate::auth::{KeyEntry, VerifyingKey};

/// RSA moduli shorter than this are refused (RFC 7518 section 3.3).
const MIN_RSA_BITS: usize = 2048;
/// ES256 signatures are r || s (RFC 7518 section 3.4), Ed25519's R || S (RFC 8032).
const CURVE_SIGNATURE_BYTES: usize = 64;

/// The SHA-2 hash of an algorithm (HS*, RS*, PS*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha {
    Sha256,
    Sha384,
    Sha512,
}

impl Sha {
    /// The digest length: also an HMAC's length, and the salt length of RSA-PSS signatures
    /// (RFC 7518 sections 3.2 and 3.5).
    pub fn bytes(self) -> usize {
        match self {
            Sha::Sha256 => 32,
            Sha::Sha384 => 48,
            Sha::Sha512 => 64,
        }
    }
}

/// The signature algorithms of public keys (RFC 7518 section 3, RFC 8037 for EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicAlgorithm {
    /// RS256/384/512: RSASSA-PKCS1-v1_5.
    RsaPkcs1(Sha),
    /// PS256/384/512: RSASSA-PSS with MGF1 of the same hash.
    RsaPss(Sha),
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl PublicAlgorithm {
    const ALL: [PublicAlgorithm; 8] = [
        PublicAlgorithm::RsaPkcs1(Sha::Sha256),
        PublicAlgorithm::RsaPkcs1(Sha::Sha384),
        PublicAlgorithm::RsaPkcs1(Sha::Sha512),
        PublicAlgorithm::RsaPss(Sha::Sha256),
        PublicAlgorithm::RsaPss(Sha::Sha384),
        PublicAlgorithm::RsaPss(Sha::Sha512),
        PublicAlgorithm::Es256,
        PublicAlgorithm::EdDsa,
    ];

    /// The JOSE name, as a token's `alg` says it.
    pub fn name(self) -> &'static str {
        match self {
            PublicAlgorithm::RsaPkcs1(Sha::Sha256) => "RS256",
            PublicAlgorithm::RsaPkcs1(Sha::Sha384) => "RS384",
            PublicAlgorithm::RsaPkcs1(Sha::Sha512) => "RS512",
            PublicAlgorithm::RsaPss(Sha::Sha256) => "PS256",
            PublicAlgorithm::RsaPss(Sha::Sha384) => "PS384",
            PublicAlgorithm::RsaPss(Sha::Sha512) => "PS512",
            PublicAlgorithm::Es256 => "ES256",
            PublicAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|algorithm| algorithm.name() == name)
    }
}

/// An identity provider's public key and the one algorithm it verifies.
#[derive(Debug, Clone)]
pub struct PublicKey {
    algorithm: PublicAlgorithm,
    /// The JWK's public members as JSON: what WebCrypto imports.
    jwk: String,
    /// RSA signatures are as long as the modulus (RFC 8017 section 8.2.2), the others fixed.
    signature_bytes: usize,
    #[cfg(not(target_arch = "wasm32"))]
    native: native::Key,
}

/// The same key material used with the same algorithm: how the edge finds a key's import.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.jwk == other.jwk
    }
}

impl PublicKey {
    pub fn algorithm(&self) -> PublicAlgorithm {
        self.algorithm
    }

    pub fn jwk(&self) -> &str {
        &self.jwk
    }

    pub fn signature_bytes(&self) -> usize {
        self.signature_bytes
    }

    /// Whether `signature` is this key's over `signing_input`, checked in Rust.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.native.verifies(signing_input, signature)
    }

    /// On wasm only the edge checks public-key signatures (WebCrypto): here they fail closed.
    #[cfg(target_arch = "wasm32")]
    pub fn verifies(&self, _signing_input: &[u8], _signature: &[u8]) -> bool {
        false
    }

    /// The key of one JWK, with its one algorithm: the JWK's `alg` when present (it must fit
    /// the key type), else the only algorithm of that key type (RS256 for RSA).
    ///
    /// The members are read by hand: jwt-compact's `JsonWebKey` decoder (an internally tagged
    /// enum with a flattened member) is ~25 KB of wasm. What WebCrypto imports is the key's
    /// public members, in the form `JsonWebKey` writes them.
    fn from_jwk(jwk: &Value) -> Result<Self, String> {
        let declared = jwk.get("alg").and_then(Value::as_str);
        let kty = member_text(jwk, "kty")?;
        if kty == "oct" {
            return Err("symmetric keys do not belong in a key set (use JWT_SECRET)".into());
        }
        let private = match kty {
            "RSA" => ["d", "p", "q"].iter().any(|name| jwk.get(name).is_some()),
            _ => jwk.get("d").is_some(),
        };
        if private {
            return Err("holds private key material; publish only public keys".into());
        }
        let (algorithm, signature_bytes, public) = match (kty, declared) {
            ("RSA", alg) => {
                let (modulus, exponent) = (member_bytes(jwk, "n")?, member_bytes(jwk, "e")?);
                let name = alg.unwrap_or("RS256");
                let algorithm = PublicAlgorithm::parse(name)
                    .filter(|algorithm| matches!(algorithm, PublicAlgorithm::RsaPkcs1(_) | PublicAlgorithm::RsaPss(_)))
                    .ok_or(format!("alg {name} does not fit an RSA key"))?;
                let bits = bit_length(&modulus);
                if bits < MIN_RSA_BITS {
                    return Err(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
                }
                let public = format!(
                    r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
                    base64url(&modulus),
                    base64url(&exponent)
                );
                (algorithm, bits.div_ceil(8), public)
            }
            ("EC", None | Some("ES256")) if member_text(jwk, "crv")? == "P-256" => {
                let (x, y) = (member_bytes(jwk, "x")?, member_bytes(jwk, "y")?);
                let public = format!(
                    r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
                    base64url(&x),
                    base64url(&y)
                );
                (PublicAlgorithm::Es256, CURVE_SIGNATURE_BYTES, public)
            }
            ("OKP", None | Some("EdDSA" | "Ed25519")) if member_text(jwk, "crv")? == "Ed25519" => {
                let public = format!(
                    r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                    base64url(&member_bytes(jwk, "x")?)
                );
                (PublicAlgorithm::EdDsa, CURVE_SIGNATURE_BYTES, public)
            }
            (_, alg) => {
                return Err(format!(
                    "unsupported key type or alg {alg:?} (supported: RSA, EC P-256, OKP Ed25519)"
                ))
            }
        };
        Ok(PublicKey {
            algorithm,
            #[cfg(not(target_arch = "wasm32"))]
            native: native::Key::from_jwk(
                &serde_json::from_str(&public).map_err(|e| format!("not a JWK: {e}"))?,
                algorithm,
            )?,
            jwk: public,
            signature_bytes,
        })
    }
}

/// A JWK member that must be a string.
fn member_text<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(format!("not a JWK: no string `{name}`"))
}

/// A JWK member in unpadded base64url (RFC 7518 section 6).
fn member_bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    Base64UrlUnpadded::decode_vec(member_text(jwk, name)?).map_err(|_| format!("not a JWK: `{name}` is not base64url"))
}

fn base64url(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// The bit length of a big-endian unsigned integer, such as a JWK's `n`.
fn bit_length(bytes: &[u8]) -> usize {
    let significant = bytes
        .iter()
        .position(|&byte| byte != 0)
        .map_or(&[][..], |first| &bytes[first..]);
    significant
        .first()
        .map_or(0, |&top| significant.len() * 8 - top.leading_zeros() as usize)
}

/// A parsed JSON Web Key Set: the usable signature keys, and why any others were skipped
/// (for the log; one odd key must not lock every user out).
#[derive(Debug, Clone, Default)]
pub struct ParsedKeySet {
    pub keys: Vec<ProviderKey>,
    pub skipped: Vec<String>,
}

/// One usable key of a provider's set.
#[derive(Debug, Clone)]
pub struct ProviderKey {
    /// `kid` only indexes the set; it is never fetched or used as a path.
    pub kid: Option<String>,
    pub key: PublicKey,
}

impl From<ProviderKey> for KeyEntry {
    fn from(key: ProviderKey) -> Self {
        KeyEntry {
            kid: key.kid,
            key: VerifyingKey::Public(key.key),
        }
    }
}

/// Parses a JWKS document (`{"keys": [...]}`), as identity providers publish it.
pub fn parse_jwks(document: &[u8]) -> Result<ParsedKeySet, String> {
    let document: Value = serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let mut parsed = ParsedKeySet::default();
    for (index, jwk) in keys.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let label = format!("key {index} (kid {kid:?})");
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|usage| usage != "sig")
        {
            parsed.skipped.push(format!("{label}: not a signature key"));
            continue;
        }
        match PublicKey::from_jwk(jwk) {
            Ok(key) => parsed.keys.push(ProviderKey { kid, key }),
            Err(why) => parsed.skipped.push(format!("{label}: {why}")),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding};

    /// Keys of each type, as `make fuzz` uses them (a 2048-bit RSA key, P-256, Ed25519).
    const JWKS: &[u8] = include_bytes!("../../fuzz/jwks.json");

    #[test]
    fn bit_lengths_ignore_leading_zero_bytes() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 0x01, 0xff]), 9);
        assert_eq!(bit_length(&[0x80; 256]), 2048);
        assert_eq!(bit_length(&[0x7f; 256]), 2047);
    }

    #[test]
    fn a_modulus_sent_with_a_leading_zero_byte_keeps_its_signature_length() {
        let mut document: Value = serde_json::from_slice(JWKS).unwrap();
        let rsa = &mut document["keys"][0];
        let modulus = Base64UrlUnpadded::decode_vec(rsa["n"].as_str().unwrap()).unwrap();
        let padded = [&[0][..], &modulus].concat();
        rsa["n"] = Value::String(Base64UrlUnpadded::encode_string(&padded));
        let parsed = parse_jwks(document.to_string().as_bytes()).unwrap();
        let lengths: Vec<_> = parsed.keys.iter().map(|key| key.key.signature_bytes()).collect();
        assert_eq!(lengths, [256, 64, 64]);
        let algorithms: Vec<_> = parsed.keys.iter().map(|key| key.key.algorithm().name()).collect();
        assert_eq!(algorithms, ["RS256", "ES256", "EdDSA"]);
    }

    #[test]
    fn webcrypto_imports_the_public_members_as_jwt_compact_writes_them() {
        let document: Value = serde_json::from_slice(JWKS).unwrap();
        let keys = document["keys"].as_array().unwrap();
        let parsed = parse_jwks(JWKS).unwrap();
        assert_eq!(parsed.keys.len(), keys.len());
        for (jwk, key) in keys.iter().zip(&parsed.keys) {
            let full: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_value(jwk.clone()).unwrap();
            assert_eq!(key.key.jwk(), serde_json::to_string(&full).unwrap());
        }
    }

    #[test]
    fn any_private_member_refuses_the_key() {
        let document: Value = serde_json::from_slice(JWKS).unwrap();
        for (index, member) in [(0, "d"), (0, "p"), (0, "q"), (1, "d"), (2, "d")] {
            let mut key = document["keys"][index].clone();
            key[member] = Value::String("AQAB".into());
            let why = PublicKey::from_jwk(&key).unwrap_err();
            assert!(why.contains("private key material"), "{member}: {why}");
        }
    }

    #[test]
    fn each_algorithm_is_known_by_its_jose_name() {
        for algorithm in PublicAlgorithm::ALL {
            assert_eq!(PublicAlgorithm::parse(algorithm.name()), Some(algorithm));
        }
        assert_eq!(PublicAlgorithm::parse("HS256"), None);
        assert_eq!(PublicAlgorithm::parse("none"), None);
    }
}
