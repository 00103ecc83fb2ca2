//! The keys user tokens are checked with: `JWT_SECRET`, and an identity provider's key set,
//! inline (`JWKS`) or fetched from `JWKS_URL`. A fetched set is cached in this isolate's memory
//! and in the Workers Cache API (shared by the isolates of a location) for `JWKS_CACHE_SECONDS`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Cache, Delay, Fetch, Headers, Request, RequestInit, Response};

use super::{log, Now};
use crate::auth::{self, KeyEntry, KeySet};
use crate::config::Config;
use crate::error::ProxyError;

/// A flood of tokens with random `kid`s may refetch the set at most this often per isolate.
const UNKNOWN_KID_REFETCH_INTERVAL_MS: u64 = 30_000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct CachedKeys {
    /// The `JWKS` text or the `JWKS_URL` it came from.
    source: String,
    keys: Rc<Vec<KeyEntry>>,
    fetched_at_ms: u64,
}

thread_local! {
    // Borrowed only between awaits, never across one.
    static CACHED: RefCell<Option<CachedKeys>> = const { RefCell::new(None) };
    static LAST_UNKNOWN_KID_REFETCH_MS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Every key a token may be checked with.
pub async fn key_set(config: &Config, now: Now) -> Result<KeySet, ProxyError> {
    let now_ms = now.0;
    let provider = provider_keys(config, now_ms, false).await?;
    combine(config, &provider)
}

/// After a token named an unknown `kid`: the provider's set fetched anew (it may have rotated
/// keys), or `None` when there is no `JWKS_URL` or a refetch happened too recently.
pub async fn refetch_for_unknown_kid(config: &Config, now: Now) -> Result<Option<KeySet>, ProxyError> {
    let now_ms = now.0;
    if config.keys.jwks_url.is_none() {
        return Ok(None);
    }
    let last = LAST_UNKNOWN_KID_REFETCH_MS.get();
    if last.is_some_and(|last| now_ms.saturating_sub(last) < UNKNOWN_KID_REFETCH_INTERVAL_MS) {
        return Ok(None);
    }
    LAST_UNKNOWN_KID_REFETCH_MS.set(Some(now_ms));
    let provider = provider_keys(config, now_ms, true).await?;
    Ok(Some(combine(config, &provider)?))
}

fn combine(config: &Config, provider: &[KeyEntry]) -> Result<KeySet, ProxyError> {
    let mut keys: Vec<KeyEntry> = config.keys.secret_key()?.into_iter().collect();
    keys.extend(provider.iter().cloned());
    Ok(KeySet { keys })
}

/// The provider's keys; `refetch` skips both caches.
async fn provider_keys(config: &Config, now_ms: u64, refetch: bool) -> Result<Rc<Vec<KeyEntry>>, ProxyError> {
    if let Some(inline) = &config.keys.inline_jwks {
        if let Some(keys) = cached(inline, None, now_ms) {
            return Ok(keys);
        }
        let keys = parse(inline.as_bytes(), "JWKS").map_err(ProxyError::misconfigured)?;
        return Ok(remember(inline, keys, now_ms));
    }
    let Some(url) = &config.keys.jwks_url else {
        return Ok(Rc::default());
    };
    let max_age_ms = u64::try_from(config.keys.jwks_cache.as_millis()).unwrap_or(u64::MAX);
    if !refetch {
        if let Some(keys) = cached(url, Some(max_age_ms), now_ms) {
            return Ok(keys);
        }
        if let Some(document) = from_cache_api(url).await {
            if let Ok(keys) = parse(&document, "JWKS_URL (cached)") {
                return Ok(remember(url, keys, now_ms));
            }
        }
    }
    let fetched = fetch_document(url)
        .await
        .and_then(|document| Ok((parse(&document, "JWKS_URL")?, document)));
    match fetched {
        Ok((keys, document)) => {
            to_cache_api(url, document, config.keys.jwks_cache.as_secs()).await;
            Ok(remember(url, keys, now_ms))
        }
        // The provider is down or broken: keep verifying with the keys we had.
        Err(detail) => match cached(url, None, now_ms) {
            Some(stale) => {
                log::warn("jwks_stale", &format!("using the previous key set: {detail}"));
                Ok(stale)
            }
            None => Err(ProxyError::Unavailable {
                detail: format!("cannot load the key set: {detail}"),
            }),
        },
    }
}

fn cached(source: &str, max_age_ms: Option<u64>, now_ms: u64) -> Option<Rc<Vec<KeyEntry>>> {
    CACHED.with_borrow(|cached| {
        let cached = cached.as_ref().filter(|c| c.source == source)?;
        let fresh = max_age_ms.is_none_or(|max_age| now_ms.saturating_sub(cached.fetched_at_ms) < max_age);
        fresh.then(|| cached.keys.clone())
    })
}

fn remember(source: &str, keys: Vec<KeyEntry>, now_ms: u64) -> Rc<Vec<KeyEntry>> {
    let keys = Rc::new(keys);
    CACHED.set(Some(CachedKeys {
        source: source.to_owned(),
        keys: keys.clone(),
        fetched_at_ms: now_ms,
    }));
    keys
}

/// Parses a key set; keys that cannot be used are skipped and logged, not fatal.
fn parse(document: &[u8], origin: &str) -> Result<Vec<KeyEntry>, String> {
    let parsed = auth::parse_jwks(document).map_err(|e| format!("{origin} is not a usable key set: {e}"))?;
    for skipped in &parsed.skipped {
        log::warn("jwks_key_skipped", &format!("{origin}: {skipped}"));
    }
    Ok(parsed.keys)
}

async fn fetch_document(url: &str) -> Result<Vec<u8>, String> {
    let controller = AbortController::default();
    let headers = Headers::new();
    headers.set("accept", "application/json").map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_headers(headers);
    let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
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
    if response.status_code() != 200 {
        return Err(format!("answered {}", response.status_code()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    Ok(body)
}

async fn from_cache_api(url: &str) -> Option<Vec<u8>> {
    let mut response = Cache::default().get(url, false).await.ok()??;
    response.bytes().await.ok()
}

/// Best effort: a failed cache write only costs a later fetch.
async fn to_cache_api(url: &str, document: Vec<u8>, max_age_seconds: u64) {
    if max_age_seconds == 0 {
        return;
    }
    let stored = Response::from_bytes(document).and_then(|mut response| {
        let headers = response.headers_mut();
        headers.set("cache-control", &format!("max-age={max_age_seconds}"))?;
        headers.set("content-type", "application/json")?;
        Ok(response)
    });
    if let Ok(response) = stored {
        if let Err(error) = Cache::default().put(url, response).await {
            log::warn("jwks_cache_write_failed", &error.to_string());
        }
    }
}
