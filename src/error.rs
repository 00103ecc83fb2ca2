//! The one error type of the proxy and its OpenAI-shaped JSON.
//!
//! Every failure the client can see is a `ProxyError`. The client gets a generic, useful
//! message; anything internal (upstream text, which variable is wrong) is only in `log_detail`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why the user's object refused an admission: a limit of its quota, with when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    RateLimited {
        retry_after_seconds: u64,
    },
    TooManyStreams {
        retry_after_seconds: u64,
    },
    BudgetExhausted {
        retry_after_seconds: u64,
    },
    /// The daily budget in dollars (`DAILY_BUDGET_USD`) has no room for the request.
    SpendExhausted {
        retry_after_seconds: u64,
    },
}

/// Why a bearer token was refused. The client is told the kind, never the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Malformed,
    UnsupportedHeader,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    MissingClaim(&'static str),
    InvalidClaim(&'static str),
    WrongIssuer,
    WrongAudience,
    Revoked,
}

impl TokenProblem {
    pub fn message(self) -> String {
        match self {
            TokenProblem::Malformed => "The access token is malformed.".into(),
            TokenProblem::UnsupportedHeader => {
                "The access token uses a header or algorithm this proxy does not accept.".into()
            }
            TokenProblem::UnknownKey => "The access token was signed by an unknown key.".into(),
            TokenProblem::BadSignature => "The access token has a bad signature.".into(),
            TokenProblem::Expired => "The access token expired.".into(),
            TokenProblem::NotYetValid => "The access token is not yet valid.".into(),
            TokenProblem::IssuedInFuture => "The access token was issued in the future.".into(),
            TokenProblem::LifetimeTooLong => "The access token's lifetime is longer than this proxy allows.".into(),
            TokenProblem::MissingClaim(claim) => {
                format!("The access token has no `{claim}` claim.")
            }
            TokenProblem::InvalidClaim(claim) => {
                format!("The access token's `{claim}` claim is invalid.")
            }
            TokenProblem::WrongIssuer => "The access token has the wrong issuer.".into(),
            TokenProblem::WrongAudience => "The access token has the wrong audience.".into(),
            TokenProblem::Revoked => "The access token was revoked.".into(),
        }
    }
}

/// The fields of an OpenAI error worth passing on, already scrubbed of secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamErrorDetail {
    pub message: String,
    pub error_type: Option<String>,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// No usable `Authorization: Bearer` header.
    MissingToken,
    InvalidToken(TokenProblem),
    /// Admin route with a missing or wrong admin token.
    AdminUnauthorized,
    OriginNotAllowed,
    NotFound,
    /// `previous_response_id` names no response this user created: whether another user
    /// created it is not said, so the answer is the same as for an id that never existed.
    UnknownResponse {
        id: String,
    },
    MethodNotAllowed,
    PayloadTooLarge {
        limit: usize,
    },
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    ModelNotAllowed {
        model: String,
    },
    /// The token's plan claim names a plan `PLANS` lacks (or a stored override does).
    UnknownPlan {
        plan: String,
    },
    /// `POST /v1/guest`: Turnstile did not vouch for a human (`reason`, for the log only).
    TurnstileFailed {
        reason: String,
    },
    /// `POST /v1/guest`: this client minted `GUEST_MINTS_PER_HOUR` guest tokens in the last hour.
    GuestMintsExhausted {
        retry_after_seconds: u64,
    },
    /// A variable or secret is missing or invalid; `detail` names it, for the log only.
    Misconfigured {
        detail: String,
    },
    /// Upstream refused our key (401/403): the operator's problem, not the client's.
    UpstreamAuthFailed {
        status: u16,
    },
    UpstreamRateLimited {
        retry_after: Option<u64>,
    },
    /// A per-user limit (or, with `global`, the budget of all users) refused the request.
    Quota {
        refusal: Refusal,
        global: bool,
    },
    /// Upstream rejected the request (4xx other than auth and rate limit). OpenAI's own error,
    /// scrubbed, when it gave one: the client needs it ("context length exceeded"...).
    UpstreamRejected {
        status: u16,
        detail: Option<UpstreamErrorDetail>,
    },
    /// Upstream unreachable, 5xx, or an unreadable answer; `detail` is for the log only.
    UpstreamFailed {
        detail: String,
    },
    UpstreamTimeout,
    /// A dependency of the proxy (the key set, a Durable Object) cannot answer: fail closed.
    Unavailable {
        detail: String,
    },
    Internal {
        detail: String,
    },
}

/// The operator's view: the code and the log detail (or the client message when there is none).
impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.log_detail() {
            Some(detail) => write!(f, "{}: {detail}", self.code()),
            None => write!(f, "{}: {}", self.code(), self.client_message()),
        }
    }
}

impl std::error::Error for ProxyError {}

impl ProxyError {
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ProxyError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    pub fn misconfigured(detail: impl Into<String>) -> Self {
        ProxyError::Misconfigured { detail: detail.into() }
    }

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
            ProxyError::Unavailable { .. } => 503,
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
            ProxyError::Unavailable { .. } => "temporarily_unavailable",
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
            ProxyError::UnknownResponse { id } => {
                format!("Previous response with id '{}' not found.", truncate(id, 128))
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
            ProxyError::Unavailable { .. } => "The proxy cannot serve this request right now; retry shortly.".into(),
            ProxyError::Internal { .. } => "Internal error.".into(),
        }
    }

    /// Detail for the server log only (never sent to the client).
    pub fn log_detail(&self) -> Option<String> {
        match self {
            ProxyError::Misconfigured { detail }
            | ProxyError::UpstreamFailed { detail }
            | ProxyError::Unavailable { detail }
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
            | ProxyError::Internal { .. } => None,
        }
    }

    /// Seconds the client should wait before retrying, when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::UpstreamRateLimited { retry_after } => *retry_after,
            ProxyError::GuestMintsExhausted { retry_after_seconds } => Some(*retry_after_seconds),
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
            ProxyError::UnknownResponse { .. } => Some("previous_response_id".into()),
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

/// Shortens client-provided text before it goes into a log line.
pub fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed(error: &ProxyError) -> Value {
        serde_json::from_str(&error.to_json()).unwrap()
    }

    #[test]
    fn json_has_openai_shape() {
        let body = parsed(&ProxyError::invalid_request(
            "`messages` must be an array",
            Some("messages"),
        ));
        assert_eq!(body["error"]["message"], "`messages` must be an array");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    #[test]
    fn statuses_and_types_follow_openai() {
        let cases = [
            (ProxyError::MissingToken, 401, "authentication_error"),
            (ProxyError::OriginNotAllowed, 403, "permission_error"),
            (ProxyError::NotFound, 404, "invalid_request_error"),
            (ProxyError::MethodNotAllowed, 405, "invalid_request_error"),
            (ProxyError::PayloadTooLarge { limit: 10 }, 413, "invalid_request_error"),
            (
                ProxyError::UpstreamRateLimited { retry_after: Some(3) },
                429,
                "rate_limit_error",
            ),
            (ProxyError::UpstreamAuthFailed { status: 401 }, 502, "server_error"),
            (ProxyError::UpstreamTimeout, 504, "server_error"),
            (ProxyError::Unavailable { detail: "x".into() }, 503, "server_error"),
            (ProxyError::misconfigured("x"), 500, "server_error"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.error_type(), kind, "{error:?}");
        }
    }

    #[test]
    fn internal_detail_stays_out_of_the_client_body() {
        let secret_detail = "secret OPENAI_API_KEY sk-live-abc is missing";
        for error in [
            ProxyError::misconfigured(secret_detail),
            ProxyError::UpstreamFailed {
                detail: secret_detail.into(),
            },
            ProxyError::Internal {
                detail: secret_detail.into(),
            },
        ] {
            assert!(!error.to_json().contains("sk-live-abc"));
            assert!(!error.to_json().contains("OPENAI_API_KEY"));
            assert_eq!(error.log_detail().as_deref(), Some(secret_detail));
        }
    }

    #[test]
    fn quota_refusals_are_429_with_retry_after() {
        let rate = ProxyError::Quota {
            refusal: Refusal::RateLimited {
                retry_after_seconds: 42,
            },
            global: false,
        };
        assert_eq!(
            (rate.status(), rate.code(), rate.retry_after()),
            (429, "rate_limit_exceeded", Some(42))
        );
        assert_eq!(rate.error_type(), "rate_limit_error");
        let budget = ProxyError::Quota {
            refusal: Refusal::BudgetExhausted { retry_after_seconds: 7 },
            global: true,
        };
        assert_eq!(
            (budget.code(), budget.error_type()),
            ("insufficient_quota", "insufficient_quota")
        );
        assert!(budget.client_message().contains("service's"));
    }

    #[test]
    fn an_unknown_previous_response_is_a_404_naming_only_the_client_s_own_id() {
        let body = parsed(&ProxyError::UnknownResponse { id: "resp_x".into() });
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "previous_response_id");
        assert_eq!(
            body["error"]["message"],
            "Previous response with id 'resp_x' not found."
        );
        assert_eq!(ProxyError::UnknownResponse { id: "resp_x".into() }.status(), 404);
    }

    #[test]
    fn upstream_auth_failure_is_a_proxy_fault() {
        let error = ProxyError::UpstreamAuthFailed { status: 401 };
        assert_eq!(error.status(), 502);
        assert_eq!(parsed(&error)["error"]["code"], "upstream_auth_failed");
    }

    #[test]
    fn only_auth_errors_carry_a_challenge() {
        assert!(ProxyError::MissingToken
            .www_authenticate()
            .unwrap()
            .contains("invalid_request"));
        let expired = ProxyError::InvalidToken(TokenProblem::Expired);
        assert!(expired.www_authenticate().unwrap().contains("invalid_token"));
        assert_eq!(parsed(&expired)["error"]["message"], "The access token expired.");
        assert!(ProxyError::NotFound.www_authenticate().is_none());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 10), "hi");
    }
}
