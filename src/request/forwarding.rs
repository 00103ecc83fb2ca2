//! What crosses the proxy: fixed upstream URLs and allow-listed headers in both directions.

use std::time::Duration;

use serde_json::Value;

use crate::error::UpstreamErrorDetail;
use crate::secret::Secret;

/// Upstream endpoints the proxy calls. Paths are fixed here, so no client input reaches the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEndpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    ImageGenerations,
    AudioTranscriptions,
    AudioSpeech,
}

impl UpstreamEndpoint {
    fn path(self) -> &'static str {
        match self {
            UpstreamEndpoint::ChatCompletions => "chat/completions",
            UpstreamEndpoint::Responses => "responses",
            UpstreamEndpoint::Embeddings => "embeddings",
            UpstreamEndpoint::ImageGenerations => "images/generations",
            UpstreamEndpoint::AudioTranscriptions => "audio/transcriptions",
            UpstreamEndpoint::AudioSpeech => "audio/speech",
        }
    }

    pub fn url(self, base_url: &str) -> String {
        format!("{base_url}/{}", self.path())
    }

    /// How long to wait for upstream's headers, or between a stream's events: `configured`, but at
    /// least 180 s for an image, which takes a minute or more to make; until then an image
    /// answer has no headers and an image stream may send nothing. Giving up earlier would
    /// charge the whole reservation for an image OpenAI still makes and bills. Out of line:
    /// inlined into the upstream call's future it cost a kilobyte of wasm.
    #[inline(never)]
    pub fn patience(self, configured: Duration) -> Duration {
        let least = match self {
            UpstreamEndpoint::ImageGenerations => Duration::from_secs(180),
            UpstreamEndpoint::ChatCompletions
            | UpstreamEndpoint::Responses
            | UpstreamEndpoint::Embeddings
            | UpstreamEndpoint::AudioTranscriptions
            | UpstreamEndpoint::AudioSpeech => Duration::ZERO,
        };
        configured.max(least)
    }
}

/// Client request headers that may go upstream. Everything else (the client's
/// `Authorization`, cookies, `OpenAI-Organization`/`-Project`, ...) stays at the edge.
const FORWARDED_REQUEST_HEADERS: [&str; 1] = ["accept"];

/// Upstream response headers the client may see. Not `openai-organization`, `set-cookie`,
/// `x-ratelimit-*` (they describe the operator's account), nor `content-encoding`/`-length`
/// (the runtime has already decoded the body).
const FORWARDED_RESPONSE_HEADERS: [&str; 2] = ["content-type", "openai-processing-ms"];

/// Headers of the upstream request: the allow-listed client headers, the content type of the
/// body the proxy built (the JSON it validated, or its rebuilt form) and the operator's key.
pub fn upstream_request_headers<'a>(
    client_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    content_type: String,
    api_key: &Secret,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = client_headers
        .into_iter()
        .filter(|(name, _)| is_listed(&FORWARDED_REQUEST_HEADERS, name))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    headers.push(("content-type".into(), content_type));
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

/// OpenAI's error from an upstream 4xx body (`{"error":{...}}`), scrubbed; `None` when the body
/// is not one.
pub fn upstream_error_detail(body: &[u8], secrets: &[&str]) -> Option<UpstreamErrorDetail> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let error = body.get("error")?;
    let field = |name: &str| error.get(name).and_then(Value::as_str).map(|text| scrub(text, secrets));
    Some(UpstreamErrorDetail {
        message: field("message")?,
        error_type: field("type"),
        param: field("param"),
        code: field("code"),
    })
}

/// Text from upstream with every secret of ours, and anything shaped like an OpenAI key
/// (`sk-` and 8 or more key characters), replaced. Hand-written: a regex crate would double
/// the Worker's size for one pattern.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 8) {
        text = text.replace(secret, "[redacted]");
    }
    let key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("sk-") {
        let after = &rest[start + 3..];
        let key_len = after.find(|c: char| !key_char(c)).unwrap_or(after.len());
        out.push_str(&rest[..start]);
        if key_len >= 8 {
            out.push_str("[redacted]");
        } else {
            out.push_str(&rest[start..start + 3 + key_len]);
        }
        rest = &after[key_len..];
    }
    out.push_str(rest);
    out
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
        assert_eq!(
            UpstreamEndpoint::Responses.url("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1/responses"
        );
    }

    #[test]
    fn images_are_waited_for_longer_than_text() {
        let configured = Duration::from_secs(30);
        assert_eq!(
            UpstreamEndpoint::ImageGenerations.patience(configured),
            Duration::from_secs(180)
        );
        assert_eq!(UpstreamEndpoint::ChatCompletions.patience(configured), configured);
        let long = Duration::from_secs(600);
        assert_eq!(UpstreamEndpoint::ImageGenerations.patience(long), long);
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
        let headers = upstream_request_headers(client, "application/json".into(), &Secret::new("sk-operator"));
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
    fn key_shaped_text_and_our_secrets_are_scrubbed() {
        let secrets = ["proxy-admin-token-value", "short"];
        assert_eq!(
            scrub(
                "Bad key sk-proj-AbC123_xyz-987 and proxy-admin-token-value; sk-no and sk-",
                &secrets
            ),
            "Bad key [redacted] and [redacted]; sk-no and sk-"
        );
        assert_eq!(scrub("nothing here", &secrets), "nothing here");
        assert_eq!(scrub("ends with sk-abcdefgh", &[]), "ends with [redacted]");
    }

    #[test]
    fn openai_errors_keep_their_fields_scrubbed() {
        let body = br#"{"error":{"message":"This model's maximum context length is 128000 tokens (key sk-live-1234567890abc)","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let detail = upstream_error_detail(body, &[]).unwrap();
        assert_eq!(
            detail.message,
            "This model's maximum context length is 128000 tokens (key [redacted])"
        );
        assert_eq!(detail.param.as_deref(), Some("messages"));
        assert_eq!(detail.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(upstream_error_detail(b"<html>oops</html>", &[]), None);
        assert_eq!(upstream_error_detail(br#"{"error":{"code":"x"}}"#, &[]), None);
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
