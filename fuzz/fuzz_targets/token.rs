//! Arbitrary bytes as a bearer token, against a shared secret and an identity provider's
//! keys (RS256, ES256, EdDSA): never a panic, and nothing but a properly signed token passes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openai_edge_proxy::testing::auth::{self, parse_jwks, ClaimRules, HmacAlgorithm, KeyEntry, KeySet, VerifyingKey};
use openai_edge_proxy::testing::config::Secret;

const NOW: i64 = 1_800_000_000;
const JWKS: &[u8] = include_bytes!("../jwks.json");

fn key_sets() -> &'static [KeySet; 2] {
    static KEY_SETS: OnceLock<[KeySet; 2]> = OnceLock::new();
    KEY_SETS.get_or_init(|| {
        let secret = Secret::new("a-fuzzing-secret-that-is-32-bytes-long");
        [
            KeySet {
                keys: vec![KeyEntry {
                    kid: None,
                    key: VerifyingKey::Hmac {
                        algorithm: HmacAlgorithm::Hs256,
                        secret,
                    },
                }],
            },
            KeySet {
                keys: parse_jwks(JWKS)
                    .expect("the key set parses")
                    .keys
                    .into_iter()
                    .map(KeyEntry::from)
                    .collect(),
            },
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = auth::bearer_token(Some(token));
    let rules = ClaimRules {
        issuer: None,
        audience: None,
        leeway_seconds: 30,
        max_ttl_seconds: 86_400,
        plan_claim: "plan".into(),
    };
    for keys in key_sets() {
        // The fuzzer cannot sign with keys it does not hold: any token it makes up must fail.
        assert!(
            auth::verify(token, keys, &rules, NOW).is_err(),
            "an unsigned token verified: {token:?}"
        );
    }
});
