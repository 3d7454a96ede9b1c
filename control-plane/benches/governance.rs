//! Governance cost benchmark: what rate limits and budgets add to every request of a
//! `data-plane` node in distributed mode, measured against the same node with them off.
//!
//! Run it (optimised build; needs the local Postgres and Redis, like the e2e tests):
//! `cargo bench -p control-plane --bench governance`.
//! Smoke-test it quickly in a debug build: `BENCH_QUICK=1 cargo bench -p control-plane --bench
//! governance --profile dev` (debug numbers say nothing about real cost).
//!
//! Setup: a fresh Postgres database and Redis prefix, the `control-plane` binary and one
//! `data-plane` process (separate processes, as in production), a fast fake OpenAI upstream on
//! its own thread, and two organizations provisioned through the control API:
//! - **off**: a key with no limit and no budget;
//! - **on**: RPM and TPM limits on the key, its team and the organization, and a budget on each
//!   of the three (caps far away, so the node works from budget leases — the steady state).
//!
//! For each organization: a closed loop at `BENCH_CONCURRENCY` (max throughput, CPU per
//! request) and an open loop at `BENCH_RATE` requests per second (latency measured from the
//! scheduled send time, so queueing counts). Reported per side: req/s, p50/p99 latency, the
//! data-plane process's CPU time per request (`/proc/<pid>/stat` utime+stime over the phase,
//! divided by requests) and Redis calls per request (`INFO commandstats` deltas, grouped, see
//! `redis_groups`: `scripts` = limit and budget scripts — the limit check is the only Redis round
//! trip on a governed request's path, budget scripts are lease refills and batched reports;
//! `xadd` = usage events, pipelined in batches off the request path; pool checks). The control
//! plane shares that Redis, so its background commands (usage ingest) are included; every
//! command by name is in the JSON.
//!
//! The table goes to stdout and as JSON to `<target dir>/bench-governance.json`.
//! Knobs: `BENCH_QUICK=1`, `BENCH_SECS`, `BENCH_CONCURRENCY`, `BENCH_RATE`.

// A benchmark's output is its result; it runs outside the service, where printing is the point.
#![allow(clippy::print_stdout)]

mod common;

use common::{Settings, cpu_time, micros, start_fake_upstream, target_dir};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::Deployment;
use testkit::proc::ChildGuard;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_IN_FLIGHT: usize = 4096;
const MODEL: &str = "bench-model";

#[derive(Debug, Clone)]
struct Target {
    label: &'static str,
    url: String,
    key: String,
}

fn body() -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 16,
    })
}

async fn call(client: &reqwest::Client, t: &Target, body: &Value) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{}/v1/chat/completions", t.url))
        .bearer_auth(&t.key)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status != StatusCode::OK {
        bail!(
            "{} answered {status}: {}",
            t.label,
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(())
}

/// Latency percentiles (µs) and throughput of one phase.
#[derive(Debug, Clone, Default)]
struct Stats {
    ok: usize,
    errors: usize,
    elapsed_secs: f64,
    p50: u64,
    p99: u64,
}

impl Stats {
    fn from_samples(mut us: Vec<u64>, errors: usize, elapsed: Duration) -> Self {
        us.sort_unstable();
        let pct = |p: f64| common::percentile(&us, p);
        Stats {
            ok: us.len(),
            errors,
            elapsed_secs: elapsed.as_secs_f64(),
            p50: pct(50.0),
            p99: pct(99.0),
        }
    }

    fn rps(&self) -> f64 {
        common::per_second(self.ok, self.elapsed_secs)
    }
}

async fn closed_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let body = Arc::new(body());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.concurrency {
        let (client, t, body) = (client.clone(), t.clone(), Arc::clone(&body));
        tasks.spawn(async move {
            let (mut samples, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match call(&client, &t, &body).await {
                    Ok(()) => samples.push(micros(t0.elapsed())),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        });
    }
    let (mut samples, mut errors) = (Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        if let Ok((s, e)) = r {
            samples.extend(s);
            errors += e;
        }
    }
    Stats::from_samples(samples, errors, started.elapsed())
}

async fn open_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let body = Arc::new(body());
    let total = (f64::from(s.rate) * s.secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(s.rate));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = 0;
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            errors += 1;
            continue;
        };
        let (client, t, body) = (client.clone(), t.clone(), Arc::clone(&body));
        tasks.spawn(async move {
            let r = call(&client, &t, &body).await;
            drop(permit);
            r.map(|()| micros(scheduled.elapsed()))
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(us)) => samples.push(us),
            _ => errors += 1,
        }
    }
    Stats::from_samples(samples, errors, start.elapsed())
}

/// The process's user + system CPU time so far.
/// `INFO commandstats` as command → calls.
async fn redis_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, stats)) = rest.split_once(':') else {
            continue;
        };
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.insert(name.to_owned(), calls);
    }
    Ok(out)
}

/// One side's measurements.
struct Side {
    label: &'static str,
    closed: Stats,
    open: Stats,
    cpu_ms_per_request: f64,
    redis_per_request: BTreeMap<String, f64>,
}

async fn measure(
    client: &reqwest::Client,
    t: &Target,
    s: &Settings,
    node_pid: u32,
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Side> {
    // Warm up: connections, caches, leases.
    for _ in 0..50 {
        call(client, t, &body()).await?;
    }
    let (cpu0, calls0) = (cpu_time(node_pid)?, redis_calls(redis).await?);
    let closed = closed_loop(client, t, s).await;
    let open = open_loop(client, t, s).await;
    let (cpu1, calls1) = (cpu_time(node_pid)?, redis_calls(redis).await?);
    let requests = (closed.ok + closed.errors + open.ok + open.errors).max(1) as f64;
    let redis_per_request = calls1
        .iter()
        .filter_map(|(name, after)| {
            let delta = after.saturating_sub(calls0.get(name).copied().unwrap_or(0));
            // The two INFO calls themselves are not the node's.
            let delta = if name == "info" {
                delta.saturating_sub(1)
            } else {
                delta
            };
            (delta > 0).then(|| (name.clone(), delta as f64 / requests))
        })
        .collect();
    Ok(Side {
        label: t.label,
        closed,
        open,
        cpu_ms_per_request: (cpu1 - cpu0).as_secs_f64() * 1000.0 / requests,
        redis_per_request,
    })
}

/// Signs up a fresh organization with a provider, a model and a key; with `governed`, puts
/// limits and budgets on the key, a team and the organization. Returns the key.
async fn organization(
    cp: &str,
    fake_url: &str,
    name: &str,
    governed: bool,
) -> anyhow::Result<String> {
    let mut api = ControlApi::new(cp)?;
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(fake_url),
            api_key: Some("sk-upstream"),
            model: MODEL,
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .with_context(|| format!("provisioning {name}"))?;
    if !governed {
        return Ok(setup.key.key);
    }
    let limits = json!({"rpm_limit": 10_000_000, "tpm_limit": 1_000_000_000_u64});
    let team = id_of(&api.create_team(&json!({"name": "bench"})).await?)?;
    api.expect(
        Method::PATCH,
        &format!("/api/v1/teams/{team}"),
        Some(&limits),
        StatusCode::OK,
    )
    .await?;
    api.expect(
        Method::PATCH,
        "/api/v1/organization",
        Some(&limits),
        StatusCode::OK,
    )
    .await?;
    let key = api
        .create_key(&json!({"name": "governed", "team_id": team}))
        .await?;
    api.expect(
        Method::PATCH,
        &format!("/api/v1/keys/{}", key.id),
        Some(&limits),
        StatusCode::OK,
    )
    .await?;
    for (scope, id) in [
        ("tenant", None),
        ("team", Some(team.clone())),
        ("key", Some(key.id.clone())),
    ] {
        let mut b = json!({"scope": scope, "limit_usd": "1000000", "period": "monthly"});
        if let Some(id) = id {
            b["scope_id"] = json!(id);
        }
        api.expect(
            Method::POST,
            "/api/v1/budgets",
            Some(&b),
            StatusCode::CREATED,
        )
        .await?;
    }
    Ok(key.key)
}

async fn wait_until_routable(client: &reqwest::Client, t: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call(client, t, &body()).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.context("never served")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Redis work per request, grouped: script calls (`evalsha`/`eval`: one round trip each; the
/// commands a script runs inside Redis are counted by Redis too, under their own names, and
/// left out here), `xadd` (usage events, pipelined), pool checks (`ping`/`unwatch` that the
/// connection pool sends when it hands out a connection) and everything else.
fn redis_groups(m: &BTreeMap<String, f64>) -> [(&'static str, f64); 4] {
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
    let scripts = get("evalsha") + get("eval");
    let xadd = get("xadd");
    let pool = get("ping") + get("unwatch");
    let other = [
        "xreadgroup",
        "xack",
        "xdel",
        "get",
        "mget",
        "xrange",
        "subscribe",
        "publish",
    ]
    .iter()
    .map(|k| get(k))
    .sum::<f64>();
    [
        ("scripts", scripts),
        ("xadd", xadd),
        ("pool checks", pool),
        ("ingest and config", other),
    ]
}

fn fmt_redis(m: &BTreeMap<String, f64>) -> String {
    redis_groups(m)
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run(s: Settings) -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug (NOT representative)"
    } else {
        "optimised"
    };
    println!("switchyard governance benchmark — build: {build}; settings: {s:?}");
    let fake_url = start_fake_upstream(None)?;
    let deployment = Deployment::new().await?;
    let cp = deployment
        .start_control_plane("warn,control_plane=info")
        .await?;
    let node: ChildGuard = deployment
        .start_data_plane("bench-node", "warn,data_plane=info")
        .await?;
    let pid = node.id().context("data-plane pid")?;
    let off = organization(&cp.base_url(), &fake_url, "off", false).await?;
    let on = organization(&cp.base_url(), &fake_url, "on", true).await?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()?;
    let targets = [
        Target {
            label: "governance off",
            url: node.base_url(),
            key: off,
        },
        Target {
            label: "governance on",
            url: node.base_url(),
            key: on,
        },
    ];
    let mut redis = testkit::redis_prefix::connect().await?;
    let mut sides = Vec::new();
    for t in &targets {
        wait_until_routable(&client, t).await?;
        println!("measuring: {}", t.label);
        sides.push(measure(&client, t, &s, pid, &mut redis).await?);
    }

    println!();
    println!(
        "{:<16} {:>9} {:>10} {:>10} {:>11} {:>11} {:>9}  redis calls / request",
        "", "req/s", "p50", "p99", "open p50", "open p99", "CPU ms/r"
    );
    for side in &sides {
        println!(
            "{:<16} {:>9.0} {:>8}µs {:>8}µs {:>9}µs {:>9}µs {:>9.3}  {}",
            side.label,
            side.closed.rps(),
            side.closed.p50,
            side.closed.p99,
            side.open.p50,
            side.open.p99,
            side.cpu_ms_per_request,
            fmt_redis(&side.redis_per_request)
        );
    }
    let (a, b) = (&sides[0], &sides[1]);
    println!(
        "governance adds: {:+.3} CPU ms/request, open-loop p50 {:+}µs, p99 {:+}µs, {:.2} script calls (evalsha) per request",
        b.cpu_ms_per_request - a.cpu_ms_per_request,
        i128::from(b.open.p50) - i128::from(a.open.p50),
        i128::from(b.open.p99) - i128::from(a.open.p99),
        b.redis_per_request.get("evalsha").copied().unwrap_or(0.0)
            - a.redis_per_request.get("evalsha").copied().unwrap_or(0.0),
    );
    let errors: usize = sides.iter().map(|s| s.closed.errors + s.open.errors).sum();
    if errors > 0 {
        println!("warning: {errors} requests failed or were skipped");
    }
    let report = json!({
        "benchmark": "governance",
        "build": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "quick": s.quick,
        "settings": {"secs": s.secs, "concurrency": s.concurrency, "rate_rps": s.rate},
        "sides": sides.iter().map(|x| json!({
            "label": x.label,
            "closed": {"rps": x.closed.rps(), "p50_us": x.closed.p50, "p99_us": x.closed.p99, "errors": x.closed.errors},
            "open": {"p50_us": x.open.p50, "p99_us": x.open.p99, "errors": x.open.errors},
            "cpu_ms_per_request": x.cpu_ms_per_request,
            "redis_per_request": redis_groups(&x.redis_per_request)
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "redis_commands_per_request": x.redis_per_request,
        })).collect::<Vec<_>>(),
    });
    let out = target_dir().join("bench-governance.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("JSON written to {}", out.display());
    drop(node);
    drop(cp);
    deployment.cleanup().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("governance: bench");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}
