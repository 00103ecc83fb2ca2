//! Prints a user token for development:
//! `cargo run --bin mint-token -- --sub alice --ttl 15m`
//!
//! Signs with `JWT_SECRET` (and `JWT_HMAC_ALGORITHM`, `JWT_ISSUER`, `JWT_AUDIENCE`) from the
//! environment, else from `.dev.vars`. In production, tokens come from the app's backend or
//! its identity provider; this is the same kind of token, for trying the proxy.

use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use openai_edge_proxy::testing::auth::{mint_hmac_token, HmacAlgorithm, MIN_HMAC_SECRET_BYTES};
use serde_json::{json, Map, Value};

const USAGE: &str = "usage: mint-token --sub <user id> [--ttl 15m] [--iss <issuer>] [--aud <audience>]
  --ttl   lifetime: 900, 900s, 15m, 1h or 1d (default 15m)
Reads JWT_SECRET, JWT_HMAC_ALGORITHM, JWT_ISSUER and JWT_AUDIENCE from the environment or .dev.vars.";

fn main() -> ExitCode {
    match run() {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) if message == "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mint-token: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<String, String> {
    let args = parse_args(std::env::args().skip(1))?;
    let dev_vars = read_dev_vars(".dev.vars");
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dev_vars.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    };

    let secret = setting("JWT_SECRET").ok_or("JWT_SECRET is not set (environment or .dev.vars)")?;
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "JWT_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes; the proxy would refuse it"
        ));
    }
    let algorithm_name = setting("JWT_HMAC_ALGORITHM").unwrap_or_else(|| "HS256".into());
    let algorithm = HmacAlgorithm::parse(&algorithm_name).ok_or(format!(
        "JWT_HMAC_ALGORITHM={algorithm_name} is not HS256, HS384 or HS512"
    ))?;

    let sub = args.get("sub").ok_or("--sub is required")?;
    let ttl = parse_duration(args.get("ttl").map_or("15m", String::as_str))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(sub));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("jti".into(), json!(random_id()?));
    let issuer = args.get("iss").cloned().or_else(|| setting("JWT_ISSUER"));
    let audience = args.get("aud").cloned().or_else(|| setting("JWT_AUDIENCE"));
    if let Some(issuer) = issuer {
        claims.insert("iss".into(), Value::String(issuer));
    }
    if let Some(audience) = audience {
        claims.insert("aud".into(), Value::String(audience));
    }
    mint_hmac_token(algorithm, secret.as_bytes(), &claims).map_err(|e| format!("{e:?}"))
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<HashMap<String, String>, String> {
    let mut parsed = HashMap::new();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let name = match flag.as_str() {
            "--sub" | "--ttl" | "--iss" | "--aud" => &flag[2..],
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        parsed.insert(name.to_owned(), value);
    }
    Ok(parsed)
}

/// `900`, `900s`, `15m`, `1h`, `1d` as seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let multiplier = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("--ttl {text:?}: use seconds or a number with s, m, h or d")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&seconds| seconds > 0)
        .ok_or(format!("--ttl {text:?} is not a positive duration"))
}

/// `KEY=VALUE` lines of a wrangler `.dev.vars` file; a missing file is an empty map.
fn read_dev_vars(path: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().trim_matches('"').to_owned()))
        .collect()
}

/// A `jti` from the OS's random source.
fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("900"), Ok(900));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        for bad in ["", "0", "m", "5w", "-5m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
