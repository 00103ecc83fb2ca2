//! The one renderer: a `ProxyError` as OpenAI's JSON error, its status and headers, and the
//! log's detail. Every property is an exhaustive match, so a new variant decides each.

use serde_json::json;

use super::{truncate, ProxyError, Refusal};

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::InvalidRequest { .. } | ProxyError::ModelNotAllowed { .. } => 400,
            ProxyError::UpstreamRejected { .. } => 400,
            ProxyError::MissingToken | ProxyError::InvalidToken(_) | ProxyError::AdminUnauthorized => 401,
            ProxyError::OriginNotAllowed | ProxyError::UnknownPlan { .. } | ProxyError::TurnstileFailed { .. } => 403,
            ProxyError::NotFound | ProxyError::UnknownResponse { .. } => 404,
            ProxyError::MethodNotAllowed => 405,
            ProxyError::PayloadTooLarge { .. } => 413,
            ProxyError::UpstreamRateLimited { .. }
            | ProxyError::Quota { .. }
            | ProxyError::GuestMintsExhausted { .. } => 429,
            ProxyError::Misconfigured { .. } | ProxyError::Internal { .. } => 500,
            ProxyError::UpstreamAuthFailed { .. } | ProxyError::UpstreamFailed { .. } => 502,
            ProxyError::Unavailable { .. } | ProxyError::Busy { .. } => 503,
            ProxyError::UpstreamTimeout => 504,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        if let ProxyError::Quota {
            refusal: Refusal::BudgetExhausted { .. } | Refusal::SpendExhausted { .. },
            ..
        } = self
        {
            return "insufficient_quota";
        }
        match self.status() {
            400 | 404 | 405 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// OpenAI's `error.code`: stable, machine-readable.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::MissingToken => "missing_token",
            ProxyError::InvalidToken(_) => "invalid_token",
            ProxyError::AdminUnauthorized => "invalid_admin_token",
            ProxyError::OriginNotAllowed => "origin_not_allowed",
            ProxyError::NotFound | ProxyError::UnknownResponse { .. } => "not_found",
            ProxyError::MethodNotAllowed => "method_not_allowed",
            ProxyError::PayloadTooLarge { .. } => "request_too_large",
            ProxyError::InvalidRequest { .. } => "invalid_request",
            ProxyError::ModelNotAllowed { .. } => "model_not_allowed",
            ProxyError::UnknownPlan { .. } => "unknown_plan",
            ProxyError::TurnstileFailed { .. } => "turnstile_failed",
            ProxyError::GuestMintsExhausted { .. } => "rate_limit_exceeded",
            ProxyError::Misconfigured { .. } => "proxy_misconfigured",
            ProxyError::UpstreamAuthFailed { .. } => "upstream_auth_failed",
            ProxyError::UpstreamRateLimited { .. } => "upstream_rate_limited",
            ProxyError::Quota {
                refusal: Refusal::RateLimited { .. },
                ..
            } => "rate_limit_exceeded",
            ProxyError::Quota {
                refusal: Refusal::TooManyStreams { .. },
                ..
            } => "too_many_concurrent_streams",
            ProxyError::Quota {
                refusal: Refusal::BudgetExhausted { .. } | Refusal::SpendExhausted { .. },
                ..
            } => "insufficient_quota",
            ProxyError::UpstreamRejected { .. } => "upstream_rejected",
            ProxyError::UpstreamFailed { .. } => "upstream_error",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::Unavailable { .. } | ProxyError::Busy { .. } => "temporarily_unavailable",
            ProxyError::Internal { .. } => "internal_error",
        }
    }

    /// What the client reads. Never contains upstream text, secrets or internal detail.
    pub fn client_message(&self) -> String {
        match self {
            ProxyError::MissingToken => "Missing access token: send `Authorization: Bearer <token>`.".into(),
            ProxyError::InvalidToken(problem) => problem.message(),
            ProxyError::AdminUnauthorized => "Invalid admin token.".into(),
            ProxyError::OriginNotAllowed => "This origin is not allowed to use this proxy.".into(),
            ProxyError::NotFound => "Unknown endpoint.".into(),
            // OpenAI's own words for either.
            ProxyError::UnknownResponse { id, item: false } => {
                format!("Previous response with id '{}' not found.", truncate(id, 128))
            }
            ProxyError::UnknownResponse { id, item: true } => {
                format!("Item with id '{}' not found.", truncate(id, 128))
            }
            ProxyError::MethodNotAllowed => "Method not allowed for this endpoint.".into(),
            ProxyError::PayloadTooLarge { limit } => {
                format!("Request body is larger than {limit} bytes.")
            }
            ProxyError::InvalidRequest { message, .. } => message.clone(),
            ProxyError::ModelNotAllowed { .. } => {
                "This model is not available through this proxy; GET /v1/models lists the ones that are.".into()
            }
            ProxyError::UnknownPlan { .. } => "Your token names a plan this proxy does not offer.".into(),
            ProxyError::TurnstileFailed { .. } => {
                "The human check failed or expired: solve it again and send its new token.".into()
            }
            ProxyError::GuestMintsExhausted { retry_after_seconds } => {
                format!("Too many guest sessions from this network; retry in {retry_after_seconds} s.")
            }
            ProxyError::Misconfigured { .. } => {
                "The proxy is misconfigured; the operator has been told in the server log.".into()
            }
            ProxyError::UpstreamAuthFailed { .. } => "The proxy could not authenticate with the upstream API.".into(),
            ProxyError::UpstreamRateLimited { .. } => {
                "The upstream API is rate limiting this proxy; retry later.".into()
            }
            ProxyError::UpstreamRejected {
                detail: Some(detail), ..
            } => detail.message.clone(),
            ProxyError::UpstreamRejected { detail: None, .. } => "The upstream API rejected the request.".into(),
            ProxyError::Quota { refusal, global } => match (refusal, global) {
                (Refusal::RateLimited { retry_after_seconds }, _) => {
                    format!("Too many requests for this user; retry in {retry_after_seconds} s.")
                }
                (Refusal::TooManyStreams { .. }, _) => {
                    "Too many streams open for this user; finish one before starting another.".into()
                }
                (Refusal::BudgetExhausted { .. }, false) => {
                    "This user's daily token budget has no room for this request; it frees as requests under way end, and resets at 00:00 UTC (see Retry-After).".into()
                }
                (Refusal::BudgetExhausted { .. }, true) => {
                    "The service's daily token budget has no room for this request; it frees as requests under way end, and resets at 00:00 UTC (see Retry-After).".into()
                }
                (Refusal::SpendExhausted { .. }, false) => {
                    "This user's daily spending budget has no room for this request; it frees as requests under way end, and resets at 00:00 UTC (see Retry-After).".into()
                }
                (Refusal::SpendExhausted { .. }, true) => {
                    "The service's daily spending budget has no room for this request; it frees as requests under way end, and resets at 00:00 UTC (see Retry-After).".into()
                }
            },
            ProxyError::UpstreamFailed { .. } => "The upstream API failed to answer.".into(),
            ProxyError::UpstreamTimeout => "The upstream API did not answer in time.".into(),
            ProxyError::Unavailable { .. } | ProxyError::Busy { .. } => {
                "The proxy cannot serve this request right now; retry shortly.".into()
            }
            ProxyError::Internal { .. } => "Internal error.".into(),
        }
    }

    /// Detail for the server log only (never sent to the client).
    pub fn log_detail(&self) -> Option<String> {
        match self {
            ProxyError::Misconfigured { detail }
            | ProxyError::UpstreamFailed { detail }
            | ProxyError::Unavailable { detail }
            | ProxyError::Busy { detail }
            | ProxyError::Internal { detail } => Some(detail.clone()),
            ProxyError::UpstreamAuthFailed { status } => Some(format!(
                "upstream answered {status} to our API key: check the OPENAI_API_KEY secret"
            )),
            ProxyError::UpstreamRejected { status, .. } => Some(format!("upstream answered {status}")),
            ProxyError::ModelNotAllowed { model } => {
                Some(format!("model {:?} is not in ALLOWED_MODELS", truncate(model, 64)))
            }
            ProxyError::UnknownPlan { plan } => Some(format!("plan {:?} is not in PLANS", truncate(plan, 64))),
            ProxyError::TurnstileFailed { reason } => Some(reason.clone()),
            ProxyError::MissingToken
            | ProxyError::InvalidToken(_)
            | ProxyError::AdminUnauthorized
            | ProxyError::OriginNotAllowed
            | ProxyError::NotFound
            | ProxyError::UnknownResponse { .. }
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::InvalidRequest { .. }
            | ProxyError::GuestMintsExhausted { .. }
            | ProxyError::UpstreamRateLimited { .. }
            | ProxyError::Quota { .. }
            | ProxyError::UpstreamTimeout => None,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 section 3).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            ProxyError::MissingToken => Some(r#"Bearer realm="openai-edge-proxy", error="invalid_request""#),
            ProxyError::InvalidToken(_) => Some(r#"Bearer realm="openai-edge-proxy", error="invalid_token""#),
            ProxyError::AdminUnauthorized => Some(r#"Bearer realm="openai-edge-proxy-admin""#),
            ProxyError::OriginNotAllowed
            | ProxyError::NotFound
            | ProxyError::UnknownResponse { .. }
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ModelNotAllowed { .. }
            | ProxyError::UnknownPlan { .. }
            | ProxyError::TurnstileFailed { .. }
            | ProxyError::GuestMintsExhausted { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::UpstreamAuthFailed { .. }
            | ProxyError::UpstreamRateLimited { .. }
            | ProxyError::Quota { .. }
            | ProxyError::UpstreamRejected { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::UpstreamTimeout
            | ProxyError::Unavailable { .. }
            | ProxyError::Busy { .. }
            | ProxyError::Internal { .. } => None,
        }
    }

    /// Seconds the client should wait before retrying, when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::UpstreamRateLimited { retry_after } => *retry_after,
            ProxyError::GuestMintsExhausted { retry_after_seconds } => Some(*retry_after_seconds),
            // Whole answers under way end within seconds and free their memory.
            ProxyError::Busy { .. } => Some(1),
            ProxyError::Quota { refusal, .. } => Some(match refusal {
                Refusal::RateLimited { retry_after_seconds }
                | Refusal::TooManyStreams { retry_after_seconds }
                | Refusal::BudgetExhausted { retry_after_seconds }
                | Refusal::SpendExhausted { retry_after_seconds } => *retry_after_seconds,
            }),
            ProxyError::MissingToken
            | ProxyError::InvalidToken(_)
            | ProxyError::AdminUnauthorized
            | ProxyError::OriginNotAllowed
            | ProxyError::NotFound
            | ProxyError::UnknownResponse { .. }
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ModelNotAllowed { .. }
            | ProxyError::UnknownPlan { .. }
            | ProxyError::TurnstileFailed { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::UpstreamAuthFailed { .. }
            | ProxyError::UpstreamRejected { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::UpstreamTimeout
            | ProxyError::Unavailable { .. }
            | ProxyError::Internal { .. } => None,
        }
    }

    /// `{"error":{"message","type","param","code"}}`, as OpenAI answers.
    pub fn to_json(&self) -> String {
        if let ProxyError::UpstreamRejected {
            detail: Some(detail), ..
        } = self
        {
            return json!({
                "error": {
                    "message": detail.message,
                    "type": detail.error_type.as_deref().unwrap_or(self.error_type()),
                    "param": detail.param,
                    "code": detail.code.as_deref().unwrap_or(self.code()),
                }
            })
            .to_string();
        }
        let param = match self {
            ProxyError::InvalidRequest { param, .. } => param.clone(),
            ProxyError::ModelNotAllowed { .. } => Some("model".into()),
            ProxyError::UnknownResponse { item: false, .. } => Some("previous_response_id".into()),
            ProxyError::UnknownResponse { item: true, .. } => Some("input".into()),
            ProxyError::MissingToken
            | ProxyError::InvalidToken(_)
            | ProxyError::AdminUnauthorized
            | ProxyError::OriginNotAllowed
            | ProxyError::NotFound
            | ProxyError::MethodNotAllowed
            | ProxyError::PayloadTooLarge { .. }
            | ProxyError::UnknownPlan { .. }
            | ProxyError::TurnstileFailed { .. }
            | ProxyError::GuestMintsExhausted { .. }
            | ProxyError::Misconfigured { .. }
            | ProxyError::UpstreamAuthFailed { .. }
            | ProxyError::UpstreamRateLimited { .. }
            | ProxyError::Quota { .. }
            | ProxyError::UpstreamRejected { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::UpstreamTimeout
            | ProxyError::Unavailable { .. }
            | ProxyError::Busy { .. }
            | ProxyError::Internal { .. } => None,
        };
        json!({
            "error": {
                "message": self.client_message(),
                "type": self.error_type(),
                "param": param,
                "code": self.code(),
            }
        })
        .to_string()
    }
}
