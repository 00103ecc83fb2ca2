//! A record's two sides of a leased shared budget (`budget::lease`): as a holder (a user's or
//! a guest client's object admits against the leases it holds) and as the pool (the global
//! or the guests' object grants them).

use crate::budget::alerts::AlertRules;
use crate::budget::lease::{minus, Grant, Lease, LeaseAsk};
use crate::budget::quota::{Ask, Limits, Spend, Standing, DAY_MS};

use super::{PoolTerms, UserRecord, UserReply};

impl UserRecord {
    /// The lease of `terms`' pool, on the holder's day `day` (created empty if none).
    fn lease_of(&mut self, terms: &PoolTerms, day: i64) -> &mut Lease {
        let index = match self.leases.iter().position(|lease| lease.pool == terms.pool) {
            Some(index) => index,
            None => {
                self.leases.push(Lease::new(&terms.pool, terms.limits, day));
                self.leases.len() - 1
            }
        };
        let lease = &mut self.leases[index];
        lease.limits = terms.limits;
        lease.roll(day);
        lease
    }

    /// Deposits the grants the Worker brings, each in its pool's lease.
    pub(super) fn deposit(&mut self, grants: &[Grant], leases: &[PoolTerms], now_ms: i64) {
        // The day only moves forward, as the quota's does.
        let day = self.quota.day.max(now_ms.div_euclid(DAY_MS));
        for grant in grants {
            if let Some(terms) = leases.iter().find(|terms| terms.pool == grant.pool) {
                self.lease_of(terms, day).deposit(grant);
            }
        }
    }

    /// After the user's own limits admitted a request (`standing` counts it): what each lease
    /// lacks to cover it, as asks to the pools; `None` when every lease covers it.
    pub(super) fn lease_shortfalls(
        &mut self,
        leases: &[PoolTerms],
        request: Ask,
        standing: &Standing,
        now_ms: i64,
    ) -> Option<Vec<LeaseAsk>> {
        let committed = self.quota.committed();
        let day = self.quota.day;
        // Reported as it was before this request, which is not admitted yet.
        let mut reported = Reported::of(standing);
        reported.reserved = minus(
            reported.reserved,
            Spend {
                tokens: request.tokens,
                nano_usd: request.nano_usd,
            },
        );
        // What the user may still spend is all a lease needs: more would only sit idle.
        let room = Spend {
            tokens: standing.tokens_remaining().unwrap_or(u64::MAX),
            nano_usd: standing.nano_usd_remaining().unwrap_or(u64::MAX),
        };
        let request = Spend {
            tokens: request.tokens,
            nano_usd: request.nano_usd,
        };
        let mut asks = Vec::new();
        for terms in leases {
            let lease = self.lease_of(terms, day);
            lease.active_ms = lease.active_ms.max(now_ms);
            if let Some(need) = lease.shortfall(committed) {
                let most = lease.top_up_size(request, room);
                asks.push(lease.ask(need, most, Spend::default(), reported.spent, reported.reserved));
            }
        }
        (!asks.is_empty()).then_some(asks)
    }

    /// The leases' free parts of a holder idle since `LEASE_IDLE_MS`, taken off them: the
    /// give-backs its alarm sends (once: a lost one is stranded, never given back twice).
    pub fn idle_give_backs(&mut self, now_ms: i64) -> Vec<(LeaseAsk, Limits)> {
        let pools: Vec<PoolTerms> = self
            .leases
            .iter()
            .map(|lease| PoolTerms {
                pool: lease.pool.clone(),
                limits: lease.limits,
            })
            .collect();
        let mut give_backs = Vec::new();
        for terms in pools {
            // Brings the quota to now (expired reservations charged, the day moved on).
            let standing = self.counting_charges(|record| record.quota.standing(&terms.limits, now_ms));
            let (committed, day, reported) = (self.quota.committed(), self.quota.day, Reported::of(&standing));
            let lease = self.lease_of(&terms, day);
            if let Some(free) = lease.idle_give_back(committed, now_ms) {
                lease.streak = 0;
                let ask = lease.ask(
                    Spend::default(),
                    Spend::default(),
                    free,
                    reported.spent,
                    reported.reserved,
                );
                give_backs.push((ask, terms.limits));
            }
        }
        // A lease of a day that is over holds nothing: forget it.
        let today = self.quota.day;
        self.leases
            .retain(|lease| lease.day == today && lease.granted != Spend::default());
        give_backs
    }

    /// When the alarm should look for idle leases to give back, if any holds something free.
    pub fn next_give_back_ms(&self) -> Option<i64> {
        let committed = self.quota.committed();
        self.leases
            .iter()
            .filter(|lease| lease.day == self.quota.day)
            .filter_map(|lease| lease.idle_at(committed))
            .min()
    }

    /// The pool's side: applies a holder's give-back and report, and grants its ask or
    /// refuses it with the budget's standing.
    pub(super) fn lease(&mut self, ask: &LeaseAsk, limits: &Limits, alerts: &AlertRules, now_ms: i64) -> UserReply {
        let pool = self.pool.get_or_insert_default();
        let granted = pool.lease(limits, ask, now_ms);
        let standing = pool.standing(limits, now_ms).standing;
        match granted {
            Ok(grant) => UserReply::Leased {
                grant,
                alert: self.alerts.on_admit(alerts, &standing, now_ms),
            },
            Err(refusal) => UserReply::Refused { refusal, standing },
        }
    }
}

/// What a holder reports: the day's spend, and its reservations now.
struct Reported {
    spent: Spend,
    reserved: Spend,
}

impl Reported {
    fn of(standing: &Standing) -> Self {
        Reported {
            spent: Spend {
                tokens: standing.used_tokens,
                nano_usd: standing.used_nano_usd,
            },
            reserved: Spend {
                tokens: standing.reserved_tokens,
                nano_usd: standing.reserved_nano_usd,
            },
        }
    }
}
