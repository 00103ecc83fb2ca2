//! A simulation of leased global budgets at scale: thousands of users' objects and one pool,
//! driven through their real records (`UserRecord::apply`) the way the Worker drives them
//! (`edge/objects/user`), by many isolates whose clocks are skewed, that crash (losing the
//! settlements they held and the requests under way) and restart, whose calls are lost before
//! or after the object applied them, with objects evicted (their alarm lost), across a UTC
//! midnight. `cargo test` runs a short one; `make sim` the table in docs/capacity.md.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::budget::alerts::AlertRules;
use crate::budget::lease::{Grant, RefusalMemo};
use crate::budget::quota::{Ask, Limits, DAY_MS, RESERVATION_TIMEOUT_MS};
use crate::objects::held::SETTLEMENT_HOLD;
use crate::objects::user::{utc_day, Finished, PoolTerms, UserCommand, UserRecord, UserReply};

const POOL: &str = "global";
/// The Worker's admission attempts (`edge/objects/user`).
const ATTEMPTS: usize = 3;

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub users: usize,
    pub isolates: usize,
    /// The global budget, in tokens.
    pub budget: u64,
    /// Simulated seconds, starting `before_midnight_s` before a UTC midnight.
    pub seconds: i64,
    pub before_midnight_s: i64,
    /// Users come in sessions: the chance per second that an idle user starts one, and
    /// that a session ends; in a session, the chance per second of a request.
    pub session_rate: f64,
    pub session_end: f64,
    pub request_rate: f64,
    /// Chances per call of loss before, and after, the object applied it.
    pub loss: f64,
    /// Chance per isolate per second of a crash (and a restart with a new clock).
    pub crash: f64,
    /// Chance per object per second of an eviction (its alarm lost until its next call).
    pub evict: f64,
    /// Largest clock skew of an isolate, either way.
    pub skew_ms: i64,
    pub seed: u64,
}

/// What a run came to.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub requests: u64,
    pub admitted: u64,
    /// Tokens charged past the budget, over all days.
    pub overrun: u64,
    /// Tokens leased and lost on the way (grants, give-backs): never spendable that day.
    pub stranded: u64,
    /// Refused by the pool while at least as much budget as they asked was neither spent
    /// nor reserved anywhere (stranded, or idle in leases): an upper bound of the requests a
    /// single shared object would have admitted.
    pub refused_early: u64,
    pub refused_by_pool: u64,
    /// Budget left unspent on days the pool refused requests: what the leases cost in budget.
    pub unspent: u64,
    refused_days: std::collections::BTreeSet<String>,
    pub faults: u64,
    pub pool_calls: u64,
    pub charged_by_day: BTreeMap<String, u64>,
}

impl Outcome {
    pub fn pool_calls_per_request(&self) -> f64 {
        self.pool_calls as f64 / self.requests.max(1) as f64
    }
}

/// SplitMix64: a seeded, reproducible stream of numbers.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn skew(&mut self, max: i64) -> i64 {
        self.below(2 * max.unsigned_abs() + 1) as i64 - max
    }
}

/// What a call came to: lost before the object saw it, lost after it applied it, or answered.
// A simulated call's outcome, matched at once: not worth boxing the reply.
#[allow(clippy::large_enum_variant)]
enum Call {
    Lost,
    LostAfter,
    Answered(UserReply),
}

struct Flight {
    user: usize,
    finished: Finished,
    ends_at_ms: i64,
}

#[derive(Default)]
struct Isolate {
    skew_ms: i64,
    /// The pool's recent refusals, as the Worker remembers them (`RefusalMemo`).
    refusals: RefusalMemo,
    /// Settlements held for the next call to their user, with when they were held.
    held: Vec<(usize, Finished, i64)>,
    flights: Vec<Flight>,
}

struct Sim {
    scenario: Scenario,
    random: Random,
    pool: UserRecord,
    users: Vec<UserRecord>,
    user_limits: Vec<Limits>,
    /// An object's alarm, lost by an eviction, comes back with its next call.
    alarm_lost: Vec<bool>,
    in_session: Vec<bool>,
    isolates: Vec<Isolate>,
    terms: PoolTerms,
    outcome: Outcome,
}

pub fn run(scenario: Scenario) -> Outcome {
    let mut random = Random(scenario.seed);
    let budget = Limits {
        rate: None,
        max_streams: None,
        daily_tokens: Some(scenario.budget),
        daily_nano_usd: None,
    };
    // Half the users have a daily budget of their own (what a lease may be at most).
    let user_limits = (0..scenario.users)
        .map(|_| Limits {
            daily_tokens: random.chance(0.5).then(|| 20_000 + random.below(200_000)),
            ..budget
        })
        .collect();
    let isolates = (0..scenario.isolates)
        .map(|_| Isolate {
            skew_ms: random.skew(scenario.skew_ms),
            ..Isolate::default()
        })
        .collect();
    let mut sim = Sim {
        scenario,
        random,
        pool: UserRecord::default(),
        users: vec![UserRecord::default(); scenario.users],
        user_limits,
        alarm_lost: vec![false; scenario.users],
        in_session: vec![false; scenario.users],
        isolates,
        terms: PoolTerms {
            pool: POOL.to_owned(),
            limits: budget,
        },
        outcome: Outcome::default(),
    };
    let midnight = 1_800_000_000_000i64.div_euclid(DAY_MS) * DAY_MS + DAY_MS;
    let start = midnight - scenario.before_midnight_s * 1000;
    for second in 0..scenario.seconds {
        sim.second(start + second * 1000);
    }
    sim.finish(start + scenario.seconds * 1000);
    let outcome = &mut sim.outcome;
    outcome.overrun = outcome
        .charged_by_day
        .values()
        .map(|charged| charged.saturating_sub(scenario.budget))
        .sum();
    outcome.unspent = outcome
        .charged_by_day
        .iter()
        .filter(|(day, _)| outcome.refused_days.contains(*day))
        .map(|(_, charged)| scenario.budget.saturating_sub(*charged))
        .sum();
    sim.outcome
}

impl Sim {
    fn second(&mut self, now_ms: i64) {
        for isolate in 0..self.isolates.len() {
            if self.random.chance(self.scenario.crash) {
                // Its held settlements and requests under way are gone: their reservations
                // expire charged in full. A new isolate takes its place, with its own clock.
                self.outcome.faults += 1;
                self.isolates[isolate] = Isolate {
                    skew_ms: self.random.skew(self.scenario.skew_ms),
                    ..Isolate::default()
                };
            }
        }
        for user in 0..self.users.len() {
            if self.random.chance(self.scenario.evict) {
                self.outcome.faults += 1;
                self.alarm_lost[user] = true;
            }
            let in_session = &mut self.in_session[user];
            *in_session = if *in_session {
                !self.random.chance(self.scenario.session_end)
            } else {
                self.random.chance(self.scenario.session_rate)
            };
            if *in_session && self.random.chance(self.scenario.request_rate) {
                let isolate = self.random.below(self.isolates.len() as u64) as usize;
                let at = now_ms + self.random.below(1000) as i64;
                self.request(isolate, user, at);
            }
        }
        for isolate in 0..self.isolates.len() {
            self.land_flights(isolate, now_ms);
            self.flush(isolate, now_ms, false);
        }
        for user in 0..self.users.len() {
            self.alarm(user, now_ms);
        }
    }

    fn now(&self, isolate: usize, at_ms: i64) -> i64 {
        at_ms + self.isolates[isolate].skew_ms
    }

    /// A call from `isolate` to `user`'s object, carrying what it holds for it; settlements
    /// are done when the answer arrives, else held again.
    fn call_user(&mut self, isolate: usize, user: usize, command: UserCommand) -> Call {
        self.alarm_lost[user] = false;
        if self.random.chance(self.scenario.loss) {
            self.outcome.faults += 1;
            return Call::Lost;
        }
        let held = &mut self.isolates[isolate].held;
        let settle: Vec<Finished> = held
            .iter()
            .filter(|(to, _, _)| *to == user)
            .map(|(_, finished, _)| finished.clone())
            .collect();
        let (reply, _) = self.users[user].apply(&settle, &command);
        self.count_charges(user);
        if self.random.chance(self.scenario.loss) {
            self.outcome.faults += 1;
            return Call::LostAfter;
        }
        self.isolates[isolate].held.retain(|(to, _, _)| *to != user);
        Call::Answered(reply)
    }

    /// A call to the pool; a grant lost with its answer is stranded.
    fn call_pool(&mut self, command: UserCommand) -> Call {
        self.outcome.pool_calls += 1;
        if self.random.chance(self.scenario.loss) {
            self.outcome.faults += 1;
            return Call::Lost;
        }
        let (reply, _) = self.pool.apply(&[], &command);
        if self.random.chance(self.scenario.loss) {
            self.outcome.faults += 1;
            if let UserReply::Leased { grant, .. } = reply {
                self.outcome.stranded += grant.amount.tokens;
            }
            return Call::LostAfter;
        }
        Call::Answered(reply)
    }

    /// What the Worker does for one request: admit it against the user's lease, topping the
    /// lease up when the object says it must; then the request runs and its settlement is
    /// held in the isolate.
    fn request(&mut self, isolate: usize, user: usize, at_ms: i64) {
        self.outcome.requests += 1;
        let now_ms = self.now(isolate, at_ms);
        let ask = Ask {
            tokens: 500 + self.random.below(3_500),
            stream: false,
            nano_usd: 0,
        };
        let mut grants = Vec::new();
        for _ in 0..ATTEMPTS {
            let command = UserCommand::Admit {
                issued_at: None,
                ask: Some(ask),
                limits: self.user_limits[user],
                alerts: AlertRules::default(),
                now_ms,
                continues: None,
                references: vec![],
                plan: None,
                sub: Some(format!("user-{user}")),
                voice: None,
                leases: vec![self.terms.clone()],
                grants: std::mem::take(&mut grants),
            };
            let carried = command_grants(&command);
            let call = self.call_user(isolate, user, command);
            self.count_undeposited(user, &carried, matches!(call, Call::Lost));
            let asks = match call {
                Call::Answered(UserReply::Admitted {
                    reservation: Some(reservation),
                    ..
                }) => {
                    self.outcome.admitted += 1;
                    let finished = Finished {
                        reservation_id: reservation.id,
                        // Most answers use most of what they reserved.
                        used_tokens: reservation.tokens / 2 + self.random.below(reservation.tokens / 2 + 1),
                        limits: self.user_limits[user],
                        now_ms,
                        created_response: None,
                        created_items: vec![],
                        used_nano_usd: 0,
                    };
                    let ends_at_ms = at_ms + 200 + self.random.below(30_000) as i64;
                    self.isolates[isolate].flights.push(Flight {
                        user,
                        finished,
                        ends_at_ms,
                    });
                    return;
                }
                Call::Answered(UserReply::NeedLease { leases }) => leases,
                // Refused by the user's own limits, or a failed call (a 503).
                Call::Answered(_) | Call::Lost | Call::LostAfter => return,
            };
            for asked in asks {
                if self.isolates[isolate].refusals.refusal(&asked, now_ms).is_some() {
                    self.refused_by_pool(ask.tokens, now_ms);
                    return;
                }
                let command = UserCommand::Lease {
                    ask: asked,
                    limits: self.terms.limits,
                    alerts: AlertRules::default(),
                    now_ms,
                };
                match self.call_pool(command) {
                    Call::Answered(UserReply::Leased { grant, .. }) => grants.push(grant),
                    Call::Answered(UserReply::Refused { refusal, standing }) => {
                        self.isolates[isolate]
                            .refusals
                            .remember(POOL, standing, refusal, now_ms);
                        self.refused_by_pool(ask.tokens, now_ms);
                        return;
                    }
                    Call::Answered(_) => return,
                    Call::Lost | Call::LostAfter => return,
                }
            }
        }
        // Still short after its attempts (others took the lease meanwhile): a 503.
        self.outcome.stranded += grants.iter().map(|g| g.amount.tokens).sum::<u64>();
    }

    /// Grants that never reached the lease: their call was lost on its way, or they came
    /// after a newer grant (or for a day the user's object has left).
    fn count_undeposited(&mut self, user: usize, grants: &[Grant], lost: bool) {
        for grant in grants {
            let deposited = self.users[user]
                .leases
                .iter()
                .any(|lease| lease.pool == grant.pool && lease.day == grant.day && lease.last_grant == Some(grant.id));
            if lost || !deposited {
                self.outcome.stranded += grant.amount.tokens;
            }
        }
    }

    /// A request the pool refused (or would have: the isolate remembers its refusal).
    fn refused_by_pool(&mut self, tokens: u64, now_ms: i64) {
        self.outcome.refused_by_pool += 1;
        self.outcome.refused_days.insert(utc_day(now_ms));
        if self.committed_everywhere() + tokens <= self.scenario.budget {
            self.outcome.refused_early += 1;
        }
    }

    /// What one global object would count now: every user's spend and reservations.
    fn committed_everywhere(&self) -> u64 {
        self.users.iter().map(|user| user.quota.committed().tokens).sum()
    }

    /// Requests that ended hold their settlement in the isolate.
    fn land_flights(&mut self, isolate: usize, at_ms: i64) {
        let now_ms = self.now(isolate, at_ms);
        let flights = std::mem::take(&mut self.isolates[isolate].flights);
        let (ended, running): (Vec<Flight>, Vec<Flight>) = flights.into_iter().partition(|f| f.ends_at_ms <= at_ms);
        self.isolates[isolate].flights = running;
        for flight in ended {
            let finished = Finished {
                now_ms,
                ..flight.finished
            };
            self.isolates[isolate].held.push((flight.user, finished, now_ms));
        }
    }

    /// Settlements held `SETTLEMENT_HOLD` (or all, at the end) go in a call of their own.
    fn flush(&mut self, isolate: usize, at_ms: i64, all: bool) {
        let now_ms = self.now(isolate, at_ms);
        let hold_ms = SETTLEMENT_HOLD.as_millis() as i64;
        let mut due: Vec<(usize, Finished)> = self.isolates[isolate]
            .held
            .iter()
            .filter(|(_, _, held_at)| all || now_ms - held_at >= hold_ms)
            .map(|(user, finished, _)| (*user, finished.clone()))
            .collect();
        due.sort_by_key(|(user, _)| *user);
        due.dedup_by_key(|(user, _)| *user);
        for (user, finished) in due {
            self.call_user(isolate, user, UserCommand::Finish(finished));
        }
    }

    /// The user's object's alarm: an idle lease gives back what is free, once.
    fn alarm(&mut self, user: usize, now_ms: i64) {
        if self.alarm_lost[user] || self.users[user].next_give_back_ms().is_none_or(|at| at > now_ms) {
            return;
        }
        let give_backs = self.users[user].idle_give_backs(now_ms);
        self.count_charges(user);
        for (asked, limits) in give_backs {
            let returned = asked.give_back.tokens;
            let command = UserCommand::Lease {
                ask: asked,
                limits,
                alerts: AlertRules::default(),
                now_ms,
            };
            if matches!(self.call_pool(command), Call::Lost) {
                self.outcome.stranded += returned;
            }
        }
    }

    /// What the user's object charged, by day (what its outbox sends the usage index).
    fn count_charges(&mut self, user: usize) {
        let outbox = &mut self.users[user].usage_outbox;
        while let Some((_, batch)) = outbox.batch() {
            for (day, spent) in batch.by_day {
                *self.outcome.charged_by_day.entry(day).or_default() += spent.tokens;
            }
            outbox.acknowledged(batch.seq);
        }
    }

    /// The end: requests under way end, what isolates hold is delivered, and every
    /// reservation left (lost with a crash or a call) expires, charged in full.
    fn finish(&mut self, at_ms: i64) {
        for isolate in 0..self.isolates.len() {
            self.land_flights(isolate, at_ms + 60_000);
            self.flush(isolate, at_ms + 60_000, true);
        }
        let later = at_ms + RESERVATION_TIMEOUT_MS + 60_000;
        for user in 0..self.users.len() {
            let status = UserCommand::Status {
                limits: self.user_limits[user],
                now_ms: later,
                plan_limits: BTreeMap::new(),
            };
            self.users[user].apply(&[], &status);
            self.count_charges(user);
        }
    }
}

fn command_grants(command: &UserCommand) -> Vec<Grant> {
    match command {
        UserCommand::Admit { grants, .. } => grants.clone(),
        UserCommand::Finish(_)
        | UserCommand::Cancel { .. }
        | UserCommand::Revoke { .. }
        | UserCommand::Unrevoke {}
        | UserCommand::Status { .. }
        | UserCommand::Mint { .. }
        | UserCommand::SetPlan { .. }
        | UserCommand::Renew { .. }
        | UserCommand::Block { .. }
        | UserCommand::Unblock {}
        | UserCommand::Lease { .. }
        | UserCommand::PoolStatus { .. } => Vec::new(),
    }
}

/// The table's header and one row per run.
pub fn table(rows: &[(Scenario, Outcome)]) -> String {
    let mut table = String::from(
        "| users | isolates | fault rates: lost calls, crashes, skew | faults | requests | admitted | overrun | stranded | refused early (at most) | unspent on days that refused | shared-object calls/request |\n\
         | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (scenario, outcome) in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {}% of calls, {}% of isolates a second, ±{} s | {} | {} | {} | {} | {} ({:.2}% of a day's budget) | {} ({:.2}% of requests) | {:.2}% of a day's budget | {:.3} |",
            scenario.users,
            scenario.isolates,
            scenario.loss * 100.0,
            scenario.crash * 100.0,
            scenario.skew_ms as f64 / 1000.0,
            outcome.faults,
            outcome.requests,
            outcome.admitted,
            outcome.overrun,
            outcome.stranded,
            outcome.stranded as f64 * 100.0 / scenario.budget as f64,
            outcome.refused_early,
            outcome.refused_early as f64 * 100.0 / outcome.requests.max(1) as f64,
            outcome.unspent as f64 * 100.0 / (scenario.budget as f64 * outcome.refused_days.len().max(1) as f64),
            outcome.pool_calls_per_request(),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scenario that spends the budget before midnight and again after it.
    fn scenario(users: usize, isolates: usize, seconds: i64, seed: u64) -> Scenario {
        Scenario {
            users,
            isolates,
            budget: users as u64 * seconds as u64 * 9,
            seconds,
            before_midnight_s: seconds / 2,
            session_rate: 0.002,
            session_end: 1.0 / 120.0,
            request_rate: 0.1,
            loss: 0.002,
            crash: 0.002,
            evict: 0.001,
            skew_ms: 1_500,
            seed,
        }
    }

    #[test]
    fn a_thousand_users_over_sixteen_faulty_isolates_never_overrun_the_global_budget() {
        let scenario = scenario(1_000, 16, 600, 7);
        let outcome = run(scenario);
        println!("{}", table(&[(scenario, outcome.clone())]));
        assert_eq!(outcome.overrun, 0, "{outcome:?}");
        assert_eq!(outcome.charged_by_day.len(), 2, "it ran across midnight: {outcome:?}");
        assert!(outcome.refused_by_pool > 0, "the budget ran out: {outcome:?}");
        assert!(outcome.faults > 0 && outcome.admitted > 1_000, "{outcome:?}");
        // Fewer pool calls than requests, though the budget runs out and leases turn short.
        assert!(outcome.pool_calls_per_request() < 0.8, "{outcome:?}");
    }

    /// `make sim`: the table of docs/capacity.md.
    #[test]
    #[ignore = "minutes: make sim"]
    fn the_table() {
        let runs = [
            scenario(1_000, 16, 3_600, 1),
            scenario(5_000, 64, 3_600, 2),
            scenario(20_000, 256, 1_800, 3),
            Scenario {
                loss: 0.02,
                crash: 0.02,
                skew_ms: 5_000,
                ..scenario(5_000, 64, 3_600, 4)
            },
        ];
        let rows: Vec<(Scenario, Outcome)> = runs.into_iter().map(|s| (s, run(s))).collect();
        println!("{}", table(&rows));
        assert!(rows.iter().all(|(_, outcome)| outcome.overrun == 0));
    }
}
