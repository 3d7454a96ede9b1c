//! A SIGTERM under load in zero-setup mode (the `control-plane` binary with SQLite and the
//! embedded gateway): readiness turns off at once, the port closes after the pre-stop delay, every
//! request in flight completes, the process exits 0, and every request has its usage row (read
//! after a restart on the same data directory). The sequence is `data_plane::lifecycle`'s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{poll_until, stream_content, usage_row};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::{ChildGuard, command};

const WAIT: Duration = Duration::from_secs(20);
const STREAMS: usize = 10;
const COMPLETIONS: usize = 10;

async fn start(data_dir: &Path) -> ChildGuard {
    let mut cmd = command(Path::new(env!("CARGO_BIN_EXE_control-plane")));
    cmd.env("SWITCHYARD_DATA_DIR", data_dir)
        .env("SWITCHYARD_SHUTDOWN_DELAY_SECONDS", "3")
        .env("SWITCHYARD_SHUTDOWN_GRACE_SECONDS", "30")
        .env("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS", "10");
    let cp = ChildGuard::spawn("control-plane", cmd).await.unwrap();
    cp.wait_healthy("/readyz", WAIT).await.unwrap();
    cp
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// The request id, status and whole body of one gateway call.
async fn call(
    client: reqwest::Client,
    origin: String,
    key: String,
    body: Value,
) -> (String, u16, String) {
    let response = testkit::e2e::chat(&client, &origin, &key, &body)
        .await
        .expect("the request reaches the gateway");
    let id = response.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let status = response.status().as_u16();
    (id, status, response.text().await.expect("the whole body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_setup_sigterm_under_load_keeps_every_request_and_its_usage_row() {
    let data_dir = tempfile::tempdir().unwrap();
    let fake = FakeOpenAi::start().await.unwrap();
    let mut cp = start(data_dir.path()).await;
    let origin = cp.base_url();

    // The zero-setup egress policy allows loopback, where the fake listens.
    let mut api = ControlApi::new(&origin).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: None,
            model: "gated",
            upstream_model: fake_openai::MODEL_GATED,
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .unwrap();
    api.create_model(&json!({
        "name": "plain",
        "provider_id": setup.provider_id,
        "upstream_model": "gpt-4o-mini",
        "input_price_per_mtok": 1.0,
        "output_price_per_mtok": 2.0,
    }))
    .await
    .unwrap();
    let key = setup.key.key.clone();
    let client = testkit::e2e::fresh_connection_client();
    let mut expected = Vec::new();
    let (first, _, _) = poll_until(WAIT, Duration::from_millis(25), || async {
        let answer = call(
            client.clone(),
            origin.clone(),
            key.clone(),
            body("plain", false),
        )
        .await;
        anyhow::ensure!(answer.1 == 200, "status {}", answer.1);
        Ok(answer)
    })
    .await
    .expect("the key works on the embedded gateway");
    expected.push(first);

    // 20 requests held at the upstream.
    let mut requests = Vec::new();
    for i in 0..STREAMS + COMPLETIONS {
        requests.push(tokio::spawn(call(
            client.clone(),
            origin.clone(),
            key.clone(),
            body("gated", i < STREAMS),
        )));
    }
    fake.wait_gated(STREAMS + COMPLETIONS, WAIT).await.unwrap();

    cp.send_sigterm().await;
    testkit::poll::eventually("/readyz turns 503 shutting_down", WAIT, || async {
        match client.get(format!("{origin}/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                r.json::<Value>().await.ok() == Some(json!({"status": "shutting_down"}))
            }
            _ => false,
        }
    })
    .await;
    let health = client
        .get(format!("{origin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness stays on while stopping");
    testkit::proc::wait_refused(cp.addr(), WAIT).await.unwrap();
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "every request is still in flight when the port closes"
    );

    fake.open_gate();
    for (i, request) in requests.into_iter().enumerate() {
        let (id, status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
        if i < STREAMS {
            let events = testkit::sse::data_events(&text);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
            assert_eq!(stream_content(&events), fake_openai::CONTENT);
        } else {
            let completion: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                completion["choices"][0]["message"]["content"],
                fake_openai::CONTENT
            );
        }
        expected.push(id);
    }
    let status = cp
        .wait_exit(Duration::from_secs(3 + 30 + 10 + 10))
        .await
        .expect("exits within delay + grace + drain");
    assert!(status.success(), "{status:?}\n{}", cp.logs_text());
    drop(cp);

    // Every request has exactly one usage row, stored before the exit.
    let cp = start(data_dir.path()).await;
    let mut api_after = ControlApi::new(&cp.base_url()).unwrap();
    api_after.set_access_token(api.access_token().unwrap());
    let usage = api_after
        .expect(
            Method::GET,
            "/api/v1/usage?limit=1000",
            None,
            StatusCode::OK,
        )
        .await
        .unwrap();
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "{usage}");
    for id in &expected {
        let row = usage_row(&usage, id).unwrap_or_else(|| panic!("no usage row for {id}"));
        assert_eq!(row["outcome"], "success", "{row}");
    }
}
