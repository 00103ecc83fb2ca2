//! The wasm edge: translates between the Workers platform and the core. No policy lives here.

mod admin;
mod admission;
mod bench;
mod body;
mod console;
mod guest;
mod http;
mod keys;
mod live;
mod log;
mod objects;
mod relay;
mod settlement;
mod stream;
mod upstream;
mod voice;

use std::rc::Rc;

use worker::wasm_bindgen::JsCast;
use worker::{js_sys, Context, Date, Env, Method, Request, Response};

use crate::auth::guest::{limited_per_client, GUEST_ISSUER, GUEST_SUB_PREFIX};
use crate::auth::{self, Identity};
use crate::config::Config;
use crate::cors::{self, OriginCheck};
use crate::error::{ProxyError, TokenProblem};
use crate::objects::owned_responses::Created;
use crate::request::voice::relay::token_in_protocols;
use crate::request::{self, ApiRequest};
use crate::routes::{self, ApiRoute, Route, UserRoute};
use crate::sse;
use body::HeldMemory;
use http::{header, json_response};
use log::Outcome;
use settlement::Settlement;
use upstream::StreamTail;

/// The edge's results: every failure is a `ProxyError`, and `?` converts the platform's.
type Result<T, E = ProxyError> = std::result::Result<T, E>;

impl From<worker::Error> for ProxyError {
    fn from(error: worker::Error) -> Self {
        ProxyError::Internal {
            detail: error.to_string(),
        }
    }
}

impl From<ProxyError> for worker::Error {
    fn from(error: ProxyError) -> Self {
        worker::Error::RustError(error.to_string())
    }
}

impl From<worker::wasm_bindgen::JsValue> for ProxyError {
    fn from(error: worker::wasm_bindgen::JsValue) -> Self {
        ProxyError::Internal {
            detail: format!("{error:?}"),
        }
    }
}

/// The platform clock, read as Unix time. In production it advances only across I/O, so
/// "now" is read once per step and passed into the core.
#[derive(Debug, Clone, Copy)]
struct Now(u64);

impl Now {
    fn read() -> Self {
        Now(Date::now().as_millis())
    }

    fn millis(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    fn seconds(self) -> i64 {
        self.millis() / 1000
    }

    /// Milliseconds since `earlier`.
    fn since(self, earlier: Now) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[worker::event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[worker::event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    if let Some(counters) = bench::counters(&req, &env) {
        return counters;
    }
    bench::count_request();
    let ctx = Rc::new(ctx);
    let mut outcome = Outcome::new(http::request_id(&req), Now::read());
    let (response, tail) = match handle(req, &env, &ctx, &mut outcome).await {
        Ok(Reply::Whole(response)) => (response, None),
        Ok(Reply::Streamed(response, tail)) => (response, Some(tail)),
        Err(error) => {
            outcome.error_code = Some(error.code());
            outcome.detail = error.log_detail();
            (http::error_response(&error)?, None)
        }
    };
    let response = match http::finish(response, &outcome) {
        Ok(response) => response,
        Err(error) => {
            if let Some(tail) = tail {
                tail.abandon();
            }
            return Err(error);
        }
    };
    outcome.status = response.status_code();
    // The request's one log line: now, or when its stream ends.
    match tail {
        Some(tail) => tail.start(&ctx, outcome),
        None => log::request_line(&outcome),
    }
    Ok(response)
}

/// What the pipeline answers: a whole response, or a streamed one whose tail (the pump, the
/// log line, the settlement) runs after it.
enum Reply {
    Whole(Response),
    Streamed(Response, Box<StreamTail>),
}

/// The request pipeline: health, config, CORS, route, token, handler.
async fn handle(mut req: Request, env: &Env, ctx: &Rc<Context>, outcome: &mut Outcome) -> Result<Reply> {
    let method = req.method();
    let route = routes::route(method.as_ref(), &req.path());
    // Before the configuration: the health check needs no secret or variable.
    if route == Ok(Route::Health) {
        outcome.route = Route::Health.name();
        return http::health_response().map(Reply::Whole);
    }

    let config = config(env)?;
    outcome.log_level = config.log_level;
    outcome.log_prompts = config.log_prompts;
    let origin = header(&req, "origin")
        .filter(|origin| !(matches!(route, Ok(Route::Admin(_))) && admin::is_own_origin(&req, origin)));
    match cors::check_origin(origin.as_deref(), &config.allowed_origins) {
        OriginCheck::Denied => return Err(ProxyError::OriginNotAllowed),
        OriginCheck::Allowed(origin) => outcome.allowed_origin = Some(origin),
        OriginCheck::NoOrigin => {}
    }
    if method == Method::Options {
        outcome.route = "preflight";
        return http::preflight(&req, outcome.allowed_origin.as_deref()).map(Reply::Whole);
    }
    // Without guest access its path is unknown, whatever the method.
    let guest_off = config.guest.is_none() && req.path().trim_end_matches('/') == routes::GUEST_PATH;
    let route = if guest_off { Err(ProxyError::NotFound) } else { route }?;
    outcome.route = route.name();
    match route {
        Route::Health => http::health_response().map(Reply::Whole),
        Route::Guest => guest::mint(&mut req, env, &config, outcome).await.map(Reply::Whole),
        Route::Admin(admin_route) => admin::serve(admin_route, &mut req, env, &config)
            .await
            .and_then(http::no_store)
            .map(Reply::Whole),
        Route::User(user_route) => {
            let mut identity = authenticate(&req, &config, user_route == UserRoute::RealtimeRelay).await?;
            if let Some(settings) = config.guest.as_ref().filter(|_| limited_per_client(&identity)) {
                let client_ip = guest::client_address(&req);
                identity.guest_client = Some(settings.client_key.object_name(client_ip.as_deref()));
            }
            outcome.sub = Some(identity.sub.clone());
            serve_user(user_route, &identity, req, env, ctx, &config, outcome).await
        }
    }
}

/// A user's request. Every check that costs nothing comes first; then one admission call to
/// the user's object (revocation, plan, rate, streams, budgets); then upstream; then settlement.
async fn serve_user(
    route: UserRoute,
    identity: &Identity,
    mut req: Request,
    env: &Env,
    ctx: &Rc<Context>,
    config: &Config,
    outcome: &mut Outcome,
) -> Result<Reply> {
    let body = match route {
        UserRoute::Api(api_route) => Some(http::read_body(&mut req, config.body_limit(api_route)).await?),
        UserRoute::RealtimeCall => {
            return voice::create_call(&mut req, identity, env, ctx, config, outcome)
                .await
                .map(Reply::Whole)
        }
        UserRoute::LiveSession => {
            return live::create_session(&mut req, identity, env, ctx, config, outcome)
                .await
                .map(Reply::Whole)
        }
        UserRoute::RealtimeRelay => {
            return relay::open(&req, identity, env, ctx, config, outcome)
                .await
                .map(Reply::Whole)
        }
        UserRoute::Models | UserRoute::Usage => None,
    };
    // An audio upload can be megabytes: it counts in the isolate's memory budget until sent.
    let _held_upload = match (route, &body) {
        (UserRoute::Api(ApiRoute::Transcriptions), Some(body)) => Some(HeldMemory::hold(body.len())?),
        _ => None,
    };
    let admitted = admission::admit_on_plan(route, body.as_deref(), identity, env, ctx, config, outcome).await?;
    let (api_route, request) = match (route, admitted.request) {
        (UserRoute::Api(api_route), Some(request)) => (api_route, request),
        (UserRoute::Usage, _) => {
            let usage = admitted.standing.usage_json(&identity.sub, &admitted.plan.name);
            return json_response(200, &usage.to_string()).map(Reply::Whole);
        }
        _ => return http::models_response(admitted.plan).map(Reply::Whole),
    };
    let settlement = admitted.settlement;

    let upstream_abort = worker::web_sys::AbortController::new()?;
    let passes_through = upstream::passes_through(&request);
    // A whole answer is held in memory: upstream is asked for one only while there is room.
    let room = if passes_through {
        Ok(())
    } else {
        HeldMemory::check_room()
    };
    let upstream_started = Now::read();
    let sent = match room {
        Ok(()) => {
            let client_body = body.as_deref().unwrap_or_default();
            upstream::send(config, &request, client_body, req.headers(), &upstream_abort).await
        }
        Err(busy) => Err(busy),
    };
    outcome.upstream_ms = Some(Now::read().since(upstream_started));
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => {
            // An error status is not billed; a timeout may have been (see charge_after_failure).
            let charged = request.charge_after_failure(&error);
            outcome.charged = Some(charged);
            settlement.settle(charged);
            return Err(error);
        }
    };
    if passes_through {
        let (response, tail) = upstream::relay_stream(config, answer, &request, settlement, upstream_abort)?;
        return Ok(Reply::Streamed(response, Box::new(tail)));
    }
    answer_whole(api_route, &request, answer, settlement, outcome)
        .await
        .map(Reply::Whole)
}

/// A non-stream answer, read whole (capped, and within the isolate's memory budget), charged,
/// and passed on.
async fn answer_whole(
    api_route: ApiRoute,
    request: &ApiRequest,
    answer: Response,
    settlement: Settlement,
    outcome: &mut Outcome,
) -> Result<Response> {
    // Held until the response below has its copy; then the bytes are the runtime's to send.
    let mut held = HeldMemory::default();
    let whole = upstream::read_whole(answer, &mut held).await;
    let mut created = None;
    let used = match &whole {
        Ok((body, _)) => {
            let read = sse::read_answer(body);
            outcome.usage = read.usage;
            created = Created::kept(request.records_response, read.id, read.items);
            log::charge(&request.tariff(), outcome.usage.as_ref())
        }
        Err(_) => request.reserve(), // unknown: charge the worst case
    };
    outcome.charged = Some(used);
    match created {
        Some(id) => settlement.settle_creating(used, id).await,
        None => settlement.settle(used),
    }
    let (body, headers) = whole?;
    match api_route {
        ApiRoute::GenerateText => json_response(200, &request::generate_text::generate_text_result(&body)?),
        ApiRoute::ChatCompletions
        | ApiRoute::Responses
        | ApiRoute::Embeddings
        | ApiRoute::ImageGenerations
        | ApiRoute::Transcriptions
        | ApiRoute::Speech => Ok(Response::from_bytes(body)?.with_headers(headers)),
    }
}

/// The single place that decides who the caller is. Revocation is checked in the same
/// Durable Object call as admission, so a bad token costs no Durable Object call at all.
/// A browser's WebSocket cannot send `Authorization`: its token comes as a subprotocol
/// (`in_protocols`, the relay's).
async fn authenticate(req: &Request, config: &Config, in_protocols: bool) -> Result<Identity> {
    let authorization = header(req, "authorization");
    let protocols = header(req, "sec-websocket-protocol").filter(|_| in_protocols);
    let token = match (&authorization, protocols.as_deref().and_then(token_in_protocols)) {
        (None, Some(token)) => token,
        (authorization, _) => auth::bearer_token(authorization.as_deref())?,
    };
    // Before the key set: garbage must never cost a fetch from the identity provider.
    let shape = auth::check_shape(token).map_err(ProxyError::InvalidToken)?;
    // The issuer only picks the key: a token claiming the guest issuer is checked with
    // GUEST_TOKEN_SECRET alone, so it can never pass as a user's.
    if shape.issuer() == Some(GUEST_ISSUER) {
        return authenticate_guest(token, config);
    }
    let now = Now::read();
    let keys = keys::jwks::key_set(config, now).await?;
    let fresh;
    let verified = match keys.verify(&shape).await {
        // The provider may have rotated its keys since we fetched them.
        Err(ProxyError::InvalidToken(TokenProblem::UnknownKey)) => {
            fresh = keys::jwks::refetch_for_unknown_kid(config, now)
                .await?
                .ok_or(ProxyError::InvalidToken(TokenProblem::UnknownKey))?;
            fresh.verify(&shape).await
        }
        checked => checked,
    }?;
    let identity = verified
        .identity(&config.claim_rules, now.seconds())
        .map_err(ProxyError::InvalidToken)?;
    // A user named like a guest would share that guest's object.
    if config.guest.is_some() && identity.sub.starts_with(GUEST_SUB_PREFIX) {
        return Err(ProxyError::InvalidToken(TokenProblem::InvalidClaim("sub")));
    }
    Ok(identity)
}

/// A guest token: checked with `GUEST_TOKEN_SECRET` alone.
fn authenticate_guest(token: &str, config: &Config) -> Result<Identity> {
    let settings = config
        .guest
        .as_ref()
        .ok_or(ProxyError::InvalidToken(TokenProblem::WrongIssuer))?;
    crate::auth::guest::verify(
        token,
        settings.token_secret(),
        settings.token_ttl,
        config.claim_rules.leeway_seconds,
        Now::read().seconds(),
    )
    .map_err(ProxyError::InvalidToken)
}

thread_local! {
    // Vars and secrets are fixed for an isolate's life (a deploy or `secret put` starts new
    // isolates), so a valid configuration is parsed once per isolate, not per request.
    static CONFIG: std::cell::RefCell<Option<Rc<Config>>> = const { std::cell::RefCell::new(None) };
}

/// The parsed configuration. An invalid one is not kept: every request reports it.
fn config(env: &Env) -> Result<Rc<Config>> {
    if let Some(config) = CONFIG.with_borrow(Clone::clone) {
        return Ok(config);
    }
    let config = Rc::new(Config::from_lookup(|name| env_string(env, name))?);
    for warning in &config.warnings {
        log::warn("config_warning", warning);
    }
    CONFIG.set(Some(config.clone()));
    Ok(config)
}

/// A var or secret as a string. `[vars]` may hold numbers or booleans, which are not JS strings.
/// A number is written by JS (`String(n)`): Rust's f64 formatting would add ~14 KB to the wasm.
fn env_string(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &name.into()).ok()?;
    if value.as_f64().is_some() {
        let number: js_sys::Number = value.unchecked_into();
        return number.to_string_with_radix(10).ok().map(String::from);
    }
    value.as_string().or_else(|| value.as_bool().map(|b| b.to_string()))
}
