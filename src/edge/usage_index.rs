//! The per-day usage index (one object per UTC day, binding `USAGE_INDEX`): what each user
//! spent that day, for `GET /admin/usage`. Requests add to it in batches per isolate, after
//! their response, so the index costs the request path nothing.

use std::cell::{Cell, RefCell};

use worker::{durable_object, js_sys, DurableObject, Env, Request, Response, State};

use super::{durable, log, Result};
use crate::user_state::{usage_index_name, IndexCommand, UsageBatch};

const BINDING: &str = "USAGE_INDEX";

/// One storage key per user, the `sub` exactly, so the stored value never grows with users
/// and no `sub` can be mistaken for another.
#[durable_object]
pub struct UsageIndex {
    state: State,
}

impl DurableObject for UsageIndex {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let storage = self.state.storage();
        match req.json().await? {
            IndexCommand::Record { spent } => {
                for (sub, tokens) in spent {
                    let total: u64 = storage.get(&sub).await?.unwrap_or(0);
                    storage.put(&sub, total.saturating_add(tokens)).await?;
                }
                Response::from_json(&serde_json::json!({}))
            }
            IndexCommand::List => {
                let mut users = Vec::new();
                for entry in storage.list().await?.entries() {
                    let pair = js_sys::Array::from(&entry?);
                    let sub = pair.get(0).as_string().unwrap_or_default();
                    let tokens = pair.get(1).as_f64().unwrap_or(0.0) as u64;
                    users.push(serde_json::json!({ "sub": sub, "total_tokens": tokens }));
                }
                Response::from_json(&users)
            }
        }
    }
}

/// Every user's total tokens of `day` (`YYYY-MM-DD`).
pub async fn list(env: &Env, day: &str) -> Result<serde_json::Value> {
    durable::call(env, BINDING, &usage_index_name(day), &IndexCommand::List).await
}

thread_local! {
    static PENDING_USAGE: RefCell<UsageBatch> = RefCell::default();
    static SENDING_USAGE: Cell<bool> = const { Cell::new(false) };
}

/// Adds a user's tokens to `day`'s index, batched with the isolate's other requests.
pub async fn record(env: &Env, day: String, sub: String, tokens: u64) {
    PENDING_USAGE.with_borrow_mut(|batch| batch.add(day, sub, tokens));
    send_pending(env).await;
}

/// Sends the isolate's pending usage, unless a send is already under way: that one loops
/// until nothing is pending, so it carries this request's usage too.
async fn send_pending(env: &Env) {
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
            let sent: Result<serde_json::Value> = durable::call(env, BINDING, &usage_index_name(&day), &record).await;
            if let Err(error) = sent {
                log::warn("usage_index_failed", &error.to_string());
            }
        }
    }
}
