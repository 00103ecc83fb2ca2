//! One JSON object per line on the console, where `wrangler tail`, Workers Logs and Logpush
//! read it. Never the prompt, the completion, a token or a key.

use serde_json::json;

use super::Outcome;
use crate::config::LogLevel;

/// The request's one audit line (for a stream, written when the stream ends).
pub fn request_line(outcome: &Outcome) {
    let level = match outcome.status {
        500.. => LogLevel::Error,
        400.. => LogLevel::Warn,
        _ if outcome.failure.is_some() => LogLevel::Error,
        _ => LogLevel::Info,
    };
    if level < outcome.log_level {
        return;
    }
    let usage = outcome.usage;
    let mut line = json!({
        "level": level.name(),
        "time": worker::js_sys::Date::new_0().to_iso_string().as_string(),
        "request_id": outcome.request_id,
        "route": outcome.route,
        "status": outcome.status,
        "error_code": outcome.error_code,
        "sub": outcome.sub,
        "model": outcome.model,
        "origin": outcome.allowed_origin,
        "stream": outcome.stream,
        "disconnected": outcome.disconnected,
        "prompt_tokens": usage.map(|u| u.prompt_tokens),
        "completion_tokens": usage.map(|u| u.completion_tokens),
        "total_tokens": outcome.tokens_charged,
        "usage_reported": usage.is_some(),
        "upstream_ms": outcome.upstream_ms,
        "duration_ms": worker::Date::now().as_millis().saturating_sub(outcome.started_ms),
    });
    if let Some(detail) = &outcome.detail {
        line["detail"] = json!(detail);
    }
    if let Some(failure) = &outcome.failure {
        line["failure"] = json!(failure);
    }
    if outcome.log_prompts {
        line["prompt_chars"] = json!(outcome.prompt_chars);
    }
    worker::console_log!("{line}");
}

/// An operator-facing warning that is not tied to one request's outcome.
pub fn warn(event: &str, detail: &str) {
    worker::console_log!("{}", json!({ "level": "warn", "event": event, "detail": detail }));
}

/// A traffic-spike alert, for log-based alerting (`level: "alert"`).
pub fn alert(message: &str) {
    worker::console_log!(
        "{}",
        json!({ "level": "alert", "event": "traffic_alert", "message": message })
    );
}
