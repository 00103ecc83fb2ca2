//! The operator's routes, behind `ADMIN_TOKEN`: revocation, a user's standing, a day's usage.

use serde_json::json;
use worker::{Env, Request, Response};

use super::http::{header, json_response};
use super::{usage_index, user_object, Now, Result};
use crate::auth;
use crate::config::Config;
use crate::error::ProxyError;
use crate::routes::AdminRoute;
use crate::user_state::{parse_day, utc_day, UserCommand, UserReply};

pub async fn serve(route: AdminRoute, req: &Request, env: &Env, config: &Config) -> Result<Response> {
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
                limits: config.user_limits,
                now_ms: now.millis(),
            };
            (sub, command)
        }
    };
    let UserReply::Status { revoked_at, standing } = user_object::call_user(env, &sub, &command).await? else {
        return Err(ProxyError::Internal {
            detail: "user object did not answer with a status".into(),
        });
    };
    let mut body = match standing {
        Some(standing) => standing.usage_json(&sub),
        None => json!({ "sub": sub }),
    };
    body["revoked_at"] = json!(revoked_at);
    json_response(200, &body.to_string())
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
