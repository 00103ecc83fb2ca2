//! The per-user Durable Object (one per verified `sub`) and the Worker's one call to it.
//! Its state lives in storage, not memory, so it survives eviction; the decisions are
//! `UserRecord::apply` in the core.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, Context, Date, DurableObject, Env, Method, Request, RequestInit, RequestRedirect, Response, Result,
    State,
};

use super::log;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::{ProxyError, TokenProblem};
use crate::quota::{Ask, Limits, Reservation, Standing};
use crate::user_state::{
    usage_index_name, user_object_name, utc_day, IndexCommand, UsageBatch, UserCommand, UserRecord, UserReply,
    GLOBAL_OBJECT_NAME,
};

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
    /// the read, so read-apply-write is atomic per user. `/index` is a day's usage index.
    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() == INDEX_PATH {
            return self.index(req.json().await?).await;
        }
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

impl UserState {
    /// A day's usage index: one storage key per user, so the record never grows with users.
    async fn index(&self, command: IndexCommand) -> Result<Response> {
        let storage = self.state.storage();
        match command {
            IndexCommand::Record { spent } => {
                for (sub, tokens) in spent {
                    let key = format!("{INDEX_KEY_PREFIX}{sub}");
                    let total: u64 = storage.get(&key).await?.unwrap_or(0);
                    storage.put(&key, total.saturating_add(tokens)).await?;
                }
                Response::from_json(&serde_json::json!({}))
            }
            IndexCommand::List => {
                let entries = storage
                    .list_with_options(worker::ListOptions::new().prefix(INDEX_KEY_PREFIX))
                    .await?;
                let mut users = Vec::new();
                for entry in entries.entries() {
                    let pair = worker::js_sys::Array::from(&entry?);
                    let key = pair.get(0).as_string().unwrap_or_default();
                    let tokens = pair.get(1).as_f64().unwrap_or(0.0) as u64;
                    users.push(
                        serde_json::json!({ "sub": key.trim_start_matches(INDEX_KEY_PREFIX), "total_tokens": tokens }),
                    );
                }
                Response::from_json(&users)
            }
        }
    }
}

const INDEX_PATH: &str = "/index";
const INDEX_KEY_PREFIX: &str = "tokens:";

/// What admission gave a request.
pub struct Admission {
    pub standing: Standing,
    /// The reservations to settle when the request ends (none for a status read).
    pub settlement: Option<Settlement>,
}

/// Admits `identity`'s request in one round trip to its object: revocation, then (with an
/// `ask`) rate, stream slot and budget; then the global budget, if one is set. `standing` is
/// filled in even when the request is refused, for the RateLimit headers.
pub async fn admit(
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    identity: &Identity,
    ask: Option<Ask>,
    standing: &mut Option<Standing>,
) -> std::result::Result<Admission, ProxyError> {
    let now_ms = Date::now().as_millis() as i64;
    let user_name = user_object_name(&identity.sub);
    let command = UserCommand::Admit {
        issued_at: identity.issued_at,
        ask,
        limits: config.user_limits,
        alerts: config.user_alerts,
        now_ms,
    };
    let (user, user_standing) = match call(env, &user_name, &command).await? {
        UserReply::Admitted {
            reservation,
            standing: admitted,
            alert,
        } => {
            *standing = Some(admitted);
            if let Some(alert) = alert {
                raise(ctx, config, &alert.message(&identity.sub));
            }
            (reservation, admitted)
        }
        UserReply::Refused {
            refusal,
            standing: refused,
        } => {
            *standing = Some(refused);
            return Err(ProxyError::Quota { refusal, global: false });
        }
        UserReply::Revoked => return Err(ProxyError::InvalidToken(TokenProblem::Revoked)),
        other => {
            return Err(ProxyError::Internal {
                detail: format!("user object answered {other:?} to admit"),
            })
        }
    };
    let mut settlement = user.map(|reservation| Settlement {
        env: env.clone(),
        ctx: ctx.clone(),
        sub: identity.sub.clone(),
        reservations: vec![(user_name, config.user_limits, reservation)],
    });

    if let (Some(ask), Some(global_limits), Some(pending)) = (ask, config.global_limits, settlement.as_mut()) {
        let command = UserCommand::Admit {
            issued_at: None,
            ask: Some(ask),
            limits: global_limits,
            alerts: config.global_alerts,
            now_ms,
        };
        let refused = match call(env, GLOBAL_OBJECT_NAME, &command).await {
            Ok(UserReply::Admitted {
                reservation: Some(reservation),
                alert,
                ..
            }) => {
                pending
                    .reservations
                    .push((GLOBAL_OBJECT_NAME.to_owned(), global_limits, reservation));
                if let Some(alert) = alert {
                    raise(ctx, config, &alert.message("all users"));
                }
                None
            }
            Ok(UserReply::Refused { refusal, .. }) => Some(ProxyError::Quota { refusal, global: true }),
            Ok(other) => Some(ProxyError::Internal {
                detail: format!("global object answered {other:?} to admit"),
            }),
            Err(error) => Some(error),
        };
        if let Some(error) = refused {
            // Give back all the user's admission took, its rate-window entry included, before
            // answering: a retry right after the 429 must find it given back.
            if let Some(pending) = settlement.take() {
                pending.cancel().await;
            }
            return Err(error);
        }
    }
    Ok(Admission {
        standing: user_standing,
        settlement,
    })
}

/// The reservations of an admitted request, replaced by what it used once it ends.
pub struct Settlement {
    env: Env,
    ctx: Rc<Context>,
    sub: String,
    reservations: Vec<(String, Limits, Reservation)>,
}

impl Settlement {
    /// Charges `used_tokens` and frees the stream slot, after the response (`wait_until`), so
    /// it never delays the client.
    pub fn settle(self, used_tokens: u64) {
        let ctx = self.ctx.clone();
        ctx.wait_until(self.finish(used_tokens));
    }

    /// Undoes the admissions: a request refused after its user's admission (by the global
    /// budget) costs the user nothing, not even a request of their rate.
    async fn cancel(self) {
        let now_ms = Date::now().as_millis() as i64;
        for (name, limits, reservation) in self.reservations {
            let command = UserCommand::Cancel {
                reservation_id: reservation.id,
                limits,
                now_ms,
            };
            if let Err(error) = call(&self.env, &name, &command).await {
                // The reservation expires and is charged in full: the operator is safe.
                log::warn("cancel_failed", &error.log_detail().unwrap_or_default());
            }
        }
    }

    /// The same, for a caller that already runs after the response.
    pub async fn finish(self, used_tokens: u64) {
        let now_ms = Date::now().as_millis() as i64;
        for (name, limits, reservation) in self.reservations {
            let command = UserCommand::Finish {
                reservation_id: reservation.id,
                used_tokens,
                limits,
                now_ms,
            };
            if let Err(error) = call(&self.env, &name, &command).await {
                // The reservation expires and is charged in full: the operator is safe.
                log::warn("settle_failed", &error.log_detail().unwrap_or_default());
            }
        }
        if used_tokens > 0 {
            PENDING_USAGE.with_borrow_mut(|batch| batch.add(utc_day(now_ms), self.sub, used_tokens));
            send_pending_usage(&self.env).await;
        }
    }
}

thread_local! {
    static PENDING_USAGE: RefCell<UsageBatch> = RefCell::default();
    static SENDING_USAGE: Cell<bool> = const { Cell::new(false) };
}

/// Sends the isolate's pending usage to the day indexes, unless a send is already under way:
/// that one loops until nothing is pending, so it carries this request's usage too.
async fn send_pending_usage(env: &Env) {
    if SENDING_USAGE.replace(true) {
        return;
    }
    // Cleared however the loop ends (also if its task is dropped), so sending never stops.
    struct Sending;
    impl Drop for Sending {
        fn drop(&mut self) {
            SENDING_USAGE.set(false);
        }
    }
    let _sending = Sending;
    loop {
        let batch = PENDING_USAGE.with_borrow_mut(UsageBatch::take);
        if batch.is_empty() {
            return;
        }
        for (day, record) in batch {
            if let Err(error) = call_index::<serde_json::Value>(env, &day, &record).await {
                log::warn("usage_index_failed", &error.log_detail().unwrap_or_default());
            }
        }
    }
}

/// An alert goes to the log and, if `ALERT_WEBHOOK_URL` is set, to the webhook after the
/// response (`wait_until`), so it never delays the request that crossed the threshold.
fn raise(ctx: &Rc<Context>, config: &Config, message: &str) {
    log::alert(message);
    if let Some(url) = config.alert_webhook_url.clone() {
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
            let sent = match Request::new_with_init(&url, &init) {
                Ok(request) => worker::Fetch::Request(request).send().await.map(|r| r.status_code()),
                Err(error) => Err(error),
            };
            if !matches!(sent, Ok(200..=299)) {
                log::warn("alert_webhook_failed", &format!("{sent:?}"));
            }
        });
    }
}

/// Every user's total tokens of `day` (`YYYY-MM-DD`).
pub async fn day_usage(env: &Env, day: &str) -> std::result::Result<serde_json::Value, ProxyError> {
    call_index(env, day, &IndexCommand::List).await
}

async fn call_index<R: serde::de::DeserializeOwned>(
    env: &Env,
    day: &str,
    command: &IndexCommand,
) -> std::result::Result<R, ProxyError> {
    send(env, &usage_index_name(day), INDEX_PATH, command).await
}

/// Sends `command` to the object named `name`. Any failure fails closed (503): no upstream call.
pub async fn call(env: &Env, name: &str, command: &UserCommand) -> std::result::Result<UserReply, ProxyError> {
    send(env, name, "/", command).await
}

async fn send<C: serde::Serialize, R: serde::de::DeserializeOwned>(
    env: &Env,
    name: &str,
    path: &str,
    command: &C,
) -> std::result::Result<R, ProxyError> {
    let unavailable = |step: &str, error: worker::Error| ProxyError::Unavailable {
        detail: format!("user object {step}: {error}"),
    };
    let namespace = env.durable_object(BINDING).map_err(|_| {
        ProxyError::misconfigured(format!(
            "Durable Object binding {BINDING} is missing from wrangler.toml"
        ))
    })?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| unavailable("lookup", e))?;
    let body = serde_json::to_string(command).map_err(|e| ProxyError::Internal { detail: e.to_string() })?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
    let request =
        Request::new_with_init(&format!("https://user-state{path}"), &init).map_err(|e| unavailable("request", e))?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(|e| unavailable("call", e))?;
    if response.status_code() != 200 {
        return Err(ProxyError::Unavailable {
            detail: format!("user object answered {}", response.status_code()),
        });
    }
    response.json().await.map_err(|e| unavailable("reply", e))
}
