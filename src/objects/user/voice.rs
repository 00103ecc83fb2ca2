//! A user's voice calls, as their object counts them: the calls live now (each one a
//! reservation of the quota, held until the call ends) and the calls made today.

use serde::{Deserialize, Serialize};

use crate::budget::lease::Grant;
use crate::budget::quota::{QuotaState, Spend, DAY_MS, STREAM_SLOT_RETRY_SECONDS};
use crate::error::Refusal;

use super::PoolTerms;

/// How many voice calls a user may have (`VOICE_MAX_CONCURRENT`, `VOICE_SESSIONS_PER_DAY`).
/// Part of the objects' protocol: a field an object does not know is refused, not ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSlots {
    pub max_concurrent: u32,
    pub per_day: u32,
}

/// A live call's charge, carried by a `Renew` of its reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveCharge {
    /// The call's id upstream, so that a block or revocation can end it.
    pub call: String,
    pub issued_at: Option<i64>,
    pub spent: Spend,
    /// What the call holds: two turns' worst case.
    pub hold: Spend,
    /// The shared budgets the call is held in too (leased, as requests are), and the grants
    /// the call object brings after a `NeedLease`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<PoolTerms>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

/// One live call: its reservation, and its id upstream once the call object reported it (so
/// that a block or revocation can end it at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    pub reservation_id: u64,
    #[serde(default)]
    pub call: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceCalls {
    /// The UTC day (days since the epoch) `today` counts.
    pub day: i64,
    pub today: u32,
    pub live: Vec<LiveCall>,
}

impl VoiceCalls {
    pub fn is_empty(&self) -> bool {
        *self == VoiceCalls::default()
    }

    /// Forgets calls whose reservation is gone (settled, or expired charged in full).
    pub fn prune(&mut self, quota: &QuotaState) {
        self.live.retain(|call| quota.holds(call.reservation_id));
    }

    /// Whether one more call may start now; refusals count nothing.
    pub fn check(&mut self, slots: VoiceSlots, now_ms: i64) -> Result<(), Refusal> {
        let today = now_ms.div_euclid(DAY_MS);
        if today > self.day {
            self.day = today;
            self.today = 0;
        }
        // The refusals of the day's requests and of open streams: a live call is one more
        // thing open, and the day's calls a rate (no refusal of their own: wasm size).
        if self.today >= slots.per_day {
            let next_day_ms = (today + 1) * DAY_MS;
            return Err(Refusal::RateLimited {
                retry_after_seconds: ((next_day_ms - now_ms).max(0) as u64).div_ceil(1000),
            });
        }
        if self.live.len() >= slots.max_concurrent as usize {
            return Err(Refusal::TooManyStreams {
                retry_after_seconds: STREAM_SLOT_RETRY_SECONDS,
            });
        }
        Ok(())
    }

    pub fn started(&mut self, reservation_id: u64) {
        self.today = self.today.saturating_add(1);
        self.live.push(LiveCall {
            reservation_id,
            call: None,
        });
    }

    /// A call that never started upstream (its creation failed): neither live nor one of
    /// the day's calls.
    pub fn cancelled(&mut self, reservation_id: u64) {
        let before = self.live.len();
        self.live.retain(|live| live.reservation_id != reservation_id);
        if self.live.len() < before {
            self.today = self.today.saturating_sub(1);
        }
    }

    /// Notes the call's id upstream; says whether the call is still one of the live.
    pub fn attach(&mut self, reservation_id: u64, call: &str) -> bool {
        let Some(live) = self.live.iter_mut().find(|live| live.reservation_id == reservation_id) else {
            return false;
        };
        if live.call.is_none() {
            live.call = Some(call.to_owned());
        }
        true
    }

    /// The ids of the live calls, to end them (a block, a revocation).
    pub fn ids(&self) -> Vec<String> {
        self.live.iter().filter_map(|live| live.call.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::alerts::AlertRules;
    use crate::budget::lease::LeaseAsk;
    use crate::budget::quota::{Ask, Limits};
    use crate::objects::user::{Finished, PlanAsk, UserCommand, UserRecord, UserReply};
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;
    const SLOTS: VoiceSlots = VoiceSlots {
        max_concurrent: 1,
        per_day: 2,
    };

    fn dollars(budget: u64) -> Limits {
        Limits {
            rate: None,
            max_streams: None,
            daily_tokens: None,
            daily_nano_usd: Some(budget),
        }
    }

    fn admit_call(record: &mut UserRecord, limits: Limits, hold: Spend, now_ms: i64) -> UserReply {
        admit_leased_call(record, limits, hold, now_ms, Leased::default())
    }

    /// A call's shared budgets and the grants brought for them.
    #[derive(Default)]
    struct Leased {
        leases: Vec<PoolTerms>,
        grants: Vec<Grant>,
    }

    fn admit_leased_call(
        record: &mut UserRecord,
        limits: Limits,
        hold: Spend,
        now_ms: i64,
        leased: Leased,
    ) -> UserReply {
        let command = UserCommand::Admit {
            issued_at: Some(now_ms / 1000),
            ask: Some(Ask {
                tokens: hold.tokens,
                stream: false,
                nano_usd: hold.nano_usd,
            }),
            limits,
            alerts: AlertRules::default(),
            now_ms,
            continues: None,
            references: vec![],
            plan: Some(PlanAsk {
                checked: "default".into(),
                claimed: None,
            }),
            sub: Some("alice".into()),
            voice: Some(SLOTS),
            leases: leased.leases,
            grants: leased.grants,
        };
        record.apply(&[], &command).0
    }

    fn charge(record: &mut UserRecord, id: u64, limits: Limits, spent: Spend, hold: Spend) -> UserReply {
        charge_leased(record, id, limits, spent, hold, Leased::default())
    }

    fn charge_leased(
        record: &mut UserRecord,
        id: u64,
        limits: Limits,
        spent: Spend,
        hold: Spend,
        leased: Leased,
    ) -> UserReply {
        let command = UserCommand::Renew {
            reservation_id: id,
            limits,
            now_ms: NOW + 1,
            charge: Some(LiveCharge {
                call: "rtc_1".into(),
                issued_at: Some(NOW / 1000),
                spent,
                hold,
                leases: leased.leases,
                grants: leased.grants,
            }),
        };
        record.apply(&[], &command).0
    }

    fn finish(record: &mut UserRecord, id: u64, limits: Limits, spent: Spend) {
        let finished = Finished {
            reservation_id: id,
            used_tokens: spent.tokens,
            limits,
            now_ms: NOW + 2,
            created_response: None,
            created_items: vec![],
            used_nano_usd: spent.nano_usd,
        };
        record.apply(&[], &UserCommand::Finish(finished));
    }

    fn reservation_id(reply: &UserReply) -> u64 {
        let UserReply::Admitted {
            reservation: Some(reservation),
            ..
        } = reply
        else {
            panic!("not admitted: {reply:?}");
        };
        reservation.id
    }

    /// The pool's grants for `asks` (a pool refusing any of them: `None`).
    fn grants_of(pool: &mut UserRecord, limits: Limits, asks: Vec<LeaseAsk>) -> Option<Vec<Grant>> {
        asks.into_iter()
            .map(|ask| {
                let command = UserCommand::Lease {
                    ask,
                    limits,
                    alerts: AlertRules::default(),
                    now_ms: NOW,
                };
                if let UserReply::Leased { grant, .. } = pool.apply(&[], &command).0 {
                    Some(grant)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_call_under_a_shared_budget_is_held_within_its_leases_and_ends_when_the_pool_is_spent() {
        let global = dollars(100);
        let terms = || {
            vec![PoolTerms {
                pool: "global".into(),
                limits: global,
            }]
        };
        let (mut user, mut pool) = (UserRecord::default(), UserRecord::default());
        let (own, hold) = (
            dollars(1_000),
            Spend {
                tokens: 0,
                nano_usd: 40,
            },
        );
        let leased = |grants| Leased {
            leases: terms(),
            grants,
        };
        let UserReply::NeedLease { leases } = admit_leased_call(&mut user, own, hold, NOW, leased(vec![])) else {
            panic!("a call with no lease must ask for one");
        };
        let grants = grants_of(&mut pool, global, leases).unwrap();
        let id = reservation_id(&admit_leased_call(&mut user, own, hold, NOW, leased(grants)));
        assert_eq!(user.voice.today, 1, "asked twice, counted once");
        // Each turn spends at most one worst case (half the hold). Spending tops the hold up
        // past the lease: the charge is made, and the call goes on only with a top-up.
        let turn = Spend {
            tokens: 0,
            nano_usd: 20,
        };
        let covered = |user: &UserRecord| user.quota.committed().nano_usd <= user.leases[0].granted.nano_usd;
        let mut charged = 0;
        loop {
            charged += turn.nano_usd;
            let reply = charge_leased(&mut user, id, own, turn, hold, leased(vec![]));
            if let UserReply::NeedLease { leases } = reply {
                let Some(grants) = grants_of(&mut pool, global, leases) else {
                    break;
                };
                let topped_up = charge_leased(&mut user, id, own, Spend::default(), hold, leased(grants));
                assert!(
                    matches!(topped_up, UserReply::Renewed { expires_at_ms: Some(_) }),
                    "{topped_up:?}"
                );
            } else {
                assert!(
                    matches!(reply, UserReply::Renewed { expires_at_ms: Some(_) }),
                    "{reply:?}"
                );
            }
            assert!(covered(&user), "the call goes on with its hold leased");
        }
        // The pool refused: the call is hung up, and the one turn that may still run fits.
        assert_eq!(charged, 80);
        assert!(charged + turn.nano_usd <= 100);
    }

    #[test]
    fn a_second_live_call_and_a_call_past_the_day_s_count_are_refused_and_count_nothing() {
        let mut record = UserRecord::default();
        let hold = Spend {
            tokens: 10,
            nano_usd: 10,
        };
        let first = reservation_id(&admit_call(&mut record, dollars(1_000), hold, NOW));
        let refused = admit_call(&mut record, dollars(1_000), hold, NOW);
        assert!(
            matches!(
                refused,
                UserReply::Refused {
                    refusal: Refusal::TooManyStreams { retry_after_seconds: 2 },
                    ..
                }
            ),
            "{refused:?}"
        );
        finish(&mut record, first, dollars(1_000), Spend::default());
        let second = reservation_id(&admit_call(&mut record, dollars(1_000), hold, NOW + 3));
        finish(&mut record, second, dollars(1_000), Spend::default());
        assert!(matches!(
            admit_call(&mut record, dollars(1_000), hold, NOW + 4),
            UserReply::Refused {
                refusal: Refusal::RateLimited { .. },
                ..
            }
        ));
        assert_eq!(record.voice.today, 2, "refusals count nothing");
        assert!(matches!(
            admit_call(&mut record, dollars(1_000), hold, NOW + DAY_MS),
            UserReply::Admitted { .. }
        ));
    }

    #[test]
    fn a_call_that_could_not_be_created_upstream_is_not_one_of_the_day_s_calls() {
        let mut record = UserRecord::default();
        let hold = Spend {
            tokens: 10,
            nano_usd: 10,
        };
        let failed = reservation_id(&admit_call(&mut record, dollars(1_000), hold, NOW));
        let cancel = UserCommand::Cancel {
            reservation_id: failed,
            limits: dollars(1_000),
            now_ms: NOW + 1,
        };
        record.apply(&[], &cancel);
        assert_eq!((record.voice.today, record.voice.live.len()), (0, 0));
        // Both of the day's calls are still there to make.
        for at in [NOW + 2, NOW + 3] {
            let id = reservation_id(&admit_call(&mut record, dollars(1_000), hold, at));
            finish(&mut record, id, dollars(1_000), Spend::default());
        }
        // A settled call is not cancelled by a late `Cancel` of its id.
        record.apply(&[], &cancel);
        assert_eq!(record.voice.today, 2);
    }

    #[test]
    fn a_block_lists_the_live_calls_to_end_and_their_next_charge_is_refused() {
        let mut record = UserRecord::default();
        let hold = Spend {
            tokens: 10,
            nano_usd: 10,
        };
        let id = reservation_id(&admit_call(&mut record, dollars(1_000), hold, NOW));
        assert_eq!(
            charge(&mut record, id, dollars(1_000), Spend::default(), hold),
            UserReply::Renewed {
                expires_at_ms: Some(NOW + 1 + crate::budget::quota::RESERVATION_TIMEOUT_MS)
            }
        );
        let (reply, _) = record.apply(&[], &UserCommand::Block { at: NOW / 1000 });
        assert!(
            matches!(reply, UserReply::Status { ref calls, .. } if calls == &["rtc_1".to_owned()]),
            "{reply:?}"
        );
        assert_eq!(
            charge(&mut record, id, dollars(1_000), Spend { tokens: 1, nano_usd: 1 }, hold),
            UserReply::Revoked
        );
        assert_eq!(
            record.quota.used_nano_usd, 1,
            "what it used before the block is charged"
        );
    }

    #[test]
    fn a_status_lists_the_live_calls_for_the_console_and_forgets_a_settled_one() {
        let mut record = UserRecord::default();
        let hold = Spend {
            tokens: 10,
            nano_usd: 10,
        };
        let id = reservation_id(&admit_call(&mut record, dollars(1_000), hold, NOW));
        charge(&mut record, id, dollars(1_000), Spend::default(), hold);
        let status = UserCommand::Status {
            limits: dollars(1_000),
            now_ms: NOW + 2,
            plan_limits: Default::default(),
        };
        let (reply, _) = record.apply(&[], &status);
        assert!(
            matches!(reply, UserReply::Status { ref calls, .. } if calls == &["rtc_1".to_owned()]),
            "{reply:?}"
        );
        finish(&mut record, id, dollars(1_000), Spend::default());
        let (reply, _) = record.apply(&[], &status);
        assert!(
            matches!(reply, UserReply::Status { ref calls, .. } if calls.is_empty()),
            "{reply:?}"
        );
    }

    proptest! {
        /// The guarantee: a call holds two turns' worst case; at the first charge the budget
        /// cannot top up, it hangs up, and at most one more response (started before the hang-up
        /// took effect) is charged or settled at its worst case. Whatever the usages (each at
        /// most the worst case), the user never spends past the budget.
        #[test]
        fn maximal_usages_never_charge_past_the_budget(
            budget in 1u64..5_000_000,
            turn in 1u64..400_000,
            usages in proptest::collection::vec(0u64..=100, 1..60),
            last_one_in_flight in any::<bool>(),
            spent_before in 0u64..2_000_000,
        ) {
            let limits = dollars(budget);
            let mut record = UserRecord::default();
            record.quota.used_nano_usd = spent_before.min(budget);
            record.quota.day = NOW.div_euclid(DAY_MS);
            let turn = Spend { tokens: 0, nano_usd: turn };
            let hold = Spend { tokens: 0, nano_usd: 2 * turn.nano_usd };
            let UserReply::Admitted { reservation: Some(reservation), .. } = admit_call(&mut record, limits, hold, NOW) else {
                prop_assert!(record.quota.used_nano_usd + hold.nano_usd > budget, "refused only without room");
                return Ok(());
            };
            let mut hung_up = false;
            for percent in usages {
                // Mostly the maximal usage; any usage within the worst case.
                let used = Spend { tokens: 0, nano_usd: turn.nano_usd * percent.max(60) / 100 };
                let reply = charge(&mut record, reservation.id, limits, used, hold);
                if hung_up {
                    break; // the one response that started before the hang-up
                }
                hung_up = reply == UserReply::Renewed { expires_at_ms: None };
            }
            // A response may be under way when the call ends: settled at its worst case.
            let settle = if last_one_in_flight && !hung_up { turn } else { Spend::default() };
            finish(&mut record, reservation.id, limits, settle);
            prop_assert!(record.quota.used_nano_usd <= budget, "spent {} of {budget}", record.quota.used_nano_usd);
            prop_assert!(record.voice.live.is_empty(), "the call's slot is free");
        }
    }
}
