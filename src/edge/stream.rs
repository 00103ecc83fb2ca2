//! The metering stream: upstream's body read chunk by chunk, passed through the core's
//! `SseMeter`, and written into an identity TransformStream whose readable side is the client's
//! body. Each chunk's complete events go out as they arrive; nothing is collected.
//!
//! The pump runs in `ctx.wait_until`. workerd notices a vanished client only when it writes
//! to it, and then runs no more of the request's own code (no stream `cancel`, no `Drop`);
//! a `wait_until` task goes on, sees its next write fail, aborts the upstream fetch (so
//! upstream stops generating for nobody) and settles the request's usage.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either, LocalBoxFuture};
use futures_util::StreamExt;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortController, ReadableStream, TransformStream, WritableStreamDefaultWriter};
use worker::{ByteStream, Context, Delay};

use crate::error::ProxyError;
use crate::sse::{self, SseMeter};

/// How a metered stream ended.
pub struct StreamEnd {
    pub meter: SseMeter,
    /// The client went away before the end.
    pub disconnected: bool,
    /// Why upstream's stream failed (for the log; the client got an error event): it broke
    /// off, stopped before its proper end, or went silent past the idle timeout.
    pub failure: Option<String>,
}

/// Starts pumping `upstream` through `meter`; returns the client's body. `on_end` runs once,
/// when the stream ends or the client goes away.
pub fn metered(
    ctx: &Rc<Context>,
    mut upstream: ByteStream,
    mut meter: SseMeter,
    upstream_abort: AbortController,
    idle_timeout: Duration,
    on_end: impl FnOnce(StreamEnd) -> LocalBoxFuture<'static, ()> + 'static,
) -> Result<ReadableStream, ProxyError> {
    let pipe = TransformStream::new()?;
    let writer = pipe.writable().get_writer()?;
    ctx.wait_until(async move {
        let (disconnected, failure) = loop {
            let next = select(upstream.next(), Box::pin(Delay::from(idle_timeout))).await;
            let (events, finished) = match next {
                Either::Left((Some(Ok(chunk)), _)) => {
                    let mut events = meter.feed(&chunk);
                    if meter.event_too_long {
                        upstream_abort.abort();
                        events.extend(sse::error_event(&upstream_failed()));
                        let why = format!("upstream sent an event over {} bytes", sse::MAX_EVENT_BYTES);
                        (events, Some(Some(why)))
                    } else {
                        (events, None)
                    }
                }
                Either::Left((Some(Err(error)), _)) => (
                    end_with(&mut meter, upstream_failed()),
                    Some(Some(format!("upstream broke off: {error}"))),
                ),
                Either::Left((None, _)) => {
                    let mut events = meter.finish();
                    let cut_off = !meter.complete;
                    if cut_off {
                        events.extend(sse::error_event(&upstream_failed()));
                    }
                    (
                        events,
                        Some(cut_off.then(|| "upstream stream stopped before its end".to_owned())),
                    )
                }
                Either::Right(_) => {
                    upstream_abort.abort();
                    let silent = format!("upstream was silent for {} ms", idle_timeout.as_millis());
                    (end_with(&mut meter, ProxyError::UpstreamTimeout), Some(Some(silent)))
                }
            };
            if !events.is_empty() && write(&writer, &events).await.is_err() {
                upstream_abort.abort();
                break (true, None);
            }
            if let Some(failure) = finished {
                let _ = JsFuture::from(writer.close()).await;
                break (false, failure);
            }
        };
        on_end(StreamEnd {
            meter,
            disconnected,
            failure,
        })
        .await;
    });
    Ok(pipe.readable())
}

/// Whole events only, then a well-formed error event: never a half line, never a `[DONE]`
/// that would claim the answer is complete.
fn end_with(meter: &mut SseMeter, error: ProxyError) -> Vec<u8> {
    let mut events = meter.finish();
    events.extend(sse::error_event(&error));
    events
}

/// The error a client's stream ends with when upstream failed (the detail goes to the log).
fn upstream_failed() -> ProxyError {
    ProxyError::UpstreamFailed { detail: String::new() }
}

/// Writes one chunk; fails when the client's side is gone.
async fn write(writer: &WritableStreamDefaultWriter, bytes: &[u8]) -> Result<(), ()> {
    let chunk = Uint8Array::from(bytes);
    JsFuture::from(writer.write_with_chunk(&chunk))
        .await
        .map(drop)
        .map_err(drop)
}
