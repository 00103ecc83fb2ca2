//! What a user's Durable Object (one per verified `sub`) stores and answers. The edge only
//! moves these values between the Worker and the object; the decisions are made here.
//!
//! The same record type serves the global budget object, with limits that only set a budget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::guest::MintWindow;
use crate::budget::alerts::{AlertRules, AlertState};
use crate::budget::lease::{Grant, Lease, LeasePool, PoolStanding};
use crate::budget::plans::{claimed_plan, PlanChoice};
use crate::budget::quota::{Ask, Limits, QuotaState, Spend, DAY_MS};
use crate::day::Day;
use crate::objects::owned_responses::OwnedResponses;
use crate::objects::usage_index::UsageOutbox;

mod leases;
mod messages;
mod voice;
pub use messages::{Answer, Delivery, Finished, PlanAsk, PoolTerms, UserCommand, UserReply};
use voice::VoiceCalls;
pub use voice::{LiveCharge, VoiceSlots};

/// The object that holds the budgets all users share (`GLOBAL_DAILY_TOKEN_BUDGET`,
/// `GLOBAL_DAILY_BUDGET_USD`).
pub const GLOBAL_OBJECT_NAME: &str = "global";
/// The object that holds the budget all guests share (`GLOBAL_GUEST_DAILY_BUDGET_USD`).
pub const GUESTS_OBJECT_NAME: &str = "guests";

/// The name of a user's object; prefixed so that no `sub` can name the global one.
pub fn user_object_name(sub: &str) -> String {
    format!("user:{sub}")
}

/// The UTC day (`YYYY-MM-DD`) of a time in milliseconds.
pub fn utc_day(now_ms: i64) -> String {
    Day::of_millis(now_ms).to_string()
}

/// The fields of an `Admit` command, borrowed.
struct AdmitAsk<'a> {
    issued_at: Option<i64>,
    ask: Option<Ask>,
    limits: &'a Limits,
    alerts: &'a AlertRules,
    now_ms: i64,
    continues: Option<&'a str>,
    references: &'a [String],
    plan: Option<&'a PlanAsk>,
    sub: Option<&'a str>,
    voice: Option<VoiceSlots>,
    leases: &'a [PoolTerms],
    grants: &'a [Grant],
}

/// The stored state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub quota: QuotaState,
    #[serde(default)]
    pub alerts: AlertState,
    /// The stored responses this user created, which only they may continue.
    #[serde(default, skip_serializing_if = "OwnedResponses::is_empty")]
    pub responses: OwnedResponses,
    /// The operator's plan for this user, over any claim (`PUT /admin/users/{sub}/plan`).
    #[serde(default)]
    pub plan_override: Option<String>,
    /// The plan the most recent request's token claimed (or `default` without a claim).
    #[serde(default)]
    pub last_claimed_plan: Option<PlanChoice>,
    /// A client's object: when its guest tokens were minted.
    #[serde(default, skip_serializing_if = "MintWindow::is_empty")]
    pub guest_mints: MintWindow,
    /// When an operator blocked this user (`POST /admin/users/{sub}/block`): while set, every
    /// token of theirs is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_at: Option<i64>,
    /// What this user's object charged and the day indexes do not have yet.
    #[serde(default, skip_serializing_if = "UsageOutbox::is_empty")]
    pub usage_outbox: UsageOutbox,
    /// The user's voice calls: live ones and today's count.
    #[serde(default, skip_serializing_if = "VoiceCalls::is_empty")]
    pub voice: VoiceCalls,
    /// The leases this object holds of shared budgets (one or two: a list, not a map).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// A shared budget's object: what it leased today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<LeasePool>,
}

impl UserRecord {
    /// Applies a delivery and answers what it applied. Says whether the record changed.
    pub fn receive(&mut self, delivery: &Delivery) -> (Answer, bool) {
        let (reply, changed) = self.apply(&delivery.settle, &delivery.command);
        let answer = Answer {
            settled: delivery.settles(),
            reply,
        };
        (answer, changed)
    }

    /// Applies the settlements carried with a command, then the command: a slot or budget
    /// they free is free for it. Says whether the record changed (and so must be stored).
    pub fn apply(&mut self, settle: &[Finished], command: &UserCommand) -> (UserReply, bool) {
        let before = self.clone();
        for finished in settle {
            self.counting_charges(|record| record.finish(finished));
        }
        let reply = self.counting_charges(|record| record.answer(command));
        self.voice.prune(&self.quota);
        let changed = *self != before;
        (reply, changed)
    }

    /// Runs `step` and puts what it charged (settled, or expired and charged in full) in the
    /// outbox for the usage index, each charge under the day it belongs to: a request that
    /// ends after midnight is reported on the day it was made, as the quota charged it.
    fn counting_charges<R>(&mut self, step: impl FnOnce(&mut Self) -> R) -> R {
        let result = step(self);
        for (day, spent) in self.quota.take_charges() {
            self.usage_outbox.add(utc_day(day.saturating_mul(DAY_MS)), spent);
        }
        result
    }

    fn answer(&mut self, command: &UserCommand) -> UserReply {
        match command {
            UserCommand::Admit {
                issued_at,
                ask,
                limits,
                alerts,
                now_ms,
                continues,
                references,
                plan,
                sub,
                voice,
                leases,
                grants,
            } => self.admit(AdmitAsk {
                issued_at: *issued_at,
                ask: *ask,
                limits,
                alerts,
                now_ms: *now_ms,
                continues: continues.as_deref(),
                references,
                plan: plan.as_ref(),
                sub: sub.as_deref(),
                voice: *voice,
                leases,
                grants,
            }),
            UserCommand::Finish(finished) => {
                self.finish(finished);
                UserReply::Finished
            }
            UserCommand::Cancel {
                reservation_id,
                limits,
                now_ms,
            } => {
                self.quota.cancel(limits, *reservation_id, *now_ms);
                self.voice.cancelled(*reservation_id);
                UserReply::Finished
            }
            UserCommand::Revoke { at } => {
                self.revoked_at = Some(*at);
                self.bans()
            }
            UserCommand::Unrevoke {} => {
                self.revoked_at = None;
                self.bans()
            }
            UserCommand::Block { at } => {
                self.blocked_at = Some(*at);
                self.bans()
            }
            UserCommand::Unblock {} => {
                self.blocked_at = None;
                self.bans()
            }
            UserCommand::Status {
                limits,
                now_ms,
                plan_limits,
            } => self.status(limits, plan_limits, *now_ms),
            UserCommand::Mint { per_hour, now_ms } => match self.guest_mints.admit(*per_hour, *now_ms) {
                Ok(()) => UserReply::Minted,
                Err(retry_after_seconds) => UserReply::MintRefused { retry_after_seconds },
            },
            UserCommand::SetPlan {
                plan,
                limits,
                now_ms,
                plan_limits,
            } => {
                self.plan_override = plan.clone();
                self.status(limits, plan_limits, *now_ms)
            }
            UserCommand::Renew {
                reservation_id,
                limits,
                now_ms,
                charge,
            } => match charge {
                None => UserReply::Renewed {
                    expires_at_ms: self.quota.renew(limits, *reservation_id, *now_ms),
                },
                Some(charge) => self.charge_call(charge, limits, *reservation_id, *now_ms),
            },
            UserCommand::Lease {
                ask,
                limits,
                alerts,
                now_ms,
            } => self.lease(ask, limits, alerts, *now_ms),
            UserCommand::PoolStatus { limits, now_ms } => {
                let PoolStanding {
                    standing,
                    reserved,
                    idle,
                } = self.pool.unwrap_or_default().standing(limits, *now_ms);
                UserReply::Pool {
                    standing,
                    reserved,
                    idle,
                }
            }
        }
    }

    /// A live call's usage: charged, its hold topped up if the budget has room (and renewed),
    /// its id noted for a ban to end it; then a ban ends it.
    /// With a shared budget, a hold topped up past the call's leases is answered `NeedLease`:
    /// the charge is made, and the call object brings the grants with a charge of nothing.
    fn charge_call(&mut self, charge: &LiveCharge, limits: &Limits, reservation_id: u64, now_ms: i64) -> UserReply {
        self.deposit(&charge.grants, &charge.leases, now_ms);
        let covered = self
            .quota
            .charge_live(limits, reservation_id, charge.spent, charge.hold, now_ms)
            .is_some_and(|covered| covered);
        let live = self.voice.attach(reservation_id, &charge.call);
        if self.blocked_at.is_some() || is_revoked(charge.issued_at, self.revoked_at) {
            return UserReply::Revoked;
        }
        if covered && live && !charge.leases.is_empty() {
            let standing = self.quota.standing(limits, now_ms);
            // Top-ups sized by what the call spends, as a request's are by its worst case.
            let spent = Ask {
                tokens: charge.spent.tokens,
                stream: false,
                nano_usd: charge.spent.nano_usd,
            };
            if let Some(leases) = self.lease_shortfalls(&charge.leases, spent, &standing, now_ms) {
                return UserReply::NeedLease { leases };
            }
        }
        let expires_at_ms = (covered && live)
            .then(|| self.quota.renew(limits, reservation_id, now_ms))
            .flatten();
        UserReply::Renewed { expires_at_ms }
    }

    fn finish(&mut self, finished: &Finished) {
        let spent = Spend {
            tokens: finished.used_tokens,
            nano_usd: finished.used_nano_usd,
        };
        self.quota
            .finish(&finished.limits, finished.reservation_id, spent, finished.now_ms);
        // Kept even if the reservation expired: the response exists all the same.
        if let Some(id) = &finished.created_response {
            self.responses
                .record_created(id, &finished.created_items, finished.now_ms);
        }
    }

    /// A block or revocation first, then the plan in force (a request checked with another plan counts
    /// nothing), then the response it continues and the items it names (a foreign id costs
    /// nothing, not even a request of the rate), then, with an `ask`, the quota.
    fn admit(&mut self, ask: AdmitAsk<'_>) -> UserReply {
        // A blocked user's refusal is a revoked token's: the client learns nothing more.
        if self.blocked_at.is_some() || is_revoked(ask.issued_at, self.revoked_at) {
            return UserReply::Revoked;
        }
        if let Some(sub) = ask.sub.filter(|sub| self.usage_outbox.sub.as_deref() != Some(*sub)) {
            self.usage_outbox.sub = Some(sub.to_owned());
        }
        if let Some(plan) = ask.plan {
            if let Some(in_force) = self.plan_mismatch(plan) {
                return UserReply::PlanChanged { plan: in_force };
            }
            self.last_claimed_plan = Some(claimed_plan(plan.claimed.as_deref()));
        }
        if ask.continues.is_some_and(|id| !self.responses.owns(id, ask.now_ms)) {
            return UserReply::UnknownResponse { id: None };
        }
        if let Some(id) = ask.references.iter().find(|id| !self.responses.owns(id, ask.now_ms)) {
            return UserReply::UnknownResponse { id: Some(id.clone()) };
        }
        if let Some(slots) = ask.voice {
            self.voice.prune(&self.quota);
            if let Err(refusal) = self.voice.check(slots, ask.now_ms) {
                let standing = self.quota.standing(ask.limits, ask.now_ms);
                return UserReply::Refused { refusal, standing };
            }
        }
        let Some(request) = ask.ask else {
            let standing = self.quota.standing(ask.limits, ask.now_ms);
            return UserReply::Admitted {
                reservation: None,
                standing,
                alert: None,
            };
        };
        self.deposit(ask.grants, ask.leases, ask.now_ms);
        match self.quota.admit(ask.limits, request, ask.now_ms) {
            Ok(reservation) => {
                let standing = self.quota.standing(ask.limits, ask.now_ms);
                if let Some(leases) = self.lease_shortfalls(ask.leases, request, &standing, ask.now_ms) {
                    self.quota.cancel(ask.limits, reservation.id, ask.now_ms);
                    return UserReply::NeedLease { leases };
                }
                // After the leases: a call asked again with its grants counts once today.
                if ask.voice.is_some() {
                    self.voice.started(reservation.id);
                }
                let alert = self.alerts.on_admit(ask.alerts, &standing, ask.now_ms);
                UserReply::Admitted {
                    reservation: Some(reservation),
                    standing,
                    alert,
                }
            }
            Err(refusal) => UserReply::Refused {
                refusal,
                standing: self.quota.standing(ask.limits, ask.now_ms),
            },
        }
    }

    /// The revocation and block, after an operator changed one.
    fn bans(&self) -> UserReply {
        UserReply::Status {
            revoked_at: self.revoked_at,
            standing: None,
            plan: None,
            blocked_at: self.blocked_at,
            calls: self.voice.ids(),
        }
    }

    /// The plan in force: the override, else the most recent request's claim, else `default`.
    pub fn plan_in_force(&self) -> PlanChoice {
        let last_claim = self.last_claimed_plan.clone().unwrap_or_else(|| claimed_plan(None));
        PlanChoice::in_force(self.plan_override.as_deref(), last_claim)
    }

    fn plan_mismatch(&self, plan: &PlanAsk) -> Option<PlanChoice> {
        let in_force = PlanChoice::in_force(self.plan_override.as_deref(), claimed_plan(plan.claimed.as_deref()));
        (in_force.name != plan.checked).then_some(in_force)
    }

    fn status(&mut self, limits: &Limits, plan_limits: &BTreeMap<String, Limits>, now_ms: i64) -> UserReply {
        let plan = self.plan_in_force();
        let limits = plan_limits.get(&plan.name).unwrap_or(limits);
        let standing = self.quota.standing(limits, now_ms);
        // The console lists the live calls, to end one (a reservation expired meanwhile is no call).
        self.voice.prune(&self.quota);
        UserReply::Status {
            revoked_at: self.revoked_at,
            standing: Some(standing),
            plan: Some(plan),
            blocked_at: self.blocked_at,
            calls: self.voice.ids(),
        }
    }
}

/// Whether a token issued at `issued_at` is revoked. A revocation covers its own second, so a
/// token minted in the same second as the revoke is revoked too; a token without `iat` or
/// `nbf` cannot be placed in time and is revoked whenever its user is.
pub fn is_revoked(issued_at: Option<i64>, revoked_at: Option<i64>) -> bool {
    match (issued_at, revoked_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(issued_at), Some(revoked_at)) => issued_at <= revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::plans::PlanSource;
    use crate::budget::quota::{RateLimit, Reservation, RESERVATION_TIMEOUT_MS};
    use crate::error::Refusal;
    use messages::PROTOCOL_VERSION;

    const NOW: i64 = 1_800_000_000_000;
    const LIMITS: Limits = Limits {
        rate: Some(RateLimit {
            requests: 2,
            window: std::time::Duration::from_secs(60),
        }),
        max_streams: Some(1),
        daily_tokens: Some(100),
        daily_nano_usd: None,
    };
    const ASK: Ask = Ask {
        tokens: 10,
        stream: false,
        nano_usd: 0,
    };

    /// The settlement of `reservation_id` having used `used_tokens`, ended at `NOW`.
    fn finished(reservation_id: u64, used_tokens: u64) -> Finished {
        Finished {
            reservation_id,
            used_tokens,
            limits: LIMITS,
            now_ms: NOW,
            created_response: None,
            created_items: vec![],
            used_nano_usd: 0,
        }
    }

    fn admit(record: &mut UserRecord, issued_at: i64, ask: Option<Ask>) -> UserReply {
        record
            .apply(
                &[],
                &UserCommand::Admit {
                    issued_at: Some(issued_at),
                    ask,
                    limits: LIMITS,
                    alerts: AlertRules::default(),
                    now_ms: NOW,
                    continues: None,
                    references: vec![],
                    sub: None,
                    plan: None,
                    voice: None,
                    leases: vec![],
                    grants: vec![],
                },
            )
            .0
    }

    #[test]
    fn revoked_tokens_are_refused_before_counting() {
        let mut record = UserRecord::default();
        record.apply(&[], &UserCommand::Revoke { at: 100 });
        assert_eq!(admit(&mut record, 100, Some(ASK)), UserReply::Revoked);
        assert!(
            record.quota.admitted_at_ms.is_empty(),
            "a revoked request must not use the user's quota"
        );
        assert!(matches!(
            admit(&mut record, 101, Some(ASK)),
            UserReply::Admitted {
                reservation: Some(_),
                ..
            }
        ));
        record.apply(&[], &UserCommand::Unrevoke {});
        assert!(matches!(
            admit(&mut record, 50, None),
            UserReply::Admitted { reservation: None, .. }
        ));
    }

    #[test]
    fn a_blocked_user_is_refused_whatever_the_token_s_iat_until_unblocked() {
        let mut record = UserRecord::default();
        let (reply, changed) = record.apply(&[], &UserCommand::Block { at: 100 });
        assert!(changed);
        assert!(
            matches!(
                reply,
                UserReply::Status {
                    blocked_at: Some(100),
                    revoked_at: None,
                    ..
                }
            ),
            "{reply:?}"
        );
        for issued_at in [50, 100, 101, NOW / 1000 + 3600] {
            assert_eq!(
                admit(&mut record, issued_at, Some(ASK)),
                UserReply::Revoked,
                "iat {issued_at}"
            );
            assert_eq!(
                admit(&mut record, issued_at, None),
                UserReply::Revoked,
                "a status read, iat {issued_at}"
            );
        }
        let without_iat = record.apply(
            &[],
            &UserCommand::Admit {
                issued_at: None,
                ask: Some(ASK),
                limits: LIMITS,
                alerts: AlertRules::default(),
                now_ms: NOW,
                continues: None,
                references: vec![],
                sub: None,
                plan: None,
                voice: None,
                leases: vec![],
                grants: vec![],
            },
        );
        assert_eq!(without_iat, (UserReply::Revoked, false), "nothing counted");
        assert!(record.quota.admitted_at_ms.is_empty() && record.quota.reservations.is_empty());
        let status = UserCommand::Status {
            limits: LIMITS,
            now_ms: NOW,
            plan_limits: BTreeMap::new(),
        };
        assert!(matches!(
            record.apply(&[], &status).0,
            UserReply::Status {
                blocked_at: Some(100),
                ..
            }
        ));
        record.apply(&[], &UserCommand::Revoke { at: 200 });
        record.apply(&[], &UserCommand::Unrevoke {});
        assert_eq!(
            admit(&mut record, 300, Some(ASK)),
            UserReply::Revoked,
            "lifting a revocation lifts no block"
        );
        record.apply(&[], &UserCommand::Unblock {});
        assert!(matches!(
            admit(&mut record, 50, Some(ASK)),
            UserReply::Admitted {
                reservation: Some(_),
                ..
            }
        ));
        let stored = serde_json::to_value(&record).unwrap();
        assert!(
            stored.get("blocked_at").is_none(),
            "an unblocked record keeps its old form"
        );
    }

    /// What the user's outbox holds for the day indexes, all batches together, by day.
    fn reported(record: &mut UserRecord) -> BTreeMap<String, Spend> {
        let mut by_day = BTreeMap::<String, Spend>::new();
        while let Some((_, batch)) = record.usage_outbox.batch() {
            for (day, spent) in batch.by_day {
                let total = by_day.entry(day).or_default();
                total.tokens += spent.tokens;
                total.nano_usd += spent.nano_usd;
            }
            record.usage_outbox.acknowledged(batch.seq);
        }
        by_day
    }

    fn admit_as(record: &mut UserRecord, sub: Option<&str>, now_ms: i64) -> Reservation {
        let command = UserCommand::Admit {
            issued_at: Some(1),
            ask: Some(ASK),
            limits: LIMITS,
            alerts: AlertRules::default(),
            now_ms,
            continues: None,
            references: vec![],
            plan: None,
            sub: sub.map(str::to_owned),
            voice: None,
            leases: vec![],
            grants: vec![],
        };
        reservation_of(record.apply(&[], &command).0)
    }

    #[test]
    fn every_charge_reaches_the_usage_index_an_expired_reservation_s_full_charge_included() {
        let mut record = UserRecord::default();
        let today = utc_day(NOW);
        let settled = admit_as(&mut record, Some("alice"), NOW);
        let lost = admit_as(&mut record, Some("alice"), NOW + 1);
        record.apply(
            &[finished(settled.id, 3)],
            &UserCommand::Finish(finished(settled.id, 3)),
        );
        // The settlement of `lost` never arrives (its isolate was evicted): it expires.
        let status = UserCommand::Status {
            limits: LIMITS,
            now_ms: lost.expires_at_ms,
            plan_limits: BTreeMap::new(),
        };
        let (_, changed) = record.apply(&[], &status);
        assert!(changed, "the expiry's charge is stored with the record");
        assert_eq!(record.quota.used_tokens, 3 + ASK.tokens);
        assert_eq!(
            reported(&mut record),
            BTreeMap::from([(
                today.clone(),
                Spend {
                    tokens: 3 + ASK.tokens,
                    nano_usd: 0
                }
            )]),
            "what the index gets is what the user was charged"
        );
        // A reservation made a minute before midnight expires after it: reported on the day
        // it was made, as the quota charged it (the new day's budget never admitted it).
        let midnight = (NOW.div_euclid(DAY_MS) + 1) * DAY_MS;
        let late = admit_as(&mut record, Some("alice"), midnight - 60_000);
        assert_ne!(utc_day(late.expires_at_ms), today);
        let status = UserCommand::Status {
            limits: LIMITS,
            now_ms: late.expires_at_ms,
            plan_limits: BTreeMap::new(),
        };
        record.apply(&[], &status);
        assert_eq!(
            reported(&mut record),
            BTreeMap::from([(
                today,
                Spend {
                    tokens: ASK.tokens,
                    nano_usd: 0
                }
            )])
        );
        assert_eq!(record.quota.used_tokens, 0, "the new day's budget is untouched");
    }

    #[test]
    fn shared_objects_report_nothing_to_the_usage_index() {
        let mut global = UserRecord::default();
        let reservation = admit_as(&mut global, None, NOW);
        global.apply(&[], &UserCommand::Finish(finished(reservation.id, 4)));
        assert!(global.usage_outbox.is_empty());
        assert!(serde_json::to_value(&global).unwrap().get("usage_outbox").is_none());
    }

    #[test]
    fn admission_and_finish_go_through_the_quota() {
        let mut record = UserRecord::default();
        let UserReply::Admitted {
            reservation: Some(reservation),
            standing,
            ..
        } = admit(&mut record, 1, Some(ASK))
        else {
            panic!("not admitted")
        };
        assert_eq!(standing.rate.unwrap().remaining, 1);
        let (reply, changed) = record.apply(&[], &UserCommand::Finish(finished(reservation.id, 7)));
        assert_eq!((reply, changed), (UserReply::Finished, true));
        admit(&mut record, 1, Some(ASK));
        let UserReply::Refused { refusal, .. } = admit(&mut record, 1, Some(ASK)) else {
            panic!("admitted past the rate")
        };
        assert!(matches!(refusal, Refusal::RateLimited { .. }));
        let (
            UserReply::Status {
                standing: Some(standing),
                ..
            },
            _,
        ) = record.apply(
            &[],
            &UserCommand::Status {
                limits: LIMITS,
                now_ms: NOW,
                plan_limits: BTreeMap::new(),
            },
        )
        else {
            panic!("no status")
        };
        assert_eq!((standing.used_tokens, standing.reserved_tokens), (7, 10));
    }

    #[test]
    fn a_cancelled_admission_leaves_the_user_as_before() {
        let mut record = UserRecord::default();
        admit(&mut record, 1, Some(ASK));
        let before = record.clone();
        let UserReply::Admitted {
            reservation: Some(reservation),
            ..
        } = admit(&mut record, 1, Some(ASK))
        else {
            panic!("not admitted")
        };
        let cancel = UserCommand::Cancel {
            reservation_id: reservation.id,
            limits: LIMITS,
            now_ms: NOW,
        };
        assert_eq!(record.apply(&[], &cancel).0, UserReply::Finished);
        assert_eq!(record.quota.admitted_at_ms, before.quota.admitted_at_ms);
        assert_eq!(record.quota.reservations, before.quota.reservations);
        assert_eq!(record.quota.used_tokens, 0);
        assert!(
            matches!(admit(&mut record, 1, Some(ASK)), UserReply::Admitted { .. }),
            "the rate slot is free again"
        );
    }

    const STREAM: Ask = Ask {
        tokens: 10,
        stream: true,
        nano_usd: 0,
    };

    fn reservation_of(reply: UserReply) -> Reservation {
        let UserReply::Admitted {
            reservation: Some(reservation),
            ..
        } = reply
        else {
            panic!("not admitted: {reply:?}")
        };
        reservation
    }

    fn admit_carrying(record: &mut UserRecord, settle: &[Finished], ask: Ask, now_ms: i64) -> UserReply {
        let admission = UserCommand::Admit {
            issued_at: Some(1),
            ask: Some(ask),
            limits: LIMITS,
            alerts: AlertRules::default(),
            now_ms,
            continues: None,
            references: vec![],
            sub: None,
            plan: None,
            voice: None,
            leases: vec![],
            grants: vec![],
        };
        record.apply(settle, &admission).0
    }

    #[test]
    fn a_stream_settlement_carried_by_the_next_admission_frees_its_slot_for_it() {
        let mut record = UserRecord::default();
        let first = reservation_of(admit(&mut record, 1, Some(STREAM)));
        assert!(
            matches!(admit(&mut record, 1, Some(STREAM)), UserReply::Refused { .. }),
            "one slot, held until its settlement lands"
        );
        let reply = admit_carrying(&mut record, &[finished(first.id, 4)], STREAM, NOW + 1);
        let UserReply::Admitted { standing, .. } = reply else {
            panic!("the carried settlement did not free the slot: {reply:?}")
        };
        assert_eq!((standing.open_streams, standing.used_tokens), (1, 4));
    }

    #[test]
    fn a_carried_settlement_gives_back_the_unused_reservation_before_the_next_is_checked() {
        let whole_budget = Ask { tokens: 100, ..ASK };
        let mut record = UserRecord::default();
        let first = reservation_of(admit_carrying(&mut record, &[], whole_budget, NOW));
        assert!(matches!(
            admit_carrying(&mut record, &[], whole_budget, NOW + 1),
            UserReply::Refused {
                refusal: Refusal::BudgetExhausted { .. },
                ..
            }
        ));
        let used_nothing = finished(first.id, 0);
        reservation_of(admit_carrying(&mut record, &[used_nothing], whole_budget, NOW + 2));
    }

    #[test]
    fn a_settlement_delivered_twice_is_charged_once() {
        let mut record = UserRecord::default();
        let first = reservation_of(admit(&mut record, 1, Some(ASK)));
        let twice = [finished(first.id, 7), finished(first.id, 7)];
        reservation_of(admit_carrying(&mut record, &twice, ASK, NOW + 1));
        let after = record.clone();
        let (reply, changed) = record.apply(&twice, &UserCommand::Finish(finished(first.id, 7)));
        assert_eq!(
            (reply, changed),
            (UserReply::Finished, false),
            "a flush after it landed"
        );
        assert_eq!(record, after);
        assert_eq!(record.quota.used_tokens, 7);
    }

    #[test]
    fn a_settlement_that_arrives_after_its_reservation_expired_charges_nothing_more() {
        let mut record = UserRecord::default();
        let lost = reservation_of(admit(&mut record, 1, Some(ASK)));
        let expired = NOW + RESERVATION_TIMEOUT_MS;
        let status = UserCommand::Status {
            limits: LIMITS,
            now_ms: expired,
            plan_limits: BTreeMap::new(),
        };
        record.apply(&[], &status);
        assert_eq!(record.quota.used_tokens, ASK.tokens, "charged in full at expiry");
        let late = Finished {
            now_ms: expired + 1,
            ..finished(lost.id, 3)
        };
        record.apply(&[late], &status);
        assert_eq!(record.quota.used_tokens, ASK.tokens);
    }

    #[test]
    fn a_settlement_held_past_its_reservation_s_expiry_is_charged_what_it_used() {
        let mut record = UserRecord::default();
        let long = reservation_of(admit(&mut record, 1, Some(ASK)));
        let ended = Finished {
            now_ms: long.expires_at_ms - 1,
            ..finished(long.id, 3)
        };
        admit_carrying(&mut record, &[ended], ASK, long.expires_at_ms + 1);
        assert_eq!(record.quota.used_tokens, 3, "it ended before it expired");
    }

    #[test]
    fn deliveries_carry_settlements_beside_the_command() {
        let delivery = Delivery::new(vec![finished(3, 5)], UserCommand::Revoke { at: 9 });
        let wire = serde_json::to_value(&delivery).unwrap();
        assert_eq!(
            (
                wire["version"].as_u64(),
                wire["command"]["revoke"]["at"].as_i64(),
                wire["settle"][0]["reservation_id"].as_u64()
            ),
            (Some(PROTOCOL_VERSION.into()), Some(9), Some(3))
        );
        assert_eq!(Delivery::read(&wire.to_string()).unwrap(), delivery);
        let bare = Delivery::read(&format!(
            r#"{{"version":{PROTOCOL_VERSION},"command":{{"revoke":{{"at":9}}}}}}"#
        ))
        .unwrap();
        assert_eq!((bare.settle.len(), bare.command), (0, UserCommand::Revoke { at: 9 }));
        assert_eq!(
            serde_json::to_string(&UserCommand::Finish(finished(3, 5))).unwrap(),
            format!(
                r#"{{"finish":{{"reservation_id":3,"used_tokens":5,"limits":{},"now_ms":{NOW},"created_response":null,"used_nano_usd":0}}}}"#,
                serde_json::to_string(&LIMITS).unwrap()
            ),
            "a finish's fields are as before, under its name"
        );
    }

    #[test]
    fn a_flush_sends_its_last_settlement_as_the_command_and_the_others_with_it() {
        let flush = Delivery::flush(vec![finished(1, 1), finished(2, 2)]).unwrap();
        assert_eq!(flush.settle, [finished(1, 1)]);
        assert_eq!(flush.command, UserCommand::Finish(finished(2, 2)));
        assert_eq!(Delivery::flush(vec![]), None);
    }

    #[test]
    fn status_reads_change_nothing() {
        let mut record = UserRecord::default();
        admit(&mut record, 1, Some(ASK));
        let before = record.clone();
        assert!(
            !record
                .apply(
                    &[],
                    &UserCommand::Status {
                        limits: LIMITS,
                        now_ms: NOW,
                        plan_limits: BTreeMap::new(),
                    }
                )
                .1
        );
        let status_read = UserCommand::Admit {
            issued_at: Some(1),
            ask: None,
            limits: LIMITS,
            alerts: AlertRules::default(),
            now_ms: NOW,
            continues: None,
            references: vec![],
            sub: None,
            plan: None,
            voice: None,
            leases: vec![],
            grants: vec![],
        };
        assert!(!record.apply(&[], &status_read).1);
        assert_eq!(record, before);
    }

    #[test]
    fn a_client_mints_its_guest_tokens_per_hour_and_is_told_when_it_may_again() {
        let mut client = UserRecord::default();
        let mint = |now_ms| UserCommand::Mint { per_hour: 2, now_ms };
        assert_eq!(client.apply(&[], &mint(NOW)), (UserReply::Minted, true));
        assert_eq!(client.apply(&[], &mint(NOW + 1000)).0, UserReply::Minted);
        assert_eq!(
            client.apply(&[], &mint(NOW + 2000)),
            (
                UserReply::MintRefused {
                    retry_after_seconds: 3598
                },
                false
            ),
            "a refusal records nothing"
        );
        let stored = serde_json::to_value(&client).unwrap();
        assert_eq!(stored["guest_mints"].as_array().map(Vec::len), Some(2));
    }

    fn continue_at(record: &mut UserRecord, id: &str, now_ms: i64) -> (UserReply, bool) {
        record.apply(
            &[],
            &UserCommand::Admit {
                issued_at: Some(1),
                ask: Some(ASK),
                limits: LIMITS,
                alerts: AlertRules::default(),
                now_ms,
                continues: Some(id.to_owned()),
                references: vec![],
                sub: None,
                plan: None,
                voice: None,
                leases: vec![],
                grants: vec![],
            },
        )
    }

    /// Admits a request and finishes it having created `id`.
    fn create(record: &mut UserRecord, id: &str, now_ms: i64) {
        let Ok(reservation) = record.quota.admit(&LIMITS, ASK, now_ms) else {
            panic!("not admitted")
        };
        record.apply(
            &[],
            &UserCommand::Finish(Finished {
                now_ms,
                created_response: Some(id.to_owned()),
                created_items: vec![],
                ..finished(reservation.id, 1)
            }),
        );
    }

    #[test]
    fn only_the_user_who_created_a_response_may_continue_it_and_a_refusal_costs_nothing() {
        let mut alice = UserRecord::default();
        let mut bob = UserRecord::default();
        create(&mut alice, "resp_alice", NOW);
        let (reply, _) = continue_at(&mut alice, "resp_alice", NOW + 1);
        assert!(
            matches!(
                reply,
                UserReply::Admitted {
                    reservation: Some(_),
                    ..
                }
            ),
            "{reply:?}"
        );
        for id in ["resp_alice", "resp_nobody_made"] {
            let before = bob.clone();
            assert_eq!(
                continue_at(&mut bob, id, NOW + 1),
                (UserReply::UnknownResponse { id: None }, false),
                "{id}"
            );
            assert_eq!(bob, before, "no rate entry, no reservation");
        }
        alice.apply(&[], &UserCommand::Revoke { at: 5 });
        assert_eq!(
            continue_at(&mut alice, "resp_alice", NOW + 2).0,
            UserReply::Revoked,
            "revocation comes first"
        );
    }

    #[test]
    fn input_items_named_by_id_are_admitted_only_if_this_user_created_them() {
        let mut alice = UserRecord::default();
        let Ok(reservation) = alice.quota.admit(&LIMITS, ASK, NOW) else {
            panic!("not admitted")
        };
        let created = Finished {
            created_response: Some("resp_alice".into()),
            created_items: vec!["rs_alice".into(), "msg_alice".into()],
            ..finished(reservation.id, 1)
        };
        alice.apply(&[], &UserCommand::Finish(created));
        let naming = |references: &[&str]| UserCommand::Admit {
            issued_at: Some(1),
            ask: Some(ASK),
            limits: LIMITS,
            alerts: AlertRules::default(),
            now_ms: NOW + 1,
            continues: None,
            references: references.iter().map(|id| (*id).to_owned()).collect(),
            sub: None,
            plan: None,
            voice: None,
            leases: vec![],
            grants: vec![],
        };
        let (reply, _) = alice.apply(&[], &naming(&["rs_alice", "msg_alice"]));
        assert!(
            matches!(
                reply,
                UserReply::Admitted {
                    reservation: Some(_),
                    ..
                }
            ),
            "{reply:?}"
        );
        let before = alice.clone();
        assert_eq!(
            alice.apply(&[], &naming(&["msg_alice", "msg_bob"])),
            (
                UserReply::UnknownResponse {
                    id: Some("msg_bob".into())
                },
                false
            ),
            "one foreign item refuses the request, and nothing is counted"
        );
        assert_eq!(alice, before);
        let wire = serde_json::to_value(Delivery::new(vec![], naming(&["msg_alice"]))).unwrap();
        assert_eq!(wire["command"]["admit"]["references"], serde_json::json!(["msg_alice"]));
        let plain = serde_json::to_value(Delivery::new(vec![], naming(&[]))).unwrap();
        assert!(
            plain["command"]["admit"].get("references").is_none(),
            "without items, the message an older object reads"
        );
    }

    #[test]
    fn a_response_can_be_continued_for_30_days_after_it_was_created() {
        let mut record = UserRecord::default();
        create(&mut record, "resp_old", NOW);
        let expiry = NOW + crate::objects::owned_responses::RESPONSE_RETENTION_MS;
        assert!(record.responses.owns("resp_old", expiry - 1));
        assert!(!record.responses.owns("resp_old", expiry));
        assert_eq!(
            continue_at(&mut record, "resp_old", expiry).0,
            UserReply::UnknownResponse { id: None }
        );
        create(&mut record, "resp_new", expiry);
        assert_eq!(record.responses.len(), 1, "recording drops the expired ids");
    }

    #[test]
    fn recording_a_response_again_keeps_one_entry_dated_from_the_last_time() {
        let mut responses = OwnedResponses::default();
        responses.record("resp_1", NOW);
        responses.record("resp_1", NOW + 10);
        assert_eq!(responses.len(), 1);
        assert!(responses.owns(
            "resp_1",
            NOW + 9 + crate::objects::owned_responses::RESPONSE_RETENTION_MS
        ));
    }

    #[test]
    fn records_and_commands_without_responses_keep_their_old_wire_form() {
        let old_admit = r#"{"admit":{"issued_at":1,"ask":null,"limits":{"rate":null,"max_streams":null,"daily_tokens":null},"alerts":{"requests_per_hour":null,"budget_percent":null},"now_ms":5}}"#;
        let command: UserCommand = serde_json::from_str(old_admit).unwrap();
        assert!(matches!(command, UserCommand::Admit { continues: None, .. }));
        let record = serde_json::to_value(UserRecord::default()).unwrap();
        assert!(record.get("responses").is_none());
        let stored: UserRecord = serde_json::from_str(r#"{"revoked_at":null}"#).unwrap();
        assert!(stored.responses.is_empty());
    }

    fn admit_on(record: &mut UserRecord, checked: &str, claimed: Option<&str>) -> UserReply {
        record
            .apply(
                &[],
                &UserCommand::Admit {
                    issued_at: Some(1),
                    ask: Some(ASK),
                    limits: LIMITS,
                    alerts: AlertRules::default(),
                    now_ms: NOW,
                    continues: None,
                    references: vec![],
                    sub: None,
                    plan: Some(PlanAsk {
                        checked: checked.into(),
                        claimed: claimed.map(str::to_owned),
                    }),
                    voice: None,
                    leases: vec![],
                    grants: vec![],
                },
            )
            .0
    }

    fn set_plan(record: &mut UserRecord, plan: Option<&str>) -> UserReply {
        record
            .apply(
                &[],
                &UserCommand::SetPlan {
                    plan: plan.map(str::to_owned),
                    limits: LIMITS,
                    now_ms: NOW,
                    plan_limits: BTreeMap::new(),
                },
            )
            .0
    }

    fn in_force(name: &str, source: PlanSource) -> PlanChoice {
        PlanChoice {
            name: name.into(),
            source,
        }
    }

    #[test]
    fn an_override_wins_over_the_claim_and_a_request_checked_with_another_plan_counts_nothing() {
        let mut record = UserRecord::default();
        assert!(matches!(
            admit_on(&mut record, "free", Some("free")),
            UserReply::Admitted { .. }
        ));
        set_plan(&mut record, Some("pro"));
        let before = record.clone();
        assert_eq!(
            admit_on(&mut record, "free", Some("free")),
            UserReply::PlanChanged {
                plan: in_force("pro", PlanSource::Override)
            }
        );
        assert_eq!(record, before, "nothing counted");
        assert!(matches!(
            admit_on(&mut record, "pro", Some("free")),
            UserReply::Admitted { .. }
        ));
        set_plan(&mut record, None);
        assert_eq!(
            admit_on(&mut record, "pro", Some("free")),
            UserReply::PlanChanged {
                plan: in_force("free", PlanSource::Claim)
            },
            "a lifted override gives the claim back"
        );
        assert_eq!(
            admit_on(&mut record, "pro", None),
            UserReply::PlanChanged {
                plan: in_force("default", PlanSource::Default)
            }
        );
    }

    #[test]
    fn the_operator_sees_the_override_else_the_last_request_s_claim() {
        let mut record = UserRecord::default();
        let plan_of = |reply: UserReply| {
            let UserReply::Status { plan: Some(plan), .. } = reply else {
                panic!("no plan in {reply:?}")
            };
            plan
        };
        assert_eq!(
            plan_of(set_plan(&mut record, None)),
            in_force("default", PlanSource::Default)
        );
        admit_on(&mut record, "free", Some("free"));
        assert_eq!(
            plan_of(set_plan(&mut record, Some("pro"))),
            in_force("pro", PlanSource::Override)
        );
        assert_eq!(
            plan_of(set_plan(&mut record, None)),
            in_force("free", PlanSource::Claim)
        );
        let status = record.apply(
            &[],
            &UserCommand::Status {
                limits: LIMITS,
                now_ms: NOW,
                plan_limits: BTreeMap::from([(
                    "free".to_owned(),
                    Limits {
                        daily_tokens: Some(7),
                        ..LIMITS
                    },
                )]),
            },
        );
        let UserReply::Status {
            standing: Some(standing),
            ..
        } = status.0
        else {
            panic!("no standing")
        };
        assert_eq!(standing.daily_tokens, Some(7), "the limits of the plan in force");
    }

    #[test]
    fn a_revoked_user_is_refused_before_any_plan_question() {
        let mut record = UserRecord::default();
        record.apply(&[], &UserCommand::Revoke { at: 5 });
        set_plan(&mut record, Some("pro"));
        assert_eq!(admit_on(&mut record, "free", Some("free")), UserReply::Revoked);
    }

    #[test]
    fn records_of_earlier_versions_still_load() {
        let old = r#"{"revoked_at":null,"quota":{"admitted_at_ms":[],"day":0,"used_tokens":3,"reservations":[],"next_reservation_id":0}}"#;
        let record: UserRecord = serde_json::from_str(old).unwrap();
        assert_eq!((record.plan_override, record.quota.used_tokens), (None, 3));
        let admit = r#"{"admit":{"issued_at":1,"ask":{"tokens":5,"stream":false},"limits":{"rate":null,"max_streams":null,"daily_tokens":9},"alerts":{"requests_per_hour":null,"budget_percent":null},"now_ms":0}}"#;
        assert!(matches!(
            serde_json::from_str::<UserCommand>(admit).unwrap(),
            UserCommand::Admit { plan: None, .. }
        ));
    }

    #[test]
    fn revocation_covers_tokens_issued_until_its_second() {
        assert!(!is_revoked(Some(50), None));
        assert!(is_revoked(Some(99), Some(100)));
        assert!(is_revoked(Some(100), Some(100)));
        assert!(!is_revoked(Some(101), Some(100)));
        assert!(is_revoked(None, Some(100)));
    }

    #[test]
    fn commands_have_a_stable_wire_form() {
        assert_eq!(
            serde_json::to_string(&UserCommand::Revoke { at: 5 }).unwrap(),
            r#"{"revoke":{"at":5}}"#
        );
        assert_eq!(
            serde_json::from_str::<UserCommand>(r#"{"unrevoke":{}}"#).unwrap(),
            UserCommand::Unrevoke {}
        );
    }

    #[test]
    fn an_object_refuses_what_it_does_not_wholly_understand() {
        let status = UserCommand::Status {
            limits: LIMITS,
            now_ms: NOW,
            plan_limits: BTreeMap::new(),
        };
        let wire = serde_json::to_value(Delivery::new(vec![finished(1, 1)], status)).unwrap();
        assert!(Delivery::read(&wire.to_string()).is_ok());
        let with = |path: &[&str], value: serde_json::Value| {
            let mut changed = wire.clone();
            let mut at = &mut changed;
            for step in &path[..path.len() - 1] {
                at = match step.parse::<usize>() {
                    Ok(index) => &mut at[index],
                    Err(_) => &mut at[*step],
                };
            }
            at[path[path.len() - 1]] = value;
            Delivery::read(&changed.to_string())
        };
        for (path, value) in [
            (&["future_field"][..], serde_json::json!(1)),
            (&["command", "status", "future_field"][..], serde_json::json!(1)),
            (
                &["command", "status", "limits", "future_limit"][..],
                serde_json::json!(1),
            ),
            (&["settle", "0", "future_field"][..], serde_json::json!(true)),
            (&["settle", "0", "limits", "future_limit"][..], serde_json::json!(1)),
            (&["command"][..], serde_json::json!({"future_command": {}})),
            (&["version"][..], serde_json::json!(PROTOCOL_VERSION + 1)),
        ] {
            assert!(with(path, value.clone()).is_err(), "{path:?} = {value} was accepted");
        }
        let read = |command: &str| Delivery::read(&format!(r#"{{"version":{PROTOCOL_VERSION},"command":{command}}}"#));
        assert!(read(r#"{"unrevoke":{}}"#).is_ok());
        assert!(read(r#"{"unrevoke":{"future_field":1}}"#).is_err());
        assert!(read(r#"{"revoke":{"at":1,"future_field":1}}"#).is_err());
    }

    #[test]
    fn a_delivery_from_a_worker_of_an_earlier_version_is_refused_whole() {
        // Versions 1 and 2 flatten the command beside `settle` (and `version`), tagged `op`.
        let settle = r#""settle":[{"reservation_id":3,"used_tokens":1,"limits":{"rate":null,"max_streams":null,"daily_tokens":null},"now_ms":5}]"#;
        let finish = r#""op":"finish","reservation_id":4,"used_tokens":1,"limits":{"rate":null,"max_streams":null,"daily_tokens":null},"now_ms":5"#;
        for old in [
            format!("{{{settle},{finish}}}"),
            format!(r#"{{"version":2,{settle},{finish}}}"#),
        ] {
            assert!(Delivery::read(&old).is_err(), "{old}");
        }
    }

    #[test]
    fn an_answer_acknowledges_only_settlements_and_only_those_it_carried() {
        let mut record = UserRecord::default();
        let (answer, _) = record.receive(&Delivery::new(Vec::new(), UserCommand::Revoke { at: 1 }));
        assert!(answer.settled.is_empty());
        let flush = Delivery::flush(vec![finished(7, 1), finished(8, 1)]).unwrap();
        assert_eq!(record.receive(&flush).0.settled, [7, 8]);
    }

    #[test]
    fn renewing_keeps_a_stream_s_reservation_and_says_until_when() {
        let mut record = UserRecord::default();
        let stream = Ask { stream: true, ..ASK };
        let reservation = record.quota.admit(&LIMITS, stream, NOW).unwrap();
        let renew = |record: &mut UserRecord, now_ms| {
            let command = UserCommand::Renew {
                reservation_id: reservation.id,
                limits: LIMITS,
                now_ms,
                charge: None,
            };
            record.apply(&[], &command)
        };
        let later = NOW + RESERVATION_TIMEOUT_MS - 1;
        assert_eq!(
            renew(&mut record, later),
            (
                UserReply::Renewed {
                    expires_at_ms: Some(later + RESERVATION_TIMEOUT_MS)
                },
                true
            )
        );
        let long_after = later + RESERVATION_TIMEOUT_MS;
        assert_eq!(
            renew(&mut record, long_after).0,
            UserReply::Renewed { expires_at_ms: None },
            "not renewed in time: expired, charged in full"
        );
    }

    #[test]
    fn no_user_s_object_is_a_shared_one() {
        assert_eq!(user_object_name("alice"), "user:alice");
        for sub in [GLOBAL_OBJECT_NAME, GUESTS_OBJECT_NAME, ""] {
            let name = user_object_name(sub);
            assert_ne!(name, GLOBAL_OBJECT_NAME);
            assert_ne!(name, GUESTS_OBJECT_NAME);
        }
        assert_ne!(user_object_name("alice"), user_object_name("bob"));
    }

    #[test]
    fn usage_is_filed_under_the_utc_day() {
        assert_eq!(utc_day(NOW), "2027-01-15");
        let midnight = NOW - 8 * 3600 * 1000 + crate::budget::quota::DAY_MS;
        assert_eq!(utc_day(midnight - 1), "2027-01-15");
        assert_eq!(utc_day(midnight), "2027-01-16");
    }
}
