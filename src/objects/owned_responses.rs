//! The stored responses a user created, which only that user may continue.

use serde::{Deserialize, Serialize};

use crate::budget::quota::DAY_MS;

/// OpenAI keeps a stored response for 30 days (its "Conversation state" guide: "Response
/// objects are saved for 30 days by default"); after that it cannot be continued anyway.
pub const RESPONSE_RETENTION_MS: i64 = 30 * DAY_MS;
/// The most response ids kept per user; the oldest go first. The record is one JSON value
/// rewritten on every change: at most about 150 KB with the longest ids.
pub const MAX_OWNED_RESPONSES: usize = 1000;
/// The longest response id kept or checked (OpenAI's are about 55 bytes).
pub const MAX_RESPONSE_ID_BYTES: usize = 128;

/// Response ids with the time (ms) they were created, oldest first.
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
}
