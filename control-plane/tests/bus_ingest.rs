//! Usage events end to end over a real Redis: `UsageSink` → `{prefix}usage` → the consumer
//! group ingest → a `UsageWriter`; plus retries, restarts, dead consumers and malformed entries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_support::*;
use control_plane::ingest::{
    IngestOptions, UsageWriter, spawn_memory_ingest, spawn_redis_ingest,
    spawn_redis_ingest_with_options,
};
use data_plane::usage_sink::UsageSink;
use futures::future::BoxFuture;
use shared::config::RedisKeys;
use shared::usage::UsageEvent;
use tokio::sync::watch;
use uuid::Uuid;

/// Behaves like the real writer: idempotent by event id. Can be told to fail.
#[derive(Default)]
struct Collect {
    stored: Mutex<HashMap<Uuid, UsageEvent>>,
    /// Events handed over again after they were stored (re-deliveries).
    duplicates: AtomicUsize,
    failing: AtomicBool,
    failures: AtomicUsize,
}

impl Collect {
    fn failing() -> Arc<Self> {
        let c = Self::default();
        c.failing.store(true, Ordering::SeqCst);
        Arc::new(c)
    }

    fn ids(&self) -> HashSet<Uuid> {
        self.stored.lock().unwrap().keys().copied().collect()
    }
}

impl UsageWriter for Collect {
    fn write<'a>(&'a self, events: &'a [UsageEvent]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                self.failures.fetch_add(1, Ordering::SeqCst);
                anyhow::bail!("database unavailable");
            }
            let mut stored = self.stored.lock().unwrap();
            for e in events {
                if stored.insert(e.id, e.clone()).is_some() {
                    self.duplicates.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        })
    }
}

async fn pending_count(keys: &RedisKeys) -> i64 {
    let mut c = conn().await;
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(keys.usage())
        .arg(RedisKeys::USAGE_GROUP)
        .query_async(&mut c)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply: {other:?}"),
        },
        other => panic!("unexpected XPENDING reply: {other:?}"),
    }
}

async fn stream_len(keys: &RedisKeys) -> i64 {
    let mut c = conn().await;
    redis::cmd("XLEN")
        .arg(keys.usage())
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn emit_all(keys: &RedisKeys, n: usize) -> HashSet<Uuid> {
    let sink = UsageSink::redis(pool(), keys.clone());
    let mut ids = HashSet::new();
    for _ in 0..n {
        let e = event();
        ids.insert(e.id);
        sink.emit(e).await;
    }
    assert_eq!(sink.flush(DEADLINE).await, 0);
    ids
}

async fn stop(tx: &watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    tx.send_replace(true);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("ingest stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn every_event_is_stored_exactly_once_and_the_stream_drains() {
    let p = Prefix::new();
    let writer = Arc::new(Collect::default());
    let (tx, rx) = watch::channel(false);
    let task = spawn_redis_ingest(pool(), p.keys.clone(), "node-a".into(), writer.clone(), rx);
    let sent = emit_all(&p.keys, 1200).await;
    eventually("all events stored", || async {
        writer.ids().len() == sent.len()
    })
    .await;
    assert_eq!(writer.ids(), sent);
    assert_eq!(writer.duplicates.load(Ordering::SeqCst), 0);
    eventually("acknowledged entries are deleted", || async {
        stream_len(&p.keys).await == 0
    })
    .await;
    assert_eq!(pending_count(&p.keys).await, 0);
    stop(&tx, task).await;
}

#[tokio::test]
async fn nothing_is_acknowledged_until_the_writer_succeeds() {
    let p = Prefix::new();
    let writer = Collect::failing();
    let (tx, rx) = watch::channel(false);
    let task = spawn_redis_ingest(pool(), p.keys.clone(), "node-a".into(), writer.clone(), rx);
    let sent = emit_all(&p.keys, 20).await;
    eventually("delivered, retried, still pending", || async {
        writer.failures.load(Ordering::SeqCst) >= 2 && pending_count(&p.keys).await == 20
    })
    .await;
    assert!(writer.ids().is_empty());
    assert_eq!(
        stream_len(&p.keys).await,
        20,
        "nothing deleted before it is stored"
    );

    writer.failing.store(false, Ordering::SeqCst);
    eventually("stored after the writer recovers", || async {
        writer.ids() == sent
    })
    .await;
    eventually("then acknowledged", || async {
        pending_count(&p.keys).await == 0
    })
    .await;
    stop(&tx, task).await;
}

#[tokio::test]
async fn a_restarted_consumer_gets_its_pending_entries_again() {
    let p = Prefix::new();
    let broken = Collect::failing();
    let (tx, rx) = watch::channel(false);
    let first = spawn_redis_ingest(pool(), p.keys.clone(), "node-a".into(), broken.clone(), rx);
    let sent = emit_all(&p.keys, 5).await;
    eventually("delivered to node-a, unacknowledged", || async {
        broken.failures.load(Ordering::SeqCst) >= 1 && pending_count(&p.keys).await == 5
    })
    .await;
    stop(&tx, first).await;
    assert_eq!(
        pending_count(&p.keys).await,
        5,
        "a stopped ingest leaves its batch pending"
    );

    let writer = Arc::new(Collect::default());
    let (tx, rx) = watch::channel(false);
    let second = spawn_redis_ingest(pool(), p.keys.clone(), "node-a".into(), writer.clone(), rx);
    eventually("re-delivered to the same consumer name", || async {
        writer.ids() == sent
    })
    .await;
    eventually("acknowledged", || async {
        pending_count(&p.keys).await == 0
    })
    .await;
    stop(&tx, second).await;
}

#[tokio::test]
async fn entries_of_a_dead_consumer_are_claimed() {
    let p = Prefix::new();
    let mut c = conn().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(p.keys.usage())
        .arg(RedisKeys::USAGE_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .unwrap();
    let sent = emit_all(&p.keys, 3).await;
    // A consumer that reads and then dies without acknowledging.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(RedisKeys::USAGE_GROUP)
        .arg("dead-node")
        .arg("STREAMS")
        .arg(p.keys.usage())
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pending_count(&p.keys).await, 3);

    let writer = Arc::new(Collect::default());
    let (tx, rx) = watch::channel(false);
    let options = IngestOptions {
        claim_min_idle: Duration::from_millis(200),
        claim_interval: Duration::from_millis(200),
    };
    let task = spawn_redis_ingest_with_options(
        pool(),
        p.keys.clone(),
        "alive-node".into(),
        writer.clone(),
        rx,
        options,
    );
    eventually("claimed and stored", || async { writer.ids() == sent }).await;
    eventually("acknowledged", || async {
        pending_count(&p.keys).await == 0
    })
    .await;
    stop(&tx, task).await;
}

#[tokio::test]
async fn malformed_entries_are_acknowledged_and_skipped() {
    let p = Prefix::new();
    let mut c = conn().await;
    for (field, value) in [
        ("event", "not json".to_string()),
        ("other", "x".to_string()),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(p.keys.usage())
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let sent = emit_all(&p.keys, 1).await;
    let writer = Arc::new(Collect::default());
    let (tx, rx) = watch::channel(false);
    let task = spawn_redis_ingest(pool(), p.keys.clone(), "node-a".into(), writer.clone(), rx);
    eventually("the good event is stored", || async {
        writer.ids() == sent
    })
    .await;
    eventually("bad entries do not block the stream", || async {
        pending_count(&p.keys).await == 0 && stream_len(&p.keys).await == 0
    })
    .await;
    stop(&tx, task).await;
}

#[tokio::test]
async fn memory_ingest_drains_until_senders_are_gone() {
    let writer = Collect::failing();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (_shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = spawn_memory_ingest(rx, writer.clone(), shutdown_rx);
    let sink = UsageSink::in_memory(tx);
    let mut sent = HashSet::new();
    for _ in 0..10 {
        let e = event();
        sent.insert(e.id);
        sink.emit(e).await;
    }
    eventually("the writer was retried", || async {
        writer.failures.load(Ordering::SeqCst) >= 2
    })
    .await;
    writer.failing.store(false, Ordering::SeqCst);
    drop(sink);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("ends when senders are dropped")
        .unwrap();
    assert_eq!(writer.ids(), sent);
}

#[tokio::test]
async fn memory_ingest_drains_what_is_queued_on_shutdown() {
    let writer = Arc::new(Collect::default());
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut sent = HashSet::new();
    for _ in 0..10 {
        let e = event();
        sent.insert(e.id);
        tx.send(e).await.unwrap();
    }
    let task = spawn_memory_ingest(rx, writer.clone(), shutdown_rx);
    shutdown_tx.send_replace(true);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("stops on shutdown with a live sender")
        .unwrap();
    assert_eq!(writer.ids(), sent);
    assert!(tx.send(event()).await.is_err(), "closed after shutdown");
}
