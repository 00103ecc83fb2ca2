//! `POST /v1/guest`: a Turnstile token in, a short guest token out (see `crate::auth::guest`).

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::wasm_bindgen::JsValue;
use worker::{Delay, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use super::http::{self, header, json_response};
use super::log::Outcome;
use super::{objects, Now, Result};
use crate::auth::guest::{self, GUEST_PLAN, MAX_MINT_BODY_BYTES};
use crate::config::{Config, GuestSettings};
use crate::error::ProxyError;

/// How long one siteverify call may take.
const SITEVERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at siteverify; a retry carries the same idempotency key, so a token whose first
/// verdict was lost is not failed as already spent.
const SITEVERIFY_ATTEMPTS: usize = 2;

/// Mints a guest token for a client that proved, through Turnstile, to be a human. The
/// client's mint limit is checked first, so a client past it costs no siteverify call; every
/// attempt that reaches siteverify counts, refused ones too.
pub async fn mint(req: &mut Request, env: &Env, config: &Config, outcome: &mut Outcome) -> Result<Response> {
    let settings = config.guest.as_ref().ok_or(ProxyError::NotFound)?;
    let body = http::read_body(req, MAX_MINT_BODY_BYTES).await?;
    let turnstile_token = guest::turnstile_token(&body)?;
    let client_ip = client_address(req);
    let client = settings.client_key.object_name(client_ip.as_deref());
    objects::user::admit_mint(env, &client, settings.mints_per_hour).await?;
    siteverify(settings, &turnstile_token, client_ip.as_deref()).await?;
    let minted = guest::mint(
        settings.token_secret(),
        &random_bytes()?,
        Now::read().seconds(),
        settings.token_ttl,
    )?;
    outcome.sub = Some(minted.sub.clone());
    outcome.plan = Some(GUEST_PLAN.to_owned());
    let mut response = json_response(200, &minted.to_json())?;
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

/// The client's address, as Cloudflare's edge gives it (see `guest::client_address`).
pub fn client_address(req: &Request) -> Option<String> {
    let ip = header(req, "cf-connecting-ip");
    let ipv6 = header(req, "cf-connecting-ipv6");
    guest::client_address(ip.as_deref(), ipv6.as_deref()).map(str::to_owned)
}

/// Asks Turnstile whether `token` was solved by a human on one of our hostnames. Fails closed:
/// siteverify unreachable is a 503, never a token.
async fn siteverify(settings: &GuestSettings, token: &str, client_ip: Option<&str>) -> Result<()> {
    let idempotency_key = guest::uuid_v4(&random_bytes()?);
    let form = guest::siteverify_form(settings.turnstile_secret(), token, client_ip, &idempotency_key);
    let mut failure = String::new();
    for _ in 0..SITEVERIFY_ATTEMPTS {
        match post_form(&settings.verify_url, &form).await {
            Ok((200, body)) => return guest::judge_siteverify(&body, settings.hostnames.as_deref()),
            Ok((status, _)) => failure = format!("siteverify answered {status}"),
            Err(why) => failure = why,
        }
    }
    Err(ProxyError::Unavailable { detail: failure })
}

/// One POST of the form; the status and body, or why there is none.
async fn post_form(url: &str, form: &str) -> std::result::Result<(u16, Vec<u8>), String> {
    let headers = Headers::new();
    headers
        .set("content-type", "application/x-www-form-urlencoded")
        .map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    // A redirect would carry our secret wherever `Location` says.
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(form)));
    let request = http::outgoing(url, &init).map_err(|e| format!("siteverify request: {e}"))?;
    let call = async {
        let mut response = Fetch::Request(request).send().await?;
        let body = response.bytes().await?;
        Ok::<_, worker::Error>((response.status_code(), body))
    };
    match select(Box::pin(call), Box::pin(Delay::from(SITEVERIFY_TIMEOUT))).await {
        Either::Left((answer, _)) => answer.map_err(|e| format!("siteverify unreachable: {e}")),
        Either::Right(_) => Err(format!(
            "siteverify gave no answer within {} s",
            SITEVERIFY_TIMEOUT.as_secs()
        )),
    }
}

/// 16 bytes from the platform's CSPRNG (`crypto.getRandomValues`).
fn random_bytes() -> Result<[u8; 16]> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| ProxyError::Internal {
        detail: format!("no randomness: {e}"),
    })?;
    Ok(bytes)
}
