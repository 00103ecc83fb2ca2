//! `multipart/form-data` (RFC 7578) read in place: each field's value is a range of the body,
//! so the audio file is never copied to be parsed.
//!
//! Hand-written rather than a crate: the route needs only named fields and one file, read from
//! a body already whole in memory, and `multer` 3.1 (the maintained parser, stream-based over
//! `bytes`, `http`, `httparse`, `mime`, `encoding_rs`) added 26 KB gzip to the Worker's wasm,
//! measured 2026-12-06 (docs/performance.md), against a budget of a few KB for a dependency. The boundary is read from the body's first line, not from the
//! `Content-Type` header: the proxy rebuilds the body it sends, so a header that disagrees
//! with the body cannot make the two sides read different fields.

use std::ops::Range;

use crate::error::ProxyError;

/// The most bytes of headers one part may carry.
const MAX_PART_HEADER_BYTES: usize = 1024;
/// The most parts a form may have: the route knows about a dozen fields.
pub const MAX_PARTS: usize = 32;

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    /// Present on a file part (possibly empty).
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// Where the value lies in the body.
    pub value: Range<usize>,
}

/// A parsed form: its boundary (which no value contains) and its fields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form<'a> {
    pub boundary: &'a str,
    pub fields: Vec<Field<'a>>,
}

fn malformed(why: &str) -> ProxyError {
    ProxyError::invalid_request(format!("The multipart/form-data body is malformed: {why}."), None)
}

/// Parses `body`. A preamble before the first boundary is refused (no client sends one), and
/// so is anything but a final `\r\n` after the closing boundary.
pub fn parse(body: &[u8]) -> Result<Form<'_>, ProxyError> {
    let line_end = find(body, b"\r\n", 0).ok_or_else(|| malformed("no boundary line"))?;
    let boundary = body[..line_end]
        .strip_prefix(b"--")
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|b| is_boundary(b))
        .ok_or_else(|| malformed("the first line is not a boundary"))?;
    let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let mut fields = Vec::new();
    let mut at = line_end + 2;
    loop {
        if fields.len() == MAX_PARTS {
            return Err(malformed("too many parts"));
        }
        let headers_end = find(&body[..body.len().min(at + MAX_PART_HEADER_BYTES)], b"\r\n\r\n", at)
            .ok_or_else(|| malformed("a part's headers do not end"))?;
        let headers = std::str::from_utf8(&body[at..headers_end]).map_err(|_| malformed("a header is not UTF-8"))?;
        let value_start = headers_end + 4;
        let value_end = find(body, &delimiter, value_start).ok_or_else(|| malformed("a part does not end"))?;
        fields.push(field(headers, value_start..value_end)?);
        at = value_end + delimiter.len();
        match &body[at..] {
            [b'-', b'-'] | [b'-', b'-', b'\r', b'\n'] => return Ok(Form { boundary, fields }),
            [b'\r', b'\n', ..] => at += 2,
            _ => return Err(malformed("a boundary is followed by something else")),
        }
    }
}

/// RFC 2046: 1 to 70 characters of a restricted set, not ending in a space.
fn is_boundary(boundary: &str) -> bool {
    (1..=70).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b))
}

/// A part's `Content-Disposition: form-data; name="…"` (and `filename="…"`) and `Content-Type`.
fn field(headers: &str, value: Range<usize>) -> Result<Field<'_>, ProxyError> {
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let (name, text) = line.split_once(':').ok_or_else(|| malformed("a header has no colon"))?;
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(text.trim());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(text.trim());
        }
    }
    let params = disposition
        .and_then(|d| d.strip_prefix("form-data"))
        .ok_or_else(|| malformed("a part is not form-data"))?;
    let mut name = None;
    let mut filename = None;
    for param in split_params(params)? {
        match param {
            ("name", value) => name = Some(value),
            ("filename", value) => filename = Some(value),
            _ => {}
        }
    }
    Ok(Field {
        name: name.ok_or_else(|| malformed("a part has no name"))?,
        filename,
        content_type,
        value,
    })
}

/// `; key="value"; key2=value2` as pairs. Browsers escape `"` in names as `%22`, so a quoted
/// value ends at the next quote.
fn split_params(mut rest: &str) -> Result<Vec<(&str, &str)>, ProxyError> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(after) = rest.strip_prefix(';') else {
            return if rest.is_empty() {
                Ok(params)
            } else {
                Err(malformed("a Content-Disposition parameter is malformed"))
            };
        };
        let (key, after) = after
            .split_once('=')
            .ok_or_else(|| malformed("a Content-Disposition parameter has no value"))?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => quoted
                .split_once('"')
                .ok_or_else(|| malformed("a quoted parameter does not end"))?,
            None => after.split_at(after.find(';').unwrap_or(after.len())),
        };
        params.push((key.trim(), value.trim_end()));
        rest = tail;
    }
}

/// The first `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= haystack.len() {
        let next = haystack[at..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        at += next;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, value) in parts {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.push(b'"');
            if let Some(filename) = filename {
                body.extend_from_slice(format!("; filename=\"{filename}\"\r\nContent-Type: audio/wav").as_bytes());
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn fields_and_a_file_are_ranges_of_the_body() {
        let body = form(&[
            ("model", None, b"whisper-1"),
            ("file", Some("a.wav"), b"RIFF\r\n--Xy\r\nbinary"),
        ]);
        let form = parse(&body).unwrap();
        assert_eq!(form.boundary, "XyZ");
        assert_eq!(form.fields.len(), 2);
        assert_eq!(&body[form.fields[0].value.clone()], b"whisper-1");
        assert_eq!(form.fields[1].filename, Some("a.wav"));
        assert_eq!(form.fields[1].content_type, Some("audio/wav"));
        assert_eq!(&body[form.fields[1].value.clone()], b"RIFF\r\n--Xy\r\nbinary");
    }

    #[test]
    fn malformed_forms_are_refused() {
        let good = form(&[("model", None, b"m")]);
        let cut = &good[..good.len() - 9];
        let no_name = b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--".to_vec();
        let not_form = b"--B\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--B--".to_vec();
        let trailing = [good.clone(), b"junk".to_vec()].concat();
        let preamble = [b"hello\r\n".to_vec(), good.clone()].concat();
        let long_boundary = format!("--{}\r\n", "b".repeat(71)).into_bytes();
        for bad in [
            &b""[..],
            b"--\r\n",
            cut,
            &no_name,
            &not_form,
            &trailing,
            &preamble,
            &long_boundary,
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let many: Vec<(&str, Option<&str>, &[u8])> = (0..=MAX_PARTS).map(|_| ("a", None, &b"1"[..])).collect();
        assert!(parse(&form(&many)).is_err());
    }

    #[test]
    fn a_value_ends_only_at_a_whole_delimiter() {
        let body = form(&[("prompt", None, b"--XyZ at the start is fine\r\n--XY")]);
        let form = parse(&body).unwrap();
        assert_eq!(
            &body[form.fields[0].value.clone()],
            b"--XyZ at the start is fine\r\n--XY"
        );
        assert_eq!(find(b"aab", b"ab", 0), Some(1));
        assert_eq!(find(b"ab", b"abc", 0), None);
    }
}
