//! The upstream call: the validated JSON plus the operator's key, and the answer relayed back.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::future::{join, select, Either};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::web_sys::AbortController;
use worker::{AbortSignal, Context, Delay, Fetch, Headers, Method, RequestInit, RequestRedirect, Response};

use super::body::{self, BodyError, HeldMemory};
use super::log::{self, Outcome};
use super::settlement::Settlement;
use super::stream::{self, Pump};
use crate::budget::quota::RENEW_EVERY_MS;
use crate::config::Config;
use crate::error::ProxyError;
use crate::objects::owned_responses::Created;
use crate::request::forwarding;
use crate::request::forwarding::UpstreamEndpoint;
use crate::request::{ApiRequest, Tariff};
use crate::secret::Secret;
use crate::sse::{SseMeter, StreamKind};

/// Sends the request upstream and waits (at most `UPSTREAM_TIMEOUT_MS`) for its headers.
///
/// Before anything reaches the client, a 429/500/502/503 is retried (`UPSTREAM_RETRIES`, with
/// jittered backoff), and a 401/403 is retried once with `OPENAI_API_KEY_NEXT` if one is set
/// (a key rotation in progress). Other non-2xx answers become a `ProxyError`; only 4xx bodies
/// are read, for OpenAI's message (scrubbed), as a 401's can echo part of our key.
pub async fn send(
    config: &Config,
    request: &ApiRequest,
    client_body: &[u8],
    client_headers: &Headers,
    abort: &AbortController,
) -> Result<Response, ProxyError> {
    let client_headers: Vec<(String, String)> = client_headers.entries().collect();
    let body = upstream_body(request, client_body);
    let mut api_key = config.openai_api_key()?;
    let mut rotated = false;
    let mut retries_left = config.upstream_retries;
    loop {
        let answer = attempt(config, request, &body, &client_headers, api_key, abort).await?;
        let status = answer.status_code();
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        if matches!(status, 401 | 403) && !rotated {
            if let Some(next) = config.openai_api_key_next() {
                log::warn(
                    "key_rotation",
                    &format!("upstream answered {status} to OPENAI_API_KEY; retrying with OPENAI_API_KEY_NEXT. Finish the rotation: copy the new key into OPENAI_API_KEY."),
                );
                (api_key, rotated) = (next, true);
                continue;
            }
        }
        let retry_after = header_seconds(&answer, "retry-after");
        if matches!(status, 429 | 500 | 502 | 503)
            && retries_left > 0
            && retry_after.is_none_or(|s| s <= MAX_RETRY_WAIT_SECONDS)
        {
            retries_left -= 1;
            let jitter = (worker::js_sys::Math::random() * 250.0) as u64;
            let wait_ms = retry_after.map_or(250 + jitter, |seconds| seconds * 1000 + jitter);
            Delay::from(Duration::from_millis(wait_ms)).await;
            continue;
        }
        return Err(match status {
            401 | 403 => ProxyError::UpstreamAuthFailed { status },
            300..=399 => ProxyError::UpstreamFailed {
                detail: redirect_detail(&answer),
            },
            429 => ProxyError::UpstreamRateLimited { retry_after },
            400..=499 => {
                let mut answer = answer;
                let body = body::read_prefix(&mut answer, body::MAX_ERROR_BODY_BYTES).await;
                ProxyError::UpstreamRejected {
                    status,
                    detail: forwarding::upstream_error_detail(&body, &config.secrets()),
                }
            }
            _ => ProxyError::UpstreamFailed {
                detail: format!("upstream answered {status}"),
            },
        });
    }
}

/// Redirects are not followed (`redirect: "manual"`): following one would resend the user's
/// prompt, with a `CF-Worker` header, wherever upstream's (or a gateway's) `Location` points.
fn redirect_detail(answer: &Response) -> String {
    let location = answer.headers().get("location").ok().flatten().unwrap_or_default();
    let location: String = location.chars().take(200).collect();
    format!(
        "upstream answered {} redirecting to {location:?}; redirects are not followed",
        answer.status_code()
    )
}

/// Upstream's `Retry-After` above this is passed to the client rather than waited out.
const MAX_RETRY_WAIT_SECONDS: u64 = 2;

/// One upstream request with `api_key`, bounded by `UPSTREAM_TIMEOUT_MS` until its headers.
async fn attempt(
    config: &Config,
    request: &ApiRequest,
    body: &Uint8Array,
    client_headers: &[(String, String)],
    api_key: &Secret,
    abort: &AbortController,
) -> Result<Response, ProxyError> {
    let headers = Headers::new();
    let upstream_headers = forwarding::upstream_request_headers(
        client_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        request.upstream_content_type(),
        api_key,
    );
    for (name, value) in upstream_headers {
        headers.set(&name, &value)?;
    }
    // The proxy asked for a speech stream the client did not: the client's `Accept` (the
    // SDK's `application/octet-stream`) must not contradict it.
    if request.audio_out.is_some() {
        headers.set("accept", "text/event-stream")?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from(body.clone())));
    let url = request.endpoint.url(&config.upstream_base_url);
    let upstream_request = crate::edge::http::outgoing(&url, &init)?;
    let signal = AbortSignal::from(abort.signal());
    let fetch = Fetch::Request(upstream_request);
    let timeout = Delay::from(request.endpoint.patience(config.upstream_timeout));
    let outcome = select(Box::pin(fetch.send_with_signal(&signal)), Box::pin(timeout)).await;
    match outcome {
        Either::Left((answer, _)) => answer.map_err(|e| ProxyError::UpstreamFailed {
            detail: format!("fetch to upstream failed: {e}"),
        }),
        Either::Right(_) => {
            abort.abort();
            Err(ProxyError::UpstreamTimeout)
        }
    }
}

/// The upstream body, built once for every attempt: the proxy's own bytes with the client's
/// file between them, copied straight from the client's body (its one copy).
fn upstream_body(request: &ApiRequest, client_body: &[u8]) -> Uint8Array {
    let pieces = request.upstream_pieces(client_body);
    let length: usize = pieces.iter().map(|piece| piece.len()).sum();
    let body = Uint8Array::new_with_length(u32::try_from(length).unwrap_or(u32::MAX));
    let mut at = 0;
    for piece in pieces {
        let end = at + piece.len();
        body.subarray(at as u32, end as u32).copy_from(piece);
        at = end;
    }
    body
}

fn header_seconds(answer: &Response, name: &str) -> Option<u64> {
    answer
        .headers()
        .get(name)
        .ok()
        .flatten()
        .and_then(|value| value.trim().parse().ok())
}

/// Whether an answer goes to the client as it arrives rather than read whole first: streams,
/// and Embeddings and image answers, which can be tens of MB (their usage is read as it
/// passes).
pub fn passes_through(request: &ApiRequest) -> bool {
    request.stream
        || matches!(
            request.endpoint,
            UpstreamEndpoint::Embeddings | UpstreamEndpoint::ImageGenerations | UpstreamEndpoint::AudioSpeech
        )
}

/// The events a stream's meter reads; `None` for an answer passed through unread but for its
/// usage. Image events carry whole images in base64 (megabytes, past the meter's event cap),
/// and the last one its usage, read as it passes like an Embeddings answer's.
fn metered_kind(request: &ApiRequest) -> Option<StreamKind> {
    if !request.stream {
        return None;
    }
    match request.endpoint {
        UpstreamEndpoint::Responses => Some(StreamKind::Responses),
        UpstreamEndpoint::ChatCompletions => Some(StreamKind::Chat),
        UpstreamEndpoint::AudioTranscriptions => Some(StreamKind::Transcription),
        UpstreamEndpoint::AudioSpeech if request.audio_out.is_some() => Some(StreamKind::SpeechAudio),
        UpstreamEndpoint::AudioSpeech => Some(StreamKind::Speech),
        UpstreamEndpoint::Embeddings | UpstreamEndpoint::ImageGenerations => None,
    }
}

/// An answer passed through as it arrives (`passes_through`): a stream through its meter, an
/// Embeddings answer unchanged. Returns the response and its tail: the pump, which `fetch`
/// starts once the response is complete.
///
/// Streams are labelled `text/event-stream`: workerd gzips other types for clients that accept
/// gzip, and its compressor would hold back the whole stream.
pub fn relay_stream(
    config: &Config,
    mut answer: Response,
    request: &ApiRequest,
    settlement: Settlement,
    upstream_abort: AbortController,
) -> Result<(Response, StreamTail), ProxyError> {
    let idle_timeout = request.endpoint.patience(config.stream_idle_timeout);
    let headers = match (request.stream, request.audio_out) {
        (true, Some(media_type)) => audio_headers(&answer, media_type),
        (true, None) => stream_headers(&answer),
        (false, _) => client_headers(&answer),
    };
    let started = headers.and_then(|headers| {
        let body = answer.stream().map_err(|error| ProxyError::UpstreamFailed {
            detail: format!("upstream stream has no body: {error}"),
        })?;
        let (readable, pump) = match metered_kind(request) {
            Some(kind) => {
                let meter = SseMeter::new(kind, request.client_wants_usage);
                let (readable, metered) = stream::metered(body, meter, upstream_abort.clone(), idle_timeout)?;
                (readable, Pump::Events(metered))
            }
            None => {
                let (readable, passed) = stream::passed_through(body, upstream_abort.clone(), idle_timeout)?;
                (readable, Pump::Whole(passed))
            }
        };
        Ok((
            Response::builder()
                .with_status(200)
                .with_headers(headers)
                .stream(readable),
            pump,
        ))
    });
    let (response, pump) = match started {
        Ok(started) => started,
        Err(error) => {
            // Nothing will read upstream's answer: stop it, and free the slot now rather than
            // at the reservation's expiry. Upstream may have billed it: the whole reservation.
            upstream_abort.abort();
            settlement.settle(request.reserve());
            return Err(error);
        }
    };
    let tail = StreamTail {
        pump,
        tariff: request.tariff(),
        records_response: request.records_response,
        idle_timeout,
        settlement,
    };
    Ok((response, tail))
}

/// Upstream's allow-listed headers, labelled as an event stream.
fn stream_headers(answer: &Response) -> Result<Headers, ProxyError> {
    let headers = client_headers(answer)?;
    headers.set("content-type", "text/event-stream; charset=utf-8")?;
    headers.set("cache-control", "no-cache")?;
    Ok(headers)
}

/// Upstream's allow-listed headers, labelled as the audio the client asked for (the proxy
/// turns upstream's event stream back into it). workerd does not compress `audio/*`.
fn audio_headers(answer: &Response, media_type: &str) -> Result<Headers, ProxyError> {
    let headers = client_headers(answer)?;
    headers.set("content-type", media_type)?;
    headers.set("cache-control", "no-cache")?;
    Ok(headers)
}

/// What is left of a streamed request once its response is returned: pumping it, then its log
/// line and its settlement. When the stream ends (or the client goes away) the request is
/// charged its real usage, or without a usage report its whole reservation, never zero.
pub struct StreamTail {
    pump: Pump,
    tariff: Tariff,
    /// The response upstream creates is stored and may be continued: record it for the user
    /// before the client sees the end, so a continuation sent at once finds it.
    records_response: bool,
    idle_timeout: Duration,
    settlement: Settlement,
}

impl StreamTail {
    /// A stream whose response could not be completed: nothing will read it, so upstream is
    /// stopped and the reservation settled in full, freeing the slot now.
    pub fn abandon(self) {
        self.pump.abort();
        self.settlement.settle(self.tariff.without_usage());
    }

    pub fn start(self, ctx: &Context, mut outcome: Outcome) {
        ctx.wait_until(async move {
            let renewals = Box::pin(renewing(&self.settlement));
            let (mut end, body) = match select(Box::pin(self.pump.pump()), renewals).await {
                Either::Left((ended, _)) => ended,
                Either::Right((never, _)) => match never {},
            };
            let used = log::charge(&self.tariff, end.meter.usage.as_ref());
            outcome.usage = end.meter.usage;
            outcome.charged = Some(used);
            outcome.disconnected = end.disconnected;
            outcome.streamed_text_bytes = Some(end.meter.streamed_text_bytes);
            outcome.failure = end.failure;
            if end.client_stalled {
                outcome.detail = Some(format!(
                    "the client read nothing for {} ms",
                    self.idle_timeout.as_millis()
                ));
            }
            log::request_line(&outcome);
            // Settled (or held) before the client sees the end: its next request, or its
            // `/v1/usage` read, finds the slot free and the cost charged.
            let items = std::mem::take(&mut end.meter.item_ids);
            match Created::kept(self.records_response, end.meter.response_id.take(), items) {
                Some(created) => {
                    self.settlement.settle_creating(used, created).await;
                    body.close().await;
                }
                None => {
                    // The hold runs from now, even if a client slow to take the end holds
                    // the close up.
                    let flush_later = self.settlement.hold(used);
                    join(body.close(), flush_later).await;
                }
            }
        });
    }
}

/// Renews the stream's reservations every `RENEW_EVERY_MS` for as long as it is pumped (the
/// pump ends at the idle timeout at the latest), so neither its slot nor its reservation
/// expires under a long stream.
async fn renewing(settlement: &Settlement) -> Infallible {
    let every = Duration::from_millis(RENEW_EVERY_MS.unsigned_abs());
    loop {
        Delay::from(every).await;
        settlement.renew().await;
    }
}

/// A whole (non-stream) answer: its bytes, and the headers the client may see. Its bytes are
/// counted in `held` as they arrive.
pub async fn read_whole(mut answer: Response, held: &mut HeldMemory) -> Result<(Vec<u8>, Headers), ProxyError> {
    let headers = client_headers(&answer)?;
    let body = body::read_capped(&mut answer, body::MAX_ANSWER_BYTES, Some(held))
        .await
        .map_err(|error| match error {
            BodyError::TooLarge => ProxyError::UpstreamFailed {
                detail: format!("the upstream answer is larger than {} bytes", body::MAX_ANSWER_BYTES),
            },
            BodyError::NoMemory => ProxyError::Busy {
                detail: "the answer stopped: whole answers would pass this isolate's memory budget".into(),
            },
            BodyError::Failed(e) => ProxyError::UpstreamFailed {
                detail: format!("reading the upstream answer failed: {e}"),
            },
        })?;
    Ok((body, headers))
}

/// Upstream's allow-listed headers.
fn client_headers(answer: &Response) -> Result<Headers, ProxyError> {
    let upstream_headers: Vec<(String, String)> = answer.headers().entries().collect();
    let headers = Headers::new();
    for (name, value) in
        forwarding::client_response_headers(upstream_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        headers.set(&name, &value)?;
    }
    Ok(headers)
}
