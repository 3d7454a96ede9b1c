//! Usage ingest: moves [`UsageEvent`]s from the data plane into durable storage, each exactly
//! once.
//!
//! # Redis
//!
//! The data plane `XADD`s events to `{prefix}usage` (field `event` = JSON, see
//! `data_plane::usage_sink`). Every control-plane process runs one [`spawn_redis_ingest`] task, a
//! consumer named after `SWITCHYARD_NODE_ID` in the consumer group `control-plane`
//! ([`RedisKeys::USAGE_GROUP`]):
//!
//! 1. `XGROUP CREATE {prefix}usage control-plane 0 MKSTREAM` (a `BUSYGROUP` error means it
//!    exists). The group starts at `0`, so events written before any control plane ever ran are
//!    read too.
//! 2. First it re-reads **its own** pending entries (`XREADGROUP … STREAMS {prefix}usage 0`):
//!    entries delivered to this consumer name before a crash or restart and never acknowledged.
//!    It goes back to this step after any Redis error, since a reply lost in transit leaves
//!    delivered entries pending.
//! 3. Then it reads new entries: `XREADGROUP GROUP control-plane <consumer> COUNT 2000 BLOCK 400
//!    STREAMS {prefix}usage >`. (400 ms rather than a longer block: a pooled connection's
//!    response timeout must exceed the block, and the `redis` crate's default is 500 ms.)
//! 4. Each batch: parse every entry; hand the events to [`UsageWriter::write`], which stores them
//!    idempotently keyed by event id; retry with backoff (100 ms … 5 s) while it fails; **only
//!    then** `XACK` and `XDEL` the entries in one pipeline. A crash between the write and the ack
//!    re-delivers the entries, and the writer skips the duplicates, so nothing is counted twice.
//!    A malformed entry is logged (its id and size, never its contents) and acknowledged with the
//!    batch, so one bad entry cannot block the stream forever.
//! 5. At start and every 30 s: `XAUTOCLAIM {prefix}usage control-plane <consumer> 30000 0-0 COUNT
//!    2000` (repeated until the cursor returns to `0-0`) takes over entries that another consumer
//!    (a control plane that died) was delivered but never acknowledged for more than 30 s
//!    (`SWITCHYARD_USAGE_CLAIM_IDLE_MS`, which also sets the interval when shorter), and
//!    processes them as in step 4. The same pass removes consumers that have nothing pending and
//!    have been idle for over a day, so restarts with random node ids do not pile up consumers.
//!
//! **Stream growth.** An entry is deleted (`XDEL`) right after it is acknowledged, i.e. once it
//! is durable in the database, so the stream holds only the backlog. `XDEL` (rather than
//! `XTRIM MINID`) deletes exactly what this group stored, regardless of other consumers' progress.
//! This assumes `control-plane` is the only consumer group on the stream; a second group (say, an
//! analytics exporter) would need trimming by the minimum of all groups' positions instead.
//!
//! Needs Redis 6.2 or newer (`XAUTOCLAIM`).
//!
//! Stopping: when `shutdown` flips to true the task finishes the batch in hand (a write that
//! keeps failing is abandoned between retries; its entries stay pending in Redis and are
//! re-delivered later) and returns.
//!
//! # In-process
//!
//! [`spawn_memory_ingest`] drains the [`shared::bus::MemoryBus`] usage channel in batches into the
//! same writer, retrying on error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use data_plane::store::retry::Backoff;
use data_plane::store::stream::{StreamEntry, parse_autoclaim_reply, parse_read_reply};
use deadpool_redis::Pool;
use futures::future::BoxFuture;
use redis::Value;
use shared::config::RedisKeys;
use shared::usage::UsageEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Stores usage events durably.
pub trait UsageWriter: Send + Sync + 'static {
    /// Store events idempotently keyed by event.id (a duplicate is silently skipped). Must return
    /// Ok only once durable.
    fn write<'a>(&'a self, events: &'a [UsageEvent]) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Entries per read, and so events per write: the rollup rows a batch touches barely grow with
/// its size (same dimensions and buckets), so larger batches amortise them (see the bench).
const BATCH_SIZE: usize = 2_000;
/// `XREADGROUP BLOCK`, in ms; must stay below the pooled connections' response timeout.
const BLOCK_MS: u64 = 400;
/// Consumers with nothing pending and idle this long are removed from the group.
const CONSUMER_MAX_IDLE: Duration = Duration::from_secs(24 * 60 * 60);
/// Bound for any single Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// In-process mode: how long to keep retrying a failing writer once shutdown was requested.
const MEMORY_STOP_GRACE: Duration = Duration::from_secs(10);

/// Tuning knobs of the Redis ingest; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Entries idle this long in any consumer's pending list are claimed (30 s).
    pub claim_min_idle: Duration,
    /// How often to look for such entries (30 s).
    pub claim_interval: Duration,
}

impl IngestOptions {
    /// Claims entries idle for `claim_min_idle` (`SWITCHYARD_USAGE_CLAIM_IDLE_MS`), looking for
    /// them as often (at most every 30 s).
    pub fn with_claim_idle(claim_min_idle: Duration) -> Self {
        Self {
            claim_min_idle,
            claim_interval: claim_min_idle.min(Duration::from_secs(30)),
        }
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            claim_min_idle: Duration::from_secs(30),
            claim_interval: Duration::from_secs(30),
        }
    }
}

/// Consumer group `RedisKeys::USAGE_GROUP` on `keys.usage()`; create group (MKSTREAM) if missing;
/// XREADGROUP BLOCK in batches; write then XACK; on start and periodically XAUTOCLAIM pending
/// entries idle > 30s (from dead consumers); retries with backoff when Redis or the writer fails
/// (never acks what was not written); stops when `shutdown` flips to true (finishing the batch).
pub fn spawn_redis_ingest(
    pool: Pool,
    keys: RedisKeys,
    consumer: String,
    writer: Arc<dyn UsageWriter>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_redis_ingest_with_options(
        pool,
        keys,
        consumer,
        writer,
        shutdown,
        IngestOptions::default(),
    )
}

/// [`spawn_redis_ingest`] with explicit [`IngestOptions`].
pub fn spawn_redis_ingest_with_options(
    pool: Pool,
    keys: RedisKeys,
    consumer: String,
    writer: Arc<dyn UsageWriter>,
    shutdown: watch::Receiver<bool>,
    options: IngestOptions,
) -> JoinHandle<()> {
    let ingest = RedisIngest {
        pool,
        stream: keys.usage(),
        consumer,
        writer,
        shutdown,
        options,
    };
    tokio::spawn(ingest.run())
}

/// In-process: drains the channel in batches into the writer (retrying on writer error); ends
/// when all senders are dropped, or when shutdown flips (then drains what is queued).
pub fn spawn_memory_ingest(
    mut rx: mpsc::Receiver<UsageEvent>,
    writer: Arc<dyn UsageWriter>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH_SIZE);
        let mut stopping_since: Option<Instant> = None;
        loop {
            let n = if stopping_since.is_some() {
                rx.recv_many(&mut batch, BATCH_SIZE).await
            } else {
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH_SIZE) => n,
                    () = shutdown_requested(&mut shutdown) => {
                        // Refuse new events, then drain what is queued.
                        rx.close();
                        stopping_since = Some(Instant::now());
                        continue;
                    }
                }
            };
            if n == 0 {
                return;
            }
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            let mut failing = false;
            loop {
                match writer.write(&batch).await {
                    Ok(()) => {
                        metrics::counter!("switchyard_usage_ingested_total")
                            .increment(batch.len() as u64);
                        data_plane::metrics_registry::record_lag("ingest", &batch);
                        if failing {
                            tracing::info!("usage events are being stored again");
                        }
                        break;
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(error = %format!("{error:#}"), events = batch.len(), "cannot store usage events; retrying");
                            failing = true;
                        }
                        if stopping_since.is_none() && *shutdown.borrow() {
                            rx.close();
                            stopping_since = Some(Instant::now());
                        }
                        if stopping_since.is_some_and(|t| t.elapsed() >= MEMORY_STOP_GRACE) {
                            metrics::counter!("switchyard_usage_events_lost_total")
                                .increment(batch.len() as u64);
                            tracing::error!(
                                events = batch.len(),
                                "giving up on usage events at shutdown"
                            );
                            break;
                        }
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
            batch.clear();
        }
    })
}

/// Resolves once the flag is true; never if the sender is dropped without setting it.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

struct RedisIngest {
    pool: Pool,
    stream: String,
    consumer: String,
    writer: Arc<dyn UsageWriter>,
    shutdown: watch::Receiver<bool>,
    options: IngestOptions,
}

/// Why a step stopped.
enum StepError {
    /// Shutdown was requested while retrying; stop now.
    Shutdown,
    /// Redis failed; back off and retry.
    Redis(String),
}

impl From<redis::RedisError> for StepError {
    fn from(e: redis::RedisError) -> Self {
        StepError::Redis(e.to_string())
    }
}

impl RedisIngest {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing = false;
        let mut group_ready = false;
        let mut own_pending = true;
        let mut next_claim = Instant::now();
        while !self.stopping() {
            let step = async {
                if !group_ready {
                    self.ensure_group().await?;
                    group_ready = true;
                }
                if Instant::now() >= next_claim {
                    self.claim_stale().await?;
                    next_claim = Instant::now() + self.options.claim_interval;
                }
                let entries = self.read(if own_pending { "0" } else { ">" }).await?;
                if own_pending && entries.is_empty() {
                    own_pending = false;
                }
                self.process(entries).await
            };
            match step.await {
                Ok(()) => {
                    backoff.reset();
                    if failing {
                        failing = false;
                        tracing::info!("usage ingest reads from Redis again");
                    }
                }
                Err(StepError::Shutdown) => break,
                Err(StepError::Redis(error)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(%error, "usage ingest cannot use Redis; retrying");
                    } else {
                        tracing::debug!(%error, "usage ingest still failing");
                    }
                    // Re-check the group (the stream may have been deleted) and re-read our own
                    // pending entries (a lost reply leaves delivered entries pending).
                    group_ready = false;
                    own_pending = true;
                    if !self.sleep(backoff.next_delay()).await {
                        break;
                    }
                }
            }
        }
        tracing::debug!(consumer = %self.consumer, "usage ingest stopped");
    }

    /// Sleeps; false if shutdown was requested meanwhile.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            () = shutdown_requested(&mut self.shutdown) => false,
        }
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StepError> {
        self.pool
            .get()
            .await
            .map_err(|e| StepError::Redis(e.to_string()))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StepError> {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut *conn)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StepError::Redis("Redis did not answer in time".into())),
        }
    }

    async fn ensure_group(&self) -> Result<(), StepError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(RedisKeys::USAGE_GROUP)
            .arg("0")
            .arg("MKSTREAM");
        let mut conn = self.conn().await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<Value>(&mut *conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StepError::Redis("Redis did not answer in time".into())),
        }
    }

    async fn read(&self, id: &str) -> Result<Vec<StreamEntry>, StepError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(RedisKeys::USAGE_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(BATCH_SIZE);
        if id == ">" {
            cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(id);
        let reply: Value = self.query(&cmd).await?;
        parse_read_reply(reply).map_err(|e| StepError::Redis(e.to_string()))
    }

    /// Claims entries idle > 30 s from any consumer (in practice: dead ones) and processes them;
    /// then removes long-idle consumers with nothing pending.
    async fn claim_stale(&mut self) -> Result<(), StepError> {
        let mut cursor = "0-0".to_string();
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.stream)
                .arg(RedisKeys::USAGE_GROUP)
                .arg(&self.consumer)
                .arg(self.options.claim_min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH_SIZE);
            let reply: Value = self.query(&cmd).await?;
            let (next, entries) =
                parse_autoclaim_reply(reply).map_err(|e| StepError::Redis(e.to_string()))?;
            if !entries.is_empty() {
                metrics::counter!("switchyard_usage_claimed_total").increment(entries.len() as u64);
                tracing::info!(
                    entries = entries.len(),
                    "claimed usage events left pending by another consumer"
                );
                self.process(entries).await?;
            }
            if next == "0-0" || next == cursor {
                break;
            }
            cursor = next;
        }
        self.remove_idle_consumers().await
    }

    async fn remove_idle_consumers(&self) -> Result<(), StepError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("CONSUMERS")
            .arg(&self.stream)
            .arg(RedisKeys::USAGE_GROUP);
        let reply: Value = self.query(&cmd).await?;
        let Value::Array(consumers) = reply else {
            return Ok(());
        };
        for c in consumers {
            let Some((name, pending, idle_ms)) = consumer_info(c) else {
                continue;
            };
            if name != self.consumer
                && pending == 0
                && idle_ms >= CONSUMER_MAX_IDLE.as_millis() as i64
            {
                let mut del = redis::cmd("XGROUP");
                del.arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(RedisKeys::USAGE_GROUP)
                    .arg(&name);
                self.query::<Value>(&del).await?;
                tracing::info!(consumer = %name, "removed an idle usage consumer");
            }
        }
        Ok(())
    }

    /// Writes the events of `entries` (retrying), then acknowledges and deletes all of them.
    async fn process(&mut self, entries: Vec<StreamEntry>) -> Result<(), StepError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut events = Vec::with_capacity(entries.len());
        let mut seen = HashSet::with_capacity(entries.len());
        for entry in entries {
            match entry.field("event") {
                Some(bytes) => match serde_json::from_slice::<UsageEvent>(bytes) {
                    Ok(event) => {
                        // At-least-once delivery can put one event in the stream twice.
                        if seen.insert(event.id) {
                            events.push(event);
                        }
                    }
                    Err(e) => {
                        metrics::counter!("switchyard_usage_malformed_total").increment(1);
                        // Category and position only: serde's message can quote the payload.
                        tracing::warn!(entry = %entry.id, bytes = bytes.len(), kind = ?e.classify(), line = e.line(), column = e.column(), "dropping a malformed usage entry");
                    }
                },
                None if entry.fields.is_none() => {
                    // Deleted while pending: nothing to store, just clear it from the pending list.
                }
                None => {
                    metrics::counter!("switchyard_usage_malformed_total").increment(1);
                    tracing::warn!(entry = %entry.id, "dropping a usage entry without an `event` field");
                }
            }
            ids.push(entry.id);
        }

        if !events.is_empty() {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            let mut failing = false;
            loop {
                match self.writer.write(&events).await {
                    Ok(()) => {
                        metrics::counter!("switchyard_usage_ingested_total")
                            .increment(events.len() as u64);
                        data_plane::metrics_registry::record_lag("ingest", &events);
                        if failing {
                            tracing::info!("usage events are being stored again");
                        }
                        break;
                    }
                    Err(error) => {
                        if !failing {
                            failing = true;
                            tracing::warn!(error = %format!("{error:#}"), events = events.len(), "cannot store usage events; retrying (not acknowledged)");
                        }
                        if !self.sleep(backoff.next_delay()).await {
                            return Err(StepError::Shutdown);
                        }
                    }
                }
            }
        }

        // Stored: acknowledge and delete. If this fails the entries are re-delivered and the
        // writer skips them as duplicates; retry a few times to avoid that work.
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempts = 0;
        loop {
            match self.ack(&ids).await {
                Ok(()) => return Ok(()),
                Err(e) if attempts >= 3 => return Err(e),
                Err(_) => {
                    attempts += 1;
                    if !self.sleep(backoff.next_delay()).await {
                        return Err(StepError::Shutdown);
                    }
                }
            }
        }
    }

    async fn ack(&self, ids: &[String]) -> Result<(), StepError> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(RedisKeys::USAGE_GROUP)
            .arg(ids)
            .ignore();
        pipe.cmd("XDEL").arg(&self.stream).arg(ids).ignore();
        match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut *conn)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StepError::Redis("Redis did not answer in time".into())),
        }
    }
}

/// (name, pending, idle ms) from one `XINFO CONSUMERS` item (RESP2 flat array or RESP3 map).
fn consumer_info(v: Value) -> Option<(String, i64, i64)> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        Value::Map(m) => m,
        _ => return None,
    };
    let (mut name, mut pending, mut idle) = (None, None, None);
    for (k, v) in pairs {
        let key = match k {
            Value::BulkString(b) => String::from_utf8(b).ok()?,
            Value::SimpleString(s) => s,
            _ => continue,
        };
        match (key.as_str(), v) {
            ("name", Value::BulkString(b)) => name = String::from_utf8(b).ok(),
            ("name", Value::SimpleString(s)) => name = Some(s),
            ("pending", Value::Int(i)) => pending = Some(i),
            ("idle", Value::Int(i)) => idle = Some(i),
            _ => {}
        }
    }
    Some((name?, pending?, idle?))
}
