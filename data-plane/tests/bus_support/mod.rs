//! Helpers for the `bus_*` integration tests: raw Redis writes that follow the publish protocol
//! (so these tests need not depend on the control plane), and the shared parts from `testkit`
//! (records, a fresh prefix, poll-with-deadline, and a TCP proxy in front of the real Redis that
//! a test can cut and restore to simulate an outage).

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shared::config::{ChangeKind, ConfigChange, KeyRecord, RedisKeys, TenantConfig};
pub use testkit::records::{key_record, random_hash};
pub use testkit::redis_prefix::{PrefixGuard as Prefix, redis_url};
pub use testkit::tcp_proxy::Proxy;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn conn() -> MultiplexedConnection {
    testkit::redis_prefix::connect()
        .await
        .expect("Redis at 127.0.0.1:6379")
}

/// Appends a change to the change log, like the publisher's script; returns the entry id.
pub async fn append_change(
    c: &mut MultiplexedConnection,
    keys: &RedisKeys,
    kind: ChangeKind,
    id: &str,
    version: i64,
) -> String {
    let change = ConfigChange {
        kind,
        id: id.to_owned(),
        version,
        seq: String::new(),
    };
    redis::cmd("XADD")
        .arg(keys.changes())
        .arg("*")
        .arg("change")
        .arg(serde_json::to_string(&change).unwrap())
        .query_async(c)
        .await
        .unwrap()
}

pub async fn announce(
    c: &mut MultiplexedConnection,
    keys: &RedisKeys,
    kind: ChangeKind,
    id: &str,
    version: i64,
    seq: &str,
) {
    let change = ConfigChange {
        kind,
        id: id.to_owned(),
        version,
        seq: seq.to_owned(),
    };
    let _: i64 = redis::cmd("PUBLISH")
        .arg(keys.channel())
        .arg(serde_json::to_string(&change).unwrap())
        .query_async(c)
        .await
        .unwrap();
}

/// SET + XADD (+ PUBLISH when `announce_it`), the publisher's protocol minus the version check.
pub async fn write_key(
    c: &mut MultiplexedConnection,
    keys: &RedisKeys,
    record: &KeyRecord,
    announce_it: bool,
) -> String {
    let _: () = redis::cmd("SET")
        .arg(keys.key(&record.key_hash))
        .arg(serde_json::to_string(record).unwrap())
        .query_async(c)
        .await
        .unwrap();
    let seq = append_change(c, keys, ChangeKind::Key, &record.key_hash, record.version).await;
    if announce_it {
        announce(
            c,
            keys,
            ChangeKind::Key,
            &record.key_hash,
            record.version,
            &seq,
        )
        .await;
    }
    seq
}

pub async fn write_tenant(
    c: &mut MultiplexedConnection,
    keys: &RedisKeys,
    config: &TenantConfig,
    announce_it: bool,
) -> String {
    let _: () = redis::cmd("SET")
        .arg(keys.tenant(config.tenant_id))
        .arg(serde_json::to_string(config).unwrap())
        .query_async(c)
        .await
        .unwrap();
    let id = config.tenant_id.to_string();
    let seq = append_change(c, keys, ChangeKind::Tenant, &id, config.version).await;
    if announce_it {
        announce(c, keys, ChangeKind::Tenant, &id, config.version, &seq).await;
    }
    seq
}

/// Polls `check` until it returns true or [`DEADLINE`] passes.
pub async fn eventually<Fut: Future<Output = bool>>(what: &str, check: impl FnMut() -> Fut) {
    testkit::poll::eventually(what, DEADLINE, check).await;
}

/// The test Redis's address, for a [`Proxy`] in front of it.
pub fn redis_target() -> SocketAddr {
    testkit::redis_prefix::redis_addr().expect("the test Redis address")
}
