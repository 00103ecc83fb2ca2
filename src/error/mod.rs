//! The one error type of the proxy and its OpenAI-shaped JSON.
//!
//! Every failure the client can see is a `ProxyError`. The client gets a generic, useful
//! message; anything internal (upstream text, which variable is wrong) is only in `log_detail`.

mod render;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why the user's object refused an admission: a limit of its quota, with when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// `previous_response_id` (or, with `item`, an input item's `id`) names no response (no
    /// item) this user created: whether another user created it is not said, so the answer
    /// is the same as for an id that never existed.
    UnknownResponse {
        id: String,
        item: bool,
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
    /// This isolate holds as many whole answers as its memory allows: retry in a moment.
    Busy {
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
            (ProxyError::Busy { detail: "x".into() }, 503, "server_error"),
            (ProxyError::misconfigured("x"), 500, "server_error"),
        ];
        for (error, status, kind) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.error_type(), kind, "{error:?}");
        }
    }

    #[test]
    fn a_busy_isolate_asks_for_a_retry_in_a_second() {
        let busy = ProxyError::Busy {
            detail: "memory".into(),
        };
        assert_eq!(
            (busy.status(), busy.code(), busy.retry_after()),
            (503, "temporarily_unavailable", Some(1))
        );
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
        let body = parsed(&ProxyError::UnknownResponse {
            id: "resp_x".into(),
            item: false,
        });
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "previous_response_id");
        assert_eq!(
            body["error"]["message"],
            "Previous response with id 'resp_x' not found."
        );
        let item = ProxyError::UnknownResponse {
            id: "msg_x".into(),
            item: true,
        };
        assert_eq!(item.status(), 404);
        let body = parsed(&item);
        assert_eq!(body["error"]["param"], "input");
        assert_eq!(body["error"]["message"], "Item with id 'msg_x' not found.");
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
