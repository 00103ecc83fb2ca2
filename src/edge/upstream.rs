//! The upstream call: the validated JSON plus the operator's key, and the answer relayed back.

use worker::wasm_bindgen::JsValue;
use worker::{Fetch, Headers, Method, Request, RequestInit, Response};

use super::internal;
use crate::config::Config;
use crate::error::ProxyError;
use crate::forwarding::{self, UpstreamEndpoint};
use crate::policy::ChatRequest;

/// Sends the chat request upstream. A non-2xx answer becomes a `ProxyError`; its body, which
/// can echo part of our key (OpenAI's 401 does), is dropped unread.
pub async fn send(config: &Config, chat: &ChatRequest, client_headers: &Headers) -> Result<Response, ProxyError> {
    let api_key = config.openai_api_key()?;
    let client_headers: Vec<(String, String)> = client_headers.entries().collect();
    let headers = Headers::new();
    let upstream_headers =
        forwarding::upstream_request_headers(client_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), api_key);
    for (name, value) in upstream_headers {
        headers.set(&name, &value).map_err(internal)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&chat.upstream_body())));
    let url = UpstreamEndpoint::ChatCompletions.url(&config.upstream_base_url);
    let request = Request::new_with_init(&url, &init).map_err(internal)?;

    let answer = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| ProxyError::UpstreamFailed { detail: format!("fetch to upstream failed: {e}") })?;
    match answer.status_code() {
        200..=299 => Ok(answer),
        status @ (401 | 403) => Err(ProxyError::UpstreamAuthFailed { status }),
        429 => {
            let retry_after = answer.headers().get("retry-after").ok().flatten().and_then(|v| v.parse().ok());
            Err(ProxyError::UpstreamRateLimited { retry_after })
        }
        status @ 400..=499 => Err(ProxyError::UpstreamRejected { status }),
        status => Err(ProxyError::UpstreamFailed { detail: format!("upstream answered {status}") }),
    }
}

/// The upstream answer as the client's response, body passed through as it arrives.
///
/// Streams are labelled `text/event-stream`: workerd gzips other types for clients that accept
/// gzip, and its compressor would hold back the whole stream.
pub fn relay(answer: Response, stream: bool) -> Result<Response, ProxyError> {
    let upstream_headers: Vec<(String, String)> = answer.headers().entries().collect();
    let headers = Headers::new();
    for (name, value) in forwarding::client_response_headers(upstream_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
        headers.set(&name, &value).map_err(internal)?;
    }
    if stream {
        headers.set("content-type", "text/event-stream; charset=utf-8").map_err(internal)?;
        headers.set("cache-control", "no-cache").map_err(internal)?;
    }
    let (_, body) = answer.into_parts();
    Ok(Response::builder().with_status(200).with_headers(headers).body(body))
}
