//! `ConfigStore`: this node's cache of the records the control plane publishes.
//!
//! # What is cached
//!
//! - `Arc<KeyRecord>` by key hash (from `{prefix}key:{hash}`, a JSON string);
//! - `Arc<TenantView>` by tenant id (from `{prefix}tenant:{id}`, a JSON string), built once per
//!   version: deployments indexed by name, provider secrets opened with the master key (see
//!   [`TenantView`]), so the request path does no crypto.
//!
//! Records are loaded lazily: a lookup that finds nothing `GET`s the record from Redis, parses it
//! and caches it. A cached lookup is one `std::sync::RwLock` read and an `Arc` clone: no network,
//! no allocation. Concurrent misses for the same id share one fetch (single-flight), which runs in
//! its own task so a cancelled request never strands the others.
//!
//! # Negative entries (the trade-off)
//!
//! "No such record" is cached for [`StoreOptions::negative_ttl`] (30 s) so a client hammering
//! with a wrong or revoked-and-deleted key costs one `GET` per 30 s, not one per request. A newly
//! created key is still usable at once: its publication is announced, and an announcement drops
//! the negative entry on every node. Negative entries are capped
//! ([`StoreOptions::negative_key_capacity`], FIFO eviction), so a spray of random keys cannot grow
//! memory without bound. Such a spray does cost one `GET` per distinct key (a negative cache
//! cannot know a key it has never seen): that load is bounded by the Redis pool size, and the
//! defence against it is rate limiting in front of authentication, not this cache. Positive
//! entries are not capped: they are bounded by the number of real keys and tenants this node
//! serves.
//!
//! # Staying fresh (Redis)
//!
//! The protocol on the publishing side is described in `control_plane::publish`: each accepted
//! record write appends a [`ConfigChange`](shared::config::ConfigChange) to the `{prefix}changes`
//! stream (trimmed to ~100k entries) and publishes it, with `seq` = its entry id, on
//! `{prefix}config`. A background task per store (see `sync.rs`):
//!
//! 1. opens a dedicated pub/sub connection (`redis::Client::get_async_pubsub`) and `SUBSCRIBE`s to
//!    `{prefix}config`;
//! 2. **catches up**: reads the change log's oldest and newest entry ids, then
//!    - on the very first session: drops whatever was cached before it was subscribed and starts
//!      from the newest entry id;
//!    - if the log is missing or empty although entries were seen before (Redis was flushed), or
//!      its newest entry is older than the last one seen (Redis restored from an older snapshot),
//!      or its oldest entry is newer than the last one seen (trimmed past it): drops the whole
//!      cache, since changes may have been lost, and starts from the newest entry;
//!    - otherwise replays `XRANGE {prefix}changes (last +` in pages, collapses the changes per
//!      record, and for each one forgets the negative entry and refetches the cached record if
//!      its version is older than the announced one;
//! 3. marks the store ready; then treats every announcement as a doorbell: it drains whatever
//!    announcements are queued and runs the catch-up again (one `XRANGE` from the last seen
//!    entry). The change log, not the channel, is the source of truth, so an entry that was
//!    never announced, or announced out of order, cannot be skipped. If the log cannot be read
//!    right then, the announced changes are applied directly;
//! 4. every [`StoreOptions::poll_interval`] (5 s) pings the pub/sub connection (a half-open TCP
//!    connection is noticed) and compares the log's newest entry id (`XREVRANGE … COUNT 1`) with
//!    the last one seen, catching up if they differ — the safety net for lost announcements;
//! 5. when the connection drops, reconnects with exponential backoff (100 ms … 5 s) and goes back
//!    to step 1, catching up from the last entry seen.
//!
//! A refetch that fails keeps the old record and is retried at the next catch-up or poll. While
//! Redis is unreachable every cached record keeps being served (nothing is evicted because of an
//! error); only lookups of records never seen fail, with [`StoreError::Unavailable`], and for one
//! second after such a failure further misses fail at once instead of queueing on a dead Redis.
//! [`ConfigStore::is_ready`] turns true after the first subscription and catch-up and stays true
//! through later outages (the node still serves its cache; taking every node out of a load
//! balancer because Redis blinked would turn a Redis blip into a full outage).
//!
//! Needs Redis 6.2 or newer (exclusive `XRANGE` start ids).
//!
//! # In-process
//!
//! [`ConfigStore::in_memory`] reads the [`MemoryBus`] directly: a key lookup is the bus's own
//! `Arc`, and a tenant view is rebuilt whenever the bus holds a newer version than the cached
//! view, so it can never be stale. The task listening to `MemoryBus::subscribe()` only drops
//! views of changed tenants early (and everything when it lagged), to free memory.

mod cache;
mod connection;
mod memory;
pub mod retry;
pub mod stream;
mod sync;
mod tenant;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use futures::FutureExt;
use shared::bus::MemoryBus;
use shared::config::{KeyRecord, RedisKeys, TenantConfig};
use shared::crypto::MasterKey;
use tokio::sync::watch;
use uuid::Uuid;

use cache::{Cache, Cached, FetchResult, Versioned};
pub use connection::SharedConnection;
pub use stream::redis_pool;
pub use tenant::{ResolvedProvider, TenantView};

/// Why a lookup failed. Messages never contain secrets or key hashes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The record is not cached and the backing store cannot be read (or holds a malformed
    /// record). The data plane answers 503.
    #[error("config store unavailable: {0}")]
    Unavailable(String),
    /// A provider secret exists but does not open with this node's master key. The data plane
    /// answers 502 without details.
    #[error("a provider secret cannot be opened with this node's master key")]
    UndecryptableSecret,
    /// `REDIS_URL` is not a valid Redis URL (the URL itself is not echoed: it may hold a password).
    #[error("invalid Redis URL")]
    InvalidRedisUrl,
}

/// How current a node's config is; see [`ConfigStore::sync_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStatus {
    /// The newest change log entry applied, as its Unix ms (0 before the first).
    pub position_ms: u64,
    /// Time since the config was last confirmed current (since start when it never was).
    pub age: Duration,
}

/// Tuning knobs; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long "no such record" is remembered.
    pub negative_ttl: Duration,
    /// Maximum number of remembered unknown key hashes.
    pub negative_key_capacity: usize,
    /// Maximum number of remembered unknown tenant ids.
    pub negative_tenant_capacity: usize,
    /// How often the subscriber pings its connection and checks the change log's head.
    pub poll_interval: Duration,
    /// Upper bound for one `GET` on a miss (pool checkout included).
    pub fetch_timeout: Duration,
    /// How long [`ConfigStore::redis`] waits for the first subscription before returning anyway
    /// (not ready; the task keeps trying in the background).
    pub startup_wait: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            negative_ttl: Duration::from_secs(30),
            negative_key_capacity: 20_000,
            negative_tenant_capacity: 1_000,
            poll_interval: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(3),
            startup_wait: Duration::from_secs(2),
        }
    }
}

/// How long misses fail fast after the backing store was found unreachable.
const FAIL_FAST_WINDOW: Duration = Duration::from_secs(1);

/// The node's config cache. Cheap to clone; the background task stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct ConfigStore {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.handle.shared;
        f.debug_struct("ConfigStore")
            .field(
                "backend",
                &match s.backend {
                    Backend::Redis { .. } => "redis",
                    Backend::Memory(_) => "memory",
                },
            )
            .field("ready", &s.is_ready())
            .field("cached_keys", &s.keys.sizes())
            .field("cached_tenants", &s.tenants.sizes())
            .finish()
    }
}

pub(crate) enum Backend {
    Redis { pool: Pool, keys: RedisKeys },
    Memory(Arc<MemoryBus>),
}

/// State shared by the handles and the background task.
pub(crate) struct Shared {
    pub(crate) backend: Backend,
    master_key: MasterKey,
    pub(crate) options: StoreOptions,
    pub(crate) keys: Cache<String, KeyRecord>,
    pub(crate) tenants: Cache<Uuid, TenantView>,
    ready: watch::Sender<bool>,
    pub(crate) connected: AtomicBool,
    /// Reference point for `fail_fast_until_ms`.
    started: Instant,
    /// Misses fail at once until this many ms after `started` (0: not failing).
    fail_fast_until_ms: AtomicU64,
    /// The change log position applied last (its entry's Unix ms; 0 before the first sync).
    position_ms: AtomicU64,
    /// When the config was last confirmed current, in ms after `started` (`u64::MAX`: never).
    synced_at_ms: AtomicU64,
}

impl Versioned for KeyRecord {
    fn version(&self) -> i64 {
        self.version
    }
}

impl ConfigStore {
    /// Connects (pool for GETs, plus a dedicated pub/sub connection opened from `redis_url`) and
    /// spawns the subscriber/catch-up task. Waits up to [`StoreOptions::startup_wait`] for the first
    /// subscription; if Redis is not reachable yet it returns anyway (not ready) and keeps trying.
    /// Fails only on an invalid URL.
    pub async fn redis(
        pool: Pool,
        redis_url: &str,
        keys: RedisKeys,
        master_key: MasterKey,
    ) -> Result<Self, StoreError> {
        Self::redis_with_options(pool, redis_url, keys, master_key, StoreOptions::default()).await
    }

    /// [`ConfigStore::redis`] with explicit [`StoreOptions`].
    pub async fn redis_with_options(
        pool: Pool,
        redis_url: &str,
        keys: RedisKeys,
        master_key: MasterKey,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis_url).map_err(|_| StoreError::InvalidRedisUrl)?;
        let startup_wait = options.startup_wait;
        let shared = Arc::new(Shared::new(
            Backend::Redis { pool, keys },
            master_key,
            options,
        ));
        let task = tokio::spawn(sync::run(Arc::clone(&shared), client)).abort_handle();
        let store = Self {
            handle: Arc::new(Handle { shared, task }),
        };
        let mut ready = store.handle.shared.ready.subscribe();
        if tokio::time::timeout(startup_wait, ready.wait_for(|r| *r))
            .await
            .is_err()
        {
            tracing::warn!(
                "config store not subscribed to Redis yet; continuing in the background"
            );
        }
        Ok(store)
    }

    /// Reads the in-process bus. Must be called inside a tokio runtime; spawns the task that
    /// listens to `bus.subscribe()`.
    pub fn in_memory(bus: Arc<MemoryBus>, master_key: MasterKey) -> Self {
        let changes = bus.subscribe();
        let shared = Arc::new(Shared::new(
            Backend::Memory(bus),
            master_key,
            StoreOptions::default(),
        ));
        shared.mark_ready();
        let task = tokio::spawn(memory::run(Arc::clone(&shared), changes)).abort_handle();
        Self {
            handle: Arc::new(Handle { shared, task }),
        }
    }

    /// This cluster's loop-detection tag: derived from the master key, so every node sharing
    /// the key has the same one and nobody without it can predict it.
    pub fn hop_tag(&self) -> [u8; 16] {
        self.handle.shared.master_key.derive_tag("x-switchyard-hop")
    }

    /// The Redis pool and key names in distributed mode (for other per-node state shared through
    /// Redis, such as provider quota counters); `None` in-process.
    pub fn redis_parts(&self) -> Option<(Pool, RedisKeys)> {
        self.handle
            .shared
            .redis()
            .map(|(pool, keys)| (pool.clone(), keys.clone()))
    }

    /// Cached lookup; on a miss, fetches from Redis (or the bus) and caches the answer (negative
    /// answers briefly, cleared by announcements). Err only when the record is not cached AND
    /// the backing store is unreachable.
    pub async fn key(&self, key_hash: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let shared = &self.handle.shared;
        if let Backend::Memory(bus) = &shared.backend {
            return Ok(bus.get_key(key_hash));
        }
        match shared.keys.get(key_hash) {
            Cached::Hit(v) => {
                count_lookup("key", "hit");
                return Ok(Some(v));
            }
            Cached::Absent => {
                count_lookup("key", "negative_hit");
                return Ok(None);
            }
            Cached::Miss => count_lookup("key", "miss"),
        }
        shared.fail_fast()?;
        let fetch = {
            let mut inflight = lock(&shared.keys.inflight);
            match inflight.get(key_hash) {
                Some(f) => f.clone(),
                None => {
                    let id = key_hash.to_owned();
                    let s = Arc::clone(shared);
                    let epoch = shared.keys.epoch();
                    let task = tokio::spawn(async move {
                        let result = s.fetch_key(&id).await;
                        if let Ok(v) = &result {
                            s.keys.store_fetched(id.clone(), epoch, v.as_ref());
                        }
                        lock(&s.keys.inflight).remove(&id);
                        result
                    });
                    let f = task.map(flatten_join).boxed().shared();
                    inflight.insert(key_hash.to_owned(), f.clone());
                    f
                }
            }
        };
        fetch.await
    }

    /// Same as [`ConfigStore::key`] for a tenant's routing view.
    pub async fn tenant(&self, tenant_id: Uuid) -> Result<Option<Arc<TenantView>>, StoreError> {
        let shared = &self.handle.shared;
        if let Backend::Memory(bus) = &shared.backend {
            return Ok(memory::tenant(shared, bus, tenant_id));
        }
        match shared.tenants.get(&tenant_id) {
            Cached::Hit(v) => {
                count_lookup("tenant", "hit");
                return Ok(Some(v));
            }
            Cached::Absent => {
                count_lookup("tenant", "negative_hit");
                return Ok(None);
            }
            Cached::Miss => count_lookup("tenant", "miss"),
        }
        shared.fail_fast()?;
        let fetch = {
            let mut inflight = lock(&shared.tenants.inflight);
            match inflight.get(&tenant_id) {
                Some(f) => f.clone(),
                None => {
                    let s = Arc::clone(shared);
                    let epoch = shared.tenants.epoch();
                    let task = tokio::spawn(async move {
                        let result = s.fetch_tenant(tenant_id).await;
                        if let Ok(v) = &result {
                            s.tenants.store_fetched(tenant_id, epoch, v.as_ref());
                        }
                        lock(&s.tenants.inflight).remove(&tenant_id);
                        result
                    });
                    let f = task.map(flatten_join).boxed().shared();
                    inflight.insert(tenant_id, f.clone());
                    f
                }
            }
        };
        fetch.await
    }

    /// For /readyz: subscribed to the backing store and caught up at least once (stays true
    /// during later outages, while cached records are served).
    pub fn is_ready(&self) -> bool {
        self.handle.shared.is_ready()
    }

    /// Whether the subscription is live right now (false during a Redis outage). Always true
    /// in-process.
    /// How current this node's config is (the `switchyard_config_*` gauges). In-process, the
    /// bus is the config itself: always current, at the time of its last change.
    pub fn sync_status(&self) -> SyncStatus {
        let s = &self.handle.shared;
        match &s.backend {
            Backend::Memory(_) => SyncStatus {
                position_ms: s.position_ms.load(Ordering::Relaxed),
                age: Duration::ZERO,
            },
            Backend::Redis { .. } => {
                let at = s.synced_at_ms.load(Ordering::Relaxed);
                let age = if at == u64::MAX {
                    s.started.elapsed()
                } else {
                    Duration::from_millis(s.now_ms().saturating_sub(at))
                };
                SyncStatus {
                    position_ms: s.position_ms.load(Ordering::Relaxed),
                    age,
                }
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.handle.shared.connected.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn new(backend: Backend, master_key: MasterKey, options: StoreOptions) -> Self {
        let (ready, _) = watch::channel(false);
        Self {
            backend,
            master_key,
            keys: Cache::new(options.negative_key_capacity, options.negative_ttl),
            tenants: Cache::new(options.negative_tenant_capacity, options.negative_ttl),
            options,
            ready,
            connected: AtomicBool::new(false),
            started: Instant::now(),
            fail_fast_until_ms: AtomicU64::new(0),
            position_ms: AtomicU64::new(0),
            synced_at_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// The config is current up to the change log entry of `position_ms` (Unix ms), as of now.
    pub(crate) fn mark_synced(&self, position_ms: u64) {
        self.position_ms.fetch_max(position_ms, Ordering::Relaxed);
        self.synced_at_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub(crate) fn mark_ready(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.ready.send_replace(true);
    }

    pub(crate) fn build_view(&self, config: &TenantConfig) -> TenantView {
        TenantView::build(config, &self.master_key)
    }

    /// Drops every cached record (positive and negative).
    pub(crate) fn clear_all(&self) {
        self.keys.clear();
        self.tenants.clear();
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fail_fast(&self) -> Result<(), StoreError> {
        let until = self.fail_fast_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.now_ms() < until {
            return Err(StoreError::Unavailable("Redis is unreachable".into()));
        }
        Ok(())
    }

    fn redis(&self) -> Option<(&Pool, &RedisKeys)> {
        match &self.backend {
            Backend::Redis { pool, keys } => Some((pool, keys)),
            Backend::Memory(_) => None,
        }
    }

    /// `GET key` with a bounded wait; maintains the fail-fast window.
    async fn get_json(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((pool, _)) = self.redis() else {
            return Ok(None);
        };
        let fut = async {
            let mut conn = pool
                .get()
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut *conn)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        let result = match tokio::time::timeout(self.options.fetch_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        };
        match &result {
            Ok(_) => self.fail_fast_until_ms.store(0, Ordering::Relaxed),
            Err(_) => {
                let until = self
                    .now_ms()
                    .saturating_add(FAIL_FAST_WINDOW.as_millis() as u64)
                    .max(1);
                self.fail_fast_until_ms.store(until, Ordering::Relaxed);
            }
        }
        result
    }

    pub(crate) async fn fetch_key(&self, key_hash: &str) -> FetchResult<KeyRecord> {
        let Some((_, keys)) = self.redis() else {
            return Ok(None);
        };
        let Some(json) = self.get_json(&keys.key(key_hash)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<KeyRecord>(&json) {
            Ok(record) if record.key_hash == key_hash => Ok(Some(Arc::new(record))),
            // Neither the contents nor the hash are logged: both are sensitive.
            Ok(_) | Err(_) => {
                tracing::error!(
                    "a published key record is malformed or stored under the wrong hash"
                );
                Err(StoreError::Unavailable(
                    "a published key record is malformed".into(),
                ))
            }
        }
    }

    pub(crate) async fn fetch_tenant(&self, tenant_id: Uuid) -> FetchResult<TenantView> {
        let Some((_, keys)) = self.redis() else {
            return Ok(None);
        };
        let Some(json) = self.get_json(&keys.tenant(tenant_id)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<TenantConfig>(&json) {
            Ok(config) if config.tenant_id == tenant_id => {
                Ok(Some(Arc::new(self.build_view(&config))))
            }
            Ok(_) | Err(_) => {
                tracing::error!(%tenant_id, "a published tenant record is malformed");
                Err(StoreError::Unavailable(
                    "a published tenant record is malformed".into(),
                ))
            }
        }
    }
}

fn flatten_join<V>(joined: Result<FetchResult<V>, tokio::task::JoinError>) -> FetchResult<V> {
    joined.unwrap_or_else(|_| Err(StoreError::Unavailable("config lookup task failed".into())))
}

fn count_lookup(kind: &'static str, result: &'static str) {
    metrics::counter!("switchyard_config_cache_lookups_total", "kind" => kind, "result" => result)
        .increment(1);
}

/// Locks a std mutex, recovering from poisoning (the protected maps stay consistent: every
/// critical section is a single insert or remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
