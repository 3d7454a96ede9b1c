//! End to end: the `control-plane` binary with no database and no Redis configured runs the whole
//! product on one port (SQLite in the data dir, the data plane embedded, the in-process bus), and
//! keeps its secrets across a restart.
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`); see testkit::proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{chat, http_client, poll_until, stream_content, usage_row};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::{ChildGuard, command, control_plane_binary};

const MESSAGE: &str = "the quick brown fox jumps";

async fn start(data_dir: &Path) -> ChildGuard {
    let mut cmd = command(&control_plane_binary());
    cmd.env("SWITCHYARD_DATA_DIR", data_dir)
        .env("RUST_LOG", "info");
    let cp = ChildGuard::spawn("control-plane", cmd)
        .await
        .expect("the control plane starts without any configuration");
    cp.wait_healthy("/healthz", Duration::from_secs(30))
        .await
        .expect("healthy");
    cp
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-switchyard-request-id")
        .expect("every gateway response carries x-switchyard-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn body(stream: bool) -> Value {
    json!({
        "model": "echo",
        "messages": [
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": MESSAGE},
        ],
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_setup_runs_everything_on_one_port_and_survives_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    assert!(files_in(data_dir.path()).is_empty());
    let mut cp = start(data_dir.path()).await;

    // It tells a newcomer how to get started, on its own output.
    let logs = cp.logs_text().to_lowercase();
    assert!(
        logs.contains("/docs") && (logs.contains("signup") || logs.contains("get started")),
        "the start-up output explains how to get started:\n{}",
        cp.logs_text()
    );
    // It generated its secrets and keeps them in the data dir.
    let files = files_in(data_dir.path());
    assert!(
        files.iter().any(|f| f.to_lowercase().contains("secret")),
        "a secrets file in the data dir: {files:?}"
    );

    // The whole walk on one port: control API and /v1 on the same origin.
    let origin = cp.base_url();
    let mut api = ControlApi::new(&origin).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "mock",
            base_url: None,
            api_key: None,
            model: "echo",
            upstream_model: "mock-echo",
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .expect("signup → provider (mock) → model → key");
    let key = setup.key.key.clone();
    assert!(key.starts_with("sk-sy-"), "{key}");
    let client = http_client();

    // Non-streaming: the mock echoes the last user message. The key reaches the embedded data
    // plane through the in-process bus, so the first call may race it: poll briefly.
    let resp = poll_until(
        Duration::from_secs(5),
        Duration::from_millis(25),
        || async {
            let r = chat(&client, &origin, &key, &body(false)).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .expect("the new key works on the same port");
    let non_stream_id = request_id(&resp);
    let completion: Value = resp.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["model"].is_string(), "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        content.contains(MESSAGE),
        "the mock echoes the last user message: {completion}"
    );

    // Streaming: word by word, ending with [DONE].
    let resp = chat(&client, &origin, &key, &body(true)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let stream_id = request_id(&resp);
    let events = testkit::sse::data_events(&resp.text().await.unwrap());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let content_chunks = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert!(
        content_chunks >= MESSAGE.split_whitespace().count(),
        "word by word: {events:?}"
    );
    assert!(stream_content(&events).contains(MESSAGE), "{events:?}");

    // Both requests are metered and visible through the control API within 2 s.
    let usage = poll_until(
        Duration::from_secs(2),
        Duration::from_millis(50),
        || async {
            let u = api.usage().await?;
            anyhow::ensure!(
                usage_row(&u, &non_stream_id).is_some() && usage_row(&u, &stream_id).is_some(),
                "usage rows not there yet: {u}"
            );
            Ok(u)
        },
    )
    .await
    .expect("usage rows appear within 2 s");
    let row = usage_row(&usage, &non_stream_id).unwrap();
    assert!(row["prompt_tokens"].as_u64().unwrap() > 0, "{row}");
    assert!(row["completion_tokens"].as_u64().unwrap() > 0, "{row}");

    // Swagger UI on the same port.
    let docs = client.get(format!("{origin}/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");

    // A provider with a sealed secret, to prove after the restart that the master key persisted
    // (a new one could not open it).
    let upstream_key = format!("sk-upstream-{}", uuid::Uuid::new_v4().simple());
    let fake = FakeOpenAi::start_with_key(&upstream_key).await.unwrap();
    let provider = api
        .create_provider(&json!({
            "name": "fake",
            "kind": "openai_compatible",
            "base_url": fake.base_url(),
            "api_key": upstream_key,
        }))
        .await
        .unwrap();
    api.create_model(&json!({
        "name": "sealed",
        "provider_id": testkit::api::id_of(&provider).unwrap(),
        "upstream_model": "gpt-4o-mini",
        "input_price_per_mtok": 1,
        "output_price_per_mtok": 1,
    }))
    .await
    .unwrap();
    let sealed_body = json!({"model": "sealed", "messages": [{"role": "user", "content": "hi"}]});
    let sealed_works = |origin: String| {
        let (client, key, body) = (client.clone(), key.clone(), sealed_body.clone());
        async move {
            poll_until(
                Duration::from_secs(5),
                Duration::from_millis(25),
                || async {
                    let r = chat(&client, &origin, &key, &body).await?;
                    anyhow::ensure!(r.status() == 200, "status {}", r.status());
                    let v: Value = r.json().await?;
                    anyhow::ensure!(
                        v["choices"][0]["message"]["content"] == fake_openai::CONTENT,
                        "{v}"
                    );
                    Ok(())
                },
            )
            .await
        }
    };
    sealed_works(origin.clone())
        .await
        .expect("the sealed provider key is opened and sent upstream");
    let old_token = api.access_token().unwrap().to_owned();

    // Restart on the same data dir: the same key (hashed in SQLite, config republished on
    // start), the sealed provider key (master key from the secrets file) and the access token
    // issued before (JWT secret from the secrets file) still work.
    let before = files_in(data_dir.path());
    let stopped = Instant::now();
    cp.terminate(Duration::from_secs(10)).await;
    drop(cp);
    let cp = start(data_dir.path()).await;
    eprintln!("restarted in {:?}", stopped.elapsed());
    assert_eq!(
        files_in(data_dir.path())
            .iter()
            .filter(|f| f.to_lowercase().contains("secret"))
            .collect::<Vec<_>>(),
        before
            .iter()
            .filter(|f| f.to_lowercase().contains("secret"))
            .collect::<Vec<_>>(),
        "no new secrets file on restart"
    );
    let origin = cp.base_url();
    let resp = poll_until(
        Duration::from_secs(5),
        Duration::from_millis(25),
        || async {
            let r = chat(&client, &origin, &key, &body(false)).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .expect("the same key works after a restart");
    let completion: Value = resp.json().await.unwrap();
    assert!(
        completion["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains(MESSAGE)
    );
    sealed_works(origin.clone())
        .await
        .expect("the sealed provider key still opens after a restart");
    assert_eq!(
        fake.chat_requests().last().unwrap().bearer(),
        Some(upstream_key.as_str())
    );
    let mut api = ControlApi::new(&origin).unwrap();
    api.set_access_token(old_token);
    api.usage()
        .await
        .expect("an access token issued before the restart is still valid");
    api.login(&setup.email, testkit::api::PASSWORD)
        .await
        .expect("login works after a restart");
    let usage = api.usage().await.unwrap();
    assert!(
        usage_row(&usage, &non_stream_id).is_some(),
        "usage survived the restart"
    );
}
