//! The Worker's calls to the per-user Durable Object (one per verified `sub`; the class is in
//! `state`): admission with the shared objects after it, guest mints, deliveries of held
//! settlements, status reads. The decisions are `UserRecord::apply` in the core.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};

use worker::wasm_bindgen::JsValue;
use worker::{Context, Delay, Env, Method, RequestInit, RequestRedirect};

use crate::auth::guest::GUEST_PLAN;
use crate::auth::Identity;
use crate::budget::alerts::AlertRules;
use crate::budget::plans::{Plan, PlanChoice};
use crate::budget::quota::{Ask, Limits, Standing};
use crate::config::Config;
use crate::edge::settlement::{self, Settlement};
use crate::edge::{log, Now, Result};
use crate::error::{ProxyError, TokenProblem};
use crate::objects::held::Carried;
use crate::objects::user::{
    user_object_name, Answer, Delivery, PlanAsk, UserCommand, UserReply, GLOBAL_OBJECT_NAME, GUESTS_OBJECT_NAME,
};
use crate::request::ApiRequest;

mod state;

const BINDING: &str = "USERS";
/// How long an alert's webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// What an admission call came to.
pub enum Admission {
    /// Admitted; settle it when the request ends (a status read has nothing to settle). The
    /// standing is the one that limits the caller (a guest's is its client's).
    Admitted { settlement: Settlement, standing: Standing },
    /// The request was checked with another plan than the one in force: nothing was
    /// counted; check it with this plan and admit it again.
    PlanChanged(PlanChoice),
}

/// Admits `identity`'s request, checked with `plan`, in one round trip to its object:
/// revocation, the plan in force, whether the user created the response it `continues`, then
/// (with an `ask`) rate, stream slot and budgets; then, for a guest, its client's object and
/// the guests' budget, and the global budget, if set (`shared_objects`). Returns the standing
/// that limits the caller (a guest's is its client's), for the RateLimit headers, refused or
/// not, and what came of it.
pub async fn admit(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    identity: &Identity,
    ask: Option<Ask>,
    plan: &Plan,
    request: Option<&ApiRequest>,
) -> (Option<Standing>, Result<Admission>) {
    let now_ms = Now::read().millis();
    let user_name = user_object_name(&identity.sub);
    let limits = plan.user_limits;
    let command = UserCommand::Admit {
        issued_at: identity.issued_at,
        ask,
        limits,
        alerts: config.alerts.user,
        now_ms,
        continues: request.and_then(|request| request.continues.clone()),
        references: request.map_or_else(Vec::new, |request| request.references.clone()),
        plan: Some(PlanAsk {
            checked: plan.name.clone(),
            claimed: identity.plan.clone(),
        }),
        sub: Some(identity.sub.clone()),
        voice: None,
    };
    let (reservation, standing) = match call(env, &user_name, command).await {
        Ok(UserReply::Admitted {
            reservation,
            standing,
            alert,
        }) => {
            if let Some(alert) = alert {
                raise(ctx, config, &alert.message(&identity.sub));
            }
            (reservation, standing)
        }
        Ok(UserReply::Refused { refusal, standing }) => {
            return (Some(standing), Err(ProxyError::Quota { refusal, global: false }))
        }
        Ok(UserReply::Revoked) => return (None, Err(ProxyError::InvalidToken(TokenProblem::Revoked))),
        Ok(UserReply::UnknownResponse { id: Some(id) }) => {
            return (None, Err(ProxyError::UnknownResponse { id, item: true }));
        }
        Ok(UserReply::UnknownResponse { id: None }) => {
            let id = request
                .and_then(|request| request.continues.clone())
                .unwrap_or_default();
            return (None, Err(ProxyError::UnknownResponse { id, item: false }));
        }
        Ok(UserReply::PlanChanged { plan: in_force }) => return (None, Ok(Admission::PlanChanged(in_force))),
        Ok(other) => return (None, Err(unexpected("user", &other))),
        Err(error) => return (None, Err(error)),
    };
    let mut settlement = Settlement::new(env, ctx, &identity.sub);
    if let Some(reservation) = reservation {
        settlement.add(&user_name, limits, reservation);
    }
    match admit_by_shared_objects(env, ctx, config, identity, ask, now_ms, settlement, standing).await {
        Ok((settlement, standing)) => (Some(standing), Ok(Admission::Admitted { settlement, standing })),
        Err((shown, error)) => (Some(shown), Err(error)),
    }
}

/// The objects after the user's (`shared_objects`) admit the request too, or, at the first
/// refusal, every admission is given back and the refusal answered with the standing to show.
#[expect(
    clippy::too_many_arguments,
    reason = "the admission's own inputs, passed on as they are"
)]
async fn admit_by_shared_objects(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    identity: &Identity,
    ask: Option<Ask>,
    now_ms: i64,
    mut settlement: Settlement,
    mut standing: Standing,
) -> std::result::Result<(Settlement, Standing), (Standing, ProxyError)> {
    for shared in shared_objects(config, identity, ask) {
        match admit_shared(env, ctx, config, &shared, ask, now_ms, &mut settlement).await {
            // A guest's standing is its client's: what all its guest tokens used together.
            Ok(shared_standing) if shared.is_client => standing = shared_standing,
            Ok(_) => {}
            Err((shared_standing, error)) => {
                // Give back all the earlier admissions took, rate-window entries included,
                // before answering: a retry right after the 429 must find them given back.
                settlement.cancel().await;
                let shown = if shared.is_client {
                    shared_standing.unwrap_or(standing)
                } else {
                    standing
                };
                return Err((shown, error));
            }
        }
    }
    Ok((settlement, standing))
}

/// An object besides the user's that a request is admitted by: a guest's client, the budget
/// of all guests, the budget of everyone.
struct Shared {
    name: String,
    limits: Limits,
    alerts: AlertRules,
    /// What an alert calls those it counts.
    who: &'static str,
    is_client: bool,
    /// Whether a refusal is the service's (all users or all guests), not the caller's.
    global: bool,
}

/// The objects a request is admitted by after its user's. A guest adds its client's object
/// (every request, status reads too: its standing is the one that counts) and, with
/// `GLOBAL_GUEST_DAILY_BUDGET_USD`, the guests' budget; the global budget admits requests
/// that call upstream.
fn shared_objects(config: &Config, identity: &Identity, ask: Option<Ask>) -> Vec<Shared> {
    let mut shared = Vec::new();
    let guest = config.guest.as_ref().zip(identity.guest_client.as_ref());
    if let (Some((settings, client)), Ok(plan)) = (guest, config.plan(GUEST_PLAN)) {
        shared.push(Shared {
            name: client.clone(),
            limits: plan.user_limits,
            alerts: config.alerts.user,
            who: "(a guest client)",
            is_client: true,
            global: false,
        });
        if let (Some(limits), Some(_)) = (settings.global_limits, ask) {
            shared.push(Shared {
                name: GUESTS_OBJECT_NAME.to_owned(),
                limits,
                alerts: config.alerts.global,
                who: "all guests",
                is_client: false,
                global: true,
            });
        }
    }
    if let (Some(limits), Some(_)) = (config.global_limits, ask) {
        shared.push(Shared {
            name: GLOBAL_OBJECT_NAME.to_owned(),
            limits,
            alerts: config.alerts.global,
            who: "all users",
            is_client: false,
            global: true,
        });
    }
    shared
}

/// Admits `ask` (or, without one, reads the standing) in a shared object too. A refusal
/// carries that object's standing.
async fn admit_shared(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    shared: &Shared,
    ask: Option<Ask>,
    now_ms: i64,
    settlement: &mut Settlement,
) -> Result<Standing, (Option<Standing>, ProxyError)> {
    let command = UserCommand::Admit {
        issued_at: None,
        ask,
        limits: shared.limits,
        alerts: shared.alerts,
        now_ms,
        continues: None,
        references: Vec::new(),
        plan: None,
        sub: None,
        voice: None,
    };
    match call(env, &shared.name, command).await {
        Ok(UserReply::Admitted {
            reservation,
            alert,
            standing,
        }) => {
            if let Some(reservation) = reservation {
                settlement.add(&shared.name, shared.limits, reservation);
            }
            if let Some(alert) = alert {
                raise(ctx, config, &alert.message(shared.who));
            }
            Ok(standing)
        }
        Ok(UserReply::Refused { refusal, standing }) => Err((
            Some(standing),
            ProxyError::Quota {
                refusal,
                global: shared.global,
            },
        )),
        Ok(other) => Err((None, unexpected(&shared.name, &other))),
        Err(error) => Err((None, error)),
    }
}

fn unexpected(object: &str, reply: &UserReply) -> ProxyError {
    ProxyError::Internal {
        detail: format!("{object} object answered {reply:?}"),
    }
}

/// An alert goes to the log and, if `ALERT_WEBHOOK_URL` is set, to the webhook after the
/// response (`wait_until`), so it never delays the request that crossed the threshold.
fn raise(ctx: &Rc<Context>, config: &Config, message: &str) {
    log::alert(message);
    if let Some(url) = config.alerts.webhook_url.clone() {
        let body = serde_json::json!({ "text": message }).to_string();
        ctx.wait_until(async move {
            let headers = worker::Headers::new();
            let _ = headers.set("content-type", "application/json");
            let mut init = RequestInit::new();
            // A redirected delivery fails: it would post the alert wherever `Location` says.
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_redirect(RequestRedirect::Manual)
                .with_body(Some(JsValue::from_str(&body)));
            let sent = match crate::edge::http::outgoing(&url, &init) {
                Ok(request) => {
                    let fetch = worker::Fetch::Request(request);
                    let post = fetch.send();
                    // `wait_until` gives it 30 s at most; a hung webhook should not take them all.
                    let answered = select(Box::pin(post), Box::pin(Delay::from(WEBHOOK_TIMEOUT))).await;
                    match answered {
                        Either::Left((answer, _)) => answer.map(|r| r.status_code()),
                        Either::Right(_) => Err(worker::Error::RustError(format!(
                            "no answer within {} s",
                            WEBHOOK_TIMEOUT.as_secs()
                        ))),
                    }
                }
                Err(error) => Err(error),
            };
            if !matches!(sent, Ok(200..=299)) {
                log::warn("alert_webhook_failed", &format!("{sent:?}"));
            }
        });
    }
}

/// Counts one guest token minted by `client` (its object's name), or refuses it: at most
/// `per_hour` per hour.
pub async fn admit_mint(env: &Env, client: &str, per_hour: u32) -> Result<()> {
    let command = UserCommand::Mint {
        per_hour,
        now_ms: Now::read().millis(),
    };
    match call(env, client, command).await? {
        UserReply::Minted => Ok(()),
        UserReply::MintRefused { retry_after_seconds } => Err(ProxyError::GuestMintsExhausted { retry_after_seconds }),
        other @ UserReply::Admitted { .. }
        | other @ UserReply::Refused { .. }
        | other @ UserReply::Revoked
        | other @ UserReply::UnknownResponse { .. }
        | other @ UserReply::Status { .. }
        | other @ UserReply::Finished
        | other @ UserReply::PlanChanged { .. }
        | other @ UserReply::Renewed { .. } => Err(unexpected("client", &other)),
    }
}

/// Sends `command` to the user `sub`'s object.
pub async fn call_user(env: &Env, sub: &str, command: UserCommand) -> Result<UserReply> {
    call(env, &user_object_name(sub), command).await
}

/// Sends `command` to the object named `name`, with the settlements this isolate holds for it,
/// applied first. Any failure fails closed (503).
pub async fn call(env: &Env, name: &str, command: UserCommand) -> Result<UserReply> {
    let Carried { call, settle } = settlement::carry(name);
    deliver(env, name, call, &Delivery::new(settle, command)).await
}

/// Sends `delivery`; the settlements the object acknowledges are then done, the rest of what
/// it carries (`call`) held for the next call again.
pub async fn deliver(env: &Env, name: &str, call: u64, delivery: &Delivery) -> Result<UserReply> {
    let answer: Result<Answer> = super::call(env, BINDING, name, delivery).await;
    let settled = answer
        .as_ref()
        .map(|answer| answer.settled.as_slice())
        .unwrap_or_default();
    settlement::landed(name, call, settled);
    answer.map(|answer| answer.reply)
}

/// Where the budget of all users stands, for an operator.
pub async fn global_status(env: &Env, limits: Limits, now_ms: i64) -> Result<Standing> {
    // The global object has no plans: its limits are the global budget's alone.
    let command = UserCommand::Status {
        limits,
        now_ms,
        plan_limits: Default::default(),
    };
    match call(env, GLOBAL_OBJECT_NAME, command).await? {
        UserReply::Status {
            standing: Some(standing),
            ..
        } => Ok(standing),
        other @ UserReply::Admitted { .. }
        | other @ UserReply::Refused { .. }
        | other @ UserReply::Revoked
        | other @ UserReply::UnknownResponse { .. }
        | other @ UserReply::Status { .. }
        | other @ UserReply::Finished
        | other @ UserReply::Minted
        | other @ UserReply::MintRefused { .. }
        | other @ UserReply::PlanChanged { .. }
        | other @ UserReply::Renewed { .. } => Err(unexpected("global", &other)),
    }
}
