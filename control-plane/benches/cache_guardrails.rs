//! Response cache and guardrails cost benchmark: what an exact-cache lookup (miss and hit) and
//! a guardrail policy add to every request of a `data-plane` node in distributed mode, measured
//! against the same node with neither.
//!
//! Run it (optimised build; needs the local Postgres and Redis, like the e2e tests):
//! `cargo bench -p control-plane --bench cache_guardrails`.
//! Smoke-test it quickly in a debug build: `BENCH_QUICK=1 cargo bench -p control-plane --bench
//! cache_guardrails --profile dev` (debug numbers say nothing about real cost).
//!
//! Setup: a fresh Postgres database and Redis prefix, the `control-plane` binary and one
//! `data-plane` process (separate processes, as in production, on the shared Redis), a fast
//! fake OpenAI upstream on its own thread, and one organization provisioned through the control
//! API with three keys (the two cache sides share one), for four sides:
//! - **off**: no cache setting and no guardrail (the baseline; answers `x-switchyard-cache:
//!   bypass`);
//! - **cache miss**: `"cache": {"mode": "exact"}` and a prompt that is new on every request, so
//!   each pays the lookup (a Redis GET) and the store of the answer (a Redis SET), at a 0% hit
//!   rate (`miss`);
//! - **cache hit**: the same setting and one fixed prompt, so every measured request is served
//!   from Redis without an upstream call (`hit`; the warm-up waits for the first stored answer);
//! - **guardrails**: a key-scoped guardrail that redacts PII (with restoration in the answer),
//!   checks a blocked term and a prompt-token cap (`bypass`; the warm-up waits until the node
//!   refuses the blocked term on that key, so the policy is known to be in force).
//!
//! Every side sends the same ~1 KB chat prompt (ordinary sentences with one email address and
//! one phone number, which the guardrail redacts), so prompt size — parsing, token estimation,
//! hashing — is the same on each; only the hit side keeps it fixed, the others put a request
//! counter at its start. Each response's `x-switchyard-cache` must be the side's expected
//! verdict: one that is not fails the benchmark, since it would be measuring the wrong thing.
//!
//! For each side: a closed loop at `BENCH_CONCURRENCY` (max throughput, CPU per request) and an
//! open loop at `BENCH_RATE` requests per second (latency measured from the scheduled send time,
//! so queueing counts). Reported per side: req/s (closed loop), the data-plane process's CPU
//! time per request (`/proc/<pid>/stat` utime+stime over both loops, divided by requests),
//! open-loop p50/p99 latency, the gateway's own time (`x-switchyard-overhead-ms`, open-loop p50)
//! and each of those as a difference from **off**.
//!
//! The table goes to stdout and as JSON to `<target dir>/bench-cache-guardrails.json`.
//! Knobs: `BENCH_QUICK=1`, `BENCH_SECS`, `BENCH_CONCURRENCY`, `BENCH_RATE`.

// A benchmark's output is its result; it runs outside the service, where printing is the point.
#![allow(clippy::print_stdout)]

mod common;

use common::{Settings, cpu_time, micros, start_fake_upstream, target_dir};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::api::{ControlApi, Provision};
use testkit::e2e::Deployment;
use testkit::proc::ChildGuard;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_IN_FLIGHT: usize = 4096;
const MODEL: &str = "bench-model";
const BLOCKED_TERM: &str = "project falcon";

/// The request counter that makes prompts unique, shared by every side so that no two
/// requests of the run (other than the hit side's) ever share a prompt.
static SEQ: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Clone)]
struct Target {
    label: &'static str,
    url: String,
    key: String,
    /// Whether every request carries a new prompt (else the one fixed prompt).
    unique: bool,
    /// The `x-switchyard-cache` every measured answer must carry.
    expect: &'static str,
}

/// About 1 KB of ordinary text with one email address and one phone number (the PII the
/// guardrail side redacts), led by `seq` so the prompt (and with it the cache digest) differs
/// per request.
fn prompt(seq: u64) -> String {
    let mut text = format!(
        "Request {seq}. Contact jane.doe@example.com or +44 20 7946 0958 about the quarterly \
         report before Friday. "
    );
    let filler = [
        "The team reviewed the numbers from the last three months and found that most of the \
         growth came from the new regional offices.",
        "Please summarise the main points in plain language, keeping each one to a single \
         sentence.",
        "We would also like a short list of open questions for the planning meeting next week.",
        "Leave out anything about travel expenses, which finance is handling separately.",
        "If some figures look inconsistent, say which ones and why rather than guessing.",
    ];
    let mut i = 0;
    while text.len() < 1000 {
        text.push_str(filler[i % filler.len()]);
        text.push(' ');
        i += 1;
    }
    text
}

fn body(text: &str) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
    })
}

impl Target {
    fn next_body(&self) -> Value {
        if self.unique {
            body(&prompt(SEQ.fetch_add(1, Ordering::Relaxed)))
        } else {
            body(&prompt(0))
        }
    }
}

/// One answer: its cache verdict and the gateway's own time in µs, if it said.
struct Answer {
    cache: String,
    own_us: Option<u64>,
}

async fn send(client: &reqwest::Client, t: &Target, body: &Value) -> anyhow::Result<Answer> {
    let resp = client
        .post(format!("{}/v1/chat/completions", t.url))
        .bearer_auth(&t.key)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cache = header("x-switchyard-cache").unwrap_or_default();
    let own_us = header("x-switchyard-overhead-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| (ms * 1000.0).round() as u64);
    let bytes = resp.bytes().await?;
    if status != StatusCode::OK {
        bail!(
            "{} answered {status}: {}",
            t.label,
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(Answer { cache, own_us })
}

/// One measured request: any failure is counted as an error, and an answer with the wrong
/// cache verdict is returned as such so the phase can fail loudly.
async fn call(client: &reqwest::Client, t: &Target) -> Result<Answer, CallError> {
    let a = send(client, t, &t.next_body())
        .await
        .map_err(CallError::Failed)?;
    if a.cache != t.expect {
        return Err(CallError::WrongVerdict(a.cache));
    }
    Ok(a)
}

enum CallError {
    Failed(anyhow::Error),
    WrongVerdict(String),
}

/// Latency percentiles (µs) and throughput of one phase.
#[derive(Debug, Clone, Default)]
struct Stats {
    ok: usize,
    errors: usize,
    elapsed_secs: f64,
    p50: u64,
    p99: u64,
    own_p50: u64,
    /// Answers whose `x-switchyard-cache` was not the side's (with one of them).
    wrong_verdicts: usize,
    wrong_example: Option<String>,
    first_error: Option<String>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the tasks of one phase collect.
#[derive(Default)]
struct Samples {
    latency_us: Vec<u64>,
    own_us: Vec<u64>,
    errors: usize,
    wrong_verdicts: usize,
    wrong_example: Option<String>,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, r: Result<Answer, CallError>, latency_us: u64) {
        match r {
            Ok(a) => {
                self.latency_us.push(latency_us);
                self.own_us.extend(a.own_us);
            }
            Err(CallError::WrongVerdict(v)) => {
                self.wrong_verdicts += 1;
                self.wrong_example.get_or_insert(v);
            }
            Err(CallError::Failed(e)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.latency_us.extend(other.latency_us);
        self.own_us.extend(other.own_us);
        self.errors += other.errors;
        self.wrong_verdicts += other.wrong_verdicts;
        if self.wrong_example.is_none() {
            self.wrong_example = other.wrong_example;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn stats(mut self, elapsed: Duration) -> Stats {
        self.latency_us.sort_unstable();
        self.own_us.sort_unstable();
        Stats {
            ok: self.latency_us.len(),
            errors: self.errors,
            elapsed_secs: elapsed.as_secs_f64(),
            p50: percentile(&self.latency_us, 50.0),
            p99: percentile(&self.latency_us, 99.0),
            own_p50: percentile(&self.own_us, 50.0),
            wrong_verdicts: self.wrong_verdicts,
            wrong_example: self.wrong_example,
            first_error: self.first_error,
        }
    }
}

impl Stats {
    fn rps(&self) -> f64 {
        common::per_second(self.ok, self.elapsed_secs)
    }

    fn requests(&self) -> usize {
        self.ok + self.errors + self.wrong_verdicts
    }
}

async fn closed_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.concurrency {
        let (client, t) = (client.clone(), t.clone());
        tasks.spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let r = call(&client, &t).await;
                samples.record(r, micros(t0.elapsed()));
            }
            samples
        });
    }
    let mut all = Samples::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(s) => all.merge(s),
            Err(_) => all.errors += 1,
        }
    }
    all.stats(started.elapsed())
}

async fn open_loop(client: &reqwest::Client, t: &Target, s: &Settings) -> Stats {
    let total = (f64::from(s.rate) * s.secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(s.rate));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut all = Samples::default();
    let start = Instant::now() + Duration::from_millis(20);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            all.errors += 1;
            continue;
        };
        let (client, t) = (client.clone(), t.clone());
        tasks.spawn(async move {
            let r = call(&client, &t).await;
            drop(permit);
            (r, micros(scheduled.elapsed()))
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((r, us)) => all.record(r, us),
            Err(_) => all.errors += 1,
        }
    }
    all.stats(start.elapsed())
}

/// The process's user + system CPU time so far.
/// One side's measurements.
struct Side {
    label: &'static str,
    expect: &'static str,
    closed: Stats,
    open: Stats,
    cpu_ms_per_request: f64,
}

async fn measure(
    client: &reqwest::Client,
    t: &Target,
    s: &Settings,
    node_pid: u32,
) -> anyhow::Result<Side> {
    // Warm up (connections, the node's config cache, token estimator); for the hit side this
    // also lets the first answer's store land, so all 50 must already be hits at the end.
    for _ in 0..50 {
        send(client, t, &t.next_body()).await?;
    }
    let check = send(client, t, &t.next_body()).await?;
    if check.cache != t.expect {
        bail!(
            "{}: x-switchyard-cache is {:?} after warm-up, expected {:?}",
            t.label,
            check.cache,
            t.expect
        );
    }
    let cpu0 = cpu_time(node_pid)?;
    let closed = closed_loop(client, t, s).await;
    let open = open_loop(client, t, s).await;
    let cpu1 = cpu_time(node_pid)?;
    for (phase, st) in [("closed loop", &closed), ("open loop", &open)] {
        if st.wrong_verdicts > 0 {
            bail!(
                "{} ({phase}): {} of {} answers had x-switchyard-cache {:?}, expected {:?}: \
                 the benchmark would measure the wrong thing",
                t.label,
                st.wrong_verdicts,
                st.requests(),
                st.wrong_example.as_deref().unwrap_or(""),
                t.expect
            );
        }
        if st.ok == 0 {
            bail!(
                "{} ({phase}): no request succeeded; first error: {}",
                t.label,
                st.first_error.as_deref().unwrap_or("none")
            );
        }
    }
    let requests = (closed.requests() + open.requests()).max(1) as f64;
    Ok(Side {
        label: t.label,
        expect: t.expect,
        closed,
        open,
        cpu_ms_per_request: (cpu1 - cpu0).as_secs_f64() * 1000.0 / requests,
    })
}

/// The keys of the sides: off, exact cache (shared by the miss and hit sides), guardrails.
struct Keys {
    off: String,
    cached: String,
    guarded: String,
}

/// Signs up one organization with a provider and a model, and creates the keys of every side.
async fn provision(cp: &str, fake_url: &str) -> anyhow::Result<Keys> {
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
        .context("provisioning the organization")?;
    let cached = api
        .create_key(&json!({"name": "exact cache", "cache": {"mode": "exact"}}))
        .await
        .context("the cached key")?;
    let guarded = api
        .create_key(&json!({"name": "guardrails"}))
        .await
        .context("the guarded key")?;
    api.expect(
        Method::POST,
        "/api/v1/guardrails",
        Some(&json!({
            "name": "bench",
            "scope": "key",
            "scope_id": guarded.id,
            "pii": {"mode": "redact", "restore": true},
            "blocked_terms": [BLOCKED_TERM],
            "max_prompt_tokens": 100_000,
        })),
        StatusCode::CREATED,
    )
    .await
    .context("the guardrail")?;
    Ok(Keys {
        off: setup.key.key,
        cached: cached.key,
        guarded: guarded.key,
    })
}

/// Waits until the node serves `t` with its expected verdict and, for the guardrail side,
/// refuses the blocked term (so the policy, published separately from the key, is in force).
async fn wait_until_ready(
    client: &reqwest::Client,
    t: &Target,
    guarded: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let blocked = body(&format!("{} and {BLOCKED_TERM}", prompt(0)));
    loop {
        let served = send(client, t, &t.next_body()).await;
        let policy_in_force = if guarded {
            match send(client, t, &blocked).await {
                Err(e) => format!("{e:#}").contains("guardrail_blocked"),
                Ok(_) => false,
            }
        } else {
            true
        };
        let state = match served {
            Ok(a) if policy_in_force && (a.cache == t.expect || t.expect == "hit") => return Ok(()),
            Ok(a) => format!(
                "x-switchyard-cache {:?}, policy in force: {policy_in_force}",
                a.cache
            ),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{} never became ready: {state}", t.label);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delta_us(a: u64, b: u64) -> i128 {
    i128::from(b) - i128::from(a)
}

fn print_table(sides: &[Side]) {
    let Some(base) = sides.first() else {
        return;
    };
    println!();
    println!(
        "{:<12} {:>8} {:>9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>10} {:>9}",
        "", "req/s", "CPU ms/r", "p50", "p99", "own p50", "Δ CPU ms", "Δ p50", "Δ p99", "Δ own"
    );
    for x in sides {
        println!(
            "{:<12} {:>8.0} {:>9.3} {:>8}µs {:>8}µs {:>7}µs {:>+10.3} {:>+8}µs {:>+8}µs {:>+7}µs",
            x.label,
            x.closed.rps(),
            x.cpu_ms_per_request,
            x.open.p50,
            x.open.p99,
            x.open.own_p50,
            x.cpu_ms_per_request - base.cpu_ms_per_request,
            delta_us(base.open.p50, x.open.p50),
            delta_us(base.open.p99, x.open.p99),
            delta_us(base.open.own_p50, x.open.own_p50),
        );
    }
    println!(
        "(req/s: closed loop; CPU: data-plane process over both loops; p50/p99: open loop from \
         the scheduled send; own: x-switchyard-overhead-ms, open loop; Δ: against {})",
        base.label
    );
}

async fn run_sides(
    s: &Settings,
    deployment: &Deployment,
    fake_url: &str,
) -> anyhow::Result<Vec<Side>> {
    let cp = deployment
        .start_control_plane("warn,control_plane=info")
        .await?;
    let node: ChildGuard = deployment
        .start_data_plane("bench-node", "warn,data_plane=info")
        .await?;
    let pid = node.id().context("data-plane pid")?;
    let keys = provision(&cp.base_url(), fake_url).await?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()?;
    let target = |label, key: &String, unique, expect| Target {
        label,
        url: node.base_url(),
        key: key.clone(),
        unique,
        expect,
    };
    let targets = [
        (target("off", &keys.off, true, "bypass"), false),
        (target("cache miss", &keys.cached, true, "miss"), false),
        (target("cache hit", &keys.cached, false, "hit"), false),
        (target("guardrails", &keys.guarded, true, "bypass"), true),
    ];
    let mut sides = Vec::new();
    for (t, guarded) in &targets {
        wait_until_ready(&client, t, *guarded).await?;
        println!("measuring: {}", t.label);
        sides.push(measure(&client, t, s, pid).await?);
    }
    drop(node);
    drop(cp);
    Ok(sides)
}

async fn run(s: Settings) -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug (NOT representative)"
    } else {
        "optimised"
    };
    println!("switchyard cache and guardrails benchmark — build: {build}; settings: {s:?}");
    let fake_url = start_fake_upstream(None)?;
    let deployment = Deployment::new().await?;
    // The database and Redis prefix go away whatever happened (the miss side leaves thousands
    // of stored answers behind).
    let result = run_sides(&s, &deployment, &fake_url).await;
    deployment.cleanup().await;
    let sides = result?;

    print_table(&sides);
    let errors: usize = sides.iter().map(|x| x.closed.errors + x.open.errors).sum();
    if errors > 0 {
        println!("warning: {errors} requests failed or were skipped");
    }
    let base_cpu = sides.first().map_or(0.0, |b| b.cpu_ms_per_request);
    let (base_p50, base_p99, base_own) = sides
        .first()
        .map_or((0, 0, 0), |b| (b.open.p50, b.open.p99, b.open.own_p50));
    let report = json!({
        "benchmark": "cache_guardrails",
        "build": if cfg!(debug_assertions) { "debug" } else { "optimised" },
        "quick": s.quick,
        "settings": {"secs": s.secs, "concurrency": s.concurrency, "rate_rps": s.rate},
        "prompt_bytes": prompt(0).len(),
        "sides": sides.iter().map(|x| json!({
            "label": x.label,
            "x_switchyard_cache": x.expect,
            "closed": {"rps": x.closed.rps(), "p50_us": x.closed.p50, "p99_us": x.closed.p99,
                       "own_p50_us": x.closed.own_p50, "errors": x.closed.errors},
            "open": {"p50_us": x.open.p50, "p99_us": x.open.p99, "own_p50_us": x.open.own_p50,
                     "errors": x.open.errors},
            "cpu_ms_per_request": x.cpu_ms_per_request,
            "vs_off": {
                "cpu_ms_per_request": x.cpu_ms_per_request - base_cpu,
                "open_p50_us": delta_us(base_p50, x.open.p50),
                "open_p99_us": delta_us(base_p99, x.open.p99),
                "open_own_p50_us": delta_us(base_own, x.open.own_p50),
            },
        })).collect::<Vec<_>>(),
    });
    let out = target_dir().join("bench-cache-guardrails.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    println!("JSON written to {}", out.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("cache_guardrails: bench");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}
