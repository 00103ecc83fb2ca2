//! The Worker's calls to its Durable Objects: a typed command as JSON in, a typed reply out.
//! Any failure is `Unavailable` (503): the caller fails closed and calls nothing upstream.

pub mod call;
pub mod live;
pub mod relay;
pub mod usage_index;
pub mod user;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{js_sys, Env, Method, Request, RequestInit, Storage};

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
    let reply = exchange(env, binding, name, body).await?;
    serde_json::from_str(&reply).map_err(|e| ProxyError::Unavailable {
        detail: format!("{binding} reply: {e}"),
    })
}

/// The call itself, apart from the types of its command and reply: one copy in the wasm,
/// not one inlined into each typed `call`.
async fn exchange(env: &Env, binding: &'static str, name: &str, body: String) -> Result<String> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
    let mut response = send(env, binding, name, &init).await?;
    if response.status_code() != 200 {
        let detail = format!("{binding} object answered {}", response.status_code());
        return Err(ProxyError::Unavailable { detail });
    }
    response.text().await.map_err(|e| unavailable(binding, "reply", e))
}

fn unavailable(binding: &str, step: &str, error: worker::Error) -> ProxyError {
    ProxyError::Unavailable {
        detail: format!("{binding} {step}: {error}"),
    }
}

/// Sends `init` to the object `name` of the namespace `binding`; its answer as it comes (a
/// WebSocket's upgrade, for the relay).
pub async fn send(env: &Env, binding: &'static str, name: &str, init: &RequestInit) -> Result<worker::Response> {
    let unavailable = |step: &str, error: worker::Error| unavailable(binding, step, error);
    let namespace = env.durable_object(binding).map_err(|_| {
        ProxyError::misconfigured(format!(
            "Durable Object binding {binding} is missing from wrangler.toml"
        ))
    })?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| unavailable("lookup", e))?;
    // The host is a placeholder: a stub routes by the object, not by URL.
    let request = crate::edge::http::outgoing("https://object/", init).map_err(|e| unavailable("request", e))?;
    bench::count_object_call(binding);
    stub.fetch_with_request(request)
        .await
        .map_err(|e| unavailable("call", e))
}

/// A call's command, as an object reads it: with serde_json, like every other JSON the Worker
/// reads (`Request::json` would bring serde_wasm_bindgen's copy of each decoder).
pub async fn command<C: DeserializeOwned>(req: &mut Request) -> worker::Result<C> {
    serde_json::from_str(&req.text().await?).map_err(|e| worker::Error::RustError(format!("command: {e}")))
}

/// The value stored under `key`, as JS holds it (`None`: nothing). Not `Storage::get`, which
/// decodes with serde_wasm_bindgen: a second decoder of every stored type, ~4 KB gzip of wasm.
pub async fn stored(storage: &Storage, key: &str) -> worker::Result<Option<JsValue>> {
    let found = storage.get_multiple(vec![key]).await?.get(&JsValue::from_str(key));
    Ok((!found.is_undefined()).then_some(found))
}

/// A stored value as JSON, to be read with serde_json. Not `JSON.stringify`: records written
/// through serde_wasm_bindgen hold their maps as JS `Map`s, which it writes as `{}`.
pub fn json_of(value: &JsValue) -> Value {
    if let Some(text) = value.as_string() {
        return Value::String(text);
    }
    if let Some(flag) = value.as_bool() {
        return Value::Bool(flag);
    }
    if let Some(number) = value.as_f64() {
        return json_number(number);
    }
    let pairs = if let Some(map) = value.dyn_ref::<js_sys::Map>() {
        js_sys::Array::from(&map.entries())
    } else if js_sys::Array::is_array(value) {
        return Value::Array(js_sys::Array::from(value).iter().map(|item| json_of(&item)).collect());
    } else if value.is_object() {
        js_sys::Object::entries(value.unchecked_ref())
    } else {
        return Value::Null;
    };
    // Inserts, not `collect`: a map built from an iterator brings a sort into the wasm.
    let mut fields = serde_json::Map::new();
    for pair in pairs.iter() {
        let pair = js_sys::Array::from(&pair);
        fields.insert(pair.get(0).as_string().unwrap_or_default(), json_of(&pair.get(1)));
    }
    Value::Object(fields)
}

/// A JS number as a JSON integer when it is one (stored counters and ids, however large), so
/// serde_json reads it into a `u64` or `i64`.
fn json_number(number: f64) -> Value {
    if number.fract() != 0.0 || !number.is_finite() {
        return serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number);
    }
    if number >= 0.0 {
        Value::from(number as u64)
    } else {
        Value::from(number as i64)
    }
}

/// Stores `value` as the JS object of its JSON: the form serde_wasm_bindgen wrote, but for
/// maps as plain objects, which it reads too, so code rolled back still loads it.
pub async fn store<T: Serialize>(storage: &Storage, key: &str, value: &T) -> worker::Result<()> {
    let text = serde_json::to_string(value).map_err(|e| worker::Error::RustError(format!("{key}: {e}")))?;
    storage.put_raw(key, js_sys::JSON::parse(&text)?).await
}
