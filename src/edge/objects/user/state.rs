//! The user object's class (binding `USERS`): its record in storage with a copy in memory, so
//! that a warm object reads storage only once, and the alarm that sends what it charged to the
//! day's usage index (at most one call per `INDEX_DELAY`, kept in the record until the index
//! acknowledges it). The same class holds the shared budgets under their own names.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use worker::{durable_object, DurableObject, Env, Request, Response, State};

use crate::edge::log;
use crate::edge::objects::{json_of, store, stored, usage_index};
use crate::objects::user::{Delivery, UserRecord};

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
    /// Whether this instance set the alarm that sends the usage outbox. Setting it again
    /// would push it later, and under steady traffic it would never ring; after an eviction
    /// it is set once more, which at worst delays it by `INDEX_DELAY`.
    alarm_set: Cell<bool>,
}

impl DurableObject for UserState {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            record: RefCell::new(None),
            alarm_set: Cell::new(false),
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
            if record.usage_outbox.has_unsent() {
                self.schedule_index(INDEX_DELAY).await;
            }
        }
        Response::from_json(&answer)
    }

    /// Sends the usage outbox's batch to each day's index; what is not acknowledged stays in
    /// the record and is sent again, with the same number, so the index counts it once.
    async fn alarm(&self) -> worker::Result<Response> {
        self.alarm_set.set(false);
        let (batch, record) = self
            .update(|record| {
                let batch = record.usage_outbox.batch();
                (batch, record.clone())
            })
            .await?;
        let Some((sub, batch)) = batch else {
            return Response::ok("");
        };
        // Stored before it is sent: its number must never be given to other charges.
        self.store(&record).await?;
        if usage_index::charge(&self.env, &sub, &batch).await {
            let (_, record) = self
                .update(|record| {
                    record.usage_outbox.acknowledged(batch.seq);
                    ((), record.clone())
                })
                .await?;
            self.store(&record).await?;
            if record.usage_outbox.has_unsent() {
                self.schedule_index(INDEX_DELAY).await;
            }
        } else {
            self.schedule_index(INDEX_RETRY).await;
        }
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

    async fn schedule_index(&self, delay: Duration) {
        if self.alarm_set.replace(true) {
            return;
        }
        if let Err(error) = self.state.storage().set_alarm(delay).await {
            self.alarm_set.set(false);
            log::warn("usage_index_alarm_failed", &error.to_string());
        }
    }
}
