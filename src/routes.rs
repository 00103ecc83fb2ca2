//! Which endpoint a request is for. Anything not listed is a 404: there is no open passthrough.

use crate::error::ProxyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Models,
    ChatCompletions,
    GenerateText,
}

impl Route {
    /// Whether the route needs a user token (everything but the health check).
    pub fn needs_user_token(self) -> bool {
        self != Route::Health
    }

    /// A short name for log lines.
    pub fn name(self) -> &'static str {
        match self {
            Route::Health => "healthz",
            Route::Models => "models",
            Route::ChatCompletions => "chat.completions",
            Route::GenerateText => "generate-text",
        }
    }
}

/// Resolves a method and path; `OPTIONS` is handled by CORS before routing.
pub fn route(method: &str, path: &str) -> Result<Route, ProxyError> {
    let (route, allowed_method) = match path.trim_end_matches('/') {
        "/healthz" => (Route::Health, "GET"),
        "/v1/models" => (Route::Models, "GET"),
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        "/api/generate-text" => (Route::GenerateText, "POST"),
        _ => return Err(ProxyError::NotFound),
    };
    let method_ok = method == allowed_method || (allowed_method == "GET" && method == "HEAD");
    if method_ok { Ok(route) } else { Err(ProxyError::MethodNotAllowed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route() {
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(route("GET", "/v1/models"), Ok(Route::Models));
        assert_eq!(route("POST", "/v1/chat/completions"), Ok(Route::ChatCompletions));
        assert_eq!(route("POST", "/v1/chat/completions/"), Ok(Route::ChatCompletions));
        assert_eq!(route("POST", "/api/generate-text"), Ok(Route::GenerateText));
    }

    #[test]
    fn wrong_method_is_405_and_unknown_path_is_404() {
        assert_eq!(route("GET", "/v1/chat/completions"), Err(ProxyError::MethodNotAllowed));
        assert_eq!(route("DELETE", "/v1/models"), Err(ProxyError::MethodNotAllowed));
        for path in ["/", "/v1/files", "/v1/chat/completions/../../admin", "/V1/models", "/v1//models"] {
            assert_eq!(route("GET", path), Err(ProxyError::NotFound), "{path}");
        }
    }

    #[test]
    fn only_health_is_open() {
        assert!(!Route::Health.needs_user_token());
        assert!(Route::Models.needs_user_token());
        assert!(Route::GenerateText.needs_user_token());
    }
}
