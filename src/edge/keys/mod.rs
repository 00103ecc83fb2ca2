//! The keys that verify user tokens on the edge: the identity provider's key set, fetched and
//! cached, and its public keys imported into WebCrypto.

pub mod jwks;
pub mod webcrypto;
