//! The reader of the Worker's vars and secrets: typed getters that name the variable in every
//! error, and URL and origin checks.

use std::cell::RefCell;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::time::Duration;

use crate::budget::money;
use crate::error::ProxyError;
use crate::secret::Secret;

/// Reads variables by name. A blank value counts as unset, so `VAR = ""` in wrangler.toml
/// means "the default".
pub trait Lookup: Fn(&str) -> Option<String> {}
impl<F: Fn(&str) -> Option<String>> Lookup for F {}

/// Every `Vars` is read through this one type (`Config::from_lookup` boxes its lookup, and so
/// does `overlaid`): one copy of each parser in the wasm, not one per lookup type.
pub type DynLookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Every secret is registered where it is read, so the list that upstream text is scrubbed of
/// cannot miss one.
pub struct Vars<F> {
    lookup: F,
    secrets: Rc<RefCell<Vec<Secret>>>,
}

impl<F: Lookup> Vars<F> {
    pub fn new(lookup: F) -> Self {
        Vars {
            lookup,
            secrets: Rc::default(),
        }
    }

    /// These variables with `overlay`'s values in front (a plan's); secrets read through it
    /// are registered here too.
    pub fn overlaid<'a>(&'a self, overlay: impl Fn(&str) -> Option<String> + 'a) -> Vars<DynLookup<'a>> {
        Vars {
            lookup: Box::new(move |name: &str| overlay(name).or_else(|| (self.lookup)(name))),
            secrets: Rc::clone(&self.secrets),
        }
    }

    /// Every secret read so far.
    pub fn secrets_read(&self) -> Vec<Secret> {
        self.secrets.borrow().clone()
    }

    /// The value as given, if set and not blank.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// The trimmed value, if set and not blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(|value| value.trim().to_owned())
    }

    /// A secret exactly as given: an HMAC secret's bytes are its bytes.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.register(self.raw(name))
    }

    /// A secret, trimmed: a pasted API key often ends with a newline, and no key has spaces.
    pub fn trimmed_secret(&self, name: &str) -> Option<Secret> {
        self.register(self.text(name))
    }

    fn register(&self, value: Option<String>) -> Option<Secret> {
        let secret = Secret::new(value?);
        self.secrets.borrow_mut().push(secret.clone());
        Some(secret)
    }

    pub fn number<T>(&self, name: &str, default: T, range: RangeInclusive<T>) -> Result<T, ProxyError>
    where
        T: TryFrom<u64> + TryInto<u64> + Copy,
    {
        Ok(self.optional_number(name, range)?.unwrap_or(default))
    }

    /// Read as a u64 whatever the integer type: one parser in the wasm, not one per type.
    pub fn optional_number<T>(&self, name: &str, range: RangeInclusive<T>) -> Result<Option<T>, ProxyError>
    where
        T: TryFrom<u64> + TryInto<u64> + Copy,
    {
        let wide = |bound: T| bound.try_into().unwrap_or(u64::MAX);
        let number = self.optional_u64(name, wide(*range.start())..=wide(*range.end()))?;
        // In range, so it fits T.
        Ok(number.and_then(|number| T::try_from(number).ok()))
    }

    fn optional_u64(&self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, ProxyError> {
        let Some(raw) = self.text(name) else {
            return Ok(None);
        };
        match raw.parse::<u64>() {
            Ok(number) if range.contains(&number) => Ok(Some(number)),
            _ => Err(ProxyError::misconfigured(format!(
                "{name}={raw:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// An amount of dollars (`0.50`), as nano-USD; more than zero.
    pub fn usd(&self, name: &str) -> Result<Option<u64>, ProxyError> {
        let Some(raw) = self.text(name) else {
            return Ok(None);
        };
        match money::parse_usd(&raw) {
            Some(nano) if nano > 0 => Ok(Some(nano)),
            _ => Err(ProxyError::misconfigured(format!(
                "{name}={raw:?} is not an amount of USD above 0 (like 0.50; at most 9 decimals)"
            ))),
        }
    }

    pub fn seconds(&self, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<Duration, ProxyError> {
        self.number(name, default, range).map(Duration::from_secs)
    }

    pub fn millis(&self, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<Duration, ProxyError> {
        self.number(name, default, range).map(Duration::from_millis)
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ProxyError> {
        self.choice(name, &[("true", true), ("false", false)], default)
    }

    /// One of `choices`, by its exact name.
    pub fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)], default: T) -> Result<T, ProxyError> {
        let Some(raw) = self.text(name) else {
            return Ok(default);
        };
        match choices.iter().find(|(choice, _)| *choice == raw) {
            Some((_, value)) => Ok(*value),
            None => {
                let names: Vec<&str> = choices.iter().map(|(choice, _)| *choice).collect();
                Err(ProxyError::misconfigured(format!(
                    "{name}={raw:?} is not one of {}",
                    names.join(", ")
                )))
            }
        }
    }

    /// Items of a comma- or whitespace-separated list; `None` when it has none.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let raw = self.text(name)?;
        let items: Vec<String> = raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect();
        (!items.is_empty()).then_some(items)
    }

    pub fn service_url(&self, name: &str) -> Result<Option<String>, ProxyError> {
        self.text(name).map(|raw| parse_service_url(name, &raw)).transpose()
    }
}

/// `scheme://host[:port]`, lowercased, as browsers send it in `Origin`.
pub(super) fn parse_origin(raw: &str) -> Result<String, ProxyError> {
    let invalid = || {
        ProxyError::misconfigured(format!(
            "ALLOWED_ORIGINS: {raw:?} is not an origin like https://app.example.com (exact scheme, host and port; no path, no wildcard)"
        ))
    };
    let candidate = raw.strip_suffix('/').unwrap_or(raw).to_ascii_lowercase();
    let (scheme, authority) = candidate.split_once("://").ok_or_else(invalid)?;
    if !matches!(scheme, "http" | "https") || !is_valid_authority(authority) {
        return Err(invalid());
    }
    Ok(candidate)
}

/// Splits `host[:port]`; `None` when the shape is wrong. IPv6 literals keep their brackets.
pub(super) fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, rest) = if authority.starts_with('[') {
        authority.split_at(authority.find(']')? + 1)
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    let port = if rest.is_empty() {
        None
    } else {
        Some(rest.strip_prefix(':')?)
    };
    Some((host, port))
}

/// `host[:port]` with no userinfo, path, query or wildcard.
pub(super) fn is_valid_authority(authority: &str) -> bool {
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    host_ok && port.is_none_or(|port| port.parse::<u16>().is_ok())
}

/// A URL the proxy calls. It carries our key (upstream) or decides who gets in (JWKS), so it
/// must be HTTPS; plain HTTP only to this machine (dev, tests).
pub(super) fn parse_service_url(name: &str, raw: &str) -> Result<String, ProxyError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let invalid = |why: &str| ProxyError::misconfigured(format!("{name}={raw:?} is not usable: {why}"));
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| invalid("not an absolute URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if rest.contains(['?', '#', '@']) || !is_valid_authority(authority) {
        return Err(invalid(
            "expected https://host[:port]/path with no query, fragment or credentials",
        ));
    }
    let host = split_authority(authority).map_or(authority, |(host, _)| host);
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match scheme {
        "https" => Ok(trimmed.to_owned()),
        "http" if loopback => Ok(trimmed.to_owned()),
        _ => Err(invalid("must be https (http only for 127.0.0.1/localhost)")),
    }
}
