//! The metering stream: upstream's body read chunk by chunk, passed through the core's
//! `SseMeter`, and written into a pipe whose readable side is the client's body. Each chunk's
//! complete events go out as they arrive; nothing is collected.
//!
//! The pump runs in `ctx.wait_until`, started once the response is complete. workerd notices a vanished client only when it writes
//! to it, and then runs no more of the request's own code (no stream `cancel`, no `Drop`);
//! a `wait_until` task goes on, sees its next write fail, aborts the upstream fetch (so
//! upstream stops generating for nobody) and settles the request's usage. Every wait in the
//! pump is bounded by the idle timeout, so it reaches its end (log line, settlement) however
//! the stream ends.

use std::future::Future;
use std::time::Duration;

use futures_util::future::{select, Either, FutureExt};
use futures_util::StreamExt;
use worker::js_sys::{Array, Function, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortController, ReadableStream, TransformStream, WritableStreamDefaultWriter};
use worker::{ByteStream, Delay};

use crate::error::ProxyError;
use crate::sse::{self, AnswerTail, SseMeter};

/// How a metered stream ended.
pub struct StreamEnd {
    /// What was read: an event stream's meter, or only the usage and the completeness of a
    /// whole answer passed through.
    pub meter: SseMeter,
    /// The client went away, or stopped reading, before the end.
    pub disconnected: bool,
    /// The client stopped reading: a write waited past the idle timeout.
    pub client_stalled: bool,
    /// Why upstream's stream failed (for the log; the client got an error event): it broke
    /// off, stopped before its proper end, or went silent past the idle timeout.
    pub failure: Option<String>,
}

/// A metered stream whose client body exists but whose pump has not started yet.
pub struct Metered {
    upstream: ByteStream,
    meter: SseMeter,
    pipe: Pipe,
    upstream_abort: AbortController,
    idle_timeout: Duration,
}

/// The client's body, and the pump that will fill it from `upstream` through `meter`.
pub fn metered(
    upstream: ByteStream,
    meter: SseMeter,
    upstream_abort: AbortController,
    idle_timeout: Duration,
) -> Result<(ReadableStream, Metered), ProxyError> {
    let pipe = Pipe::new()?;
    let readable = pipe.stream.readable();
    Ok((
        readable,
        Metered {
            upstream,
            meter,
            pipe,
            upstream_abort,
            idle_timeout,
        },
    ))
}

impl Metered {
    /// Stops upstream for a stream that will never be pumped.
    pub fn abort(&self) {
        self.upstream_abort.abort();
    }

    /// Pumps until the stream ends, the client goes away, or either side makes no progress for
    /// the idle timeout; run it in `wait_until`. The client's body is left open (unless the
    /// client is gone): the caller closes it, before or after settling.
    pub async fn pump(self) -> (StreamEnd, ClientBody) {
        let Metered {
            mut upstream,
            mut meter,
            pipe,
            upstream_abort,
            idle_timeout,
        } = self;
        let mut client_stalled = false;
        let (disconnected, failure) = loop {
            let next = within(idle_timeout, upstream.next()).await;
            let (events, finished) = next_events(next, &mut meter, &upstream_abort, idle_timeout);
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
        // Raw audio has no error event: a failed one is broken off, so it cannot look whole.
        if disconnected || (failure.is_some() && meter.is_audio()) {
            upstream_abort.abort();
            pipe.abort();
        }
        let end = StreamEnd {
            meter,
            disconnected,
            client_stalled,
            failure,
        };
        (end, ClientBody { pipe, idle_timeout })
    }
}

/// What a tail pumps: an event stream through its meter, or a whole JSON answer through
/// unread but for its tail.
pub enum Pump {
    Events(Metered),
    Whole(PassedThrough),
}

impl Pump {
    pub fn abort(&self) {
        match self {
            Pump::Events(metered) => metered.abort(),
            Pump::Whole(passed) => passed.upstream_abort.abort(),
        }
    }

    pub async fn pump(self) -> (StreamEnd, ClientBody) {
        match self {
            Pump::Events(metered) => metered.pump().await,
            Pump::Whole(passed) => passed.pump().await,
        }
    }
}

/// A whole answer passed to the client as it arrives (an Embeddings answer can be tens of
/// MB, which the isolate must not hold), its `usage` read from its tail (`sse::AnswerTail`).
pub struct PassedThrough {
    upstream: ByteStream,
    tail: AnswerTail,
    pipe: Pipe,
    upstream_abort: AbortController,
    idle_timeout: Duration,
}

/// The client's body, and the pump that will fill it from `upstream` unchanged.
pub fn passed_through(
    upstream: ByteStream,
    upstream_abort: AbortController,
    idle_timeout: Duration,
) -> Result<(ReadableStream, PassedThrough), ProxyError> {
    let pipe = Pipe::new()?;
    let readable = pipe.stream.readable();
    let passed = PassedThrough {
        upstream,
        tail: AnswerTail::default(),
        pipe,
        upstream_abort,
        idle_timeout,
    };
    Ok((readable, passed))
}

impl PassedThrough {
    /// Pumps until the answer ends, the client goes away, or either side makes no progress
    /// for the idle timeout. An answer that does not end whole is broken off for the client
    /// (it must not look whole) and has no usage: it is charged its whole reservation.
    async fn pump(self) -> (StreamEnd, ClientBody) {
        let PassedThrough {
            mut upstream,
            mut tail,
            pipe,
            upstream_abort,
            idle_timeout,
        } = self;
        let (disconnected, client_stalled, failure) = loop {
            let chunk = match within(idle_timeout, upstream.next()).await {
                Some(Some(Ok(chunk))) => chunk,
                Some(Some(Err(error))) => break (false, false, Some(format!("upstream broke off: {error}"))),
                Some(None) => break (false, false, None),
                None => {
                    break (
                        false,
                        false,
                        Some(format!("upstream was silent for {} ms", idle_timeout.as_millis())),
                    )
                }
            };
            tail.feed(&chunk);
            match within(idle_timeout, pipe.write(&chunk)).await {
                Some(Ok(())) => {}
                Some(Err(())) => break (true, false, None),
                None => break (true, true, None),
            }
        };
        let whole = !disconnected && failure.is_none();
        if !whole {
            upstream_abort.abort();
            pipe.abort();
        }
        let mut meter = SseMeter::default();
        meter.usage = tail.usage().filter(|_| whole);
        meter.complete = whole;
        let end = StreamEnd {
            meter,
            disconnected,
            client_stalled,
            failure,
        };
        (end, ClientBody { pipe, idle_timeout })
    }
}

/// The client's end of a pumped stream, still open.
pub struct ClientBody {
    pipe: Pipe,
    idle_timeout: Duration,
}

impl ClientBody {
    /// Ends the client's body. Bounded too: a client that stops reading at the very end must
    /// not hold the slot.
    pub async fn close(self) {
        let _ = within(self.idle_timeout, JsFuture::from(self.pipe.writer.close())).await;
    }
}

/// What to write to the client after upstream's next step (a chunk, an error, its end, or
/// silence past the idle timeout), and, when the stream is over, why it failed if it did.
fn next_events(
    next: Option<Option<Result<Vec<u8>, worker::Error>>>,
    meter: &mut SseMeter,
    upstream_abort: &AbortController,
    idle_timeout: Duration,
) -> (Vec<u8>, Option<Option<String>>) {
    match next {
        Some(Some(Ok(chunk))) => {
            let mut events = meter.feed(&chunk);
            if !meter.event_too_long {
                return (events, None);
            }
            upstream_abort.abort();
            events.extend(meter.error_event(&upstream_failed()));
            let why = format!("upstream sent an event over {} bytes", sse::MAX_EVENT_BYTES);
            (events, Some(Some(why)))
        }
        Some(Some(Err(error))) => (
            end_with(meter, upstream_failed()),
            Some(Some(format!("upstream broke off: {error}"))),
        ),
        Some(None) => {
            let mut events = meter.finish();
            let cut_off = !meter.complete;
            if cut_off {
                events.extend(meter.error_event(&upstream_failed()));
            }
            (
                events,
                Some(cut_off.then(|| "upstream stream stopped before its end".to_owned())),
            )
        }
        None => {
            upstream_abort.abort();
            let silent = format!("upstream was silent for {} ms", idle_timeout.as_millis());
            (end_with(meter, ProxyError::UpstreamTimeout), Some(Some(silent)))
        }
    }
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
    events.extend(meter.error_event(&error));
    events
}

/// The error a client's stream ends with when upstream failed (the detail goes to the log).
fn upstream_failed() -> ProxyError {
    ProxyError::UpstreamFailed { detail: String::new() }
}
