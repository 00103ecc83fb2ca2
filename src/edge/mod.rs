//! The wasm edge: translates between the Workers platform and the core. No policy lives here.

mod body;
mod jwks;
mod log;
mod stream;
mod upstream;
mod user_object;

use std::rc::Rc;

use futures_util::StreamExt;
use serde_json::json;
use worker::{js_sys, Context, Date, Env, Headers, Method, Request, Response, Result};

use crate::auth::{self, Identity};
use crate::config::{Config, LogLevel};
use crate::cors::{self, OriginCheck};
use crate::error::{ProxyError, TokenProblem};
use crate::policy::{self, ApiRequest};
use crate::quota::{Ask, Standing};
use crate::routes::{self, AdminRoute, Route, UserRoute};
use crate::sse;
use crate::user_state::{parse_day, user_object_name, utc_day, UserCommand, UserReply};
use user_object::Admission;

/// What one request's log line says; filled in as the request goes.
#[derive(Clone, Default)]
struct Outcome {
    request_id: String,
    started_ms: u64,
    route: &'static str,
    /// Set once the origin is known to be allowed: every response to it, errors included,
    /// carries the CORS headers so the page can read it.
    allowed_origin: Option<String>,
    sub: Option<String>,
    model: Option<String>,
    stream: bool,
    /// The user's limits as admission saw them: the RateLimit headers of the answer.
    standing: Option<Standing>,
    status: u16,
    error_code: Option<&'static str>,
    /// Operator-facing detail of an error.
    detail: Option<String>,
    /// What upstream reported, when it did.
    usage: Option<sse::Usage>,
    /// What the request was charged (the usage, or an estimate).
    tokens_charged: Option<u64>,
    /// Time until upstream's response headers.
    upstream_ms: Option<u64>,
    disconnected: bool,
    /// Why a stream failed.
    failure: Option<String>,
    prompt_chars: Option<usize>,
    log_level: LogLevel,
    log_prompts: bool,
    /// A stream writes this request's line when it ends.
    logged_by_stream: bool,
}

#[worker::event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[worker::event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let ctx = Rc::new(ctx);
    let mut outcome = Outcome {
        request_id: request_id(&req),
        started_ms: Date::now().as_millis(),
        route: "unknown",
        ..Outcome::default()
    };
    let response = match handle(req, &env, &ctx, &mut outcome).await {
        Ok(response) => response,
        Err(error) => {
            outcome.error_code = Some(error.code());
            outcome.detail = error.log_detail();
            error_response(&error)?
        }
    };
    let response = finish(response, &outcome)?;
    outcome.status = response.status_code();
    if !outcome.logged_by_stream {
        log::request_line(&outcome);
    }
    Ok(response)
}

/// The request pipeline: health, config, CORS, route, token, handler.
async fn handle(
    req: Request,
    env: &Env,
    ctx: &Rc<Context>,
    outcome: &mut Outcome,
) -> std::result::Result<Response, ProxyError> {
    let method = req.method();
    let route = routes::route(method.as_ref(), &req.path());
    // Before the configuration: the health check needs no secret or variable.
    if route == Ok(Route::Health) {
        outcome.route = Route::Health.name();
        return health_response();
    }

    let config = config(env)?;
    outcome.log_level = config.log_level;
    outcome.log_prompts = config.log_prompts;
    let origin = header(&req, "origin");
    match cors::check_origin(origin.as_deref(), &config.allowed_origins) {
        OriginCheck::Denied => return Err(ProxyError::OriginNotAllowed),
        OriginCheck::Allowed(origin) => outcome.allowed_origin = Some(origin),
        OriginCheck::NoOrigin => {}
    }
    if method == Method::Options {
        outcome.route = "preflight";
        return preflight(&req, outcome.allowed_origin.as_deref());
    }
    let route = route?;
    outcome.route = route.name();
    match route {
        Route::Health => health_response(),
        Route::Admin(admin_route) => serve_admin(admin_route, &req, env, &config).await,
        Route::User(user_route) => {
            let identity = authenticate(&req, &config).await?;
            outcome.sub = Some(identity.sub.clone());
            serve_user(user_route, &identity, req, env, ctx, &config, outcome).await
        }
    }
}

/// A user's request. Every check that costs nothing comes first; then one admission call to
/// the user's object (revocation, rate, streams, budget); then upstream.
async fn serve_user(
    route: UserRoute,
    identity: &Identity,
    mut req: Request,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    outcome: &mut Outcome,
) -> std::result::Result<Response, ProxyError> {
    let chat = match route {
        UserRoute::Models | UserRoute::Usage => {
            let admission = user_object::admit(env, ctx, config, identity, None, &mut outcome.standing).await?;
            return match route {
                UserRoute::Usage => json_response(200, &admission.standing.usage_json(&identity.sub).to_string()),
                _ => models_response(config),
            };
        }
        UserRoute::ChatCompletions => {
            policy::parse_chat_request(&read_body(&mut req, config.max_body_bytes).await?, config)?
        }
        UserRoute::Responses => {
            policy::parse_responses_request(&read_body(&mut req, config.max_body_bytes).await?, config)?
        }
        UserRoute::Embeddings => {
            policy::parse_embeddings_request(&read_body(&mut req, config.max_body_bytes).await?, config)?
        }
        UserRoute::GenerateText => {
            policy::parse_generate_text(&read_body(&mut req, config.max_body_bytes).await?, config)?
        }
    };
    outcome.model = Some(chat.model.clone());
    outcome.stream = chat.stream;
    outcome.prompt_chars = Some(chat.prompt_chars);
    let ask = Ask {
        tokens: chat.reserve_tokens,
        stream: chat.stream,
    };
    let admission = user_object::admit(env, ctx, config, identity, Some(ask), &mut outcome.standing).await?;
    let Admission { settlement, .. } = admission;

    let upstream_abort = worker::web_sys::AbortController::new().map_err(internal)?;
    let upstream_started = Date::now().as_millis();
    let sent = upstream::send(config, &chat, req.headers(), &upstream_abort).await;
    outcome.upstream_ms = Some(Date::now().as_millis().saturating_sub(upstream_started));
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => {
            // Upstream refused or failed: no tokens were spent.
            if let Some(settlement) = settlement {
                settlement.settle(0);
            }
            return Err(error);
        }
    };
    if chat.stream {
        outcome.logged_by_stream = true;
        let mut line = outcome.clone();
        line.status = 200;
        return upstream::relay_stream(ctx, config, answer, &chat, settlement, line, upstream_abort);
    }
    let whole = upstream::read_whole(answer).await;
    let used = match &whole {
        Ok((body, _)) => {
            outcome.usage = sse::answer_usage(body);
            used_tokens(&chat, outcome.usage, body.len())
        }
        Err(_) => chat.reserve_tokens, // unknown: charge the worst case
    };
    outcome.tokens_charged = Some(used);
    if let Some(settlement) = settlement {
        settlement.settle(used);
    }
    let (body, headers) = whole?;
    match route {
        UserRoute::GenerateText => json_response(200, &policy::generate_text_result(&body)?),
        _ => Ok(Response::from_bytes(body).map_err(internal)?.with_headers(headers)),
    }
}

/// What a whole answer used: its `usage`, else an estimate from its size (never zero).
fn used_tokens(chat: &ApiRequest, usage: Option<sse::Usage>, answer_bytes: usize) -> u64 {
    usage.map_or_else(
        || chat.prompt_token_estimate + policy::estimate_tokens(answer_bytes),
        |u| u.total(),
    )
}

async fn serve_admin(
    route: AdminRoute,
    req: &Request,
    env: &Env,
    config: &Config,
) -> std::result::Result<Response, ProxyError> {
    let expected = config.admin_token().ok_or(ProxyError::NotFound)?;
    let authorization = header(req, "authorization");
    let presented = auth::bearer_token(authorization.as_deref()).map_err(|_| ProxyError::AdminUnauthorized)?;
    if !auth::admin_token_matches(presented, expected) {
        return Err(ProxyError::AdminUnauthorized);
    }
    let now_ms = Date::now().as_millis() as i64;
    let (sub, command) = match route {
        AdminRoute::DayUsage => return day_usage(req, env, now_ms).await,
        AdminRoute::Revocation { sub, revoke: true } => (sub, UserCommand::Revoke { at: now_ms / 1000 }),
        AdminRoute::Revocation { sub, revoke: false } => (sub, UserCommand::Unrevoke),
        AdminRoute::Usage { sub } => (
            sub,
            UserCommand::Status {
                limits: config.user_limits,
                now_ms,
            },
        ),
    };
    let UserReply::Status { revoked_at, standing } = user_object::call(env, &user_object_name(&sub), &command).await?
    else {
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
async fn day_usage(req: &Request, env: &Env, now_ms: i64) -> std::result::Result<Response, ProxyError> {
    let url = req.url().map_err(internal)?;
    let asked = url
        .query_pairs()
        .find(|(name, _)| name == "day")
        .map(|(_, value)| value.into_owned());
    let day = match asked {
        Some(text) => parse_day(&text)
            .ok_or_else(|| ProxyError::invalid_request("`day` must be a date like 2026-11-23.", Some("day")))?,
        None => utc_day(now_ms),
    };
    let users = user_object::day_usage(env, &day).await?;
    json_response(200, &json!({ "day": day, "users": users }).to_string())
}

/// The single place that decides who the caller is. Revocation is checked in the same
/// Durable Object call as admission, so a bad token costs no Durable Object call at all.
async fn authenticate(req: &Request, config: &Config) -> std::result::Result<Identity, ProxyError> {
    let authorization = header(req, "authorization");
    let token = auth::bearer_token(authorization.as_deref())?;
    // Before the key set: garbage must never cost a fetch from the identity provider.
    auth::check_shape(token).map_err(ProxyError::InvalidToken)?;
    let now_ms = Date::now().as_millis();
    let now = (now_ms / 1000) as i64;
    let keys = jwks::key_set(config, now_ms).await?;
    match auth::verify(token, &keys, &config.claim_rules, now) {
        // The provider may have rotated its keys since we fetched them.
        Err(TokenProblem::UnknownKey) => match jwks::refetch_for_unknown_kid(config, now_ms).await? {
            Some(fresh) => auth::verify(token, &fresh, &config.claim_rules, now),
            None => Err(TokenProblem::UnknownKey),
        },
        verified => verified,
    }
    .map_err(ProxyError::InvalidToken)
}

/// Reads the body, counting bytes as they arrive and stopping past the limit (a
/// `Content-Length` can lie, and chunked bodies have none).
async fn read_body(req: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, ProxyError> {
    let too_large = ProxyError::PayloadTooLarge { limit };
    let declared = header(req, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    let Ok(mut stream) = req.stream() else { return Ok(body) }; // no body at all
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ProxyError::invalid_request(format!("Could not read the request body: {e}"), None))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn health_response() -> std::result::Result<Response, ProxyError> {
    json_response(200, &json!({ "status": "ok" }).to_string())
}

fn models_response(config: &Config) -> std::result::Result<Response, ProxyError> {
    let data: Vec<_> = config
        .allowed_models
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "openai-edge-proxy" }))
        .collect();
    json_response(200, &json!({ "object": "list", "data": data }).to_string())
}

fn preflight(req: &Request, allowed_origin: Option<&str>) -> std::result::Result<Response, ProxyError> {
    let headers = Headers::new();
    match allowed_origin {
        Some(origin) => {
            let requested = header(req, "access-control-request-headers");
            for (name, value) in cors::preflight_headers(origin, requested.as_deref()) {
                headers.set(name, &value).map_err(internal)?;
            }
        }
        None => headers.set("allow", cors::ALLOWED_METHODS).map_err(internal)?,
    }
    Ok(Response::empty()
        .map_err(internal)?
        .with_status(204)
        .with_headers(headers))
}

fn error_response(error: &ProxyError) -> Result<Response> {
    let mut response =
        json_response(error.status(), &error.to_json()).map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
    let headers = response.headers_mut();
    if let Some(challenge) = error.www_authenticate() {
        headers.set("www-authenticate", challenge)?;
    }
    if let Some(seconds) = error.retry_after() {
        headers.set("retry-after", &seconds.to_string())?;
    }
    Ok(response)
}

fn json_response(status: u16, body: &str) -> std::result::Result<Response, ProxyError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    Ok(Response::from_bytes(body.as_bytes().to_vec())
        .map_err(internal)?
        .with_status(status)
        .with_headers(headers))
}

/// Headers every response carries, CORS headers for an allowed origin, and the user's
/// RateLimit headers once admission has seen them.
fn finish(mut response: Response, outcome: &Outcome) -> Result<Response> {
    let headers = response.headers_mut();
    for (name, value) in outcome.standing.iter().flat_map(Standing::rate_limit_headers) {
        headers.set(name, &value)?;
    }
    if let Some(origin) = outcome.allowed_origin.as_deref() {
        for (name, value) in cors::response_headers(origin) {
            headers.set(name, &value)?;
        }
    }
    headers.set("x-request-id", &outcome.request_id)?;
    headers.append("vary", "Origin")?;
    headers.set("x-content-type-options", "nosniff")?;
    Ok(response)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// `cf-ray` when the edge gave one, else a random id.
fn request_id(req: &Request) -> String {
    // Two draws: one f64 carries only 53 random bits.
    let draw = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    header(req, "cf-ray").unwrap_or_else(|| format!("{:08x}{:08x}", draw(), draw()))
}

thread_local! {
    // Vars and secrets are fixed for an isolate's life (a deploy or `secret put` starts new
    // isolates), so a valid configuration is parsed once per isolate, not per request.
    static CONFIG: std::cell::RefCell<Option<Rc<Config>>> = const { std::cell::RefCell::new(None) };
}

/// The parsed configuration. An invalid one is not kept: every request reports it.
fn config(env: &Env) -> std::result::Result<Rc<Config>, ProxyError> {
    if let Some(config) = CONFIG.with_borrow(Clone::clone) {
        return Ok(config);
    }
    let config = Rc::new(Config::from_lookup(|name| env_string(env, name))?);
    CONFIG.set(Some(config.clone()));
    Ok(config)
}

/// A var or secret as a string. `[vars]` may hold numbers or booleans, which are not JS strings.
fn env_string(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &name.into()).ok()?;
    value
        .as_string()
        .or_else(|| value.as_f64().map(|n| n.to_string()))
        .or_else(|| value.as_bool().map(|b| b.to_string()))
}

fn internal(error: impl std::fmt::Debug) -> ProxyError {
    ProxyError::Internal {
        detail: format!("{error:?}"),
    }
}
