//! The user object's class (binding `USERS`): its record in storage with a copy in memory, so
//! that a warm object reads storage only once, and the alarm that sends what it charged to the
//! day's usage index (at most one call per `INDEX_DELAY`, kept in the record until the index
//! acknowledges it) and gives back what its leases of shared budgets hold free once it is
//! idle. The same class holds the shared budgets under their own names.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::budget::alerts::AlertRules;
use crate::budget::lease::LeaseAsk;
use crate::budget::quota::Limits;
use crate::config::Config;
use crate::edge::objects::{json_of, store, stored, usage_index};
use crate::edge::{log, Now};
use crate::objects::user::{Delivery, UserCommand, UserRecord, UserReply};

const RECORD_KEY: &str = "record";
/// How long charges wait in a user's object before they go to the day's index: the index
/// gets at most one call per user per this interval.
const INDEX_DELAY: Duration = Duration::from_secs(2);
/// When the index did not answer, the next try.
const INDEX_RETRY: Duration = Duration::from_secs(30);

#[durable_object]
pub struct UserState {
    state: State,
    env: Env,
    /// The stored record as last read or written. Memory is lost on eviction and storage
    /// stays the source of truth: it is read when this is empty, written on every change.
    record: RefCell<Option<UserRecord>>,
    /// When the alarm this instance set rings. Setting it later again would push it, and
    /// under steady traffic it would never ring; so it is only ever brought forward. After an
    /// eviction it is set once more, which at worst delays it by `INDEX_DELAY`.
    alarm_at: Cell<Option<i64>>,
}

impl DurableObject for UserState {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            record: RefCell::new(None),
            alarm_at: Cell::new(None),
        }
    }

    /// A read only when the object starts, and one write when the record changed (by the
    /// settlements carried and the command together). Applying awaits nothing, so no other
    /// request's change can come between read and apply; the write is issued before the next
    /// event runs, so writes land in the order of changes.
    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let delivery = match Delivery::read(&req.text().await?) {
            Ok(delivery) => delivery,
            // Refused whole, nothing applied: the Worker fails closed and keeps its settlements.
            Err(why) => {
                log::warn("object_refused", &why);
                return Response::error("message not understood", 400);
            }
        };
        let (answer, changed) = self
            .update(|record| {
                let (answer, changed) = record.receive(&delivery);
                (answer, changed.then(|| record.clone()))
            })
            .await?;
        if let Some(record) = changed {
            self.store(&record).await?;
            self.schedule(&record, INDEX_DELAY).await;
        }
        Response::from_json(&answer)
    }

    /// Gives back what idle leases hold free, then sends the usage outbox's batch to each
    /// day's index; what is not acknowledged stays in the record and is sent again, with the
    /// same number, so the index counts it once.
    async fn alarm(&self) -> worker::Result<Response> {
        self.alarm_at.set(None);
        let now_ms = Now::read().millis();
        let (give_backs, batch, record) = self
            .update(|record| {
                let give_backs = record.idle_give_backs(now_ms);
                let batch = record.usage_outbox.batch();
                (give_backs, batch, record.clone())
            })
            .await?;
        // What else the alarm changes (expired reservations charged) is in the outbox.
        let changed = !give_backs.is_empty() || batch.is_some();
        // Stored before anything is sent: a give-back is taken off the lease for good (sent
        // once: lost, it is stranded, never given twice), a batch's number never reused.
        if changed {
            self.store(&record).await?;
        }
        self.give_back(give_backs, now_ms).await;
        let (record, retry) = match batch {
            Some((sub, batch)) if usage_index::charge(&self.env, &sub, &batch, self.index_shards()).await => {
                let record = self
                    .update(|record| {
                        record.usage_outbox.acknowledged(batch.seq);
                        record.clone()
                    })
                    .await?;
                self.store(&record).await?;
                (record, INDEX_DELAY)
            }
            Some(_) => (record, INDEX_RETRY),
            None => (record, INDEX_DELAY),
        };
        self.schedule(&record, retry).await;
        Response::ok("")
    }
}

impl UserState {
    /// Applies `change` to the record (read from storage when not in memory). The borrow ends before any await: held across one, a concurrent request
    /// would panic.
    async fn update<R>(&self, change: impl FnOnce(&mut UserRecord) -> R) -> worker::Result<R> {
        let loaded = self.record.borrow().is_some();
        if !loaded {
            let stored = match stored(&self.state.storage(), RECORD_KEY).await? {
                Some(value) => serde_json::from_str(&json_of(&value).to_string())
                    .map_err(|e| worker::Error::RustError(format!("stored record: {e}")))?,
                None => UserRecord::default(),
            };
            // Another request may have loaded and changed it meanwhile: its copy is newer.
            self.record.borrow_mut().get_or_insert(stored);
        }
        let mut slot = self.record.borrow_mut();
        Ok(change(slot.get_or_insert_with(UserRecord::default)))
    }

    async fn store(&self, record: &UserRecord) -> worker::Result<()> {
        if let Err(error) = store(&self.state.storage(), RECORD_KEY, record).await {
            // Memory may now be ahead of storage: read storage again next time.
            self.record.replace(None);
            return Err(error);
        }
        Ok(())
    }

    /// `USAGE_INDEX_SHARDS` (1 if it is invalid: the Worker answers nothing while its config
    /// is broken, so no charge is made meanwhile).
    fn index_shards(&self) -> u32 {
        Config::usage_index_shards(|name| crate::edge::env_string(&self.env, name)).unwrap_or(1)
    }

    /// Sends each give-back to its pool, once.
    async fn give_back(&self, give_backs: Vec<(LeaseAsk, Limits)>, now_ms: i64) {
        for (ask, limits) in give_backs {
            let pool = ask.pool.clone();
            let command = UserCommand::Lease {
                ask,
                limits,
                alerts: AlertRules::default(),
                now_ms,
            };
            match super::call(&self.env, &pool, command).await {
                Ok(UserReply::Leased { .. }) => {}
                Ok(other) => log::warn("lease_give_back_refused", &format!("{pool} answered {other:?}")),
                Err(error) => log::warn("lease_give_back_lost", &error.to_string()),
            }
        }
    }

    /// Brings the alarm forward to when the record next has work: its outbox to send (in
    /// `outbox_delay`), or its leases to give back once idle.
    async fn schedule(&self, record: &UserRecord, outbox_delay: Duration) {
        let now_ms = Now::read().millis();
        let outbox = record
            .usage_outbox
            .has_unsent()
            .then(|| now_ms.saturating_add(i64::try_from(outbox_delay.as_millis()).unwrap_or(i64::MAX)));
        let Some(at_ms) = outbox.into_iter().chain(record.next_give_back_ms()).min() else {
            return;
        };
        if self.alarm_at.get().is_some_and(|set| set <= at_ms) {
            return;
        }
        self.alarm_at.set(Some(at_ms));
        let delay = Duration::from_millis(at_ms.saturating_sub(now_ms).max(0).unsigned_abs());
        if let Err(error) = self.state.storage().set_alarm(delay).await {
            self.alarm_at.set(None);
            log::warn("alarm_failed", &error.to_string());
        }
    }
}
