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
mod memory;
mod objects;
mod request;
mod routes;
mod secret;
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
        pub use crate::config::Config;
        pub use crate::secret::Secret;
    }
    pub mod guest {
        pub use crate::auth::guest::{client_address, judge_siteverify, turnstile_token, verify, ClientKey};
    }
    /// Each API's `request::parse` on the default plan.
    pub mod policy {
        use crate::config::Config;
        use crate::error::ProxyError;
        use crate::request::{self, ApiRequest};
        use crate::routes::ApiRoute;

        /// Parses and checks a chat completion request of the user `sub` (default plan).
        pub fn parse_chat_request(bytes: &[u8], config: &Config, sub: &str) -> Result<ApiRequest, ProxyError> {
            request::parse(
                ApiRoute::ChatCompletions,
                bytes,
                &config.requests,
                &config.default_plan,
                sub,
            )
        }

        /// `parse` of a Responses request on the default plan.
        pub fn parse_responses_request(bytes: &[u8], config: &Config, sub: &str) -> Result<ApiRequest, ProxyError> {
            request::parse(ApiRoute::Responses, bytes, &config.requests, &config.default_plan, sub)
        }

        /// `parse` of an Embeddings request on the default plan.
        pub fn parse_embeddings_request(bytes: &[u8], config: &Config, sub: &str) -> Result<ApiRequest, ProxyError> {
            request::parse(ApiRoute::Embeddings, bytes, &config.requests, &config.default_plan, sub)
        }

        /// `parse` of an image generation request on the default plan.
        pub fn parse_image_request(bytes: &[u8], config: &Config, sub: &str) -> Result<ApiRequest, ProxyError> {
            request::parse(
                ApiRoute::ImageGenerations,
                bytes,
                &config.requests,
                &config.default_plan,
                sub,
            )
        }

        /// `parse` of a `/api/generate-text` request on the default plan.
        pub fn parse_generate_text(bytes: &[u8], config: &Config, sub: &str) -> Result<ApiRequest, ProxyError> {
            request::parse(
                ApiRoute::GenerateText,
                bytes,
                &config.requests,
                &config.default_plan,
                sub,
            )
        }
    }
    /// The transcription form's parser and policy, for the `transcription` fuzz target.
    pub mod audio {
        use crate::config::Config;
        use crate::error::ProxyError;
        use crate::request::{self, ApiRequest};
        use crate::routes::ApiRoute;

        pub use crate::request::audio::multipart::parse as parse_form;

        /// `parse` of a transcription form on the default plan.
        pub fn parse_transcription(bytes: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
            request::parse(
                ApiRoute::Transcriptions,
                bytes,
                &config.requests,
                &config.default_plan,
                "fuzz",
            )
        }
    }
    pub mod images {
        pub use crate::budget::images::{image_tokens, PARTIAL_IMAGE_TOKENS, QUALITIES, STANDARD_SIZES};
        pub use crate::budget::usage::Usage;
    }
    pub mod quota {
        pub use crate::budget::quota::{Ask, Limits, QuotaState, RateLimit, Spend};
    }
    pub mod sse {
        pub use crate::sse::{SseMeter, StreamKind};
    }
}
