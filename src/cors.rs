//! CORS decisions (Fetch standard): exact origins, never `*`.

/// Browsers cap the preflight cache (Chromium at 7200 s), so more would be ignored.
pub const PREFLIGHT_MAX_AGE_SECONDS: u32 = 7200;
pub const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
/// `*` would not cover `Authorization`, so the headers are listed.
const ALWAYS_ALLOWED_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// Readable by the page: retry timing and rate-limit state, and the id to quote in bug reports.
/// `location` names a voice call (the Realtime SDK reads the call id from it).
pub const EXPOSED_HEADERS: &str =
    "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-request-id, location";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header: not a browser cross-origin request (curl, a backend).
    NoOrigin,
    Allowed(String),
    /// An origin that is not on the list, including `null`.
    Denied,
}

/// Compares the `Origin` header byte for byte with the configured list.
pub fn check_origin(origin: Option<&str>, allowed_origins: &[String]) -> OriginCheck {
    match origin {
        None => OriginCheck::NoOrigin,
        Some(origin) if allowed_origins.iter().any(|allowed| allowed == origin) => {
            OriginCheck::Allowed(origin.to_owned())
        }
        Some(_) => OriginCheck::Denied,
    }
}

/// Headers for every actual response to an allowed origin, errors included.
pub fn response_headers(origin: &str) -> [(&'static str, String); 2] {
    [
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-expose-headers", EXPOSED_HEADERS.to_owned()),
    ]
}

/// Headers answering a preflight from an allowed origin.
///
/// Besides `authorization` and `content-type`, the request headers the `openai` SDK adds in a
/// browser (`accept`, `x-stainless-*`), and `x-openai-agents-sdk` of `@openai/agents-realtime`, are allowed so that it works there; the proxy never
/// forwards any of them upstream.
pub fn preflight_headers(origin: &str, requested_headers: Option<&str>) -> Vec<(&'static str, String)> {
    let mut allowed: Vec<String> = ALWAYS_ALLOWED_HEADERS.iter().map(|h| h.to_string()).collect();
    let requested = requested_headers.unwrap_or_default().split(',');
    for header in requested.map(|h| h.trim().to_ascii_lowercase()) {
        let sdk_header = header == "accept" || header.starts_with("x-stainless-") || header == "x-openai-agents-sdk";
        if sdk_header && !allowed.contains(&header) {
            allowed.push(header);
        }
    }
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-methods", ALLOWED_METHODS.to_owned()),
        ("access-control-allow-headers", allowed.join(", ")),
        ("access-control-max-age", PREFLIGHT_MAX_AGE_SECONDS.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["https://app.example.com".into(), "http://localhost:5173".into()]
    }

    #[test]
    fn exact_origins_are_allowed() {
        assert_eq!(
            check_origin(Some("https://app.example.com"), &allowed()),
            OriginCheck::Allowed("https://app.example.com".into())
        );
        assert_eq!(check_origin(None, &allowed()), OriginCheck::NoOrigin);
    }

    #[test]
    fn lookalike_origins_are_denied() {
        for origin in [
            "https://app.example.com.evil.tld",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil-app.example.com",
            "http://localhost:5174",
            "null",
            "",
            "*",
        ] {
            assert_eq!(check_origin(Some(origin), &allowed()), OriginCheck::Denied, "{origin}");
        }
    }

    #[test]
    fn no_configured_origins_denies_every_browser_origin() {
        assert_eq!(check_origin(Some("https://app.example.com"), &[]), OriginCheck::Denied);
    }

    #[test]
    fn preflight_lists_authorization_and_sdk_headers_but_nothing_else() {
        let headers = preflight_headers(
            "https://app.example.com",
            Some("Authorization, Content-Type, X-Stainless-OS, cookie, openai-organization"),
        );
        let value = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(value("access-control-allow-origin"), "https://app.example.com");
        assert_eq!(
            value("access-control-allow-headers"),
            "authorization, content-type, x-stainless-os"
        );
        assert_eq!(value("access-control-max-age"), "7200");
        assert!(!headers.iter().any(|(_, v)| v == "*"));
    }

    #[test]
    fn actual_responses_expose_rate_limit_headers() {
        let headers = response_headers("https://app.example.com");
        assert_eq!(
            headers[0],
            ("access-control-allow-origin", "https://app.example.com".into())
        );
        assert!(headers[1].1.contains("retry-after"));
        assert!(headers[1].1.contains("ratelimit-remaining"));
    }
}
