//! Which endpoint a request is for. Anything not listed is a 404: there is no open passthrough.

use percent_encoding::percent_decode_str;

use crate::auth::MAX_SUB_BYTES;
use crate::error::ProxyError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: no token, no configuration.
    Health,
    /// Takes the `ADMIN_TOKEN`.
    Admin(AdminRoute),
    /// Takes a user token.
    User(UserRoute),
    /// `POST /v1/guest`: takes a Turnstile token, gives a guest token; a 404 unless guest
    /// access is on.
    Guest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRoute {
    Models,
    /// `GET /v1/usage`: the caller's own counters.
    Usage,
    /// A call that goes upstream and is metered.
    Api(ApiRoute),
    /// `POST /v1/realtime/calls`: a voice call (an SDP offer in, the answer out).
    RealtimeCall,
    /// `POST /v1/live/sessions`: a GPT-Live session (an SDP offer in, the answer out).
    LiveSession,
    /// `GET /v1/realtime?model=…` upgraded to a WebSocket: the relay.
    RealtimeRelay,
}

/// The endpoints whose body the policy checks and whose answer costs tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRoute {
    ChatCompletions,
    Responses,
    Embeddings,
    /// `POST /api/generate-text`: a prompt in, the answer's text out.
    GenerateText,
    /// `POST /v1/images/generations`: a prompt in, images out.
    ImageGenerations,
    /// `POST /v1/audio/transcriptions`: a multipart form with the audio file.
    Transcriptions,
    /// `POST /v1/audio/speech`: text in, audio out.
    Speech,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    /// `POST` (revoke) or `DELETE` (lift) `/admin/users/{sub}/revoke`
    Revocation { sub: String, revoke: bool },
    /// `POST` (block) or `DELETE` (lift) `/admin/users/{sub}/block`: every token of the user,
    /// whatever its `iat`.
    Block { sub: String, block: bool },
    /// `GET /admin/users/{sub}/usage`, or `GET /admin/users/{sub}`
    Usage { sub: String },
    /// `PUT` (set, the body names the plan) or `DELETE` (lift) `/admin/users/{sub}/plan`
    Plan { sub: String, set: bool },
    /// `GET /admin/usage?day=YYYY-MM-DD` (every user's tokens of a day) or
    /// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (each day of a range).
    DayUsage,
    /// `GET /admin/budget`: today's spending of all users against the global budget.
    Budget,
    /// `DELETE /admin/calls/{id}`: ends a voice call.
    EndCall { call: String },
    /// The operator console's files (`GET /admin`, `/admin/console.js`, `/admin/console.css`):
    /// no token to load, the page asks for it; still a 404 without `ADMIN_TOKEN`.
    Console(ConsoleFile),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFile {
    Page,
    Script,
    Style,
}

impl Route {
    /// A short name for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "healthz",
            Route::Guest => "guest.mint",
            Route::User(UserRoute::Models) => "models",
            Route::User(UserRoute::Usage) => "usage",
            Route::User(UserRoute::RealtimeCall) => "realtime.calls",
            Route::User(UserRoute::LiveSession) => "live.sessions",
            Route::User(UserRoute::RealtimeRelay) => "realtime.relay",
            Route::Admin(AdminRoute::EndCall { .. }) => "admin.end_call",
            Route::Admin(AdminRoute::Usage { .. }) => "admin.usage",
            Route::Admin(AdminRoute::DayUsage) => "admin.day_usage",
            Route::Admin(AdminRoute::Budget) => "admin.budget",
            Route::Admin(AdminRoute::Console(_)) => "admin.console",
            Route::User(UserRoute::Api(ApiRoute::ChatCompletions)) => "chat.completions",
            Route::User(UserRoute::Api(ApiRoute::Responses)) => "responses",
            Route::User(UserRoute::Api(ApiRoute::Embeddings)) => "embeddings",
            Route::User(UserRoute::Api(ApiRoute::GenerateText)) => "generate-text",
            Route::User(UserRoute::Api(ApiRoute::ImageGenerations)) => "images.generations",
            Route::User(UserRoute::Api(ApiRoute::Transcriptions)) => "audio.transcriptions",
            Route::User(UserRoute::Api(ApiRoute::Speech)) => "audio.speech",
            Route::Admin(AdminRoute::Revocation { revoke: true, .. }) => "admin.revoke",
            Route::Admin(AdminRoute::Revocation { revoke: false, .. }) => "admin.unrevoke",
            Route::Admin(AdminRoute::Plan { set: true, .. }) => "admin.set_plan",
            Route::Admin(AdminRoute::Plan { set: false, .. }) => "admin.lift_plan",
            Route::Admin(AdminRoute::Block { block: true, .. }) => "admin.block",
            Route::Admin(AdminRoute::Block { block: false, .. }) => "admin.unblock",
        }
    }
}

pub const GUEST_PATH: &str = "/v1/guest";

/// Resolves a method and path; `OPTIONS` is handled by CORS before routing.
pub fn route(method: &str, path: &str) -> Result<Route, ProxyError> {
    if let Some(rest) = path.strip_prefix("/admin/users/") {
        // `/admin/users/{sub}` is the user's standing, as `/admin/users/{sub}/usage`.
        let (segment, action) = rest.rsplit_once('/').unwrap_or((rest, "usage"));
        let sub = decode_sub(segment).ok_or(ProxyError::NotFound)?;
        return match (action, method) {
            ("revoke", "POST") => Ok(Route::Admin(AdminRoute::Revocation { sub, revoke: true })),
            ("revoke", "DELETE") => Ok(Route::Admin(AdminRoute::Revocation { sub, revoke: false })),
            ("usage", "GET") => Ok(Route::Admin(AdminRoute::Usage { sub })),
            ("block", "POST") => Ok(Route::Admin(AdminRoute::Block { sub, block: true })),
            ("block", "DELETE") => Ok(Route::Admin(AdminRoute::Block { sub, block: false })),
            ("plan", "PUT") => Ok(Route::Admin(AdminRoute::Plan { sub, set: true })),
            ("plan", "DELETE") => Ok(Route::Admin(AdminRoute::Plan { sub, set: false })),
            ("revoke" | "usage" | "plan" | "block", _) => Err(ProxyError::MethodNotAllowed),
            _ => Err(ProxyError::NotFound),
        };
    }
    if let Some(call) = path.strip_prefix("/admin/calls/") {
        let call = call.to_owned();
        return match method {
            "DELETE" if !call.is_empty() && !call.contains('/') => Ok(Route::Admin(AdminRoute::EndCall { call })),
            "DELETE" => Err(ProxyError::NotFound),
            _ => Err(ProxyError::MethodNotAllowed),
        };
    }
    let (route, allowed_method) = match path.trim_end_matches('/') {
        "/healthz" => (Route::Health, "GET"),
        "/admin/usage" => (Route::Admin(AdminRoute::DayUsage), "GET"),
        "/admin/budget" => (Route::Admin(AdminRoute::Budget), "GET"),
        "/admin" => (Route::Admin(AdminRoute::Console(ConsoleFile::Page)), "GET"),
        "/admin/console.js" => (Route::Admin(AdminRoute::Console(ConsoleFile::Script)), "GET"),
        "/admin/console.css" => (Route::Admin(AdminRoute::Console(ConsoleFile::Style)), "GET"),
        "/v1/models" => (Route::User(UserRoute::Models), "GET"),
        "/v1/usage" => (Route::User(UserRoute::Usage), "GET"),
        GUEST_PATH => (Route::Guest, "POST"),
        "/v1/chat/completions" => (Route::User(UserRoute::Api(ApiRoute::ChatCompletions)), "POST"),
        "/v1/responses" => (Route::User(UserRoute::Api(ApiRoute::Responses)), "POST"),
        "/v1/embeddings" => (Route::User(UserRoute::Api(ApiRoute::Embeddings)), "POST"),
        "/v1/realtime/calls" => (Route::User(UserRoute::RealtimeCall), "POST"),
        "/v1/live/sessions" => (Route::User(UserRoute::LiveSession), "POST"),
        "/v1/realtime" => (Route::User(UserRoute::RealtimeRelay), "GET"),
        "/api/generate-text" => (Route::User(UserRoute::Api(ApiRoute::GenerateText)), "POST"),
        "/v1/images/generations" => (Route::User(UserRoute::Api(ApiRoute::ImageGenerations)), "POST"),
        "/v1/audio/transcriptions" => (Route::User(UserRoute::Api(ApiRoute::Transcriptions)), "POST"),
        "/v1/audio/speech" => (Route::User(UserRoute::Api(ApiRoute::Speech)), "POST"),
        _ => return Err(ProxyError::NotFound),
    };
    let method_ok = method == allowed_method || (allowed_method == "GET" && method == "HEAD");
    if method_ok {
        Ok(route)
    } else {
        Err(ProxyError::MethodNotAllowed)
    }
}

/// One percent-encoded path segment as a `sub` (subjects like `auth0|123` arrive encoded).
fn decode_sub(segment: &str) -> Option<String> {
    if segment.is_empty() || segment.contains('/') {
        return None;
    }
    let sub = percent_decode_str(segment).decode_utf8().ok()?;
    (sub.len() <= MAX_SUB_BYTES).then(|| sub.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route() {
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(route("HEAD", "/healthz"), Ok(Route::Health));
        assert_eq!(route("GET", "/v1/models"), Ok(Route::User(UserRoute::Models)));
        assert_eq!(
            route("POST", "/v1/chat/completions"),
            Ok(Route::User(UserRoute::Api(ApiRoute::ChatCompletions)))
        );
        assert_eq!(
            route("POST", "/v1/chat/completions/"),
            Ok(Route::User(UserRoute::Api(ApiRoute::ChatCompletions)))
        );
        assert_eq!(
            route("POST", "/api/generate-text"),
            Ok(Route::User(UserRoute::Api(ApiRoute::GenerateText)))
        );
        assert_eq!(
            route("POST", "/v1/responses"),
            Ok(Route::User(UserRoute::Api(ApiRoute::Responses)))
        );
        assert_eq!(
            route("POST", "/v1/embeddings"),
            Ok(Route::User(UserRoute::Api(ApiRoute::Embeddings)))
        );
        assert_eq!(
            route("POST", "/v1/audio/transcriptions"),
            Ok(Route::User(UserRoute::Api(ApiRoute::Transcriptions)))
        );
        assert_eq!(
            route("POST", "/v1/audio/speech"),
            Ok(Route::User(UserRoute::Api(ApiRoute::Speech)))
        );
        assert_eq!(
            route("POST", "/v1/images/generations"),
            Ok(Route::User(UserRoute::Api(ApiRoute::ImageGenerations)))
        );
        assert_eq!(
            route("POST", "/v1/images/edits"),
            Err(ProxyError::NotFound),
            "edits are not bounded yet"
        );
        assert_eq!(route("GET", "/v1/realtime"), Ok(Route::User(UserRoute::RealtimeRelay)));
        assert_eq!(route("POST", "/v1/realtime"), Err(ProxyError::MethodNotAllowed));
    }

    #[test]
    fn wrong_method_is_405_and_unknown_path_is_404() {
        assert_eq!(route("GET", "/v1/chat/completions"), Err(ProxyError::MethodNotAllowed));
        assert_eq!(route("DELETE", "/v1/models"), Err(ProxyError::MethodNotAllowed));
        for path in [
            "/",
            "/v1/files",
            "/v1/chat/completions/../../admin",
            "/V1/models",
            "/v1//models",
        ] {
            assert_eq!(route("GET", path), Err(ProxyError::NotFound), "{path}");
        }
    }

    #[test]
    fn admin_paths_carry_the_decoded_subject() {
        assert_eq!(
            route("POST", "/admin/users/auth0%7C123/revoke"),
            Ok(Route::Admin(AdminRoute::Revocation {
                sub: "auth0|123".into(),
                revoke: true
            }))
        );
        assert_eq!(
            route("DELETE", "/admin/users/alice/revoke"),
            Ok(Route::Admin(AdminRoute::Revocation {
                sub: "alice".into(),
                revoke: false
            }))
        );
        assert_eq!(
            route("GET", "/admin/users/alice/revoke"),
            Err(ProxyError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", "/admin/users/bob/usage"),
            Ok(Route::Admin(AdminRoute::Usage { sub: "bob".into() }))
        );
        assert_eq!(route("GET", "/v1/usage"), Ok(Route::User(UserRoute::Usage)));
        assert_eq!(route("POST", "/v1/guest"), Ok(Route::Guest));
        assert_eq!(
            route("PUT", "/admin/users/auth0%7C123/plan"),
            Ok(Route::Admin(AdminRoute::Plan {
                sub: "auth0|123".into(),
                set: true
            }))
        );
        assert_eq!(
            route("DELETE", "/admin/users/bob/plan"),
            Ok(Route::Admin(AdminRoute::Plan {
                sub: "bob".into(),
                set: false
            }))
        );
        assert_eq!(route("GET", "/admin/users/bob/plan"), Err(ProxyError::MethodNotAllowed));
        assert_eq!(
            route("POST", "/admin/users/auth0%7C123/block"),
            Ok(Route::Admin(AdminRoute::Block {
                sub: "auth0|123".into(),
                block: true
            }))
        );
        assert_eq!(
            route("DELETE", "/admin/users/bob/block"),
            Ok(Route::Admin(AdminRoute::Block {
                sub: "bob".into(),
                block: false
            }))
        );
        assert_eq!(
            route("GET", "/admin/users/bob/block"),
            Err(ProxyError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", "/admin/users/auth0%7C123"),
            Ok(Route::Admin(AdminRoute::Usage {
                sub: "auth0|123".into()
            }))
        );
        assert_eq!(route("POST", "/admin/users/alice"), Err(ProxyError::MethodNotAllowed));
        let too_long = format!("/admin/users/{}/revoke", "x".repeat(MAX_SUB_BYTES + 1));
        for path in [
            "/admin/users//revoke",
            "/admin/users/a/b/revoke",
            "/admin/users/alice/",
            "/admin/users/%FF/revoke",
            too_long.as_str(),
        ] {
            assert_eq!(route("POST", path), Err(ProxyError::NotFound), "{path}");
        }
    }

    #[test]
    fn the_console_and_its_files_are_admin_routes() {
        let console = |file| Ok(Route::Admin(AdminRoute::Console(file)));
        assert_eq!(route("GET", "/admin"), console(ConsoleFile::Page));
        assert_eq!(route("GET", "/admin/"), console(ConsoleFile::Page));
        assert_eq!(route("GET", "/admin/console.js"), console(ConsoleFile::Script));
        assert_eq!(route("GET", "/admin/console.css"), console(ConsoleFile::Style));
        assert_eq!(route("GET", "/admin/budget"), Ok(Route::Admin(AdminRoute::Budget)));
        assert_eq!(route("POST", "/admin"), Err(ProxyError::MethodNotAllowed));
        assert_eq!(route("GET", "/admin/console.html"), Err(ProxyError::NotFound));
    }
}
