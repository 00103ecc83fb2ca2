//! HTTP plumbing of the edge: reading a capped body, building JSON and error responses, and
//! the headers every response carries.

use futures_util::StreamExt;
use serde_json::json;
use worker::{js_sys, Headers, Request, Response};

use super::log::Outcome;
use super::Result;
use crate::budget::plans::Plan;
use crate::budget::quota::Standing;
use crate::cors;
use crate::error::ProxyError;

/// Reads the body, counting bytes as they arrive and stopping past the limit (a
/// `Content-Length` can lie, and chunked bodies have none).
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>> {
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

pub fn health_response() -> Result<Response> {
    json_response(200, &json!({ "status": "ok" }).to_string())
}

pub fn models_response(plan: &Plan) -> Result<Response> {
    let data: Vec<_> = plan
        .allowed_models
        .iter()
        .chain(&plan.images.models)
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "openai-edge-proxy" }))
        .collect();
    json_response(200, &json!({ "object": "list", "data": data }).to_string())
}

pub fn preflight(req: &Request, allowed_origin: Option<&str>) -> Result<Response> {
    let headers = Headers::new();
    match allowed_origin {
        Some(origin) => {
            let requested = header(req, "access-control-request-headers");
            for (name, value) in cors::preflight_headers(origin, requested.as_deref()) {
                headers.set(name, &value)?;
            }
        }
        None => headers.set("allow", cors::ALLOWED_METHODS)?,
    }
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// The error's OpenAI-shaped answer. At the platform boundary: a failure here has nothing left
/// to report to but the runtime.
pub fn error_response(error: &ProxyError) -> worker::Result<Response> {
    let mut response = json_response(error.status(), &error.to_json())?;
    let headers = response.headers_mut();
    if let Some(challenge) = error.www_authenticate() {
        headers.set("www-authenticate", challenge)?;
    }
    if let Some(seconds) = error.retry_after() {
        headers.set("retry-after", &seconds.to_string())?;
    }
    Ok(response)
}

pub fn json_response(status: u16, body: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(body.as_bytes().to_vec())?
        .with_status(status)
        .with_headers(headers))
}

/// Marks an answer that must not be kept by any cache: the admin routes show every user's
/// spending and limits.
pub fn no_store(mut response: Response) -> Result<Response> {
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

/// Headers every response carries, CORS headers for an allowed origin, and the user's
/// RateLimit headers once admission has seen them.
pub fn finish(mut response: Response, outcome: &Outcome) -> worker::Result<Response> {
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

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// `cf-ray` when the edge gave one, else a random id.
pub fn request_id(req: &Request) -> String {
    // Two draws: one f64 carries only 53 random bits.
    let draw = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    header(req, "cf-ray").unwrap_or_else(|| format!("{:08x}{:08x}", draw(), draw()))
}

/// `Request::new_with_init` without its `cf` properties, which no request here sets: worker's
/// conversion of them is ~6 KB gzip of wasm.
pub fn outgoing(url: &str, init: &worker::RequestInit) -> worker::Result<Request> {
    let inner = worker::web_sys::RequestInit::new();
    inner.set_method(init.method.as_ref());
    inner.set_headers(init.headers.as_ref());
    inner.set_redirect(init.redirect.into());
    if let Some(body) = &init.body {
        inner.set_body(body);
    }
    worker::web_sys::Request::new_with_str_and_init(url, &inner)
        .map(Request::from)
        .map_err(|e| {
            worker::Error::JsError(
                e.as_string()
                    .unwrap_or_else(|| "invalid URL or options for Request".into()),
            )
        })
}
