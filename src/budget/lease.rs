//! Leases of a shared daily budget (the global one, the guests'), as arithmetic on stored
//! state and "now"; no I/O here.
//!
//! The object that admits a request (the user's, or a guest client's) holds a `Lease` of each
//! shared budget and admits against it alone; it asks the budget's object (`LeasePool`) only
//! to top it up or to give back what it did not use. So a shared object is called once per
//! lease, not once per request.
//!
//! - Grants never add up to more than the budget: the pool grants only from what it has not
//!   leased, and a holder gives back only what its own charges and reservations leave free.
//!   Nothing can overrun the budget, whatever is lost: a grant lost on its way, or a give-back
//!   lost on its way, is budget stranded until the day ends, never budget spent twice. A
//!   give-back is taken off the holder's lease before it is sent and never sent again.
//! - Leases shrink as the budget runs low: a grant is at most `1/LEASE_SHARE` of what is still
//!   unleased (never less than the request needs), so the last percent is spread thin.
//! - A holder idle for `LEASE_IDLE_MS` gives back what its lease has free (its alarm), and
//!   every lease ends with its UTC day: the pool starts the new day with nothing leased.

use serde::{Deserialize, Serialize};

use crate::budget::quota::{Limits, Spend, Standing, DAY_MS};
use crate::error::Refusal;

/// A grant is at most this fraction of what the pool has not leased yet.
pub const LEASE_SHARE: u64 = 64;
/// A holder's first lease of the day covers this many requests like the one in hand; each
/// top-up before it falls idle doubles it (at most `MAX_DOUBLINGS` times), so a busy user
/// calls the pool a few times a day and a passing one holds little.
pub const FIRST_LEASE_REQUESTS: u64 = 32;
const MAX_DOUBLINGS: u32 = 8;
/// A holder that admitted nothing for this long gives back what its lease has free.
pub const LEASE_IDLE_MS: i64 = 60_000;
/// A holder whose clock is still on a day the pool has left is refused this long: its
/// Worker's clock crosses midnight too in a moment.
const SKEWED_RETRY_SECONDS: u64 = 1;

/// What a holder asks its pool for, with what it gives back and what it reports.
/// Part of the objects' protocol: a field an object does not know is refused, not ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseAsk {
    /// The shared budget's object.
    pub pool: String,
    /// The holder's UTC day (days since the epoch): a lease is for one day.
    pub day: i64,
    /// The least the holder must get to admit the request in hand (zero: a give-back alone).
    pub need: Spend,
    /// The most it may use: its own budget's room (what a user may not spend is not leased).
    pub most: Spend,
    /// Taken off its lease already: the pool may grant it to others.
    pub give_back: Spend,
    /// What it spent since its last report, and what it has reserved now and had then.
    pub spent: Spend,
    pub reserved: Spend,
    pub reserved_before: Spend,
}

/// Budget granted to one holder for one day. Ids rise with each grant of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The shared budget's object.
    pub pool: String,
    pub id: u64,
    pub day: i64,
    pub amount: Spend,
}

/// The shared budget's side: what it leased today, and what holders last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasePool {
    pub day: i64,
    /// Granted today and not given back: what holders may spend, spent or not.
    pub leased: Spend,
    /// Of `leased`, spent and reserved, as holders last reported them (for operators).
    pub spent: Spend,
    pub reserved: Spend,
    pub next_grant: u64,
}

/// Where a shared budget stands, for `/admin/budget` and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStanding {
    /// For alerts and 429s: `used` as reported, and `reserved` all the rest that is leased,
    /// so that "used + reserved" is all the budget committed.
    pub standing: Standing,
    /// Reserved by requests under way, as reported.
    pub reserved: Spend,
    /// Leased and neither spent nor reserved: budget idle in leases.
    pub idle: Spend,
}

impl LeasePool {
    /// Grants `ask` a lease of `limits`' budget (applying its give-back and report first), or
    /// refuses it when what is unleased cannot cover its `need`.
    pub fn lease(&mut self, limits: &Limits, ask: &LeaseAsk, now_ms: i64) -> Result<Grant, Refusal> {
        if ask.day > self.day {
            // Every lease ended with the old day.
            *self = LeasePool {
                day: ask.day,
                next_grant: self.next_grant,
                ..LeasePool::default()
            };
        }
        if ask.day < self.day {
            // Its give-back and report belong to a day that is over here: nothing to apply.
            return Err(Refusal::BudgetExhausted {
                retry_after_seconds: SKEWED_RETRY_SECONDS,
            });
        }
        self.leased = minus(self.leased, ask.give_back);
        self.spent = plus(self.spent, ask.spent);
        self.reserved = plus(minus(self.reserved, ask.reserved_before), ask.reserved);
        let unleased = minus(budget(limits), self.leased);
        let retry_after_seconds = self.retry_after_seconds(now_ms);
        if limits.daily_tokens.is_some() && ask.need.tokens > unleased.tokens {
            return Err(Refusal::BudgetExhausted { retry_after_seconds });
        }
        if limits.daily_nano_usd.is_some() && ask.need.nano_usd > unleased.nano_usd {
            return Err(Refusal::SpendExhausted { retry_after_seconds });
        }
        // Never under the need, which is within what is unleased (checked above).
        let size = |unleased: u64, need: u64, most: u64| need.max(most.min(unleased / LEASE_SHARE));
        let amount = Spend {
            tokens: size(unleased.tokens, ask.need.tokens, ask.most.tokens) * u64::from(limits.daily_tokens.is_some()),
            nano_usd: size(unleased.nano_usd, ask.need.nano_usd, ask.most.nano_usd)
                * u64::from(limits.daily_nano_usd.is_some()),
        };
        self.leased = plus(self.leased, amount);
        let grant = Grant {
            pool: ask.pool.clone(),
            id: self.next_grant,
            day: self.day,
            amount,
        };
        self.next_grant = self.next_grant.wrapping_add(1);
        Ok(grant)
    }

    /// A refused holder may find budget given back by idle holders within `LEASE_IDLE_MS`;
    /// when nothing is leased, nothing can come back before the day ends.
    fn retry_after_seconds(&self, now_ms: i64) -> u64 {
        let next_day_ms = (self.day + 1).saturating_mul(DAY_MS);
        let until_tomorrow = next_day_ms.saturating_sub(now_ms).max(0).unsigned_abs().div_ceil(1000);
        if self.leased == Spend::default() {
            until_tomorrow
        } else {
            until_tomorrow.min(LEASE_IDLE_MS.unsigned_abs() / 1000)
        }
    }

    /// Where the budget stands at `now_ms` (a day with no lease yet shows nothing leased).
    pub fn standing(&self, limits: &Limits, now_ms: i64) -> PoolStanding {
        let today = now_ms.div_euclid(DAY_MS);
        let pool = if today > self.day { LeasePool::default() } else { *self };
        // Reports come at different times: what they add up to is bounded by what is leased.
        let spent = Spend {
            tokens: pool.spent.tokens.min(pool.leased.tokens),
            nano_usd: pool.spent.nano_usd.min(pool.leased.nano_usd),
        };
        let reserved = Spend {
            tokens: pool.reserved.tokens.min(pool.leased.tokens - spent.tokens),
            nano_usd: pool.reserved.nano_usd.min(pool.leased.nano_usd - spent.nano_usd),
        };
        let next_day_ms = (today + 1).saturating_mul(DAY_MS);
        PoolStanding {
            standing: Standing {
                rate: None,
                max_streams: None,
                open_streams: 0,
                daily_tokens: limits.daily_tokens,
                used_tokens: spent.tokens,
                reserved_tokens: pool.leased.tokens - spent.tokens,
                budget_reset_seconds: next_day_ms.saturating_sub(now_ms).max(0).unsigned_abs().div_ceil(1000),
                daily_nano_usd: limits.daily_nano_usd,
                used_nano_usd: spent.nano_usd,
                reserved_nano_usd: pool.leased.nano_usd - spent.nano_usd,
            },
            reserved,
            idle: minus(pool.leased, plus(spent, reserved)),
        }
    }
}

/// The holder's side: its lease of one pool for one day, and what it last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The shared budget's object.
    pub pool: String,
    pub day: i64,
    pub granted: Spend,
    /// The last grant deposited: a grant is deposited once, and an older one arriving late
    /// is left stranded (safe) rather than risk counting one twice.
    pub last_grant: Option<u64>,
    /// The pool's budget, so the alarm can give back without a request in hand.
    pub limits: Limits,
    /// The holder's spend and reservations at its last report.
    pub reported_spent: Spend,
    pub reported_reserved: Spend,
    /// The last admission against it: idle `LEASE_IDLE_MS` after, its free part goes back.
    pub active_ms: i64,
    /// Top-ups since it was last idle: each doubles the next.
    #[serde(default)]
    pub streak: u32,
    /// The most its last top-up asked for, and how long it may then sit idle before its free
    /// part goes back: `LEASE_IDLE_MS` when the pool granted it all, less in proportion when
    /// the pool was short (down to a twelfth), so that as a budget runs out, what users' objects
    /// hold unused goes back within seconds.
    #[serde(default)]
    pub asked_most: Spend,
    #[serde(default = "full_idle")]
    pub idle_ms: i64,
}

fn full_idle() -> i64 {
    LEASE_IDLE_MS
}

impl Lease {
    pub fn new(pool: &str, limits: Limits, day: i64) -> Self {
        Lease {
            pool: pool.to_owned(),
            day,
            granted: Spend::default(),
            last_grant: None,
            limits,
            reported_spent: Spend::default(),
            reported_reserved: Spend::default(),
            active_ms: 0,
            streak: 0,
            asked_most: Spend::default(),
            idle_ms: LEASE_IDLE_MS,
        }
    }

    /// Starts the holder's `day` afresh (the old day's lease ended with it).
    pub fn roll(&mut self, day: i64) {
        if day > self.day {
            *self = Lease::new(&self.pool, self.limits, day);
        }
    }

    /// What it lacks to cover `committed` (the holder's spend and reservations of the day,
    /// the request in hand included); `None` when the lease covers it.
    pub fn shortfall(&self, committed: Spend) -> Option<Spend> {
        let need = Spend {
            tokens: committed.tokens.saturating_sub(self.granted.tokens)
                * u64::from(self.limits.daily_tokens.is_some()),
            nano_usd: committed.nano_usd.saturating_sub(self.granted.nano_usd)
                * u64::from(self.limits.daily_nano_usd.is_some()),
        };
        (need != Spend::default()).then_some(need)
    }

    /// What is free: granted and neither spent nor reserved.
    pub fn free(&self, committed: Spend) -> Spend {
        minus(self.granted, committed)
    }

    /// The most a top-up for a request of worst case `request` should bring, within `room`
    /// (what the holder's own budget leaves it): `FIRST_LEASE_REQUESTS` such requests,
    /// doubled by each top-up since the holder was last idle.
    pub fn top_up_size(&mut self, request: Spend, room: Spend) -> Spend {
        let requests = FIRST_LEASE_REQUESTS << self.streak.min(MAX_DOUBLINGS);
        self.streak = self.streak.saturating_add(1);
        Spend {
            tokens: request.tokens.saturating_mul(requests).min(room.tokens),
            nano_usd: request.nano_usd.saturating_mul(requests).min(room.nano_usd),
        }
    }

    /// The ask for `need` (zero: none), giving back `give_back` (taken off the lease now:
    /// it is never sent twice) and reporting `spent` and `reserved` (the day's).
    pub fn ask(&mut self, need: Spend, most: Spend, give_back: Spend, spent: Spend, reserved: Spend) -> LeaseAsk {
        self.granted = minus(self.granted, give_back);
        if need != Spend::default() {
            self.asked_most = plus(most, need);
        }
        let ask = LeaseAsk {
            pool: self.pool.clone(),
            day: self.day,
            need,
            most: plus(most, need),
            give_back,
            spent: minus(spent, self.reported_spent),
            reserved,
            reserved_before: self.reported_reserved,
        };
        self.reported_spent = spent;
        self.reported_reserved = reserved;
        ask
    }

    /// Adds a grant of the lease's day not deposited before; says whether it did.
    pub fn deposit(&mut self, grant: &Grant) -> bool {
        let fresh = grant.day == self.day && self.last_grant.is_none_or(|last| grant.id > last);
        if fresh {
            self.granted = plus(self.granted, grant.amount);
            self.last_grant = Some(grant.id);
            // The share of what it asked that the pool had: all of it, or the pool is short.
            let share =
                |got: u64, asked: u64| (asked > 0).then(|| u128::from(got.min(asked)) * 1000 / u128::from(asked));
            let tokens =
                share(grant.amount.tokens, self.asked_most.tokens).filter(|_| self.limits.daily_tokens.is_some());
            let dollars =
                share(grant.amount.nano_usd, self.asked_most.nano_usd).filter(|_| self.limits.daily_nano_usd.is_some());
            let permille = tokens.into_iter().chain(dollars).min().unwrap_or(1000);
            let idle = i128::from(LEASE_IDLE_MS) * permille as i128 / 1000;
            self.idle_ms = (idle as i64).clamp(LEASE_IDLE_MS / 12, LEASE_IDLE_MS);
        }
        fresh
    }

    /// The give-back of an idle holder at `now_ms`: its free part, if it has one.
    pub fn idle_give_back(&self, committed: Spend, now_ms: i64) -> Option<Spend> {
        let free = self.free(committed);
        let idle = now_ms.saturating_sub(self.active_ms) >= self.idle_ms;
        (idle && free != Spend::default()).then_some(free)
    }

    /// When the holder falls idle, if it holds anything it could give back.
    pub fn idle_at(&self, committed: Spend) -> Option<i64> {
        (self.free(committed) != Spend::default()).then_some(self.active_ms.saturating_add(self.idle_ms))
    }
}

/// How long an isolate takes a pool's refusal as its answer to asks as big: once a budget is
/// leased out, every request would otherwise call its object only to be refused, and the one
/// object is the ceiling again. Short: idle leases come back within `LEASE_IDLE_MS`.
pub const REFUSAL_MEMO_MS: i64 = 2_000;

/// The pools' recent refusals, as an isolate remembers them, with the standing they showed
/// (what was not leased then).
#[derive(Debug, Default)]
pub struct RefusalMemo {
    refused: Vec<(String, i64, Standing, Refusal)>,
}

impl RefusalMemo {
    /// The refusal `pool` gave at `now_ms`, and its standing then.
    pub fn remember(&mut self, pool: &str, standing: Standing, refusal: Refusal, now_ms: i64) {
        self.refused.retain(|(name, ..)| name != pool);
        self.refused.push((pool.to_owned(), now_ms, standing, refusal));
    }

    /// The refusal `ask` would get, if its pool refused within `REFUSAL_MEMO_MS` while it
    /// had less unleased than `ask` needs.
    pub fn refusal(&self, ask: &LeaseAsk, now_ms: i64) -> Option<(Refusal, Standing)> {
        let (_, _, standing, refusal) = self.refused.iter().find(|(pool, at_ms, ..)| {
            *pool == ask.pool && (0..REFUSAL_MEMO_MS).contains(&now_ms.saturating_sub(*at_ms))
        })?;
        let short = |need: u64, remaining: Option<u64>| remaining.is_some_and(|remaining| need > remaining);
        (short(ask.need.tokens, standing.tokens_remaining()) || short(ask.need.nano_usd, standing.nano_usd_remaining()))
            .then_some((*refusal, *standing))
    }
}

/// A budget's limits as a `Spend` (no limit: nothing to lease in that unit).
fn budget(limits: &Limits) -> Spend {
    Spend {
        tokens: limits.daily_tokens.unwrap_or(0),
        nano_usd: limits.daily_nano_usd.unwrap_or(0),
    }
}

pub fn plus(a: Spend, b: Spend) -> Spend {
    Spend {
        tokens: a.tokens.saturating_add(b.tokens),
        nano_usd: a.nano_usd.saturating_add(b.nano_usd),
    }
}

pub fn minus(a: Spend, b: Spend) -> Spend {
    Spend {
        tokens: a.tokens.saturating_sub(b.tokens),
        nano_usd: a.nano_usd.saturating_sub(b.nano_usd),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 20_000;
    const NOW: i64 = DAY * DAY_MS + 3_600_000;

    fn budget_of(tokens: u64) -> Limits {
        Limits {
            rate: None,
            max_streams: None,
            daily_tokens: Some(tokens),
            daily_nano_usd: None,
        }
    }

    fn tokens(tokens: u64) -> Spend {
        Spend { tokens, nano_usd: 0 }
    }

    fn ask(need: u64, most: u64, give_back: u64) -> LeaseAsk {
        LeaseAsk {
            pool: "global".into(),
            day: DAY,
            need: tokens(need),
            most: tokens(most),
            give_back: tokens(give_back),
            ..LeaseAsk::default()
        }
    }

    /// A holder's lease of `limits`, with the pool's grant for `need` deposited.
    fn topped_up(pool: &mut LeasePool, limits: Limits, lease: &mut Lease, committed: Spend) -> Result<(), Refusal> {
        let Some(need) = lease.shortfall(committed) else {
            return Ok(());
        };
        let ask = lease.ask(
            need,
            tokens(u64::MAX),
            Spend::default(),
            Spend::default(),
            Spend::default(),
        );
        let grant = pool.lease(&limits, &ask, NOW)?;
        assert!(lease.deposit(&grant));
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Holder `.0` commits `.1` more tokens (a request admitted against its lease).
        Spend(usize, u64),
        /// Holder `.0` gives back what is free.
        GiveBack(usize),
        /// The pool's next grant to holder `.0` for `.1` is lost on its way.
        LostGrant(usize, u64),
        /// Holder `.0`'s give-back is lost on its way.
        LostGiveBack(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..8usize, 1..5_000u64).prop_map(|(holder, cost)| Step::Spend(holder, cost)),
            (0..8usize).prop_map(Step::GiveBack),
            (0..8usize, 1..5_000u64).prop_map(|(holder, cost)| Step::LostGrant(holder, cost)),
            (0..8usize).prop_map(Step::LostGiveBack),
        ]
    }

    proptest! {
        /// Whatever holders ask, give back or lose, what they can spend never adds up to
        /// more than the budget, and every grant covers its need within what was unleased.
        #[test]
        fn grants_never_add_up_to_more_than_the_budget(
            budget in 1..200_000u64,
            steps in prop::collection::vec(step(), 1..200),
        ) {
            let limits = budget_of(budget);
            let mut pool = LeasePool::default();
            let mut leases = vec![Lease::new("global", limits, DAY); 8];
            let mut committed = [Spend::default(); 8];
            for step in steps {
                match step {
                    Step::Spend(holder, cost) => {
                        let wanted = plus(committed[holder], tokens(cost));
                        let unleased = budget - pool.leased.tokens;
                        match topped_up(&mut pool, limits, &mut leases[holder], wanted) {
                            Ok(()) => committed[holder] = wanted,
                            Err(_) => prop_assert!(wanted.tokens - leases[holder].granted.tokens > unleased),
                        }
                    }
                    Step::GiveBack(holder) => {
                        let free = leases[holder].free(committed[holder]);
                        let ask = leases[holder].ask(Spend::default(), Spend::default(), free, Spend::default(), Spend::default());
                        pool.lease(&limits, &ask, NOW).unwrap();
                    }
                    Step::LostGrant(_, cost) => {
                        let lost = ask(cost, cost, 0);
                        let _ = pool.lease(&limits, &lost, NOW);
                    }
                    Step::LostGiveBack(holder) => {
                        let free = leases[holder].free(committed[holder]);
                        leases[holder].ask(Spend::default(), Spend::default(), free, Spend::default(), Spend::default());
                    }
                }
                let spendable: u64 = leases.iter().map(|lease| lease.granted.tokens).sum();
                let spent: u64 = committed.iter().map(|c| c.tokens).sum();
                prop_assert!(spent <= spendable, "a holder committed past its lease");
                prop_assert!(spendable <= pool.leased.tokens, "holders hold more than the pool leased");
                prop_assert!(pool.leased.tokens <= budget, "the pool leased more than the budget");
            }
        }

        /// A grant covers the need, is at most what is unleased, and when the need is small
        /// at most a `LEASE_SHARE`th of it: leases shrink as the budget runs low.
        #[test]
        fn grants_cover_the_need_and_shrink_with_what_is_left(
            budget in 1..u64::MAX / 2,
            leased in 0..100u64,
            need in 0..u64::MAX / 2,
            most in 0..u64::MAX,
        ) {
            let limits = budget_of(budget);
            let mut pool = LeasePool { day: DAY, leased: tokens(budget / 100 * leased), ..LeasePool::default() };
            let unleased = budget - pool.leased.tokens;
            match pool.lease(&limits, &ask(need, most, 0), NOW) {
                Ok(grant) => {
                    prop_assert!(grant.amount.tokens >= need && grant.amount.tokens <= unleased);
                    prop_assert!(grant.amount.tokens <= need.max(unleased / LEASE_SHARE));
                    prop_assert!(grant.amount.tokens <= need.max(most));
                }
                Err(refusal) => {
                    prop_assert!(need > unleased);
                    let exhausted = matches!(refusal, Refusal::BudgetExhausted { .. });
                    prop_assert!(exhausted);
                }
            }
        }
    }

    #[test]
    fn a_grant_is_deposited_once_and_a_late_older_one_is_left_stranded() {
        let limits = budget_of(1_000);
        let mut pool = LeasePool::default();
        let mut lease = Lease::new("global", limits, DAY);
        let first = pool.lease(&limits, &ask(10, 10, 0), NOW).unwrap();
        let second = pool.lease(&limits, &ask(10, 10, 0), NOW).unwrap();
        assert!(lease.deposit(&second));
        assert!(!lease.deposit(&second), "the same grant twice");
        assert!(!lease.deposit(&first), "an older grant after a newer one");
        assert_eq!(lease.granted, tokens(10));
        assert_eq!(pool.leased, tokens(20), "the older one is stranded, not spendable");
    }

    #[test]
    fn leases_end_with_the_day_and_a_day_that_is_over_is_refused() {
        let limits = budget_of(1_000);
        let mut pool = LeasePool::default();
        pool.lease(&limits, &ask(900, 900, 0), NOW).unwrap();
        assert!(pool.lease(&limits, &ask(200, 200, 0), NOW).is_err());
        let tomorrow = LeaseAsk {
            day: DAY + 1,
            ..ask(200, 200, 0)
        };
        let grant = pool.lease(&limits, &tomorrow, NOW + DAY_MS).unwrap();
        assert_eq!((grant.day, pool.leased), (DAY + 1, grant.amount));
        // A holder whose clock is still on yesterday: its give-back is not applied to today.
        let late = ask(0, 0, 900);
        assert_eq!(
            pool.lease(&limits, &late, NOW + DAY_MS),
            Err(Refusal::BudgetExhausted { retry_after_seconds: 1 })
        );
        assert_eq!(pool.leased, grant.amount);
        let mut lease = Lease::new("global", limits, DAY);
        lease.deposit(&grant);
        assert_eq!(
            lease.granted,
            Spend::default(),
            "a grant of another day is not deposited"
        );
        lease.roll(DAY + 1);
        assert!(lease.deposit(&grant));
    }

    #[test]
    fn an_idle_holder_gives_back_only_what_is_free_and_the_pool_reports_it_apart() {
        let limits = budget_of(10_000);
        let mut pool = LeasePool::default();
        let mut lease = Lease::new("global", limits, DAY);
        lease.active_ms = NOW;
        let grant = pool.lease(&limits, &ask(100, 1_000, 0), NOW).unwrap();
        assert_eq!(grant.amount, tokens(156), "10_000 / 64, within the holder's most");
        lease.deposit(&grant);
        let committed = tokens(100);
        assert_eq!(lease.idle_give_back(committed, NOW + LEASE_IDLE_MS - 1), None);
        assert_eq!(lease.idle_at(committed), Some(NOW + LEASE_IDLE_MS));
        let free = lease.idle_give_back(committed, NOW + LEASE_IDLE_MS).unwrap();
        assert_eq!(free, tokens(56));
        let back = lease.ask(Spend::default(), Spend::default(), free, tokens(60), tokens(40));
        assert_eq!(lease.granted, committed);
        pool.lease(&limits, &back, NOW).unwrap();
        let standing = pool.standing(&limits, NOW);
        assert_eq!(
            (standing.standing.used_tokens, standing.reserved, standing.idle),
            (60, tokens(40), tokens(0))
        );
        assert_eq!(standing.standing.tokens_remaining(), Some(10_000 - 100));
    }

    #[test]
    fn an_isolate_takes_a_pool_s_refusal_as_its_answer_to_asks_as_big_for_a_moment() {
        let limits = budget_of(1_000);
        let mut pool = LeasePool::default();
        pool.lease(&limits, &ask(900, 900, 0), NOW).unwrap();
        let refused = pool.lease(&limits, &ask(200, 200, 0), NOW).unwrap_err();
        let mut memo = RefusalMemo::default();
        memo.remember("global", pool.standing(&limits, NOW).standing, refused, NOW);
        let (refusal, standing) = memo.refusal(&ask(200, 200, 0), NOW + 1).unwrap();
        assert_eq!((refusal, standing.tokens_remaining()), (refused, Some(100)));
        assert_eq!(
            memo.refusal(&ask(100, 100, 0), NOW + 1),
            None,
            "the pool has room for it"
        );
        assert_eq!(
            memo.refusal(&ask(200, 200, 0), NOW + REFUSAL_MEMO_MS),
            None,
            "forgotten"
        );
        let other = LeaseAsk {
            pool: "guests".into(),
            ..ask(200, 200, 0)
        };
        assert_eq!(memo.refusal(&other, NOW + 1), None, "another pool");
    }

    #[test]
    fn a_lease_the_pool_was_short_for_goes_back_sooner_when_idle() {
        let limits = budget_of(64_000);
        let mut pool = LeasePool::default();
        let mut plenty = Lease::new("global", limits, DAY);
        let asked = plenty.ask(
            tokens(10),
            tokens(500),
            Spend::default(),
            Spend::default(),
            Spend::default(),
        );
        plenty.deposit(&pool.lease(&limits, &asked, NOW).unwrap());
        assert_eq!(
            (plenty.granted, plenty.idle_ms),
            (tokens(510), LEASE_IDLE_MS),
            "all it asked for"
        );
        let mut short = Lease::new("global", limits, DAY);
        let asked = short.ask(
            tokens(10),
            tokens(10_000),
            Spend::default(),
            Spend::default(),
            Spend::default(),
        );
        short.deposit(&pool.lease(&limits, &asked, NOW).unwrap());
        assert_eq!(short.granted, tokens((64_000 - 510) / 64));
        // 992 of the 10,010 it asked: 99‰ of a minute.
        assert_eq!(short.idle_ms, 5_940);
        assert_eq!(short.idle_at(tokens(10)), Some(short.active_ms + short.idle_ms));
    }

    #[test]
    fn a_dollar_budget_leases_dollars_only() {
        let limits = Limits {
            daily_tokens: None,
            daily_nano_usd: Some(6_400),
            ..budget_of(0)
        };
        let mut pool = LeasePool::default();
        let need = LeaseAsk {
            need: Spend {
                tokens: 0,
                nano_usd: 10,
            },
            most: Spend {
                tokens: u64::MAX,
                nano_usd: u64::MAX,
            },
            ..ask(0, 0, 0)
        };
        let grant = pool.lease(&limits, &need, NOW).unwrap();
        assert_eq!(
            grant.amount,
            Spend {
                tokens: 0,
                nano_usd: 100
            }
        );
        let lease = Lease::new("global", limits, DAY);
        assert_eq!(
            lease.shortfall(Spend {
                tokens: 1_000_000,
                nano_usd: 0
            }),
            None,
            "tokens are not limited"
        );
        let too_much = LeaseAsk {
            need: Spend {
                tokens: 0,
                nano_usd: 6_301,
            },
            ..need
        };
        assert!(matches!(
            pool.lease(&limits, &too_much, NOW),
            Err(Refusal::SpendExhausted { .. })
        ));
    }
}
