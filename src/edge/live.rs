//! `POST /v1/live/sessions`: a GPT-Live session. The page sends what the official SDK's
//! `client.live.create({session, transport})` sends (JSON; its `session` says the model and
//! voice, the rest is replaced by the operator's), or a bare `application/sdp` offer
//! (`?model=`, `?voice=`). The session is created upstream with the key and the operator's
//! session, handed to the call object (which watches it on its sideband and closes it), and
//! answered in OpenAI's shape (`{session: {id}, transport: {type, sdp}}`), or as an SDP answer
//! with a `Location` to a bare offer.

use std::rc::Rc;

use serde_json::{json, Value};
use worker::wasm_bindgen::JsValue;
use worker::{Context, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use super::http::{self, json_response};
use super::log::Outcome;
use super::objects::{self, live::close_session};
use super::voice::{admit, cancel, created_status, is_call_id, read_offer, settle, Admitted, CALLS_BINDING};
use super::{Now, Result};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ProxyError;
use crate::request::voice::call::CallCommand;
use crate::request::voice::live::{creation_charge, read_request};

const SESSIONS_PATH: &str = "/v1/live/sessions";

/// Creates a Live session for `identity`: checked, admitted (its longest length held), created
/// upstream, watched.
pub async fn create_session(
    req: &mut Request,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    outcome: &mut Outcome,
) -> Result<Response> {
    let voice = config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    let (sdp, choice, content_type) = read_offer(req, config, read_request).await?;
    let admitted = admit(identity, env, ctx, config, choice, true, outcome).await?;
    let since = Now::read();
    let created = create_upstream(config, &sdp, &admitted).await;
    outcome.upstream_ms = Some(Now::read().since(since));
    let unknown = |error: &ProxyError| matches!(error, ProxyError::UpstreamFailed { .. } | ProxyError::UpstreamTimeout);
    let (id, answer) = match created {
        Ok(created) => created,
        // A refusal created nothing; a failure may have created a session that bills its
        // creation.
        Err(error) if unknown(&error) => {
            let spent = creation_charge(&admitted.call.rules);
            settle(env, &identity.sub, admitted.reservation_id, admitted.limits, spent).await;
            return Err(error);
        }
        Err(error) => {
            cancel(env, &identity.sub, &admitted).await;
            return Err(error);
        }
    };
    let mut start = admitted.call_start(&id, identity, config, voice.max_session_seconds);
    // Billed per second from its creation: its length and its wall clock count from there.
    let seconds = i64::try_from(voice.max_session_seconds).unwrap_or(i64::MAX);
    start.ends_at_ms = since.millis().saturating_add(seconds.saturating_mul(1000));
    start.live_since_ms = Some(since.millis());
    let started: Result<Value> = objects::call(env, CALLS_BINDING, &id, &CallCommand::Start(Box::new(start))).await;
    if let Err(error) = started {
        close_session(&config.upstream_base_url, config.openai_api_key()?, &id).await;
        let spent = creation_charge(&admitted.call.rules);
        settle(env, &identity.sub, admitted.reservation_id, admitted.limits, spent).await;
        return Err(error);
    }
    if content_type.to_ascii_lowercase().starts_with("application/sdp") {
        let headers = Headers::new();
        headers.set("content-type", "application/sdp")?;
        headers.set("location", &format!("{SESSIONS_PATH}/{id}"))?;
        return Ok(Response::from_bytes(answer.into_bytes())?
            .with_status(201)
            .with_headers(headers));
    }
    let answer = json!({ "session": { "id": id }, "transport": { "type": "webrtc", "sdp": answer } });
    json_response(200, &answer.to_string())
}

/// `POST {upstream}/live/sessions` with the key and the operator's session; returns the
/// session's id and the SDP answer.
async fn create_upstream(config: &Config, offer: &str, admitted: &Admitted) -> Result<(String, String)> {
    let body = json!({ "session": admitted.call.session, "transport": { "type": "webrtc", "sdp": offer } });
    let headers = Headers::new();
    headers.set(
        "authorization",
        &format!("Bearer {}", config.openai_api_key()?.expose()),
    )?;
    headers.set("content-type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(&body.to_string())));
    let url = format!("{}/live/sessions", config.upstream_base_url);
    let failed = |detail: String| ProxyError::UpstreamFailed { detail };
    let mut answer = Fetch::Request(http::outgoing(&url, &init)?)
        .send()
        .await
        .map_err(|e| failed(format!("creating the Live session failed: {e}")))?;
    created_status(answer.status_code())?;
    let created: Value = serde_json::from_str(&answer.text().await?).unwrap_or_default();
    let id = created
        .pointer("/session/id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sdp = created.pointer("/transport/sdp").and_then(Value::as_str);
    match sdp {
        Some(sdp) if is_call_id(id) => Ok((id.to_owned(), sdp.to_owned())),
        _ => Err(failed("the Live session's answer has no session id or SDP".into())),
    }
}
