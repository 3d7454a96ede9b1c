//! Chaos tests of the usage pipeline, end to end on separate processes: each one ends with
//! **exactly one usage row per served request** (the `x-switchyard-request-id` of every 200
//! answer, compared with the ids in `usage_records`: none missing, none twice, none extra).
//!
//! - Redis stopped under load, then restarted: a dedicated `redis-server` (AOF, `appendfsync
//!   always`) in a temp dir, stopped and restarted on the same port; the data plane spools while
//!   it is down and replays when it is back.
//! - A data-plane node killed (SIGKILL) during a Redis outage, then restarted with the same
//!   spool: the new process replays what the dead one spooled. The kill happens once the node's
//!   `switchyard_usage_spool_events` gauge shows every event of the outage on disk: between a
//!   response's end and its batch's fsync an event only lives in memory (the one window where a
//!   SIGKILL loses it, see the README's "Usage pipeline guarantees").
//! - Postgres unreachable for a while (the control plane's `DATABASE_URL` through a `Proxy`
//!   switched off, then on): ingest stops acknowledging, the stream keeps the backlog, and it
//!   catches up.
//! - A data-plane node stopped gracefully (SIGTERM) during a Redis outage: its shutdown flush
//!   spools what is in memory, and the restarted node replays it.
//! - A consumer killed mid-batch: the control plane's ingest transaction is held at
//!   `touch_keys` by a test connection's `LOCK TABLE api_keys IN EXCLUSIVE MODE`, the process is
//!   SIGKILLed, the lock released; a second control plane (another `SWITCHYARD_NODE_ID`, a short
//!   `SWITCHYARD_USAGE_CLAIM_IDLE_MS`) claims the dead consumer's pending entries.
//!
//! Tenants have no budgets or limits, so an outage refuses nothing. Real Postgres (a fresh
//! database) and Redis (a fresh prefix, or a dedicated server), the `control-plane` and
//! `data-plane` binaries, everything on 127.0.0.1. The tests run one at a time (they are
//! heavy for a small machine). Needs the binaries built (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sqlx::Connection;
use testkit::api::{ControlApi, Provision};
use testkit::e2e::{Deployment, chat, http_client, poll_until};
use testkit::fake_openai::FakeOpenAi;
use testkit::proc::{ChildGuard, command, control_plane_binary};
use testkit::redis_server::RedisServer;
use testkit::tcp_proxy::Proxy;
use uuid::Uuid;

const LOG: &str = "info";
const MODEL: &str = "chaos";
/// How long the pipeline may take to catch up after a fault ends (probe and ingest backoffs
/// top out at 5 s).
const CATCH_UP: Duration = Duration::from_secs(60);

/// One test at a time: each runs a control plane, a data plane and load on two shared cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// === The world ===

struct World {
    deployment: Deployment,
    key: String,
    _openai: FakeOpenAi,
    client: reqwest::Client,
    /// Every request id answered 200, warm-up included.
    served: Vec<Uuid>,
}

/// Starts the `control-plane` binary for `deployment` with `env` over its defaults.
async fn start_control_plane(
    deployment: &Deployment,
    label: &str,
    env: &[(&str, &str)],
) -> ChildGuard {
    let mut cmd = command(&control_plane_binary());
    cmd.envs(deployment.control_plane_env())
        .env("RUST_LOG", LOG)
        .env("SWITCHYARD_NODE_ID", label)
        .envs(env.iter().copied());
    let cp = ChildGuard::spawn(label, cmd)
        .await
        .expect("control plane starts");
    cp.wait_healthy("/healthz", Duration::from_secs(30))
        .await
        .expect("control plane healthy");
    cp
}

/// A tenant with one model on the fake upstream and a key; no budgets, no limits.
async fn provision(deployment: Deployment, cp: &ChildGuard) -> World {
    let openai = FakeOpenAi::builder()
        .record_requests(false)
        .start()
        .await
        .expect("fake upstream");
    let mut api = ControlApi::new(&cp.base_url()).expect("api client");
    let setup = api
        .provision(&Provision {
            kind: "openai_compatible",
            base_url: Some(&openai.base_url()),
            api_key: Some("sk-upstream"),
            model: MODEL,
            upstream_model: "gpt-4o-mini",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .expect("provisioning");
    World {
        deployment,
        key: setup.key.key.clone(),
        _openai: openai,
        client: http_client(),
        served: Vec::new(),
    }
}

fn body() -> serde_json::Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
}

fn request_id(r: &reqwest::Response) -> Uuid {
    r.headers()
        .get("x-switchyard-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-switchyard-request-id")
}

impl World {
    /// Until `node` serves the key (it learns it through Redis); the 200 counts as served.
    async fn warm_up(&mut self, node: &ChildGuard) {
        let (client, key, origin) = (&self.client, &self.key, node.base_url());
        let id = poll_until(
            Duration::from_secs(15),
            Duration::from_millis(50),
            || async {
                let r = chat(client, &origin, key, &body()).await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                Ok(request_id(&r))
            },
        )
        .await
        .expect("the node serves the key");
        self.served.push(id);
    }

    /// Sends `total` requests to `node`, `concurrency` at a time, in a task; `done` counts
    /// answers. Every answer must be a 200; the task returns their request ids.
    fn load(
        &self,
        node: &ChildGuard,
        total: usize,
        concurrency: usize,
        done: Arc<AtomicUsize>,
    ) -> tokio::task::JoinHandle<Vec<Uuid>> {
        let (client, key, origin) = (self.client.clone(), self.key.clone(), node.base_url());
        tokio::spawn(async move {
            futures::stream::iter(0..total)
                .map(|_| {
                    let (client, key, origin, done) = (
                        client.clone(),
                        key.clone(),
                        origin.clone(),
                        Arc::clone(&done),
                    );
                    async move {
                        let r = chat(&client, &origin, &key, &body())
                            .await
                            .expect("the gateway answers");
                        done.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(
                            r.status(),
                            200,
                            "no budget, no limit: every request is served"
                        );
                        request_id(&r)
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await
        })
    }

    /// Waits until every served request has its row, then checks there is exactly one row per
    /// served request and nothing else.
    async fn assert_one_row_per_served_request(&self) {
        let want: HashSet<Uuid> = self.served.iter().copied().collect();
        assert_eq!(want.len(), self.served.len(), "request ids are unique");
        let url = self.deployment.db.url.clone();
        let rows = poll_until(CATCH_UP, Duration::from_millis(250), || async {
            let rows = stored_ids(&url).await?;
            let got: HashSet<Uuid> = rows.iter().copied().collect();
            let missing = want.difference(&got).count();
            anyhow::ensure!(
                missing == 0,
                "{missing} of {} served requests have no row yet",
                want.len()
            );
            Ok(rows)
        })
        .await
        .expect("every served request is stored");
        let got: HashSet<Uuid> = rows.iter().copied().collect();
        assert_eq!(rows.len(), got.len(), "no request is stored twice");
        let extra: Vec<_> = got.difference(&want).collect();
        assert!(
            extra.is_empty(),
            "rows for requests never served: {extra:?}"
        );
    }
}

async fn stored_ids(url: &str) -> anyhow::Result<Vec<Uuid>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let ids = sqlx::query_scalar::<_, Uuid>("SELECT id FROM usage_records")
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;
    Ok(ids)
}

/// A gauge from the node's `/metrics` (0 when not exported yet).
async fn gauge(client: &reqwest::Client, node: &ChildGuard, name: &str) -> f64 {
    let Ok(r) = client
        .get(format!("{}/metrics", node.base_url()))
        .send()
        .await
    else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const SPOOL_EVENTS: &str = "switchyard_usage_spool_events";

// === The tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_under_load_then_restarted_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start().await;
    let mut deployment = Deployment::new().await.expect("fresh database");
    deployment.redis_url = redis.url();
    let cp = start_control_plane(&deployment, "cp-1", &[]).await;
    let dp = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane");
    let mut w = provision(deployment, &cp).await;
    w.warm_up(&dp).await;

    let done = Arc::new(AtomicUsize::new(0));
    let load = w.load(&dp, 300, 4, Arc::clone(&done));
    wait_until("a third of the load", Duration::from_secs(60), async || {
        done.load(Ordering::SeqCst) >= 100
    })
    .await;
    redis.stop().await;
    let client = w.client.clone();
    wait_until(
        "two thirds of the load, some of it spooled",
        Duration::from_secs(60),
        async || {
            done.load(Ordering::SeqCst) >= 200 && gauge(&client, &dp, SPOOL_EVENTS).await > 0.0
        },
    )
    .await;
    redis.restart().await;
    w.served.extend(load.await.expect("load"));

    w.assert_one_row_per_served_request().await;
    wait_until("the spool is replayed", CATCH_UP, async || {
        gauge(&client, &dp, SPOOL_EVENTS).await == 0.0
    })
    .await;
    dp.wait_for_log("usage events reach Redis again", Duration::from_secs(1))
        .await
        .expect("the outage was seen and ended");
    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_killed_during_a_redis_outage_replays_its_spool_on_restart() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start().await;
    let mut deployment = Deployment::new().await.expect("fresh database");
    deployment.redis_url = redis.url();
    let cp = start_control_plane(&deployment, "cp-1", &[]).await;
    let mut dp = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane");
    let mut w = provision(deployment, &cp).await;
    w.warm_up(&dp).await;

    redis.stop().await;
    let done = Arc::new(AtomicUsize::new(0));
    let during = w.load(&dp, 150, 4, done).await.expect("load");
    let client = w.client.clone();
    // The window: until this gauge counts them, the events are only in the node's memory.
    wait_until(
        "every event of the outage on disk",
        Duration::from_secs(30),
        async || gauge(&client, &dp, SPOOL_EVENTS).await >= during.len() as f64,
    )
    .await;
    w.served.extend(during);
    dp.kill().await;
    let spool = w.deployment.spool_dir("dp-1");
    assert!(
        std::fs::read_dir(&spool).expect("spool dir").count() > 1,
        "segments left in {spool:?}"
    );

    redis.restart().await;
    let dp = w
        .deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("the node restarts on the same spool");
    dp.wait_for_log(
        "replaying usage events spooled by a previous run",
        Duration::from_secs(5),
    )
    .await
    .expect("the restarted node replays");
    let opened = dp
        .wait_for_log("usage spool open", Duration::from_secs(1))
        .await
        .expect("the node logs its spool");
    assert!(
        !opened.contains("events=0"),
        "it found the events: {opened}"
    );
    w.assert_one_row_per_served_request().await;
    wait_until("the spool is emptied", CATCH_UP, async || {
        gauge(&client, &dp, SPOOL_EVENTS).await == 0.0
    })
    .await;
    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_a_while_then_ingest_catches_up() {
    let _serial = SERIAL.lock().await;
    let deployment = Deployment::new().await.expect("fresh database and prefix");
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = Proxy::start(pg).await.expect("proxy in front of Postgres");
    let proxied_url = deployment
        .db
        .url
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        proxied_url, deployment.db.url,
        "the database URL names 127.0.0.1:5432"
    );
    let cp = start_control_plane(&deployment, "cp-1", &[("DATABASE_URL", &proxied_url)]).await;
    let dp = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane");
    let mut w = provision(deployment, &cp).await;
    w.warm_up(&dp).await;

    proxy.set_up(false);
    let done = Arc::new(AtomicUsize::new(0));
    let during = w.load(&dp, 200, 4, done).await.expect("load");
    w.served.extend(during);
    cp.wait_for_log(
        "cannot store usage events; retrying",
        Duration::from_secs(30),
    )
    .await
    .expect("the ingest sees the outage");
    // Not acknowledged: the stream still holds the backlog.
    let mut redis = testkit::redis_prefix::connect().await.expect("Redis");
    let backlog: u64 = redis::cmd("XLEN")
        .arg(format!("{}usage", w.deployment.prefix))
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    assert!(
        backlog > 0,
        "nothing is acknowledged while Postgres is down"
    );
    proxy.set_up(true);

    w.assert_one_row_per_served_request().await;
    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_is_taken_over_by_another() {
    let _serial = SERIAL.lock().await;
    let deployment = Deployment::new().await.expect("fresh database and prefix");
    let mut cp1 = start_control_plane(&deployment, "cp-1", &[]).await;
    let dp = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane");
    let mut w = provision(deployment, &cp1).await;
    w.warm_up(&dp).await;
    // The warm-up is stored, so the next batch holds only the requests below.
    w.assert_one_row_per_served_request().await;

    let mut lock = sqlx::PgConnection::connect(&w.deployment.db.url)
        .await
        .expect("a test connection");
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("BEGIN");
    sqlx::query("LOCK TABLE api_keys IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("LOCK");
    let done = Arc::new(AtomicUsize::new(0));
    let during = w.load(&dp, 100, 4, done).await.expect("load");
    w.served.extend(during);
    // The ingest's transaction has inserted its rows and waits for the lock at `touch_keys`.
    let url = w.deployment.db.url.clone();
    poll_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut c)
            .await?;
            anyhow::ensure!(waiting > 0, "no ingest transaction waits on the lock yet");
            Ok(())
        },
    )
    .await
    .expect("a batch is inside its transaction");
    cp1.kill().await;
    // The dead consumer was delivered entries it never acknowledged.
    let mut redis = testkit::redis_prefix::connect().await.expect("Redis");
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(format!("{}usage", w.deployment.prefix))
        .arg("control-plane")
        .query_async(&mut redis)
        .await
        .expect("XPENDING");
    let redis::Value::Array(summary) = pending else {
        panic!("XPENDING summary: {pending:?}");
    };
    assert!(
        matches!(summary.first(), Some(redis::Value::Int(n)) if *n > 0),
        "entries pending on the dead consumer: {summary:?}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("ROLLBACK");
    lock.close().await.expect("close");

    let cp2 = start_control_plane(
        &w.deployment,
        "cp-2",
        &[("SWITCHYARD_USAGE_CLAIM_IDLE_MS", "500")],
    )
    .await;
    w.assert_one_row_per_served_request().await;
    cp2.wait_for_log(
        "claimed usage events left pending by another consumer",
        Duration::from_secs(1),
    )
    .await
    .expect("the second control plane claimed the dead one's entries");
    w.deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_stopped_gracefully_during_a_redis_outage_spools_and_replays() {
    let _serial = SERIAL.lock().await;
    let mut redis = RedisServer::start().await;
    let mut deployment = Deployment::new().await.expect("fresh database");
    deployment.redis_url = redis.url();
    let cp = start_control_plane(&deployment, "cp-1", &[]).await;
    let mut dp = deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("data plane");
    let mut w = provision(deployment, &cp).await;
    w.warm_up(&dp).await;

    redis.stop().await;
    let done = Arc::new(AtomicUsize::new(0));
    let during = w.load(&dp, 100, 4, done).await.expect("load");
    w.served.extend(during);
    // No waiting for the spool: SIGTERM right after the last answer; the shutdown path writes
    // what is still in memory to the spool.
    let status = dp
        .terminate(Duration::from_secs(60))
        .await
        .expect("a graceful exit");
    assert!(status.success(), "{status:?}");
    assert!(
        !dp.logs_text()
            .contains("usage events could not be written before shutdown"),
        "nothing left unwritten"
    );

    redis.restart().await;
    let _dp = w
        .deployment
        .start_data_plane("dp-1", LOG)
        .await
        .expect("the node restarts on the same spool");
    w.assert_one_row_per_served_request().await;
    w.deployment.cleanup().await;
}
