//! Per-user limits, as arithmetic on stored state and "now" (milliseconds); no I/O here.
//!
//! - Rate: an exact sliding window. The times of the requests admitted in the last window are
//!   kept (at most `requests` of them), so "N per window" holds at every instant.
//! - Streams: one slot per open stream, released when the stream finishes.
//! - Tokens and dollars: daily (UTC) budgets. Admission reserves a request's worst case in
//!   both; finishing replaces the reservation with the real usage. Since every admitted
//!   request is reserved until it finishes, concurrent requests cannot together pass either.
//!
//! A reservation whose Worker died before finishing, or whose settlement was held in an
//! isolate that was then evicted (see `held`), expires after `RESERVATION_TIMEOUT_MS`: it is
//! charged in full (the operator never pays for what was not counted) and its stream slot is
//! freed. A live stream renews its reservation (`renew`) every `RENEW_EVERY_MS`, so its slot
//! and reservation last as long as it does.
//!
//! A reservation is charged to the day it was made, whenever it ends: it was admitted against
//! that day's budget. One that ends after the day is over (a stream across midnight, an expiry
//! after it) costs the new day's budget nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::budget::money::usd;
use crate::error::Refusal;

pub const DAY_MS: i64 = 86_400_000;
/// A request still unfinished (and not renewed) after this long is taken to have died with
/// its Worker.
pub const RESERVATION_TIMEOUT_MS: i64 = 15 * 60 * 1000;
/// How often a live stream renews its reservation: a third of the expiry, so that two renewals
/// in a row may fail (an object briefly unavailable) before a live stream loses its slot.
pub const RENEW_EVERY_MS: i64 = RESERVATION_TIMEOUT_MS / 3;
/// How long a client should wait for a stream slot to free up.
pub const STREAM_SLOT_RETRY_SECONDS: u64 = 2;

/// The limits a record is checked against; `None` is no limit (the global record has only a
/// budget).
/// Part of the objects' protocol: a field an object does not know is refused, not ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rate: Option<RateLimit>,
    pub max_streams: Option<u32>,
    pub daily_tokens: Option<u64>,
    /// The daily spending budget in nano-USD (`DAILY_BUDGET_USD`); absent in records of
    /// versions before dollar budgets.
    #[serde(default)]
    pub daily_nano_usd: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    /// Sent to the object as whole milliseconds, the unit of its arithmetic.
    #[serde(rename = "window_ms", with = "duration_ms")]
    pub window: Duration,
}

impl RateLimit {
    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// What one request asks to be admitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// Worst-case tokens of the request.
    pub tokens: u64,
    /// Whether it holds a stream slot until it finishes.
    pub stream: bool,
    /// Worst-case cost in nano-USD (0 for a model without a price, allowed only when no
    /// dollar budget is set).
    #[serde(default)]
    pub nano_usd: u64,
}

/// What a request spent, or may spend: tokens and nano-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub tokens: u64,
    pub nano_usd: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: u64,
    pub tokens: u64,
    pub stream: bool,
    pub expires_at_ms: i64,
    #[serde(default)]
    pub nano_usd: u64,
    /// When it was admitted; absent in records stored before renewals, whose reservations
    /// were all made `RESERVATION_TIMEOUT_MS` before they expire.
    #[serde(default)]
    pub made_at_ms: Option<i64>,
}

impl Reservation {
    pub fn made_at_ms(&self) -> i64 {
        self.made_at_ms
            .unwrap_or(self.expires_at_ms.saturating_sub(RESERVATION_TIMEOUT_MS))
    }

    /// What it holds: the charge of a request that ends with no usage known.
    pub fn spend(&self) -> Spend {
        Spend {
            tokens: self.tokens,
            nano_usd: self.nano_usd,
        }
    }
}

/// The stored quota state of one user (or of everyone, for the global budget).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaState {
    /// Admission times (ms) within the current window, oldest first.
    pub admitted_at_ms: Vec<i64>,
    /// Days since the epoch (UTC) that `used_tokens` counts.
    pub day: i64,
    pub used_tokens: u64,
    pub reservations: Vec<Reservation>,
    pub next_reservation_id: u64,
    /// Nano-USD spent on `day`.
    #[serde(default)]
    pub used_nano_usd: u64,
    /// What was charged since the caller last took it, by the UTC day each charge belongs to
    /// (a reservation's: a request that ends after midnight belongs to the day it was made,
    /// which the counters have left). For the usage report; never stored.
    #[serde(skip)]
    charged_by_day: BTreeMap<i64, Spend>,
}

/// Where a user stands: for response headers, 429s and `/v1/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub rate: Option<RateStanding>,
    pub max_streams: Option<u32>,
    pub open_streams: u32,
    pub daily_tokens: Option<u64>,
    pub used_tokens: u64,
    pub reserved_tokens: u64,
    /// Seconds until the token budget starts over (next UTC midnight).
    pub budget_reset_seconds: u64,
    #[serde(default)]
    pub daily_nano_usd: Option<u64>,
    #[serde(default)]
    pub used_nano_usd: u64,
    #[serde(default)]
    pub reserved_nano_usd: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateStanding {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until one more request may be admitted (0 when one may be now).
    pub reset_seconds: u64,
    pub window_seconds: u64,
}

impl Standing {
    pub fn tokens_remaining(&self) -> Option<u64> {
        self.daily_tokens
            .map(|limit| limit.saturating_sub(self.used_tokens.saturating_add(self.reserved_tokens)))
    }

    /// The `RateLimit-Limit`/`-Remaining`/`-Reset` headers (draft-ietf-httpapi-ratelimit-headers,
    /// the widely used form), for every answer to a user.
    pub fn rate_limit_headers(&self) -> Vec<(&'static str, String)> {
        let Some(rate) = self.rate else { return Vec::new() };
        vec![
            ("ratelimit-limit", rate.limit.to_string()),
            ("ratelimit-remaining", rate.remaining.to_string()),
            ("ratelimit-reset", rate.reset_seconds.to_string()),
        ]
    }

    pub fn nano_usd_remaining(&self) -> Option<u64> {
        self.daily_nano_usd
            .map(|limit| limit.saturating_sub(self.used_nano_usd.saturating_add(self.reserved_nano_usd)))
    }

    /// The body of `GET /v1/usage`, for a quota bar in the app; `plan` is the plan in force.
    pub fn usage_json(&self, sub: &str, plan: &str) -> serde_json::Value {
        serde_json::json!({
            "object": "usage",
            "sub": sub,
            "plan": plan,
            "requests": self.rate.map(|rate| serde_json::json!({
                "limit": rate.limit,
                "remaining": rate.remaining,
                "window_seconds": rate.window_seconds,
                "reset_seconds": rate.reset_seconds,
            })),
            "tokens": {
                "limit": self.daily_tokens,
                "used": self.used_tokens,
                "reserved": self.reserved_tokens,
                "remaining": self.tokens_remaining(),
                "reset_seconds": self.budget_reset_seconds,
            },
            "cost": {
                "limit_usd": self.daily_nano_usd.map(usd),
                "used_usd": usd(self.used_nano_usd),
                "reserved_usd": usd(self.reserved_nano_usd),
                "remaining_usd": self.nano_usd_remaining().map(usd),
                "reset_seconds": self.budget_reset_seconds,
            },
            "streams": { "limit": self.max_streams, "open": self.open_streams },
        })
    }
}

impl QuotaState {
    /// Brings the state to `now`: drops admissions out of the window, starts a new budget day,
    /// and charges reservations that expired in full.
    fn advance(&mut self, limits: &Limits, now_ms: i64) {
        if let Some(rate) = limits.rate {
            self.admitted_at_ms
                .retain(|&at| at > now_ms.saturating_sub(rate.window_ms()));
        }
        let (expired, live): (Vec<Reservation>, Vec<Reservation>) =
            self.reservations.iter().partition(|r| r.expires_at_ms <= now_ms);
        self.reservations = live;
        // Before the day moves on: an expiry after midnight is charged to the day it was made.
        for reservation in expired {
            self.charge_to_its_day(&reservation, reservation.spend());
        }
        // "Now" comes from the calling Worker's clock: commands from several isolates can
        // arrive slightly out of order around midnight. The day only moves forward, or a late
        // command would flip it back and start the budget over.
        let today = now_ms.div_euclid(DAY_MS);
        if today > self.day {
            self.day = today;
            self.used_tokens = 0;
            self.used_nano_usd = 0;
        }
    }

    /// Admits a request (recording it and reserving its tokens) or says why not. Refusals
    /// record nothing.
    pub fn admit(&mut self, limits: &Limits, ask: Ask, now_ms: i64) -> Result<Reservation, Refusal> {
        self.advance(limits, now_ms);
        if let Some(rate) = limits.rate {
            if self.admitted_at_ms.len() >= rate.requests as usize {
                let oldest = self.admitted_at_ms[self.admitted_at_ms.len() - rate.requests as usize];
                return Err(Refusal::RateLimited {
                    retry_after_seconds: ceil_seconds(oldest.saturating_add(rate.window_ms()) - now_ms),
                });
            }
        }
        if ask.stream && limits.max_streams.is_some_and(|max| self.open_streams() >= max) {
            return Err(Refusal::TooManyStreams {
                retry_after_seconds: STREAM_SLOT_RETRY_SECONDS,
            });
        }
        // Refused only for what requests under way reserve (their settlements may be on their
        // way), the budget may have room again in seconds; else not before the next day.
        let retry_after_seconds = |used: u64, ask: u64, budget: u64| {
            if used.saturating_add(ask) <= budget {
                STREAM_SLOT_RETRY_SECONDS
            } else {
                ceil_seconds(self.next_day_ms() - now_ms)
            }
        };
        if let Some(budget) = limits.daily_tokens {
            let committed = self.used_tokens.saturating_add(self.reserved_tokens());
            if committed.saturating_add(ask.tokens) > budget {
                return Err(Refusal::BudgetExhausted {
                    retry_after_seconds: retry_after_seconds(self.used_tokens, ask.tokens, budget),
                });
            }
        }
        if let Some(budget) = limits.daily_nano_usd {
            let committed = self.used_nano_usd.saturating_add(self.reserved_nano_usd());
            if committed.saturating_add(ask.nano_usd) > budget {
                return Err(Refusal::SpendExhausted {
                    retry_after_seconds: retry_after_seconds(self.used_nano_usd, ask.nano_usd, budget),
                });
            }
        }
        // A command from a clock still on the day before belongs to the day the counters
        // hold, which admitted it: it is charged to that day, never to one already closed.
        let made_at_ms = now_ms.max(self.day.saturating_mul(DAY_MS));
        if limits.rate.is_some() {
            self.admitted_at_ms.push(made_at_ms);
        }
        let reservation = Reservation {
            id: self.next_reservation_id,
            tokens: ask.tokens,
            stream: ask.stream,
            expires_at_ms: now_ms.saturating_add(RESERVATION_TIMEOUT_MS),
            nano_usd: ask.nano_usd,
            made_at_ms: Some(made_at_ms),
        };
        self.next_reservation_id = self.next_reservation_id.wrapping_add(1);
        self.reservations.push(reservation);
        Ok(reservation)
    }

    /// Replaces a reservation with what the request really used, and frees its stream slot. A
    /// reservation that already expired was charged in full, so it is not charged again.
    pub fn finish(&mut self, limits: &Limits, reservation_id: u64, spent: Spend, now_ms: i64) {
        self.advance(limits, now_ms);
        if let Some(index) = self.reservations.iter().position(|r| r.id == reservation_id) {
            let reservation = self.reservations.remove(index);
            self.charge_to_its_day(&reservation, spent);
        }
    }

    /// Keeps a live request's reservation, and its stream slot, from expiring: it expires
    /// `RESERVATION_TIMEOUT_MS` after `now_ms` (never sooner than it did). Returns when, or
    /// `None` if it is gone (settled, cancelled, or expired and charged in full).
    pub fn renew(&mut self, limits: &Limits, reservation_id: u64, now_ms: i64) -> Option<i64> {
        self.advance(limits, now_ms);
        let reservation = self.reservations.iter_mut().find(|r| r.id == reservation_id)?;
        reservation.expires_at_ms = reservation
            .expires_at_ms
            .max(now_ms.saturating_add(RESERVATION_TIMEOUT_MS));
        Some(reservation.expires_at_ms)
    }

    /// A live call's usage so far: `spent` is charged now, and the reservation holds `hold`
    /// again (renewed, like a stream's) when the budget has room for it. Without room it
    /// holds what room there is and the answer is `Some(false)`: the call must end. `None`:
    /// the reservation is gone (settled, or expired and charged in full).
    pub fn charge_live(
        &mut self,
        limits: &Limits,
        reservation_id: u64,
        spent: Spend,
        hold: Spend,
        now_ms: i64,
    ) -> Option<bool> {
        self.advance(limits, now_ms);
        let index = self.reservations.iter().position(|r| r.id == reservation_id)?;
        let reservation = self.reservations[index];
        self.charge_to_its_day(&reservation, spent);
        let room = |budget: Option<u64>, used: u64, reserved: u64, held: u64| {
            budget.map(|budget| budget.saturating_sub(used.saturating_add(reserved.saturating_sub(held))))
        };
        let room_tokens = room(
            limits.daily_tokens,
            self.used_tokens,
            self.reserved_tokens(),
            reservation.tokens,
        );
        let room_usd = room(
            limits.daily_nano_usd,
            self.used_nano_usd,
            self.reserved_nano_usd(),
            reservation.nano_usd,
        );
        let covered =
            room_tokens.is_none_or(|room| room >= hold.tokens) && room_usd.is_none_or(|room| room >= hold.nano_usd);
        let held = &mut self.reservations[index];
        held.tokens = room_tokens.map_or(hold.tokens, |room| room.min(hold.tokens));
        held.nano_usd = room_usd.map_or(hold.nano_usd, |room| room.min(hold.nano_usd));
        held.expires_at_ms = held.expires_at_ms.max(now_ms.saturating_add(RESERVATION_TIMEOUT_MS));
        Some(covered)
    }

    /// Whether the reservation is still held (not settled, cancelled or expired).
    pub fn holds(&self, reservation_id: u64) -> bool {
        self.reservations.iter().any(|r| r.id == reservation_id)
    }

    /// Charges `spent` if the reservation was made on the day the counters hold; a day that
    /// is over already started over, and the new day's budget never admitted it.
    fn charge_to_its_day(&mut self, reservation: &Reservation, spent: Spend) {
        let day = reservation.made_at_ms().div_euclid(DAY_MS);
        let charged = self.charged_by_day.entry(day).or_default();
        charged.tokens = charged.tokens.saturating_add(spent.tokens);
        charged.nano_usd = charged.nano_usd.saturating_add(spent.nano_usd);
        if day >= self.day {
            self.charge(spent);
        }
    }

    /// What was charged since the last call, by UTC day (days since the epoch).
    pub fn take_charges(&mut self) -> BTreeMap<i64, Spend> {
        std::mem::take(&mut self.charged_by_day)
    }

    /// Adds to the day's use, saturating: a usage report with absurd counts must not wrap
    /// the budget back to nearly nothing.
    fn charge(&mut self, spent: Spend) {
        self.used_tokens = self.used_tokens.saturating_add(spent.tokens);
        self.used_nano_usd = self.used_nano_usd.saturating_add(spent.nano_usd);
    }

    /// Undoes an admission that was refused later (by the global budget): its reservation,
    /// stream slot and rate-window entry are given back, and nothing is charged.
    pub fn cancel(&mut self, limits: &Limits, reservation_id: u64, now_ms: i64) {
        self.advance(limits, now_ms);
        let Some(index) = self.reservations.iter().position(|r| r.id == reservation_id) else {
            return;
        };
        let reservation = self.reservations.remove(index);
        let admitted_at = reservation.made_at_ms();
        if let Some(entry) = self.admitted_at_ms.iter().rposition(|&at| at == admitted_at) {
            self.admitted_at_ms.remove(entry);
        }
    }

    pub fn standing(&mut self, limits: &Limits, now_ms: i64) -> Standing {
        self.advance(limits, now_ms);
        let rate = limits.rate.map(|rate| {
            let admitted = self.admitted_at_ms.len() as u32;
            let remaining = rate.requests.saturating_sub(admitted);
            let reset_seconds = if remaining > 0 {
                0
            } else {
                let oldest = self.admitted_at_ms[self.admitted_at_ms.len() - rate.requests as usize];
                ceil_seconds(oldest.saturating_add(rate.window_ms()) - now_ms)
            };
            RateStanding {
                limit: rate.requests,
                remaining,
                reset_seconds,
                window_seconds: ceil_seconds(rate.window_ms()),
            }
        });
        Standing {
            rate,
            max_streams: limits.max_streams,
            open_streams: self.open_streams(),
            daily_tokens: limits.daily_tokens,
            used_tokens: self.used_tokens,
            reserved_tokens: self.reserved_tokens(),
            budget_reset_seconds: ceil_seconds(self.next_day_ms() - now_ms),
            daily_nano_usd: limits.daily_nano_usd,
            used_nano_usd: self.used_nano_usd,
            reserved_nano_usd: self.reserved_nano_usd(),
        }
    }

    /// The day's spend and reservations (of any day) together: what a lease must cover.
    pub fn committed(&self) -> Spend {
        Spend {
            tokens: self.used_tokens.saturating_add(self.reserved_tokens()),
            nano_usd: self.used_nano_usd.saturating_add(self.reserved_nano_usd()),
        }
    }

    fn open_streams(&self) -> u32 {
        self.reservations.iter().filter(|r| r.stream).count() as u32
    }

    fn reserved_tokens(&self) -> u64 {
        self.reservations.iter().fold(0, |sum, r| sum.saturating_add(r.tokens))
    }

    fn reserved_nano_usd(&self) -> u64 {
        self.reservations
            .iter()
            .fold(0, |sum, r| sum.saturating_add(r.nano_usd))
    }

    fn next_day_ms(&self) -> i64 {
        (self.day + 1) * DAY_MS
    }
}

fn ceil_seconds(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(tokens: u64) -> Spend {
        Spend { tokens, nano_usd: 0 }
    }

    const T0: i64 = 1_800_000_000_000; // some UTC day, 08:00

    fn limits() -> Limits {
        Limits {
            rate: Some(RateLimit {
                requests: 3,
                window: Duration::from_secs(60),
            }),
            max_streams: Some(2),
            daily_tokens: Some(1_000),
            daily_nano_usd: None,
        }
    }

    const SMALL: Ask = Ask {
        tokens: 10,
        stream: false,
        nano_usd: 0,
    };
    const STREAM: Ask = Ask {
        tokens: 10,
        stream: true,
        nano_usd: 0,
    };

    #[test]
    fn the_window_admits_exactly_n() {
        let mut state = QuotaState::default();
        for i in 0..3 {
            assert!(state.admit(&limits(), SMALL, T0 + i * 1000).is_ok());
        }
        assert_eq!(
            state.admit(&limits(), SMALL, T0 + 3000),
            Err(Refusal::RateLimited {
                retry_after_seconds: 57
            })
        );
        // Still full one millisecond before the first admission leaves the window...
        assert!(state.admit(&limits(), SMALL, T0 + 59_999).is_err());
        // ...and one slot frees exactly when it does.
        assert!(state.admit(&limits(), SMALL, T0 + 60_000).is_ok());
        assert!(state.admit(&limits(), SMALL, T0 + 60_001).is_err());
    }

    #[test]
    fn refusals_do_not_count() {
        let mut state = QuotaState::default();
        for _ in 0..3 {
            state.admit(&limits(), SMALL, T0).unwrap();
        }
        for _ in 0..10 {
            assert!(state.admit(&limits(), SMALL, T0 + 1).is_err());
        }
        assert_eq!(state.admitted_at_ms.len(), 3);
    }

    #[test]
    fn a_clock_step_back_does_not_free_slots() {
        let mut state = QuotaState::default();
        for _ in 0..3 {
            state.admit(&limits(), SMALL, T0).unwrap();
        }
        assert!(state.admit(&limits(), SMALL, T0 - 5_000).is_err());
    }

    #[test]
    fn stream_slots_are_held_until_finish() {
        let mut state = QuotaState::default();
        let unlimited_rate = Limits { rate: None, ..limits() };
        let first = state.admit(&unlimited_rate, STREAM, T0).unwrap();
        state.admit(&unlimited_rate, STREAM, T0).unwrap();
        assert_eq!(
            state.admit(&unlimited_rate, STREAM, T0),
            Err(Refusal::TooManyStreams { retry_after_seconds: 2 })
        );
        assert!(
            state.admit(&unlimited_rate, SMALL, T0).is_ok(),
            "non-stream requests need no slot"
        );
        state.finish(&unlimited_rate, first.id, tokens(5), T0 + 100);
        assert!(state.admit(&unlimited_rate, STREAM, T0 + 200).is_ok());
    }

    #[test]
    fn reservations_keep_concurrent_requests_inside_the_budget() {
        let mut state = QuotaState::default();
        let budget_only = budgets_only(Some(1_000), None);
        let ask = Ask {
            tokens: 300,
            stream: false,
            nano_usd: 0,
        };
        let admitted: Vec<_> = (0..10)
            .filter_map(|_| state.admit(&budget_only, ask, T0).ok())
            .collect();
        assert_eq!(admitted.len(), 3, "3 x 300 fit in 1000, a 4th would not");
        // Finishing with less than reserved frees the difference.
        state.finish(&budget_only, admitted[0].id, tokens(50), T0 + 1);
        assert_eq!(
            state.standing(&budget_only, T0 + 1).tokens_remaining(),
            Some(1_000 - 50 - 600)
        );
        assert!(state.admit(&budget_only, ask, T0 + 2).is_ok());
        // Only the requests under way stand in the way: they may end in seconds.
        assert_eq!(
            state.admit(&budget_only, ask, T0 + 3),
            Err(Refusal::BudgetExhausted {
                retry_after_seconds: STREAM_SLOT_RETRY_SECONDS
            })
        );
        let running: Vec<u64> = state.reservations.iter().map(|r| r.id).collect();
        for id in running {
            state.finish(&budget_only, id, tokens(300), T0 + 4);
        }
        // Spent: nothing frees before the day ends.
        let midnight = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        assert_eq!(
            state.admit(&budget_only, ask, T0 + 5),
            Err(Refusal::BudgetExhausted {
                retry_after_seconds: ((midnight - T0 - 5) as u64).div_ceil(1000)
            })
        );
    }

    #[test]
    fn a_dollar_budget_admits_until_the_next_worst_case_would_not_fit_and_charges_what_was_spent() {
        let mut state = QuotaState::default();
        let dollars_only = budgets_only(None, Some(1_000_000));
        let ask = Ask {
            tokens: 1,
            stream: false,
            nano_usd: 300_000,
        };
        let admitted: Vec<_> = (0..5)
            .filter_map(|_| state.admit(&dollars_only, ask, T0).ok())
            .collect();
        assert_eq!(admitted.len(), 3, "3 x 300,000 fit in 1,000,000; a 4th would not");
        assert!(matches!(
            state.admit(&dollars_only, ask, T0),
            Err(Refusal::SpendExhausted { .. })
        ));
        state.finish(
            &dollars_only,
            admitted[0].id,
            Spend {
                tokens: 1,
                nano_usd: 12_345,
            },
            T0 + 1,
        );
        let standing = state.standing(&dollars_only, T0 + 1);
        assert_eq!((standing.used_nano_usd, standing.reserved_nano_usd), (12_345, 600_000));
        assert_eq!(standing.nano_usd_remaining(), Some(1_000_000 - 12_345 - 600_000));
        assert!(
            state.admit(&dollars_only, ask, T0 + 2).is_ok(),
            "the difference is free again"
        );
    }

    #[test]
    fn token_and_dollar_budgets_both_apply() {
        let mut state = QuotaState::default();
        let both = Limits {
            daily_nano_usd: Some(1_000),
            ..limits()
        };
        let cheap_but_long = Ask {
            tokens: 2_000,
            stream: false,
            nano_usd: 1,
        };
        assert!(matches!(
            state.admit(&both, cheap_but_long, T0),
            Err(Refusal::BudgetExhausted { .. })
        ));
        let short_but_dear = Ask {
            tokens: 1,
            stream: false,
            nano_usd: 2_000,
        };
        assert!(matches!(
            state.admit(&both, short_but_dear, T0),
            Err(Refusal::SpendExhausted { .. })
        ));
    }

    #[test]
    fn records_stored_before_dollar_budgets_still_load() {
        let old = r#"{"admitted_at_ms":[1],"day":5,"used_tokens":7,"reservations":[{"id":0,"tokens":3,"stream":false,"expires_at_ms":9}],"next_reservation_id":1}"#;
        let state: QuotaState = serde_json::from_str(old).unwrap();
        assert_eq!(
            (state.used_tokens, state.used_nano_usd, state.reservations[0].nano_usd),
            (7, 0, 0)
        );
        let limits: Limits = serde_json::from_str(r#"{"rate":null,"max_streams":null,"daily_tokens":5}"#).unwrap();
        assert_eq!(limits.daily_nano_usd, None);
    }

    #[test]
    fn the_budget_starts_over_at_utc_midnight() {
        let mut state = QuotaState::default();
        let budget_only = Limits {
            rate: None,
            max_streams: None,
            daily_tokens: Some(100),
            daily_nano_usd: None,
        };
        let r = state
            .admit(
                &budget_only,
                Ask {
                    tokens: 100,
                    stream: false,
                    nano_usd: 0,
                },
                T0,
            )
            .unwrap();
        state.finish(&budget_only, r.id, tokens(100), T0 + 1);
        assert!(state.admit(&budget_only, SMALL, T0 + 2).is_err());
        let next_day = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        assert!(state.admit(&budget_only, SMALL, next_day).is_ok());
        assert_eq!(state.standing(&budget_only, next_day).used_tokens, 0);
    }

    #[test]
    fn a_dead_workers_reservation_expires_charged_in_full() {
        let mut state = QuotaState::default();
        let r = state
            .admit(
                &limits(),
                Ask {
                    tokens: 400,
                    stream: true,
                    nano_usd: 0,
                },
                T0,
            )
            .unwrap();
        let later = T0 + RESERVATION_TIMEOUT_MS;
        let standing = state.standing(&limits(), later);
        assert_eq!(
            (standing.open_streams, standing.reserved_tokens, standing.used_tokens),
            (0, 0, 400)
        );
        // A late finish does not charge again.
        state.finish(&limits(), r.id, tokens(50), later + 1);
        assert_eq!(state.standing(&limits(), later + 2).used_tokens, 400);
    }

    #[test]
    fn a_live_call_is_charged_as_it_goes_and_holds_its_worst_case_while_the_budget_has_room() {
        let mut state = QuotaState::default();
        let dollars = budgets_only(Some(10_000), Some(1_000));
        let hold = Spend {
            tokens: 100,
            nano_usd: 400,
        };
        let call = state
            .admit(
                &dollars,
                Ask {
                    tokens: 100,
                    stream: false,
                    nano_usd: 400,
                },
                T0,
            )
            .unwrap();
        let turn = Spend {
            tokens: 50,
            nano_usd: 200,
        };
        for used in [200, 400, 600] {
            assert_eq!(state.charge_live(&dollars, call.id, turn, hold, T0 + 1), Some(true));
            let standing = state.standing(&dollars, T0 + 1);
            assert_eq!((standing.used_nano_usd, standing.reserved_nano_usd), (used, 400));
        }
        // 800 used: 400 more would pass the budget; the 200 left are held, and the call must end.
        assert_eq!(state.charge_live(&dollars, call.id, turn, hold, T0 + 2), Some(false));
        let standing = state.standing(&dollars, T0 + 2);
        assert_eq!((standing.used_nano_usd, standing.reserved_nano_usd), (800, 200));
        // The response that started before the hang-up was covered.
        assert_eq!(state.charge_live(&dollars, call.id, turn, hold, T0 + 3), Some(false));
        state.finish(&dollars, call.id, Spend::default(), T0 + 4);
        assert_eq!(
            state.standing(&dollars, T0 + 4).used_nano_usd,
            1_000,
            "the budget, not a nano-dollar past it"
        );
        assert_eq!(state.charge_live(&dollars, call.id, turn, hold, T0 + 5), None, "gone");
    }

    #[test]
    fn a_live_call_s_charge_renews_its_reservation() {
        let mut state = QuotaState::default();
        let limits = budgets_only(Some(10_000), None);
        let call = state.admit(&limits, SMALL, T0).unwrap();
        let later = T0 + RESERVATION_TIMEOUT_MS - 1;
        assert_eq!(
            state.charge_live(&limits, call.id, tokens(1), tokens(10), later),
            Some(true)
        );
        assert!(state.holds(call.id));
        assert!(
            state
                .standing(&limits, later + RESERVATION_TIMEOUT_MS - 1)
                .reserved_tokens
                == 10
        );
        state.standing(&limits, later + RESERVATION_TIMEOUT_MS);
        assert!(!state.holds(call.id), "lost, it expires charged in full");
        assert_eq!(state.used_tokens, 11);
    }

    #[test]
    fn a_cancelled_admission_gives_back_its_rate_entry_slot_and_tokens() {
        let mut state = QuotaState::default();
        let kept = state.admit(&limits(), SMALL, T0).unwrap();
        let before = state.standing(&limits(), T0 + 1);
        let cancelled = state.admit(&limits(), STREAM, T0 + 1).unwrap();
        state.cancel(&limits(), cancelled.id, T0 + 2);
        let after = state.standing(&limits(), T0 + 2);
        assert_eq!(after, before, "as if the cancelled request had never come");
        assert_eq!(after.rate.unwrap().remaining, 2);
        assert_eq!(after.reserved_tokens, kept.tokens);
        state.cancel(&limits(), cancelled.id, T0 + 3);
        assert_eq!(
            state.standing(&limits(), T0 + 3),
            after,
            "cancelling twice changes nothing"
        );
        for _ in 0..2 {
            state.admit(&limits(), SMALL, T0 + 4).unwrap();
        }
        assert!(matches!(
            state.admit(&limits(), SMALL, T0 + 5),
            Err(Refusal::RateLimited { .. })
        ));
    }

    #[test]
    fn finishing_an_unknown_reservation_changes_nothing() {
        let mut state = QuotaState::default();
        state.admit(&limits(), SMALL, T0).unwrap();
        let before = state.clone();
        state.finish(&limits(), 99, tokens(1_000), T0);
        assert_eq!(state, before);
    }

    #[test]
    fn standing_reports_remaining_and_resets() {
        let mut state = QuotaState::default();
        let fresh = state.standing(&limits(), T0);
        assert_eq!(
            fresh.rate,
            Some(RateStanding {
                limit: 3,
                remaining: 3,
                reset_seconds: 0,
                window_seconds: 60
            })
        );
        for _ in 0..3 {
            state.admit(&limits(), SMALL, T0).unwrap();
        }
        let full = state.standing(&limits(), T0 + 10_500).rate.unwrap();
        assert_eq!((full.remaining, full.reset_seconds), (0, 50));
        assert_eq!(state.standing(&limits(), T0).reserved_tokens, 30);
        let standing = state.standing(&limits(), T0 + 10_500);
        assert_eq!(
            standing.rate_limit_headers(),
            [
                ("ratelimit-limit", "3".to_string()),
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", "50".into())
            ]
        );
        let usage = standing.usage_json("alice", "default");
        assert_eq!(usage["tokens"]["remaining"], 1000 - 30);
        assert_eq!(usage["requests"]["remaining"], 0);
        assert_eq!(usage["streams"]["limit"], 2);
    }

    #[test]
    fn a_late_command_from_before_midnight_does_not_start_the_budget_over() {
        let mut state = QuotaState::default();
        let budget_only = Limits {
            rate: None,
            max_streams: None,
            daily_tokens: Some(100),
            daily_nano_usd: None,
        };
        let midnight = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        let whole_day = Ask {
            tokens: 100,
            stream: false,
            nano_usd: 0,
        };
        let r = state.admit(&budget_only, whole_day, midnight + 5).unwrap();
        state.finish(&budget_only, r.id, tokens(100), midnight + 6);
        // Another isolate's clock is a few ms behind: its command is still today's.
        assert!(state.admit(&budget_only, SMALL, midnight - 3).is_err());
        assert!(state.admit(&budget_only, SMALL, midnight + 10).is_err());
        assert_eq!(state.standing(&budget_only, midnight + 10).used_tokens, 100);
    }

    const BUDGET_ONLY: Limits = Limits {
        rate: None,
        max_streams: Some(1),
        daily_tokens: Some(1_000),
        daily_nano_usd: None,
    };
    const WORST_CASE: Ask = Ask {
        tokens: 400,
        stream: true,
        nano_usd: 0,
    };

    #[test]
    fn a_reservation_expiring_after_midnight_is_charged_to_the_day_it_was_made() {
        let midnight = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        let mut state = QuotaState::default();
        state.admit(&BUDGET_ONLY, WORST_CASE, midnight - 60_000).unwrap();
        let new_day = state.standing(&BUDGET_ONLY, midnight + RESERVATION_TIMEOUT_MS);
        assert_eq!(
            (new_day.used_tokens, new_day.reserved_tokens, new_day.open_streams),
            (0, 0, 0),
            "the new day's budget is whole"
        );
        // Expired before midnight, it is charged to its own day as ever.
        let mut state = QuotaState::default();
        state.admit(&BUDGET_ONLY, WORST_CASE, T0).unwrap();
        let same_day = state.standing(&BUDGET_ONLY, T0 + RESERVATION_TIMEOUT_MS);
        assert_eq!(same_day.used_tokens, 400);
    }

    #[test]
    fn a_stream_across_midnight_is_charged_to_the_day_it_was_made() {
        let midnight = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
        let mut state = QuotaState::default();
        let r = state.admit(&BUDGET_ONLY, WORST_CASE, midnight - 60_000).unwrap();
        assert_eq!(
            state.standing(&BUDGET_ONLY, midnight + 1).reserved_tokens,
            400,
            "still counted while it runs"
        );
        state.finish(&BUDGET_ONLY, r.id, tokens(300), midnight + 60_000);
        assert_eq!(state.standing(&BUDGET_ONLY, midnight + 60_001).used_tokens, 0);
    }

    #[test]
    fn a_renewed_stream_keeps_its_slot_and_reservation_past_the_expiry_and_is_charged_what_it_used() {
        let mut state = QuotaState::default();
        let stream = state.admit(&BUDGET_ONLY, WORST_CASE, T0).unwrap();
        let hour_later = T0 + 3_600_000;
        let mut at = T0 + RENEW_EVERY_MS;
        while at <= hour_later {
            assert_eq!(
                state.renew(&BUDGET_ONLY, stream.id, at),
                Some(at + RESERVATION_TIMEOUT_MS)
            );
            at += RENEW_EVERY_MS;
        }
        assert_eq!(
            state.admit(&BUDGET_ONLY, WORST_CASE, hour_later),
            Err(Refusal::TooManyStreams { retry_after_seconds: 2 }),
            "its slot is still taken"
        );
        let running = state.standing(&BUDGET_ONLY, hour_later);
        assert_eq!((running.used_tokens, running.reserved_tokens), (0, 400));
        state.finish(&BUDGET_ONLY, stream.id, tokens(50), hour_later + 1);
        let done = state.standing(&BUDGET_ONLY, hour_later + 1);
        assert_eq!((done.used_tokens, done.reserved_tokens, done.open_streams), (50, 0, 0));
    }

    #[test]
    fn a_reservation_not_renewed_in_time_expires_charged_in_full_and_cannot_be_renewed() {
        let mut state = QuotaState::default();
        let stream = state.admit(&BUDGET_ONLY, WORST_CASE, T0).unwrap();
        assert_eq!(state.renew(&BUDGET_ONLY, stream.id, T0 + RESERVATION_TIMEOUT_MS), None);
        assert_eq!(
            state.standing(&BUDGET_ONLY, T0 + RESERVATION_TIMEOUT_MS).used_tokens,
            400
        );
        assert_eq!(state.renew(&BUDGET_ONLY, 99, T0), None, "an unknown id renews nothing");
    }

    #[test]
    fn a_renewed_admission_cancelled_still_gives_back_its_rate_entry() {
        let mut state = QuotaState::default();
        let r = state.admit(&limits(), STREAM, T0).unwrap();
        state.renew(&limits(), r.id, T0 + 10);
        state.cancel(&limits(), r.id, T0 + 20);
        assert_eq!(state.standing(&limits(), T0 + 20).rate.unwrap().remaining, 3);
    }

    /// T0 is 08:00 UTC: the budget starts over in 16 hours.
    const SECONDS_TO_MIDNIGHT: u64 = 16 * 3600;

    fn budgets_only(daily_tokens: Option<u64>, daily_nano_usd: Option<u64>) -> Limits {
        Limits {
            rate: None,
            max_streams: None,
            daily_tokens,
            daily_nano_usd,
        }
    }

    #[test]
    fn a_reservation_lives_fifteen_minutes() {
        let mut state = QuotaState::default();
        let reservation = state.admit(&limits(), STREAM, T0).unwrap();
        assert_eq!(reservation.expires_at_ms, T0 + 15 * 60 * 1000);
        // A long stream (14 minutes) still holds its slot and its reservation...
        let standing = state.standing(&limits(), T0 + 14 * 60 * 1000);
        assert_eq!(
            (standing.open_streams, standing.reserved_tokens, standing.used_tokens),
            (1, 10, 0)
        );
        // ...and at 15 minutes it is taken to have died: charged in full, slot freed.
        let standing = state.standing(&limits(), T0 + 15 * 60 * 1000);
        assert_eq!(
            (standing.open_streams, standing.reserved_tokens, standing.used_tokens),
            (0, 0, 10)
        );
    }

    #[test]
    fn a_worst_case_that_exactly_fills_a_budget_is_admitted() {
        let mut state = QuotaState::default();
        let limits = budgets_only(Some(1_000), Some(1_000_000));
        let exactly = Ask {
            tokens: 1_000,
            stream: false,
            nano_usd: 1_000_000,
        };
        assert!(state.admit(&limits, exactly, T0).is_ok());
        let one_more = Ask {
            tokens: 0,
            stream: false,
            nano_usd: 1,
        };
        assert_eq!(
            state.admit(&limits, one_more, T0),
            Err(Refusal::SpendExhausted {
                retry_after_seconds: STREAM_SLOT_RETRY_SECONDS
            }),
            "only reserved: room again when the reservation settles"
        );
    }

    #[test]
    fn a_budget_spent_refuses_until_midnight_and_one_only_reserved_for_seconds() {
        let mut state = QuotaState::default();
        let limits = budgets_only(Some(100), Some(100_000));
        let ask = Ask {
            tokens: 60,
            stream: false,
            nano_usd: 60_000,
        };
        let first = state.admit(&limits, ask, T0).unwrap();
        assert_eq!(
            state.admit(&limits, ask, T0),
            Err(Refusal::BudgetExhausted {
                retry_after_seconds: STREAM_SLOT_RETRY_SECONDS
            })
        );
        state.finish(
            &limits,
            first.id,
            Spend {
                tokens: 60,
                nano_usd: 10,
            },
            T0,
        );
        assert_eq!(
            state.admit(&limits, ask, T0 + 500),
            Err(Refusal::BudgetExhausted {
                retry_after_seconds: SECONDS_TO_MIDNIGHT
            }),
            "used: not before the next UTC day (rounded up to a whole second)"
        );
        let dollars = budgets_only(None, Some(100_000));
        state.charge(Spend {
            tokens: 0,
            nano_usd: 99_990,
        });
        assert_eq!(
            state.admit(&dollars, ask, T0 + 1_000),
            Err(Refusal::SpendExhausted {
                retry_after_seconds: SECONDS_TO_MIDNIGHT - 1
            })
        );
    }

    #[test]
    fn the_standing_counts_down_to_midnight_and_to_the_window_s_next_slot() {
        let mut state = QuotaState::default();
        assert_eq!(state.standing(&limits(), T0).budget_reset_seconds, SECONDS_TO_MIDNIGHT);
        assert_eq!(
            state.standing(&limits(), T0 + 1_500).budget_reset_seconds,
            SECONDS_TO_MIDNIGHT - 1,
            "rounded up"
        );
        for at in [T0, T0 + 20_000, T0 + 40_000] {
            state.admit(&limits(), SMALL, at).unwrap();
        }
        let rate = state.standing(&limits(), T0 + 45_000).rate.unwrap();
        assert_eq!((rate.remaining, rate.reset_seconds, rate.window_seconds), (0, 15, 60));
        assert_eq!(
            state.admit(&limits(), SMALL, T0 + 45_000),
            Err(Refusal::RateLimited {
                retry_after_seconds: 15
            })
        );
        let usage = state.standing(&limits(), T0 + 45_000).usage_json("alice", "default");
        assert_eq!(usage["tokens"]["reset_seconds"], SECONDS_TO_MIDNIGHT - 45);
        assert_eq!(usage["requests"]["reset_seconds"], 15);
    }

    #[test]
    fn usage_past_the_reservation_is_charged_as_reported() {
        let mut state = QuotaState::default();
        let limits = budgets_only(Some(1_000), Some(1_000_000));
        let reservation = state
            .admit(
                &limits,
                Ask {
                    tokens: 100,
                    stream: false,
                    nano_usd: 100,
                },
                T0,
            )
            .unwrap();
        let over = Spend {
            tokens: 1_500,
            nano_usd: 2_000_000,
        };
        state.finish(&limits, reservation.id, over, T0);
        let standing = state.standing(&limits, T0);
        assert_eq!((standing.used_tokens, standing.used_nano_usd), (1_500, 2_000_000));
        assert_eq!(
            (standing.tokens_remaining(), standing.nano_usd_remaining()),
            (Some(0), Some(0))
        );
        assert_eq!(
            state.admit(&limits, SMALL, T0 + 1),
            Err(Refusal::BudgetExhausted {
                retry_after_seconds: SECONDS_TO_MIDNIGHT
            })
        );
    }
}
