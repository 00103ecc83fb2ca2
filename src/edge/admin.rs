//! The operator's routes, behind `ADMIN_TOKEN`: revocation, a user's standing and plan
//! override, a day's usage.

use serde_json::json;
use worker::{Env, Request, Response};

use super::http::{self, header, json_response};
use super::{usage_index, user_object, Now, Result};
use crate::auth;
use crate::config::Config;
use crate::error::ProxyError;
use crate::plans::DEFAULT_PLAN;
use crate::routes::AdminRoute;
use crate::user_state::{parse_day, utc_day, UserCommand, UserReply};

/// An admin body (`{"plan": "pro"}`) is a few bytes.
const MAX_ADMIN_BODY_BYTES: usize = 4096;

pub async fn serve(route: AdminRoute, req: &mut Request, env: &Env, config: &Config) -> Result<Response> {
    // Without an admin token the admin routes do not exist.
    let expected = config.admin_token().ok_or(ProxyError::NotFound)?;
    let authorization = header(req, "authorization");
    let presented = auth::bearer_token(authorization.as_deref()).map_err(|_| ProxyError::AdminUnauthorized)?;
    if !auth::admin_token_matches(presented, expected) {
        return Err(ProxyError::AdminUnauthorized);
    }
    let now = Now::read();
    let (sub, command) = match route {
        AdminRoute::DayUsage => return day_usage(req, env, now).await,
        AdminRoute::Revocation { sub, revoke: true } => (sub, UserCommand::Revoke { at: now.seconds() }),
        AdminRoute::Revocation { sub, revoke: false } => (sub, UserCommand::Unrevoke),
        AdminRoute::Usage { sub } => {
            let command = UserCommand::Status {
                limits: config.default_plan.user_limits,
                now_ms: now.millis(),
                plan_limits: config.plan_limits(),
            };
            (sub, command)
        }
        AdminRoute::Plan { sub, set } => {
            let plan = if set {
                Some(plan_in_body(req, config).await?)
            } else {
                None
            };
            let command = UserCommand::SetPlan {
                plan,
                limits: config.default_plan.user_limits,
                now_ms: now.millis(),
                plan_limits: config.plan_limits(),
            };
            (sub, command)
        }
    };
    let UserReply::Status {
        revoked_at,
        standing,
        plan,
    } = user_object::call_user(env, &sub, &command).await?
    else {
        return Err(ProxyError::Internal {
            detail: "user object did not answer with a status".into(),
        });
    };
    let mut body = match (standing, &plan) {
        (Some(standing), Some(plan)) => {
            // Isolates learn it from the user's object, at the user's next admission.
            let mut body = standing.usage_json(&sub, &plan.name);
            body["plan_source"] = json!(plan.source.name());
            body
        }
        _ => json!({ "sub": sub }),
    };
    body["revoked_at"] = json!(revoked_at);
    json_response(200, &body.to_string())
}

/// `{"plan": "<name>"}`: a plan of `PLANS`, or `default` (the top-level variables).
async fn plan_in_body(req: &mut Request, config: &Config) -> Result<String> {
    let body = http::read_body(req, MAX_ADMIN_BODY_BYTES).await?;
    let invalid = || {
        ProxyError::invalid_request(
            format!("The body must be {{\"plan\": \"<name>\"}}, a plan of PLANS or `{DEFAULT_PLAN}`."),
            Some("plan"),
        )
    };
    let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|_| invalid())?;
    let name = parsed
        .get("plan")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(invalid)?;
    config.plan(name).map_err(|_| invalid())?;
    Ok(name.to_owned())
}

/// `GET /admin/usage?day=YYYY-MM-DD` (default: today, UTC): every user's tokens of that day.
async fn day_usage(req: &Request, env: &Env, now: Now) -> Result<Response> {
    let url = req.url()?;
    let asked = url
        .query_pairs()
        .find(|(name, _)| name == "day")
        .map(|(_, value)| value.into_owned());
    let day = match asked {
        Some(text) => parse_day(&text)
            .ok_or_else(|| ProxyError::invalid_request("`day` must be a date like 2026-11-23.", Some("day")))?,
        None => utc_day(now.millis()),
    };
    let users = usage_index::list(env, &day).await?;
    json_response(200, &json!({ "day": day, "users": users }).to_string())
}
