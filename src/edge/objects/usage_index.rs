//! The per-day usage index (one object per UTC day, binding `USAGE_INDEX`): what each user
//! spent that day, for `GET /admin/usage`. Requests add to it in batches per isolate, at most
//! one per `SEND_INTERVAL`, after their response, so the index costs the request path nothing
//! and under load next to no calls.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures_util::future::join_all;
use worker::{durable_object, js_sys, Context, Delay, DurableObject, Env, Request, Response, State};

use crate::budget::prices::usd;
use crate::budget::quota::Spend;
use crate::edge::{log, Result};
use crate::objects::usage_index::{usage_index_name, IndexCommand, UsageBatch};

const BINDING: &str = "USAGE_INDEX";

/// One storage key per user, the `sub` exactly, so the stored value never grows with users
/// and no `sub` can be mistaken for another. Its value is the JSON text of a `Spend` (a bare
/// number of tokens in days recorded before dollar budgets).
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
        match super::command(&mut req).await? {
            IndexCommand::Record { spent, spent_nano_usd } => {
                for (sub, tokens) in spent {
                    let stored: Option<serde_json::Value> = storage.get(&sub).await?;
                    let total = stored.map(stored_spend).unwrap_or_default();
                    let nano_usd = spent_nano_usd.get(&sub).copied().unwrap_or(0);
                    let total = Spend {
                        tokens: total.tokens.saturating_add(tokens),
                        nano_usd: total.nano_usd.saturating_add(nano_usd),
                    };
                    storage.put(&sub, serde_json::json!(total).to_string()).await?;
                }
                Response::from_json(&serde_json::json!({}))
            }
            IndexCommand::List => {
                let mut users = Vec::new();
                for entry in storage.list().await?.entries() {
                    let pair = js_sys::Array::from(&entry?);
                    let sub = pair.get(0).as_string().unwrap_or_default();
                    let value = pair.get(1);
                    let total = stored_spend(match value.as_string() {
                        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
                        None => serde_json::json!(value.as_f64().unwrap_or(0.0)),
                    });
                    users.push(serde_json::json!({
                        "sub": sub,
                        "total_tokens": total.tokens,
                        "total_usd": usd(total.nano_usd),
                    }));
                }
                Response::from_json(&users)
            }
        }
    }
}

/// A stored total: the JSON of a `Spend`, as text, or a bare number of tokens (older days).
fn stored_spend(value: serde_json::Value) -> Spend {
    match value {
        serde_json::Value::String(text) => serde_json::from_str(&text).unwrap_or_default(),
        serde_json::Value::Object(_) => serde_json::from_value(value).unwrap_or_default(),
        number @ serde_json::Value::Null
        | number @ serde_json::Value::Bool(_)
        | number @ serde_json::Value::Number(_)
        | number @ serde_json::Value::Array(_) => Spend {
            tokens: number.as_f64().map_or(0, |tokens| tokens as u64),
            nano_usd: 0,
        },
    }
}

/// Every user's total tokens and dollars of `day` (`YYYY-MM-DD`).
pub async fn list(env: &Env, day: &str) -> Result<serde_json::Value> {
    super::call(env, BINDING, &usage_index_name(day), &IndexCommand::List).await
}

/// The longest usage waits in the isolate before it goes to the day's index: an isolate sends
/// at most one batch per this interval, however many requests end meanwhile.
const SEND_INTERVAL: Duration = Duration::from_secs(1);
/// How long an operator's listing waits for this isolate's sends under way, and how often it
/// looks whether they ended.
const LISTING_WAIT: Duration = Duration::from_secs(2);
const LISTING_POLL: Duration = Duration::from_millis(10);

thread_local! {
    static PENDING_USAGE: RefCell<UsageBatch> = RefCell::default();
    static SEND_SCHEDULED: Cell<bool> = const { Cell::new(false) };
    static SENDS_UNDER_WAY: Cell<u32> = const { Cell::new(0) };
}

/// Adds what a user spent to `day`'s index, batched with the isolate's other requests and sent
/// `SEND_INTERVAL` after the first of them (in `wait_until`).
pub fn record(env: &Env, ctx: &Context, day: String, sub: String, spent: Spend) {
    PENDING_USAGE.with_borrow_mut(|batch| batch.add(day, sub, spent));
    if SEND_SCHEDULED.replace(true) {
        return;
    }
    let env = env.clone();
    ctx.wait_until(async move {
        // Cleared however the wait ends (also if its task is dropped), so sending never stops.
        let scheduled = OnDrop(|| SEND_SCHEDULED.set(false));
        Delay::from(SEND_INTERVAL).await;
        drop(scheduled);
        send_pending(&env).await;
    });
}

/// Sends what this isolate holds now and waits (at most `LISTING_WAIT`) for its sends under
/// way, so that an operator's listing right after a request in this isolate includes it.
pub async fn flush(env: &Env) {
    send_pending(env).await;
    let mut waited = Duration::ZERO;
    while SENDS_UNDER_WAY.get() > 0 && waited < LISTING_WAIT {
        Delay::from(LISTING_POLL).await;
        waited += LISTING_POLL;
    }
}

/// Users whose usage is pending in this isolate, for the bench counters.
pub fn pending_count() -> usize {
    PENDING_USAGE.with_borrow(UsageBatch::users)
}

/// Sends the isolate's pending usage, one call per day, all at once.
async fn send_pending(env: &Env) {
    let batch = PENDING_USAGE.with_borrow_mut(UsageBatch::take);
    if batch.is_empty() {
        return;
    }
    SENDS_UNDER_WAY.set(SENDS_UNDER_WAY.get() + 1);
    let _under_way = OnDrop(|| SENDS_UNDER_WAY.set(SENDS_UNDER_WAY.get() - 1));
    join_all(batch.iter().map(|(day, record)| async move {
        let sent: Result<serde_json::Value> = super::call(env, BINDING, &usage_index_name(day), record).await;
        if let Err(error) = sent {
            log::warn("usage_index_failed", &error.to_string());
        }
    }))
    .await;
}

/// Runs its closure when dropped: state a task sets must be reset however the task ends.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
