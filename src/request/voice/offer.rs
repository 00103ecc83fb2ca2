//! The page's SDP offer, as `POST /v1/realtime/calls` takes it: raw `application/sdp` (what
//! `@openai/agents-realtime`'s WebRTC transport sends), or OpenAI's own `multipart/form-data`
//! with an `sdp` part and an optional `session` part. Of the page's session only `model` and
//! the output voice are read, as a choice among the operator's: the operator fixes the rest.

use serde_json::Value;

use crate::error::ProxyError;
use crate::request::audio::multipart;

/// What the page offers: its SDP, and the model and voice its session asks for, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Offer {
    pub sdp: String,
    pub model: Option<String>,
    pub voice: Option<String>,
}

/// Reads the offer from a body of `content_type`.
pub fn read(content_type: &str, body: &[u8]) -> Result<Offer, ProxyError> {
    let media_type = content_type.to_ascii_lowercase();
    if media_type.starts_with("application/sdp") {
        return Ok(Offer {
            sdp: sdp(body)?,
            model: None,
            voice: None,
        });
    }
    if !media_type.starts_with("multipart/form-data") {
        return Err(ProxyError::invalid_request(
            "Send the SDP offer as Content-Type: application/sdp, or as multipart/form-data with an sdp part.",
            None,
        ));
    }
    let form = multipart::parse(body)?;
    let mut offer = None;
    let mut session = Value::Null;
    for field in &form.fields {
        let value = &body[field.value.clone()];
        match field.name {
            "sdp" if offer.is_none() => offer = Some(sdp(value)?),
            "session" if session.is_null() => {
                session = serde_json::from_slice(value)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        ProxyError::invalid_request("The session part is not a JSON object.", Some("session"))
                    })?;
            }
            name => {
                return Err(ProxyError::invalid_request(
                    format!("The form may have one sdp and one session part, not {name:?}."),
                    None,
                ))
            }
        }
    }
    let text = |pointer: &str| session.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    Ok(Offer {
        sdp: offer.ok_or_else(|| ProxyError::invalid_request("The form has no sdp part.", Some("sdp")))?,
        model: text("/model"),
        voice: text("/audio/output/voice"),
    })
}

/// An SDP: text lines from `v=0`, printable ASCII, so that it cannot carry a part of the
/// multipart form the proxy builds around it.
pub(super) fn sdp(body: &[u8]) -> Result<String, ProxyError> {
    let is_sdp = body.starts_with(b"v=0")
        && body
            .iter()
            .all(|&b| b == b'\r' || b == b'\n' || (b' '..=b'~').contains(&b));
    match std::str::from_utf8(body) {
        Ok(text) if is_sdp => Ok(text.to_owned()),
        _ => Err(ProxyError::invalid_request(
            "The body is not an SDP offer.",
            Some("sdp"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n";

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = String::new();
        for (name, value) in parts {
            body += &format!("--b0\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
        }
        (body + "--b0--\r\n").into_bytes()
    }

    #[test]
    fn a_raw_offer_and_openai_s_form_give_the_same_sdp_and_the_form_s_choices() {
        let raw = read("application/sdp", OFFER.as_bytes()).unwrap();
        assert_eq!((raw.sdp.as_str(), raw.model, raw.voice), (OFFER, None, None));
        let session = r#"{"type":"realtime","model":"gpt-realtime-2.1-mini","instructions":"ignored","audio":{"output":{"voice":"cedar"}}}"#;
        let body = form(&[("sdp", OFFER), ("session", session)]);
        let offer = read("multipart/form-data; boundary=b0", &body).unwrap();
        assert_eq!(offer.sdp, OFFER);
        assert_eq!(offer.model.as_deref(), Some("gpt-realtime-2.1-mini"));
        assert_eq!(offer.voice.as_deref(), Some("cedar"));
        let bare = read("multipart/form-data; boundary=b0", &form(&[("sdp", OFFER)])).unwrap();
        assert_eq!((bare.model, bare.voice), (None, None));
    }

    #[test]
    fn anything_else_is_refused() {
        let multipart = "multipart/form-data; boundary=b0";
        for (content_type, body) in [
            ("text/plain", OFFER.as_bytes().to_vec()),
            ("application/sdp", b"not an sdp".to_vec()),
            ("application/sdp", "v=0\r\n\u{e9}\r\n".as_bytes().to_vec()),
            (multipart, form(&[("session", "{}")])),
            (multipart, form(&[("sdp", OFFER), ("session", "[1]")])),
            (multipart, form(&[("sdp", OFFER), ("sdp", OFFER)])),
            (multipart, form(&[("sdp", OFFER), ("file", "x")])),
            (multipart, form(&[("sdp", "--b0 v=0")])),
        ] {
            assert!(
                read(content_type, &body).is_err(),
                "{content_type} {:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
