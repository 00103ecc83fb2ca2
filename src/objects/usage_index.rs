//! The protocol of a day's usage index object, which lists what each user spent that UTC day
//! for operators, and the batch an isolate sends it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::budget::quota::Spend;

/// The object that lists what each user spent on a UTC day, for operators.
pub fn usage_index_name(day: &str) -> String {
    format!("usage:{day}")
}

/// A message to a day's usage index object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IndexCommand {
    /// Each `sub` spent this many tokens (`spent`) and nano-USD (`spent_nano_usd`) more
    /// that day.
    Record {
        spent: BTreeMap<String, u64>,
        #[serde(default)]
        spent_nano_usd: BTreeMap<String, u64>,
    },
    /// Every user's total for the day.
    List,
}

/// Usage not yet sent to the day indexes: an isolate sends what its requests spent in one
/// batch per interval, so under load it makes a few index calls, not one per request.
#[derive(Debug, Default)]
pub struct UsageBatch {
    by_day: BTreeMap<String, BTreeMap<String, Spend>>,
}

impl UsageBatch {
    pub fn add(&mut self, day: String, sub: String, spent: Spend) {
        let total = self.by_day.entry(day).or_default().entry(sub).or_default();
        total.tokens = total.tokens.saturating_add(spent.tokens);
        total.nano_usd = total.nano_usd.saturating_add(spent.nano_usd);
    }

    /// How many users' usage is pending, all days together.
    pub fn users(&self) -> usize {
        self.by_day.values().map(BTreeMap::len).sum()
    }

    /// Everything pending, one `Record` per day, leaving the batch empty.
    pub fn take(&mut self) -> Vec<(String, IndexCommand)> {
        std::mem::take(&mut self.by_day)
            .into_iter()
            .map(|(day, by_sub)| {
                let spent = by_sub.iter().map(|(sub, spent)| (sub.clone(), spent.tokens)).collect();
                let spent_nano_usd = by_sub.into_iter().map(|(sub, spent)| (sub, spent.nano_usd)).collect();
                (day, IndexCommand::Record { spent, spent_nano_usd })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_batch_sums_per_user_and_day_and_empties_when_taken() {
        let mut batch = UsageBatch::default();
        let add = |batch: &mut UsageBatch, day: &str, sub: &str, tokens: u64| {
            let spent = Spend {
                tokens,
                nano_usd: tokens * 100,
            };
            batch.add(day.into(), sub.into(), spent);
        };
        add(&mut batch, "2026-11-23", "alice", 10);
        add(&mut batch, "2026-11-23", "bob", 5);
        add(&mut batch, "2026-11-23", "alice", 7);
        add(&mut batch, "2026-11-24", "alice", 1);
        let sent = batch.take();
        let spent = |pairs: &[(&str, u64)]| IndexCommand::Record {
            spent: pairs.iter().map(|(sub, n)| (sub.to_string(), *n)).collect(),
            spent_nano_usd: pairs.iter().map(|(sub, n)| (sub.to_string(), n * 100)).collect(),
        };
        assert_eq!(
            sent,
            vec![
                ("2026-11-23".to_string(), spent(&[("alice", 17), ("bob", 5)])),
                ("2026-11-24".to_string(), spent(&[("alice", 1)]))
            ]
        );
        assert!(batch.take().is_empty());
    }
}
