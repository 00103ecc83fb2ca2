//! The per-user Durable Object (one per verified `sub`) and the Worker's one call to it.
//! Its state lives in storage, not memory, so it survives eviction; the decisions are
//! `UserRecord::apply` in the core.

use worker::wasm_bindgen::JsValue;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State};

use crate::error::ProxyError;
use crate::user_state::{UserCommand, UserRecord, UserReply};

/// The Durable Object binding in wrangler.toml.
const BINDING: &str = "USERS";
const RECORD_KEY: &str = "record";

#[durable_object]
pub struct UserState {
    state: State,
}

impl DurableObject for UserState {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    /// One read, and one write when the record changed. Input gates hold other events during
    /// the read, so read-apply-write is atomic per user.
    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let command: UserCommand = req.json().await?;
        let storage = self.state.storage();
        let mut record: UserRecord = storage.get(RECORD_KEY).await?.unwrap_or_default();
        let (reply, changed) = record.apply(&command);
        if changed {
            storage.put(RECORD_KEY, &record).await?;
        }
        Response::from_json(&reply)
    }
}

/// Sends `command` to the object of `sub`. Any failure fails closed (503): no upstream call.
pub async fn call(env: &Env, sub: &str, command: &UserCommand) -> std::result::Result<UserReply, ProxyError> {
    let unavailable = |step: &str, error: worker::Error| ProxyError::Unavailable { detail: format!("user object {step}: {error}") };
    let namespace = env
        .durable_object(BINDING)
        .map_err(|_| ProxyError::misconfigured(format!("Durable Object binding {BINDING} is missing from wrangler.toml")))?;
    let stub = namespace.id_from_name(sub).and_then(|id| id.get_stub()).map_err(|e| unavailable("lookup", e))?;
    let body = serde_json::to_string(command).map_err(|e| ProxyError::Internal { detail: e.to_string() })?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init("https://user-state/", &init).map_err(|e| unavailable("request", e))?;
    let mut response = stub.fetch_with_request(request).await.map_err(|e| unavailable("call", e))?;
    if response.status_code() != 200 {
        return Err(ProxyError::Unavailable { detail: format!("user object answered {}", response.status_code()) });
    }
    response.json().await.map_err(|e| unavailable("reply", e))
}
