//! What operators read about spending (`GET /admin/usage`, `GET /admin/budget`): which UTC
//! days and which page a query asks for, each day's summary (totals and top spenders, kept by
//! the day's index as charges arrive, so a summary never reads every user of a busy day) and a
//! day's users one bounded page at a time.

use std::cmp::Reverse;

use crate::budget::money::usd;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::budget::lease::PoolStanding;
use crate::budget::quota::{Spend, Standing};
use crate::day::Day;
use crate::error::ProxyError;

/// The most days one range may ask for: each day is one call to its index object.
pub const MAX_RANGE_DAYS: i64 = 31;
/// How many users a day's page lists without `limit`, and at most.
pub const DEFAULT_PAGE_USERS: u32 = 100;
pub const MAX_PAGE_USERS: u32 = 1000;
/// How many of a day's biggest spenders its summary keeps.
pub const TOP_SPENDERS: usize = 10;
/// A cursor is a `sub`; anything longer is not one.
const MAX_CURSOR_BYTES: usize = 1024;

/// Which days `GET /admin/usage` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageQuery {
    /// `?day=YYYY-MM-DD` (today without a query): its summary and one page of its users.
    Day { day: String, page: PageAsk },
    /// `?from=YYYY-MM-DD&to=YYYY-MM-DD`, both days included: each day's summary.
    Range(DayRange),
}

/// A page of a day's users, in `sub` order: those after `after` (the previous page's
/// `next_cursor`), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAsk {
    pub after: Option<String>,
    pub limit: u32,
}

/// The query parameters of `GET /admin/usage`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageParams<'a> {
    pub day: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub limit: Option<&'a str>,
}

/// Consecutive UTC days, `from` to `to` included, at most `MAX_RANGE_DAYS` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    from: Day,
    to: Day,
}

impl UsageQuery {
    /// The query's parameters; `today` (UTC) when no day is given.
    pub fn parse(params: UsageParams<'_>, today: &str) -> Result<Self, ProxyError> {
        let paged = params.cursor.is_some() || params.limit.is_some();
        match (params.day, params.from, params.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ProxyError::invalid_request(
                "Give either `day` or `from` and `to`, not both.",
                Some("day"),
            )),
            (Some(day), None, None) => Ok(UsageQuery::Day {
                day: date(day, "day")?.to_string(),
                page: PageAsk::parse(params)?,
            }),
            (None, None, None) => Ok(UsageQuery::Day {
                day: today.to_owned(),
                page: PageAsk::parse(params)?,
            }),
            (None, Some(_), None) => Err(ProxyError::invalid_request("`to` is required with `from`.", Some("to"))),
            (None, None, Some(_)) => Err(ProxyError::invalid_request(
                "`from` is required with `to`.",
                Some("from"),
            )),
            (None, Some(_), Some(_)) if paged => Err(ProxyError::invalid_request(
                "A range lists each day's totals; page through one `day` at a time.",
                Some(if params.cursor.is_some() { "cursor" } else { "limit" }),
            )),
            (None, Some(from), Some(to)) => DayRange::new(date(from, "from")?, date(to, "to")?).map(UsageQuery::Range),
        }
    }
}

impl PageAsk {
    fn parse(params: UsageParams<'_>) -> Result<Self, ProxyError> {
        let limit = match params.limit {
            None => DEFAULT_PAGE_USERS,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE_USERS).contains(limit))
                .ok_or_else(|| {
                    ProxyError::invalid_request(
                        format!("`limit` must be a whole number from 1 to {MAX_PAGE_USERS}."),
                        Some("limit"),
                    )
                })?,
        };
        let after = match params.cursor {
            Some(cursor) if cursor.is_empty() || cursor.len() > MAX_CURSOR_BYTES => {
                return Err(ProxyError::invalid_request(
                    "`cursor` must be a `next_cursor` of an earlier page.",
                    Some("cursor"),
                ))
            }
            cursor => cursor.map(str::to_owned),
        };
        Ok(PageAsk { after, limit })
    }
}

impl DayRange {
    fn new(from: Day, to: Day) -> Result<Self, ProxyError> {
        if from > to {
            return Err(ProxyError::invalid_request(
                "`from` must not be after `to`.",
                Some("from"),
            ));
        }
        if from.days_until(to) >= MAX_RANGE_DAYS {
            return Err(ProxyError::invalid_request(
                format!("A range covers at most {MAX_RANGE_DAYS} days."),
                Some("to"),
            ));
        }
        Ok(DayRange { from, to })
    }

    /// Every day of the range, oldest first, as `YYYY-MM-DD`.
    pub fn days(&self) -> Vec<String> {
        std::iter::successors(Some(self.from), |day| Some(day.next()))
            .take_while(|day| *day <= self.to)
            .map(|day| day.to_string())
            .collect()
    }
}

fn date(text: &str, param: &str) -> Result<Day, ProxyError> {
    Day::parse(text)
        .ok_or_else(|| ProxyError::invalid_request(format!("`{param}` must be a date like 2026-11-23."), Some(param)))
}

/// What one user spent on a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpend {
    pub sub: String,
    pub spent: Spend,
}

impl UserSpend {
    /// Biggest spender first (dollars, then tokens), ties in `sub` order.
    fn rank(&self) -> (Reverse<u64>, Reverse<u64>, &str) {
        (Reverse(self.spent.nano_usd), Reverse(self.spent.tokens), &self.sub)
    }

    fn json(&self) -> Value {
        json!({ "sub": self.sub, "total_tokens": self.spent.tokens, "total_usd": usd(self.spent.nano_usd) })
    }
}

/// A day's totals, how many users spent, and the biggest spenders, biggest first. The day's
/// index keeps it up to date with each charge it records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySummary {
    pub spent: Spend,
    pub users: u64,
    pub top: Vec<UserSpend>,
}

impl DaySummary {
    /// Counts a charge of `spent` to `sub`, whose day's total is now `total` (`first`: its
    /// first charge of the day). Totals only grow, so a user outside the top can enter it only
    /// by a charge of its own: the top kept this way is exact.
    pub fn add(&mut self, sub: &str, first: bool, spent: Spend, total: Spend) {
        self.spent.tokens = self.spent.tokens.saturating_add(spent.tokens);
        self.spent.nano_usd = self.spent.nano_usd.saturating_add(spent.nano_usd);
        self.users = self.users.saturating_add(u64::from(first));
        self.top.retain(|user| user.sub != sub);
        let entry = UserSpend {
            sub: sub.to_owned(),
            spent: total,
        };
        // Inserted where it ranks, not sorted: `top` is always in order, and a sort is ~3 KB of wasm.
        let at = self.top.partition_point(|user| user.rank() < entry.rank());
        self.top.insert(at, entry);
        self.top.truncate(TOP_SPENDERS);
    }

    /// Adds the summary of another shard of the same day (its users are other users).
    pub fn merge(&mut self, shard: &DaySummary) {
        self.users = self.users.saturating_add(shard.users);
        for user in &shard.top {
            let (first, spent) = (false, Spend::default());
            self.add(&user.sub, first, spent, user.spent);
        }
        self.spent.tokens = self.spent.tokens.saturating_add(shard.spent.tokens);
        self.spent.nano_usd = self.spent.nano_usd.saturating_add(shard.spent.nano_usd);
    }

    /// `{"day","total_tokens","total_usd","user_count","top":[{"sub","total_tokens","total_usd"}]}`
    pub fn json(&self, day: &str) -> Value {
        json!({
            "day": day,
            "total_tokens": self.spent.tokens,
            "total_usd": usd(self.spent.nano_usd),
            "user_count": self.users,
            "top": self.top.iter().map(UserSpend::json).collect::<Vec<_>>(),
        })
    }
}

/// `GET /admin/usage?day=`: the day's summary and one page of its users in `sub` order;
/// `next_cursor` (the page's last `sub`) asks for the next page, `null` after the last.
pub fn day_report(day: &str, summary: &DaySummary, page: &PageAsk, users: &[UserSpend]) -> Value {
    let mut report = summary.json(day);
    report["users"] = json!(users.iter().map(UserSpend::json).collect::<Vec<_>>());
    let full = users.len() >= page.limit as usize;
    report["next_cursor"] = json!(users.last().filter(|_| full).map(|user| &user.sub));
    report
}

/// `{"from","to","days":[summary, ...]}`: one summary per day, empty days included.
pub fn range_report(range: &DayRange, days: &[(String, DaySummary)]) -> Value {
    let days: Vec<Value> = days.iter().map(|(day, summary)| summary.json(day)).collect();
    json!({ "from": range.from.to_string(), "to": range.to.to_string(), "days": days })
}

/// `GET /admin/budget`: the day and the budget all users share, from its object's standing,
/// or `"tokens": null` when no global budget is set. Whatever budgets it has (tokens, dollars)
/// are shown as `/v1/usage` shows a user's, with the budget apart in four: `used` and
/// `reserved` as the users' objects last reported them, `leased` granted to their objects and
/// idle there, and `remaining`, not leased yet.
pub fn budget_report(day: &str, pool: Option<&PoolStanding>) -> Value {
    let mut report = json!({ "object": "budget", "day": day, "tokens": null });
    let Some(pool) = pool else { return report };
    let reported = Standing {
        reserved_tokens: pool.reserved.tokens,
        reserved_nano_usd: pool.reserved.nano_usd,
        ..pool.standing
    };
    if let Value::Object(usage) = reported.usage_json("", "") {
        for (name, value) in usage {
            if !matches!(
                name.as_str(),
                "object" | "sub" | "requests" | "streams" | "plan" | "plan_source"
            ) {
                report[name] = value;
            }
        }
    }
    if pool.standing.daily_tokens.is_some() {
        report["tokens"]["leased"] = json!(pool.idle.tokens);
        report["tokens"]["remaining"] = json!(pool.standing.tokens_remaining());
    }
    if pool.standing.daily_nano_usd.is_some() {
        report["cost"]["leased_usd"] = json!(usd(pool.idle.nano_usd));
        report["cost"]["remaining_usd"] = json!(pool.standing.nano_usd_remaining().map(usd));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::lease::{LeaseAsk, LeasePool};

    fn query(day: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<UsageQuery, ProxyError> {
        let params = UsageParams {
            day,
            from,
            to,
            ..UsageParams::default()
        };
        UsageQuery::parse(params, "2026-11-24")
    }

    fn day(day: &str) -> UsageQuery {
        UsageQuery::Day {
            day: day.into(),
            page: PageAsk {
                after: None,
                limit: DEFAULT_PAGE_USERS,
            },
        }
    }

    fn range(from: &str, to: &str) -> DayRange {
        match query(None, Some(from), Some(to)) {
            Ok(UsageQuery::Range(range)) => range,
            other => panic!("{from}..{to} is not a range: {other:?}"),
        }
    }

    fn param(result: Result<UsageQuery, ProxyError>) -> Option<String> {
        match result {
            Err(ProxyError::InvalidRequest { param, .. }) => param,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn a_query_without_days_is_today_and_a_day_is_checked() {
        assert_eq!(query(None, None, None), Ok(day("2026-11-24")));
        assert_eq!(query(Some("2026-02-28"), None, None), Ok(day("2026-02-28")));
        assert_eq!(param(query(Some("2026-02-29"), None, None)).as_deref(), Some("day"));
    }

    #[test]
    fn a_range_lists_every_day_across_month_and_year_ends() {
        assert_eq!(range("2026-11-24", "2026-11-24").days(), ["2026-11-24"]);
        assert_eq!(
            range("2026-12-30", "2027-01-02").days(),
            ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]
        );
        assert_eq!(
            range("2028-02-28", "2028-03-01").days(),
            ["2028-02-28", "2028-02-29", "2028-03-01"]
        );
        assert_eq!(range("2026-01-01", "2026-01-31").days().len(), 31);
    }

    #[test]
    fn a_range_over_31_days_backwards_or_half_given_is_refused_naming_the_parameter() {
        let refused = |day, from, to| param(query(day, from, to));
        assert_eq!(
            refused(None, Some("2026-01-01"), Some("2026-02-01")).as_deref(),
            Some("to")
        );
        assert_eq!(
            refused(None, Some("2026-11-25"), Some("2026-11-24")).as_deref(),
            Some("from")
        );
        assert_eq!(refused(None, Some("2026-11-24"), None).as_deref(), Some("to"));
        assert_eq!(refused(None, None, Some("2026-11-24")).as_deref(), Some("from"));
        assert_eq!(
            refused(None, Some("2026-11-1"), Some("2026-11-24")).as_deref(),
            Some("from")
        );
        assert_eq!(
            refused(None, Some("2026-11-01"), Some("tomorrow")).as_deref(),
            Some("to")
        );
        assert_eq!(
            refused(Some("2026-11-24"), Some("2026-11-01"), Some("2026-11-24")).as_deref(),
            Some("day")
        );
    }

    #[test]
    fn a_day_is_listed_a_bounded_page_at_a_time_after_a_cursor() {
        let paged = |cursor, limit| {
            let params = UsageParams {
                day: Some("2026-11-24"),
                cursor,
                limit,
                ..UsageParams::default()
            };
            UsageQuery::parse(params, "2026-11-24")
        };
        assert_eq!(
            paged(Some("bob"), Some("2")),
            Ok(UsageQuery::Day {
                day: "2026-11-24".into(),
                page: PageAsk {
                    after: Some("bob".into()),
                    limit: 2
                }
            })
        );
        for limit in ["0", "1001", "-1", "ten"] {
            assert_eq!(param(paged(None, Some(limit))).as_deref(), Some("limit"), "{limit}");
        }
        assert_eq!(param(paged(Some(""), None)).as_deref(), Some("cursor"));
        let ranged = UsageParams {
            from: Some("2026-11-01"),
            to: Some("2026-11-24"),
            limit: Some("5"),
            ..UsageParams::default()
        };
        assert_eq!(param(UsageQuery::parse(ranged, "2026-11-24")).as_deref(), Some("limit"));

        let page = PageAsk { after: None, limit: 2 };
        let users = [spend("alice", 1, 0), spend("bob", 2, 0)];
        let report = day_report("2026-11-24", &DaySummary::default(), &page, &users);
        assert_eq!(report["next_cursor"], "bob", "a full page: there may be more");
        let report = day_report("2026-11-24", &DaySummary::default(), &page, &users[..1]);
        assert_eq!(report["next_cursor"], Value::Null, "the last page");
        assert_eq!(
            report["users"],
            json!([{"sub": "alice", "total_tokens": 1, "total_usd": 0.0}])
        );
    }

    fn spend(sub: &str, tokens: u64, nano_usd: u64) -> UserSpend {
        UserSpend {
            sub: sub.into(),
            spent: Spend { tokens, nano_usd },
        }
    }

    #[test]
    fn a_day_summary_adds_up_its_charges_and_keeps_the_exact_top_spenders() {
        let mut summary = DaySummary::default();
        let mut totals = std::collections::BTreeMap::<String, Spend>::new();
        // 30 users, charged in rounds; user i spends i nano-dollars a round, so the top is
        // the last ten, whatever order the charges come in.
        for round in 0..3u64 {
            for i in (0..30u64).rev() {
                let sub = format!("user-{i:02}");
                let spent = Spend {
                    tokens: 1,
                    nano_usd: i + round,
                };
                let total = totals.entry(sub.clone()).or_default();
                let first = *total == Spend::default();
                total.tokens += spent.tokens;
                total.nano_usd += spent.nano_usd;
                summary.add(&sub, first, spent, *total);
            }
        }
        assert_eq!(summary.users, 30);
        assert_eq!(summary.spent.tokens, 90);
        assert_eq!(summary.spent.nano_usd, totals.values().map(|t| t.nano_usd).sum::<u64>());
        let top: Vec<&str> = summary.top.iter().map(|user| user.sub.as_str()).collect();
        let expected: Vec<String> = (20..30).rev().map(|i| format!("user-{i:02}")).collect();
        assert_eq!(top, expected);
        assert_eq!(summary.top[0].spent, totals["user-29"]);
        let json = summary.json("2026-11-24");
        assert_eq!(json["user_count"], 30);
        assert_eq!(json["top"].as_array().map(Vec::len), Some(TOP_SPENDERS));
    }

    #[test]
    fn a_range_report_has_every_day_s_summary_and_no_users() {
        let mut busy = DaySummary::default();
        busy.add(
            "bob",
            true,
            Spend {
                tokens: 30,
                nano_usd: 300_000_000,
            },
            Spend {
                tokens: 30,
                nano_usd: 300_000_000,
            },
        );
        let days = [
            ("2026-11-23".to_string(), DaySummary::default()),
            ("2026-11-24".to_string(), busy),
        ];
        let report = range_report(&range("2026-11-23", "2026-11-24"), &days);
        assert_eq!(
            report,
            json!({"from": "2026-11-23", "to": "2026-11-24", "days": [
                {"day": "2026-11-23", "total_tokens": 0, "total_usd": 0.0, "user_count": 0, "top": []},
                {"day": "2026-11-24", "total_tokens": 30, "total_usd": 0.3, "user_count": 1,
                 "top": [{"sub": "bob", "total_tokens": 30, "total_usd": 0.3}]},
            ]})
        );
    }

    #[test]
    fn the_budget_report_says_when_there_is_no_global_budget() {
        assert_eq!(
            budget_report("2026-11-24", None),
            json!({"object": "budget", "day": "2026-11-24", "tokens": null})
        );
    }

    #[test]
    fn the_budget_report_shows_the_global_budget_used_reserved_leased_and_remaining_apart() {
        let config = crate::config::Config::for_tests(&[("GLOBAL_DAILY_TOKEN_BUDGET", "1000")]).unwrap();
        let limits = config.global_limits.unwrap();
        let mut pool = LeasePool::default();
        let day = 1_800_000_000_000 / crate::budget::quota::DAY_MS;
        // From JSON, so the test reads the same whatever else an ask comes to carry.
        let ask: LeaseAsk = serde_json::from_value(json!({
            "pool": "global", "day": day, "need": {"tokens": 300, "nano_usd": 0}, "most": {"tokens": 300, "nano_usd": 0},
            "give_back": {"tokens": 0, "nano_usd": 0}, "spent": {"tokens": 120, "nano_usd": 0},
            "reserved": {"tokens": 30, "nano_usd": 0}, "reserved_before": {"tokens": 0, "nano_usd": 0}
        }))
        .unwrap();
        pool.lease(&limits, &ask, 1_800_000_000_000).unwrap();
        let report = budget_report("2027-01-15", Some(&pool.standing(&limits, 1_800_000_000_000)));
        assert_eq!(report["object"], "budget");
        assert_eq!(report["day"], "2027-01-15");
        let tokens = &report["tokens"];
        assert_eq!(
            [
                &tokens["limit"],
                &tokens["used"],
                &tokens["reserved"],
                &tokens["leased"],
                &tokens["remaining"]
            ],
            [1000, 120, 30, 150, 700]
        );
        assert!(report.get("sub").is_none() && report.get("requests").is_none());
    }
}
