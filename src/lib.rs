//! openai-edge-proxy: a Cloudflare Worker that lets browser apps use the OpenAI API without
//! ever holding the key.
//!
//! Two layers: the core modules below are plain Rust (no JS types, no clock, no I/O) and are
//! tested natively; `edge` (wasm only) translates between the Workers platform and the core.
//! The crate is a Worker, not a library: its modules are private, and `testing` lends the
//! mint-token tool, the property tests and the fuzz targets what they exercise.

// Natively the edge is not compiled, so what only it uses would look unused; the wasm build
// (and its clippy run in `make lint`) compiles everything and judges dead code.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod auth;
mod budget;
mod config;
mod cors;
mod day;
mod error;
mod objects;
mod request;
mod routes;
mod sse;

#[cfg(target_arch = "wasm32")]
mod edge;

/// Hooks for `src/bin/mint-token.rs`, `tests/properties.rs` and `fuzz/`; not an API.
#[doc(hidden)]
pub mod testing {
    pub mod auth {
        pub use crate::auth::jwks::parse_jwks;
        pub use crate::auth::{
            bearer_token, mint_hmac_token, verify, ClaimRules, HmacAlgorithm, KeyEntry, KeySet, VerifyingKey,
            MIN_HMAC_SECRET_BYTES,
        };
    }
    pub mod config {
        pub use crate::config::{Config, Secret};
    }
    pub mod guest {
        pub use crate::auth::guest::{judge_siteverify, turnstile_token, verify, ClientKey};
    }
    pub mod policy {
        pub use crate::request::{
            parse_chat_request, parse_embeddings_request, parse_generate_text, parse_responses_request,
        };
    }
    pub mod quota {
        pub use crate::budget::quota::{Ask, Limits, QuotaState, RateLimit, Spend};
    }
    pub mod sse {
        pub use crate::sse::{SseMeter, StreamKind};
    }
}
