//! The stored responses a user created, and their output items: only that user may continue
//! them (`previous_response_id`) or name them as input items.

use serde::{Deserialize, Serialize};

use crate::budget::quota::DAY_MS;

/// OpenAI keeps a stored response for 30 days (its "Conversation state" guide: "Response
/// objects are saved for 30 days by default"); after that it cannot be continued anyway.
pub const RESPONSE_RETENTION_MS: i64 = 30 * DAY_MS;
/// The most ids (responses and their items alike) kept per user; the oldest go first. The
/// record is one JSON value rewritten on every change: at most about 150 KB with the longest
/// ids. A response's own id and its items' share it: continuing recent work matters most.
pub const MAX_OWNED_RESPONSES: usize = 1000;
/// The most output item ids kept of one response (a response rarely has more than a few: its
/// reasoning, tool calls and message); one answer cannot push out many older responses.
pub const MAX_CREATED_ITEMS: usize = 64;
/// The longest response id kept or checked (OpenAI's are about 55 bytes).
pub const MAX_RESPONSE_ID_BYTES: usize = 128;

/// A stored response an answer created, with the ids of its output items (at most
/// `MAX_CREATED_ITEMS`): all ids this user may name later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub response: String,
    pub items: Vec<String>,
}

impl Created {
    /// What an answer with this `id` and these output `items` created, if its response is kept
    /// for its user (`recorded`: the request's `records_response`).
    pub fn kept(recorded: bool, id: Option<String>, items: Vec<String>) -> Option<Self> {
        id.filter(|_| recorded).map(|response| Self { response, items })
    }
}

/// Response and item ids with the time (ms) they were created, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnedResponses(Vec<(String, i64)>);

impl OwnedResponses {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the user created `id` and it has not expired at `now_ms`.
    pub fn owns(&self, id: &str, now_ms: i64) -> bool {
        self.0
            .iter()
            .any(|(owned, created_ms)| owned == id && now_ms < created_ms.saturating_add(RESPONSE_RETENTION_MS))
    }

    /// Keeps the ids of a created response and of its first `MAX_CREATED_ITEMS` items.
    pub fn record_created(&mut self, response: &str, items: &[String], now_ms: i64) {
        self.record(response, now_ms);
        for item in items.iter().take(MAX_CREATED_ITEMS) {
            self.record(item, now_ms);
        }
    }

    /// Keeps `id`, dropping expired ids and, past the cap, the oldest. An id too long to be
    /// OpenAI's is not kept (so it can never be continued through the proxy).
    pub fn record(&mut self, id: &str, now_ms: i64) {
        self.0
            .retain(|(owned, created_ms)| owned != id && now_ms < created_ms.saturating_add(RESPONSE_RETENTION_MS));
        if id.is_empty() || id.len() > MAX_RESPONSE_ID_BYTES {
            return;
        }
        self.0.push((id.to_owned(), now_ms));
        let excess = self.0.len().saturating_sub(MAX_OWNED_RESPONSES);
        self.0.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn past_the_cap_the_oldest_responses_are_forgotten_and_the_record_stays_small() {
        let mut responses = OwnedResponses::default();
        let id = |n: usize| format!("resp_{n:0>123}");
        for n in 0..=MAX_OWNED_RESPONSES {
            responses.record(&id(n), NOW + n as i64);
        }
        assert_eq!(responses.0.len(), MAX_OWNED_RESPONSES);
        assert!(!responses.owns(&id(0), NOW + 2_000), "the oldest went first");
        assert!(responses.owns(&id(1), NOW + 2_000));
        assert!(responses.owns(&id(MAX_OWNED_RESPONSES), NOW + 2_000));
        let bytes = serde_json::to_string(&responses).unwrap().len();
        assert!(bytes < 160_000, "{bytes} bytes");
        responses.record(&"r".repeat(MAX_RESPONSE_ID_BYTES + 1), NOW);
        assert_eq!(responses.0.len(), MAX_OWNED_RESPONSES, "an over-long id is not kept");
    }

    #[test]
    fn a_created_response_s_item_ids_are_owned_too_at_most_64_of_them_and_none_over_long() {
        let mut responses = OwnedResponses::default();
        let mut items: Vec<String> = (0..MAX_CREATED_ITEMS + 10).map(|n| format!("msg_{n}")).collect();
        items.insert(0, "m".repeat(MAX_RESPONSE_ID_BYTES + 1));
        responses.record_created("resp_1", &items, NOW);
        assert!(responses.owns("resp_1", NOW));
        assert!(responses.owns("msg_0", NOW));
        assert!(responses.owns(&format!("msg_{}", MAX_CREATED_ITEMS - 2), NOW));
        assert!(
            !responses.owns(&format!("msg_{}", MAX_CREATED_ITEMS - 1), NOW),
            "past the 64th item"
        );
        assert_eq!(
            responses.len(),
            MAX_CREATED_ITEMS,
            "the response and 63 items: the over-long one was counted and dropped"
        );
        let expiry = NOW + RESPONSE_RETENTION_MS;
        assert!(!responses.owns("msg_0", expiry), "items expire with their response");
    }
}
