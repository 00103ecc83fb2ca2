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
use worker::{web_sys, Context, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use super::http::{self, header, json_response};
use super::log::Outcome;
use super::voice::{admit_call, as_offer, created_status, hand_over, is_call_id, settle, Admitted};
use super::{Now, Result};
use crate::auth::Identity;
use crate::budget::quota::Spend;
use crate::config::Config;
use crate::error::ProxyError;
use crate::request::voice::live::creation_charge;

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
    config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    let bare = header(req, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .starts_with("application/sdp");
    let body = http::read_body(req, config.max_body_bytes).await?;
    let (offer, asked) = match bare {
        true => {
            let url = web_sys::Url::new(&req.inner().url())?;
            let query = url.search_params();
            (as_offer(body)?, (query.get("model"), query.get("voice")))
        }
        false => {
            // Only these three are read: the page's session is otherwise replaced, never sent.
            let asked: Value = serde_json::from_slice(&body).unwrap_or_default();
            let text = |path: &str| asked.pointer(path).and_then(Value::as_str).map(str::to_owned);
            let webrtc = text("/transport/type").is_none_or(|kind| kind == "webrtc");
            let sdp = text("/transport/sdp").filter(|_| webrtc).unwrap_or_default();
            let voice = text("/session/audio/output/voice");
            (as_offer(sdp.into_bytes())?, (text("/session/model"), voice))
        }
    };
    let admitted = admit_call(identity, env, ctx, config, outcome, asked, true).await?;
    let since = Now::read();
    let created = create_upstream(config, &offer, &admitted).await;
    outcome.upstream_ms = Some(Now::read().since(since));
    let (id, answer) = match created {
        Ok(created) => created,
        Err(error) => {
            // A refusal created nothing; a failure may have created a session that bills its
            // creation.
            let unknown = matches!(error, ProxyError::UpstreamFailed { .. } | ProxyError::UpstreamTimeout);
            let spent = match unknown {
                true => creation_charge(&admitted.call.rules),
                false => Spend::default(),
            };
            settle(env, &identity.sub, admitted.reservation_id, admitted.limits, spent).await;
            return Err(error);
        }
    };
    hand_over(env, config, identity, admitted, &id, since.millis(), true).await?;
    if bare {
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
