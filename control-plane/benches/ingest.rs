//! Usage ingest benchmark: sustained events per second through the real path, Redis stream →
//! consumer-group ingest (`control_plane::ingest`) → `DbUsageWriter` (raw rows in daily
//! partitions, minute/hour/day rollups with tag rows and sketches) → PostgreSQL.
//!
//! Run it (optimised build; needs the local Postgres and Redis, like the e2e tests):
//! `cargo bench -p control-plane --bench ingest`.
//! Smoke-test it in a debug build: `BENCH_QUICK=1 cargo bench -p control-plane --bench ingest
//! --profile dev` (debug numbers say nothing).
//!
//! Setup: a fresh Postgres database (migrated) and a fresh Redis prefix. The stream is filled
//! first with `BENCH_EVENTS` (100 000; 5 000 quick) realistic events: 5 organizations, 20 keys
//! (each with its team and a `team` tag from its metadata), 3 models on their deployments, an
//! `env` tag from the header on most requests, 1 in 10 failing with an error class, half of them
//! streamed with a TTFT, 1 in 20 cache hits, timestamps in arrival order at 1 000 requests per
//! second (as a busy gateway would produce them). Then one ingest consumer — what one control
//! plane runs — is started, and the clock runs until the stream is empty (polled every 10 ms
//! with `XLEN`: the ingest deletes entries only after their batch committed); then every event
//! must be a row in `usage_records`. Reported: events/s, and the rollup rows written. The target is
//! ≥ 5 000 events/s on the development machine (2 cores shared with Postgres and Redis).
//!
//! The result also goes as JSON to `<target dir>/bench-ingest.json`.

// A benchmark's output is its result; it runs outside the service, where printing is the point.
#![allow(clippy::print_stdout)]

// Only some of the shared helpers are used here.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::{env_num, target_dir};
use control_plane::usage_store::DbUsageWriter;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use shared::usage::{UsageEvent, UsageOutcome};
use testkit::redis_prefix::PrefixGuard;
use tokio::sync::watch;
use uuid::Uuid;

/// Events per second the issue asks for.
const TARGET_EVENTS_PER_SEC: f64 = 5_000.0;
/// Entries per XADD pipeline while filling the stream.
const FILL_PIPELINE: usize = 1_000;
/// Give up after this long.
const DEADLINE: Duration = Duration::from_secs(600);

/// A deterministic pseudo-random sequence.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

struct Key {
    tenant: Uuid,
    id: Uuid,
    team: Uuid,
    team_name: String,
}

fn events(n: usize) -> Vec<UsageEvent> {
    let tenants: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let keys: Vec<Key> = (0..20)
        .map(|i| Key {
            tenant: tenants[i % tenants.len()],
            id: Uuid::new_v4(),
            team: Uuid::new_v4(),
            team_name: format!("team-{}", i % 7),
        })
        .collect();
    let models = [
        ("gpt-4o", "openai", Uuid::new_v4(), "us-east"),
        ("claude-sonnet", "anthropic", Uuid::new_v4(), "eu-west"),
        ("mistral-large", "mistral", Uuid::new_v4(), "eu-west"),
    ];
    let envs = ["prod", "staging", "dev"];
    let mut rng = Lcg(0x5eed);
    // Arrival order at 1 000 requests per second, ending now.
    let start = time::OffsetDateTime::now_utc() - time::Duration::milliseconds(n as i64);
    (0..n)
        .map(|i| {
            let key = &keys[(rng.next() as usize) % keys.len()];
            let (model, provider, deployment, region) = models[(rng.next() as usize) % 3];
            let failed = rng.next().is_multiple_of(10);
            let stream = rng.next().is_multiple_of(2);
            let prompt = 50 + rng.next() % 4000;
            let completion = if failed { 0 } else { 10 + rng.next() % 800 };
            let mut tags = BTreeMap::new();
            tags.insert("team".to_owned(), key.team_name.clone());
            if !rng.next().is_multiple_of(4) {
                tags.insert(
                    "env".to_owned(),
                    envs[(rng.next() as usize) % envs.len()].to_owned(),
                );
            }
            UsageEvent {
                id: Uuid::now_v7(),
                tenant_id: key.tenant,
                key_id: Some(key.id),
                team_id: Some(key.team),
                model: model.to_owned(),
                deployment_id: Some(deployment),
                provider_id: Some(deployment),
                provider: Some(provider.to_owned()),
                upstream_model: Some(format!("{model}-2026")),
                endpoint: "chat.completions".to_owned(),
                stream,
                status: if failed { 504 } else { 200 },
                outcome: if failed {
                    UsageOutcome::Error
                } else {
                    UsageOutcome::Success
                },
                error_code: failed.then(|| "upstream_timeout".to_owned()),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cache_read_tokens: prompt / 4,
                cache_write_tokens: 0,
                tokens_estimated: false,
                cost_micros: (prompt * 3 + completion * 12) as i64,
                latency_ms: 80 + rng.next() % 4000,
                ttft_ms: stream.then(|| 20 + rng.next() % 600),
                started_at: start + time::Duration::milliseconds(i as i64),
                route: Some(model.to_owned()),
                failed_attempts: Vec::new(),
                tags,
                region: Some(region.to_owned()),
                error_class: failed.then(|| "timeout".to_owned()),
                cache_hit: !failed && rng.next().is_multiple_of(20),
                payload: None,
                guardrails: Vec::new(),
            }
        })
        .collect()
}

async fn count(db: &sea_orm::DatabaseConnection, table: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM {table}"),
        ))
        .await?
        .context("no count row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

async fn run() -> anyhow::Result<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || !std::env::args().any(|a| a == "--bench");
    let n: usize = env_num("BENCH_EVENTS")?.unwrap_or(if quick { 5_000 } else { 100_000 });
    if n == 0 || n > 2_000_000 {
        bail!("BENCH_EVENTS must be in 1..=2000000");
    }

    let database = testkit::pg::fresh_database().await?;
    let db = control_plane::db::connect_and_migrate(&database.url).await?;
    let guard = PrefixGuard::new();
    let keys = guard.keys.clone();

    println!("filling {} with {n} events…", keys.usage());
    let evs = events(n);
    let mut conn = testkit::redis_prefix::connect().await?;
    for chunk in evs.chunks(FILL_PIPELINE) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.cmd("XADD")
                .arg(keys.usage())
                .arg("*")
                .arg("event")
                .arg(serde_json::to_vec(e)?)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
    }
    drop(evs);

    let pool = data_plane::store::redis_pool(&testkit::redis_prefix::redis_url())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let task = control_plane::ingest::spawn_redis_ingest(
        pool,
        keys.clone(),
        "bench".to_owned(),
        Arc::new(DbUsageWriter::new(db.clone())),
        stop_rx,
    );
    // Done when the stream is empty: the ingest deletes entries only after their batch
    // committed, so `XLEN` = 0 means every event is durable. (Polling `XLEN` costs Redis a few
    // µs; polling `count(*)` would cost PostgreSQL a scan per poll, on the cores being measured.)
    loop {
        if started.elapsed() > DEADLINE {
            bail!("events still in the stream after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let len: i64 = redis::cmd("XLEN")
            .arg(keys.usage())
            .query_async(&mut conn)
            .await?;
        if len == 0 {
            break;
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    let stored = count(&db, "usage_records").await?;
    if stored != n as i64 {
        bail!("{stored} rows in usage_records for {n} events");
    }
    let rate = n as f64 / elapsed.as_secs_f64();
    let rollups = count(&db, "usage_rollups").await?;

    println!();
    println!("| events | seconds | events/s | rollup rows | target |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {n} | {:.2} | {rate:.0} | {rollups} | ≥ {TARGET_EVENTS_PER_SEC:.0} events/s: {} |",
        elapsed.as_secs_f64(),
        if rate >= TARGET_EVENTS_PER_SEC {
            "met"
        } else {
            "NOT met"
        }
    );
    let json = serde_json::json!({
        "events": n,
        "seconds": elapsed.as_secs_f64(),
        "events_per_sec": rate,
        "rollup_rows": rollups,
        "target_events_per_sec": TARGET_EVENTS_PER_SEC,
        "quick": quick,
    });
    let out = target_dir().join("bench-ingest.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nJSON: {}", out.display());

    db.close().await?;
    database.drop_database().await;
    drop(guard);
    if !quick && rate < TARGET_EVENTS_PER_SEC {
        bail!("ingest ran at {rate:.0} events/s, below the {TARGET_EVENTS_PER_SEC:.0} target");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
