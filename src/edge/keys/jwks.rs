//! The keys user tokens are checked with: `JWT_SECRET`, and an identity provider's key set,
//! inline (`JWKS`) or fetched from `JWKS_URL`. A fetched set is cached in this isolate's memory
//! (with its keys' WebCrypto imports) and in a Cache API entry only this Worker uses, for
//! `JWKS_CACHE_SECONDS`. That entry is sealed (`CacheSeal`): another Worker of the zone could
//! write one, and without the seal's secret it could plant any key and mint any user's token. When to fetch again, and how long a set may outlive its cache time, is
//! `key_refresh` in the core.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either, FutureExt, LocalBoxFuture, Shared};
use sha2::{Digest, Sha256};
use worker::{AbortController, Cache, Delay, Fetch, Headers, RequestInit, RequestRedirect, Response};

use super::webcrypto::{ProviderKeys, UserKeys};
use crate::auth::jwks;
use crate::auth::key_refresh::{self, CacheSeal, FetchLog, Freshness};
use crate::config::Config;
use crate::edge::body::{self, BodyError};
use crate::edge::{log, Now};
use crate::error::ProxyError;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A named cache and a key under a reserved host: the default cache of a custom domain is the
/// zone's, shared with its other Workers and its origin's responses, which could plant keys
/// under the provider's public URL.
const CACHE_NAME: &str = "openai-edge-proxy:jwks";
const CACHE_KEY_PREFIX: &str = "https://jwks.openai-edge-proxy.invalid/";
/// Headers of a cache entry: which URL it holds, when that was fetched (ms), and its seal.
const SOURCE_HEADER: &str = "x-openai-edge-proxy-jwks-source";
const FETCHED_AT_HEADER: &str = "x-openai-edge-proxy-fetched-at-ms";
const SEAL_HEADER: &str = "x-openai-edge-proxy-seal";

type Keys = Rc<ProviderKeys>;
/// A refresh under way: requests that arrive meanwhile wait for it rather than start another.
type Refresh = Shared<LocalBoxFuture<'static, Result<Keys, NotLoaded>>>;

/// Why a refresh brought no set.
#[derive(Clone)]
enum NotLoaded {
    /// Too soon after the last attempt to ask the provider again (not worth a warning).
    BackingOff,
    Failed(String),
}

struct HeldKeys {
    /// The `JWKS` text or the `JWKS_URL` it came from.
    source: String,
    keys: Keys,
    fetched_at_ms: u64,
}

thread_local! {
    // Borrowed only between awaits, never across one.
    static HELD: RefCell<Option<HeldKeys>> = const { RefCell::new(None) };
    static FETCHES: Cell<FetchLog> = Cell::new(FetchLog::default());
    static REFRESHING: RefCell<Option<Refresh>> = const { RefCell::new(None) };
}

/// Every key a token may be checked with.
pub async fn key_set(config: &Config, now: Now) -> Result<UserKeys, ProxyError> {
    let now_ms = now.0;
    let provider = provider_keys(config, now_ms).await?;
    combine(config, &provider)
}

/// After a token named an unknown `kid`: the provider's set fetched anew (it may have rotated
/// keys), or `None` when there is no `JWKS_URL`, a refetch happened too recently, or it failed.
pub async fn refetch_for_unknown_kid(config: &Config, now: Now) -> Result<Option<UserKeys>, ProxyError> {
    let now_ms = now.0;
    let Some(url) = &config.keys.jwks_url else {
        return Ok(None);
    };
    let mut fetches = FETCHES.get();
    if !fetches.may_refetch_for_unknown_kid(now_ms) {
        return Ok(None);
    }
    fetches.refetched_for_unknown_kid(now_ms);
    FETCHES.set(fetches);
    match fetch_from_provider(url.clone(), shared_cache(config), now_ms).await {
        Ok(keys) => Ok(Some(combine(config, &keys)?)),
        Err(detail) => {
            log::warn("jwks_refetch_failed", &detail);
            Ok(None)
        }
    }
}

fn combine(config: &Config, provider: &Keys) -> Result<UserKeys, ProxyError> {
    Ok(UserKeys::new(config.keys.secret_key()?, provider.clone()))
}

/// The provider's keys: the held set while fresh, else a refreshed one, else the held set as
/// long as it is not older than `key_refresh::MAX_STALE_MS`, else 503.
async fn provider_keys(config: &Config, now_ms: u64) -> Result<Keys, ProxyError> {
    if let Some(inline) = &config.keys.inline_jwks {
        if let Some((keys, _)) = held(inline) {
            return Ok(keys);
        }
        let keys = parse(inline.as_bytes(), "JWKS")
            .await
            .map_err(ProxyError::misconfigured)?;
        return Ok(remember(inline, keys, now_ms));
    }
    let Some(url) = &config.keys.jwks_url else {
        return Ok(Rc::default());
    };
    let cache_ms = u64::try_from(config.keys.jwks_cache.as_millis()).unwrap_or(u64::MAX);
    let held = held(url);
    if let Some((keys, fetched_at_ms)) = &held {
        if key_refresh::freshness(*fetched_at_ms, cache_ms, now_ms) == Freshness::Fresh {
            return Ok(keys.clone());
        }
    }
    let not_loaded = match refreshed(url, shared_cache(config), now_ms).await {
        Ok(keys) => return Ok(keys),
        Err(not_loaded) => not_loaded,
    };
    let usable = held
        .filter(|(_, fetched_at_ms)| key_refresh::freshness(*fetched_at_ms, cache_ms, now_ms) != Freshness::Expired);
    match (usable, not_loaded) {
        (Some((keys, _)), NotLoaded::BackingOff) => Ok(keys),
        (Some((keys, _)), NotLoaded::Failed(detail)) => {
            log::warn("jwks_stale", &format!("using the previous key set: {detail}"));
            Ok(keys)
        }
        (None, NotLoaded::BackingOff) => Err(ProxyError::Unavailable {
            detail: format!(
                "no usable key set, and the last fetch was less than {} s ago",
                key_refresh::MIN_FETCH_INTERVAL_MS / 1000
            ),
        }),
        (None, NotLoaded::Failed(detail)) => Err(ProxyError::Unavailable {
            detail: format!("cannot load the key set: {detail}"),
        }),
    }
}

/// The Cache API layer isolates share: how long its entries live and the seal they need.
/// None without a secret to seal with, or with `JWKS_CACHE_SECONDS=0`: each isolate fetches.
#[derive(Clone)]
struct SharedCache {
    max_age_seconds: u64,
    seal: CacheSeal,
}

fn shared_cache(config: &Config) -> Option<SharedCache> {
    let max_age_seconds = config.keys.jwks_cache.as_secs();
    let seal = config.keys.cache_seal.clone()?;
    (max_age_seconds > 0).then_some(SharedCache { max_age_seconds, seal })
}

/// Joins the refresh under way, or starts one: the shared cache first, then the provider.
async fn refreshed(url: &str, shared: Option<SharedCache>, now_ms: u64) -> Result<Keys, NotLoaded> {
    let under_way = REFRESHING.with_borrow(|slot| slot.clone().filter(|refresh| refresh.peek().is_none()));
    let refresh = under_way.unwrap_or_else(|| {
        let refresh = load(url.to_owned(), shared, now_ms).boxed_local().shared();
        REFRESHING.set(Some(refresh.clone()));
        refresh
    });
    let result = refresh.clone().await;
    REFRESHING.with_borrow_mut(|slot| {
        if slot.as_ref().is_some_and(|current| current.ptr_eq(&refresh)) {
            *slot = None;
        }
    });
    result
}

async fn load(url: String, shared: Option<SharedCache>, now_ms: u64) -> Result<Keys, NotLoaded> {
    if let Some(cache) = &shared {
        if let Some((keys, fetched_at_ms)) = from_cache_api(&url, cache, now_ms).await {
            return Ok(remember(&url, keys, fetched_at_ms));
        }
    }
    if !FETCHES.get().may_refresh(now_ms) {
        return Err(NotLoaded::BackingOff);
    }
    fetch_from_provider(url, shared, now_ms)
        .await
        .map_err(NotLoaded::Failed)
}

/// One fetch from `JWKS_URL`, recorded in the isolate's `FetchLog`.
async fn fetch_from_provider(url: String, shared: Option<SharedCache>, now_ms: u64) -> Result<Keys, String> {
    let mut fetches = FETCHES.get();
    fetches.started(now_ms);
    FETCHES.set(fetches);
    let fetched = match fetch_document(&url).await {
        Ok(document) => parse(&document, "JWKS_URL").await.map(|keys| (keys, document)),
        Err(detail) => Err(detail),
    };
    match fetched {
        Ok((keys, document)) => {
            if let Some(cache) = &shared {
                to_cache_api(&url, document, cache, now_ms).await;
            }
            Ok(remember(&url, keys, now_ms))
        }
        Err(detail) => {
            let mut fetches = FETCHES.get();
            fetches.failed(now_ms);
            FETCHES.set(fetches);
            Err(detail)
        }
    }
}

fn held(source: &str) -> Option<(Keys, u64)> {
    HELD.with_borrow(|held| {
        let held = held.as_ref().filter(|h| h.source == source)?;
        Some((held.keys.clone(), held.fetched_at_ms))
    })
}

fn remember(source: &str, keys: ProviderKeys, fetched_at_ms: u64) -> Keys {
    let keys = Rc::new(keys);
    HELD.set(Some(HeldKeys {
        source: source.to_owned(),
        keys: keys.clone(),
        fetched_at_ms,
    }));
    keys
}

/// Parses a key set and imports its keys; keys that cannot be used are skipped and logged, not
/// fatal.
async fn parse(document: &[u8], origin: &str) -> Result<ProviderKeys, String> {
    let parsed = jwks::parse_jwks(document).map_err(|e| format!("{origin} is not a usable key set: {e}"))?;
    let (keys, skipped) = ProviderKeys::import(parsed).await;
    for skipped in &skipped {
        log::warn("jwks_key_skipped", &format!("{origin}: {skipped}"));
    }
    Ok(keys)
}

/// Redirects are not followed: a key set is trusted only from the URL the operator set.
async fn fetch_document(url: &str) -> Result<Vec<u8>, String> {
    let controller = AbortController::default();
    let headers = Headers::new();
    headers.set("accept", "application/json").map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_headers(headers).with_redirect(RequestRedirect::Manual);
    let request = crate::edge::http::outgoing(url, &init).map_err(|e| e.to_string())?;
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = fetch.send_with_signal(&signal);
    let mut response = match select(Box::pin(send), Box::pin(Delay::from(FETCH_TIMEOUT))).await {
        Either::Left((response, _)) => response.map_err(|e| format!("fetch failed: {e}"))?,
        Either::Right(_) => {
            controller.abort();
            return Err(format!("no answer within {} s", FETCH_TIMEOUT.as_secs()));
        }
    };
    let status = response.status_code();
    if (300..400).contains(&status) {
        let location = response.headers().get("location").ok().flatten().unwrap_or_default();
        let location: String = location.chars().take(200).collect();
        return Err(format!(
            "answered {status} redirecting to {location:?}; redirects are not followed"
        ));
    }
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    let reading = select(
        Box::pin(body::read_capped(&mut response, body::MAX_KEY_SET_BYTES, None)),
        Box::pin(Delay::from(FETCH_TIMEOUT)),
    )
    .await;
    match reading {
        Either::Left((Ok(document), _)) => Ok(document),
        Either::Left((Err(BodyError::TooLarge), _)) => Err(format!("larger than {} bytes", body::MAX_KEY_SET_BYTES)),
        Either::Left((Err(error), _)) => Err(error.to_string()),
        Either::Right(_) => {
            controller.abort();
            Err(format!("its body did not arrive within {} s", FETCH_TIMEOUT.as_secs()))
        }
    }
}

/// This Worker's own cache key for `url`.
fn cache_key(url: &str) -> String {
    let mut key = CACHE_KEY_PREFIX.to_owned();
    for byte in Sha256::digest(url.as_bytes()) {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// A set another isolate of this Worker stored, if it is for `url`, fresh, sealed by this
/// Worker and usable.
async fn from_cache_api(url: &str, cache: &SharedCache, now_ms: u64) -> Option<(ProviderKeys, u64)> {
    let cache_ms = cache.max_age_seconds.saturating_mul(1000);
    let stored = Cache::open(CACHE_NAME.to_owned()).await;
    let mut response = stored.get(cache_key(url), false).await.ok()??;
    let header = |name| response.headers().get(name).ok().flatten();
    if header(SOURCE_HEADER).as_deref() != Some(url) {
        return None;
    }
    let fetched_at_ms: u64 = header(FETCHED_AT_HEADER)?.parse().ok()?;
    let tag = header(SEAL_HEADER).unwrap_or_default();
    if key_refresh::freshness(fetched_at_ms, cache_ms, now_ms) != Freshness::Fresh {
        return None;
    }
    let document = body::read_capped(&mut response, body::MAX_KEY_SET_BYTES, None)
        .await
        .ok()?;
    if !cache.seal.verifies(&tag, url, fetched_at_ms, &document) {
        log::warn(
            "jwks_cache_unsealed",
            "ignored a cached key set this Worker did not seal: planted by another Worker of the zone, or sealed with a previous secret",
        );
        return None;
    }
    let keys = parse(&document, "JWKS_URL (cached)").await.ok()?;
    Some((keys, fetched_at_ms))
}

/// Best effort: a failed cache write only costs a later fetch.
async fn to_cache_api(url: &str, document: Vec<u8>, cache: &SharedCache, fetched_at_ms: u64) {
    let tag = cache.seal.tag(url, fetched_at_ms, &document);
    let stored = Response::from_bytes(document).and_then(|mut response| {
        let headers = response.headers_mut();
        headers.set("cache-control", &format!("max-age={}", cache.max_age_seconds))?;
        headers.set("content-type", "application/json")?;
        headers.set(SOURCE_HEADER, url)?;
        headers.set(FETCHED_AT_HEADER, &fetched_at_ms.to_string())?;
        headers.set(SEAL_HEADER, &tag)?;
        Ok(response)
    });
    if let Ok(response) = stored {
        let cache = Cache::open(CACHE_NAME.to_owned()).await;
        if let Err(error) = cache.put(cache_key(url), response).await {
            log::warn("jwks_cache_write_failed", &error.to_string());
        }
    }
}
