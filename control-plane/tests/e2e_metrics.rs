//! `/metrics` as operators meet it: the `control-plane` and `data-plane` binaries of a
//! distributed deployment (Postgres, Redis, the fake OpenAI upstream) and the zero-setup
//! `control-plane` binary, each scraped after real traffic (successes, a stream, a failover, a
//! rate-limit refusal, a budget refusal, an unknown model). Each process has its own recorder,
//! so the figures are exactly this traffic's.
//!
//! Checks every metric of the operations issue with sane values, help text on every family,
//! the overhead header on every answer, the metrics token, no key or secret in any label, and
//! that every metric the Grafana dashboard (`deploy/grafana/dashboards/`) queries exists.
//!
//! Needs the workspace binaries built (`cargo build --workspace --bins`); see testkit::proc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::{Deployment, http_client, poll_until};
use testkit::fake_openai::{self, FakeOpenAi};
use testkit::proc::{ChildGuard, command, control_plane_binary};

const MODEL: &str = "gpt-test";
const TOKEN: &str = "metrics-token-for-tests";

/// One metric family of a scrape.
#[derive(Debug, Default)]
struct Family {
    help: bool,
    kind: String,
    /// `(sample name, labels, value)`; histograms have `_bucket`, `_sum` and `_count` samples.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// A parsed Prometheus text exposition.
#[derive(Debug)]
struct Scrape {
    text: String,
    families: BTreeMap<String, Family>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                families.entry(name.to_owned()).or_default().help = true;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let name = parts.next().unwrap();
                families.entry(name.to_owned()).or_default().kind =
                    parts.next().unwrap().to_owned();
            } else if !line.is_empty() && !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series, BTreeMap::new()),
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                };
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| families.get(*f).is_some_and(|f| f.kind == "histogram"))
                    })
                    .unwrap_or(name);
                families
                    .entry(family.to_owned())
                    .or_default()
                    .samples
                    .push((name.to_owned(), labels, value));
            }
        }
        Self { text, families }
    }

    fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .filter(|f| !f.samples.is_empty())
            .unwrap_or_else(|| panic!("{name} is not on /metrics:\n{}", self.text))
    }

    /// The sum of `sample`'s values whose labels include every `(name, value)` of `with`.
    fn sum(&self, family: &str, sample: &str, with: &[(&str, &str)]) -> f64 {
        self.family(family)
            .samples
            .iter()
            .filter(|(n, labels, _)| {
                n == sample
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).is_some_and(|l| l == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn total(&self, family: &str, with: &[(&str, &str)]) -> f64 {
        self.sum(family, family, with)
    }

    fn has(&self, name: &str) -> bool {
        self.families
            .get(name)
            .is_some_and(|f| !f.samples.is_empty())
    }

    /// Every family has help text and a type; every histogram has the catalog's buckets.
    fn assert_well_formed(&self) {
        for (name, family) in &self.families {
            assert!(family.help, "{name} has no # HELP line");
            assert!(!family.kind.is_empty(), "{name} has no # TYPE line");
            assert!(name.starts_with("switchyard_"), "{name}: not our prefix");
            if family.kind == "histogram" {
                let def = data_plane::metrics_registry::find(name)
                    .unwrap_or_else(|| panic!("{name} is not in the catalog"));
                let expected = def.buckets.unwrap();
                let les: BTreeSet<String> = family
                    .samples
                    .iter()
                    .filter(|(n, _, _)| n.ends_with("_bucket"))
                    .filter_map(|(_, l, _)| l.get("le").cloned())
                    .collect();
                assert_eq!(les.len(), expected.len() + 1, "{name} buckets: {les:?}");
            }
            if family.kind == "summary" {
                panic!("{name} is a summary; every histogram needs buckets");
            }
        }
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find("\",").unwrap_or(after.len().saturating_sub(1));
        labels.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = after.get(end + 2..).unwrap_or("");
    }
    labels
}

async fn scrape(client: &reqwest::Client, origin: &str, token: Option<&str>) -> Scrape {
    let mut request = client.get(format!("{origin}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{origin}/metrics");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(response.text().await.unwrap())
}

/// The overhead header of a gateway answer: present, a number of milliseconds, sane.
fn overhead_ms(response: &reqwest::Response) -> f64 {
    let value = response
        .headers()
        .get("x-switchyard-overhead-ms")
        .unwrap_or_else(|| panic!("no x-switchyard-overhead-ms on a {}", response.status()))
        .to_str()
        .unwrap();
    let ms: f64 = value.parse().unwrap();
    assert!((0.0..10_000.0).contains(&ms), "overhead {ms} ms");
    ms
}

async fn post(
    client: &reqwest::Client,
    gateway: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    let response = client
        .post(format!("{gateway}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    overhead_ms(&response);
    response
}

/// Sends `body` with `key` until the gateway answers `status` (config reaches a distributed
/// gateway through Redis, so a fresh key or limit takes a moment); returns that answer.
async fn until_status(
    client: &reqwest::Client,
    gateway: &str,
    key: &str,
    body: &Value,
    status: u16,
) -> reqwest::Response {
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(25),
        || async {
            let r = post(client, gateway, key, body).await;
            anyhow::ensure!(r.status() == status, "status {}", r.status());
            Ok(r)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("no {status} answer: {e:#}"))
}

/// What [`drive`] sent.
struct Traffic {
    /// Requests answered 200.
    served: u64,
    /// Secrets that must never appear on `/metrics`.
    secrets: Vec<String>,
}

/// Provisions an organization against `fake` through `api` and sends the traffic the checks
/// read: successes, one stream, a failover, a rate-limit refusal, a budget refusal, an
/// unknown model.
async fn drive(api: &mut ControlApi, gateway: &str, fake: &FakeOpenAi) -> Traffic {
    let client = http_client();
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake.base_url()),
            api_key: Some("sk-upstream-metrics"),
            model: MODEL,
            upstream_model: "gpt-4o-mini-2024-07-18",
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .expect("provisioning");
    let key = setup.key.key.clone();
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    // The first answer waits for the config to reach the gateway (through Redis when
    // distributed).
    until_status(&client, gateway, &key, &chat, 200).await;
    let mut served = 1;
    for _ in 0..3 {
        assert_eq!(post(&client, gateway, &key, &chat).await.status(), 200);
        served += 1;
    }
    // A stream, read to its end (time to first token).
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    let response = post(&client, gateway, &key, &stream).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("[DONE]"));
    served += 1;

    // A failover: a priority route whose first candidate answers 500.
    let broken = api
        .create_model(&json!({
            "name": "broken",
            "provider_id": setup.provider_id,
            "upstream_model": fake_openai::MODEL_500,
            "input_price_per_mtok": 1,
            "output_price_per_mtok": 1,
        }))
        .await
        .unwrap();
    api.create_route(&json!({
        "name": "support",
        "strategy": "priority",
        "candidates": [{"model_id": id_of(&broken).unwrap()}, {"model_id": setup.model_id}],
    }))
    .await
    .unwrap();
    let support = json!({"model": "support", "messages": [{"role": "user", "content": "hi"}]});
    until_status(&client, gateway, &key, &support, 200).await;
    served += 1;

    // An unknown model: a 404 without a model label of the client's choosing.
    let unknown =
        json!({"model": "no-such-model-xyz", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post(&client, gateway, &key, &unknown).await.status(), 404);

    // A rate-limit refusal: a key allowed one request per minute.
    let limited = api.create_key(&json!({"name": "limited"})).await.unwrap();
    api.expect(
        reqwest::Method::PATCH,
        &format!("/api/v1/keys/{}", limited.id),
        Some(&json!({"rpm_limit": 1})),
        StatusCode::OK,
    )
    .await
    .unwrap();
    until_status(&client, gateway, &limited.key, &chat, 429).await;

    // A budget refusal: a key whose budget cannot pay for one request.
    let broke = api.create_key(&json!({"name": "broke"})).await.unwrap();
    api.expect(
        reqwest::Method::POST,
        "/api/v1/budgets",
        Some(&json!({
            "scope": "key",
            "scope_id": broke.id,
            "limit_usd": "0.000001",
            "period": "monthly",
        })),
        StatusCode::CREATED,
    )
    .await
    .unwrap();
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(25),
        || async {
            let r = post(&client, gateway, &broke.key, &chat).await;
            anyhow::ensure!(r.status() == 429, "status {}", r.status());
            let body: Value = r.json().await?;
            anyhow::ensure!(body["error"]["code"] == "budget_exceeded", "{body}");
            Ok(())
        },
    )
    .await
    .expect("a budget refusal");

    // Answers outside the pipeline carry the header too.
    let models = client
        .get(format!("{gateway}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    overhead_ms(&models);
    let anonymous = client
        .post(format!("{gateway}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    overhead_ms(&anonymous);

    Traffic {
        served,
        secrets: vec![
            key,
            limited.key,
            broke.key,
            limited.id,
            broke.id,
            "sk-upstream-metrics".to_owned(),
        ],
    }
}

/// What holds for every plane's scrape: well formed, no key or secret anywhere, and the
/// plane's `build_info`.
fn check_plane(scrape: &Scrape, traffic: &Traffic, plane: &str) {
    scrape.assert_well_formed();
    for secret in &traffic.secrets {
        assert!(
            !scrape.text.contains(secret.as_str()),
            "a key or secret in a label"
        );
    }
    assert_eq!(
        scrape.total("switchyard_build_info", &[("plane", plane)]),
        1.0
    );
}

/// The data plane's metrics after [`drive`]: present and sane.
fn check_gateway(scrape: &Scrape, traffic: &Traffic, distributed: bool) {
    check_plane(scrape, traffic, "data");
    assert!(
        !scrape.text.contains("no-such-model-xyz"),
        "a client's model string in a label"
    );

    let served = traffic.served as f64;
    let ok = scrape.total(
        "switchyard_requests_total",
        &[("status_class", "2xx"), ("error_class", "none")],
    );
    assert!(ok >= served, "2xx requests {ok} < {served}");
    assert!(
        scrape.total(
            "switchyard_requests_total",
            &[("model", MODEL), ("provider", "openai_compatible")]
        ) >= 5.0
    );
    assert!(
        scrape.total(
            "switchyard_requests_total",
            &[("model", "unknown"), ("status_class", "4xx")]
        ) >= 1.0
    );
    assert!(scrape.total("switchyard_requests_total", &[("route", "support")]) >= 1.0);
    assert!(scrape.total("switchyard_requests_total", &[("error_class", "limit")]) >= 2.0);

    let durations = scrape.sum(
        "switchyard_request_duration_seconds",
        "switchyard_request_duration_seconds_count",
        &[],
    );
    assert!(durations >= served, "{durations}");
    let seconds = scrape.sum(
        "switchyard_request_duration_seconds",
        "switchyard_request_duration_seconds_sum",
        &[],
    );
    assert!(seconds > 0.0 && seconds < durations * 30.0, "{seconds}");
    let ttft = scrape.sum(
        "switchyard_time_to_first_token_seconds",
        "switchyard_time_to_first_token_seconds_count",
        &[("model", MODEL)],
    );
    assert!(ttft >= 1.0, "{ttft}");

    let overheads = scrape.sum(
        "switchyard_gateway_overhead_seconds",
        "switchyard_gateway_overhead_seconds_count",
        &[("endpoint", "chat.completions")],
    );
    assert!(overheads >= served + 3.0, "{overheads}");
    let all = scrape.sum(
        "switchyard_gateway_overhead_seconds",
        "switchyard_gateway_overhead_seconds_bucket",
        &[("endpoint", "chat.completions"), ("le", "+Inf")],
    );
    assert_eq!(all, overheads);
    let overhead_sum = scrape.sum(
        "switchyard_gateway_overhead_seconds",
        "switchyard_gateway_overhead_seconds_sum",
        &[("endpoint", "chat.completions")],
    );
    assert!(
        overhead_sum / overheads < 1.0,
        "mean overhead {overhead_sum}/{overheads} s"
    );
    assert!(scrape.has("switchyard_gateway_overhead_seconds"));

    let input = scrape.total(
        "switchyard_tokens_total",
        &[("model", MODEL), ("kind", "input")],
    );
    assert!(
        input >= served * fake_openai::PROMPT_TOKENS as f64 - 1.0,
        "{input}"
    );
    assert!(scrape.total("switchyard_tokens_total", &[("kind", "output")]) > 0.0);
    // 12 prompt tokens at $2.50/M + 5 completion tokens at $10/M = 80 µ$ per request.
    let cost = scrape.total("switchyard_cost_microdollars_total", &[("model", MODEL)]);
    assert!(cost >= 80.0 * 5.0, "{cost}");

    assert!(scrape.total("switchyard_cache_lookups_total", &[]) >= served);
    assert_eq!(
        scrape.total(
            "switchyard_rate_limit_refusals_total",
            &[("scope", "key"), ("kind", "requests")]
        ),
        1.0
    );
    assert!(scrape.total("switchyard_budget_refusals_total", &[]) >= 1.0);
    assert!(scrape.total("switchyard_breaker_state", &[("state", "closed")]) >= 1.0);
    assert!(scrape.total("switchyard_retries_total", &[("class", "server_error")]) >= 1.0);
    assert!(scrape.total("switchyard_fallbacks_total", &[("model", "support")]) >= 1.0);
    assert!(scrape.total("switchyard_max_concurrent_requests", &[]) >= 1.0);
    assert!(scrape.has("switchyard_in_flight_requests"));
    assert!(scrape.total("switchyard_usage_events_total", &[("outcome", "success")]) >= served);
    assert!(scrape.total("switchyard_http_responses_total", &[("status", "200")]) >= served);

    let age = scrape.total("switchyard_config_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "config age {age}");
    let version = scrape.total("switchyard_config_version", &[]);
    assert!(
        version > 1.7e12,
        "config version (change log time, ms) {version}"
    );
    let queue = scrape.total("switchyard_usage_queue_events", &[]);
    assert!((0.0..=served + 10.0).contains(&queue), "{queue}");
    if distributed {
        let lag = scrape.total(
            "switchyard_usage_pipeline_lag_seconds",
            &[("stage", "sink")],
        );
        assert!((0.0..60.0).contains(&lag), "sink lag {lag}");
        assert_eq!(scrape.total("switchyard_usage_spool_events", &[]), 0.0);
        assert!(scrape.has("switchyard_usage_spool_bytes"));
        assert!(
            scrape.total(
                "switchyard_redis_pool_max_connections",
                &[("pool", "data_plane")]
            ) >= 1.0
        );
        assert!(scrape.has("switchyard_redis_pool_connections"));
    }
}

/// The control plane's metrics after [`drive`]: present and sane.
fn check_control(scrape: &Scrape, traffic: &Traffic, distributed: bool) {
    check_plane(scrape, traffic, "control");
    assert!(
        scrape.total(
            "switchyard_api_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/keys"),
                ("status_class", "2xx")
            ]
        ) >= 3.0,
        "route templates, not raw paths"
    );
    assert!(
        scrape.total(
            "switchyard_api_requests_total",
            &[("method", "PATCH"), ("route", "/api/v1/keys/{id}")]
        ) >= 1.0
    );
    assert!(
        scrape.sum(
            "switchyard_api_request_duration_seconds",
            "switchyard_api_request_duration_seconds_count",
            &[]
        ) >= 5.0
    );
    assert!(scrape.total("switchyard_config_published_total", &[]) >= 1.0);
    let pending = scrape.total("switchyard_config_outbox_pending", &[]);
    assert!((0.0..100.0).contains(&pending), "{pending}");
    assert!(scrape.total("switchyard_usage_ingested_total", &[]) >= traffic.served as f64);
    let lag = scrape.total(
        "switchyard_usage_pipeline_lag_seconds",
        &[("stage", "ingest")],
    );
    assert!((0.0..60.0).contains(&lag), "ingest lag {lag}");
    assert!(scrape.total("switchyard_db_pool_max_connections", &[]) >= 1.0);
    assert!(scrape.total("switchyard_db_pool_connections", &[]) >= 1.0);
    if distributed {
        assert!(
            scrape.total(
                "switchyard_redis_pool_max_connections",
                &[("pool", "control_plane")]
            ) >= 1.0
        );
    }
}

/// Waits until ingest stored every served request (usage reaches the database asynchronously).
async fn wait_ingested(client: &reqwest::Client, origin: &str, token: Option<&str>, served: u64) {
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let s = scrape(client, origin, token).await;
            let n = if s.has("switchyard_usage_ingested_total") {
                s.total("switchyard_usage_ingested_total", &[])
            } else {
                0.0
            };
            anyhow::ensure!(n >= served as f64, "{n} ingested");
            Ok(())
        },
    )
    .await
    .expect("usage ingested");
}

/// The metric names the dashboards query (`switchyard_…` in their `expr`s), without the
/// `_bucket`/`_sum`/`_count` suffix of histogram series.
fn dashboard_metrics() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards");
    let mut names = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(!exprs.is_empty(), "{} has no queries", path.display());
        for expr in exprs {
            let mut rest = expr.as_str();
            while let Some(i) = rest.find("switchyard_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                names.insert(name.to_owned());
                rest = &tail[end..];
            }
        }
    }
    assert!(files > 0, "no dashboard in {}", dir.display());
    names
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_planes_export_every_metric_after_traffic() {
    let deployment = Deployment::new().await.expect("fresh database and prefix");
    let mut cmd = command(&control_plane_binary());
    cmd.envs(deployment.control_plane_env())
        .env("SWITCHYARD_METRICS_TOKEN", TOKEN)
        .env("RUST_LOG", "info");
    let cp = ChildGuard::spawn("control-plane", cmd).await.unwrap();
    cp.wait_healthy("/readyz", Duration::from_secs(30))
        .await
        .unwrap();
    let dp = deployment
        .start_data_plane_with(
            "dp-metrics",
            "info",
            &[
                ("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8,::1/128"),
                ("SWITCHYARD_METRICS_TOKEN", TOKEN),
            ],
        )
        .await
        .unwrap();
    let fake = FakeOpenAi::start_with_key("sk-upstream-metrics")
        .await
        .unwrap();
    let client = http_client();

    // The token is required on both planes, in each one's error format.
    for origin in [cp.base_url(), dp.base_url()] {
        let refused = client
            .get(format!("{origin}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{origin}");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("SWITCHYARD_METRICS_TOKEN")
        );
        let wrong = client
            .get(format!("{origin}/metrics"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let traffic = drive(&mut api, &dp.base_url(), &fake).await;

    let gateway = scrape(&client, &dp.base_url(), Some(TOKEN)).await;
    check_gateway(&gateway, &traffic, true);
    wait_ingested(&client, &cp.base_url(), Some(TOKEN), traffic.served).await;
    let control = scrape(&client, &cp.base_url(), Some(TOKEN)).await;
    check_control(&control, &traffic, true);
    assert!(
        !control.has("switchyard_requests_total"),
        "a distributed control plane serves no gateway traffic"
    );

    // Every metric the dashboard queries exists on one of the two planes.
    let missing: Vec<_> = dashboard_metrics()
        .into_iter()
        .filter(|m| !gateway.has(m) && !control.has(m))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no plane exports: {missing:?}"
    );

    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_setup_exports_both_planes_metrics_on_one_port() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&control_plane_binary());
    cmd.env("SWITCHYARD_DATA_DIR", data_dir.path())
        .env("RUST_LOG", "info");
    let cp = ChildGuard::spawn("control-plane", cmd).await.unwrap();
    cp.wait_healthy("/readyz", Duration::from_secs(30))
        .await
        .unwrap();
    let fake = FakeOpenAi::start_with_key("sk-upstream-metrics")
        .await
        .unwrap();
    let client = http_client();

    let mut api = ControlApi::new(&cp.base_url()).unwrap();
    let traffic = drive(&mut api, &cp.base_url(), &fake).await;
    wait_ingested(&client, &cp.base_url(), None, traffic.served).await;
    let both = scrape(&client, &cp.base_url(), None).await;
    check_gateway(&both, &traffic, false);
    check_control(&both, &traffic, false);
}
