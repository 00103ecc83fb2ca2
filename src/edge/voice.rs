//! `POST /v1/realtime/calls`: the page's SDP offer with its user token in, the call created
//! upstream with the key and the operator's session, its SDP answer out. The call object
//! (`objects/call.rs`) then meters it until it ends. Nothing reusable reaches the page: the
//! call id is useless without the key.

use std::rc::Rc;

use worker::wasm_bindgen::JsValue;
use worker::{js_sys, web_sys, Context, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use super::http::{self, header};
use super::log::Outcome;
use super::objects::{self, user::call_user};
use super::{log, Now, Result};
use crate::auth::guest::GUEST_SUB_PREFIX;
use crate::auth::Identity;
use crate::budget::plans::claimed_plan;
use crate::budget::quota::{Ask, Limits, Spend};
use crate::config::Config;
use crate::error::{ProxyError, TokenProblem};
use crate::objects::user::{user_object_name, Finished, PlanAsk, PoolTerms, UserCommand, UserReply};
use crate::request::voice::call::{CallCommand, CallStart};
use crate::request::voice::{offer, CallPlan};
use crate::secret::Secret;

pub const CALLS_BINDING: &str = "CALLS";
/// The proxy's own path of a call, as OpenAI's `Location` names it upstream.
const CALLS_PATH: &str = "/v1/realtime/calls";

/// Creates a voice call for `identity`: checked, admitted, created upstream, metered.
pub async fn create_call(
    req: &mut Request,
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    outcome: &mut Outcome,
) -> Result<Response> {
    config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    let (sdp, choice, _) = read_offer(req, config, offer::read).await?;
    let admitted = admit(identity, env, ctx, config, choice, false, outcome).await?;
    start(env, config, identity, &sdp, admitted, outcome).await
}

/// The page's SDP offer (its body as `read` reads it), its choice of model and voice (the
/// query's, as the SDK's `baseUrl` carries them, else its session's), and its content type.
pub(super) async fn read_offer(
    req: &mut Request,
    config: &Config,
    read: fn(&str, &[u8]) -> Result<offer::Offer>,
) -> Result<(String, (Option<String>, Option<String>), String)> {
    let content_type = header(req, "content-type").unwrap_or_default();
    let offer = read(&content_type, &http::read_body(req, config.max_body_bytes).await?)?;
    let query = web_sys::Url::new(&req.inner().url())?.search_params();
    let choice = (query.get("model").or(offer.model), query.get("voice").or(offer.voice));
    Ok((offer.sdp, choice, content_type))
}

/// Checks a voice session (`model`, `voice`: the page's choice; a GPT-Live session if `live`)
/// against the plan and admits it in the user's object: a voice slot, and the call's hold
/// reserved (and leased).
pub async fn admit(
    identity: &Identity,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    (model, chosen_voice): (Option<String>, Option<String>),
    live: bool,
    outcome: &mut Outcome,
) -> Result<Admitted> {
    let voice = config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    let claimed = claimed_plan(identity.plan.as_deref()).name;
    let mut plan_name = claimed.clone();
    // A guest's calls would need its client's object and the guests' budget to hold them too.
    if identity.sub.starts_with(GUEST_SUB_PREFIX) {
        return Err(ProxyError::ModelNotAllowed {
            model: model.unwrap_or_default(),
        });
    }
    for _ in 0..2 {
        let plan = config.plan(&plan_name)?;
        outcome.plan = Some(plan.name.clone());
        let (prices, base) = (&config.requests.prices, &config.upstream_base_url);
        let (model, chosen_voice) = (model.as_deref(), chosen_voice.as_deref());
        let call = match live {
            true => voice.plan_live(plan, prices, base, model, chosen_voice),
            false => voice.plan_call(plan, prices, base, model, chosen_voice),
        }?;
        outcome.model = Some(call.model.clone());
        let ask = Ask {
            tokens: call.hold.tokens,
            stream: false,
            nano_usd: call.hold.nano_usd,
        };
        // The call's hold is leased from the global budget, as a request's worst case is.
        let leases = objects::user::pools(config, false, Some(ask));
        let command = UserCommand::Admit {
            issued_at: identity.issued_at,
            ask: Some(ask),
            limits: plan.user_limits,
            alerts: config.alerts.user,
            now_ms: Now::read().millis(),
            continues: None,
            references: Vec::new(),
            plan: Some(PlanAsk {
                checked: plan.name.clone(),
                claimed: identity.plan.clone(),
            }),
            sub: Some(identity.sub.clone()),
            voice: Some(voice.slots),
            leases: leases.clone(),
            grants: Vec::new(),
        };
        let name = user_object_name(&identity.sub);
        let admitted = objects::user::admit_leasing(env, ctx, config, &name, command).await;
        let reply = admitted.map_err(|(standing, error)| {
            outcome.standing = standing;
            error
        })?;
        let reservation_id = match reply {
            UserReply::Admitted {
                reservation: Some(reservation),
                standing,
                ..
            } => {
                outcome.standing = Some(standing);
                reservation.id
            }
            UserReply::Refused { refusal, standing } => {
                outcome.standing = Some(standing);
                return Err(ProxyError::Quota { refusal, global: false });
            }
            UserReply::Revoked => return Err(ProxyError::InvalidToken(TokenProblem::Revoked)),
            UserReply::PlanChanged { plan } => {
                plan_name = plan.name;
                continue;
            }
            other @ (UserReply::Admitted { .. }
            | UserReply::UnknownResponse { .. }
            | UserReply::Status { .. }
            | UserReply::Finished
            | UserReply::Minted
            | UserReply::MintRefused { .. }
            | UserReply::NeedLease { .. }
            | UserReply::Leased { .. }
            | UserReply::Pool { .. }
            | UserReply::Renewed { .. }) => {
                return Err(ProxyError::Internal {
                    detail: format!("user object answered a call's admission with {other:?}"),
                })
            }
        };
        return Ok(Admitted {
            reservation_id,
            limits: plan.user_limits,
            call,
            pools: leases,
        });
    }
    Err(ProxyError::Unavailable {
        detail: format!("the plan of {:?} kept changing during a call's admission", identity.sub),
    })
}

pub struct Admitted {
    pub reservation_id: u64,
    pub limits: Limits,
    pub call: CallPlan,
    pub pools: Vec<PoolTerms>,
}

impl Admitted {
    /// What the call object meters the call `call_id` with.
    pub fn call_start(
        &self,
        call_id: &str,
        identity: &Identity,
        config: &Config,
        max_session_seconds: u64,
    ) -> CallStart {
        let seconds = i64::try_from(max_session_seconds).unwrap_or(i64::MAX);
        CallStart {
            call: call_id.to_owned(),
            sub: identity.sub.clone(),
            issued_at: identity.issued_at,
            reservation_id: self.reservation_id,
            limits: self.limits,
            model: self.call.model.clone(),
            session: self.call.session.clone(),
            turn: self.call.turn,
            hold: self.call.hold,
            ends_at_ms: Now::read().millis().saturating_add(seconds.saturating_mul(1000)),
            rules: self.call.rules.clone(),
            pools: self.pools.clone(),
            pool_alerts: config.alerts.global,
            alert_webhook: config.alerts.webhook_url.clone(),
            live_since_ms: None,
        }
    }
}

/// Creates the call upstream and hands it to its object; on any failure the reservation is
/// settled (nothing was spoken yet: no response can have run) and the call hung up.
async fn start(
    env: &Env,
    config: &Config,
    identity: &Identity,
    sdp: &str,
    admitted: Admitted,
    outcome: &mut Outcome,
) -> Result<Response> {
    let voice = config.voice.as_ref().ok_or(ProxyError::NotFound)?;
    let started = Now::read();
    let created = create_upstream(config, sdp, &admitted.call).await;
    outcome.upstream_ms = Some(Now::read().since(started));
    let (call_id, answer_sdp) = match created {
        Ok(created) => created,
        Err(error) => {
            cancel(env, &identity.sub, &admitted).await;
            return Err(error);
        }
    };
    let start = admitted.call_start(&call_id, identity, config, voice.max_session_seconds);
    let command = CallCommand::Start(Box::new(start));
    let started: Result<serde_json::Value> = objects::call(env, CALLS_BINDING, &call_id, &command).await;
    if let Err(error) = started {
        hang_up(&config.upstream_base_url, config.openai_api_key()?, &call_id).await;
        cancel(env, &identity.sub, &admitted).await;
        return Err(error);
    }
    let headers = Headers::new();
    headers.set("content-type", "application/sdp")?;
    headers.set("location", &format!("{CALLS_PATH}/{call_id}"))?;
    Ok(Response::from_bytes(answer_sdp.into_bytes())?
        .with_status(201)
        .with_headers(headers))
}

/// `POST {upstream}/realtime/calls` with the key, as `multipart/form-data` (`sdp`, `session`):
/// OpenAI's unified interface. Returns the call id (`Location`'s last segment) and the answer.
async fn create_upstream(config: &Config, sdp: &str, call: &CallPlan) -> Result<(String, String)> {
    // A boundary the offer cannot contain: the offer is printable ASCII lines, this is not.
    let boundary = format!("voice-{}", js_sys::Math::random().to_bits());
    if sdp.contains(&boundary) {
        return Err(ProxyError::invalid_request("The body is not an SDP offer.", None));
    }
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"sdp\"\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"session\"\r\nContent-Type: application/json\r\n\r\n{}\r\n--{boundary}--\r\n",
        call.session
    );
    let headers = Headers::new();
    headers.set(
        "authorization",
        &format!("Bearer {}", config.openai_api_key()?.expose()),
    )?;
    headers.set("content-type", &format!("multipart/form-data; boundary={boundary}"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(&body)));
    let url = format!("{}/realtime/calls", config.upstream_base_url);
    let mut answer =
        Fetch::Request(http::outgoing(&url, &init)?)
            .send()
            .await
            .map_err(|e| ProxyError::UpstreamFailed {
                detail: format!("creating the call failed: {e}"),
            })?;
    created_status(answer.status_code())?;
    let location = answer.headers().get("location")?.unwrap_or_default();
    let call_id = location.rsplit('/').next().unwrap_or_default().to_owned();
    if !is_call_id(&call_id) {
        return Err(ProxyError::UpstreamFailed {
            detail: format!(
                "the call's Location is not a call: {:?}",
                location.chars().take(80).collect::<String>()
            ),
        });
    }
    Ok((call_id, answer.text().await?))
}

/// A call's creation answered `status`: a refusal is the page's to see, not its body.
pub(super) fn created_status(status: u16) -> Result<()> {
    match status {
        200..=299 => Ok(()),
        // OpenAI's 401 echoes part of the key: its body is never read, let alone passed on.
        401 | 403 => Err(ProxyError::UpstreamAuthFailed { status }),
        429 => Err(ProxyError::UpstreamRateLimited { retry_after: None }),
        400..=499 => Err(ProxyError::UpstreamRejected { status, detail: None }),
        _ => Err(ProxyError::UpstreamFailed {
            detail: format!("creating the call: upstream answered {status}"),
        }),
    }
}

/// An id OpenAI gives a call (`rtc_…`): it names an object and goes into upstream paths.
pub fn is_call_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `POST {upstream}/realtime/calls/{id}/hangup`, tried up to three times: a call that stays
/// up after its meter stopped runs unmetered until OpenAI's 60 minutes, so every failure is
/// logged (`voice_hangup_failed`).
pub async fn hang_up(upstream_base_url: &str, key: &Secret, call_id: &str) -> bool {
    let url = format!("{upstream_base_url}/realtime/calls/{call_id}/hangup");
    let authorization = format!("Bearer {}", key.expose());
    for _ in 0..3 {
        let headers = Headers::new();
        let mut init = RequestInit::new();
        let sent = match headers.set("authorization", &authorization) {
            Ok(()) => {
                init.with_method(Method::Post)
                    .with_headers(headers)
                    .with_redirect(RequestRedirect::Manual);
                match http::outgoing(&url, &init) {
                    Ok(request) => Fetch::Request(request).send().await.map(|answer| answer.status_code()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        // 404: the call had already ended upstream.
        if matches!(sent, Ok(200..=299 | 404)) {
            return true;
        }
        log::warn("voice_hangup_failed", &format!("call {call_id}: {sent:?}"));
    }
    false
}

/// Settles a call's reservation at `spent`.
pub async fn settle(env: &Env, sub: &str, reservation_id: u64, limits: Limits, spent: Spend) {
    let finished = Finished {
        reservation_id,
        used_tokens: spent.tokens,
        limits,
        now_ms: Now::read().millis(),
        created_response: None,
        created_items: Vec::new(),
        used_nano_usd: spent.nano_usd,
    };
    tell(env, sub, UserCommand::Finish(finished), "voice_settle_failed").await;
}

/// Gives back all a call's admission took, its place among the day's calls too: the page
/// never got an answer, so no media and no response can have run.
pub async fn cancel(env: &Env, sub: &str, admitted: &Admitted) {
    let command = UserCommand::Cancel {
        reservation_id: admitted.reservation_id,
        limits: admitted.limits,
        now_ms: Now::read().millis(),
    };
    tell(env, sub, command, "voice_cancel_failed").await;
}

/// Sends the user's object a call's end, tried three times (if it never lands, the
/// reservation expires charged in full, as for any lost settlement).
async fn tell(env: &Env, sub: &str, command: UserCommand, failure: &str) {
    for _ in 0..3 {
        match call_user(env, sub, command.clone()).await {
            Ok(_) => return,
            Err(error) => log::warn(failure, &error.to_string()),
        }
    }
}

/// Ends each call (an operator's `DELETE /admin/calls/{id}`, a block, a revocation).
pub async fn end_calls(env: &Env, calls: &[String], banned: bool) -> Result<()> {
    for call in calls.iter().filter(|call| is_call_id(call)) {
        let _: serde_json::Value = objects::call(env, CALLS_BINDING, call, &CallCommand::End { banned }).await?;
    }
    Ok(())
}
