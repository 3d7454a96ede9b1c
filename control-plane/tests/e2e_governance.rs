//! End to end, on separate processes: rate limits and budgets set through the control API hold
//! exactly across two `data-plane` processes sharing one Redis.
//!
//! - 200 concurrent requests on a key with `rpm_limit` 100, spread over two nodes: exactly 100
//!   succeed; the others get 429 `rate_limit_exceeded` with `Retry-After`.
//! - 500 concurrent requests (streamed, not streamed, and streams whose client disconnects)
//!   against a team budget of $1.00 whose worst case per request is known ($0.01): recorded
//!   spend never exceeds $1.00, and afterwards the budget admits requests until less than one
//!   worst case is left.
//! - A node killed while holding budget leases and requests in flight: its holds expire and the
//!   budget is whole again.
//!
//! Real Postgres (fresh database), real Redis (fresh prefix), the `control-plane` binary and
//! `data-plane` processes. Needs the workspace binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::{Deployment, chat, http_client, poll_until};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::ChildGuard;

const LOG: &str = "info";
/// Output price that makes the fake's 5 completion tokens cost exactly $0.01 (input is free).
const OUTPUT_PRICE_PER_MTOK: u64 = 2000;
/// The worst case of one request (`max_tokens: 5` at that price), in µ$.
const WORST_CASE_MICROS: i64 = 10_000;
const LEASE_TTL_MS: &str = "1500";

fn body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": fake_openai::COMPLETION_TOKENS,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

struct World {
    deployment: Deployment,
    nodes: Vec<ChildGuard>,
    openai: FakeOpenAi,
    api: ControlApi,
    provider_id: String,
    key: String,
    key_id: String,
    _cp: ChildGuard,
}

async fn world(nodes: usize) -> World {
    let deployment = Deployment::new()
        .await
        .expect("fresh Postgres database and Redis prefix");
    let cp = deployment
        .start_control_plane(LOG)
        .await
        .expect("control plane");
    let mut started = Vec::new();
    for i in 1..=nodes {
        started.push(
            deployment
                .start_data_plane_with(
                    &format!("dp-{i}"),
                    LOG,
                    &[
                        ("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8,::1/128"),
                        ("SWITCHYARD_BUDGET_LEASE_TTL_MS", LEASE_TTL_MS),
                        ("SWITCHYARD_NODE_COUNT", "2"),
                        // Generous: the test machine's two cores are shared with every
                        // process of the test, and a slow answer must not count as an outage.
                        ("SWITCHYARD_GOVERNANCE_REDIS_TIMEOUT_MS", "2000"),
                    ],
                )
                .await
                .expect("a data-plane node"),
        );
    }
    let openai = FakeOpenAi::builder()
        .record_requests(false)
        .start()
        .await
        .unwrap();
    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&openai.base_url()),
            api_key: Some("sk-upstream"),
            model: "priced",
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 0.0,
            output_price_per_mtok: OUTPUT_PRICE_PER_MTOK as f64,
        })
        .await
        .expect("provisioning");
    World {
        deployment,
        nodes: started,
        openai,
        api,
        provider_id: setup.provider_id.clone(),
        key: setup.key.key.clone(),
        key_id: setup.key.id.clone(),
        _cp: cp,
    }
}

/// Waits until `node` serves `key` with `model`. Returns how many attempts left a usage row
/// (every one but those refused before the key was known), the last one the success.
async fn wait_served(client: &reqwest::Client, node: &ChildGuard, key: &str, model: &str) -> i64 {
    let metered = std::sync::atomic::AtomicI64::new(0);
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let r = chat(client, &node.base_url(), key, &body(model, false)).await?;
            if r.status() != StatusCode::UNAUTHORIZED {
                metered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::ensure!(r.status() == 200, "status {}", r.status());
            Ok(())
        },
    )
    .await
    .expect("the node serves the key");
    metered.into_inner()
}

async fn patch(api: &ControlApi, path: &str, body: &Value) -> Value {
    api.expect(reqwest::Method::PATCH, path, Some(body), StatusCode::OK)
        .await
        .unwrap_or_else(|e| panic!("PATCH {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rpm_limit_holds_exactly_across_two_nodes() {
    let w = world(2).await;
    let client = http_client();
    let key = w.key.clone();
    // Serve once on each node before the limit exists, so the key is cached everywhere.
    for node in &w.nodes {
        wait_served(&client, node, &key, "priced").await;
    }
    let updated = patch(
        &w.api,
        &format!("/api/v1/keys/{}", w.key_id),
        &json!({"rpm_limit": 100}),
    )
    .await;
    assert_eq!(updated["rpm_limit"], 100);

    // Every node knows the limit once it answers with the header (these probes count too).
    let mut ok = 0usize;
    for node in &w.nodes {
        let seen = poll_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let r = chat(&client, &node.base_url(), &key, &body("priced", false)).await?;
                anyhow::ensure!(
                    r.headers().get("x-ratelimit-limit-requests").is_some(),
                    "no limit header yet"
                );
                Ok(r.status())
            },
        )
        .await
        .expect("the limit reached the node");
        assert_eq!(seen, 200);
        ok += 1;
    }

    let origins: Vec<String> = w.nodes.iter().map(ChildGuard::base_url).collect();
    let results = futures::stream::iter(0..200)
        .map(|i| {
            let (client, key, origin) = (client.clone(), key.clone(), origins[i % 2].clone());
            async move {
                let r = chat(&client, &origin, &key, &body("priced", false))
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let remaining = r
                    .headers()
                    .get("x-ratelimit-remaining-requests")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (status, retry_after, remaining, body)
            }
        })
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;
    ok += results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok, 100, "exactly the limit succeeds within the minute");
    assert_eq!(ok - 2 + refused.len(), 200, "every other answer is a 429");
    for (_, retry_after, remaining, body) in refused {
        let secs: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
        assert_eq!(remaining.as_deref(), Some("0"));
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    }
    w.deployment.cleanup().await;
}

/// Sends one request through `origin`: `mode` 0 = JSON, 1 = a stream read to the end, 2 = a
/// stream dropped after its first chunk. Returns whether the gateway admitted it (2xx).
async fn spend(client: &reqwest::Client, origin: &str, key: &str, mode: usize) -> (bool, Value) {
    let r = chat(client, origin, key, &body("priced", mode != 0))
        .await
        .unwrap();
    let status = r.status();
    if !status.is_success() {
        return (false, r.json().await.unwrap_or(Value::Null));
    }
    let mut chunks = r.bytes_stream();
    if mode == 2 {
        let _ = chunks.next().await;
        drop(chunks);
        return (true, Value::Null);
    }
    while let Some(chunk) = chunks.next().await {
        chunk.unwrap();
    }
    (true, Value::Null)
}

async fn budget(api: &ControlApi, id: &str) -> Value {
    api.expect(
        reqwest::Method::GET,
        &format!("/api/v1/budgets/{id}"),
        None,
        StatusCode::OK,
    )
    .await
    .expect("GET budget")
}

fn usd_micros(v: &Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a decimal string: {v}"));
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<6}");
    whole.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap()
}

/// Recorded spend and request count of the organization, once `requests` rows arrived.
async fn recorded(api: &ControlApi, requests: i64) -> i64 {
    poll_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let usage = api.usage().await?;
            let totals = &usage["totals"];
            anyhow::ensure!(
                totals["requests"].as_i64() == Some(requests),
                "{} of {requests} usage rows",
                totals["requests"]
            );
            Ok(totals["cost_micros"].as_i64().unwrap())
        },
    )
    .await
    .expect("every request's usage row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_budget_is_never_exceeded_by_two_nodes_under_concurrency() {
    let w = world(2).await;
    let client = http_client();
    let team = w
        .api
        .create_team(&json!({"name": "capped"}))
        .await
        .expect("team");
    let team_id = id_of(&team).unwrap();
    let key = w
        .api
        .create_key(&json!({"name": "team key", "team_id": team_id}))
        .await
        .expect("team key")
        .key;
    let created = w
        .api
        .expect(
            reqwest::Method::POST,
            "/api/v1/budgets",
            Some(&json!({
                "scope": "team",
                "scope_id": team_id,
                "limit_usd": "1.00",
                "period": "monthly",
            })),
            StatusCode::CREATED,
        )
        .await
        .expect("budget");
    let budget_id = id_of(&created).unwrap();
    let mut sent = 0i64;
    for node in &w.nodes {
        sent += wait_served(&client, node, &key, "priced").await;
    }
    let mut admitted = 2i64;

    let origins: Vec<String> = w.nodes.iter().map(ChildGuard::base_url).collect();
    let results = futures::stream::iter(0..500)
        .map(|i| {
            let (client, key, origin) = (client.clone(), key.clone(), origins[i % 2].clone());
            async move { spend(&client, &origin, &key, i % 3).await }
        })
        .buffer_unordered(500)
        .collect::<Vec<_>>()
        .await;
    sent += 500;
    admitted += results.iter().filter(|r| r.0).count() as i64;
    for (ok, body) in &results {
        if !ok {
            assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
            assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
        }
    }
    let spent = recorded(&w.api, sent).await;
    assert!(
        spent <= 1_000_000,
        "recorded spend {spent} µ$ exceeds the $1.00 cap"
    );
    // A worst case is $0.01, so about 100 fit at once; streams cut short cost less.
    assert!(admitted >= 90, "only {admitted} admitted");

    // The budget then admits, one at a time, until less than one worst case is left. A
    // refusal while another node still holds an idle lease slice is retried once that slice
    // went back (the ledger shows nothing reserved).
    let origin = origins[0].clone();
    let mut idle_since_refusal = false;
    loop {
        let (ok, body) = spend(&client, &origin, &key, 0).await;
        sent += 1;
        if ok {
            admitted += 1;
            idle_since_refusal = false;
            assert!(admitted <= 200, "the budget never refuses");
            continue;
        }
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        if idle_since_refusal {
            break;
        }
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let b = budget(&w.api, &budget_id).await;
                anyhow::ensure!(usd_micros(&b["reserved_usd"]) == 0, "still leased: {b}");
                Ok(())
            },
        )
        .await
        .expect("idle leases go back");
        idle_since_refusal = true;
    }
    let spent = recorded(&w.api, sent).await;
    assert!(
        spent <= 1_000_000,
        "recorded spend {spent} µ$ exceeds the cap"
    );
    // With nothing held anywhere, a refusal means less than one worst case was left.
    assert!(
        1_000_000 - spent < WORST_CASE_MICROS,
        "only {spent} µ$ of $1.00 spent when the budget refused"
    );
    let shown = budget(&w.api, &budget_id).await;
    assert!(usd_micros(&shown["spent_usd"]) <= 1_000_000, "{shown}");
    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_nodes_leases_expire_and_the_budget_is_whole_again() {
    let mut w = world(1).await;
    let client = http_client();
    let created = w
        .api
        .expect(
            reqwest::Method::POST,
            "/api/v1/budgets",
            Some(&json!({"scope": "tenant", "limit_usd": "100", "period": "daily"})),
            StatusCode::CREATED,
        )
        .await
        .expect("budget");
    let budget_id = id_of(&created).unwrap();
    let key = w.key.clone();
    let sent = wait_served(&client, &w.nodes[0], &key, "priced").await;
    // Far from the cap the node works from a lease: money is reserved beyond what was spent.
    let shown = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let b = budget(&w.api, &budget_id).await;
            anyhow::ensure!(usd_micros(&b["reserved_usd"]) > 0, "no lease yet: {b}");
            Ok(b)
        },
    )
    .await
    .expect("a lease is held");
    // And requests in flight hold reservations: three calls the upstream never answers.
    w.api
        .create_model(&json!({
            "name": "hang",
            "provider_id": w.provider_id,
            "upstream_model": fake_openai::MODEL_HANG,
            "input_price_per_mtok": 0,
            "output_price_per_mtok": OUTPUT_PRICE_PER_MTOK,
        }))
        .await
        .expect("a model that never answers");
    let origin = w.nodes[0].base_url();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let models: Value = client
                .get(format!("{origin}/v1/models"))
                .bearer_auth(&key)
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(models.to_string().contains("\"hang\""), "{models}");
            Ok(())
        },
    )
    .await
    .expect("the node knows the new model");
    let before = w.openai.request_count();
    let hanging: Vec<_> = (0..3)
        .map(|_| {
            let (client, origin, key) = (client.clone(), origin.clone(), key.clone());
            tokio::spawn(async move { chat(&client, &origin, &key, &body("hang", false)).await })
        })
        .collect();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let n = w.openai.request_count() - before;
            anyhow::ensure!(n == 3, "{n} of 3 calls reached the upstream");
            Ok(())
        },
    )
    .await
    .expect("three requests in flight");
    assert!(
        usd_micros(&shown["reserved_usd"]) > WORST_CASE_MICROS,
        "{shown}"
    );

    w.nodes[0].kill().await;
    for call in hanging {
        assert!(
            call.await.unwrap().is_err(),
            "the killed node's requests fail"
        );
    }
    let whole = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            let b = budget(&w.api, &budget_id).await;
            anyhow::ensure!(usd_micros(&b["reserved_usd"]) == 0, "still held: {b}");
            Ok(b)
        },
    )
    .await
    .expect("the dead node's lease expires");
    let spent = recorded(&w.api, sent).await;
    assert_eq!(spent, WORST_CASE_MICROS, "one request was served");
    // Spend the node reported, or the recorded spend it did not get to report, is kept.
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let b = budget(&w.api, &budget_id).await;
            anyhow::ensure!(usd_micros(&b["spent_usd"]) == spent, "spent: {b}");
            Ok(())
        },
    )
    .await
    .expect("the budget shows what was spent");
    assert_eq!(usd_micros(&whole["reserved_usd"]), 0);
    w.deployment.cleanup().await;
}
