//! Gateway overhead benchmark: the same chat completion sent straight to a fast fake upstream and
//! through the gateway, so the difference is what Switchyard adds.
//!
//! Run it (optimised build): `cargo bench -p control-plane --bench overhead`.
//! Smoke-test it quickly in a debug build: `BENCH_QUICK=1 cargo bench -p control-plane --bench
//! overhead --profile dev` (debug numbers say nothing about real overhead).
//!
//! Setup: the fake upstream (`testkit::fake_openai`, no artificial delay, request recording off)
//! runs on its own single-threaded tokio runtime on its own OS thread; the gateway is the
//! `control-plane` binary in its zero-setup mode (no Redis, SQLite in a temporary data dir, the
//! data plane embedded on the same port) in a separate process; it is provisioned through the
//! control API (signup → provider `openai_compatible` pointing at the fake → model → key). The
//! load generator runs in this process. Everything is on 127.0.0.1 and every phase is bounded in
//! request count and time.
//!
//! Phases, each run against the fake directly and then through the gateway:
//! 1. sequential: concurrency 1, `BENCH_SEQ_REQUESTS` non-streaming requests after a warm-up;
//! 2. open loop: `BENCH_RATE` requests per second for `BENCH_SECS` seconds at fixed, precomputed
//!    send times. Latency is measured from the *scheduled* send time, so a stall that delays later
//!    sends counts against the system instead of being hidden (coordinated omission);
//! 3. closed loop: `BENCH_CONCURRENCY` workers back to back for `BENCH_SECS` seconds: maximum
//!    throughput;
//! 4. streaming: concurrency 1, time to the first content token (TTFT) and to the end of stream.
//!
//! The table goes to stdout and the same numbers as JSON to `<target dir>/bench-overhead.json`.
//! Knobs (environment): `BENCH_QUICK=1` (about a second per phase; also the default when run
//! without cargo bench's `--bench` flag, e.g. by `cargo test --benches`), `BENCH_SEQ_REQUESTS`,
//! `BENCH_WARMUP`, `BENCH_RATE`, `BENCH_SECS`, `BENCH_CONCURRENCY`, `BENCH_STREAM_REQUESTS`.

// A benchmark's output is its result; it runs outside the service, where printing is the point.
#![allow(clippy::print_stdout)]

mod common;

use common::{env_num, micros, start_fake_upstream, target_dir};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision};
use testkit::proc::ChildGuard;

/// Every request is bounded: a hung request fails after this instead of stalling the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The open-loop phase never keeps more requests in flight than this; beyond it the system is
/// saturated and the run reports the requests it had to skip instead of piling up sockets.
const MAX_IN_FLIGHT: usize = 4096;
const UPSTREAM_KEY: &str = "sk-bench-upstream-0123456789";
const UPSTREAM_MODEL: &str = "gpt-4o-mini";
const GATEWAY_MODEL: &str = "bench-model";

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    warmup: usize,
    seq_requests: usize,
    rate: u32,
    secs: f64,
    concurrency: usize,
    stream_requests: usize,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        // `cargo bench` passes `--bench`; without it we run as a smoke test (`cargo test
        // --benches`), so the quick settings apply.
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || std::env::args().any(|a| a == "--quick")
            || !std::env::args().any(|a| a == "--bench");
        let (warmup, seq, rate, secs, conc, stream) = if quick {
            (20, 200, 200, 1.0, 16, 50)
        } else {
            (200, 2000, 500, 10.0, 64, 500)
        };
        let s = Settings {
            quick,
            warmup: env_num("BENCH_WARMUP")?.unwrap_or(warmup),
            seq_requests: env_num("BENCH_SEQ_REQUESTS")?.unwrap_or(seq),
            rate: env_num("BENCH_RATE")?.unwrap_or(rate),
            secs: env_num("BENCH_SECS")?.unwrap_or(secs),
            concurrency: env_num("BENCH_CONCURRENCY")?.unwrap_or(conc),
            stream_requests: env_num("BENCH_STREAM_REQUESTS")?.unwrap_or(stream),
        };
        // Keep the load bounded whatever the environment says.
        if s.seq_requests == 0 || s.seq_requests > 1_000_000 {
            bail!("BENCH_SEQ_REQUESTS must be in 1..=1000000");
        }
        if s.rate == 0 || s.rate > 50_000 {
            bail!("BENCH_RATE must be in 1..=50000");
        }
        if !(s.secs > 0.0 && s.secs <= 600.0) {
            bail!("BENCH_SECS must be in (0, 600]");
        }
        if s.concurrency == 0 || s.concurrency > 1024 {
            bail!("BENCH_CONCURRENCY must be in 1..=1024");
        }
        if s.stream_requests == 0 || s.stream_requests > 100_000 {
            bail!("BENCH_STREAM_REQUESTS must be in 1..=100000");
        }
        Ok(s)
    }
}

/// Where requests of one side go.
#[derive(Debug, Clone)]
struct Target {
    label: &'static str,
    url: String,
    key: String,
    model: &'static str,
}

impl Target {
    fn body(&self, stream: bool) -> Value {
        let mut b = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 16,
        });
        if stream {
            b["stream"] = json!(true);
        }
        b
    }
}

/// Latency summary of one phase on one target, in microseconds.
#[derive(Debug, Clone, Default)]
struct Stats {
    ok: usize,
    errors: usize,
    skipped: usize,
    elapsed_secs: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: u64,
}

impl Stats {
    fn from_samples(mut us: Vec<u64>, errors: usize, elapsed: Duration) -> Self {
        us.sort_unstable();
        let pct = |p: f64| common::percentile(&us, p);
        let mean = if us.is_empty() {
            0
        } else {
            us.iter().sum::<u64>() / us.len() as u64
        };
        Stats {
            ok: us.len(),
            errors,
            skipped: 0,
            elapsed_secs: elapsed.as_secs_f64(),
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: us.last().copied().unwrap_or(0),
            mean,
        }
    }

    fn rps(&self) -> f64 {
        common::per_second(self.ok, self.elapsed_secs)
    }

    fn to_json(&self) -> Value {
        json!({
            "ok": self.ok, "errors": self.errors, "skipped": self.skipped,
            "elapsed_secs": self.elapsed_secs, "throughput_rps": self.rps(),
            "p50_us": self.p50, "p90_us": self.p90, "p99_us": self.p99,
            "max_us": self.max, "mean_us": self.mean,
        })
    }
}

/// One non-streaming request, body read to the end; fails on any non-200.
async fn call(client: &reqwest::Client, t: &Target, body: &Value) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{}/chat/completions", t.url))
        .bearer_auth(&t.key)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "{} answered {status}: {}",
            t.label,
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(())
}

/// One streaming request: (time to the first non-empty content delta, time to end of stream).
async fn call_stream(
    client: &reqwest::Client,
    t: &Target,
    body: &Value,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let resp = client
        .post(format!("{}/chat/completions", t.url))
        .bearer_auth(&t.key)
        .json(body)
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::OK {
        bail!("{} answered {}", t.label, resp.status());
    }
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut ttft = None;
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk?));
        if ttft.is_none() {
            let has_content = testkit::sse::data_events(&text).iter().any(|e| {
                serde_json::from_str::<Value>(e).is_ok_and(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                })
            });
            if has_content {
                ttft = Some(start.elapsed());
            }
        }
    }
    let total = start.elapsed();
    if !text.contains("[DONE]") {
        bail!("{}: stream ended without [DONE]", t.label);
    }
    Ok((ttft.context("no content token in the stream")?, total))
}

async fn sequential(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let body = t.body(false);
    for _ in 0..s.warmup {
        let _ = call(client, t, &body).await;
    }
    let mut samples = Vec::with_capacity(s.seq_requests);
    let mut errors = 0;
    let started = Instant::now();
    for _ in 0..s.seq_requests {
        let t0 = Instant::now();
        match call(client, t, &body).await {
            Ok(()) => samples.push(micros(t0.elapsed())),
            Err(_) => errors += 1,
        }
    }
    Stats::from_samples(samples, errors, started.elapsed())
}

async fn open_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let body = Arc::new(t.body(false));
    let total = (f64::from(s.rate) * s.secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(s.rate));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = 0;
    // A short lead time so the first send time is not already in the past.
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (client, t, body) = (client.clone(), t.clone(), Arc::clone(&body));
        tasks.spawn(async move {
            let r = call(&client, &t, &body).await;
            drop(permit);
            // Measured from the scheduled time, not from when the send actually happened.
            r.map(|()| micros(scheduled.elapsed()))
        });
    }
    let mut samples = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(us)) => samples.push(us),
            _ => errors += 1,
        }
    }
    let mut stats = Stats::from_samples(samples, errors, start.elapsed());
    stats.skipped = skipped;
    stats
}

async fn closed_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let body = Arc::new(t.body(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.concurrency {
        let (client, t, body) = (client.clone(), t.clone(), Arc::clone(&body));
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
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
    let mut samples = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((s, e)) = r {
            samples.extend(s);
            errors += e;
        }
    }
    Stats::from_samples(samples, errors, started.elapsed())
}

/// Streaming at concurrency 1: (TTFT stats, end-of-stream stats).
async fn streaming(client: &reqwest::Client, t: &Target, s: &Settings) -> (Stats, Stats) {
    let body = t.body(true);
    for _ in 0..s.warmup.min(s.stream_requests) {
        let _ = call_stream(client, t, &body).await;
    }
    let (mut ttft, mut total) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let started = Instant::now();
    for _ in 0..s.stream_requests {
        match call_stream(client, t, &body).await {
            Ok((a, b)) => {
                ttft.push(micros(a));
                total.push(micros(b));
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed();
    (
        Stats::from_samples(ttft, errors, elapsed),
        Stats::from_samples(total, errors, elapsed),
    )
}

/// One row pair of the report.
struct Row {
    phase: &'static str,
    direct: Stats,
    gateway: Stats,
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

fn fmt_delta(g: u64, d: u64) -> String {
    let diff = i128::from(g) - i128::from(d);
    let sign = if diff < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        fmt_us(u64::try_from(diff.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<28} {:<9} {:>7} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "phase", "target", "ok", "err", "skip", "p50", "p90", "p99", "max", "req/s"
    );
    println!("{}", "-".repeat(112));
    for r in rows {
        for (label, s) in [("direct", &r.direct), ("gateway", &r.gateway)] {
            println!(
                "{:<28} {:<9} {:>7} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10.0}",
                if label == "direct" { r.phase } else { "" },
                label,
                s.ok,
                s.errors,
                s.skipped,
                fmt_us(s.p50),
                fmt_us(s.p90),
                fmt_us(s.p99),
                fmt_us(s.max),
                s.rps()
            );
        }
        let rps_ratio = if r.direct.rps() > 0.0 {
            format!("{:.0}%", 100.0 * r.gateway.rps() / r.direct.rps())
        } else {
            "-".to_owned()
        };
        println!(
            "{:<28} {:<9} {:>7} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "",
            "added",
            "",
            "",
            "",
            fmt_delta(r.gateway.p50, r.direct.p50),
            fmt_delta(r.gateway.p90, r.direct.p90),
            fmt_delta(r.gateway.p99, r.direct.p99),
            fmt_delta(r.gateway.max, r.direct.max),
            rps_ratio
        );
        println!("{}", "-".repeat(112));
    }
}

fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                let added = |g: u64, d: u64| i128::from(g) - i128::from(d);
                json!({
                    "phase": r.phase,
                    "direct": r.direct.to_json(),
                    "gateway": r.gateway.to_json(),
                    "added_us": {
                        "p50": added(r.gateway.p50, r.direct.p50),
                        "p90": added(r.gateway.p90, r.direct.p90),
                        "p99": added(r.gateway.p99, r.direct.p99),
                    },
                })
            })
            .collect(),
    )
}

async fn start_gateway(data_dir: &std::path::Path) -> anyhow::Result<ChildGuard> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_control-plane"));
    let mut cmd = testkit::proc::command(bin);
    // Warnings only: per-request logging would measure the terminal, not the gateway.
    cmd.env("RUST_LOG", "warn,control_plane=info")
        .env("SWITCHYARD_DATA_DIR", data_dir);
    let gw = ChildGuard::spawn("gateway", cmd).await?;
    gw.wait_healthy("/healthz", Duration::from_secs(30)).await?;
    Ok(gw)
}

/// Polls until the gateway serves the freshly created key (config reaches the embedded data
/// plane asynchronously).
async fn wait_until_routable(client: &reqwest::Client, t: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = t.body(false);
    loop {
        match call(client, t, &body).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("the gateway never served the new key"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug (unoptimised: numbers are NOT representative)"
    } else {
        "optimised"
    };
    println!("switchyard overhead benchmark — build: {profile}; settings: {settings:?}");

    let fake_url = start_fake_upstream(Some(UPSTREAM_KEY))?;
    let data_dir = tempfile::tempdir()?;
    let gw = start_gateway(data_dir.path()).await?;
    println!("fake upstream at {fake_url}; gateway at {}", gw.base_url());

    let mut api = ControlApi::new(&gw.base_url())?;
    let provisioned = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&fake_url),
            api_key: Some(UPSTREAM_KEY),
            model: GATEWAY_MODEL,
            upstream_model: UPSTREAM_MODEL,
            input_price_per_mtok: 2.5,
            output_price_per_mtok: 10.0,
        })
        .await
        .context("provisioning through the control API")?;

    let direct = Target {
        label: "direct",
        url: fake_url.clone(),
        key: UPSTREAM_KEY.to_owned(),
        model: UPSTREAM_MODEL,
    };
    let gateway = Target {
        label: "gateway",
        url: format!("{}/v1", gw.base_url()),
        key: provisioned.key.key.clone(),
        model: GATEWAY_MODEL,
    };
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()?;
    wait_until_routable(&client, &gateway).await?;

    let mut rows = Vec::new();
    println!("phase 1/4: sequential, concurrency 1");
    rows.push(Row {
        phase: "sequential c=1",
        direct: sequential(&client, &direct, &settings).await,
        gateway: sequential(&client, &gateway, &settings).await,
    });
    println!("phase 2/4: open loop, {} req/s", settings.rate);
    rows.push(Row {
        phase: leak(format!("open loop {} req/s", settings.rate)),
        direct: open_loop(&client, &direct, &settings).await,
        gateway: open_loop(&client, &gateway, &settings).await,
    });
    println!(
        "phase 3/4: closed loop, concurrency {}",
        settings.concurrency
    );
    rows.push(Row {
        phase: leak(format!("closed loop c={}", settings.concurrency)),
        direct: closed_loop(&client, &direct, &settings).await,
        gateway: closed_loop(&client, &gateway, &settings).await,
    });
    println!("phase 4/4: streaming, concurrency 1");
    let (d_ttft, d_total) = streaming(&client, &direct, &settings).await;
    let (g_ttft, g_total) = streaming(&client, &gateway, &settings).await;
    rows.push(Row {
        phase: "stream TTFT c=1",
        direct: d_ttft,
        gateway: g_ttft,
    });
    rows.push(Row {
        phase: "stream complete c=1",
        direct: d_total,
        gateway: g_total,
    });

    print_table(&rows);

    let report = json!({
        "benchmark": "gateway-overhead",
        "build": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "quick": settings.quick,
        "settings": {
            "warmup": settings.warmup, "seq_requests": settings.seq_requests,
            "rate_rps": settings.rate, "phase_secs": settings.secs,
            "concurrency": settings.concurrency, "stream_requests": settings.stream_requests,
        },
        "latency_unit": "microseconds",
        "phases": rows_json(&rows),
    });
    let out = target_dir().join("bench-overhead.json");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("\nJSON written to {}", out.display());

    let failures: usize = rows
        .iter()
        .map(|r| r.direct.errors + r.gateway.errors)
        .sum();
    if failures > 0 {
        println!("warning: {failures} requests failed; see the err column");
        // Show what the gateway said about it, without flooding the terminal.
        for line in gw.logs().iter().rev().take(20).rev() {
            println!("  gateway: {line}");
        }
    }
    drop(gw);
    Ok(())
}

/// Phase labels are built once per run; leaking a handful of short strings keeps `Row` simple.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn main() -> anyhow::Result<()> {
    // libtest's `--bench` flag (and friends) arrive here because harness = false; only a filter
    // or `--list` would mean anything, and this binary has a single benchmark.
    if std::env::args().any(|a| a == "--list") {
        println!("overhead: bench");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(settings))
}
