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
use crate::budget::lease::{Grant, LeaseAsk, PoolStanding, RefusalMemo};
use crate::budget::plans::{Plan, PlanChoice};
use crate::budget::quota::{Ask, Limits, Standing};
use crate::config::Config;
use crate::edge::settlement::{self, Settlement};
use crate::edge::{log, Now, Result};
use crate::error::{ProxyError, TokenProblem};
use crate::objects::held::Carried;
use crate::objects::user::{
    user_object_name, Answer, Delivery, PlanAsk, PoolTerms, UserCommand, UserReply, GLOBAL_OBJECT_NAME,
    GUESTS_OBJECT_NAME,
};
use crate::request::ApiRequest;

mod state;

const BINDING: &str = "USERS";
/// Admission attempts while others take the budget a top-up brought: in practice the second
/// always has it.
const LEASE_ATTEMPTS: usize = 3;

thread_local! {
    /// The pools' recent refusals: asks as big are refused without calling the pool again.
    static REFUSALS: std::cell::RefCell<RefusalMemo> = std::cell::RefCell::default();
}
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
/// (with an `ask`) rate, stream slot, budgets, and the global budget by the lease the object
/// holds of it (`admit_leasing`); then, for a guest, its client's object, which holds the
/// leases of the guests' and the global budget. Returns the standing that limits the caller
/// (a guest's is its client's), for the RateLimit headers, refused or not, and what came of it.
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
    let client = guest_client(config, identity);
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
        // A guest's leases are its client's: guest tokens come and go, a client stays.
        leases: if client.is_some() {
            Vec::new()
        } else {
            pools(config, false, ask)
        },
        grants: Vec::new(),
    };
    let (reservation, standing) = match admit_leasing(env, ctx, config, &user_name, command).await {
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
        Err((shown, error)) => return (shown, Err(error)),
    };
    let mut settlement = Settlement::new(env, ctx, &identity.sub);
    if let Some(reservation) = reservation {
        settlement.add(&user_name, limits, reservation);
    }
    let Some((client, client_limits)) = client else {
        return (Some(standing), Ok(Admission::Admitted { settlement, standing }));
    };
    let command = UserCommand::Admit {
        issued_at: None,
        ask,
        limits: client_limits,
        alerts: config.alerts.user,
        now_ms,
        continues: None,
        references: Vec::new(),
        plan: None,
        sub: None,
        voice: None,
        leases: pools(config, true, ask),
        grants: Vec::new(),
    };
    match admit_client(env, ctx, config, client, command, &mut settlement).await {
        // A guest's standing is its client's: what all its guest tokens used together.
        Ok(standing) => (Some(standing), Ok(Admission::Admitted { settlement, standing })),
        Err((shown, error)) => {
            // Give back all the user's admission took, rate-window entries included, before
            // answering: a retry right after the 429 must find them given back.
            settlement.cancel().await;
            (Some(shown.unwrap_or(standing)), Err(error))
        }
    }
}

/// A guest's client object (every request of a guest, status reads too: its standing is the
/// one that counts) and the guest plan's limits.
fn guest_client<'a>(config: &'a Config, identity: &'a Identity) -> Option<(&'a str, Limits)> {
    config.guest.as_ref()?;
    let client = identity.guest_client.as_deref()?;
    Some((client, config.plan(GUEST_PLAN).ok()?.user_limits))
}

/// The shared budgets a request that calls upstream (`ask`) is admitted against, by leases:
/// a guest's, the guests' (`GLOBAL_GUEST_DAILY_BUDGET_USD`); everyone's, the global one.
pub fn pools(config: &Config, guest: bool, ask: Option<Ask>) -> Vec<PoolTerms> {
    let guests = config.guest.as_ref().and_then(|settings| settings.global_limits);
    let guests = guests.filter(|_| guest).map(|limits| PoolTerms {
        pool: GUESTS_OBJECT_NAME.to_owned(),
        limits,
    });
    let global = config.global_limits.map(|limits| PoolTerms {
        pool: GLOBAL_OBJECT_NAME.to_owned(),
        limits,
    });
    ask.map(|_| guests.into_iter().chain(global).collect())
        .unwrap_or_default()
}

/// Admission by the object `name`, topping up its leases when it lacks one (`NeedLease`) and
/// admitting again with the grants: one call while its leases cover the request, three when
/// they must be topped up. A pool's refusal is the service's (`global`).
pub async fn admit_leasing(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    name: &str,
    mut command: UserCommand,
) -> Result<UserReply, (Option<Standing>, ProxyError)> {
    let terms = if let UserCommand::Admit { leases, .. } = &command {
        leases.clone()
    } else {
        Vec::new()
    };
    let raise_alert = |message: &str| raise(ctx, config, message);
    for _ in 0..LEASE_ATTEMPTS {
        let leases = match call(env, name, command.clone()).await {
            Ok(UserReply::NeedLease { leases }) => leases,
            Ok(reply) => return Ok(reply),
            Err(error) => return Err((None, error)),
        };
        let granted = top_up(env, &terms, config.alerts.global, &raise_alert, leases).await?;
        if let UserCommand::Admit { grants, .. } = &mut command {
            *grants = granted;
        }
    }
    Err((
        None,
        ProxyError::Unavailable {
            detail: format!("{name} kept needing a lease: others took the budget meanwhile"),
        },
    ))
}

/// Asks each pool for what a holder lacks. A grant that does not reach the holder (this
/// request fails, or its isolate dies) is stranded until the day ends, never spent twice.
/// `terms` are the pools' limits; a pool's alert goes to `raise_alert`.
pub async fn top_up(
    env: &Env,
    terms: &[PoolTerms],
    alerts: AlertRules,
    raise_alert: &dyn Fn(&str),
    asks: Vec<LeaseAsk>,
) -> Result<Vec<Grant>, (Option<Standing>, ProxyError)> {
    let mut grants = Vec::with_capacity(asks.len());
    for ask in asks {
        let now_ms = Now::read().millis();
        if let Some((refusal, standing)) = REFUSALS.with_borrow(|memo| memo.refusal(&ask, now_ms)) {
            return Err((Some(standing), ProxyError::Quota { refusal, global: true }));
        }
        let pool = ask.pool.clone();
        let who = match pool.as_str() {
            GUESTS_OBJECT_NAME => "all guests",
            _ => "all users",
        };
        let Some(limits) = terms.iter().find(|terms| terms.pool == pool).map(|terms| terms.limits) else {
            return Err((None, unexpected(&pool, &UserReply::NeedLease { leases: Vec::new() })));
        };
        let command = UserCommand::Lease {
            ask,
            limits,
            alerts,
            now_ms,
        };
        match call(env, &pool, command).await {
            Ok(UserReply::Leased { grant, alert }) => {
                if let Some(alert) = alert {
                    raise_alert(&alert.message(who));
                }
                grants.push(grant);
            }
            Ok(UserReply::Refused { refusal, standing }) => {
                REFUSALS.with_borrow_mut(|memo| memo.remember(&pool, standing, refusal, now_ms));
                return Err((Some(standing), ProxyError::Quota { refusal, global: true }));
            }
            Ok(other) => return Err((None, unexpected(&pool, &other))),
            Err(error) => return Err((None, error)),
        }
    }
    Ok(grants)
}

/// Admits the request in a guest's client object too (or, without an ask, reads its
/// standing). A refusal carries the standing to show, the client's or a pool's.
async fn admit_client(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    client: &str,
    command: UserCommand,
    settlement: &mut Settlement,
) -> Result<Standing, (Option<Standing>, ProxyError)> {
    let UserCommand::Admit { limits, .. } = command else {
        return Err((None, unexpected(client, &UserReply::Finished)));
    };
    match admit_leasing(env, ctx, config, client, command).await? {
        UserReply::Admitted {
            reservation,
            alert,
            standing,
        } => {
            if let Some(reservation) = reservation {
                settlement.add(client, limits, reservation);
            }
            if let Some(alert) = alert {
                raise(ctx, config, &alert.message("(a guest client)"));
            }
            Ok(standing)
        }
        UserReply::Refused { refusal, standing } => Err((Some(standing), ProxyError::Quota { refusal, global: false })),
        other @ (UserReply::Revoked
        | UserReply::UnknownResponse { .. }
        | UserReply::Status { .. }
        | UserReply::Finished
        | UserReply::Minted
        | UserReply::MintRefused { .. }
        | UserReply::PlanChanged { .. }
        | UserReply::Renewed { .. }
        | UserReply::NeedLease { .. }
        | UserReply::Leased { .. }
        | UserReply::Pool { .. }) => Err((None, unexpected(client, &other))),
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
        ctx.wait_until(post_alert(url, message.to_owned()));
    }
}

/// Posts an alert to the webhook at `url`, failures logged.
pub async fn post_alert(url: String, message: String) {
    let body = serde_json::json!({ "text": message }).to_string();
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
        | other @ UserReply::Renewed { .. }
        | other @ UserReply::NeedLease { .. }
        | other @ UserReply::Leased { .. }
        | other @ UserReply::Pool { .. } => Err(unexpected("client", &other)),
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

/// Where a shared budget (`pool`: the global or the guests' object) stands, for an operator.
pub async fn pool_status(env: &Env, pool: &str, limits: Limits, now_ms: i64) -> Result<PoolStanding> {
    match call(env, pool, UserCommand::PoolStatus { limits, now_ms }).await? {
        UserReply::Pool {
            standing,
            reserved,
            idle,
        } => Ok(PoolStanding {
            standing,
            reserved,
            idle,
        }),
        other @ (UserReply::Admitted { .. }
        | UserReply::Refused { .. }
        | UserReply::Revoked
        | UserReply::UnknownResponse { .. }
        | UserReply::Status { .. }
        | UserReply::Finished
        | UserReply::Minted
        | UserReply::MintRefused { .. }
        | UserReply::PlanChanged { .. }
        | UserReply::Renewed { .. }
        | UserReply::NeedLease { .. }
        | UserReply::Leased { .. }) => Err(unexpected(pool, &other)),
    }
}
