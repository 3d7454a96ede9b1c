//! Helpers for the control plane's `bus_*` integration tests (real Redis, fresh prefix per test).
//! The shared parts live in `testkit`.

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
pub use testkit::records::{key_record, random_hash, usage_event as event};
pub use testkit::redis_prefix::{PrefixGuard as Prefix, redis_url};

pub const DEADLINE: Duration = Duration::from_secs(15);

pub async fn conn() -> MultiplexedConnection {
    testkit::redis_prefix::connect()
        .await
        .expect("Redis at 127.0.0.1:6379")
}

pub fn pool() -> deadpool_redis::Pool {
    data_plane::store::redis_pool(&redis_url()).unwrap()
}

/// Polls `check` until it returns true or [`DEADLINE`] passes.
pub async fn eventually<Fut: Future<Output = bool>>(what: &str, check: impl FnMut() -> Fut) {
    testkit::poll::eventually(what, DEADLINE, check).await;
}
