//! Traffic-spike alerts: thresholds and the webhook.

use super::vars::{Lookup, Vars};
use crate::budget::alerts::AlertRules;
use crate::error::ProxyError;

/// Traffic-spike alerts and where they go besides the log.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Thresholds checked in each user's object.
    pub user: AlertRules,
    /// Thresholds checked in the global budget's object.
    pub global: AlertRules,
    /// Where alerts are POSTed (`{"text": ...}`, Slack-compatible).
    pub webhook_url: Option<String>,
}

impl AlertSettings {
    pub(super) fn from_vars(vars: &Vars<impl Lookup>) -> Result<Self, ProxyError> {
        Ok(AlertSettings {
            user: AlertRules {
                requests_per_hour: vars.optional_number("ALERT_REQUESTS_PER_HOUR", 1..=10_000_000)?,
                budget_percent: None,
            },
            global: AlertRules {
                requests_per_hour: None,
                budget_percent: Some(vars.number("ALERT_BUDGET_PERCENT", 80, 1..=100)?),
            },
            webhook_url: vars.service_url("ALERT_WEBHOOK_URL")?,
        })
    }
}
