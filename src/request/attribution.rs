//! `safety_identifier`: which user a request is for, as OpenAI's abuse monitoring asks, without
//! telling OpenAI who that user is.
//!
//! The identifier is HMAC-SHA256(key, sub), base64url (43 characters; OpenAI allows 64). The
//! key is derived, with a label of its own, from `SAFETY_IDENTIFIER_SECRET`, or else from
//! `JWT_SECRET`: never from `OPENAI_API_KEY`, which OpenAI holds and could use to test guessed
//! `sub`s (emails, say) against the identifiers. The label keeps the derived key apart from the
//! token-signing key, so no identifier can ever be a valid token signature.

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::secret::hmac_sha256;

/// Domain separation: this key signs identifiers and nothing else.
const KEY_LABEL: &[u8] = b"openai-edge-proxy safety_identifier v1";

/// The key identifiers are computed with; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyKey([u8; 32]);

impl SafetyKey {
    pub fn derive(secret: &str) -> SafetyKey {
        SafetyKey(hmac_sha256(secret.as_bytes(), KEY_LABEL))
    }

    /// The stable, opaque identifier of `sub`.
    pub fn identifier(&self, sub: &str) -> String {
        Base64UrlUnpadded::encode_string(&hmac_sha256(&self.0, sub.as_bytes()))
    }
}

impl std::fmt::Debug for SafetyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SafetyKey(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_stable_opaque_and_per_user() {
        let key = SafetyKey::derive("a-secret-of-at-least-32-bytes-long!!");
        let alice = key.identifier("alice");
        assert_eq!(alice, key.identifier("alice"), "stable");
        assert_ne!(alice, key.identifier("bob"));
        assert!(!alice.contains("alice"));
        assert_eq!(alice.len(), 43, "within OpenAI's 64 characters");
        assert_ne!(
            alice,
            SafetyKey::derive("another-secret-of-32-bytes-long!!!!").identifier("alice"),
            "keyed"
        );
    }

    #[test]
    fn the_identifier_is_not_an_hmac_under_the_secret_itself() {
        // Were it HMAC(JWT_SECRET, sub), a `sub` shaped like `header.claims` would get a valid
        // token signature sent to OpenAI.
        let secret = "a-secret-of-at-least-32-bytes-long!!";
        let direct = Base64UrlUnpadded::encode_string(&hmac_sha256(secret.as_bytes(), b"alice"));
        assert_ne!(SafetyKey::derive(secret).identifier("alice"), direct);
        assert_eq!(format!("{:?}", SafetyKey::derive(secret)), "SafetyKey(redacted)");
    }
}
