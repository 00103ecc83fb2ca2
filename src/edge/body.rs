//! Response bodies read with a cap, chunk by chunk: a body that never ends (or is merely huge)
//! would otherwise grow until the isolate's 128 MB memory limit ends every request it serves.

use std::cell::Cell;

use futures_util::StreamExt;
use worker::{Response, ResponseBody};

use crate::error::ProxyError;
use crate::memory::{AnswerMemory, ANSWER_MEMORY_BUDGET};

/// The largest whole (non-stream) answer relayed to a client.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most of an upstream 4xx body read for its message.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// The largest key set accepted from `JWKS_URL`.
pub const MAX_KEY_SET_BYTES: usize = 1 << 20;

pub enum BodyError {
    /// More than the cap; reading stopped there and the rest was cancelled.
    TooLarge,
    /// The isolate's whole answers would pass their memory budget; reading stopped there.
    NoMemory,
    Failed(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("the body is larger than its cap"),
            BodyError::NoMemory => f.write_str("the isolate's whole answers would pass their memory budget"),
            BodyError::Failed(detail) => write!(f, "reading the body failed: {detail}"),
        }
    }
}

thread_local! {
    /// What this isolate's whole answers hold now.
    static ANSWER_MEMORY: Cell<AnswerMemory> = Cell::new(AnswerMemory::default());
}

/// The memory one whole answer holds in this isolate (`crate::memory`), given back when it is
/// dropped: once the answer has been handed to the runtime, or abandoned.
#[must_use]
#[derive(Default)]
pub struct HeldMemory {
    bytes: usize,
}

impl HeldMemory {
    /// Before upstream is asked for a whole answer: refused (503, `Retry-After`) while this
    /// isolate's whole answers fill their budget. Nothing has been sent; the request costs nothing.
    pub fn check_room() -> Result<(), ProxyError> {
        if ANSWER_MEMORY.get().has_room(ANSWER_MEMORY_BUDGET) {
            return Ok(());
        }
        Err(ProxyError::Busy {
            detail: format!(
                "whole answers hold this isolate's {} MiB budget",
                ANSWER_MEMORY_BUDGET >> 20
            ),
        })
    }

    /// A request body of `bytes` (a transcription's form, up to 25 MB), held like a whole
    /// answer until the request is sent (its growing buffer and the upstream body's copy):
    /// refused (503, `Retry-After`) when this isolate's budget has no room for it, before any
    /// Durable Object or upstream call.
    pub fn hold(bytes: usize) -> Result<HeldMemory, ProxyError> {
        let mut held = HeldMemory::default();
        if held.take(bytes) {
            return Ok(held);
        }
        Err(ProxyError::Busy {
            detail: format!("a {bytes}-byte upload would pass this isolate's memory budget for held bodies"),
        })
    }

    fn take(&mut self, bytes: usize) -> bool {
        let mut memory = ANSWER_MEMORY.get();
        let taken = memory.take(bytes, ANSWER_MEMORY_BUDGET);
        ANSWER_MEMORY.set(memory);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for HeldMemory {
    fn drop(&mut self) {
        let mut memory = ANSWER_MEMORY.get();
        memory.give_back(self.bytes);
        ANSWER_MEMORY.set(memory);
    }
}

/// The body, if it holds at most `cap` bytes (and, with `held`, fits in the isolate's budget
/// for whole answers). Reading stops at the first chunk past either; dropping the stream
/// cancels the rest, which closes the connection it came on.
pub async fn read_capped(
    response: &mut Response,
    cap: usize,
    mut held: Option<&mut HeldMemory>,
) -> Result<Vec<u8>, BodyError> {
    let mut take = |bytes: usize| held.as_mut().is_none_or(|held| held.take(bytes));
    if !matches!(response.body(), ResponseBody::Stream(_)) {
        let body = response.bytes().await.map_err(|e| BodyError::Failed(e.to_string()))?;
        return if take(body.len()) {
            Ok(body)
        } else {
            Err(BodyError::NoMemory)
        };
    }
    let mut stream = response.stream().map_err(|e| BodyError::Failed(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Failed(e.to_string()))?;
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        if !take(chunk.len()) {
            return Err(BodyError::NoMemory);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most the first `cap` bytes of the body; the rest is cancelled unread.
pub async fn read_prefix(response: &mut Response, cap: usize) -> Vec<u8> {
    if !matches!(response.body(), ResponseBody::Stream(_)) {
        let mut body = response.bytes().await.unwrap_or_default();
        body.truncate(cap);
        return body;
    }
    let Ok(mut stream) = response.stream() else {
        return Vec::new();
    };
    let mut body = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}
