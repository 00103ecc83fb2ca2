//! Where the keys that verify user tokens come from, what their claims must say, and the admin
//! token.

use std::time::Duration;

use super::vars::{Lookup, Vars};
use super::{DEFAULT_JWT_MAX_TTL_SECONDS, MIN_ADMIN_TOKEN_BYTES, RANDOM_SECRET_HINT};
use crate::auth::key_refresh::CacheSeal;
use crate::auth::{ClaimRules, HmacAlgorithm, KeyEntry, VerifyingKey, MIN_HMAC_SECRET_BYTES};
use crate::error::ProxyError;
use crate::secret::Secret;

/// Where the keys that verify user tokens come from: `JWT_SECRET`, and an identity
/// provider's key set given inline (`JWKS`) or fetched from `JWKS_URL`.
#[derive(Debug, Clone)]
pub struct KeySources {
    jwt_secret: Option<(HmacAlgorithm, Secret)>,
    /// A JSON Web Key Set given inline, parsed and cached by the edge.
    pub inline_jwks: Option<String>,
    /// The identity provider's key set URL, fetched and cached by the edge.
    pub jwks_url: Option<String>,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_cache: Duration,
    /// Seals the key set isolates share through the Cache API; without it they share none.
    pub cache_seal: Option<CacheSeal>,
}

impl KeySources {
    pub(super) fn from_vars(vars: &Vars<impl Lookup>) -> Result<Self, ProxyError> {
        let algorithm = vars.choice("JWT_HMAC_ALGORITHM", &HmacAlgorithm::CHOICES, HmacAlgorithm::Hs256)?;
        let jwt_secret = vars.secret("JWT_SECRET");
        // A secret only this Worker holds: the one `safety_identifier`'s key comes from, which
        // every deployment that calls upstream has. Never `OPENAI_API_KEY`: other Workers of
        // the zone may hold the same key.
        let cache_seal = vars
            .trimmed_secret("SAFETY_IDENTIFIER_SECRET")
            .or_else(|| jwt_secret.clone())
            .filter(|secret| secret.expose().len() >= MIN_HMAC_SECRET_BYTES)
            .map(|secret| CacheSeal::derive(secret.expose()));
        let sources = KeySources {
            jwt_secret: jwt_secret.map(|secret| (algorithm, secret)),
            inline_jwks: vars.raw("JWKS"),
            jwks_url: vars.service_url("JWKS_URL")?,
            jwks_cache: vars.seconds("JWKS_CACHE_SECONDS", 600, 0..=86_400)?,
            cache_seal,
        };
        match (&sources.jwt_secret, &sources.inline_jwks, &sources.jwks_url) {
            (_, Some(_), Some(_)) => Err(ProxyError::misconfigured(
                "set JWKS (inline key set) or JWKS_URL, not both",
            )),
            (None, None, None) => Err(ProxyError::misconfigured(
                "no key to verify user tokens: set the JWT_SECRET secret, or the JWKS_URL (or JWKS) var",
            )),
            _ => Ok(sources),
        }
    }

    /// `JWT_SECRET`, if set.
    pub fn jwt_secret(&self) -> Option<&Secret> {
        self.jwt_secret.as_ref().map(|(_, secret)| secret)
    }

    /// Whether an identity provider's key set is configured.
    pub fn has_key_set(&self) -> bool {
        self.inline_jwks.is_some() || self.jwks_url.is_some()
    }

    /// The `JWT_SECRET` key, if one is set. A short secret fails closed rather than being used.
    pub fn secret_key(&self) -> Result<Option<KeyEntry>, ProxyError> {
        let Some((algorithm, secret)) = &self.jwt_secret else {
            return Ok(None);
        };
        if secret.expose().len() < MIN_HMAC_SECRET_BYTES {
            return Err(ProxyError::misconfigured(format!(
                "secret JWT_SECRET is shorter than {MIN_HMAC_SECRET_BYTES} bytes: {RANDOM_SECRET_HINT}"
            )));
        }
        let key = VerifyingKey::Hmac {
            algorithm: *algorithm,
            secret: secret.clone(),
        };
        Ok(Some(KeyEntry { kid: None, key }))
    }
}

/// A provider's key set signs tokens for every app of the provider (Firebase's is shared by
/// all projects; Auth0, Okta and Cognito tenants serve other apps too), so a token it verifies
/// is ours only if its issuer is ours: with a key set, `JWT_ISSUER` is required.
pub(super) fn key_sources(vars: &Vars<impl Lookup>) -> Result<KeySources, ProxyError> {
    let keys = KeySources::from_vars(vars)?;
    if keys.has_key_set() && vars.text("JWT_ISSUER").is_none() {
        return Err(ProxyError::misconfigured(
            "JWT_ISSUER is required when JWKS_URL or JWKS is set: a provider's key set also verifies tokens \
             it issued for other apps (docs/identity-providers.md)",
        ));
    }
    Ok(keys)
}

pub(super) fn claim_rules(vars: &Vars<impl Lookup>) -> Result<ClaimRules, ProxyError> {
    Ok(ClaimRules {
        issuer: vars.text("JWT_ISSUER"),
        audience: vars.text("JWT_AUDIENCE"),
        leeway_seconds: vars.number("JWT_LEEWAY_SECONDS", 30, 0..=300)?,
        plan_claim: vars.text("PLAN_CLAIM").unwrap_or_else(|| "plan".to_owned()),
        max_ttl_seconds: vars.number("JWT_MAX_TTL_SECONDS", DEFAULT_JWT_MAX_TTL_SECONDS, 60..=31_536_000)?,
    })
}

pub(super) fn admin_token(vars: &Vars<impl Lookup>) -> Result<Option<Secret>, ProxyError> {
    match vars.secret("ADMIN_TOKEN") {
        Some(token) if token.expose().len() < MIN_ADMIN_TOKEN_BYTES => Err(ProxyError::misconfigured(format!(
            "secret ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_BYTES} bytes: {RANDOM_SECRET_HINT}"
        ))),
        token => Ok(token),
    }
}
