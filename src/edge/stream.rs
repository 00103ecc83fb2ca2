//! The metering stream: upstream's body read chunk by chunk, passed through the core's
//! `SseMeter`, and written into a pipe whose readable side is the client's body. Each chunk's
//! complete events go out as they arrive; nothing is collected.
//!
//! The pump runs in `ctx.wait_until`. workerd notices a vanished client only when it writes
//! to it, and then runs no more of the request's own code (no stream `cancel`, no `Drop`);
//! a `wait_until` task goes on, sees its next write fail, aborts the upstream fetch (so
//! upstream stops generating for nobody) and settles the request's usage. Every wait in the
//! pump is bounded by the idle timeout, so it reaches its end (log line, settlement) however
//! the stream ends.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either, FutureExt, LocalBoxFuture};
use futures_util::StreamExt;
use worker::js_sys::{Array, Function, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortController, ReadableStream, TransformStream, WritableStreamDefaultWriter};
use worker::{ByteStream, Context, Delay};

use crate::error::ProxyError;
use crate::sse::{self, SseMeter};

/// How a metered stream ended.
pub struct StreamEnd {
    pub meter: SseMeter,
    /// The client went away, or stopped reading, before the end.
    pub disconnected: bool,
    /// The client stopped reading: a write waited past the idle timeout.
    pub client_stalled: bool,
    /// Why upstream's stream failed (for the log; the client got an error event): it broke
    /// off, stopped before its proper end, or went silent past the idle timeout.
    pub failure: Option<String>,
}

/// How the pump runs.
pub struct Pump {
    /// The longest either side may make no progress.
    pub idle_timeout: Duration,
    /// Run `on_end` before the client's body closes, not after: the client then sees the end
    /// only once the request is settled (a response it created is recorded before it can ask
    /// to continue it).
    pub end_before_close: bool,
}

/// Starts pumping `upstream` through `meter`; returns the client's body. `on_end` runs once,
/// when the stream ends, the client goes away, or either side makes no progress for
/// `idle_timeout`.
pub fn metered(
    ctx: &Rc<Context>,
    mut upstream: ByteStream,
    mut meter: SseMeter,
    upstream_abort: AbortController,
    pump: Pump,
    on_end: impl FnOnce(StreamEnd) -> LocalBoxFuture<'static, ()> + 'static,
) -> Result<ReadableStream, ProxyError> {
    let pipe = Pipe::new()?;
    let readable = pipe.stream.readable();
    let idle_timeout = pump.idle_timeout;
    ctx.wait_until(async move {
        let mut client_stalled = false;
        let (disconnected, failure) = loop {
            let (events, finished) = match within(idle_timeout, upstream.next()).await {
                Some(Some(Ok(chunk))) => {
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
                Some(Some(Err(error))) => (
                    end_with(&mut meter, upstream_failed()),
                    Some(Some(format!("upstream broke off: {error}"))),
                ),
                Some(None) => {
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
                None => {
                    upstream_abort.abort();
                    let silent = format!("upstream was silent for {} ms", idle_timeout.as_millis());
                    (end_with(&mut meter, ProxyError::UpstreamTimeout), Some(Some(silent)))
                }
            };
            if !events.is_empty() {
                match within(idle_timeout, pipe.write(&events)).await {
                    Some(Ok(())) => {}
                    Some(Err(())) => break (true, None),
                    None => {
                        client_stalled = true;
                        break (true, None);
                    }
                }
            }
            if let Some(failure) = finished {
                break (false, failure);
            }
        };
        if disconnected {
            upstream_abort.abort();
            pipe.abort();
        }
        let end = on_end(StreamEnd {
            meter,
            disconnected,
            client_stalled,
            failure,
        });
        if disconnected {
            end.await;
        } else if pump.end_before_close {
            end.await;
            pipe.close(idle_timeout).await;
        } else {
            pipe.close(idle_timeout).await;
            end.await;
        }
    });
    Ok(readable)
}

/// workerd's `IdentityTransformStream`, a native pipe. With a standard `TransformStream`, under
/// concurrent load workerd sometimes drops its read of the body when the client goes away
/// without erroring the stream, and the pump's next write then waits forever for a read (the
/// stream slot and reservation leaked). Dropping the reading end of a native pipe fails the
/// write. A write resolves once the client's side has taken the chunk.
struct Pipe {
    stream: TransformStream,
    writer: WritableStreamDefaultWriter,
}

impl Pipe {
    fn new() -> Result<Self, ProxyError> {
        let class = Reflect::get(&worker::js_sys::global(), &"IdentityTransformStream".into())
            .and_then(|class| class.dyn_into::<Function>())?;
        let stream: TransformStream = Reflect::construct(&class, &Array::new())?.unchecked_into();
        let writer = stream.writable().get_writer()?;
        Ok(Self { stream, writer })
    }

    /// Writes one chunk; fails when the client's side is gone.
    fn write(&self, bytes: &[u8]) -> impl Future<Output = Result<(), ()>> + Unpin {
        JsFuture::from(self.writer.write_with_chunk(&Uint8Array::from(bytes))).map(|done| done.map(drop).map_err(drop))
    }

    /// Ends the client's body. Bounded too: a client that stops reading at the very end must
    /// not hold the slot.
    async fn close(&self, idle_timeout: Duration) {
        let _ = within(idle_timeout, JsFuture::from(self.writer.close())).await;
    }

    /// Breaks the client's body off: it must not look like a whole answer.
    fn abort(&self) {
        let _ = self.writer.abort_with_reason(&JsValue::from_str("stream ended"));
    }
}

/// `work`'s output, or `None` if it did not finish within `limit`.
async fn within<T>(limit: Duration, work: impl Future<Output = T> + Unpin) -> Option<T> {
    match select(work, Box::pin(Delay::from(limit))).await {
        Either::Left((done, _)) => Some(done),
        Either::Right(_) => None,
    }
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
