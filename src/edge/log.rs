//! One JSON object per line on the console, where `wrangler tail` and Workers Logs read it.
//! Never the prompt, the completion, a token or a key.

use serde_json::{json, Value};

use super::Outcome;
use crate::error::ProxyError;

pub fn request_line(outcome: &Outcome, status: u16, error: Option<&ProxyError>, duration_ms: u64) {
    let level = match status {
        500.. => "error",
        400.. => "warn",
        _ => "info",
    };
    let mut line = json!({
        "level": level,
        "request_id": outcome.request_id,
        "route": outcome.route,
        "status": status,
        "sub": outcome.sub,
        "model": outcome.model,
        "stream": outcome.stream,
        "origin": outcome.allowed_origin,
        "duration_ms": duration_ms,
    });
    if let Some(error) = error {
        line["error_code"] = Value::from(error.code());
        if let Some(detail) = error.log_detail() {
            line["detail"] = Value::from(detail);
        }
    }
    worker::console_log!("{line}");
}

/// An operator-facing warning that is not tied to one request's outcome.
pub fn warn(event: &str, detail: &str) {
    worker::console_log!("{}", json!({ "level": "warn", "event": event, "detail": detail }));
}

/// The end of a stream, which comes after its request's line: what it was charged, and
/// whether the client went away first.
pub fn stream_end(request_id: &str, tokens: u64, usage_reported: bool, disconnected: bool, failure: Option<&str>) {
    let line = json!({
        "level": if failure.is_some() { "error" } else { "info" },
        "failure": failure,
        "event": "stream_end",
        "request_id": request_id,
        "tokens": tokens,
        "usage_reported": usage_reported,
        "disconnected": disconnected,
    });
    worker::console_log!("{line}");
}
