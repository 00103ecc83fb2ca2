//! The operator's routes, behind `ADMIN_TOKEN`: revocation, blocking, a user's standing and
//! plan override, usage by day and range, the global budget, and the console page that uses them.

use futures_util::future::{join_all, try_join};
use serde_json::{json, Value};
use worker::{web_sys, Env, Request, Response};

use super::http::{self, header, json_response};
use super::{console, objects, Now, Result};
use crate::auth;
use crate::budget::plans::DEFAULT_PLAN;
use crate::budget::quota::Limits;
use crate::budget::usage_report::{self, DayRange, UsageParams, UsageQuery};
use crate::config::Config;
use crate::error::ProxyError;
use crate::objects::user::{utc_day, UserCommand, UserReply, GLOBAL_OBJECT_NAME, GUESTS_OBJECT_NAME};
use crate::routes::AdminRoute;

/// An admin body (`{"plan": "pro"}`) is a few bytes.
const MAX_ADMIN_BODY_BYTES: usize = 4096;

pub async fn serve(route: AdminRoute, req: &mut Request, env: &Env, config: &Config) -> Result<Response> {
    // Without an admin token the admin routes do not exist, the console included.
    let expected = config.admin_token().ok_or(ProxyError::NotFound)?;
    if let AdminRoute::Console(file) = route {
        return console::serve(file);
    }
    let authorization = header(req, "authorization");
    let presented = auth::bearer_token(authorization.as_deref()).map_err(|_| ProxyError::AdminUnauthorized)?;
    if !auth::admin_token_matches(presented, expected) {
        return Err(ProxyError::AdminUnauthorized);
    }
    let now = Now::read();
    let bans = matches!(
        route,
        AdminRoute::Revocation { revoke: true, .. } | AdminRoute::Block { block: true, .. }
    );
    let (sub, command) = match route {
        AdminRoute::DayUsage => return day_usage(req, env, config.usage_index_shards, now).await,
        AdminRoute::Budget => return budget(env, config, now).await,
        AdminRoute::EndCall { call } => {
            if !super::voice::is_call_id(&call) {
                return Err(ProxyError::NotFound);
            }
            super::voice::end_calls(env, &[call], false).await?;
            return json_response(200, &json!({ "ended": true }).to_string());
        }
        AdminRoute::Console(_) => return Err(ProxyError::NotFound), // served above
        AdminRoute::Revocation { sub, revoke: true } => (sub, UserCommand::Revoke { at: now.seconds() }),
        AdminRoute::Revocation { sub, revoke: false } => (sub, UserCommand::Unrevoke {}),
        AdminRoute::Block { sub, block: true } => (sub, UserCommand::Block { at: now.seconds() }),
        AdminRoute::Block { sub, block: false } => (sub, UserCommand::Unblock {}),
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
        blocked_at,
        calls,
    } = objects::user::call_user(env, &sub, command).await?
    else {
        return Err(ProxyError::Internal {
            detail: "user object did not answer with a status".into(),
        });
    };
    // A block or revocation ends the user's live voice calls at once (lifting one ends none).
    if bans {
        super::voice::end_calls(env, &calls, true).await?;
    }
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
    body["blocked_at"] = json!(blocked_at);
    // The console's "End call" buttons (`DELETE /admin/calls/{id}`).
    body["calls"] = json!(calls);
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

/// `GET /admin/usage`: a day's summary and a page of its users (`?day=`, default today, UTC;
/// `&cursor=&limit=`), or each day's summary of a range (`?from=&to=`).
async fn day_usage(req: &Request, env: &Env, shards: u32, now: Now) -> Result<Response> {
    let params = request_url(req)?.search_params();
    let [day, from, to, cursor, limit] = ["day", "from", "to", "cursor", "limit"].map(|name| params.get(name));
    let query = UsageParams {
        day: day.as_deref(),
        from: from.as_deref(),
        to: to.as_deref(),
        cursor: cursor.as_deref(),
        limit: limit.as_deref(),
    };
    match UsageQuery::parse(query, &utc_day(now.millis()))? {
        UsageQuery::Day { day, page } => {
            let (summary, users) = try_join(
                objects::usage_index::summary_of(env, &day, shards),
                objects::usage_index::page_of(env, &day, &page, shards),
            )
            .await?;
            let report = usage_report::day_report(&day, &summary, &page, &users);
            json_response(200, &report.to_string())
        }
        UsageQuery::Range(range) => range_usage(env, &range, shards).await,
    }
}

/// Each day's summary from its own index objects, asked all at once (at most 31 small calls
/// per shard).
async fn range_usage(env: &Env, range: &DayRange, shards: u32) -> Result<Response> {
    let days = range.days();
    let summaries = join_all(
        days.iter()
            .map(|day| objects::usage_index::summary_of(env, day, shards)),
    )
    .await;
    let mut per_day = Vec::with_capacity(days.len());
    for (day, summary) in days.into_iter().zip(summaries) {
        per_day.push((day, summary?));
    }
    json_response(200, &usage_report::range_report(range, &per_day).to_string())
}

/// `GET /admin/budget`: today and the budget all users share, if one is set.
async fn budget(env: &Env, config: &Config, now: Now) -> Result<Response> {
    let day = utc_day(now.millis());
    let mut report = pool_report(env, GLOBAL_OBJECT_NAME, config.global_limits, &day, now).await?;
    let guests_limits = config.guest.as_ref().and_then(|guest| guest.global_limits);
    if guests_limits.is_some() {
        // The guests' budget beside the global one, in the same four parts.
        report["guests"] = pool_report(env, GUESTS_OBJECT_NAME, guests_limits, &day, now).await?;
    }
    json_response(200, &report.to_string())
}

/// One shared budget's day: spent, reserved, leased and remaining, apart.
async fn pool_report(env: &Env, pool: &str, limits: Option<Limits>, day: &str, now: Now) -> Result<Value> {
    let standing = match limits {
        Some(limits) => Some(objects::user::pool_status(env, pool, limits, now.millis()).await?),
        None => None,
    };
    Ok(usage_report::budget_report(day, standing.as_ref()))
}

/// The console's own writes carry `Origin` (browsers send it on same-origin POST, PUT and
/// DELETE), and the Worker's origin is never in `ALLOWED_ORIGINS`: such requests need no CORS
/// and pass as requests without `Origin` do. A browser cannot forge `Origin`.
pub fn is_own_origin(req: &Request, origin: &str) -> bool {
    request_url(req).is_ok_and(|url| url.origin() == origin)
}

/// The request's URL as the runtime's `URL` parses it: worker's `Request::url` would link the
/// url crate (~70 KB of wasm) for these two reads.
fn request_url(req: &Request) -> Result<web_sys::Url> {
    Ok(web_sys::Url::new(&req.inner().url())?)
}
