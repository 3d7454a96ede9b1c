//! Helpers for the control plane's `bus_*` integration tests (real Redis, fresh prefix per test).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shared::config::{KeyRecord, RedisKeys};
use shared::usage::{UsageEvent, UsageOutcome};
use time::OffsetDateTime;
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn redis_url() -> String {
    testkit::redis_prefix::redis_url()
}

/// A fresh prefix whose keys are deleted on drop (best effort).
pub struct Prefix {
    pub keys: RedisKeys,
}

impl Prefix {
    pub fn new() -> Self {
        Self {
            keys: RedisKeys::new(testkit::redis_prefix::fresh_prefix()),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let prefix = self.keys.prefix().to_owned();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(testkit::redis_prefix::delete_prefix(&redis_url(), &prefix));
            }
        })
        .join();
    }
}

pub async fn conn() -> MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at 127.0.0.1:6379")
}

pub fn pool() -> deadpool_redis::Pool {
    data_plane::store::redis_pool(&redis_url()).unwrap()
}

pub fn random_hash() -> String {
    shared::keys::hash_api_key(&Uuid::new_v4().to_string())
}

pub fn key_record(hash: &str, version: i64) -> KeyRecord {
    KeyRecord {
        key_id: Uuid::new_v4(),
        key_hash: hash.to_owned(),
        tenant_id: Uuid::new_v4(),
        team_id: None,
        name: "test key".into(),
        allowed_models: None,
        expires_at: None,
        revoked_at: None,
        version,
    }
}

pub fn event() -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        tenant_id: Uuid::new_v4(),
        key_id: Some(Uuid::new_v4()),
        team_id: None,
        model: "gpt-test".into(),
        deployment_id: None,
        provider_id: None,
        provider: Some("mock".into()),
        upstream_model: None,
        endpoint: "chat.completions".into(),
        stream: true,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: 12,
        completion_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: 7,
        latency_ms: 3,
        ttft_ms: Some(1),
        started_at: OffsetDateTime::now_utc(),
    }
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
