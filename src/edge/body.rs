//! Response bodies read with a cap, chunk by chunk: a body that never ends (or is merely huge)
//! would otherwise grow until the isolate's 128 MB memory limit ends every request it serves.

use futures_util::StreamExt;
use worker::{Response, ResponseBody};

/// The largest whole (non-stream) answer relayed to a client.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;
/// The most of an upstream 4xx body read for its message.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// The largest key set accepted from `JWKS_URL`.
pub const MAX_KEY_SET_BYTES: usize = 1 << 20;

pub enum BodyError {
    /// More than the cap; reading stopped there and the rest was cancelled.
    TooLarge,
    Failed(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("the body is larger than its cap"),
            BodyError::Failed(detail) => write!(f, "reading the body failed: {detail}"),
        }
    }
}

/// The body, if it holds at most `cap` bytes. Reading stops at the first chunk past the cap;
/// dropping the stream cancels the rest, which closes the connection it came on.
pub async fn read_capped(response: &mut Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if !matches!(response.body(), ResponseBody::Stream(_)) {
        return response.bytes().await.map_err(|e| BodyError::Failed(e.to_string()));
    }
    let mut stream = response.stream().map_err(|e| BodyError::Failed(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Failed(e.to_string()))?;
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
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
