//! One JSON object per line on the console, where `wrangler tail`, Workers Logs and Logpush
//! read it. Never the prompt, the completion, a token or a key.

use serde_json::json;

use super::Now;
use crate::budget::money::usd;
use crate::budget::quota::{Spend, Standing};
use crate::budget::usage::Usage;
use crate::config::LogLevel;
use crate::request::{ApiRequest, Tariff};

/// What one request's log line says; filled in by the request's phases.
#[derive(Default)]
pub struct Outcome {
    pub request_id: String,
    started_ms: u64,
    pub route: &'static str,
    /// Set once the origin is known to be allowed: every response to it, errors included,
    /// carries the CORS headers so the page can read it.
    pub allowed_origin: Option<String>,
    pub sub: Option<String>,
    /// The plan the request was checked and admitted with.
    pub plan: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    /// The user's limits as admission saw them: the RateLimit headers of the answer.
    pub standing: Option<Standing>,
    pub status: u16,
    pub error_code: Option<&'static str>,
    /// Operator-facing detail of an error.
    pub detail: Option<String>,
    /// What upstream reported, when it did.
    pub usage: Option<Usage>,
    /// What the request was charged (the usage, or an estimate), in tokens and dollars.
    pub charged: Option<Spend>,
    /// Time until upstream's response headers.
    pub upstream_ms: Option<u64>,
    pub disconnected: bool,
    /// Bytes of answer text a stream delivered (for a stream that ended without usage, what
    /// the user got for the reservation they were charged).
    pub streamed_text_bytes: Option<usize>,
    /// Why a stream failed.
    pub failure: Option<String>,
    prompt_chars: Option<usize>,
    pub log_level: LogLevel,
    pub log_prompts: bool,
}

impl Outcome {
    pub fn new(request_id: String, started: Now) -> Self {
        Outcome {
            request_id,
            started_ms: started.0,
            route: "unknown",
            ..Outcome::default()
        }
    }

    /// What the validated request asked for.
    pub fn describe(&mut self, request: &ApiRequest) {
        self.model = Some(request.model.clone());
        self.stream = request.stream;
        self.prompt_chars = Some(request.prompt_chars);
    }
}

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
        "plan": outcome.plan,
        "model": outcome.model,
        "origin": outcome.allowed_origin,
        "stream": outcome.stream,
        "disconnected": outcome.disconnected,
        "streamed_text_bytes": outcome.streamed_text_bytes,
        "prompt_tokens": usage.map(|u| u.prompt_tokens),
        "completion_tokens": usage.map(|u| u.completion_tokens),
        "total_tokens": outcome.charged.map(|spent| spent.tokens),
        "cost_usd": outcome.charged.map(|spent| usd(spent.nano_usd)),
        "usage_reported": usage.is_some(),
        "upstream_ms": outcome.upstream_ms,
        "duration_ms": Now::read().since(Now(outcome.started_ms)),
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
    event_line("warn", event, detail);
}

/// An operator-facing event that is no problem (a voice call's end).
pub fn info(event: &str, detail: &str) {
    event_line("info", event, detail);
}

fn event_line(level: &str, event: &str, detail: &str) {
    worker::console_log!("{}", json!({ "level": level, "event": event, "detail": detail }));
}

/// What an answer is charged (`Tariff::charge`), with an `overrun` warning when OpenAI reported
/// more than the reservation: the operator's signal that a bound does not hold.
pub fn charge(tariff: &Tariff, usage: Option<&Usage>) -> Spend {
    let spent = tariff.charge(usage);
    if tariff.overran(spent) {
        warn(
            "overrun",
            &format!(
                "charged {} tokens, {} nano-USD: more than the request reserved",
                spent.tokens, spent.nano_usd
            ),
        );
    }
    spent
}

/// A traffic-spike alert, for log-based alerting (`level: "alert"`).
pub fn alert(message: &str) {
    worker::console_log!(
        "{}",
        json!({ "level": "alert", "event": "traffic_alert", "message": message })
    );
}
