//! Provider keys' signatures checked by the platform's WebCrypto (`crypto.subtle`), so that no
//! bignum or curve arithmetic ships in the wasm or runs in it. Each key is imported once per
//! isolate, when its set is loaded, and kept with the set; a secret's MAC stays in the core.

use std::rc::Rc;

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use worker::js_sys::{Array, Promise, Uint8Array, JSON};
use worker::wasm_bindgen_futures::JsFuture;

use crate::auth::jwks::{ParsedKeySet, ProviderKey, PublicAlgorithm, PublicKey, Sha};
use crate::auth::{KeyEntry, KeySet, TokenShape, VerifiedToken, VerifyingKey};
use crate::error::ProxyError;
use crate::secret::Secret;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn import_key(
        format: &str,
        key_data: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

/// A provider key imported into WebCrypto, with the parameters its signatures are checked with.
struct ImportedKey {
    key: JsValue,
    params: JsValue,
}

impl ImportedKey {
    /// Imports `key` for verifying only. WebCrypto refuses what it cannot use (a point off its
    /// curve, an RSA exponent it rejects), which the core's checks on wasm cannot see.
    async fn import(key: &PublicKey) -> Result<Self, JsValue> {
        let (import_params, params) = parameters(key.algorithm());
        let usages = Array::of1(&"verify".into());
        let promise = import_key("jwk", &JSON::parse(key.jwk())?, &js(&import_params)?, false, &usages)?;
        Ok(ImportedKey {
            key: JsFuture::from(promise).await?,
            params: js(&params)?,
        })
    }

    async fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> Result<bool, ProxyError> {
        // Copies, not views of wasm memory: the check completes after an await, when other
        // requests may have grown (so moved) that memory.
        let promise = verify(
            &self.params,
            &self.key,
            &Uint8Array::from(signature),
            &Uint8Array::from(signing_input),
        )?;
        Ok(JsFuture::from(promise).await?.as_bool() == Some(true))
    }
}

/// HS384 and HS512 by WebCrypto, which compares in constant time: SHA-512 stays out of the
/// wasm (HS256 stays in Rust: its SHA-256 is in the wasm anyway, and it needs no await).
async fn hmac_verifies(sha: Sha, secret: &Secret, signing_input: &[u8], mac: &[u8]) -> Result<bool, ProxyError> {
    let import_params = js(&json!({ "name": "HMAC", "hash": hash_name(sha) }))?;
    let usages = Array::of1(&"verify".into());
    let secret = Uint8Array::from(secret.expose().as_bytes());
    let key = JsFuture::from(import_key("raw", &secret, &import_params, false, &usages)?).await?;
    let params = ImportedKey {
        key,
        params: "HMAC".into(),
    };
    params.verifies(signing_input, mac).await
}

fn hash_name(sha: Sha) -> String {
    format!("SHA-{}", sha.bytes() * 8)
}

/// WebCrypto's parameters for a JOSE algorithm: to import its keys, and to verify with them.
fn parameters(algorithm: PublicAlgorithm) -> (Value, Value) {
    match algorithm {
        PublicAlgorithm::RsaPkcs1(sha) => (
            json!({ "name": "RSASSA-PKCS1-v1_5", "hash": hash_name(sha) }),
            json!({ "name": "RSASSA-PKCS1-v1_5" }),
        ),
        // RFC 7518 section 3.5: the salt is as long as the hash.
        PublicAlgorithm::RsaPss(sha) => (
            json!({ "name": "RSA-PSS", "hash": hash_name(sha) }),
            json!({ "name": "RSA-PSS", "saltLength": sha.bytes() }),
        ),
        // JWS signatures are r || s (RFC 7518 section 3.4), the form WebCrypto takes.
        PublicAlgorithm::Es256 => (
            json!({ "name": "ECDSA", "namedCurve": "P-256" }),
            json!({ "name": "ECDSA", "hash": "SHA-256" }),
        ),
        PublicAlgorithm::EdDsa => (json!({ "name": "Ed25519" }), json!({ "name": "Ed25519" })),
    }
}

fn js(value: &Value) -> Result<JsValue, JsValue> {
    JSON::parse(&value.to_string())
}

/// A provider's usable keys, each with its WebCrypto import.
#[derive(Default)]
pub struct ProviderKeys(Vec<(ProviderKey, ImportedKey)>);

impl ProviderKeys {
    /// Imports each usable key of `parsed`. A key WebCrypto refuses joins the skipped ones,
    /// with the reason; the key itself never appears in it.
    pub async fn import(parsed: ParsedKeySet) -> (Self, Vec<String>) {
        let ParsedKeySet { keys, mut skipped } = parsed;
        let mut imported = Vec::with_capacity(keys.len());
        for key in keys {
            match ImportedKey::import(&key.key).await {
                Ok(import) => imported.push((key, import)),
                Err(error) => {
                    let why = String::from(worker::js_sys::Error::from(error).to_string());
                    skipped.push(format!("kid {:?}: WebCrypto refused it: {why}", key.kid));
                }
            }
        }
        (ProviderKeys(imported), skipped)
    }
}

/// Every key a user token may be checked with: the core's set, and the imports of its
/// provider keys (shared with the isolate's held set).
pub struct UserKeys {
    set: KeySet,
    provider: Rc<ProviderKeys>,
}

impl UserKeys {
    /// `JWT_SECRET` (if any) and the provider's keys.
    pub fn new(secret: Option<KeyEntry>, provider: Rc<ProviderKeys>) -> Self {
        let provider_entries = provider.0.iter().map(|(key, _)| KeyEntry::from(key.clone()));
        let set = KeySet {
            keys: secret.into_iter().chain(provider_entries).collect(),
        };
        UserKeys { set, provider }
    }

    /// `shape`, once its signature held with the key the core picks for it.
    pub async fn verify<'a>(&'a self, shape: &'a TokenShape<'a>) -> Result<VerifiedToken<'a>, ProxyError> {
        let check = shape.signature_check(&self.set).map_err(ProxyError::InvalidToken)?;
        let public = match check.key {
            VerifyingKey::Public(public) => public,
            VerifyingKey::Hmac { algorithm, secret } if algorithm.hash() != Sha::Sha256 => {
                let holds = hmac_verifies(algorithm.hash(), secret, check.signing_input, check.signature).await?;
                return check.concludes(holds).map_err(ProxyError::InvalidToken);
            }
            VerifyingKey::Hmac { .. } => return check.verify_in_rust().map_err(ProxyError::InvalidToken),
        };
        let (_, import) = self
            .provider
            .0
            .iter()
            .find(|(key, _)| key.key == *public)
            .ok_or_else(|| ProxyError::Internal {
                detail: "a provider key has no WebCrypto import".into(),
            })?;
        let holds = import.verifies(check.signing_input, check.signature).await?;
        check.concludes(holds).map_err(ProxyError::InvalidToken)
    }
}
