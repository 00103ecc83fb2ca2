//! The Worker's calls to its Durable Objects: a typed command as JSON in, a typed reply out.
//! Any failure is `Unavailable` (503): the caller fails closed and calls nothing upstream.

pub mod call;
pub mod usage_index;
pub mod user;

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit};

use crate::edge::{bench, Result};
use crate::error::ProxyError;

/// Sends `command` to the object `name` of the namespace `binding`.
pub async fn call<C: Serialize, R: DeserializeOwned>(
    env: &Env,
    binding: &'static str,
    name: &str,
    command: &C,
) -> Result<R> {
    let body = serde_json::to_string(command).map_err(|e| ProxyError::Internal { detail: e.to_string() })?;
    let reply = call_text(env, binding, name, body).await?;
    serde_json::from_str(&reply).map_err(|e| ProxyError::Unavailable {
        detail: format!("{binding} reply: {e}"),
    })
}

/// The call itself, apart from the types: one copy of this future in the wasm, however many
/// command and reply types there are.
async fn call_text(env: &Env, binding: &'static str, name: &str, body: String) -> Result<String> {
    let unavailable = |step: &str, error: worker::Error| ProxyError::Unavailable {
        detail: format!("{binding} {step}: {error}"),
    };
    let namespace = env.durable_object(binding).map_err(|_| {
        ProxyError::misconfigured(format!(
            "Durable Object binding {binding} is missing from wrangler.toml"
        ))
    })?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| unavailable("lookup", e))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
    // The host is a placeholder: a stub routes by the object, not by URL.
    let request = Request::new_with_init("https://object/", &init).map_err(|e| unavailable("request", e))?;
    bench::count_object_call(binding);
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(|e| unavailable("call", e))?;
    if response.status_code() != 200 {
        let detail = format!("{binding} object answered {}", response.status_code());
        return Err(ProxyError::Unavailable { detail });
    }
    response.text().await.map_err(|e| unavailable("reply", e))
}

/// A call's command, as an object reads it: with serde_json, like every other JSON the Worker
/// reads (`Request::json` would bring serde_wasm_bindgen's copy of each decoder).
pub async fn command<C: DeserializeOwned>(req: &mut Request) -> worker::Result<C> {
    serde_json::from_str(&req.text().await?).map_err(|e| worker::Error::RustError(format!("command: {e}")))
}
