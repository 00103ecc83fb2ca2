//! The operator console's files, shipped inside the Worker: one page, its script and its style,
//! no third-party assets, so the page's policy can allow only its own origin.

use worker::{Headers, Response};

use super::Result;
use crate::routes::ConsoleFile;

const PAGE: &str = include_str!("console/index.html");
// Minified by build.rs.
const SCRIPT: &str = include_str!(concat!(env!("OUT_DIR"), "/console.js"));
const STYLE: &str = include_str!(concat!(env!("OUT_DIR"), "/console.css"));

/// No inline script or style, no other origin, no framing (the page holds the admin token):
/// a script injected into the page could neither run nor send the token anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn serve(file: ConsoleFile) -> Result<Response> {
    let (body, content_type) = match file {
        ConsoleFile::Page => (PAGE, "text/html; charset=utf-8"),
        ConsoleFile::Script => (SCRIPT, "text/javascript; charset=utf-8"),
        ConsoleFile::Style => (STYLE, "text/css; charset=utf-8"),
    };
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    // Revalidated on each load, so a deploy's new script never meets an old page.
    headers.set("cache-control", "no-cache")?;
    if file == ConsoleFile::Page {
        headers.set("content-security-policy", CONTENT_SECURITY_POLICY)?;
        headers.set("referrer-policy", "no-referrer")?;
    }
    Ok(Response::from_bytes(body.as_bytes().to_vec())?.with_headers(headers))
}
