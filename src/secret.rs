//! Secret values and the keyed hash the proxy derives its identifiers with.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

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

/// The `hmac` crate is already in the Worker through jwt-compact's HS256 (the same
/// `Hmac<Sha256>`), so using it here adds no code to the wasm.
#[expect(
    clippy::expect_used,
    reason = "HMAC takes a key of any length: new_from_slice never fails"
)]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}
