//! `GET /v1/realtime?model=…` upgraded to a WebSocket: the relay for WebSocket clients
//! (`@openai/agents-realtime`'s `OpenAIRealtimeWebSocket`). The session is checked and admitted
//! as a WebRTC call is (`voice.rs`), under a call id the proxy names; its call object
//! (`objects/relay.rs`) holds both sockets and meters the session.

use std::rc::Rc;

use serde_json::Value;
use worker::{js_sys, web_sys, Context, Env, Headers, Method, Request, RequestInit, Response};

use super::http::header;
use super::log::Outcome;
use super::objects;
use super::voice::{admit, cancel, end_calls, CALLS_BINDING};
use super::Result;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::ProxyError;
use crate::request::voice::call::CallCommand;
use crate::request::voice::relay::{offers_realtime, RELAY_PREFIX, SUBPROTOCOL};

/// Admits the session and answers the upgrade with the call object's end of the relay.
pub async fn open(
    req: &Request,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    outcome: &mut Outcome,
) -> Result<Response> {
    let voice = config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    if !header(req, "upgrade").is_some_and(|upgrade| upgrade.eq_ignore_ascii_case("websocket")) {
        return Err(ProxyError::invalid_request(
            "Open this path as a WebSocket (Upgrade: websocket).",
            None,
        ));
    }
    let query = web_sys::Url::new(&req.inner().url())?.search_params();
    let choice = (query.get("model"), query.get("voice"));
    let admitted = admit(identity, env, ctx, config, choice, false, outcome).await?;
    // Three draws: one f64 carries only 53 random bits.
    let draw = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    let call_id = format!("{RELAY_PREFIX}{:08x}{:08x}{:08x}", draw(), draw(), draw());
    let start = admitted.call_start(&call_id, identity, config, voice.max_session_seconds);
    let opened: Result<Value> = objects::call(env, CALLS_BINDING, &call_id, &CallCommand::Relay(Box::new(start))).await;
    if let Err(error) = opened {
        // Nothing was said yet: the session is given back, as a call OpenAI failed to create.
        cancel(env, &identity.sub, &admitted).await;
        return Err(error);
    }
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let answer = objects::send(env, CALLS_BINDING, &call_id, &init).await;
    let Some(socket) = answer.ok().and_then(|answer| answer.websocket()) else {
        // The session is open upstream: its object ends and settles it.
        end_calls(env, std::slice::from_ref(&call_id), false).await?;
        return Err(ProxyError::Unavailable {
            detail: format!("relay {call_id}: the call object gave no WebSocket"),
        });
    };
    // The operator's handle on it (`DELETE /admin/calls/{id}`), in the request's log line.
    outcome.detail = Some(format!("call {call_id}"));
    let mut response = Response::from_websocket(socket)?;
    // Only `realtime` is echoed, never the token beside it; a server client offers none.
    let offered = header(req, "sec-websocket-protocol");
    if offered.as_deref().is_some_and(offers_realtime) {
        response.headers_mut().set("sec-websocket-protocol", SUBPROTOCOL)?;
    }
    Ok(response)
}
