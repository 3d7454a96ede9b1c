//! The usage spool against a real Redis: an outage sends events to the spool and recovery
//! replays them; a spool left by a killed process is replayed at start (a torn last line
//! skipped); the bound holds events in memory rather than dropping them; a shutdown flush spools
//! what Redis did not take; one spool directory per process. Outages are played with a
//! `Proxy` in front of the shared Redis (or a socket that never answers), never by stopping it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use bus_support::*;
use data_plane::store::redis_pool;
use data_plane::store::stream::parse_entries;
use data_plane::usage_sink::UsageSink;
use data_plane::usage_spool::{Spool, SpoolError};
use shared::usage::UsageEvent;
use uuid::Uuid;

const GIB: u64 = 1 << 30;

fn event() -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        stream: false,
        ttft_ms: None,
        ..testkit::records::usage_event()
    }
}

fn events(n: usize) -> Vec<UsageEvent> {
    (0..n).map(|_| event()).collect()
}

async fn stream_ids(keys: &shared::config::RedisKeys) -> HashSet<Uuid> {
    let mut c = conn().await;
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(keys.usage())
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .expect("XRANGE");
    parse_entries(reply)
        .expect("stream entries")
        .iter()
        .map(|e| {
            serde_json::from_slice::<UsageEvent>(e.field("event").expect("field `event`"))
                .expect("a usage event")
                .id
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("spool dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect()
}

fn ids(events: &[UsageEvent]) -> HashSet<Uuid> {
    events.iter().map(|e| e.id).collect()
}

async fn wait_all_in_stream(keys: &shared::config::RedisKeys, want: &HashSet<Uuid>) {
    testkit::poll::eventually("every event in the stream", DEADLINE, || async {
        stream_ids(keys).await.is_superset(want)
    })
    .await;
}

#[tokio::test]
async fn an_outage_spools_events_and_recovery_replays_them() {
    let p = Prefix::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut proxy = Proxy::start(redis_target()).await.expect("proxy");
    let addr = proxy.addr;
    let pool = redis_pool(&format!("redis://{addr}")).expect("pool");
    let sink = UsageSink::redis_spooled(
        pool,
        p.keys.clone(),
        Spool::open(dir.path(), GIB).expect("spool"),
    );

    // Redis up: straight to the stream, the spool stays empty.
    let before = events(10);
    for e in &before {
        sink.emit(e.clone()).await;
    }
    assert_eq!(sink.flush(DEADLINE).await, 0);
    assert_eq!(sink.spool_status().expect("spooled sink").events, 0);

    proxy.stop().await;
    let during = events(1200);
    for e in &during {
        sink.emit(e.clone()).await;
    }
    // The spool counts as written: a flush during the outage returns at once with nothing left.
    assert_eq!(sink.flush(DEADLINE).await, 0, "everything spooled");
    assert_eq!(sink.spool_status().expect("spooled sink").events, 1200);
    assert!(!segment_files(dir.path()).is_empty(), "segments on disk");

    let _proxy = Proxy::start_on(addr, redis_target())
        .await
        .expect("proxy back");
    let mut want = ids(&before);
    want.extend(ids(&during));
    wait_all_in_stream(&p.keys, &want).await;
    testkit::poll::eventually("the spool is emptied", DEADLINE, || async {
        sink.spool_status().expect("spooled sink").events == 0
            && segment_files(dir.path()).is_empty()
    })
    .await;

    // Direct mode again.
    let after = events(5);
    for e in &after {
        sink.emit(e.clone()).await;
    }
    assert_eq!(sink.flush(DEADLINE).await, 0);
    wait_all_in_stream(&p.keys, &ids(&after)).await;
    assert!(segment_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_spool_left_by_a_killed_process_is_replayed_at_start_skipping_a_torn_line() {
    let p = Prefix::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let left = events(700);
    {
        let mut spool = Spool::open(dir.path(), GIB).expect("spool");
        let lines: Vec<String> = left
            .iter()
            .map(|e| serde_json::to_string(e).expect("json"))
            .collect();
        spool.append(&lines[..400]).expect("append");
        spool.append(&lines[400..]).expect("append");
        assert_eq!(spool.events(), 700);
    }
    // A crash in the middle of the next write: half a line, no newline.
    let segment = segment_files(dir.path()).pop().expect("a segment");
    let torn = serde_json::to_string(&event()).expect("json");
    let mut data = std::fs::read(&segment).expect("read");
    data.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    std::fs::write(&segment, data).expect("write");

    let spool = Spool::open(dir.path(), GIB).expect("reopened after the crash");
    assert_eq!(spool.events(), 700, "complete lines only");
    let sink = UsageSink::redis_spooled(
        redis_pool(&redis_url()).expect("pool"),
        p.keys.clone(),
        spool,
    );
    wait_all_in_stream(&p.keys, &ids(&left)).await;
    testkit::poll::eventually("the spool is emptied", DEADLINE, || async {
        sink.spool_status().expect("spooled sink").events == 0
            && segment_files(dir.path()).is_empty()
    })
    .await;
    assert_eq!(
        stream_ids(&p.keys).await.len(),
        700,
        "the torn line was skipped"
    );
}

#[test]
fn a_spool_directory_is_locked_by_one_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = Spool::open(dir.path(), GIB).expect("first");
    let err = Spool::open(dir.path(), GIB).expect_err("second refused");
    assert!(err.to_string().contains("locked"), "{err}");
}

#[test]
fn the_spool_refuses_a_batch_that_crosses_its_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool = Spool::open(dir.path(), 100).expect("spool");
    spool
        .append(&vec!["{\"a\":1}".to_owned(); 10])
        .expect("80 bytes fit");
    match spool.append(&vec!["{\"b\":2}".to_owned(); 3]) {
        Err(SpoolError::Full { bytes, max_bytes }) => {
            assert_eq!((bytes, max_bytes), (80, 100));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(spool.events(), 10);
    assert_eq!(spool.bytes(), 80);
}

#[tokio::test]
async fn a_full_spool_holds_events_in_memory_and_loses_none() {
    let p = Prefix::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut proxy = Proxy::start(redis_target()).await.expect("proxy");
    let addr = proxy.addr;
    proxy.stop().await;
    // Room for about one batch of small events, not for all of them.
    let line = serde_json::to_string(&event()).expect("json").len() as u64 + 1;
    let sink = UsageSink::redis_spooled(
        redis_pool(&format!("redis://{addr}")).expect("pool"),
        p.keys.clone(),
        Spool::open(dir.path(), line * 150).expect("spool"),
    );
    let sent = events(400);
    for e in &sent[..100] {
        sink.emit(e.clone()).await;
    }
    assert_eq!(
        sink.flush(DEADLINE).await,
        0,
        "the first 100 fit in the spool"
    );
    for e in &sent[100..] {
        sink.emit(e.clone()).await;
    }
    let left = sink.flush(Duration::from_millis(400)).await;
    assert_eq!(left, 300, "held in memory, not dropped");
    assert_eq!(sink.spool_status().expect("spooled sink").events, 100);

    let _proxy = Proxy::start_on(addr, redis_target())
        .await
        .expect("proxy back");
    assert_eq!(sink.flush(DEADLINE).await, 0, "written once Redis is back");
    wait_all_in_stream(&p.keys, &ids(&sent)).await;
}

#[tokio::test]
async fn a_shutdown_flush_spools_what_a_hanging_redis_did_not_take() {
    let p = Prefix::new();
    let dir = tempfile::tempdir().expect("temp dir");
    // Accepts connections (in the kernel's backlog) and never answers: writes hang.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = hang.local_addr().expect("addr");
    let sink = UsageSink::redis_spooled(
        redis_pool(&format!("redis://{addr}")).expect("pool"),
        p.keys.clone(),
        Spool::open(dir.path(), GIB).expect("spool"),
    );
    let sent = events(50);
    for e in &sent {
        sink.emit(e.clone()).await;
    }
    let started = std::time::Instant::now();
    assert_eq!(
        sink.flush(Duration::from_secs(2)).await,
        0,
        "spooled after Redis had its share of the deadline"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sink.spool_status().expect("spooled sink").events, 50);
    drop(sink);

    // The next process replays them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let spool = loop {
        // The writer task releases the lock once it notices the sink is gone.
        match Spool::open(dir.path(), GIB) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("spool still locked: {e}"),
        }
    };
    assert_eq!(spool.events(), 50);
    let _sink = UsageSink::redis_spooled(
        redis_pool(&redis_url()).expect("pool"),
        p.keys.clone(),
        spool,
    );
    wait_all_in_stream(&p.keys, &ids(&sent)).await;
}
