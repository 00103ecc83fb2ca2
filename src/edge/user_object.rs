//! The per-user Durable Object (one per verified `sub`) and the Worker's one call to it.
//! Its state lives in storage, not memory, so it survives eviction; the decisions are
//! `UserRecord::apply` in the core.

use std::rc::Rc;

use worker::wasm_bindgen::JsValue;
use worker::{durable_object, Context, Date, DurableObject, Env, Method, Request, RequestInit, Response, Result, State};

use super::log;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::{ProxyError, TokenProblem};
use crate::quota::{Ask, Limits, Reservation, Standing};
use crate::user_state::{user_object_name, UserCommand, UserRecord, UserReply, GLOBAL_OBJECT_NAME};

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
    let command = UserCommand::Admit { issued_at: identity.issued_at, ask, limits: config.user_limits, now_ms };
    let (user, user_standing) = match call(env, &user_name, &command).await? {
        UserReply::Admitted { reservation, standing: admitted } => {
            *standing = Some(admitted);
            (reservation, admitted)
        }
        UserReply::Refused { refusal, standing: refused } => {
            *standing = Some(refused);
            return Err(ProxyError::Quota { refusal, global: false });
        }
        UserReply::Revoked => return Err(ProxyError::InvalidToken(TokenProblem::Revoked)),
        other => return Err(ProxyError::Internal { detail: format!("user object answered {other:?} to admit") }),
    };
    let mut settlement = user.map(|reservation| Settlement {
        env: env.clone(),
        ctx: ctx.clone(),
        reservations: vec![(user_name, config.user_limits, reservation)],
    });

    if let (Some(ask), Some(global_limits), Some(pending)) = (ask, config.global_limits, settlement.as_mut()) {
        let command = UserCommand::Admit { issued_at: None, ask: Some(ask), limits: global_limits, now_ms };
        let refused = match call(env, GLOBAL_OBJECT_NAME, &command).await {
            Ok(UserReply::Admitted { reservation: Some(reservation), .. }) => {
                pending.reservations.push((GLOBAL_OBJECT_NAME.to_owned(), global_limits, reservation));
                None
            }
            Ok(UserReply::Refused { refusal, .. }) => Some(ProxyError::Quota { refusal, global: true }),
            Ok(other) => Some(ProxyError::Internal { detail: format!("global object answered {other:?} to admit") }),
            Err(error) => Some(error),
        };
        if let Some(error) = refused {
            // Give the user's reservation back: nothing was spent.
            if let Some(pending) = settlement.take() {
                pending.settle(0);
            }
            return Err(error);
        }
    }
    Ok(Admission { standing: user_standing, settlement })
}

/// The reservations of an admitted request, replaced by what it used once it ends.
pub struct Settlement {
    env: Env,
    ctx: Rc<Context>,
    reservations: Vec<(String, Limits, Reservation)>,
}

impl Settlement {
    /// Charges `used_tokens` and frees the stream slot, after the response (`wait_until`), so
    /// it never delays the client.
    pub fn settle(self, used_tokens: u64) {
        let ctx = self.ctx.clone();
        ctx.wait_until(self.finish(used_tokens));
    }

    /// The same, for a caller that already runs after the response.
    pub async fn finish(self, used_tokens: u64) {
        let now_ms = Date::now().as_millis() as i64;
        for (name, limits, reservation) in self.reservations {
            let command = UserCommand::Finish { reservation_id: reservation.id, used_tokens, limits, now_ms };
            if let Err(error) = call(&self.env, &name, &command).await {
                // The reservation expires and is charged in full: the operator is safe.
                log::warn("settle_failed", &error.log_detail().unwrap_or_default());
            }
        }
    }
}

/// Sends `command` to the object named `name`. Any failure fails closed (503): no upstream call.
pub async fn call(env: &Env, name: &str, command: &UserCommand) -> std::result::Result<UserReply, ProxyError> {
    let unavailable = |step: &str, error: worker::Error| ProxyError::Unavailable { detail: format!("user object {step}: {error}") };
    let namespace = env
        .durable_object(BINDING)
        .map_err(|_| ProxyError::misconfigured(format!("Durable Object binding {BINDING} is missing from wrangler.toml")))?;
    let stub = namespace.id_from_name(name).and_then(|id| id.get_stub()).map_err(|e| unavailable("lookup", e))?;
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
