//! The per-day usage index (`USAGE_INDEX_SHARDS` objects per UTC day, a `sub` always in the
//! same one; binding `USAGE_INDEX`): what each user spent that day, for `GET /admin/usage`,
//! which reads the shards together. Users' objects send it their charges from their alarms
//! (see `user/state.rs`), so the index costs the request path nothing, and each shard gets at
//! most one call per `INDEX_DELAY` from each of its users' objects.

use futures_util::future::join_all;
use worker::{durable_object, js_sys, DurableObject, Env, ListOptions, Request, Response, State, Storage};

use crate::budget::usage_report::{DaySummary, PageAsk, UserSpend};
use crate::edge::{log, Result};
use crate::objects::usage_index::{
    merge_pages, usage_index_name, usage_index_shards, IndexCommand, IndexEntry, OutboxBatch,
};

const BINDING: &str = "USAGE_INDEX";
/// The day's `DaySummary`. No `sub` is empty (tokens without one are refused), and every
/// page starts after this key.
const SUMMARY_KEY: &str = "";
/// The smallest key after `SUMMARY_KEY`, where the first page starts.
const FIRST_SUB: &str = "\0";

/// One storage key per user, the `sub` exactly, so the stored value never grows with users
/// and no `sub` can be mistaken for another. Its value is the JSON text of an `IndexEntry` (a
/// bare number of tokens in days recorded before dollar budgets); the day's summary sits
/// beside them.
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
            IndexCommand::Charge { sub, seq, spent } => {
                let entry = super::stored(&storage, &sub)
                    .await?
                    .map(|value| stored_entry(super::json_of(&value)));
                let mut summary = summary(&storage).await?;
                if let Some(entry) = IndexEntry::charge(entry, &sub, seq, spent, &mut summary) {
                    // Two puts with no other I/O between them are written together.
                    storage.put_raw(&sub, serde_json::json!(entry).to_string()).await?;
                    storage
                        .put_raw(SUMMARY_KEY, serde_json::json!(summary).to_string())
                        .await?;
                }
                Response::from_json(&serde_json::json!({}))
            }
            IndexCommand::Summary => Response::from_json(&summary(&storage).await?),
            IndexCommand::Page { after, limit } => {
                // The smallest key after the cursor: every sub after it, none at it.
                let start = after.map_or_else(|| FIRST_SUB.to_owned(), |sub| format!("{sub}\0"));
                let options = ListOptions::new().start(&start).limit(limit as usize);
                Response::from_json(&entries(storage.list_with_options(options).await?)?)
            }
        }
    }
}

/// The stored summary; a day recorded before summaries is summed once from its users.
async fn summary(storage: &Storage) -> worker::Result<DaySummary> {
    if let Some(text) = super::stored(storage, SUMMARY_KEY)
        .await?
        .and_then(|value| value.as_string())
    {
        return Ok(serde_json::from_str(&text).unwrap_or_default());
    }
    let mut summary = DaySummary::default();
    let users = entries(storage.list_with_options(ListOptions::new().start(FIRST_SUB)).await?)?;
    for user in &users {
        summary.add(&user.sub, true, user.spent, user.spent);
    }
    if !users.is_empty() {
        storage
            .put_raw(SUMMARY_KEY, serde_json::json!(summary).to_string())
            .await?;
    }
    Ok(summary)
}

/// A listing's users, in `sub` order.
fn entries(listed: js_sys::Map) -> worker::Result<Vec<UserSpend>> {
    let mut users = Vec::new();
    for entry in listed.entries() {
        let pair = js_sys::Array::from(&entry?);
        let sub = pair.get(0).as_string().unwrap_or_default();
        users.push(stored_entry(super::json_of(&pair.get(1))).listed(&sub));
    }
    Ok(users)
}

/// A stored entry: the JSON of an `IndexEntry` (or, before batches, of a `Spend`), as text, or
/// a bare number of tokens (older days).
fn stored_entry(value: serde_json::Value) -> IndexEntry {
    match value {
        serde_json::Value::String(text) => serde_json::from_str(&text).unwrap_or_default(),
        // Through its text, not `from_value`: one decoder of `IndexEntry` in the wasm, not two.
        serde_json::Value::Object(_) => serde_json::from_str(&value.to_string()).unwrap_or_default(),
        number @ serde_json::Value::Null
        | number @ serde_json::Value::Bool(_)
        | number @ serde_json::Value::Number(_)
        | number @ serde_json::Value::Array(_) => IndexEntry {
            tokens: number.as_f64().map_or(0, |tokens| tokens as u64),
            ..IndexEntry::default()
        },
    }
}

/// `day`'s totals and top spenders, from each of its `shards`.
pub async fn summary_of(env: &Env, day: &str, shards: u32) -> Result<DaySummary> {
    let names = usage_index_shards(day, shards);
    let summaries = join_all(
        names
            .iter()
            .map(|name| super::call::<_, DaySummary>(env, BINDING, name, &IndexCommand::Summary)),
    )
    .await;
    let mut merged = DaySummary::default();
    for summary in summaries {
        merged.merge(&summary?);
    }
    Ok(merged)
}

/// One page of `day`'s users: the page of each shard, merged.
pub async fn page_of(env: &Env, day: &str, page: &PageAsk, shards: u32) -> Result<Vec<UserSpend>> {
    let command = IndexCommand::Page {
        after: page.after.clone(),
        limit: page.limit,
    };
    let names = usage_index_shards(day, shards);
    let pages = join_all(names.iter().map(|name| super::call(env, BINDING, name, &command))).await;
    Ok(merge_pages(pages.into_iter().collect::<Result<_>>()?, page.limit))
}

/// Sends a user's batch to each of its days' indexes (the `sub`'s shard of each), all at once;
/// says whether every one acknowledged it.
pub async fn charge(env: &Env, sub: &str, batch: &OutboxBatch, shards: u32) -> bool {
    let sent = join_all(batch.by_day.iter().map(|(day, spent)| async move {
        let command = IndexCommand::Charge {
            sub: sub.to_owned(),
            seq: batch.seq,
            spent: *spent,
        };
        let name = usage_index_name(day, sub, shards);
        let sent: Result<serde_json::Value> = super::call(env, BINDING, &name, &command).await;
        sent.map_err(|error| log::warn("usage_index_failed", &error.to_string()))
            .is_ok()
    }))
    .await;
    sent.into_iter().all(|acknowledged| acknowledged)
}
