//! `UsageSink` against a real Redis: events land in the usage stream, survive an outage while
//! queued, and the in-process variant feeds the channel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;

use std::collections::HashSet;
use std::time::Duration;

use bus_support::*;
use data_plane::store::redis_pool;
use data_plane::store::stream::parse_entries;
use data_plane::usage_sink::UsageSink;
use shared::usage::UsageEvent;
use uuid::Uuid;

/// A non-streamed variant of the shared test event.
fn event() -> UsageEvent {
    UsageEvent {
        stream: false,
        cost_micros: 42,
        ttft_ms: None,
        ..testkit::records::usage_event()
    }
}

async fn stream_events(keys: &shared::config::RedisKeys) -> Vec<UsageEvent> {
    let mut c = conn().await;
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(keys.usage())
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    parse_entries(reply)
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(e.field("event").expect("field `event`")).unwrap())
        .collect()
}

#[tokio::test]
async fn events_land_in_the_usage_stream() {
    let p = Prefix::new();
    let sink = UsageSink::redis(redis_pool(&redis_url()).unwrap(), p.keys.clone());
    let sent: Vec<UsageEvent> = (0..1200).map(|_| event()).collect();
    for e in &sent {
        sink.emit(e.clone()).await;
    }
    assert_eq!(sink.flush(DEADLINE).await, 0);
    let got = stream_events(&p.keys).await;
    assert_eq!(got.len(), sent.len());
    assert_eq!(got, sent, "in order, byte-for-byte the same events");
}

#[tokio::test]
async fn events_queue_during_an_outage_and_are_written_after_it() {
    let p = Prefix::new();
    let mut proxy = Proxy::start(redis_target()).await.unwrap();
    let addr = proxy.addr;
    proxy.stop().await;
    let sink = UsageSink::redis(
        redis_pool(&format!("redis://{addr}")).unwrap(),
        p.keys.clone(),
    );
    let sent: Vec<UsageEvent> = (0..10).map(|_| event()).collect();
    for e in &sent {
        sink.emit(e.clone()).await;
    }
    assert_eq!(
        sink.flush(Duration::from_millis(300)).await,
        10,
        "nothing written, nothing dropped"
    );

    let _proxy = Proxy::start_on(addr, redis_target()).await.unwrap();
    assert_eq!(sink.flush(DEADLINE).await, 0, "written once Redis is back");
    let got: HashSet<Uuid> = stream_events(&p.keys).await.iter().map(|e| e.id).collect();
    assert!(
        sent.iter().all(|e| got.contains(&e.id)),
        "every event arrived (at least once)"
    );
}

#[tokio::test]
async fn in_memory_sink_feeds_the_channel() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let sink = UsageSink::in_memory(tx);
    let e = event();
    sink.emit(e.clone()).await;
    assert_eq!(
        sink.flush(Duration::from_millis(50)).await,
        1,
        "still queued: nobody drained it"
    );
    assert_eq!(rx.recv().await.unwrap(), e);
    assert_eq!(sink.flush(Duration::from_millis(50)).await, 0);
}
