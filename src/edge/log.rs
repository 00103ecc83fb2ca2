//! One JSON object per line on the console, where `wrangler tail` and Workers Logs read it.
//! Never the prompt, the completion, a token or a key.

use serde_json::{json, Value};

use super::Outcome;
use crate::error::ProxyError;

pub fn request_line(request_id: &str, outcome: &Outcome, status: u16, error: Option<&ProxyError>, duration_ms: u64) {
    let level = match status {
        500.. => "error",
        400.. => "warn",
        _ => "info",
    };
    let mut line = json!({
        "level": level,
        "request_id": request_id,
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
