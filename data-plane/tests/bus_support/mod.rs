//! Helpers for the `bus_*` integration tests: records, raw Redis writes that follow the publish
//! protocol (so these tests need not depend on the control plane), a poll-with-deadline, and a
//! TCP proxy in front of the real Redis that a test can cut and restore to simulate an outage.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use shared::config::{ChangeKind, ConfigChange, KeyRecord, RedisKeys, TenantConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn redis_url() -> String {
    testkit::redis_prefix::redis_url()
}

/// A fresh prefix; the guard deletes its keys when dropped (best effort, on a fresh thread so it
/// works from inside a runtime).
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

pub fn random_hash() -> String {
    shared::keys::hash_api_key(&Uuid::new_v4().to_string())
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

/// A TCP proxy on 127.0.0.1 in front of the test Redis. `stop` closes the listener and every
/// proxied connection (both sides see the connection drop); `start_on` brings it back on the same
/// port.
pub struct Proxy {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        // The port was ours a moment ago; retry briefly in case the OS has not released it yet.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => return Self::serve(l),
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "rebinding {addr}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let target = redis_target();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection task.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        conns.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Cuts every connection and stops listening.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn redis_target() -> SocketAddr {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let hostport = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379");
    hostport
        .parse()
        .unwrap_or_else(|_| "127.0.0.1:6379".parse().unwrap())
}
