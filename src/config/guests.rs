//! Guest access behind Turnstile: its two secrets, the verify endpoint and the guests' limits.

use std::time::Duration;

use super::vars::{Lookup, Vars};
use super::RANDOM_SECRET_HINT;
use crate::auth::guest::{self, ClientKey};
use crate::auth::MIN_HMAC_SECRET_BYTES;
use crate::budget::quota::Limits;
use crate::error::ProxyError;
use crate::secret::Secret;

/// Guest access (`POST /v1/guest`): on when both `TURNSTILE_SECRET_KEY` and
/// `GUEST_TOKEN_SECRET` are set.
#[derive(Debug, Clone)]
pub struct GuestSettings {
    turnstile_secret: Secret,
    /// Signs and verifies guest tokens (HS256) and keys client names, with a label of its own.
    token_secret: Secret,
    pub client_key: ClientKey,
    /// Turnstile's siteverify endpoint.
    pub verify_url: String,
    /// When set, the hostnames a Turnstile challenge may have been solved on.
    pub hostnames: Option<Vec<String>>,
    pub token_ttl: Duration,
    /// Guest tokens one client may mint per hour.
    pub mints_per_hour: u32,
    /// What all guests together may spend per day (`GLOBAL_GUEST_DAILY_BUDGET_USD`).
    pub global_limits: Option<Limits>,
}

impl GuestSettings {
    /// The settings when guest access is on; with only one of its two secrets it stays off,
    /// and the warning says why.
    pub(super) fn from_vars(
        vars: &Vars<impl Lookup>,
        jwt_secret: Option<&Secret>,
    ) -> Result<(Option<Self>, Option<String>), ProxyError> {
        let (turnstile_secret, token_secret) =
            match (vars.secret("TURNSTILE_SECRET_KEY"), vars.secret("GUEST_TOKEN_SECRET")) {
                (Some(turnstile), Some(token)) => (turnstile, token),
                (None, None) => return Ok((None, None)),
                (turnstile, _) => {
                    let missing = if turnstile.is_some() {
                        "GUEST_TOKEN_SECRET"
                    } else {
                        "TURNSTILE_SECRET_KEY"
                    };
                    let warning =
                        format!("guest access is off: set {missing} too (POST /v1/guest answers 404 until then)");
                    return Ok((None, Some(warning)));
                }
            };
        if token_secret.expose().len() < MIN_HMAC_SECRET_BYTES {
            return Err(ProxyError::misconfigured(format!(
                "secret GUEST_TOKEN_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes: {RANDOM_SECRET_HINT}"
            )));
        }
        if jwt_secret == Some(&token_secret) {
            return Err(ProxyError::misconfigured(
                "GUEST_TOKEN_SECRET must differ from JWT_SECRET: a guest could otherwise sign itself a user token",
            ));
        }
        let settings = GuestSettings {
            client_key: ClientKey::derive(
                token_secret.expose(),
                vars.number(
                    "GUEST_IPV6_PREFIX",
                    guest::DEFAULT_IPV6_PREFIX,
                    guest::MIN_IPV6_PREFIX..=guest::DEFAULT_IPV6_PREFIX,
                )?,
            ),
            turnstile_secret,
            token_secret,
            verify_url: vars
                .service_url("TURNSTILE_VERIFY_URL")?
                .unwrap_or_else(|| guest::DEFAULT_VERIFY_URL.to_owned()),
            hostnames: vars.list("TURNSTILE_HOSTNAMES"),
            token_ttl: vars.seconds("GUEST_TOKEN_TTL_SECONDS", 900, 60..=3600)?,
            mints_per_hour: vars.number("GUEST_MINTS_PER_HOUR", 10, 1..=1000)?,
            global_limits: vars.usd("GLOBAL_GUEST_DAILY_BUDGET_USD")?.map(|nano_usd| Limits {
                rate: None,
                max_streams: None,
                daily_tokens: None,
                daily_nano_usd: Some(nano_usd),
            }),
        };
        Ok((Some(settings), None))
    }

    pub fn turnstile_secret(&self) -> &Secret {
        &self.turnstile_secret
    }

    pub fn token_secret(&self) -> &Secret {
        &self.token_secret
    }
}
