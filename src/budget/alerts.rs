//! Traffic-spike alerts, decided on admission: a user's requests in the current hour pass
//! `ALERT_REQUESTS_PER_HOUR` (at most one alert per user per hour), or the global budget's use
//! passes `ALERT_BUDGET_PERCENT` (at most one alert per day).

use serde::{Deserialize, Serialize};

use crate::budget::money::dollars_and_cents;
use crate::budget::quota::{Standing, DAY_MS};

const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRules {
    pub requests_per_hour: Option<u32>,
    pub budget_percent: Option<u8>,
}

/// What the object remembers to count requests and alert once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    hour: i64,
    requests_this_hour: u32,
    alerted_hour: Option<i64>,
    alerted_day: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alert {
    RequestsPerHour {
        requests: u32,
        threshold: u32,
    },
    BudgetPercent {
        used_tokens: u64,
        budget: u64,
        threshold_percent: u8,
    },
    /// The same for a dollar budget (`GLOBAL_DAILY_BUDGET_USD`), in nano-dollars.
    SpendPercent {
        used_nano_usd: u64,
        budget_nano_usd: u64,
        threshold_percent: u8,
    },
}

impl Alert {
    /// A one-line message for a person (log line and Slack-compatible webhook `text`).
    pub fn message(&self, subject: &str) -> String {
        match self {
            Alert::RequestsPerHour { requests, threshold } => {
                let subject = slack_escape(subject);
                format!("openai-edge-proxy: user {subject} made {requests} requests in the current hour (alert threshold {threshold}).")
            }
            Alert::BudgetPercent { used_tokens, budget, threshold_percent } => format!(
                "openai-edge-proxy: {used_tokens} of the {budget} tokens of today's budget of {subject} are leased to their objects: used, reserved or held for their next requests (alert threshold {threshold_percent}%)."
            ),
            Alert::SpendPercent { used_nano_usd, budget_nano_usd, threshold_percent } => format!(
                "openai-edge-proxy: ${} of the ${} of today's budget of {subject} are leased to their objects: used, reserved or held for their next requests (alert threshold {threshold_percent}%).",
                dollars_and_cents(*used_nano_usd),
                dollars_and_cents(*budget_nano_usd)
            ),
        }
    }
}

/// Slack's escaping of `&`, `<` and `>`: a `sub` is the user's to choose, and unescaped Slack
/// renders `<!channel>` as a mention of everyone and `<https://x|text>` as a link.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl AlertState {
    /// Counts an admitted request and says whether it crossed a threshold for the first time
    /// in its hour (requests) or day (budget). `standing` is the state after admission.
    pub fn on_admit(&mut self, rules: &AlertRules, standing: &Standing, now_ms: i64) -> Option<Alert> {
        let hour = now_ms.div_euclid(HOUR_MS);
        if self.hour != hour {
            self.hour = hour;
            self.requests_this_hour = 0;
        }
        self.requests_this_hour += 1;
        if let Some(threshold) = rules.requests_per_hour {
            if self.requests_this_hour > threshold && self.alerted_hour != Some(hour) {
                self.alerted_hour = Some(hour);
                return Some(Alert::RequestsPerHour {
                    requests: self.requests_this_hour,
                    threshold,
                });
            }
        }
        let day = now_ms.div_euclid(DAY_MS);
        let percent = rules.budget_percent.filter(|_| self.alerted_day != Some(day))?;
        let crossed = |spent: u64, budget: u64| u128::from(spent) * 100 >= u128::from(budget) * u128::from(percent);
        let tokens = standing.used_tokens.saturating_add(standing.reserved_tokens);
        let nano_usd = standing.used_nano_usd.saturating_add(standing.reserved_nano_usd);
        let alert = match (standing.daily_tokens, standing.daily_nano_usd) {
            (Some(budget), _) if crossed(tokens, budget) => Alert::BudgetPercent {
                used_tokens: tokens,
                budget,
                threshold_percent: percent,
            },
            (_, Some(budget)) if crossed(nano_usd, budget) => Alert::SpendPercent {
                used_nano_usd: nano_usd,
                budget_nano_usd: budget,
                threshold_percent: percent,
            },
            _ => return None,
        };
        self.alerted_day = Some(day);
        Some(alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;

    fn standing(used: u64) -> Standing {
        Standing {
            rate: None,
            max_streams: None,
            open_streams: 0,
            daily_tokens: Some(1000),
            used_tokens: used,
            reserved_tokens: 0,
            budget_reset_seconds: 0,
            daily_nano_usd: None,
            used_nano_usd: 0,
            reserved_nano_usd: 0,
        }
    }

    #[test]
    fn requests_alert_once_per_hour() {
        let rules = AlertRules {
            requests_per_hour: Some(3),
            budget_percent: None,
        };
        let mut state = AlertState::default();
        let alerts: Vec<_> = (0..10)
            .filter_map(|i| state.on_admit(&rules, &standing(0), T0 + i))
            .collect();
        assert_eq!(
            alerts,
            [Alert::RequestsPerHour {
                requests: 4,
                threshold: 3
            }]
        );
        let next_hour: Vec<_> = (0..5)
            .filter_map(|i| state.on_admit(&rules, &standing(0), T0 + HOUR_MS + i))
            .collect();
        assert_eq!(next_hour.len(), 1, "a new hour counts from zero and may alert again");
    }

    #[test]
    fn a_dollar_budget_alone_alerts_past_its_percent_too() {
        let rules = AlertRules {
            requests_per_hour: None,
            budget_percent: Some(80),
        };
        let dollars_only = |used_nano_usd: u64| Standing {
            daily_tokens: None,
            daily_nano_usd: Some(10_000_000_000),
            used_nano_usd,
            ..standing(0)
        };
        let mut state = AlertState::default();
        assert_eq!(state.on_admit(&rules, &dollars_only(7_999_999_999), T0), None);
        let alert = state.on_admit(&rules, &dollars_only(8_000_000_000), T0 + 1);
        assert_eq!(
            alert,
            Some(Alert::SpendPercent {
                used_nano_usd: 8_000_000_000,
                budget_nano_usd: 10_000_000_000,
                threshold_percent: 80
            })
        );
        assert!(alert.unwrap().message("all users").contains("$8.00 of the $10.00"));
        assert_eq!(state.on_admit(&rules, &dollars_only(9_000_000_000), T0 + 2), None);
    }

    #[test]
    fn the_budget_alerts_once_a_day_past_its_percent() {
        let rules = AlertRules {
            requests_per_hour: None,
            budget_percent: Some(80),
        };
        let mut state = AlertState::default();
        assert_eq!(state.on_admit(&rules, &standing(799), T0), None);
        assert_eq!(
            state.on_admit(&rules, &standing(800), T0 + 1),
            Some(Alert::BudgetPercent {
                used_tokens: 800,
                budget: 1000,
                threshold_percent: 80
            })
        );
        assert_eq!(state.on_admit(&rules, &standing(950), T0 + 2), None);
        assert!(state.on_admit(&rules, &standing(0), T0).is_none());
    }

    #[test]
    fn a_sub_cannot_mention_the_channel_or_plant_a_link_in_an_alert() {
        let alert = Alert::RequestsPerHour {
            requests: 5,
            threshold: 4,
        };
        let message = alert.message("<!channel> & <https://evil.example|click>");
        assert!(
            message.contains("user &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; made 5"),
            "{message}"
        );
        assert!(!message.contains('<') && !message.contains('>'));
    }

    #[test]
    fn a_budget_alert_names_the_pool_it_is_about() {
        let alert = Alert::SpendPercent {
            used_nano_usd: 8_000_000_000,
            budget_nano_usd: 10_000_000_000,
            threshold_percent: 80,
        };
        let message = alert.message("all guests");
        assert!(
            message.contains("$8.00 of the $10.00 of today's budget of all guests"),
            "{message}"
        );
    }

    #[test]
    fn no_rules_no_alerts() {
        let mut state = AlertState::default();
        assert!((0..1000).all(|i| state
            .on_admit(&AlertRules::default(), &standing(1000), T0 + i)
            .is_none()));
        assert!(Alert::RequestsPerHour {
            requests: 5,
            threshold: 4
        }
        .message("alice")
        .contains("user alice made 5 requests"));
    }
}
