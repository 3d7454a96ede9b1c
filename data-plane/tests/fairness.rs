//! Fairness: one organization flooding a node leaves another organization's p99 latency within
//! 2× of its unloaded value. Its own test binary, so no other test shares the machine's two
//! cores with the flood while latencies are measured.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use data_plane::config::Settings;
use shared::config::ProviderKind;
use testkit::fake_openai::{self, FakeOpenAi};
use uuid::Uuid;

/// Polls `check` until it holds or [`WAIT`] passes.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// Two workers, like the binaries on this machine: the flood and B share them as they would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organization_flooding_a_node_leaves_another_within_twice_its_latency() {
    let fake = FakeOpenAi::builder()
        .record_requests(false)
        .start()
        .await
        .unwrap();
    let gw = Gateway::start_with(Settings {
        max_concurrent_per_org: 8,
        ..Settings::default()
    })
    .await;
    let org_b = Uuid::new_v4();
    let key_a = gw.key();
    let key_b = gw.add_key_for(org_b, KeyOptions::default());
    let pa = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant(
        vec![pa.clone()],
        vec![deployment("hang", &pa, fake_openai::MODEL_HANG)],
    );
    let pb = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant_for(
        org_b,
        vec![pb.clone()],
        vec![deployment("slow", &pb, fake_openai::MODEL_SLOW)],
    );
    let gw = Arc::new(gw);

    // B's latency alone: the upstream takes `SLOW_DELAY`.
    const SAMPLES: usize = 30;
    async fn p99(gw: &Gateway, key: &str) -> Duration {
        let mut latencies = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let response = gw.chat(key, user_message("slow", "hi")).await;
            assert_eq!(response.status(), 200, "B is served");
            let _ = response.bytes().await;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        latencies[(SAMPLES * 99).div_ceil(100) - 1]
    }
    let unloaded = p99(&gw, &key_b).await;

    const FLOOD_PAUSE: Duration = Duration::from_millis(10);
    // A floods: 32 clients sending back to back, never honouring Retry-After. A's admitted
    // requests hang upstream; the rest must be refused at once rather than queued.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..32 {
        let (gw, key, stop, refused) = (
            Arc::clone(&gw),
            key_a.clone(),
            Arc::clone(&stop),
            Arc::clone(&refused),
        );
        flood.push(tokio::spawn(async move {
            // Bounded: at most this many requests per client.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = gw.chat(&key, user_message("hang", "flood")).await;
                if response.status() == 429 {
                    refused.fetch_add(1, Ordering::Relaxed);
                    // A client on this machine, unlike a real flood from elsewhere, takes its CPU
                    // from the gateway under test: a short pause keeps the flood at a few
                    // thousand refused requests a second instead of starving both.
                    tokio::time::sleep(FLOOD_PAUSE).await;
                }
            }
        }));
    }
    eventually("A's flood to be refused", || {
        refused.load(Ordering::Relaxed) > 100
    })
    .await;
    let loaded = p99(&gw, &key_b).await;
    stop.store(true, Ordering::Relaxed);
    drop(fake); // releases A's hanging requests
    for task in flood {
        let _ = task.await;
    }
    eprintln!("B's p99: {unloaded:?} alone, {loaded:?} under A's flood");
    assert!(
        loaded <= unloaded * 2,
        "B's p99 went from {unloaded:?} to {loaded:?} under A's flood"
    );
}
