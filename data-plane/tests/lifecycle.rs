//! Probes and admission as an orchestrator and a client see them: readiness waits for config,
//! liveness never waits for Redis, a stop turns readiness off at once, and the node's
//! concurrency cap refuses with 503 + `Retry-After` until a slot frees (see
//! `data_plane::lifecycle` and `data_plane::admission`). The SIGTERM sequence itself is in
//! `sigterm.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bus_support::{Prefix, Proxy, eventually, redis_target};
use common::{Gateway, assert_error, deployment, user_message};
use data_plane::config::Settings;
use data_plane::store::{ConfigStore, StoreOptions, redis_pool};
use data_plane::usage_sink::UsageSink;
use data_plane::{AppState, app};
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::crypto::MasterKey;
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::{ChildGuard, command};

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn readiness_waits_for_the_config_store_liveness_never_does() {
    let prefix = Prefix::new();
    // Redis is "down" (the proxy closes every connection) when the node starts.
    let proxy = Proxy::start(redis_target()).await.unwrap();
    proxy.set_up(false);
    let url = proxy.url();
    let store = ConfigStore::redis_with_options(
        redis_pool(&url).unwrap(),
        &url,
        prefix.keys.clone(),
        MasterKey::generate(),
        StoreOptions {
            startup_wait: Duration::from_millis(100),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let (tx, _usage) = tokio::sync::mpsc::channel(16);
    let state = AppState::new(Settings::default(), store, UsageSink::in_memory(tx)).unwrap();
    let addr = common::serve(app(state.clone())).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    assert_eq!(
        get(&client, url("/readyz")).await,
        (503, json!({"status": "not_ready"}))
    );
    assert_eq!(
        get(&client, url("/healthz")).await,
        (200, json!({"status": "ok"}))
    );

    // Redis answers: the store subscribes and catches up, and the node is ready.
    proxy.set_up(true);
    eventually("/readyz turns 200 once the store has config", || async {
        get(&client, url("/readyz")).await == (200, json!({"status": "ready"}))
    })
    .await;

    // A later Redis outage keeps it ready (it serves its cache) and alive.
    proxy.set_up(false);
    eventually("the store notices the outage", || async {
        !state.store().is_connected()
    })
    .await;
    assert_eq!(get(&client, url("/readyz")).await.0, 200);
    assert_eq!(get(&client, url("/healthz")).await.0, 200);

    // A stop: readiness off at once, liveness still on.
    state.lifecycle().begin_shutdown();
    assert_eq!(
        get(&client, url("/readyz")).await,
        (503, json!({"status": "shutting_down"}))
    );
    assert_eq!(get(&client, url("/healthz")).await.0, 200);
}

#[tokio::test]
async fn a_node_whose_redis_is_unreachable_starts_alive_but_not_ready() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = command(Path::new(env!("CARGO_BIN_EXE_data-plane")));
    cmd.env(
        "REDIS_URL",
        format!("redis://127.0.0.1:{}", common::closed_port()),
    )
    .env("SWITCHYARD_REDIS_PREFIX", Prefix::new().keys.prefix())
    .env("SWITCHYARD_MASTER_KEY", testkit::e2e::random_master_key())
    .env("SWITCHYARD_USAGE_SPOOL_DIR", spool.path())
    .env("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS", "2");
    let mut dp = ChildGuard::spawn("data-plane", cmd)
        .await
        .expect("the node starts without Redis");
    let client = reqwest::Client::new();
    let base = dp.base_url();

    assert_eq!(
        get(&client, format!("{base}/healthz")).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        get(&client, format!("{base}/readyz")).await,
        (503, json!({"status": "not_ready"}))
    );

    // It still stops cleanly on SIGTERM.
    let status = dp
        .terminate(Duration::from_secs(30))
        .await
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", dp.logs_text());
}

#[tokio::test]
async fn the_node_cap_refuses_with_503_and_retry_after_until_a_slot_frees() {
    let fake = FakeOpenAi::start().await.unwrap();
    let gw = Gateway::start_with(Settings {
        max_concurrent_requests: 1,
        ..Settings::default()
    })
    .await;
    let key = gw.key();
    let provider = gw.provider(ProviderKind::OpenAiCompatible, Some(fake.base_url()), None);
    gw.set_tenant(
        vec![provider.clone()],
        vec![deployment("gated", &provider, fake_openai::MODEL_GATED)],
    );
    let gw = Arc::new(gw);

    // One request holds the node's only slot, in flight at the upstream.
    let held = {
        let (gw, key) = (Arc::clone(&gw), key.clone());
        tokio::spawn(async move { gw.chat(&key, user_message("gated", "hi")).await })
    };
    fake.wait_gated(1, Duration::from_secs(10)).await.unwrap();

    // The next one is refused at once, in OpenAI's format, with a hint when to retry.
    let refused = gw.chat(&key, user_message("gated", "hi")).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let error = assert_error(refused, 503, "overloaded").await;
    assert_eq!(error["type"], "api_error");

    // The slot frees when the held request's task is done (it has metered the request, just
    // after the client got its answer); then the next request is served.
    fake.open_gate();
    let held = held.await.unwrap();
    assert_eq!(held.status(), 200);
    eventually("a request is served once the slot is free", || async {
        let served = gw.chat(&key, user_message("gated", "hi")).await;
        served.status() == 200
            && served.json::<Value>().await.unwrap()["choices"][0]["message"]["content"]
                == fake_openai::CONTENT
    })
    .await;
}
