//! When an identity provider's key set (`JWKS_URL`) may be fetched again, and how long a set
//! may keep verifying tokens once it can no longer be refreshed. Times are milliseconds; the
//! edge keeps one `FetchLog` per isolate and asks it before every fetch.
//!
//! A provider that is down must not be called by every request (each waits up to the fetch
//! timeout), and a set fetched long ago must not verify tokens forever: keys a provider
//! removed (because they leaked, say) would keep working.

use base64ct::{Base64UrlUnpadded, Encoding};
use subtle::ConstantTimeEq;

/// At most one fetch attempt per isolate in this time, whatever `JWKS_CACHE_SECONDS` says
/// (0 included), and at most one refetch for unknown `kid`s.
pub const MIN_FETCH_INTERVAL_MS: u64 = 30_000;
/// The oldest set that still verifies tokens while the provider cannot be reached; past it,
/// requests fail closed (503).
pub const MAX_STALE_MS: u64 = 24 * 60 * 60 * 1000;

/// The fetches an isolate made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchLog {
    last_attempt_ms: Option<u64>,
    last_failure_ms: Option<u64>,
    last_unknown_kid_ms: Option<u64>,
}

impl FetchLog {
    /// A set past its cache time may be fetched again: no attempt in the last interval.
    pub fn may_refresh(&self, now_ms: u64) -> bool {
        !recent(self.last_attempt_ms, now_ms)
    }

    /// A token named a `kid` the held set lacks: the provider may have rotated its keys. One
    /// refetch per interval, and none while backing off after a failure.
    pub fn may_refetch_for_unknown_kid(&self, now_ms: u64) -> bool {
        !recent(self.last_unknown_kid_ms, now_ms) && !recent(self.last_failure_ms, now_ms)
    }

    /// A fetch starts; recorded before it is awaited, so that requests arriving meanwhile
    /// do not start their own.
    pub fn started(&mut self, now_ms: u64) {
        self.last_attempt_ms = Some(now_ms);
    }

    /// The fetch that started at `started_ms` failed.
    pub fn failed(&mut self, started_ms: u64) {
        self.last_failure_ms = Some(started_ms);
    }

    pub fn refetched_for_unknown_kid(&mut self, now_ms: u64) {
        self.last_unknown_kid_ms = Some(now_ms);
    }
}

fn recent(at_ms: Option<u64>, now_ms: u64) -> bool {
    at_ms.is_some_and(|at| now_ms.saturating_sub(at) < MIN_FETCH_INTERVAL_MS)
}

/// How a set fetched at `fetched_at_ms` may be used at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its cache time.
    Fresh,
    /// Past its cache time, but still usable when a refresh fails or is not allowed.
    Stale,
    /// Too old to verify anything (or dated in the future: not ours to trust).
    Expired,
}

pub fn freshness(fetched_at_ms: u64, cache_ms: u64, now_ms: u64) -> Freshness {
    // A little clock skew between isolates is normal; a date far ahead is not.
    if fetched_at_ms > now_ms.saturating_add(MIN_FETCH_INTERVAL_MS) {
        return Freshness::Expired;
    }
    let age = now_ms.saturating_sub(fetched_at_ms);
    if age < cache_ms {
        Freshness::Fresh
    } else if age <= MAX_STALE_MS {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// Domain separation: this key seals cached key sets and nothing else.
const SEAL_LABEL: &[u8] = b"openai-edge-proxy jwks cache seal v1";

/// Seals the key sets one isolate shares with the others through the Cache API. Another
/// Worker of the zone that knows the cache's name could write an entry there; without the
/// secret this key comes from, it cannot seal one, and an unsealed entry is ignored.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheSeal([u8; 32]);

impl CacheSeal {
    pub fn derive(secret: &str) -> CacheSeal {
        CacheSeal(crate::secret::hmac_sha256(secret.as_bytes(), SEAL_LABEL))
    }

    /// The tag of a key set `document` fetched from `url` at `fetched_at_ms`: every field an
    /// entry is trusted for, each length-prefixed so no two entries share a message.
    pub fn tag(&self, url: &str, fetched_at_ms: u64, document: &[u8]) -> String {
        let mut message = Vec::with_capacity(url.len() + document.len() + 24);
        for field in [url.as_bytes(), &fetched_at_ms.to_be_bytes(), document] {
            message.extend_from_slice(&(field.len() as u64).to_be_bytes());
            message.extend_from_slice(field);
        }
        Base64UrlUnpadded::encode_string(&crate::secret::hmac_sha256(&self.0, &message))
    }

    /// Whether `tag` seals exactly this entry (compared in constant time).
    pub fn verifies(&self, tag: &str, url: &str, fetched_at_ms: u64, document: &[u8]) -> bool {
        bool::from(tag.as_bytes().ct_eq(self.tag(url, fetched_at_ms, document).as_bytes()))
    }
}

impl std::fmt::Debug for CacheSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheSeal(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn a_failing_provider_is_tried_at_most_once_per_interval() {
        let mut log = FetchLog::default();
        assert!(log.may_refresh(T0), "the first fetch is always allowed");
        log.started(T0);
        log.failed(T0);
        for now in [T0, T0 + 1, T0 + MIN_FETCH_INTERVAL_MS - 1] {
            assert!(!log.may_refresh(now), "{now}");
            assert!(
                !log.may_refetch_for_unknown_kid(now),
                "unknown kids do not bypass the back-off"
            );
        }
        assert!(log.may_refresh(T0 + MIN_FETCH_INTERVAL_MS));
        assert!(log.may_refetch_for_unknown_kid(T0 + MIN_FETCH_INTERVAL_MS));
    }

    #[test]
    fn without_a_cache_time_a_healthy_provider_is_still_fetched_once_per_interval() {
        let mut log = FetchLog::default();
        log.started(T0);
        assert!(!log.may_refresh(T0 + 1));
        assert!(log.may_refresh(T0 + MIN_FETCH_INTERVAL_MS));
    }

    #[test]
    fn an_unknown_kid_refetches_right_after_a_good_fetch_but_once_per_interval() {
        let mut log = FetchLog::default();
        log.started(T0);
        assert!(
            log.may_refetch_for_unknown_kid(T0 + 1),
            "a rotation right after a fetch is seen"
        );
        log.refetched_for_unknown_kid(T0 + 1);
        log.started(T0 + 1);
        assert!(!log.may_refetch_for_unknown_kid(T0 + 2));
        assert!(log.may_refetch_for_unknown_kid(T0 + 1 + MIN_FETCH_INTERVAL_MS));
    }

    #[test]
    fn a_set_serves_past_its_cache_time_only_up_to_the_maximum_stale_age() {
        let cache_ms = 600_000;
        assert_eq!(freshness(T0, cache_ms, T0), Freshness::Fresh);
        assert_eq!(freshness(T0, cache_ms, T0 + cache_ms - 1), Freshness::Fresh);
        assert_eq!(freshness(T0, cache_ms, T0 + cache_ms), Freshness::Stale);
        assert_eq!(freshness(T0, cache_ms, T0 + MAX_STALE_MS), Freshness::Stale);
        assert_eq!(freshness(T0, cache_ms, T0 + MAX_STALE_MS + 1), Freshness::Expired);
        assert_eq!(
            freshness(T0, 0, T0),
            Freshness::Stale,
            "a cache time of 0 is never fresh"
        );
    }

    #[test]
    fn a_set_dated_in_the_future_is_not_trusted() {
        assert_eq!(freshness(T0 + 5_000, 600_000, T0), Freshness::Fresh, "clock skew");
        assert_eq!(
            freshness(T0 + 3_600_000, 600_000, T0),
            Freshness::Expired,
            "a planted date far ahead"
        );
    }

    #[test]
    fn a_cached_key_set_is_trusted_only_with_the_tag_of_its_own_url_time_and_bytes() {
        let seal = CacheSeal::derive("a-secret-only-this-worker-holds-32b!");
        let url = "https://id.example.com/.well-known/jwks.json";
        let document = br#"{"keys":[]}"#;
        let tag = seal.tag(url, 1_000, document);
        assert!(seal.verifies(&tag, url, 1_000, document));
        assert!(!seal.verifies("", url, 1_000, document), "no tag");
        assert!(!seal.verifies(&tag, url, 1_001, document), "another time");
        assert!(
            !seal.verifies(&tag, "https://id.example.com/other", 1_000, document),
            "another URL"
        );
        assert!(!seal.verifies(&tag, url, 1_000, br#"{"keys":[{}]}"#), "other keys");
        let planted = CacheSeal::derive("a-guess-at-the-secret-of-32-bytes!!!");
        assert!(!seal.verifies(&planted.tag(url, 1_000, document), url, 1_000, document));
        assert_eq!(format!("{seal:?}"), "CacheSeal(redacted)");
    }
}
