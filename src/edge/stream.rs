//! The metering stream: upstream's body read chunk by chunk, passed through the core's
//! `SseMeter`, and written into an identity TransformStream whose readable side is the client's
//! body. Each chunk's complete events go out as they arrive; nothing is collected.
//!
//! The pump runs in `ctx.wait_until`. workerd notices a vanished client only when it writes
//! to it, and then runs no more of the request's own code (no stream `cancel`, no `Drop`);
//! a `wait_until` task goes on, sees its next write fail, aborts the upstream fetch (so
//! upstream stops generating for nobody) and settles the request's usage.

use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, TransformStream, WritableStreamDefaultWriter};
use worker::{AbortController, ByteStream, Context};

use super::internal;
use crate::error::ProxyError;
use crate::sse::{self, SseMeter};

/// How a metered stream ended.
pub struct StreamEnd {
    pub meter: SseMeter,
    /// The client went away before the end.
    pub disconnected: bool,
    /// Upstream broke off mid-stream (for the log; the client got an error event).
    pub upstream_error: Option<String>,
}

/// Starts pumping `upstream` through `meter`; returns the client's body. `on_end` runs once,
/// when the stream ends or the client goes away.
pub fn metered(
    ctx: &Rc<Context>,
    mut upstream: ByteStream,
    mut meter: SseMeter,
    upstream_abort: AbortController,
    on_end: impl FnOnce(StreamEnd) -> LocalBoxFuture<'static, ()> + 'static,
) -> Result<ReadableStream, ProxyError> {
    let pipe = TransformStream::new().map_err(internal)?;
    let writer = pipe.writable().get_writer().map_err(internal)?;
    ctx.wait_until(async move {
        let (disconnected, upstream_error) = loop {
            let (events, upstream_error, finished) = match upstream.next().await {
                Some(Ok(chunk)) => (meter.feed(&chunk), None, false),
                // Whole events only, then a well-formed error event: never a half line, never a
                // `[DONE]` that would claim the answer is complete.
                Some(Err(error)) => {
                    let mut events = meter.finish();
                    events.extend(sse::error_event(&ProxyError::UpstreamFailed { detail: String::new() }));
                    (events, Some(error.to_string()), true)
                }
                None => (meter.finish(), None, true),
            };
            if !events.is_empty() && write(&writer, &events).await.is_err() {
                upstream_abort.abort();
                break (true, None);
            }
            if finished {
                let _ = JsFuture::from(writer.close()).await;
                break (false, upstream_error);
            }
        };
        on_end(StreamEnd { meter, disconnected, upstream_error }).await;
    });
    Ok(pipe.readable())
}

/// Writes one chunk; fails when the client's side is gone.
async fn write(writer: &WritableStreamDefaultWriter, bytes: &[u8]) -> Result<(), ()> {
    let chunk = Uint8Array::from(bytes);
    JsFuture::from(writer.write_with_chunk(&chunk)).await.map(drop).map_err(drop)
}
