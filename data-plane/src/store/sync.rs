//! The Redis subscriber of [`super::ConfigStore`]: pub/sub announcements as a doorbell, the
//! change log as the source of truth. The protocol is described in the parent module's docs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use futures::{FutureExt, StreamExt};
use shared::config::{ChangeKind, ConfigChange};
use tokio::time::{MissedTickBehavior, timeout};
use uuid::Uuid;

use super::Shared;
use super::retry::Backoff;
use super::stream::{StreamId, parse_entries};

/// Entries read per `XRANGE` page during a replay.
const REPLAY_PAGE: usize = 1000;
/// Bound for opening the pub/sub connection and subscribing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound for a pub/sub `PING` and for each change-log command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Concurrent refetches during a catch-up.
const REFETCH_CONCURRENCY: usize = 16;

/// A record named by a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Key(String),
    Tenant(Uuid),
}

#[derive(Default)]
struct SyncState {
    /// Id of the last change-log entry applied; `None` until the first catch-up.
    last_seq: Option<StreamId>,
    /// Records whose refetch failed, with the version that was announced; retried at the next
    /// catch-up or poll.
    retry: HashMap<Target, i64>,
    /// Whether the current subscription outage was already logged (log once per outage).
    failing: bool,
    /// Same, for failures of the periodic poll.
    poll_failing: bool,
}

/// Runs forever (the task is aborted when the last `ConfigStore` clone drops).
pub(super) async fn run(shared: Arc<Shared>, client: redis::Client) {
    let mut state = SyncState::default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = session(&shared, &client, &mut state, &mut backoff).await;
        shared.connected.store(false, Ordering::Relaxed);
        if state.failing {
            tracing::debug!(%error, "config subscription still down");
        } else {
            tracing::warn!(%error, "config subscription to Redis lost; serving cached records, reconnecting");
            state.failing = true;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connection's lifetime. Returns only when it failed, with the reason.
async fn session(
    shared: &Shared,
    client: &redis::Client,
    state: &mut SyncState,
    backoff: &mut Backoff,
) -> String {
    let Some((_, keys)) = shared.redis() else {
        return "not a Redis-backed store".into();
    };
    let channel = keys.channel();
    let mut pubsub = match timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return format!("cannot open the pub/sub connection: {e}"),
        Err(_) => return "timed out opening the pub/sub connection".into(),
    };
    match timeout(CONNECT_TIMEOUT, pubsub.subscribe(&channel)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return format!("cannot subscribe: {e}"),
        Err(_) => return "timed out subscribing".into(),
    }
    let (mut sink, mut messages) = pubsub.split();
    // Subscribed first, then caught up: anything written after this point is announced to us, and
    // anything before it is in the change log.
    if let Err(e) = catch_up(shared, state).await {
        return format!("catch-up failed: {e}");
    }
    shared.mark_ready();
    backoff.reset();
    if state.failing {
        tracing::info!("config subscription to Redis restored");
        state.failing = false;
    }

    let poll_interval = shared.options.poll_interval;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + poll_interval, poll_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return "pub/sub connection closed".into();
                };
                // Drain whatever else is queued, then read the log once for all of them.
                let mut announced: Vec<ConfigChange> = Vec::new();
                announced.extend(parse_announcement(&msg));
                while let Some(Some(more)) = messages.next().now_or_never() {
                    announced.extend(parse_announcement(&more));
                }
                if let Err(e) = catch_up(shared, state).await {
                    // The log cannot be read right now. Apply what was announced (best effort; a
                    // failed refetch is remembered), and let the next catch-up replay the log.
                    tracing::debug!(error = %e, "change log unreadable; applying announcements directly");
                    let mut pending = HashMap::new();
                    let mut clear = false;
                    for c in announced {
                        merge(&mut pending, c, &mut clear);
                    }
                    if clear {
                        shared.clear_all();
                        pending.clear();
                    }
                    apply(shared, state, pending).await;
                }
            }
            _ = tick.tick() => {
                match timeout(COMMAND_TIMEOUT, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("pub/sub ping failed: {e}"),
                    Err(_) => return "pub/sub ping timed out".into(),
                }
                match poll(shared, state).await {
                    Ok(()) => {
                        if state.poll_failing {
                            tracing::info!("change log readable again");
                            state.poll_failing = false;
                        }
                    }
                    Err(e) if !state.poll_failing => {
                        tracing::warn!(error = %e, "cannot read the change log; serving cached records");
                        state.poll_failing = true;
                    }
                    Err(e) => tracing::debug!(error = %e, "change log still unreadable"),
                }
            }
        }
    }
}

fn parse_announcement(msg: &redis::Msg) -> Option<ConfigChange> {
    match serde_json::from_slice::<ConfigChange>(msg.get_payload_bytes()) {
        Ok(c) => Some(c),
        Err(_) => {
            // Harmless: the catch-up that follows reads the change log itself.
            tracing::debug!("ignoring an unparseable config announcement");
            None
        }
    }
}

/// The safety net: catch up if the log's head moved past what we saw, or refetches are pending.
async fn poll(shared: &Shared, state: &mut SyncState) -> Result<(), String> {
    let (pool, keys) = shared.redis().ok_or("not a Redis-backed store")?;
    let newest = timeout(COMMAND_TIMEOUT, async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(keys.changes())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        first_id(reply)
    })
    .await
    .map_err(|_| "timed out reading the change log head".to_string())??;
    let behind = match (state.last_seq, newest) {
        (None, _) => true,
        (Some(last), Some(newest)) => newest != last,
        (Some(last), None) => last != StreamId::ZERO,
    };
    if behind || !state.retry.is_empty() {
        catch_up(shared, state).await?;
    } else if let Some(last) = state.last_seq {
        shared.mark_synced(last.ms);
    }
    Ok(())
}

/// Brings the cache up to date with the change log; see the parent module's docs.
async fn catch_up(shared: &Shared, state: &mut SyncState) -> Result<(), String> {
    let (pool, keys) = shared.redis().ok_or("not a Redis-backed store")?;
    let changes = keys.changes();
    let mut conn = timeout(COMMAND_TIMEOUT, pool.get())
        .await
        .map_err(|_| "timed out waiting for a Redis connection".to_string())?
        .map_err(|e| e.to_string())?;

    let (oldest, newest): (Value, Value) = timeout(
        COMMAND_TIMEOUT,
        redis::pipe()
            .cmd("XRANGE")
            .arg(&changes)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XREVRANGE")
            .arg(&changes)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut *conn),
    )
    .await
    .map_err(|_| "timed out reading the change log bounds".to_string())?
    .map_err(|e| e.to_string())?;
    let oldest = first_id(oldest)?;
    let newest = first_id(newest)?;

    let Some(last) = state.last_seq else {
        // First session: whatever was cached before we subscribed may have missed a change.
        reset(shared, state, newest.unwrap_or(StreamId::ZERO), None);
        return Ok(());
    };
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        if last != StreamId::ZERO {
            reset(
                shared,
                state,
                StreamId::ZERO,
                Some("the change log vanished (Redis flushed or replaced)"),
            );
        } else {
            let pending = std::mem::take(&mut state.retry);
            drop(conn);
            apply(shared, state, pending).await;
        }
        return Ok(());
    };
    if newest < last {
        reset(
            shared,
            state,
            newest,
            Some("the change log went backwards (Redis restored from an older snapshot)"),
        );
        return Ok(());
    }
    if oldest > last && last != StreamId::ZERO {
        reset(
            shared,
            state,
            newest,
            Some("the change log was trimmed past the last entry seen"),
        );
        return Ok(());
    }

    let mut pending = std::mem::take(&mut state.retry);
    let mut cursor = last;
    let mut clear = false;
    while cursor < newest {
        let page: Value = timeout(
            COMMAND_TIMEOUT,
            redis::cmd("XRANGE")
                .arg(&changes)
                .arg(format!("({cursor}"))
                .arg("+")
                .arg("COUNT")
                .arg(REPLAY_PAGE)
                .query_async(&mut *conn),
        )
        .await
        .map_err(|_| "timed out replaying the change log".to_string())?
        .map_err(|e| e.to_string())?;
        let entries = parse_entries(page).map_err(|e| e.to_string())?;
        let full_page = entries.len() >= REPLAY_PAGE;
        for entry in entries {
            let Some(id) = entry.stream_id() else {
                continue;
            };
            cursor = cursor.max(id);
            match entry
                .field("change")
                .map(serde_json::from_slice::<ConfigChange>)
            {
                Some(Ok(change)) => merge(&mut pending, change, &mut clear),
                _ => {
                    tracing::warn!(entry = %id, "unreadable change log entry; dropping the whole config cache to be safe");
                    clear = true;
                }
            }
        }
        if !full_page {
            break;
        }
    }
    drop(conn);
    if clear {
        shared.clear_all();
        pending.clear();
    }
    state.last_seq = Some(cursor);
    apply(shared, state, pending).await;
    shared.mark_synced(cursor.ms);
    Ok(())
}

fn reset(shared: &Shared, state: &mut SyncState, to: StreamId, reason: Option<&str>) {
    shared.clear_all();
    state.retry.clear();
    state.last_seq = Some(to);
    if let Some(reason) = reason {
        tracing::info!(
            reason,
            "dropped the whole config cache; records are refetched on demand"
        );
        metrics::counter!("switchyard_config_cache_resets_total").increment(1);
    }
}

/// Collapses changes per record, keeping the highest announced version.
fn merge(pending: &mut HashMap<Target, i64>, change: ConfigChange, clear: &mut bool) {
    let target = match change.kind {
        ChangeKind::All => {
            *clear = true;
            return;
        }
        ChangeKind::Key => Target::Key(change.id),
        ChangeKind::Tenant => match change.id.parse::<Uuid>() {
            Ok(id) => Target::Tenant(id),
            Err(_) => {
                tracing::warn!("ignoring a tenant change with an invalid id");
                return;
            }
        },
    };
    let v = pending.entry(target).or_insert(change.version);
    *v = (*v).max(change.version);
}

/// Forgets negative entries for every changed record and refetches the cached ones that are
/// older than announced. Failed refetches keep the old record and go to the retry set.
async fn apply(shared: &Shared, state: &mut SyncState, pending: HashMap<Target, i64>) {
    let mut refetch = Vec::new();
    for (target, version) in pending {
        let cached = match &target {
            Target::Key(hash) => shared.keys.invalidate(hash.as_str()),
            Target::Tenant(id) => shared.tenants.invalidate(id),
        };
        if cached.is_some_and(|v| v < version) {
            refetch.push((target, version));
        }
    }
    let results: Vec<(Target, i64, bool)> = futures::stream::iter(refetch)
        .map(|(target, version)| async move {
            let ok = match &target {
                Target::Key(hash) => match shared.fetch_key(hash).await {
                    Ok(Some(record)) => {
                        shared.keys.replace(hash.clone(), record);
                        true
                    }
                    Ok(None) => {
                        shared.keys.remove(hash.as_str());
                        true
                    }
                    Err(_) => false,
                },
                Target::Tenant(id) => match shared.fetch_tenant(*id).await {
                    Ok(Some(view)) => {
                        shared.tenants.replace(*id, view);
                        true
                    }
                    Ok(None) => {
                        shared.tenants.remove(id);
                        true
                    }
                    Err(_) => false,
                },
            };
            (target, version, ok)
        })
        .buffer_unordered(REFETCH_CONCURRENCY)
        .collect()
        .await;
    for (target, version, ok) in results {
        if !ok {
            let v = state.retry.entry(target).or_insert(version);
            *v = (*v).max(version);
        }
    }
}

/// The id of the first entry of an `XRANGE`/`XREVRANGE … COUNT 1` reply.
fn first_id(reply: Value) -> Result<Option<StreamId>, String> {
    let entries = parse_entries(reply).map_err(|e| e.to_string())?;
    match entries.first() {
        None => Ok(None),
        Some(e) => e
            .stream_id()
            .map(Some)
            .ok_or_else(|| "malformed change log entry id".to_string()),
    }
}
