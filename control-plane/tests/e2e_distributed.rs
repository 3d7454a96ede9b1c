//! End to end, distributed: the control plane (in process, via the library) on a fresh Postgres
//! database, two separate `data-plane` processes, Redis between them under a fresh key prefix,
//! and the fake OpenAI upstream. Walks the whole product: signup → login → provider → model →
//! key → a non-streaming completion through node 1 → a streaming completion through node 2 →
//! both metered and visible through the usage API with the right cost.
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`); see testkit::proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use control_plane::config::{Config, Secret};
use serde_json::{Value, json};
use testkit::api::ControlApi;
use testkit::e2e::{Deployment, chat, http_client, poll_until, stream_content, usage_row};
use testkit::fake_openai::{self, FakeOpenAi};

const LOG: &str = "info";
const MODEL: &str = "gpt-test";
const UPSTREAM_MODEL: &str = "gpt-4o-mini-2024-07-18";

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-switchyard-request-id")
        .expect("every data-plane response carries x-switchyard-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Polls `GET /api/v1/usage` for up to 2 s until the row of `request_id` appears, then checks
/// its tokens and cost.
async fn assert_metered(api: &ControlApi, request_id: &str, stream: bool) {
    let usage = poll_until(
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async {
            let u = api.usage().await?;
            anyhow::ensure!(
                usage_row(&u, request_id).is_some(),
                "no usage row for {request_id} yet: {u}"
            );
            Ok(u)
        },
    )
    .await
    .expect("the usage row appears within 2 s of the request");
    let row = usage_row(&usage, request_id).unwrap();
    assert_eq!(row["prompt_tokens"], 12, "{row}");
    assert_eq!(row["completion_tokens"], 5, "{row}");
    assert_eq!(row["cost_micros"], 80, "{row}");
    assert_eq!(row["model"], MODEL, "{row}");
    assert_eq!(row["stream"], stream, "{row}");
    assert_eq!(row["outcome"], "success", "{row}");
    assert_eq!(
        row["tokens_estimated"], false,
        "the upstream's usage is used: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_walkthrough_meters_both_requests() {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");

    // The control plane, in process, in distributed mode.
    let mut config = Config::embedded(deployment.data_dir.path(), Some(deployment.db.url.clone()));
    config.redis_url = Some(Secret::new(deployment.redis_url.clone()));
    // Distributed mode allows no internal upstream by default; the fake listens on loopback.
    config.settings.upstream_allow_cidrs = Some(shared::egress::ZERO_SETUP_ALLOW.to_owned());
    config.redis_prefix = deployment.prefix.clone();
    config.master_key = Some(Secret::new(deployment.master_key.clone()));
    config.jwt_secret = Some(Secret::new(deployment.jwt_secret.clone()));
    config.node_id = Some("cp-e2e".to_owned());
    let cp = control_plane::start(config)
        .await
        .expect("control plane starts");
    let origin = format!("http://{}", cp.addr);

    // Two data-plane nodes sharing Redis, the prefix and the master key.
    let dp1 = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane 1");
    let dp2 = deployment
        .start_data_plane("dp-2", LOG)
        .await
        .expect("data plane 2");

    let upstream_key = format!("sk-upstream-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeOpenAi::start_with_key(&upstream_key).await.unwrap();

    // signup → login
    let mut api = ControlApi::new(&origin).unwrap();
    let org = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let email = format!("{org}@example.com");
    let signup = api
        .signup(&email, testkit::api::PASSWORD, &org)
        .await
        .expect("signup");
    assert_eq!(signup["user"]["email"], email.as_str());
    assert_eq!(signup["token_type"], "Bearer");
    assert!(signup["refresh_token"].is_string());
    let login = api
        .login(&email, testkit::api::PASSWORD)
        .await
        .expect("login");
    assert!(login["access_token"].is_string());

    // provider → model → key
    let provider = api
        .create_provider(&json!({
            "name": "fake openai",
            "kind": "openai_compatible",
            "base_url": fake.base_url(),
            "api_key": upstream_key,
        }))
        .await
        .expect("create provider");
    let provider_text = provider.to_string();
    assert!(
        !provider_text.contains(&upstream_key),
        "the API never shows the provider secret: {provider}"
    );
    let provider_id = testkit::api::id_of(&provider).unwrap();
    api.create_model(&json!({
        "name": MODEL,
        "provider_id": provider_id,
        "upstream_model": UPSTREAM_MODEL,
        "input_price_per_mtok": 2.5,
        "output_price_per_mtok": 10,
    }))
    .await
    .expect("create model");
    let key = api
        .create_key(&json!({"name": "e2e"}))
        .await
        .expect("create key");
    assert!(key.key.starts_with("sk-sy-"));

    let client = http_client();

    // Non-streaming via node 1. The records reach the node through Redis; poll until the key is
    // known there.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]});
    let dp1_origin = dp1.base_url();
    let resp = poll_until(
        Duration::from_secs(5),
        Duration::from_millis(25),
        || async {
            let r = chat(&client, &dp1_origin, &key.key, &body).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .expect("a non-streaming completion through data plane 1");
    let id1 = request_id(&resp);
    let completion: Value = resp.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        fake_openai::CONTENT
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["prompt_tokens"], 12);
    assert_eq!(completion["usage"]["completion_tokens"], 5);
    assert_eq!(completion["usage"]["total_tokens"], 17);
    let upstream = fake.chat_requests();
    let last = upstream.last().expect("the fake received the request");
    assert_eq!(
        last.body["model"], UPSTREAM_MODEL,
        "the upstream model is sent, not the alias"
    );
    assert_eq!(
        last.bearer(),
        Some(upstream_key.as_str()),
        "the provider key is sent as Bearer"
    );
    assert!(
        !last.headers.values().any(|v| v.contains(&key.key)),
        "the Switchyard key is not forwarded upstream"
    );

    // Metered within 2 s: 12 prompt tokens at $2.50/M + 5 completion tokens at $10/M = 80 µ$.
    assert_metered(&api, &id1, false).await;

    // Streaming via node 2.
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": true,
    });
    let dp2_origin = dp2.base_url();
    let resp = poll_until(
        Duration::from_secs(5),
        Duration::from_millis(25),
        || async {
            let r = chat(&client, &dp2_origin, &key.key, &body).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .expect("a streaming completion through data plane 2");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{:?}",
        resp.headers()
    );
    let id2 = request_id(&resp);
    let mut chunks = 0usize;
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    while let Some(part) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(
            &part.expect("the stream completes"),
        ));
        chunks += 1;
    }
    assert!(chunks >= 1);
    let events = testkit::sse::data_events(&text);
    assert!(
        events.len() >= 7,
        "role, five deltas and the finish chunk at least: {events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_content(&events), "Hello from the fake upstream");
    let last = fake.chat_requests().pop().unwrap();
    assert_eq!(last.body["stream"], true);
    assert_eq!(
        last.body["stream_options"]["include_usage"], true,
        "the gateway asks the upstream for usage on streams"
    );
    assert_eq!(last.body["model"], UPSTREAM_MODEL);

    // Usage of the streamed request reaches the control plane through the Redis stream too.
    assert_metered(&api, &id2, true).await;

    // Both requests together in the totals.
    let usage = api.usage().await.unwrap();
    assert_eq!(usage["totals"]["requests"], 2, "{usage}");
    assert_eq!(usage["totals"]["prompt_tokens"], 24, "{usage}");
    assert_eq!(usage["totals"]["completion_tokens"], 10, "{usage}");
    assert_eq!(usage["totals"]["cost_micros"], 160, "{usage}");

    drop((dp1, dp2));
    cp.shutdown().await.expect("clean shutdown");
    deployment.cleanup().await;
}
