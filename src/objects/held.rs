//! Settlements an isolate holds back. A request's settlement waits in its isolate and rides on
//! the next call the isolate makes to the same object (an admission, a status read, any
//! command), or goes in one call of its own once it was held `SETTLEMENT_HOLD`.
//!
//! Holding cannot let a budget be overrun: until its settlement lands, a request's reservation
//! (its worst case, which it never exceeds) counts in full at its object, so the object is only
//! more careful for a moment. If the isolate is evicted, what it holds is lost; each of those
//! reservations then expires after `RESERVATION_TIMEOUT_MS` charged in full, as for a Worker
//! that died mid-request, and a settlement arriving after that changes nothing (see
//! `QuotaState::finish`).
//!
//! A settlement is done only when its object acknowledges it (`Answer::settled`): a failed
//! call, or an object of an older version that ignored it (serde skips fields it does not
//! know), leaves it held, and the next call delivers it again.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::budget::quota::{RESERVATION_TIMEOUT_MS, STREAM_SLOT_RETRY_SECONDS};
use crate::objects::user::Finished;

/// The longest a settlement waits for a call to ride on before it is sent alone: a stream's
/// slot, seen from another isolate, frees within about this long after the stream ends. Under
/// `STREAM_SLOT_RETRY_SECONDS`, so a client refused a slot finds it free when it retries.
pub const SETTLEMENT_HOLD: Duration = Duration::from_millis(800);
const _: () = assert!(SETTLEMENT_HOLD.as_millis() < STREAM_SLOT_RETRY_SECONDS as u128 * 1000);

/// A call under way this long was abandoned (its request cancelled mid-call never reports its
/// end): what it carried goes with the next call. Settling twice changes nothing.
pub const ABANDONED_AFTER_MS: i64 = 10_000;

/// The settlements an isolate holds, per object name.
#[derive(Debug, Default)]
pub struct HeldSettlements {
    by_object: BTreeMap<String, Vec<Held>>,
    next_call: u64,
}

#[derive(Debug)]
struct Held {
    finished: Finished,
    /// The call under way that carries it, and when it started: the next call to the object
    /// leaves it to that one unless it was abandoned.
    carried_by: Option<(u64, i64)>,
}

/// Settlements on their way to an object in one call.
#[derive(Debug, PartialEq, Eq)]
pub struct Carried {
    pub call: u64,
    pub settle: Vec<Finished>,
}

impl HeldSettlements {
    pub fn hold(&mut self, object: &str, finished: Finished) {
        self.forget_stale(finished.now_ms);
        let held = Held {
            finished,
            carried_by: None,
        };
        self.by_object.entry(object.to_owned()).or_default().push(held);
    }

    /// Whether the settlement of `reservation_id` at `object` has not landed yet.
    pub fn holds(&self, object: &str, reservation_id: u64) -> bool {
        self.by_object
            .get(object)
            .is_some_and(|held| held.iter().any(|h| h.finished.reservation_id == reservation_id))
    }

    /// What the next call to `object`, at `now_ms`, carries: what no live call under way
    /// carries already.
    pub fn carry(&mut self, object: &str, now_ms: i64) -> Carried {
        let abandoned = |at_ms: i64| now_ms.saturating_sub(at_ms) >= ABANDONED_AFTER_MS;
        self.mark(object, now_ms, |held| {
            held.carried_by.is_none_or(|(_, at_ms)| abandoned(at_ms))
        })
    }

    /// Everything held for `object`, also what a call under way carries (that call may never
    /// end, if its request was cancelled): a flush. Settling twice changes nothing.
    pub fn carry_all(&mut self, object: &str, now_ms: i64) -> Carried {
        self.mark(object, now_ms, |_| true)
    }

    /// The call ended: the settlements the object acknowledges (`settled`, empty if the call
    /// failed) are done, whichever call carried them; the rest of what this call carried is
    /// held again for the next.
    pub fn landed(&mut self, object: &str, call: u64, settled: &[u64]) {
        let Some(held) = self.by_object.get_mut(object) else {
            return;
        };
        held.retain(|h| !settled.contains(&h.finished.reservation_id));
        for h in held.iter_mut().filter(|h| h.carried_by.map(|(by, _)| by) == Some(call)) {
            h.carried_by = None;
        }
        if held.is_empty() {
            self.by_object.remove(object);
        }
    }

    /// Forgets settlements that ended `RESERVATION_TIMEOUT_MS` ago: their reservations (renewed
    /// at most until their end) have expired, charged in full, or were settled, so delivering
    /// them changes nothing. An isolate meeting only objects that never acknowledge (of an
    /// older version) does not carry them forever.
    fn forget_stale(&mut self, now_ms: i64) {
        self.by_object.retain(|_, held| {
            held.retain(|h| now_ms.saturating_sub(h.finished.now_ms) < RESERVATION_TIMEOUT_MS);
            !held.is_empty()
        });
    }

    /// How many settlements are held, for the bench counters.
    pub fn count(&self) -> usize {
        self.by_object.values().map(Vec::len).sum()
    }

    fn mark(&mut self, object: &str, now_ms: i64, take: impl Fn(&Held) -> bool) -> Carried {
        let call = self.next_call;
        self.next_call = self.next_call.wrapping_add(1);
        let settle = self
            .by_object
            .get_mut(object)
            .into_iter()
            .flatten()
            .filter(|held| take(held))
            .map(|held| {
                held.carried_by = Some((call, now_ms));
                held.finished.clone()
            })
            .collect();
        Carried { call, settle }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::quota::{Ask, Limits};
    use crate::objects::user::{Answer, Delivery, UserCommand, UserRecord};

    fn finished(reservation_id: u64) -> Finished {
        Finished {
            reservation_id,
            used_tokens: 1,
            limits: Limits {
                rate: None,
                max_streams: None,
                daily_tokens: None,
                daily_nano_usd: None,
            },
            now_ms: 0,
            created_response: None,
            created_items: vec![],
            used_nano_usd: 0,
        }
    }

    fn ids(carried: &Carried) -> Vec<u64> {
        carried.settle.iter().map(|f| f.reservation_id).collect()
    }

    #[test]
    fn held_settlements_ride_on_one_call_to_their_own_object_and_are_done_when_it_lands() {
        let mut held = HeldSettlements::default();
        held.hold("user:alice", finished(1));
        held.hold("user:alice", finished(2));
        held.hold("global", finished(7));
        let first = held.carry("user:alice", 0);
        assert_eq!(ids(&first), [1, 2]);
        assert!(
            held.carry("user:alice", 0).settle.is_empty(),
            "a concurrent call leaves them to the first"
        );
        assert!(held.holds("user:alice", 1), "held until it lands");
        held.landed("user:alice", first.call, &[1, 2]);
        assert!(!held.holds("user:alice", 1));
        assert_eq!(held.count(), 1, "the global object's is still held");
        assert_eq!(ids(&held.carry("global", 0)), [7]);
    }

    #[test]
    fn what_a_failed_call_carried_is_held_for_the_next() {
        let mut held = HeldSettlements::default();
        held.hold("user:alice", finished(1));
        let failed = held.carry("user:alice", 0);
        held.hold("user:alice", finished(2));
        held.landed("user:alice", failed.call, &[]);
        assert_eq!(ids(&held.carry("user:alice", 0)), [1, 2]);
    }

    #[test]
    fn a_flush_also_sends_what_a_call_under_way_carries_and_that_call_s_end_changes_nothing() {
        let mut held = HeldSettlements::default();
        held.hold("user:alice", finished(1));
        let under_way = held.carry("user:alice", 0);
        held.hold("user:alice", finished(2));
        let flush = held.carry_all("user:alice", 0);
        assert_eq!(ids(&flush), [1, 2]);
        held.landed("user:alice", under_way.call, &[]);
        assert!(
            held.carry("user:alice", 0).settle.is_empty(),
            "the flush carries it now"
        );
        held.landed("user:alice", flush.call, &[1, 2]);
        assert_eq!(held.count(), 0);
        held.landed("user:alice", under_way.call, &[1]);
        assert_eq!(held.count(), 0);
    }

    #[test]
    fn what_an_abandoned_call_carried_goes_with_a_later_call() {
        let mut held = HeldSettlements::default();
        held.hold("user:alice", finished(1));
        let abandoned = held.carry("user:alice", 0);
        assert!(held.carry("user:alice", ABANDONED_AFTER_MS - 1).settle.is_empty());
        let next = held.carry("user:alice", ABANDONED_AFTER_MS);
        assert_eq!(ids(&next), [1]);
        held.landed("user:alice", abandoned.call, &[]);
        assert_eq!(held.count(), 1, "the abandoned call's end leaves it to the next");
        held.landed("user:alice", next.call, &[1]);
        assert_eq!(held.count(), 0);
    }

    #[test]
    fn settlements_older_than_the_reservation_expiry_are_forgotten() {
        let mut held = HeldSettlements::default();
        held.hold("user:alice", finished(1));
        held.hold("global", finished(2));
        let later = Finished {
            now_ms: RESERVATION_TIMEOUT_MS,
            ..finished(3)
        };
        held.hold("user:alice", later);
        assert_eq!(ids(&held.carry("user:alice", RESERVATION_TIMEOUT_MS)), [3]);
        assert_eq!(held.count(), 1);
    }

    const ALICE: &str = "user:alice";
    const ONE_STREAM: Limits = Limits {
        rate: None,
        max_streams: Some(1),
        daily_tokens: Some(1_000),
        daily_nano_usd: None,
    };

    /// A user whose stream (reservation 0, 400 tokens) ended having used 5, its settlement
    /// held in the isolate.
    fn a_stream_ended() -> (UserRecord, HeldSettlements) {
        let mut record = UserRecord::default();
        let stream = Ask {
            tokens: 400,
            stream: true,
            nano_usd: 0,
        };
        record.quota.admit(&ONE_STREAM, stream, 10).unwrap();
        let mut held = HeldSettlements::default();
        held.hold(
            ALICE,
            Finished {
                reservation_id: 0,
                used_tokens: 5,
                limits: ONE_STREAM,
                now_ms: 20,
                created_response: None,
                created_items: vec![],
                used_nano_usd: 0,
            },
        );
        (record, held)
    }

    /// The Worker's next call to the object, carrying what it holds, as JSON on the wire.
    fn next_call(held: &mut HeldSettlements) -> (u64, String) {
        let Carried { call, settle } = held.carry(ALICE, 30);
        let command = UserCommand::Status {
            limits: ONE_STREAM,
            now_ms: 30,
            plan_limits: Default::default(),
        };
        (call, serde_json::to_string(&Delivery::new(settle, command)).unwrap())
    }

    /// What the Worker makes of the object's answer: the same parse as the edge's.
    fn answer_lands(held: &mut HeldSettlements, call: u64, answer: &str) {
        let answer: Answer = serde_json::from_str(answer).unwrap();
        held.landed(ALICE, call, &answer.settled);
    }

    fn used_and_open(record: &mut UserRecord) -> (u64, u32) {
        let standing = record.quota.standing(&ONE_STREAM, 40);
        (standing.used_tokens, standing.open_streams)
    }

    #[test]
    fn an_object_that_ignores_the_settlements_it_is_sent_loses_none_of_them() {
        let (mut record, mut held) = a_stream_ended();
        let (call, wire) = next_call(&mut held);
        // An object of an earlier version reads its command flattened beside `settle`, tagged
        // `op`: it finds none, refuses the call, and the Worker takes it as failed.
        let fields: serde_json::Value = serde_json::from_str(&wire).unwrap();
        assert!(fields.get("op").is_none() && fields.get("command").is_some());
        held.landed(ALICE, call, &[]);
        assert_eq!(used_and_open(&mut record), (0, 1), "the old object applied nothing");
        assert!(held.holds(ALICE, 0), "so the Worker still holds it");
        // The object runs the new code at the next call: it is delivered again, and done.
        let (call, wire) = next_call(&mut held);
        let (answer, _) = record.receive(&Delivery::read(&wire).unwrap());
        answer_lands(&mut held, call, &serde_json::to_string(&answer).unwrap());
        assert_eq!(
            used_and_open(&mut record),
            (5, 0),
            "charged what it used, the slot free"
        );
        assert_eq!(held.count(), 0);
    }

    #[test]
    fn an_object_that_applies_settlements_without_acknowledging_them_is_sent_them_again_harmlessly() {
        let (mut record, mut held) = a_stream_ended();
        for _ in 0..2 {
            // It applies `settle` but its answer acknowledges nothing (as version 1's did).
            let (call, wire) = next_call(&mut held);
            let delivery = Delivery::read(&wire).unwrap();
            let reply = record.apply(&delivery.settle, &delivery.command).0;
            let answer = Answer { settled: vec![], reply };
            answer_lands(&mut held, call, &serde_json::to_string(&answer).unwrap());
            assert!(held.holds(ALICE, 0));
        }
        assert_eq!(used_and_open(&mut record), (5, 0), "settling again changes nothing");
    }

    #[test]
    fn a_settlement_is_held_only_at_its_own_object_under_its_own_id() {
        let mut held = HeldSettlements::default();
        assert!(!held.holds("user:alice", 1));
        held.hold("user:alice", finished(1));
        held.hold("user:alice", finished(2));
        assert!(held.holds("user:alice", 1) && held.holds("user:alice", 2));
        assert!(!held.holds("user:alice", 3), "another reservation of the same object");
        assert!(!held.holds("user:bob", 1), "the same id at another object");
        let call = held.carry("user:alice", 0);
        assert!(held.holds("user:alice", 1), "carried is not landed");
        held.landed("user:alice", call.call, &[1, 2]);
        assert!(!held.holds("user:alice", 1) && !held.holds("user:alice", 2));
    }
}
