//! End to end over Redis with TLS (`rediss://`): a TLS-only `redis-server` with a password and a
//! throwaway CA, the `control-plane` and `data-plane` binaries pointed at it with
//! `SSL_CERT_FILE` naming that CA (how an operator trusts a private CA without rebuilding the
//! image). Everything that crosses Redis goes through TLS: the control plane publishes the config
//! (pool), the node subscribes (pub/sub connection) and fetches it (pool), the node writes the
//! usage event (stream) and the control plane ingests it (consumer group). The server has no
//! plain-text port, so any success proves TLS.
//!
//! That an untrusted certificate is refused is data-plane/tests/redis_tls.rs. Needs the
//! workspace binaries built (`cargo build --workspace --bins`); see testkit::proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{Deployment, chat, http_client, poll_until, usage_row};
use testkit::fake_openai::FakeOpenAi;
use testkit::proc::{ChildGuard, command, control_plane_binary};
use testkit::redis_tls::TlsRedis;

const MODEL: &str = "tls-model";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_planes_work_through_a_tls_redis() {
    let redis = TlsRedis::start().await.expect("a TLS redis-server");
    let ca = redis.ca_file().display().to_string();
    let mut deployment = Deployment::new().await.expect("fresh Postgres database");
    deployment.redis_url = redis.url();

    let mut cmd = command(&control_plane_binary());
    cmd.envs(deployment.control_plane_env())
        .env("SSL_CERT_FILE", &ca)
        .env_remove("SSL_CERT_DIR");
    let cp = ChildGuard::spawn("control-plane", cmd)
        .await
        .expect("control plane starts");
    cp.wait_healthy("/readyz", Duration::from_secs(30))
        .await
        .expect("control plane ready");
    // Ready means subscribed to the config channel and caught up with the change log, both
    // through TLS.
    let dp = deployment
        .start_data_plane_with(
            "dp-tls",
            "info",
            &[
                ("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8,::1/128"),
                ("SSL_CERT_FILE", &ca),
            ],
        )
        .await
        .expect("the data plane connects to Redis over TLS and becomes ready");

    let fake = FakeOpenAi::start_with_key("sk-upstream-tls").await.unwrap();
    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: Some("sk-upstream-tls"),
            model: MODEL,
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .expect("provisioning");

    // The key and the tenant reach the node through the TLS Redis.
    let client = http_client();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let (origin, key) = (dp.base_url(), setup.key.key.clone());
    let request_id = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            let r = chat(&client, &origin, &key, &body).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            let id = r
                .headers()
                .get("x-switchyard-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            id.ok_or_else(|| anyhow::anyhow!("no x-switchyard-request-id"))
        },
    )
    .await
    .expect("the node serves the key it learned through the TLS Redis");

    // The usage event goes node → Redis stream → control plane → Postgres.
    poll_until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            let usage = api.usage().await?;
            anyhow::ensure!(usage_row(&usage, &request_id).is_some(), "no usage row yet");
            Ok(())
        },
    )
    .await
    .expect("the usage row is ingested through the TLS Redis");

    // The Redis password (in REDIS_URL) is never logged.
    for process in [&cp, &dp] {
        assert!(
            !process.logs_text().contains(redis.password()),
            "a log shows the Redis password"
        );
    }
    drop((dp, cp));
    deployment.db.drop_database().await;
}
