//! What crosses the proxy: fixed upstream URLs and allow-listed headers in both directions.

use crate::config::Secret;

/// Upstream endpoints the proxy calls. Paths are fixed here, so no client input reaches the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEndpoint {
    ChatCompletions,
}

impl UpstreamEndpoint {
    fn path(self) -> &'static str {
        match self {
            UpstreamEndpoint::ChatCompletions => "chat/completions",
        }
    }

    pub fn url(self, base_url: &str) -> String {
        format!("{base_url}/{}", self.path())
    }
}

/// Client request headers that may go upstream. Everything else (the client's
/// `Authorization`, cookies, `OpenAI-Organization`/`-Project`, ...) stays at the edge.
const FORWARDED_REQUEST_HEADERS: [&str; 1] = ["accept"];

/// Upstream response headers the client may see. Not `openai-organization`, `set-cookie`,
/// `x-ratelimit-*` (they describe the operator's account), nor `content-encoding`/`-length`
/// (the runtime has already decoded the body).
const FORWARDED_RESPONSE_HEADERS: [&str; 2] = ["content-type", "openai-processing-ms"];

/// Headers of the upstream request: the allow-listed client headers, our JSON content type
/// (the proxy always sends the JSON it validated) and the operator's key.
pub fn upstream_request_headers<'a>(
    client_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    api_key: &Secret,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = client_headers
        .into_iter()
        .filter(|(name, _)| is_listed(&FORWARDED_REQUEST_HEADERS, name))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("authorization".into(), format!("Bearer {}", api_key.expose())));
    headers
}

/// The upstream response headers that may reach the client.
pub fn client_response_headers<'a>(
    upstream_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String)> {
    upstream_headers
        .into_iter()
        .filter(|(name, _)| is_listed(&FORWARDED_RESPONSE_HEADERS, name))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect()
}

fn is_listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|listed| listed.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_fixed_paths_under_the_base() {
        assert_eq!(
            UpstreamEndpoint::ChatCompletions.url("https://api.openai.com/v1"),
            "https://api.openai.com/v1/chat/completions"
        );
    }

    #[test]
    fn client_credentials_never_go_upstream() {
        let client = [
            ("Authorization", "Bearer user-jwt"),
            ("Cookie", "session=1"),
            ("OpenAI-Organization", "org-attacker"),
            ("OpenAI-Project", "proj-attacker"),
            ("Content-Type", "text/plain"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("Accept", "text/event-stream"),
        ];
        let headers = upstream_request_headers(client, &Secret::new("sk-operator"));
        assert_eq!(
            headers,
            [
                ("accept".to_string(), "text/event-stream".to_string()),
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), "Bearer sk-operator".into()),
            ]
        );
    }

    #[test]
    fn account_headers_never_reach_the_client() {
        let upstream = [
            ("content-type", "text/event-stream"),
            ("openai-organization", "org-operator"),
            ("set-cookie", "__cf_bm=1"),
            ("x-ratelimit-remaining-tokens", "99"),
            ("content-encoding", "br"),
            ("openai-processing-ms", "12"),
        ];
        assert_eq!(
            client_response_headers(upstream),
            [
                ("content-type".to_string(), "text/event-stream".to_string()),
                ("openai-processing-ms".into(), "12".into()),
            ]
        );
    }
}
