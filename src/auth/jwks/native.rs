//! Public-key signatures checked in Rust, with jwt-compact's algorithms: natively only (tests,
//! mint-token, the fuzz targets). The Worker asks WebCrypto, so none of this is in the wasm.

use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature};

use super::PublicAlgorithm;

#[derive(Debug, Clone)]
pub(super) enum Key {
    Rsa(Rsa, Box<RsaPublicKey>),
    Es256(<Es256 as Algorithm>::VerifyingKey),
    Ed25519(<Ed25519 as Algorithm>::VerifyingKey),
}

impl Key {
    /// Refuses what WebCrypto's import refuses on the edge: a point off its curve, say.
    pub(super) fn from_jwk(jwk: &JsonWebKey<'_>, algorithm: PublicAlgorithm) -> Result<Self, String> {
        let refused = |error| format!("bad {} key: {error}", algorithm.name());
        Ok(match algorithm {
            PublicAlgorithm::RsaPkcs1(_) | PublicAlgorithm::RsaPss(_) => Key::Rsa(
                Rsa::with_name(algorithm.name()),
                Box::new(RsaPublicKey::try_from(jwk).map_err(refused)?),
            ),
            PublicAlgorithm::Es256 => Key::Es256(jwk.try_into().map_err(refused)?),
            PublicAlgorithm::EdDsa => Key::Ed25519(jwk.try_into().map_err(refused)?),
        })
    }

    pub(super) fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match self {
            Key::Rsa(algorithm, key) => holds(algorithm, key, signing_input, signature),
            Key::Es256(key) => holds(&Es256, key, signing_input, signature),
            Key::Ed25519(key) => holds(&Ed25519, key, signing_input, signature),
        }
    }
}

fn holds<A: Algorithm>(algorithm: &A, key: &A::VerifyingKey, signing_input: &[u8], signature: &[u8]) -> bool {
    A::Signature::try_from_slice(signature)
        .is_ok_and(|signature| algorithm.verify_signature(&signature, key, signing_input))
}
