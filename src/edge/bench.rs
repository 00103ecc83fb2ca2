//! Bench-only counters: how many requests this isolate served and how many Durable Object
//! calls it made for them, so `make bench` can print "DO calls per request". The counts are
//! kept always (a few integer adds); they are readable only at `GET /__bench/counters`, and
//! only when the var `BENCH_COUNTERS` is `true`: otherwise the path is an ordinary 404.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use worker::{Env, Request, Response};

const PATH: &str = "/__bench/counters";

thread_local! {
    static REQUESTS: Cell<u64> = const { Cell::new(0) };
    static OBJECT_CALLS: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts one request the Worker serves (the counters' own reads are not counted).
pub fn count_request() {
    REQUESTS.set(REQUESTS.get() + 1);
}

/// Counts one call to an object of the namespace `binding`.
pub fn count_object_call(binding: &'static str) {
    OBJECT_CALLS.with_borrow_mut(|calls| *calls.entry(binding).or_default() += 1);
}

/// The counters as JSON, if `req` asks for them and the var enables them.
pub fn counters(req: &Request, env: &Env) -> Option<worker::Result<Response>> {
    if req.path() != PATH || super::env_string(env, "BENCH_COUNTERS").as_deref() != Some("true") {
        return None;
    }
    let calls = OBJECT_CALLS.with_borrow(Clone::clone);
    // What the isolate still holds back: calls it will make without any further request.
    let held = super::settlement::held_count();
    let body = serde_json::json!({ "requests": REQUESTS.get(), "object_calls": calls, "held": held });
    Some(Response::from_json(&body))
}
