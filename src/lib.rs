//! openai-edge-proxy: a Cloudflare Worker that lets browser apps use the OpenAI API without
//! ever holding the key.
//!
//! Two layers: the core modules below are plain Rust (no JS types, no clock, no I/O) and are
//! tested natively; `edge` (wasm only) translates between the Workers platform and the core.

pub mod alerts;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod forwarding;
pub mod key_refresh;
pub mod policy;
pub mod quota;
pub mod routes;
pub mod sse;
pub mod user_state;

#[cfg(target_arch = "wasm32")]
mod edge;
