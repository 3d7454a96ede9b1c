//! Performance against one bare HTTP hop: what a `data-plane` node costs with governance off and
//! with everything on, next to a logic-free reverse proxy and a direct call, in the same run.
//!
//! Run it (optimised build; needs the local Postgres, starts its own `redis-server`):
//! `cargo build --release --bins && cargo bench -p control-plane --bench hop`.
//! Smoke-test it in a debug build: `BENCH_QUICK=1 cargo bench -p control-plane --bench hop
//! --profile dev` (debug numbers say nothing).
//!
//! **Processes and cores.** The benchmark binary is started three more times in other roles
//! (`HOP_ROLE`, see `wire`): the fast fake OpenAI upstream and the bare proxy. With two or more
//! CPUs the hop under test (the bare proxy or the data plane) is pinned to CPU 0 and everything
//! else (this load generator, the upstream, the control plane, a `redis-server` of the run's own)
//! to CPU 1, with `taskset`; PostgreSQL is the machine's and is off the request path.
//!
//! **Targets.** `direct` (the upstream itself), `bare` (the proxy), and one data-plane node in
//! distributed mode with two keys: `gw off` (a key with no limit, budget, cache or route: auth
//! and metering) and `gw on` (a key in a team, RPM and TPM limits and a budget on both, a
//! weighted route over two deployments, the exact response cache on with a 0% hit rate since
//! every prompt carries a sequence number, usage events). Every target gets the same bodies.
//!
//! **Phases**, each run on every target before the next phase: closed loop at 32 and 128
//! concurrent (max req/s; CPU per request = the hop process's user+system time over the phase /
//! requests); open loop at 200 and 1,000 req/s with latency measured from the scheduled send time
//! (queueing counts); streaming at concurrency 1 (time to first byte, total time, the largest gap
//! between two reads, with `BENCH_CHUNK_DELAY_MS` before each upstream event); and
//! `BENCH_SLOW_STREAMS` (10,000) concurrent slow streams (1 s between events), opened at
//! `BENCH_SLOW_RAMP` per second, for memory per open stream (RSS when all are open, minus RSS
//! before, / open streams) and completion. Idle RSS is read once a hop is up and configured,
//! before its first request; peak RSS is `VmHWM` at the end. Redis commands per request come
//! from `INFO commandstats` over the 32-concurrent phase of each gateway side.
//!
//! It prints the table and the ratios to the bare hop, with the targets of issue 15, and writes
//! the JSON to `<target dir>/bench-hop.json`. Knobs: `BENCH_QUICK=1`, `BENCH_SECS`,
//! `BENCH_STREAM_REQUESTS`, `BENCH_CHUNK_DELAY_MS`, `BENCH_SLOW_STREAMS`, `BENCH_SLOW_DELAY_MS`,
//! `BENCH_SLOW_RAMP`.

// A benchmark's output is its result; it runs outside the service, where printing is the point.
#![allow(clippy::print_stdout)]

mod common;
#[path = "hop/wire.rs"]
mod wire;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use common::{cpu_time, env_num, micros, target_dir};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision, id_of};
use testkit::e2e::Deployment;
use testkit::proc::ChildGuard;

const ROLE_ENV: &str = "HOP_ROLE";
const UPSTREAM_ENV: &str = "HOP_UPSTREAM";
/// The hop under test runs here; everything else on [`REST_CPU`].
const HOP_CPU: usize = 0;
const REST_CPU: usize = 1;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Open file limit the run asks for: 10,000 streams are 20,000 sockets in the hop.
const NOFILE: u64 = 65_536;
const MODEL: &str = "bench-model";
const UPSTREAM_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    secs: f64,
    stream_requests: usize,
    chunk_delay_ms: u64,
    slow_streams: usize,
    slow_delay_ms: u64,
    slow_ramp: u32,
    /// `BENCH_TARGETS`: the hops to measure (`bare`, `gw off`, `gw on`; direct always runs).
    targets: Option<Vec<String>>,
    /// `BENCH_PHASES`: the phases to run (`closed`, `open`, `stream`, `slow`).
    phases: Option<Vec<String>>,
}

fn list_env(name: &str) -> Option<Vec<String>> {
    let v = std::env::var(name).ok()?;
    Some(v.split(',').map(|s| s.trim().to_owned()).collect())
}

impl Settings {
    fn wants_target(&self, label: &str) -> bool {
        label == "direct"
            || self
                .targets
                .as_ref()
                .is_none_or(|t| t.iter().any(|x| x == label))
    }

    fn wants_phase(&self, phase: &str) -> bool {
        self.phases
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == phase))
    }

    fn from_env() -> anyhow::Result<Self> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || !std::env::args().any(|a| a == "--bench");
        let (secs, stream_requests, slow_streams, slow_delay_ms) = if quick {
            (1.0, 20, 200, 50)
        } else {
            (10.0, 200, 10_000, 1_000)
        };
        let s = Settings {
            quick,
            secs: env_num("BENCH_SECS")?.unwrap_or(secs),
            stream_requests: env_num("BENCH_STREAM_REQUESTS")?.unwrap_or(stream_requests),
            chunk_delay_ms: env_num("BENCH_CHUNK_DELAY_MS")?.unwrap_or(2),
            slow_streams: env_num("BENCH_SLOW_STREAMS")?.unwrap_or(slow_streams),
            slow_delay_ms: env_num("BENCH_SLOW_DELAY_MS")?.unwrap_or(slow_delay_ms),
            slow_ramp: env_num("BENCH_SLOW_RAMP")?.unwrap_or(1_000),
            targets: list_env("BENCH_TARGETS"),
            phases: list_env("BENCH_PHASES"),
        };
        if !(s.secs > 0.0 && s.secs <= 600.0) {
            bail!("BENCH_SECS must be in (0, 600]");
        }
        if s.stream_requests == 0 || s.stream_requests > 100_000 {
            bail!("BENCH_STREAM_REQUESTS must be in 1..=100000");
        }
        if s.chunk_delay_ms > 1_000 || s.slow_delay_ms > 5_000 {
            bail!("BENCH_CHUNK_DELAY_MS must be at most 1000 and BENCH_SLOW_DELAY_MS at most 5000");
        }
        if s.slow_streams == 0 || s.slow_streams > 20_000 {
            bail!("BENCH_SLOW_STREAMS must be in 1..=20000");
        }
        if s.slow_ramp == 0 || s.slow_ramp > 20_000 {
            bail!("BENCH_SLOW_RAMP must be in 1..=20000");
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: pinning, limits, memory.

/// Whether there are two CPUs to split the run over.
fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && std::process::Command::new("taskset")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Pins every thread of this process to `cpu` (call before the runtime starts its threads).
fn pin_self(cpu: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("taskset could not pin the benchmark to CPU {cpu}");
    }
    Ok(())
}

/// Raises this process's open-file limit (children inherit it); returns the soft limit now in
/// effect.
fn raise_nofile() -> u64 {
    // The hard limit first (needs CAP_SYS_RESOURCE), else the soft limit up to the hard one.
    let pid = std::process::id().to_string();
    for limit in [
        format!("--nofile={NOFILE}:{NOFILE}"),
        format!("--nofile={NOFILE}:"),
    ] {
        let raised = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &limit])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if raised {
            break;
        }
    }
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// A command for `binary` with testkit's clean environment, pinned to `cpu` when pinning.
fn pinned(binary: &Path, cpu: Option<usize>) -> tokio::process::Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = testkit::proc::command(Path::new("taskset"));
            cmd.arg("-c").arg(cpu.to_string()).arg(binary);
            cmd
        }
        None => testkit::proc::command(binary),
    }
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{name} of {pid}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// A `redis-server` of the run's own (no persistence), so `INFO commandstats` counts only this
/// run and Redis shares the non-hop CPU.
struct OwnRedis {
    url: String,
    _child: tokio::process::Child,
}

async fn own_redis(cpu: Option<usize>) -> anyhow::Result<OwnRedis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned);
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg("redis-server");
            c
        }
        None => tokio::process::Command::new("redis-server"),
    };
    let child = cmd
        .args(args)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server")?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())?;
    testkit::e2e::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let client = client.clone();
        async move {
            let mut c = client.get_multiplexed_async_connection().await?;
            let _: String = redis::cmd("PING").query_async(&mut c).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    Ok(OwnRedis { url, _child: child })
}

async fn redis_calls(url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect())
}

/// Commands the control plane sends (usage ingestion, config publishing), not the node.
const CONTROL_PLANE_COMMANDS: &[&str] = &[
    "xreadgroup",
    "xack",
    "xdel",
    "xautoclaim",
    "xpending",
    "xinfo|groups",
    "xinfo|stream",
    "xgroup|create",
    "xlen",
    "publish",
    "info",
    "client|setinfo",
    "hello",
];

// ---------------------------------------------------------------------------------------------
// Load generation.

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// Where one side's requests go.
#[derive(Debug, Clone)]
struct Target {
    label: &'static str,
    url: String,
    key: Option<String>,
    model: &'static str,
    /// The hop's process (CPU and memory), none for `direct`.
    pid: Option<u32>,
}

/// Every request's prompt differs (`seq`), so a cache never hits.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn body(model: &str, stream: bool, delay_ms: u64) -> Bytes {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let delay = if stream && delay_ms > 0 {
        format!(" [[delay:{delay_ms}]]")
    } else {
        String::new()
    };
    let stream = if stream {
        r#","stream":true,"stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello, request {seq}.{delay}"}}],"max_tokens":32{stream}}}"#
    ))
}

fn request(t: &Target, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut r = Request::post(format!("{}/v1/chat/completions", t.url))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = &t.key {
        r = r.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    Ok(r.body(Full::new(body))?)
}

async fn call(client: &HttpClient, t: &Target) -> anyhow::Result<()> {
    let req = request(t, body(t.model, false, 0))?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    })
    .await
    .context("timed out")??;
    if resp.0 != StatusCode::OK {
        bail!(
            "{} answered {}: {}",
            t.label,
            resp.0,
            String::from_utf8_lossy(&resp.1)
        );
    }
    Ok(())
}

/// One stream: (time to first byte, total time, largest gap between two body reads).
async fn call_stream(
    client: &HttpClient,
    t: &Target,
    delay_ms: u64,
    opened: Option<&(dyn Fn() + Sync)>,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let start = Instant::now();
    let req = request(t, body(t.model, true, delay_ms))?;
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.request(req).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let text = resp.into_body().collect().await?.to_bytes();
            bail!(
                "{} answered {status}: {}",
                t.label,
                String::from_utf8_lossy(&text)
            );
        }
        let mut body = resp.into_body();
        let (mut first, mut last, mut gap) = (None, Instant::now(), Duration::ZERO);
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let now = Instant::now();
            match first {
                None => {
                    first = Some(now - start);
                    if let Some(f) = opened {
                        f();
                    }
                }
                Some(_) => gap = gap.max(now - last),
            }
            last = now;
            tail.extend_from_slice(&data);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 64);
            }
        }
        if !tail.windows(12).any(|w| w == b"data: [DONE]") {
            bail!("{}: the stream ended without [DONE]", t.label);
        }
        Ok((first.context("an empty stream")?, start.elapsed(), gap))
    })
    .await
    .context("timed out")?
}

/// Latency percentiles (µs) and throughput of one phase on one target.
#[derive(Debug, Clone, Default)]
struct Stats {
    ok: usize,
    errors: usize,
    elapsed_secs: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    /// The hop process's CPU per request, in ms (closed-loop phases).
    cpu_ms: Option<f64>,
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
            p90: pct(90.0),
            p99: pct(99.0),
            max: us.last().copied().unwrap_or(0),
            cpu_ms: None,
        }
    }

    fn rps(&self) -> f64 {
        common::per_second(self.ok, self.elapsed_secs)
    }

    fn json(&self) -> Value {
        json!({
            "ok": self.ok, "errors": self.errors, "rps": self.rps(),
            "p50_us": self.p50, "p90_us": self.p90, "p99_us": self.p99, "max_us": self.max,
            "cpu_ms_per_request": self.cpu_ms,
        })
    }
}

async fn closed_loop(client: &HttpClient, t: &Target, concurrency: usize, secs: f64) -> Stats {
    // Warm up: connections, the node's caches and leases.
    for _ in 0..concurrency.min(64) {
        let _ = call(client, t).await;
    }
    let cpu0 = t.pid.and_then(|p| cpu_time(p).ok());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, t) = (client.clone(), t.clone());
        tasks.spawn(async move {
            let (mut samples, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match call(&client, &t).await {
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
    let mut stats = Stats::from_samples(samples, errors, started.elapsed());
    if let (Some(pid), Some(cpu0)) = (t.pid, cpu0)
        && let Ok(cpu1) = cpu_time(pid)
    {
        let requests = (stats.ok + stats.errors).max(1) as f64;
        stats.cpu_ms = Some((cpu1 - cpu0).as_secs_f64() * 1000.0 / requests);
    }
    stats
}

/// At most this many requests in flight in an open loop; beyond it the target is saturated and
/// the skipped sends count as errors.
const OPEN_MAX_IN_FLIGHT: usize = 4096;

async fn open_loop(client: &HttpClient, t: &Target, rate: u32, secs: f64) -> Stats {
    let total = (f64::from(rate) * secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(OPEN_MAX_IN_FLIGHT));
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
        let (client, t) = (client.clone(), t.clone());
        tasks.spawn(async move {
            let r = call(&client, &t).await;
            drop(permit);
            // From the scheduled time: a late send is latency too (coordinated omission).
            r.map(|()| micros(scheduled.elapsed()))
        });
    }
    let mut samples = Vec::with_capacity(total as usize);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(us)) => samples.push(us),
            _ => errors += 1,
        }
    }
    Stats::from_samples(samples, errors, start.elapsed())
}

/// Streams one after another: (first byte, total, largest gap between reads).
async fn streaming(client: &HttpClient, t: &Target, s: &Settings) -> [Stats; 3] {
    for _ in 0..s.stream_requests.min(20) {
        let _ = call_stream(client, t, s.chunk_delay_ms, None).await;
    }
    let (mut first, mut total, mut gap, mut errors) = (vec![], vec![], vec![], 0);
    let started = Instant::now();
    for _ in 0..s.stream_requests {
        match call_stream(client, t, s.chunk_delay_ms, None).await {
            Ok((a, b, c)) => {
                first.push(micros(a));
                total.push(micros(b));
                gap.push(micros(c));
            }
            Err(_) => errors += 1,
        }
    }
    let e = started.elapsed();
    [
        Stats::from_samples(first, errors, e),
        Stats::from_samples(total, errors, e),
        Stats::from_samples(gap, errors, e),
    ]
}

/// The many-slow-streams phase on one hop.
#[derive(Debug, Clone, Default)]
struct Slow {
    streams: usize,
    completed: usize,
    failed: usize,
    first_error: Option<String>,
    /// Streams open (first byte seen, not yet ended) when memory was read.
    open_at_sample: usize,
    rss_before_kib: u64,
    rss_open_kib: u64,
    /// Total time of the slowest stream, in ms.
    slowest_ms: u64,
}

impl Slow {
    fn kib_per_stream(&self) -> f64 {
        if self.open_at_sample == 0 {
            return 0.0;
        }
        self.rss_open_kib.saturating_sub(self.rss_before_kib) as f64 / self.open_at_sample as f64
    }
}

async fn slow_streams(t: &Target, s: &Settings) -> anyhow::Result<Slow> {
    let pid = t.pid.context("slow streams need the hop's pid")?;
    // A client of the phase's own: its thousands of connections close with it.
    let client = http_client();
    let rss_before_kib = rss_kib(pid)?.0;
    let opened = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let all_open = Arc::new(tokio::sync::Notify::new());
    let n = s.slow_streams;
    let interval = Duration::from_secs_f64(1.0 / f64::from(s.slow_ramp));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let sampler = {
        let (opened, ended, all_open) = (opened.clone(), ended.clone(), all_open.clone());
        tokio::spawn(async move {
            all_open.notified().await;
            let open = opened.load(Ordering::SeqCst) - ended.load(Ordering::SeqCst);
            (open, rss_kib(pid).map(|r| r.0).unwrap_or(0))
        })
    };
    for i in 0..n {
        tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        let (client, t) = (client.clone(), t.clone());
        let (opened, ended, all_open) = (opened.clone(), ended.clone(), all_open.clone());
        let delay = s.slow_delay_ms;
        tasks.spawn(async move {
            let on_open = || {
                if opened.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    all_open.notify_one();
                }
            };
            let r = call_stream(&client, &t, delay, Some(&on_open)).await;
            ended.fetch_add(1, Ordering::SeqCst);
            r
        });
    }
    let mut slow = Slow {
        streams: n,
        rss_before_kib,
        ..Slow::default()
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((_, total, _))) => {
                slow.completed += 1;
                slow.slowest_ms = slow.slowest_ms.max(total.as_millis() as u64);
            }
            Ok(Err(e)) => {
                slow.failed += 1;
                slow.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                slow.failed += 1;
                slow.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if opened.load(Ordering::SeqCst) == n {
        let (open, rss) = sampler.await?;
        slow.open_at_sample = open;
        slow.rss_open_kib = rss;
    } else {
        sampler.abort();
    }
    Ok(slow)
}

// ---------------------------------------------------------------------------------------------
// Setup.

/// Signs up the two organizations and returns (key off, key on).
async fn provision(cp: &str, upstream: &str) -> anyhow::Result<(String, String)> {
    let provision = |model: &'static str| Provision {
        kind: "openai_compatible",
        base_url: Some(upstream),
        api_key: Some("sk-upstream"),
        model,
        upstream_model: UPSTREAM_MODEL,
        input_price_per_mtok: 0.15,
        output_price_per_mtok: 0.6,
    };
    let off = ControlApi::new(cp)?
        .provision(&provision(MODEL))
        .await
        .context("provisioning gw off")?
        .key
        .key;

    let mut api = ControlApi::new(cp)?;
    let a = api
        .provision(&provision("bench-a"))
        .await
        .context("provisioning gw on")?;
    let provider_b = id_of(
        &api.create_provider(&json!({
            "name": "upstream b", "kind": "openai_compatible",
            "base_url": upstream, "api_key": "sk-upstream-b",
        }))
        .await?,
    )?;
    let b = id_of(
        &api.create_model(&json!({
            "name": "bench-b", "provider_id": provider_b, "upstream_model": UPSTREAM_MODEL,
            "input_price_per_mtok": 0.15, "output_price_per_mtok": 0.6,
        }))
        .await?,
    )?;
    api.create_route(&json!({
        "name": MODEL, "strategy": "weighted",
        "candidates": [{"model_id": a.model_id, "weight": 1}, {"model_id": b, "weight": 1}],
    }))
    .await?;
    let limits = json!({"rpm_limit": 100_000_000, "tpm_limit": 10_000_000_000_u64});
    let team = id_of(&api.create_team(&json!({"name": "bench"})).await?)?;
    api.expect(
        Method::PATCH,
        &format!("/api/v1/teams/{team}"),
        Some(&limits),
        StatusCode::OK,
    )
    .await?;
    let key = api
        .create_key(&json!({
            "name": "governed", "team_id": team,
            "cache": {"mode": "exact", "ttl_seconds": 60},
        }))
        .await?;
    api.expect(
        Method::PATCH,
        &format!("/api/v1/keys/{}", key.id),
        Some(&limits),
        StatusCode::OK,
    )
    .await?;
    for (scope, id) in [("team", &team), ("key", &key.id)] {
        api.expect(
            Method::POST,
            "/api/v1/budgets",
            Some(&json!({"scope": scope, "scope_id": id, "limit_usd": "1000000", "period": "monthly"})),
            StatusCode::CREATED,
        )
        .await?;
    }
    Ok((off, key.key))
}

async fn wait_until_served(client: &HttpClient, t: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call(client, t).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.context("never served")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The benchmark binary in another role, pinned.
async fn spawn_role(
    role: &str,
    cpu: Option<usize>,
    env: &[(&str, &str)],
) -> anyhow::Result<ChildGuard> {
    let exe = std::env::current_exe()?;
    let mut cmd = pinned(&exe, cpu);
    cmd.env(ROLE_ENV, role).envs(env.iter().copied());
    ChildGuard::spawn(role, cmd).await
}

// ---------------------------------------------------------------------------------------------
// Report.

struct Report {
    targets: Vec<Target>,
    /// phase → per-target stats, in target order.
    phases: Vec<(String, Vec<Stats>)>,
    idle_rss_kib: BTreeMap<&'static str, u64>,
    peak_rss_kib: BTreeMap<&'static str, u64>,
    slow: BTreeMap<&'static str, Slow>,
    redis_per_request: BTreeMap<&'static str, BTreeMap<String, f64>>,
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

fn added(g: u64, d: u64) -> i64 {
    i64::try_from(g).unwrap_or(i64::MAX) - i64::try_from(d).unwrap_or(i64::MAX)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".to_owned()
    }
}

impl Report {
    fn index(&self, label: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.label == label)
    }

    fn phase(&self, name: &str) -> Option<&Vec<Stats>> {
        self.phases.iter().find(|(p, _)| p == name).map(|(_, s)| s)
    }

    fn print(&self) {
        println!();
        println!(
            "{:<22} {:<8} {:>7} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "phase",
            "target",
            "ok",
            "err",
            "req/s",
            "CPU ms/r",
            "p50",
            "p90",
            "p99",
            "+p50",
            "+p99"
        );
        println!("{}", "-".repeat(118));
        for (phase, stats) in &self.phases {
            let direct = &stats[0];
            for (i, (t, s)) in self.targets.iter().zip(stats).enumerate() {
                println!(
                    "{:<22} {:<8} {:>7} {:>4} {:>9.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    if i == 0 { phase.as_str() } else { "" },
                    t.label,
                    s.ok,
                    s.errors,
                    s.rps(),
                    s.cpu_ms.map_or("-".to_owned(), |c| format!("{c:.4}")),
                    fmt_us(s.p50),
                    fmt_us(s.p90),
                    fmt_us(s.p99),
                    if i == 0 {
                        "-".to_owned()
                    } else {
                        format!("{:+}µs", added(s.p50, direct.p50))
                    },
                    if i == 0 {
                        "-".to_owned()
                    } else {
                        format!("{:+}µs", added(s.p99, direct.p99))
                    },
                );
            }
            println!("{}", "-".repeat(118));
        }
        println!();
        println!(
            "{:<8} {:>10} {:>10} {:>8} {:>9} {:>10} {:>11} {:>10}",
            "hop",
            "idle RSS",
            "peak RSS",
            "streams",
            "complete",
            "open@read",
            "KiB/stream",
            "slowest"
        );
        for t in self.targets.iter().skip(1) {
            let slow = self.slow.get(t.label).cloned().unwrap_or_default();
            println!(
                "{:<8} {:>8.1}MB {:>8.1}MB {:>8} {:>9} {:>10} {:>11.1} {:>8}ms",
                t.label,
                self.idle_rss_kib.get(t.label).copied().unwrap_or(0) as f64 / 1024.0,
                self.peak_rss_kib.get(t.label).copied().unwrap_or(0) as f64 / 1024.0,
                slow.streams,
                slow.completed,
                slow.open_at_sample,
                slow.kib_per_stream(),
                slow.slowest_ms,
            );
            if let Some(e) = &slow.first_error {
                println!("         first failure: {e}");
            }
        }
        println!();
        for (side, m) in &self.redis_per_request {
            let list: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            println!("redis commands per request, {side}: {}", list.join(", "));
        }
        println!();
        for line in self.verdicts() {
            println!("{line}");
        }
    }

    /// The targets of issue 15 against the bare hop, governance on (`gw on`).
    fn verdicts(&self) -> Vec<String> {
        let (Some(bare), Some(on)) = (self.index("bare"), self.index("gw on")) else {
            return vec![];
        };
        let mut out = vec!["targets (gw on versus the bare hop, same run):".to_owned()];
        fn verdict(out: &mut Vec<String>, name: String, value: f64, limit: f64, shown: String) {
            out.push(format!(
                "  {} {name}: {shown} (target ≤ {limit}×)",
                if value <= limit { "met " } else { "MISS" }
            ));
        }
        /// Added latency `g` (gw on) against `b` (bare), both over the direct call. A bare hop
        /// that adds nothing measurable (≤ 0: the direct call shares its CPU with the load
        /// generator, the hop runs on the other) gives no ratio: both figures are shown.
        fn added_check(out: &mut Vec<String>, name: String, g: i64, b: i64, limit: f64) {
            if b <= 0 {
                out.push(format!(
                    "  n/a  {name}: {g:+} µs vs {b:+} µs (the bare hop's is within the noise: no ratio)"
                ));
                return;
            }
            let gf = g.max(0) as f64;
            let bf = b as f64;
            verdict(
                out,
                name,
                gf / bf,
                limit,
                format!("{g:+} µs vs {b:+} µs = {}", ratio(gf, bf)),
            );
        }
        if let Some(stats) = self.phase("closed c=32")
            && let (Some(b), Some(g)) = (stats[bare].cpu_ms, stats[on].cpu_ms)
        {
            verdict(
                &mut out,
                "CPU per request".into(),
                g / b,
                2.5,
                format!("{g:.4} ms vs {b:.4} ms = {}", ratio(g, b)),
            );
        }
        for rate in ["open 200/s", "open 1000/s"] {
            let Some(stats) = self.phase(rate) else {
                continue;
            };
            let d = &stats[0];
            for (p, limit, pick) in [
                ("p50", 1.5, (|s: &Stats| s.p50) as fn(&Stats) -> u64),
                ("p99", 2.0, |s: &Stats| s.p99),
            ] {
                let (b, g) = (
                    added(pick(&stats[bare]), pick(d)),
                    added(pick(&stats[on]), pick(d)),
                );
                added_check(&mut out, format!("added {p} at {rate}"), g, b, limit);
            }
        }
        if let Some(stats) = self.phase("stream total c=1") {
            let d = &stats[0];
            let (b, g) = (added(stats[bare].p50, d.p50), added(stats[on].p50, d.p50));
            added_check(
                &mut out,
                "streaming total-time overhead (p50)".into(),
                g,
                b,
                2.0,
            );
        }
        let idle = self.idle_rss_kib.get("gw on").copied().unwrap_or(0) as f64 / 1024.0;
        out.push(format!(
            "  {} idle RSS: {idle:.1} MB (target ≤ 30 MB)",
            if idle <= 30.0 { "met " } else { "MISS" }
        ));
        if let (Some(b), Some(g)) = (self.slow.get("bare"), self.slow.get("gw on")) {
            verdict(
                &mut out,
                "memory per open stream".into(),
                g.kib_per_stream() / b.kib_per_stream().max(0.1),
                1.5,
                format!(
                    "{:.1} KiB vs {:.1} KiB = {}",
                    g.kib_per_stream(),
                    b.kib_per_stream(),
                    ratio(g.kib_per_stream(), b.kib_per_stream())
                ),
            );
            out.push(format!(
                "  {} {} concurrent streams completed: {} of {}",
                if g.completed == g.streams {
                    "met "
                } else {
                    "MISS"
                },
                g.streams,
                g.completed,
                g.streams
            ));
        }
        out
    }

    fn json(&self, s: &Settings) -> Value {
        json!({
            "benchmark": "hop",
            "build": if cfg!(debug_assertions) { "debug" } else { "optimised" },
            "settings": {
                "quick": s.quick, "secs": s.secs, "stream_requests": s.stream_requests,
                "chunk_delay_ms": s.chunk_delay_ms, "slow_streams": s.slow_streams,
                "slow_delay_ms": s.slow_delay_ms, "slow_ramp": s.slow_ramp,
            },
            "phases": self.phases.iter().map(|(p, stats)| json!({
                "phase": p,
                "targets": self.targets.iter().zip(stats)
                    .map(|(t, s)| (t.label.to_owned(), s.json()))
                    .collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "idle_rss_kib": self.idle_rss_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "slow_streams": self.slow.iter().map(|(k, v)| (k.to_string(), json!({
                "streams": v.streams, "completed": v.completed, "failed": v.failed,
                "open_at_sample": v.open_at_sample, "rss_before_kib": v.rss_before_kib,
                "rss_open_kib": v.rss_open_kib, "kib_per_stream": v.kib_per_stream(),
                "slowest_ms": v.slowest_ms,
            }))).collect::<serde_json::Map<_, _>>(),
            "redis_commands_per_request": self.redis_per_request,
            "verdicts": self.verdicts(),
        })
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(s: Settings, pin: bool, nofile: u64) -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug (NOT representative)"
    } else {
        "optimised"
    };
    println!("switchyard hop benchmark — build: {build}; {s:?}");
    let (hop_cpu, rest_cpu) = if pin {
        println!(
            "hop under test on CPU {HOP_CPU}; load generator, upstream, control plane and Redis on CPU {REST_CPU}"
        );
        (Some(HOP_CPU), Some(REST_CPU))
    } else {
        println!("fewer than 2 CPUs or no taskset: nothing is pinned");
        (None, None)
    };
    let mut s = s;
    // A proxy holds two sockets per stream (client side and upstream side); leave room for the
    // rest of its descriptors.
    let fit = usize::try_from(nofile.saturating_sub(400) / 2).unwrap_or(usize::MAX);
    if s.slow_streams > fit {
        println!(
            "open-file limit {nofile}: a proxy needs two descriptors per stream, so the slow-stream phase opens {fit} instead of {} (raise the hard limit, e.g. `ulimit -Hn 65536` as a privileged user, to run them all)",
            s.slow_streams
        );
        s.slow_streams = fit;
    }

    let upstream = spawn_role("upstream", rest_cpu, &[]).await?;
    let upstream_url = upstream.base_url();
    let bare = spawn_role("bare", hop_cpu, &[(UPSTREAM_ENV, upstream_url.as_str())]).await?;

    let redis = own_redis(rest_cpu).await?;
    let mut deployment = Deployment::new().await?;
    deployment.redis_url = redis.url.clone();
    let mut cp_cmd = pinned(&testkit::proc::control_plane_binary(), rest_cpu);
    cp_cmd
        .envs(deployment.control_plane_env())
        .env("RUST_LOG", "warn,control_plane=info");
    let cp = ChildGuard::spawn("control-plane", cp_cmd).await?;
    cp.wait_healthy("/healthz", Duration::from_secs(30)).await?;

    // `BENCH_NODE_WRAPPER` (e.g. `heaptrack -o /tmp/node`): a profiler to start the node under;
    // its CPU and memory figures then describe the wrapper too.
    let mut dp_cmd = match std::env::var("BENCH_NODE_WRAPPER") {
        Ok(wrapper) if !wrapper.trim().is_empty() => {
            let mut words = wrapper.split_whitespace();
            let program = words.next().unwrap_or_default();
            let mut cmd = pinned(Path::new(program), hop_cpu);
            cmd.args(words).arg(testkit::proc::data_plane_binary());
            cmd
        }
        _ => pinned(&testkit::proc::data_plane_binary(), hop_cpu),
    };
    dp_cmd
        .env(
            "SWITCHYARD_USAGE_SPOOL_DIR",
            deployment.spool_dir("hop-node"),
        )
        .env("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8")
        .env("SWITCHYARD_MAX_CONCURRENT_REQUESTS", "50000")
        .env("SWITCHYARD_MAX_CONCURRENT_PER_ORG", "50000")
        .env("SWITCHYARD_MAX_CONCURRENT_PER_PROVIDER", "50000")
        .env("REDIS_URL", &deployment.redis_url)
        .env("SWITCHYARD_REDIS_PREFIX", &deployment.prefix)
        .env("SWITCHYARD_MASTER_KEY", &deployment.master_key)
        .env("SWITCHYARD_NODE_ID", "hop-node")
        .env("RUST_LOG", "warn,data_plane=info");
    let node = ChildGuard::spawn("data-plane", dp_cmd).await?;
    node.wait_healthy("/readyz", Duration::from_secs(30))
        .await?;

    let (bare_pid, node_pid) = (
        bare.id().context("bare pid")?,
        node.id().context("node pid")?,
    );
    // The real processes, not `taskset` (which execs them, keeping the pid).
    let (key_off, key_on) = provision(&cp.base_url(), &upstream_url).await?;
    let all_targets = vec![
        Target {
            label: "direct",
            url: upstream_url.clone(),
            key: None,
            model: UPSTREAM_MODEL,
            pid: None,
        },
        Target {
            label: "bare",
            url: bare.base_url(),
            key: None,
            model: UPSTREAM_MODEL,
            pid: Some(bare_pid),
        },
        Target {
            label: "gw off",
            url: node.base_url(),
            key: Some(key_off),
            model: MODEL,
            pid: Some(node_pid),
        },
        Target {
            label: "gw on",
            url: node.base_url(),
            key: Some(key_on),
            model: MODEL,
            pid: Some(node_pid),
        },
    ];
    let targets: Vec<Target> = all_targets
        .into_iter()
        .filter(|t| s.wants_target(t.label))
        .collect();
    // Idle: up and configured (the node has the published config), no request served yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut report = Report {
        targets: targets.clone(),
        phases: vec![],
        idle_rss_kib: BTreeMap::from([
            ("bare", rss_kib(bare_pid)?.0),
            ("gw off", rss_kib(node_pid)?.0),
            ("gw on", rss_kib(node_pid)?.0),
        ]),
        peak_rss_kib: BTreeMap::new(),
        slow: BTreeMap::new(),
        redis_per_request: BTreeMap::new(),
    };

    let client = http_client();
    for t in &targets {
        wait_until_served(&client, t)
            .await
            .with_context(|| format!("{} is not serving", t.label))?;
    }

    for concurrency in [32, 128].into_iter().filter(|_| s.wants_phase("closed")) {
        let phase = format!("closed c={concurrency}");
        println!("{phase}");
        let mut stats = Vec::new();
        for t in &targets {
            let before = redis_calls(&redis.url).await?;
            let st = closed_loop(&client, t, concurrency, s.secs).await;
            if concurrency == 32 && t.label.starts_with("gw") {
                let after = redis_calls(&redis.url).await?;
                let requests = (st.ok + st.errors).max(1) as f64;
                let per: BTreeMap<String, f64> = after
                    .iter()
                    .filter(|(name, _)| !CONTROL_PLANE_COMMANDS.contains(&name.as_str()))
                    .filter_map(|(name, a)| {
                        let d = a.saturating_sub(before.get(name).copied().unwrap_or(0));
                        (d > 0).then(|| (name.clone(), d as f64 / requests))
                    })
                    .collect();
                report.redis_per_request.insert(t.label, per);
            }
            stats.push(st);
        }
        report.phases.push((phase, stats));
    }
    for rate in [200, 1000].into_iter().filter(|_| s.wants_phase("open")) {
        let phase = format!("open {rate}/s");
        println!("{phase}");
        let mut stats = Vec::new();
        for t in &targets {
            stats.push(open_loop(&client, t, rate, s.secs).await);
        }
        report.phases.push((phase, stats));
    }
    if s.wants_phase("stream") {
        println!("streaming c=1");
        let mut first = Vec::new();
        let mut total = Vec::new();
        let mut gap = Vec::new();
        for t in &targets {
            let [a, b, c] = streaming(&client, t, &s).await;
            first.push(a);
            total.push(b);
            gap.push(c);
        }
        report.phases.push(("stream first byte c=1".into(), first));
        report.phases.push(("stream total c=1".into(), total));
        report.phases.push(("stream max gap c=1".into(), gap));
    }
    drop(client);

    for t in targets
        .iter()
        .skip(1)
        .filter(|t| t.label != "gw off" && s.wants_phase("slow"))
    {
        println!("{} concurrent slow streams: {}", s.slow_streams, t.label);
        report.slow.insert(t.label, slow_streams(t, &s).await?);
    }
    for (label, pid) in [
        ("bare", bare_pid),
        ("gw off", node_pid),
        ("gw on", node_pid),
    ] {
        report.peak_rss_kib.insert(label, rss_kib(pid)?.1);
    }

    report.print();
    let out = target_dir().join("bench-hop.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report.json(&s))?)?;
    println!("\nJSON written to {}", out.display());
    drop(node);
    drop(cp);
    deployment.cleanup().await;
    drop(bare);
    drop(upstream);
    Ok(())
}

fn role_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("hop: bench");
        return Ok(());
    }
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("upstream") => return role_runtime()?.block_on(wire::upstream()),
        Ok("bare") => {
            let upstream = std::env::var(UPSTREAM_ENV).context("HOP_UPSTREAM")?;
            return role_runtime()?.block_on(wire::bare(upstream));
        }
        _ => {}
    }
    let settings = Settings::from_env()?;
    let pin = can_pin();
    if pin {
        pin_self(REST_CPU)?;
    }
    let nofile = raise_nofile();
    role_runtime()?.block_on(run(settings, pin, nofile))
}
