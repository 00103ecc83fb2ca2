//! The protocol of a day's usage index object (`usage:{day}`), which lists what each user spent
//! that UTC day for operators, and the outbox in which a user's object keeps what it charged
//! until the index has it.
//!
//! The user's object reports its own charges (settled, cancelled to nothing, or expired and
//! charged in full): the index adds up to what the objects charged, however the charge came
//! about, and nothing of it waits in an isolate that may be evicted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::budget::quota::Spend;
use crate::budget::usage_report::{DaySummary, UserSpend};

/// The object that lists what `sub` spent on a UTC day, for operators: one of the day's
/// `shards`, by a hash of the `sub`. Shard 0 keeps the name of the days before shards.
pub fn usage_index_name(day: &str, sub: &str, shards: u32) -> String {
    shard_name(day, shard_of(sub, shards))
}

/// Every shard of a day's index, to read them all.
pub fn usage_index_shards(day: &str, shards: u32) -> Vec<String> {
    (0..shards.max(1)).map(|shard| shard_name(day, shard)).collect()
}

fn shard_name(day: &str, shard: u32) -> String {
    if shard == 0 {
        format!("usage:{day}")
    } else {
        format!("usage:{day}#{shard}")
    }
}

/// FNV-1a: stable across isolates and releases (a `sub` must find its shard again), and
/// spread well enough for ids an identity provider issues.
fn shard_of(sub: &str, shards: u32) -> u32 {
    let hash = sub.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(shards.max(1))) as u32
}

/// One page of a day from its shards' pages (each the first `limit` of its users after the
/// cursor, in `sub` order): the first `limit` of them all. A `sub` listed by two shards (the
/// shard count changed that day) is one user.
pub fn merge_pages(pages: Vec<Vec<UserSpend>>, limit: u32) -> Vec<UserSpend> {
    let mut by_sub = BTreeMap::<String, Spend>::new();
    for user in pages.into_iter().flatten() {
        let total = by_sub.entry(user.sub).or_default();
        total.tokens = total.tokens.saturating_add(user.spent.tokens);
        total.nano_usd = total.nano_usd.saturating_add(user.spent.nano_usd);
    }
    by_sub
        .into_iter()
        .take(limit as usize)
        .map(|(sub, spent)| UserSpend { sub, spent })
        .collect()
}

/// A message to a day's usage index object. Externally tagged (`{"charge":{..}}`, `"summary"`),
/// like the user objects' protocol (version 3): an index of the earlier `op`-tagged form refuses
/// it, and the outbox keeps the batch until an index reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexCommand {
    /// `sub`'s object charged `spent` more that day, in its batch `seq`. Batches of one object
    /// are numbered upwards: the index applies each once, so a batch sent again after a lost
    /// reply is not counted twice.
    Charge { sub: String, seq: u64, spent: Spend },
    /// The day's summary (`DaySummary`).
    Summary,
    /// At most `limit` users (`UserSpend`s) in `sub` order, after `after`.
    Page { after: Option<String>, limit: u32 },
}

/// What the index stores for one `sub`: its day's total and the last batch applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub tokens: u64,
    #[serde(default)]
    pub nano_usd: u64,
    #[serde(default)]
    pub seq: u64,
}

impl IndexEntry {
    pub fn spent(&self) -> Spend {
        Spend {
            tokens: self.tokens,
            nano_usd: self.nano_usd,
        }
    }

    /// Applies batch `seq` of `spent` to `sub`'s entry (`None`: none yet) and the day's summary;
    /// a batch already applied changes nothing (`None`).
    pub fn charge(entry: Option<Self>, sub: &str, seq: u64, spent: Spend, summary: &mut DaySummary) -> Option<Self> {
        let before = entry.unwrap_or_default();
        if seq <= before.seq {
            return None;
        }
        let after = IndexEntry {
            tokens: before.tokens.saturating_add(spent.tokens),
            nano_usd: before.nano_usd.saturating_add(spent.nano_usd),
            seq,
        };
        summary.add(sub, entry.is_none(), spent, after.spent());
        Some(after)
    }

    pub fn listed(&self, sub: &str) -> UserSpend {
        UserSpend {
            sub: sub.to_owned(),
            spent: self.spent(),
        }
    }
}

/// A user's charges not yet in the day indexes, kept in the user's record (so in the same
/// storage write as the charges themselves) until an index acknowledges them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageOutbox {
    /// The `sub` the charges are listed under, learnt from the user's admissions; shared objects
    /// (a guest's client, the guests', the global budget) have none and report nothing.
    #[serde(default)]
    pub sub: Option<String>,
    /// Charges by UTC day, not yet in a batch.
    #[serde(default)]
    pub pending: BTreeMap<String, Spend>,
    /// The batch under way, sent again (same `seq`) until acknowledged.
    #[serde(default)]
    pub sending: Option<OutboxBatch>,
    #[serde(default)]
    pub last_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxBatch {
    pub seq: u64,
    pub by_day: BTreeMap<String, Spend>,
}

impl UsageOutbox {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Keeps a charge for `day`'s index, if this object reports its charges.
    pub fn add(&mut self, day: String, spent: Spend) {
        if self.sub.is_none() || spent == Spend::default() {
            return;
        }
        let total = self.pending.entry(day).or_default();
        total.tokens = total.tokens.saturating_add(spent.tokens);
        total.nano_usd = total.nano_usd.saturating_add(spent.nano_usd);
    }

    /// Whether some charges are not yet acknowledged.
    pub fn has_unsent(&self) -> bool {
        !self.pending.is_empty() || self.sending.is_some()
    }

    /// The batch to send and under which `sub`: the one under way again, else the pending
    /// charges as a new one. Store the outbox before sending it: a batch's number must never
    /// be given to other charges.
    pub fn batch(&mut self) -> Option<(String, OutboxBatch)> {
        let sub = self.sub.clone()?;
        if self.sending.is_none() && !self.pending.is_empty() {
            self.last_seq = self.last_seq.saturating_add(1);
            self.sending = Some(OutboxBatch {
                seq: self.last_seq,
                by_day: std::mem::take(&mut self.pending),
            });
        }
        self.sending.clone().map(|batch| (sub, batch))
    }

    /// Every day's index has batch `seq`.
    pub fn acknowledged(&mut self, seq: u64) {
        if self.sending.as_ref().is_some_and(|batch| batch.seq == seq) {
            self.sending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(tokens: u64) -> Spend {
        Spend {
            tokens,
            nano_usd: tokens * 100,
        }
    }

    #[test]
    fn an_index_applies_each_batch_once_and_counts_a_user_once() {
        let mut summary = DaySummary::default();
        let first = IndexEntry::charge(None, "alice", 1, spend(5), &mut summary).unwrap();
        assert_eq!(
            IndexEntry::charge(Some(first), "alice", 1, spend(5), &mut summary),
            None,
            "sent again"
        );
        let second = IndexEntry::charge(Some(first), "alice", 2, spend(7), &mut summary).unwrap();
        assert_eq!((second.spent(), second.seq), (spend(12), 2));
        assert_eq!((summary.spent, summary.users), (spend(12), 1));
        // A day recorded before batches were numbered: its entries have no `seq`.
        let old: IndexEntry = serde_json::from_str(r#"{"tokens":3,"nano_usd":300}"#).unwrap();
        let after = IndexEntry::charge(Some(old), "bob", 1, spend(1), &mut summary).unwrap();
        assert_eq!(after.spent(), spend(4));
    }

    #[test]
    fn an_outbox_resends_its_batch_until_acknowledged_and_numbers_the_next_one_anew() {
        let mut outbox = UsageOutbox::default();
        outbox.add("2026-11-24".into(), spend(5));
        assert!(outbox.is_empty(), "no sub: a shared object reports nothing");
        outbox.sub = Some("alice".into());
        outbox.add("2026-11-24".into(), spend(5));
        outbox.add("2026-11-24".into(), spend(2));
        outbox.add("2026-11-25".into(), Spend::default());
        let (sub, first) = outbox.batch().unwrap();
        assert_eq!((sub.as_str(), first.seq), ("alice", 1));
        assert_eq!(first.by_day, BTreeMap::from([("2026-11-24".to_string(), spend(7))]));
        outbox.add("2026-11-24".into(), spend(1));
        assert_eq!(outbox.batch().unwrap().1, first, "the same batch until acknowledged");
        outbox.acknowledged(1);
        let (_, second) = outbox.batch().unwrap();
        assert_eq!((second.seq, second.by_day["2026-11-24"]), (2, spend(1)));
        outbox.acknowledged(2);
        assert!(!outbox.has_unsent());
        assert_eq!(outbox.batch(), None);
    }

    #[test]
    fn charges_reported_through_an_outbox_add_up_once_in_the_index_whatever_is_resent() {
        let mut outbox = UsageOutbox {
            sub: Some("alice".into()),
            ..UsageOutbox::default()
        };
        let mut summary = DaySummary::default();
        let mut entry = None;
        for (round, tokens) in [3u64, 4, 5, 6].into_iter().enumerate() {
            outbox.add("2026-11-24".into(), spend(tokens));
            let (sub, batch) = outbox.batch().unwrap();
            // Every batch lands twice; every other acknowledgement is lost.
            for _ in 0..2 {
                if let Some(applied) =
                    IndexEntry::charge(entry, &sub, batch.seq, batch.by_day["2026-11-24"], &mut summary)
                {
                    entry = Some(applied);
                }
            }
            if round % 2 == 1 {
                outbox.acknowledged(batch.seq);
            }
        }
        let (sub, batch) = outbox.batch().unwrap();
        entry = IndexEntry::charge(entry, &sub, batch.seq, batch.by_day["2026-11-24"], &mut summary).or(entry);
        outbox.acknowledged(batch.seq);
        assert_eq!(entry.map(|e| e.spent()), Some(spend(18)));
        assert_eq!(summary.spent, spend(18));
    }

    #[test]
    fn a_sub_always_finds_its_shard_and_one_shard_keeps_the_name_of_the_days_before_shards() {
        assert_eq!(usage_index_name("2026-11-24", "alice", 1), "usage:2026-11-24");
        assert_eq!(usage_index_shards("2026-11-24", 1), ["usage:2026-11-24"]);
        let names = usage_index_shards("2026-11-24", 8);
        assert_eq!(
            (names.len(), names[0].as_str(), names[7].as_str()),
            (8, "usage:2026-11-24", "usage:2026-11-24#7")
        );
        let mut used = BTreeMap::<String, u32>::new();
        for user in 0..800 {
            let name = usage_index_name("2026-11-24", &format!("user-{user}"), 8);
            assert_eq!(name, usage_index_name("2026-11-24", &format!("user-{user}"), 8));
            assert!(names.contains(&name));
            *used.entry(name).or_default() += 1;
        }
        assert!(
            used.values().all(|&users| (50..=150).contains(&users)),
            "spread: {used:?}"
        );
    }

    /// The users of a day, spread over shards by `sub`, paged through `limit` at a time.
    fn paged(users: &[(String, u64)], shards: u32, limit: u32) -> Vec<UserSpend> {
        let mut by_shard = BTreeMap::<String, Vec<UserSpend>>::new();
        for (sub, tokens) in users {
            let listed = UserSpend {
                sub: sub.clone(),
                spent: spend(*tokens),
            };
            by_shard
                .entry(usage_index_name("d", sub, shards))
                .or_default()
                .push(listed);
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            // What each shard's `Page` answers: its first `limit` users after the cursor.
            let pages = by_shard
                .values()
                .map(|users| {
                    let mut page: Vec<UserSpend> = users
                        .iter()
                        .filter(|user| after.as_ref().is_none_or(|after| user.sub > *after))
                        .cloned()
                        .collect();
                    page.sort_by(|a, b| a.sub.cmp(&b.sub));
                    page.truncate(limit as usize);
                    page
                })
                .collect();
            let page = merge_pages(pages, limit);
            let full = page.len() == limit as usize;
            after = page.last().map(|user| user.sub.clone());
            all.extend(page);
            if !full {
                return all;
            }
        }
    }

    proptest::proptest! {
        /// Paging through a sharded day lists every user once, in `sub` order, whatever the
        /// shards and the page size, and the shards' summaries add up to the day's.
        #[test]
        fn a_sharded_day_reads_back_as_one(
            users in proptest::collection::btree_map("[a-z]{1,6}", 1..1000u64, 0..60),
            shards in 1..9u32,
            limit in 1..20u32,
        ) {
            let users: Vec<(String, u64)> = users.into_iter().collect();
            let listed = paged(&users, shards, limit);
            let expected: Vec<(String, u64)> = users.clone();
            let got: Vec<(String, u64)> = listed.iter().map(|user| (user.sub.clone(), user.spent.tokens)).collect();
            proptest::prop_assert_eq!(got, expected);
            let mut whole = DaySummary::default();
            let mut by_shard = BTreeMap::<String, DaySummary>::new();
            for (sub, tokens) in &users {
                whole.add(sub, true, spend(*tokens), spend(*tokens));
                by_shard.entry(usage_index_name("d", sub, shards)).or_default().add(sub, true, spend(*tokens), spend(*tokens));
            }
            let mut merged = DaySummary::default();
            for shard in by_shard.values() {
                merged.merge(shard);
            }
            proptest::prop_assert_eq!(merged, whole);
        }
    }
}
