//! The upstream call: the validated JSON plus the operator's key, and the answer relayed back.

use std::rc::Rc;

use worker::wasm_bindgen::JsValue;
use worker::{AbortController, Context, Fetch, Headers, Method, Request, RequestInit, Response};

use super::user_object::Settlement;
use super::{internal, log, stream};
use crate::config::Config;
use crate::error::ProxyError;
use crate::forwarding::{self, UpstreamEndpoint};
use crate::policy::{estimate_tokens, ChatRequest};
use crate::sse::SseMeter;

/// Sends the chat request upstream. A non-2xx answer becomes a `ProxyError`; its body, which
/// can echo part of our key (OpenAI's 401 does), is dropped unread.
pub async fn send(
    config: &Config,
    chat: &ChatRequest,
    client_headers: &Headers,
    abort: &AbortController,
) -> Result<Response, ProxyError> {
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
        .with_body(Some(JsValue::from_str(chat.upstream_body())));
    let url = UpstreamEndpoint::ChatCompletions.url(&config.upstream_base_url);
    let request = Request::new_with_init(&url, &init).map_err(internal)?;

    let answer = Fetch::Request(request)
        .send_with_signal(&abort.signal())
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

/// A streamed answer, passed through the meter as it arrives. When it ends (or the client
/// goes away) the request is charged its real usage, or an estimate of what was streamed,
/// never zero.
///
/// Streams are labelled `text/event-stream`: workerd gzips other types for clients that accept
/// gzip, and its compressor would hold back the whole stream.
pub fn relay_stream(
    ctx: &Rc<Context>,
    mut answer: Response,
    chat: &ChatRequest,
    settlement: Option<Settlement>,
    request_id: &str,
    upstream_abort: AbortController,
) -> Result<Response, ProxyError> {
    let headers = client_headers(&answer)?;
    headers.set("content-type", "text/event-stream; charset=utf-8").map_err(internal)?;
    headers.set("cache-control", "no-cache").map_err(internal)?;
    let prompt_estimate = chat.prompt_token_estimate;
    let body = match answer.stream() {
        Ok(body) => body,
        Err(error) => {
            if let Some(settlement) = settlement {
                settlement.settle(prompt_estimate);
            }
            return Err(ProxyError::UpstreamFailed { detail: format!("upstream stream has no body: {error}") });
        }
    };
    let request_id = request_id.to_owned();
    let meter = SseMeter::new(chat.client_wants_usage);
    let readable = stream::metered(ctx, body, meter, upstream_abort, move |end| {
        Box::pin(async move {
            let reported = end.meter.usage.map(|usage| usage.total());
            let used = reported.unwrap_or_else(|| prompt_estimate + estimate_tokens(end.meter.streamed_text_bytes));
            log::stream_end(&request_id, used, reported.is_some(), end.disconnected, end.upstream_error.as_deref());
            if let Some(settlement) = settlement {
                settlement.finish(used).await;
            }
        })
    })?;
    Ok(Response::builder().with_status(200).with_headers(headers).stream(readable))
}

/// A whole (non-stream) answer: its bytes, and the headers the client may see.
pub async fn read_whole(mut answer: Response) -> Result<(Vec<u8>, Headers), ProxyError> {
    let headers = client_headers(&answer)?;
    let body = answer
        .bytes()
        .await
        .map_err(|e| ProxyError::UpstreamFailed { detail: format!("reading the upstream answer failed: {e}") })?;
    Ok((body, headers))
}

/// Upstream's allow-listed headers.
fn client_headers(answer: &Response) -> Result<Headers, ProxyError> {
    let upstream_headers: Vec<(String, String)> = answer.headers().entries().collect();
    let headers = Headers::new();
    for (name, value) in forwarding::client_response_headers(upstream_headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
        headers.set(&name, &value).map_err(internal)?;
    }
    Ok(headers)
}
