//! What operators read about spending (`GET /admin/usage`, `GET /admin/budget`): which UTC
//! days a query asks for, and each day's totals built from the day indexes' lists.

use crate::budget::prices::usd;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::budget::quota::Standing;
use crate::day::Day;
use crate::error::ProxyError;

/// The most days one range may ask for: each day is one call to its index object.
pub const MAX_RANGE_DAYS: i64 = 31;

/// Which days `GET /admin/usage` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageQuery {
    /// `?day=YYYY-MM-DD`, or today without a query.
    Day(String),
    /// `?from=YYYY-MM-DD&to=YYYY-MM-DD`, both days included.
    Range(DayRange),
}

/// Consecutive UTC days, `from` to `to` included, at most `MAX_RANGE_DAYS` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    from: Day,
    to: Day,
}

impl UsageQuery {
    /// The query's `day`, `from` and `to` parameters; `today` (UTC) when none is given.
    pub fn parse(day: Option<&str>, from: Option<&str>, to: Option<&str>, today: &str) -> Result<Self, ProxyError> {
        match (day, from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ProxyError::invalid_request(
                "Give either `day` or `from` and `to`, not both.",
                Some("day"),
            )),
            (Some(day), None, None) => Ok(UsageQuery::Day(date(day, "day")?.to_string())),
            (None, None, None) => Ok(UsageQuery::Day(today.to_owned())),
            (None, Some(_), None) => Err(ProxyError::invalid_request("`to` is required with `from`.", Some("to"))),
            (None, None, Some(_)) => Err(ProxyError::invalid_request(
                "`from` is required with `to`.",
                Some("from"),
            )),
            (None, Some(from), Some(to)) => DayRange::new(date(from, "from")?, date(to, "to")?).map(UsageQuery::Range),
        }
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

/// One user's spending of a day, as a day index lists it. `total_usd` is there only once the
/// index records dollars.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserTotal {
    pub sub: String,
    pub total_tokens: u64,
    #[serde(default)]
    pub total_usd: Option<f64>,
}

/// A day index's list (`IndexCommand::List`'s answer) as typed totals: the one place that
/// reads it, so a change of what the index stores touches only the index and this.
pub fn user_totals(list: Value) -> Result<Vec<UserTotal>, ProxyError> {
    serde_json::from_value(list).map_err(|error| ProxyError::Internal {
        detail: format!("usage index list: {error}"),
    })
}

/// `{"from","to","days":[{"day","total_tokens","total_usd","users":[...]}]}`: one entry per
/// day, empty days included, each day's users by spending, largest first. Dollars appear
/// wherever any day's index has them, so a chart never mixes days with and without.
pub fn range_report(range: &DayRange, days: Vec<(String, Vec<UserTotal>)>) -> Value {
    let dollars = days
        .iter()
        .flat_map(|(_, users)| users)
        .any(|user| user.total_usd.is_some());
    let days: Vec<Value> = days
        .into_iter()
        .map(|(day, mut users)| {
            users.sort_by(|a, b| {
                nano_usd(b.total_usd)
                    .cmp(&nano_usd(a.total_usd))
                    .then(b.total_tokens.cmp(&a.total_tokens))
                    .then(a.sub.cmp(&b.sub))
            });
            let total_tokens = users
                .iter()
                .fold(0u64, |sum, user| sum.saturating_add(user.total_tokens));
            let total_nano = users
                .iter()
                .fold(0u64, |sum, user| sum.saturating_add(nano_usd(user.total_usd)));
            let users: Vec<Value> = users
                .iter()
                .map(|user| {
                    let mut entry = json!({ "sub": user.sub, "total_tokens": user.total_tokens });
                    if dollars {
                        entry["total_usd"] = json!(usd(nano_usd(user.total_usd)));
                    }
                    entry
                })
                .collect();
            let mut entry = json!({ "day": day, "total_tokens": total_tokens, "users": users });
            if dollars {
                entry["total_usd"] = json!(usd(total_nano));
            }
            entry
        })
        .collect();
    json!({ "from": range.from.to_string(), "to": range.to.to_string(), "days": days })
}

/// Dollars are summed as whole nano-dollars, so a day's total is exactly its users' sum.
fn nano_usd(total_usd: Option<f64>) -> u64 {
    // `as` saturates: a negative or absurd figure cannot wrap.
    total_usd.map_or(0, |usd| (usd * 1e9).round() as u64)
}

/// `GET /admin/budget`: the day and the budget all users share, from the global object's
/// standing, or `"tokens": null` when no global budget is set. Whatever budgets the standing
/// reports (tokens, and dollars where it has them) are passed on as `/v1/usage` shows them.
pub fn budget_report(day: &str, standing: Option<&Standing>) -> Value {
    let mut report = json!({ "object": "budget", "day": day, "tokens": null });
    if let Some(Value::Object(usage)) = standing.map(|standing| standing.usage_json("", "")) {
        for (name, value) in usage {
            if !matches!(
                name.as_str(),
                "object" | "sub" | "requests" | "streams" | "plan" | "plan_source"
            ) {
                report[name] = value;
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(day: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<UsageQuery, ProxyError> {
        UsageQuery::parse(day, from, to, "2026-11-24")
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
        assert_eq!(query(None, None, None), Ok(UsageQuery::Day("2026-11-24".into())));
        assert_eq!(
            query(Some("2026-02-28"), None, None),
            Ok(UsageQuery::Day("2026-02-28".into()))
        );
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

    fn user(sub: &str, total_tokens: u64, total_usd: Option<f64>) -> UserTotal {
        UserTotal {
            sub: sub.into(),
            total_tokens,
            total_usd,
        }
    }

    #[test]
    fn a_range_report_has_every_day_with_its_totals_and_biggest_spenders_first() {
        let days = vec![
            ("2026-11-23".to_string(), vec![]),
            (
                "2026-11-24".to_string(),
                vec![user("alice", 10, None), user("bob", 30, None), user("carol", 10, None)],
            ),
        ];
        let report = range_report(&range("2026-11-23", "2026-11-24"), days);
        assert_eq!(
            report,
            json!({"from": "2026-11-23", "to": "2026-11-24", "days": [
                {"day": "2026-11-23", "total_tokens": 0, "users": []},
                {"day": "2026-11-24", "total_tokens": 50, "users": [
                    {"sub": "bob", "total_tokens": 30},
                    {"sub": "alice", "total_tokens": 10},
                    {"sub": "carol", "total_tokens": 10},
                ]},
            ]})
        );
    }

    #[test]
    fn dollars_once_recorded_appear_on_every_day_and_sum_exactly() {
        let days = vec![
            ("2026-11-23".to_string(), vec![]),
            (
                "2026-11-24".to_string(),
                vec![user("alice", 900, Some(0.1)), user("bob", 10, Some(0.2))],
            ),
        ];
        let report = range_report(&range("2026-11-23", "2026-11-24"), days);
        assert_eq!(report["days"][0]["total_usd"], json!(0.0));
        assert_eq!(report["days"][1]["total_usd"], json!(0.3), "not 0.30000000000000004");
        assert_eq!(
            report["days"][1]["users"][0]["sub"], "bob",
            "dollars rank before tokens"
        );
    }

    #[test]
    fn the_index_list_is_read_with_or_without_dollars() {
        let totals = user_totals(json!([
            {"sub": "alice", "total_tokens": 5},
            {"sub": "bob", "total_tokens": 7, "total_usd": 0.25}
        ]))
        .unwrap();
        assert_eq!(totals, [user("alice", 5, None), user("bob", 7, Some(0.25))]);
        assert!(user_totals(json!({"users": []})).is_err());
    }

    #[test]
    fn the_budget_report_says_when_there_is_no_global_budget() {
        assert_eq!(
            budget_report("2026-11-24", None),
            json!({"object": "budget", "day": "2026-11-24", "tokens": null})
        );
    }

    #[test]
    fn the_budget_report_shows_the_global_budget_as_usage_shows_a_users() {
        let config = crate::config::Config::for_tests(&[("GLOBAL_DAILY_TOKEN_BUDGET", "1000")]).unwrap();
        let limits = config.global_limits.unwrap();
        let mut state = crate::budget::quota::QuotaState::default();
        // From JSON, so the test reads the same whatever else an `Ask` comes to carry.
        let ask: crate::budget::quota::Ask = serde_json::from_value(json!({"tokens": 300, "stream": false})).unwrap();
        state.admit(&limits, ask, 1_800_000_000_000).unwrap();
        let standing = state.standing(&limits, 1_800_000_000_000);
        let report = budget_report("2027-01-15", Some(&standing));
        assert_eq!(report["object"], "budget");
        assert_eq!(report["day"], "2027-01-15");
        assert_eq!(report["tokens"]["limit"], 1000);
        assert_eq!(report["tokens"]["reserved"], 300);
        assert_eq!(report["tokens"]["remaining"], 700);
        assert!(report.get("sub").is_none() && report.get("requests").is_none());
    }
}
