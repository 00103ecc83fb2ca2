//! Settling admitted requests off the critical path. A settlement is held in the isolate (see
//! `crate::objects::held`) and rides on the next call the isolate makes to the same object, whoever
//! makes it; one still held after `SETTLEMENT_HOLD` goes in one call of its own, from the
//! request's `wait_until`. Cancels, and a settlement that records a created response, go at
//! once.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures_util::future::join_all;
use worker::{Context, Delay, Env};

use super::{log, objects, Now};
use crate::budget::quota::{Limits, Reservation, Spend};
use crate::objects::held::{Carried, HeldSettlements, SETTLEMENT_HOLD};
use crate::objects::owned_responses::Created;
use crate::objects::user::{user_object_name, Delivery, Finished, UserCommand, UserReply};

/// Flushes a request's `wait_until` tries, `SETTLEMENT_HOLD` apart, before leaving what is
/// still held to the next call (or to its reservation's expiry, charged in full).
const FLUSH_ATTEMPTS: usize = 3;

thread_local! {
    static HELD: RefCell<HeldSettlements> = RefCell::default();
}

/// What the next call to `object` carries.
pub fn carry(object: &str) -> Carried {
    HELD.with_borrow_mut(|held| held.carry(object, Now::read().millis()))
}

/// The call that carried `call` ended; the object acknowledged `settled`.
pub fn landed(object: &str, call: u64, settled: &[u64]) {
    HELD.with_borrow_mut(|held| held.landed(object, call, settled));
}

/// Settlements held in this isolate, for the bench counters.
pub fn held_count() -> usize {
    HELD.with_borrow(HeldSettlements::count)
}

/// Sends everything held for `object` in one call, if anything is. Says whether the object
/// answered: one that answers without acknowledging (an older version) is not asked again at
/// once, and what it did not acknowledge waits for the next call.
async fn flush(env: &Env, object: &str) -> bool {
    let Carried { call, settle } = HELD.with_borrow_mut(|held| held.carry_all(object, Now::read().millis()));
    let Some(delivery) = Delivery::flush(settle) else {
        return true;
    };
    match objects::user::deliver(env, object, call, &delivery).await {
        Ok(_) => true,
        Err(error) => {
            log::warn("settle_failed", &error.to_string());
            false
        }
    }
}

/// The reservations of an admitted request, replaced by what it used once it ends. A status
/// read has none, and settling it does nothing. Like pingora's in-flight guard, it cannot be
/// forgotten: one dropped without being settled or cancelled (a request cancelled mid-way, an
/// early return) is held at its whole reservation, so its stream slot frees at the object's
/// next call instead of at the reservation's expiry 15 minutes later.
#[must_use = "an unsettled request is charged its whole reservation when dropped"]
pub struct Settlement {
    /// `None` once settled or cancelled.
    pending: Option<Pending>,
}

struct Pending {
    env: Env,
    ctx: Rc<Context>,
    sub: String,
    reservations: Vec<(String, Limits, Reservation)>,
}

impl Settlement {
    pub fn new(env: &Env, ctx: &Rc<Context>, sub: &str) -> Self {
        let pending = Pending {
            env: env.clone(),
            ctx: ctx.clone(),
            sub: sub.to_owned(),
            reservations: Vec::new(),
        };
        Self { pending: Some(pending) }
    }

    /// Adds the reservation an object (`name`, checked with `limits`) made.
    pub fn add(&mut self, name: &str, limits: Limits, reservation: Reservation) {
        if let Some(pending) = &mut self.pending {
            pending.reservations.push((name.to_owned(), limits, reservation));
        }
    }

    /// Holds `spent` to be charged, and the stream slot freed, after the response (`hold`), so
    /// it never delays the client.
    pub fn settle(mut self, spent: Spend) {
        let Some(pending) = self.pending.take() else { return };
        if pending.reservations.is_empty() {
            return;
        }
        let ctx = pending.ctx.clone();
        ctx.wait_until(pending.hold(move |_| spent, None));
    }

    /// Holds the settlement now (any later call to its objects carries it, the user's
    /// `/v1/usage` included) and returns the flush of what is still held `SETTLEMENT_HOLD`
    /// later, for a caller that already runs after the response. The user's object lists
    /// what it charges in the day's usage index.
    pub fn hold(mut self, spent: Spend) -> impl Future<Output = ()> {
        let held = self.pending.take().map(|pending| pending.hold(move |_| spent, None));
        async move {
            if let Some(flush_later) = held {
                flush_later.await;
            }
        }
    }

    /// Settles the user's object before the client has the whole answer, recording `created`,
    /// the stored response the request created (and its items): a continuation sent as soon
    /// as the answer arrives must find it recorded. Shared objects are settled as `settle` does.
    pub async fn settle_creating(mut self, spent: Spend, created: Created) {
        let Some(pending) = self.pending.take() else { return };
        let (env, ctx) = (pending.env.clone(), pending.ctx.clone());
        let user = user_object_name(&pending.sub);
        // The later flush is registered first: it must run even if this request is cancelled
        // while the immediate one is under way.
        ctx.wait_until(pending.hold(move |_| spent, Some(created)));
        flush(&env, &user).await;
    }

    /// Keeps the request's reservations, and its stream slot, from expiring while it runs:
    /// call it every `RENEW_EVERY_MS`. A failure is only logged; two more tries come before
    /// the reservation would expire (charged in full: the operator is safe).
    pub async fn renew(&self) {
        let Some(pending) = &self.pending else { return };
        let now_ms = Now::read().millis();
        for (name, limits, reservation) in &pending.reservations {
            let command = UserCommand::Renew {
                reservation_id: reservation.id,
                limits: *limits,
                now_ms,
                charge: None,
            };
            match objects::user::call(&pending.env, name, command).await {
                Ok(UserReply::Renewed { expires_at_ms: Some(_) }) => {}
                Ok(other) => log::warn("renew_failed", &format!("{name} object answered {other:?}")),
                Err(error) => log::warn("renew_failed", &error.to_string()),
            }
        }
    }

    /// Undoes the admissions at once: a request refused after its user's admission (by the
    /// global budget) costs the user nothing, not even a request of their rate, and a retry
    /// right after the 429 must find it so. A failure is only logged: the reservation then
    /// expires and is charged in full, so the operator is safe.
    pub async fn cancel(mut self) {
        let Some(pending) = self.pending.take() else { return };
        let now_ms = Now::read().millis();
        for (name, limits, reservation) in &pending.reservations {
            let command = UserCommand::Cancel {
                reservation_id: reservation.id,
                limits: *limits,
                now_ms,
            };
            if let Err(error) = objects::user::call(&pending.env, name, command).await {
                log::warn("cancel_failed", &error.to_string());
            }
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else { return };
        if pending.reservations.is_empty() {
            return;
        }
        log::warn(
            "settlement_dropped",
            "a request ended unsettled: charged its whole reservation",
        );
        let ctx = pending.ctx.clone();
        ctx.wait_until(pending.hold(Reservation::spend, None));
    }
}

impl Pending {
    /// Holds each reservation's settlement, charged `spent_of(reservation)`, and returns the
    /// flush of what is still held `SETTLEMENT_HOLD` later.
    fn hold(self, spent_of: impl Fn(&Reservation) -> Spend, created: Option<Created>) -> impl Future<Output = ()> {
        let now_ms = Now::read().millis();
        let user = user_object_name(&self.sub);
        HELD.with_borrow_mut(|held| {
            for (name, limits, reservation) in &self.reservations {
                let spent = spent_of(reservation);
                // Only the user's own object learns of a created response.
                let created = created.as_ref().filter(|_| *name == user);
                let finished = Finished {
                    reservation_id: reservation.id,
                    used_tokens: spent.tokens,
                    limits: *limits,
                    now_ms,
                    created_response: created.map(|created| created.response.clone()),
                    created_items: created.map_or_else(Vec::new, |created| created.items.clone()),
                    used_nano_usd: spent.nano_usd,
                };
                held.hold(name, finished);
            }
        });
        // A failed flush is tried again: a slot must not wait for this isolate's next call.
        async move {
            let mut unsettled: Vec<&(String, Limits, Reservation)> = self.reservations.iter().collect();
            for _ in 0..FLUSH_ATTEMPTS {
                Delay::from(SETTLEMENT_HOLD).await;
                unsettled.retain(|(name, _, reservation)| HELD.with_borrow(|held| held.holds(name, reservation.id)));
                if unsettled.is_empty() {
                    return;
                }
                let answered = join_all(unsettled.iter().map(|(name, _, _)| flush(&self.env, name))).await;
                // An object that answered without acknowledging runs an older version: asking
                // again at once would not help; the next call to it carries what it left.
                let mut answered = answered.into_iter();
                unsettled.retain(|_| answered.next() == Some(false));
            }
        }
    }
}
