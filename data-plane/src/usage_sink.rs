//! `UsageSink`: ships each request's [`UsageEvent`] to the control plane.
//!
//! # Redis
//!
//! [`UsageSink::emit`] puts the event on a bounded in-process queue ([`QUEUE_CAPACITY`] events)
//! and returns; a single writer task takes up to [`BATCH_SIZE`] queued events at a time and sends
//! them in one pipeline of `XADD {prefix}usage * event <json>` (field `event` = JSON
//! [`UsageEvent`], see [`RedisKeys::usage`]). The control plane reads the stream with a consumer
//! group (`control_plane::ingest`).
//!
//! ## With a spool (the standalone data plane)
//!
//! [`UsageSink::redis_spooled`] adds a local [`Spool`] (see [`crate::usage_spool`]):
//!
//! 1. **Direct.** Batches go to Redis. When one fails (error, or no answer within 5 s), it is
//!    appended to the spool instead (fsync'd before it counts as written) and the writer turns to
//!    *spool mode*.
//! 2. **Spool mode.** Every new batch goes straight to the spool: no 5 s wait per batch on a dead
//!    Redis. A `PING` probe (1 s timeout, backoff 100 ms … 5 s with jitter) looks for recovery.
//! 3. **Replay.** Once the probe answers, the oldest segment is read back and `XADD`ed in
//!    batches of [`BATCH_SIZE`], interleaved with new batches (which go directly to Redis); a
//!    segment is deleted only after all its events were written. A failure goes back to spool
//!    mode; when the spool is empty the writer is in direct mode again. A spool left by a
//!    previous (killed) process is replayed the same way at start.
//! 4. **Full spool.** A batch that would take the spool over its bound stays in memory: the
//!    writer retries it (spool or Redis, whichever takes it first), the queue fills, and `emit`
//!    waits — backpressure, never a silent drop (`switchyard_usage_spool_refused_total`, an
//!    error log once per episode).
//!
//! Metrics: `switchyard_usage_spool_events` / `switchyard_usage_spool_bytes` (gauges, what is on
//! disk), `switchyard_usage_spooled_total`, `switchyard_usage_replayed_total`.
//!
//! ## Without a spool
//!
//! [`UsageSink::redis`]: when a batch fails, the writer retries **the same batch** with
//! exponential backoff (100 ms … 5 s) until it succeeds; meanwhile new events keep queueing. A
//! full queue makes `emit` wait (backpressure on the meter tasks, never on client responses), so
//! nothing is dropped while the process lives. The outage is logged once when it starts and once
//! when it ends, not per event.
//!
//! ## Delivery
//!
//! Delivery is at least once: a pipeline that fails halfway (or times out after Redis applied it)
//! is sent again (or spooled and replayed), and a replay cut by a crash is replayed again, so the
//! stream can hold an event twice. That is by design; the control plane stores events keyed by
//! their id and skips duplicates.
//!
//! The producer does not trim the stream (`XADD` without `MAXLEN`): trimming by length would
//! silently drop billing data that the control plane has not read yet, e.g. during a long
//! control-plane outage. The ingest deletes entries once they are stored, so the stream's length
//! is the backlog; alert on it rather than cap it.
//!
//! On shutdown, call [`UsageSink::flush`]: queued events get most of its time to reach Redis,
//! then (with a spool) whatever is left is spooled and fsync'd, for the next start to replay.
//!
//! # In-process
//!
//! [`UsageSink::in_memory`] sends into the channel the control plane's ingest task drains
//! ([`shared::bus::MemoryBus::usage_sender`]); the channel is bounded, and a full channel makes
//! `emit` wait.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::Pool;
use shared::config::RedisKeys;
use shared::usage::UsageEvent;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::store::retry::Backoff;
use crate::usage_spool::{Spool, SpoolError};

/// Events queued in memory before `emit` starts waiting.
pub const QUEUE_CAPACITY: usize = 100_000;
/// Events per `XADD` pipeline.
pub const BATCH_SIZE: usize = 500;
/// Upper bound for one pipeline (pool checkout included).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one recovery probe (`PING`) while Redis is down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Recovery probes back off between these bounds.
const PROBE_MIN: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_secs(5);

/// Sends usage events to Redis or the in-process ingest. Cheap to clone; the Redis writer task
/// drains the queue and stops once the last clone is dropped.
#[derive(Clone)]
pub struct UsageSink {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Redis {
        tx: mpsc::Sender<UsageEvent>,
        state: Arc<WriterState>,
    },
    Memory(mpsc::Sender<UsageEvent>),
}

impl std::fmt::Debug for UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Redis { state, .. } => f
                .debug_struct("UsageSink")
                .field("backend", &"redis")
                .field("unwritten", &state.unwritten.load(Ordering::Relaxed))
                .field("spooled", &state.spool_events.load(Ordering::Relaxed))
                .finish(),
            Inner::Memory(_) => f.write_str("UsageSink(in-memory)"),
        }
    }
}

struct WriterState {
    /// Events handed to `emit` and not yet written to Redis or the spool (queued, waiting for
    /// queue space, or in the batch being retried).
    unwritten: AtomicUsize,
    /// Signalled after every written batch (wakes `flush`).
    progress: Notify,
    /// Signalled by `flush` to cut a backoff wait short.
    kick: Notify,
    /// Set by `flush` once its Redis time is up: spool everything now, do not try Redis.
    spill: AtomicBool,
    /// Whether a spool is configured.
    has_spool: bool,
    /// Events in the spool (mirrors the gauge, for `spooled_events`).
    spool_events: AtomicU64,
}

/// A snapshot of the spool, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStatus {
    /// Events on disk waiting for replay.
    pub events: u64,
}

impl UsageSink {
    /// Spawns the writer task (needs a tokio runtime), without a spool: while Redis is down,
    /// events wait in memory. See the module docs.
    pub fn redis(pool: Pool, keys: RedisKeys) -> Self {
        Self::spawn_redis(pool, keys, None)
    }

    /// Spawns the writer task with `spool`: while Redis is down, events go to the spool, and it
    /// is replayed (a previous process's leftovers first) once Redis answers. See the module docs.
    pub fn redis_spooled(pool: Pool, keys: RedisKeys, spool: Spool) -> Self {
        Self::spawn_redis(pool, keys, Some(spool))
    }

    fn spawn_redis(pool: Pool, keys: RedisKeys, spool: Option<Spool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let state = Arc::new(WriterState {
            unwritten: AtomicUsize::new(0),
            progress: Notify::new(),
            kick: Notify::new(),
            spill: AtomicBool::new(false),
            has_spool: spool.is_some(),
            spool_events: AtomicU64::new(spool.as_ref().map_or(0, Spool::events)),
        });
        let writer = Writer {
            pool,
            stream: keys.usage(),
            rx,
            state: Arc::clone(&state),
            spool: spool.map(|s| Arc::new(Mutex::new(s))),
            held: Vec::with_capacity(BATCH_SIZE),
            held_oldest: None,
            held_events: 0,
            down: None,
            probe_backoff: Backoff::new(PROBE_MIN, PROBE_MAX),
            retry_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            replay: None,
            spool_refusing: false,
            closed: false,
        };
        tokio::spawn(writer.run());
        Self {
            inner: Inner::Redis { tx, state },
        }
    }

    /// Sends into the in-process ingest channel.
    pub fn in_memory(tx: mpsc::Sender<UsageEvent>) -> Self {
        Self {
            inner: Inner::Memory(tx),
        }
    }

    /// Events handed to `emit` and not yet written to Redis or the spool (0 for the in-process
    /// sink, whose channel is the ingest queue itself).
    pub fn unwritten(&self) -> usize {
        match &self.inner {
            Inner::Redis { state, .. } => state.unwritten.load(Ordering::Acquire),
            Inner::Memory(tx) => tx.max_capacity() - tx.capacity(),
        }
    }

    /// The spool's state, when this is a Redis sink with a spool.
    pub fn spool_status(&self) -> Option<SpoolStatus> {
        match &self.inner {
            Inner::Redis { state, .. } if state.has_spool => Some(SpoolStatus {
                events: state.spool_events.load(Ordering::Acquire),
            }),
            _ => None,
        }
    }

    /// Queues one event. Called from the (spawned, uncancellable) meter task, never from the
    /// client-facing future: it waits while the queue is full.
    pub async fn emit(&self, event: UsageEvent) {
        match &self.inner {
            Inner::Redis { tx, state } => {
                // Counted from now on, so `flush` also waits for emitters blocked on a full queue.
                // The guard un-counts the event if it never reaches the queue (the future was
                // dropped while waiting, or the writer is gone).
                let mut guard = Unqueued { state, armed: true };
                state.unwritten.fetch_add(1, Ordering::AcqRel);
                if tx.send(event).await.is_ok() {
                    guard.armed = false;
                } else {
                    // Only possible if the writer task panicked.
                    metrics::counter!("switchyard_usage_events_lost_total").increment(1);
                    tracing::error!("usage writer is gone; a usage event was lost");
                }
            }
            Inner::Memory(tx) => {
                if tx.send(event).await.is_err() {
                    metrics::counter!("switchyard_usage_events_lost_total").increment(1);
                    tracing::error!("usage ingest is gone; a usage event was lost");
                }
            }
        }
    }

    /// On shutdown: waits until queued events are written (to Redis, or taken by the in-process
    /// ingest) or `timeout` passes; returns how many remain unwritten. With a spool, Redis gets
    /// three quarters of `timeout`; then whatever is left is written to the spool (fsync'd)
    /// within the rest, and counts as written.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        match &self.inner {
            Inner::Redis { state, .. } => {
                // Skip the current backoff wait, if any: we are about to exit.
                state.kick.notify_one();
                let redis_deadline = if state.has_spool {
                    start + timeout * 3 / 4
                } else {
                    deadline
                };
                let left = wait_written(state, redis_deadline).await;
                if left == 0 || !state.has_spool {
                    return left;
                }
                tracing::warn!(
                    unwritten = left,
                    "usage events did not reach Redis in time; spooling them"
                );
                state.spill.store(true, Ordering::Release);
                state.kick.notify_one();
                let left = wait_written(state, deadline).await;
                // Back to normal should the process go on (a flush is not necessarily the end).
                state.spill.store(false, Ordering::Release);
                left
            }
            Inner::Memory(tx) => loop {
                // The channel offers no "drained" signal; poll its length until the deadline.
                let left = tx.max_capacity() - tx.capacity();
                if left == 0 || tokio::time::Instant::now() >= deadline {
                    return left;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            },
        }
    }
}

/// Waits until nothing is unwritten or `deadline`; returns how many are unwritten.
async fn wait_written(state: &WriterState, deadline: Instant) -> usize {
    loop {
        let notified = state.progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let left = state.unwritten.load(Ordering::Acquire);
        if left == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return state.unwritten.load(Ordering::Acquire);
        }
    }
}

/// Un-counts an event that did not make it into the queue.
struct Unqueued<'a> {
    state: &'a WriterState,
    armed: bool,
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.unwritten.fetch_sub(1, Ordering::AcqRel);
            self.state.progress.notify_waiters();
        }
    }
}

/// A spool segment being replayed.
struct Replay {
    seq: u64,
    lines: Vec<String>,
    /// Lines already written to Redis.
    done: usize,
}

/// The writer task. One per Redis sink; it alone touches the spool.
struct Writer {
    pool: Pool,
    stream: String,
    rx: mpsc::Receiver<UsageEvent>,
    state: Arc<WriterState>,
    spool: Option<Arc<Mutex<Spool>>>,
    /// Serialized events taken from the queue and not yet written anywhere.
    held: Vec<String>,
    /// When the oldest request of `held` ended (for the pipeline lag gauge).
    held_oldest: Option<time::OffsetDateTime>,
    /// How many queued events `held` stands for (unserializable ones included).
    held_events: usize,
    /// `Some(next probe)` while Redis is considered unreachable (spool mode).
    down: Option<Instant>,
    probe_backoff: Backoff,
    /// Without a spool: the backoff between retries of the held batch.
    retry_backoff: Backoff,
    replay: Option<Replay>,
    /// The spool refused the last batch (full or failing); logged once per episode.
    spool_refusing: bool,
    /// Every sender is gone and the queue is empty.
    closed: bool,
}

impl Writer {
    async fn run(mut self) {
        if let Some(spool) = &self.spool {
            let (events, dir) = {
                let s = lock(spool);
                (s.events(), s.dir().display().to_string())
            };
            if events > 0 {
                tracing::info!(
                    events,
                    dir,
                    "replaying usage events spooled by a previous run"
                );
            }
        }
        loop {
            if self.held.is_empty() {
                if self.closed {
                    return;
                }
                self.take().await;
            }
            if !self.held.is_empty() {
                self.deliver_held().await;
            }
            if self.probe_due() {
                self.probe().await;
            }
            if self.held.is_empty() && self.can_replay() {
                self.replay_step().await;
            }
        }
    }

    fn spilling(&self) -> bool {
        self.state.spill.load(Ordering::Acquire)
    }

    fn probe_due(&self) -> bool {
        !self.spilling() && self.down.is_some_and(|at| Instant::now() >= at)
    }

    fn can_replay(&self) -> bool {
        self.down.is_none()
            && !self.spilling()
            && (self.replay.is_some() || self.spool.as_ref().is_some_and(|s| !lock(s).is_empty()))
    }

    /// Fills `held` from the queue. Waits for events unless there is other work: a replay to
    /// continue (no wait) or a probe to run (wait until it is due).
    async fn take(&mut self) {
        let mut events = Vec::with_capacity(BATCH_SIZE);
        let n = if self.can_replay() {
            while events.len() < BATCH_SIZE {
                match self.rx.try_recv() {
                    Ok(e) => events.push(e),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.closed = events.is_empty();
                        break;
                    }
                }
            }
            events.len()
        } else if let Some(at) = self.down.filter(|_| !self.spilling()) {
            tokio::select! {
                n = self.rx.recv_many(&mut events, BATCH_SIZE) => {
                    self.closed = n == 0;
                    n
                }
                () = tokio::time::sleep_until(at) => 0,
                () = self.state.kick.notified() => 0,
            }
        } else {
            let n = self.rx.recv_many(&mut events, BATCH_SIZE).await;
            self.closed = n == 0;
            n
        };
        if n == 0 {
            return;
        }
        self.held_events = n;
        self.held_oldest = events.iter().map(crate::metrics_registry::event_end).min();
        for event in events {
            match serde_json::to_string(&event) {
                Ok(json) => self.held.push(json),
                Err(e) => {
                    metrics::counter!("switchyard_usage_events_lost_total").increment(1);
                    tracing::error!(event_id = %event.id, error = %e, "cannot serialize a usage event; dropped");
                }
            }
        }
        if self.held.is_empty() {
            self.written();
        }
    }

    /// The held batch is durable (in Redis or the spool).
    fn written(&mut self) {
        if let Some(end) = self.held_oldest.take() {
            let lag = (time::OffsetDateTime::now_utc() - end).as_seconds_f64();
            metrics::gauge!("switchyard_usage_pipeline_lag_seconds", "stage" => "sink")
                .set(lag.max(0.0));
        }
        self.held.clear();
        self.state
            .unwritten
            .fetch_sub(self.held_events, Ordering::AcqRel);
        self.held_events = 0;
        self.state.progress.notify_waiters();
    }

    /// Writes `held` to Redis when it is up, else to the spool; when neither works, waits a
    /// little and keeps it (the queue then fills up and `emit` waits: backpressure).
    async fn deliver_held(&mut self) {
        if self.down.is_none() && !self.spilling() {
            match self.write(&self.held).await {
                Ok(()) => {
                    metrics::counter!("switchyard_usage_events_sent_total")
                        .increment(self.held.len() as u64);
                    self.retry_backoff.reset();
                    if self.spool.is_none() && self.spool_refusing {
                        self.spool_refusing = false;
                        tracing::info!("usage events reach Redis again");
                    }
                    self.written();
                    return;
                }
                Err(error) => {
                    metrics::counter!("switchyard_usage_write_failures_total").increment(1);
                    if self.spool.is_none() {
                        if !self.spool_refusing {
                            self.spool_refusing = true;
                            tracing::warn!(
                                %error,
                                unwritten = self.state.unwritten.load(Ordering::Relaxed),
                                "cannot write usage events to Redis; retrying, nothing is dropped while the queue has room"
                            );
                        }
                        let d = self.retry_backoff.next_delay();
                        self.pause(d).await;
                        return;
                    }
                    self.mark_down(&error);
                }
            }
        }
        let Some(spool) = self.spool.clone() else {
            // No spool and spilling: nothing more to do than retry Redis.
            let d = self.retry_backoff.next_delay();
            self.pause(d).await;
            return;
        };
        let lines = std::mem::take(&mut self.held);
        let (lines, result) = tokio::task::spawn_blocking(move || {
            let result = lock(&spool).append(&lines);
            (lines, result)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), Err(SpoolError::Io(std::io::Error::other(e)))));
        match result {
            Ok(()) => {
                metrics::counter!("switchyard_usage_spooled_total").increment(lines.len() as u64);
                self.sync_spool_count();
                if self.spool_refusing {
                    self.spool_refusing = false;
                    tracing::info!("the usage spool accepts events again");
                }
                self.written();
            }
            Err(error) => {
                if lines.is_empty() {
                    // The blocking task panicked and took the batch with it.
                    metrics::counter!("switchyard_usage_events_lost_total")
                        .increment(self.held_events as u64);
                    tracing::error!(
                        events = self.held_events,
                        "the usage spool task failed; events lost"
                    );
                    self.written();
                    return;
                }
                self.held = lines;
                metrics::counter!("switchyard_usage_spool_refused_total").increment(1);
                if !self.spool_refusing {
                    self.spool_refusing = true;
                    tracing::error!(
                        %error,
                        "cannot spool usage events; holding them in memory (emitters wait once the queue is full)"
                    );
                }
                let wait = match self.down {
                    Some(at) => at.saturating_duration_since(Instant::now()),
                    None => self.retry_backoff.next_delay(),
                };
                self.pause(wait.max(Duration::from_millis(50))).await;
            }
        }
    }

    fn mark_down(&mut self, error: &str) {
        if self.down.is_none() {
            let spooled = self.spool.as_ref().map_or(0, |s| lock(s).events());
            tracing::warn!(
                %error,
                spooled,
                "cannot write usage events to Redis; spooling them to disk until it answers"
            );
        }
        self.down = Some(Instant::now() + self.probe_backoff.next_delay());
    }

    /// While down: is Redis back?
    async fn probe(&mut self) {
        let ping = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query_async::<()>(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
            Ok(Ok(())) => {
                self.down = None;
                self.probe_backoff.reset();
                let spooled = self.spool.as_ref().map_or(0, |s| lock(s).events());
                tracing::info!(
                    spooled,
                    "usage events reach Redis again; replaying the spool"
                );
            }
            _ => {
                self.down = Some(Instant::now() + self.probe_backoff.next_delay());
            }
        }
    }

    /// Writes the next batch of the oldest spool segment; deletes the segment once all of it
    /// is in Redis.
    async fn replay_step(&mut self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        if self.replay.is_none() {
            let reader = Arc::clone(&spool);
            let read = tokio::task::spawn_blocking(move || {
                let mut s = lock(&reader);
                let seq = s.oldest()?;
                Some((seq, s.read_segment(seq)))
            })
            .await
            .ok()
            .flatten();
            let Some((seq, contents)) = read else {
                return;
            };
            match contents {
                Ok(contents) => {
                    if contents.torn {
                        tracing::warn!(
                            segment = seq,
                            "a usage spool segment ends in a torn line (a write cut by a crash); skipped it"
                        );
                    }
                    if contents.corrupt > 0 {
                        metrics::counter!("switchyard_usage_malformed_total")
                            .increment(contents.corrupt as u64);
                        tracing::warn!(
                            segment = seq,
                            lines = contents.corrupt,
                            "skipped usage spool lines that are not JSON"
                        );
                    }
                    self.replay = Some(Replay {
                        seq,
                        lines: contents.lines,
                        done: 0,
                    });
                }
                Err(error) => {
                    tracing::error!(%error, segment = seq, "cannot read a usage spool segment; retrying later");
                    let d = self.retry_backoff.next_delay();
                    self.pause(d).await;
                    return;
                }
            }
        }
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        let end = (replay.done + BATCH_SIZE).min(replay.lines.len());
        let chunk = replay.lines[replay.done..end].to_vec();
        if !chunk.is_empty() {
            if let Err(error) = self.write(&chunk).await {
                metrics::counter!("switchyard_usage_write_failures_total").increment(1);
                self.mark_down(&error);
                return;
            }
            metrics::counter!("switchyard_usage_replayed_total").increment(chunk.len() as u64);
        }
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        replay.done = end;
        if replay.done < replay.lines.len() {
            return;
        }
        let seq = replay.seq;
        self.replay = None;
        let removed = tokio::task::spawn_blocking(move || {
            let mut s = lock(&spool);
            s.remove(seq).map(|()| s.events())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match removed {
            Ok(0) => {
                self.sync_spool_count();
                tracing::info!("usage spool replayed");
            }
            Ok(_) => self.sync_spool_count(),
            Err(error) => {
                // Its events are in Redis; replaying it again later only adds duplicates.
                tracing::error!(%error, segment = seq, "cannot delete a replayed usage spool segment");
                let d = self.retry_backoff.next_delay();
                self.pause(d).await;
            }
        }
    }

    fn sync_spool_count(&self) {
        if let Some(spool) = &self.spool {
            self.state
                .spool_events
                .store(lock(spool).events(), Ordering::Release);
        }
    }

    /// Sleeps `d`, cut short by `flush`.
    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = self.state.kick.notified() => {}
        }
    }

    /// One `XADD` pipeline; gives up early when `flush` asks to spool instead.
    async fn write(&self, payloads: &[String]) -> Result<(), String> {
        let spill = async {
            loop {
                let notified = self.state.kick.notified();
                if self.spilling() && self.spool.is_some() {
                    return;
                }
                notified.await;
            }
        };
        tokio::select! {
            r = write_batch(&self.pool, &self.stream, payloads) => r,
            () = spill => Err("shutting down: spooling instead".to_owned()),
        }
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn write_batch(pool: &Pool, stream: &str, payloads: &[String]) -> Result<(), String> {
    if payloads.is_empty() {
        return Ok(());
    }
    let fut = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        for json in payloads {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("event")
                .arg(json)
                .ignore();
        }
        pipe.query_async::<()>(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(WRITE_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out writing usage events".to_string())?
}
