//! End to end, on separate processes: a tenant that points providers back at the gateway gets
//! one loop error and one usage row, whatever the path (itself, or through another
//! organization on another node), and the node stays as it was; a standalone data plane
//! refuses loopback upstreams by default, at connection time.
//!
//! Real Postgres (fresh database), real Redis (fresh prefix), the `control-plane` binary and
//! `data-plane` processes. Needs the workspace binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::{Deployment, chat, http_client, poll_until, usage_row};

const LOG: &str = "info";

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Open file descriptors and resident memory (KiB) of process `pid`.
fn footprint(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    (fds, rss)
}

/// Adds an OpenAI-compatible provider at `base_url` with `api_key` and a model `name` on it.
async fn provider_and_model(
    api: &ControlApi,
    name: &str,
    base_url: &str,
    api_key: &str,
    upstream_model: &str,
) {
    let provider = api
        .create_provider(&json!({
            "name": format!("{name} provider"),
            "kind": "openai_compatible",
            "base_url": base_url,
            "api_key": api_key,
        }))
        .await
        .expect("provider");
    api.create_model(&json!({
        "name": name,
        "provider_id": id_of(&provider).unwrap(),
        "upstream_model": upstream_model,
        "input_price_per_mtok": 1.0,
        "output_price_per_mtok": 2.0,
    }))
    .await
    .expect("model");
}

/// Signs up a fresh organization with a `mock` model named `echo`; returns its API client and
/// key.
async fn organization_with_mock(control_plane: &str) -> (ControlApi, String) {
    let mut api = ControlApi::new(control_plane).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "mock",
            base_url: None,
            api_key: None,
            model: "echo",
            upstream_model: "echo",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .expect("an organization");
    let key = setup.key.key.clone();
    (api, key)
}

/// Waits until the usage rows of `request_ids` are all stored, then returns every row.
async fn usage_rows_including(api: &ControlApi, request_ids: &[&str]) -> Vec<Value> {
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let usage = api.usage().await?;
            for id in request_ids {
                anyhow::ensure!(usage_row(&usage, id).is_some(), "no row for {id} yet");
            }
            Ok(usage["data"].as_array().cloned().unwrap_or_default())
        },
    )
    .await
    .expect("usage rows stored")
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_loops_cost_one_error_and_one_usage_row_and_leave_the_node_as_it_was() {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    let cp = deployment
        .start_control_plane(LOG)
        .await
        .expect("control plane");
    let dp1 = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("dp-1");
    let dp2 = deployment
        .start_data_plane("dp-2", LOG)
        .await
        .expect("dp-2");
    let client = http_client();

    // Organization A, with a working mock model (a control request) and its own key.
    let (api_a, key_a) = organization_with_mock(&cp.base_url()).await;
    // The report's setup: a provider whose base URL is the data plane and whose key is A's own.
    provider_and_model(
        &api_a,
        "self",
        &format!("{}/v1", dp1.base_url()),
        &key_a,
        "self",
    )
    .await;

    // Organization B on the same gateway.
    let (api_b, key_b) = organization_with_mock(&cp.base_url()).await;
    // A's "to-b" calls dp-2 as B for "back-to-a"; B's "back-to-a" calls dp-1 as A for "to-b".
    provider_and_model(
        &api_a,
        "to-b",
        &format!("{}/v1", dp2.base_url()),
        &key_b,
        "back-to-a",
    )
    .await;
    provider_and_model(
        &api_b,
        "back-to-a",
        &format!("{}/v1", dp1.base_url()),
        &key_a,
        "to-b",
    )
    .await;

    // Warm up dp-1 (config cached, pools open) and take its footprint.
    let origin = dp1.base_url();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(25),
        || async {
            for model in ["echo", "self", "to-b"] {
                let r = chat(&client, &origin, &key_a, &body(model)).await?;
                anyhow::ensure!(
                    r.status() == 200 || r.status() == 508,
                    "{model}: status {}",
                    r.status()
                );
            }
            Ok(())
        },
    )
    .await
    .expect("the config reached dp-1");
    let pid = dp1.id().expect("dp-1 pid");
    let (fds_before, rss_before) = footprint(pid);
    // Rows are ingested asynchronously: once a marker request's row is stored, every warm-up
    // row before it is too.
    let marker = chat(&client, &origin, &key_a, &body("echo")).await.unwrap();
    let rows_before = usage_rows_including(&api_a, &[&request_id(&marker)])
        .await
        .len();

    // The self-loop: one error, in OpenAI's format.
    let response = chat(&client, &origin, &key_a, &body("self")).await.unwrap();
    assert_eq!(response.status(), StatusCode::LOOP_DETECTED);
    let self_id = request_id(&response);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "loop_detected", "{error}");

    // The loop through organization B on the other node: refused back on dp-1.
    let response = chat(&client, &origin, &key_a, &body("to-b")).await.unwrap();
    assert_eq!(response.status(), StatusCode::LOOP_DETECTED);
    let cross_id = request_id(&response);

    // A normal request afterwards: once its row is stored, any row the loops wrote is too.
    let response = chat(&client, &origin, &key_a, &body("echo")).await.unwrap();
    assert_eq!(response.status(), 200);
    let echo_id = request_id(&response);
    let rows = usage_rows_including(&api_a, &[&self_id, &cross_id, &echo_id]).await;
    assert_eq!(
        rows.len(),
        rows_before + 3,
        "one row per request A sent, none for the refused inner hops: {rows:#?}"
    );
    // B served one hop of the cross loop (its request, refused downstream), no more.
    let b_rows = api_b.usage().await.unwrap()["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let b_loop_rows = b_rows
        .iter()
        .filter(|r| r["error_code"] == "loop_detected")
        .count();
    assert!(b_loop_rows <= 2, "B's loop rows: {b_rows:#?}");

    // The node is as it was: no connection or memory left behind, and it answers at once.
    let (fds_after, rss_after) = footprint(pid);
    assert!(
        fds_after <= fds_before + 4,
        "open files {fds_before} → {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "resident memory {rss_before} KiB → {rss_after} KiB"
    );
    let health = client
        .get(format!("{origin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_data_plane_refuses_loopback_upstreams_by_default() {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    let cp = deployment
        .start_control_plane(LOG)
        .await
        .expect("control plane");
    // No SWITCHYARD_UPSTREAM_ALLOW_CIDRS: the distributed default, nothing non-public.
    let strict = deployment
        .start_data_plane_with("dp-strict", LOG, &[])
        .await
        .expect("strict node");
    let open = deployment
        .start_data_plane("dp-open", LOG)
        .await
        .expect("open node");
    let fake = testkit::fake_openai::FakeOpenAi::start().await.unwrap();

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: Some("sk-upstream"),
            model: "gpt",
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .expect("provisioning");
    let key = setup.key.key.clone();
    let client = http_client();

    let origin = open.base_url();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(25),
        || async {
            let r = chat(&client, &origin, &key, &body("gpt")).await?;
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("served by the node that allows loopback");

    let response = chat(&client, &strict.base_url(), &key, &body("gpt"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "egress_refused", "{error}");
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "the strict node never connected"
    );

    deployment.cleanup().await;
}
