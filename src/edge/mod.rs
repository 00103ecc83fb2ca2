//! The wasm edge: translates between the Workers platform and the core. No policy lives here.

mod jwks;
mod log;
mod upstream;
mod user_object;

use futures_util::StreamExt;
use serde_json::json;
use worker::{js_sys, Context, Date, Env, Headers, Method, Request, Response, Result};

use crate::auth::{self, Identity};
use crate::config::Config;
use crate::cors::{self, OriginCheck};
use crate::error::{ProxyError, TokenProblem};
use crate::policy;
use crate::routes::{self, AdminRoute, Route, UserRoute};
use crate::user_state::{self, UserCommand};

/// What one request's log line says; filled in as the request goes.
struct Outcome {
    route: &'static str,
    /// Set once the origin is known to be allowed: every response to it, errors included,
    /// carries the CORS headers so the page can read it.
    allowed_origin: Option<String>,
    sub: Option<String>,
    model: Option<String>,
    stream: bool,
}

#[worker::event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[worker::event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = Date::now().as_millis();
    let request_id = request_id(&req);
    let mut outcome = Outcome { route: "unknown", allowed_origin: None, sub: None, model: None, stream: false };
    let (response, error) = match handle(req, &env, &mut outcome).await {
        Ok(response) => (response, None),
        Err(error) => (error_response(&error)?, Some(error)),
    };
    let response = finish(response, &request_id, outcome.allowed_origin.as_deref())?;
    log::request_line(&request_id, &outcome, response.status_code(), error.as_ref(), Date::now().as_millis() - started);
    Ok(response)
}

/// The request pipeline: health, config, CORS, route, token, handler.
async fn handle(req: Request, env: &Env, outcome: &mut Outcome) -> std::result::Result<Response, ProxyError> {
    let method = req.method();
    let route = routes::route(method.as_ref(), &req.path());
    // Before the configuration: the health check needs no secret or variable.
    if route == Ok(Route::Health) {
        outcome.route = Route::Health.name();
        return health_response();
    }

    let config = Config::from_lookup(|name| env_string(env, name))?;
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
        Route::Admin(AdminRoute::Revocation { sub, revoke }) => admin_revocation(&req, env, &config, &sub, revoke).await,
        Route::User(user_route) => {
            let identity = authenticate(&req, env, &config).await?;
            outcome.sub = Some(identity.sub.clone());
            serve_user(user_route, req, &config, outcome).await
        }
    }
}

async fn serve_user(
    route: UserRoute,
    mut req: Request,
    config: &Config,
    outcome: &mut Outcome,
) -> std::result::Result<Response, ProxyError> {
    match route {
        UserRoute::Models => models_response(config),
        UserRoute::ChatCompletions => {
            let body = read_body(&mut req, config.max_body_bytes).await?;
            let chat = policy::parse_chat_request(&body, config)?;
            outcome.model = Some(chat.model.clone());
            outcome.stream = chat.stream;
            let answer = upstream::send(config, &chat, req.headers()).await?;
            upstream::relay(answer, chat.stream)
        }
        UserRoute::GenerateText => {
            let body = read_body(&mut req, config.max_body_bytes).await?;
            let chat = policy::parse_generate_text(&body, config)?;
            outcome.model = Some(chat.model.clone());
            let mut answer = upstream::send(config, &chat, req.headers()).await?;
            let text = answer.bytes().await.map_err(|e| ProxyError::UpstreamFailed {
                detail: format!("reading upstream answer: {e}"),
            })?;
            json_response(200, &policy::generate_text_result(&text)?)
        }
    }
}

/// The single place that decides who the caller is: a valid token whose user is not revoked.
async fn authenticate(req: &Request, env: &Env, config: &Config) -> std::result::Result<Identity, ProxyError> {
    let authorization = header(req, "authorization");
    let token = auth::bearer_token(authorization.as_deref())?;
    let now_ms = Date::now().as_millis();
    let now = (now_ms / 1000) as i64;
    let keys = jwks::key_set(config, now_ms).await?;
    let identity = match auth::verify(token, &keys, &config.claim_rules, now) {
        // The provider may have rotated its keys since we fetched them.
        Err(TokenProblem::UnknownKey) => match jwks::refetch_for_unknown_kid(config, now_ms).await? {
            Some(fresh) => auth::verify(token, &fresh, &config.claim_rules, now),
            None => Err(TokenProblem::UnknownKey),
        },
        verified => verified,
    }
    .map_err(ProxyError::InvalidToken)?;

    let user = user_object::call(env, &identity.sub, &UserCommand::Check).await?;
    if user_state::is_revoked(identity.issued_at, user.revoked_at) {
        return Err(ProxyError::InvalidToken(TokenProblem::Revoked));
    }
    Ok(identity)
}

/// `POST`/`DELETE /admin/users/{sub}/revoke`. Without an `ADMIN_TOKEN` the route does not exist.
async fn admin_revocation(
    req: &Request,
    env: &Env,
    config: &Config,
    sub: &str,
    revoke: bool,
) -> std::result::Result<Response, ProxyError> {
    let expected = config.admin_token().ok_or(ProxyError::NotFound)?;
    let authorization = header(req, "authorization");
    let presented = auth::bearer_token(authorization.as_deref()).map_err(|_| ProxyError::AdminUnauthorized)?;
    if !auth::admin_token_matches(presented, expected) {
        return Err(ProxyError::AdminUnauthorized);
    }
    let command = if revoke {
        UserCommand::Revoke { at: (Date::now().as_millis() / 1000) as i64 }
    } else {
        UserCommand::Unrevoke
    };
    let reply = user_object::call(env, sub, &command).await?;
    json_response(200, &json!({ "sub": sub, "revoked_at": reply.revoked_at }).to_string())
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
        let chunk = chunk.map_err(|e| ProxyError::invalid_request(format!("Could not read the request body: {e}"), None))?;
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
    Ok(Response::empty().map_err(internal)?.with_status(204).with_headers(headers))
}

fn error_response(error: &ProxyError) -> Result<Response> {
    let mut response = json_response(error.status(), &error.to_json()).map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
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
    Ok(Response::from_bytes(body.as_bytes().to_vec()).map_err(internal)?.with_status(status).with_headers(headers))
}

/// Headers every response carries, and CORS headers for an allowed origin.
fn finish(mut response: Response, request_id: &str, allowed_origin: Option<&str>) -> Result<Response> {
    let headers = response.headers_mut();
    if let Some(origin) = allowed_origin {
        for (name, value) in cors::response_headers(origin) {
            headers.set(name, &value)?;
        }
    }
    headers.set("x-request-id", request_id)?;
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

/// A var or secret as a string. `[vars]` may hold numbers or booleans, which are not JS strings.
fn env_string(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &name.into()).ok()?;
    value.as_string().or_else(|| value.as_f64().map(|n| n.to_string())).or_else(|| value.as_bool().map(|b| b.to_string()))
}

fn internal(error: impl std::fmt::Debug) -> ProxyError {
    ProxyError::Internal { detail: format!("{error:?}") }
}
