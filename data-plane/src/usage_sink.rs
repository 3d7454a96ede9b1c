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
//! When a batch fails (Redis down, timeout), the writer retries **the same batch** with
//! exponential backoff (100 ms … 5 s) until it succeeds; meanwhile new events keep queueing. A
//! full queue makes `emit` wait (backpressure on the meter tasks, never on client responses), so
//! nothing is dropped while the process lives. The outage is logged once when it starts and once
//! when it ends, not per event.
//!
//! Delivery is at least once: a pipeline that fails halfway (or times out after Redis applied it)
//! is sent again, so the stream can hold an event twice. That is by design; the control plane
//! stores events keyed by their id and skips duplicates.
//!
//! The producer does not trim the stream (`XADD` without `MAXLEN`): trimming by length would
//! silently drop billing data that the control plane has not read yet, e.g. during a long
//! control-plane outage. The ingest deletes entries once they are stored, so the stream's length
//! is the backlog; alert on it rather than cap it.
//!
//! On shutdown, call [`UsageSink::flush`] to give queued events a bounded time to reach Redis.
//!
//! # In-process
//!
//! [`UsageSink::in_memory`] sends into the channel the control plane's ingest task drains
//! ([`shared::bus::MemoryBus::usage_sender`]); the channel is bounded, and a full channel makes
//! `emit` wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_redis::Pool;
use shared::config::RedisKeys;
use shared::usage::UsageEvent;
use tokio::sync::{Notify, mpsc};

use crate::store::retry::Backoff;

/// Events queued in memory before `emit` starts waiting.
pub const QUEUE_CAPACITY: usize = 100_000;
/// Events per `XADD` pipeline.
pub const BATCH_SIZE: usize = 500;
/// Upper bound for one pipeline (pool checkout included).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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
                .finish(),
            Inner::Memory(_) => f.write_str("UsageSink(in-memory)"),
        }
    }
}

struct WriterState {
    /// Events handed to `emit` and not yet written to Redis (queued, waiting for queue space,
    /// or in the batch being retried).
    unwritten: AtomicUsize,
    /// Signalled after every written batch (wakes `flush`).
    progress: Notify,
    /// Signalled by `flush` to cut a backoff wait short.
    kick: Notify,
}

impl UsageSink {
    /// Spawns the writer task (needs a tokio runtime). See the module docs.
    pub fn redis(pool: Pool, keys: RedisKeys) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let state = Arc::new(WriterState {
            unwritten: AtomicUsize::new(0),
            progress: Notify::new(),
            kick: Notify::new(),
        });
        tokio::spawn(run_writer(pool, keys.usage(), rx, Arc::clone(&state)));
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
    /// ingest) or `timeout` passes; returns how many remain unwritten.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        match &self.inner {
            Inner::Redis { state, .. } => {
                // Skip the current backoff wait, if any: we are about to exit.
                state.kick.notify_one();
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

async fn run_writer(
    pool: Pool,
    stream: String,
    mut rx: mpsc::Receiver<UsageEvent>,
    state: Arc<WriterState>,
) {
    let mut events = Vec::with_capacity(BATCH_SIZE);
    let mut payloads: Vec<String> = Vec::with_capacity(BATCH_SIZE);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failing = false;
    loop {
        if rx.recv_many(&mut events, BATCH_SIZE).await == 0 {
            // Every sink was dropped and the queue is empty.
            return;
        }
        let taken = events.len();
        payloads.clear();
        for event in events.drain(..) {
            match serde_json::to_string(&event) {
                Ok(json) => payloads.push(json),
                Err(e) => {
                    metrics::counter!("switchyard_usage_events_lost_total").increment(1);
                    tracing::error!(event_id = %event.id, error = %e, "cannot serialize a usage event; dropped");
                }
            }
        }
        loop {
            match write_batch(&pool, &stream, &payloads).await {
                Ok(()) => {
                    metrics::counter!("switchyard_usage_events_sent_total")
                        .increment(payloads.len() as u64);
                    state.unwritten.fetch_sub(taken, Ordering::AcqRel);
                    state.progress.notify_waiters();
                    backoff.reset();
                    if failing {
                        failing = false;
                        tracing::info!("usage events reach Redis again");
                    }
                    break;
                }
                Err(error) => {
                    metrics::counter!("switchyard_usage_write_failures_total").increment(1);
                    if !failing {
                        failing = true;
                        tracing::warn!(
                            %error,
                            unwritten = state.unwritten.load(Ordering::Relaxed),
                            "cannot write usage events to Redis; retrying, nothing is dropped while the queue has room"
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = state.kick.notified() => {}
                    }
                }
            }
        }
    }
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
