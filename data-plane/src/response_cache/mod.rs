//! The response cache: answers stored by organization and canonical request, so a repeated
//! request is answered without calling (and paying) a provider. The pipeline's
//! [`cache`](crate::pipeline::cache) stage decides when to look and what to store; this module
//! is storage, keys and formats.
//!
//! - [`key`]: the canonical form of a request and its SHA-256 digest, salted with the
//!   organization, so equal requests of two organizations never share an entry.
//! - Storage: Redis (`{prefix}{<tenant>}:cache:<digest>`, a string with the TTL as its
//!   expiry) when the node has Redis, else [`MemoryStore`], bounded by bytes
//!   ([`MEMORY_BYTES`]) with the oldest entries evicted first. Entries over
//!   [`MAX_ENTRY_BYTES`] are not stored.
//! - [`semantic`]: the in-process vector index of the semantic cache.
//! - [`assemble`]: a streamed answer put back together as the `chat.completion` it stands for,
//!   which is what is stored whatever the request's `stream`; [`replay`] turns a stored
//!   completion into a stream again.
//!
//! Every operation is bounded by `SWITCHYARD_GOVERNANCE_REDIS_TIMEOUT_MS`, and every failure is
//! a [`CacheError`] the stage turns into a miss: the cache fails open.

pub mod assemble;
pub mod key;
pub mod replay;
pub mod semantic;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_redis::Pool;

use crate::store::SharedConnection;
use shared::config::RedisKeys;
use uuid::Uuid;

pub use key::{CacheKey, Digest};
pub use semantic::SemanticIndex;

/// Largest answer stored, in bytes: bigger ones are served but not cached.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;
/// What the in-process store (no Redis) holds at most, in bytes of stored answers.
pub const MEMORY_BYTES: usize = 64 << 20;

/// Why a cache operation did not happen. Never shown to clients: the stage treats it as a miss
/// (or skips the store) and counts it in `switchyard_cache_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(String),
    #[error("the cache did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Embedding(String),
}

/// Where answers are stored.
pub struct ResponseCache {
    backend: Backend,
    semantic: SemanticIndex,
}

enum Backend {
    Redis {
        conn: SharedConnection,
        keys: RedisKeys,
        wait: Duration,
    },
    Memory(MemoryStore),
}

impl ResponseCache {
    /// Redis when the node has it, else the bounded in-process store. `wait` bounds every Redis
    /// operation.
    pub fn new(redis: Option<(Pool, RedisKeys)>, wait: Duration) -> Self {
        let backend = match redis {
            Some((pool, keys)) => Backend::Redis {
                conn: SharedConnection::new(pool),
                keys,
                wait,
            },
            None => Backend::Memory(MemoryStore::new(MEMORY_BYTES)),
        };
        Self {
            backend,
            semantic: SemanticIndex::default(),
        }
    }

    pub fn semantic(&self) -> &SemanticIndex {
        &self.semantic
    }

    /// The stored answer for `digest` of `tenant`, if any.
    pub async fn get(&self, tenant: Uuid, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        match &self.backend {
            Backend::Memory(store) => Ok(store.get(tenant, digest)),
            Backend::Redis { conn, keys, wait } => {
                let name = keys.response_cache(tenant, &digest.hex());
                bounded(conn, *wait, async {
                    let mut c = conn.get().await.map_err(CacheError::Redis)?;
                    let value: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&name)
                        .query_async(&mut c)
                        .await
                        .map_err(|e| CacheError::Redis(e.to_string()))?;
                    Ok(value.map(Bytes::from))
                })
                .await
            }
        }
    }

    /// Stores `answer` for `digest` of `tenant` for `ttl`. Answers over [`MAX_ENTRY_BYTES`]
    /// are skipped (returns `Ok(false)`).
    pub async fn put(
        &self,
        tenant: Uuid,
        digest: &Digest,
        answer: Bytes,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        if answer.len() > MAX_ENTRY_BYTES || ttl.is_zero() {
            return Ok(false);
        }
        match &self.backend {
            Backend::Memory(store) => {
                store.put(tenant, *digest, answer, ttl);
                Ok(true)
            }
            Backend::Redis { conn, keys, wait } => {
                let name = keys.response_cache(tenant, &digest.hex());
                bounded(conn, *wait, async {
                    let mut c = conn.get().await.map_err(CacheError::Redis)?;
                    let () = redis::cmd("SET")
                        .arg(&name)
                        .arg(answer.as_ref())
                        .arg("EX")
                        .arg(ttl.as_secs().max(1))
                        .query_async(&mut c)
                        .await
                        .map_err(|e| CacheError::Redis(e.to_string()))?;
                    Ok(true)
                })
                .await
            }
        }
    }
}

/// A stored or upstream `chat.completion` with the guardrail placeholders in its messages'
/// text put back; `None` when nothing changed (or the body is not a completion).
pub fn restore_completion(body: &[u8], vault: &shared::guardrails::Vault) -> Option<Bytes> {
    let mut completion: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for choice in completion.get_mut("choices")?.as_array_mut()? {
        if let Some(serde_json::Value::String(text)) = choice.pointer_mut("/message/content")
            && let Some(restored) = vault.restore(text)
        {
            *text = restored;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&completion).ok().map(Bytes::from)
}

/// `op` within `wait`; a failure or a timeout drops the shared connection, so a broken one is
/// replaced by the next operation.
async fn bounded<T>(
    conn: &SharedConnection,
    wait: Duration,
    op: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    // Boxed: a Redis command's future is ~14 KiB, which would otherwise sit inline in every
    // stage that awaits the cache (and be copied with it).
    let result = tokio::time::timeout(wait, Box::pin(op))
        .await
        .map_err(|_| CacheError::Timeout(wait))
        .and_then(|r| r);
    if result.is_err() {
        conn.reset();
    }
    result
}

/// The in-process store of a node without Redis: bounded by the bytes of the answers it holds,
/// oldest first out, expired entries dropped when met. One `std` mutex, never held across an
/// await, guarding a map lookup or insert.
pub struct MemoryStore {
    limit: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: HashMap<(Uuid, Digest), MemoryEntry>,
    /// Insertion order, with each insert's sequence number (a replaced entry's old position
    /// is skipped when it comes up).
    order: VecDeque<((Uuid, Digest), u64)>,
    bytes: usize,
    seq: u64,
}

struct MemoryEntry {
    answer: Bytes,
    expires: Instant,
    seq: u64,
}

impl MemoryStore {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding it leaves a consistent map (every write is one insert/remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, tenant: Uuid, digest: &Digest) -> Option<Bytes> {
        let mut inner = self.lock();
        let key = (tenant, *digest);
        let entry = inner.entries.get(&key)?;
        if entry.expires > Instant::now() {
            return Some(entry.answer.clone());
        }
        if let Some(gone) = inner.entries.remove(&key) {
            inner.bytes -= gone.answer.len();
        }
        None
    }

    pub fn put(&self, tenant: Uuid, digest: Digest, answer: Bytes, ttl: Duration) {
        if answer.len() > self.limit {
            return;
        }
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let len = answer.len();
        let key = (tenant, digest);
        if let Some(old) = inner.entries.insert(
            key,
            MemoryEntry {
                answer,
                expires: Instant::now() + ttl,
                seq,
            },
        ) {
            inner.bytes -= old.answer.len();
        }
        inner.bytes += len;
        inner.order.push_back((key, seq));
        while inner.bytes > self.limit {
            let Some((oldest, oldest_seq)) = inner.order.pop_front() else {
                break;
            };
            if inner
                .entries
                .get(&oldest)
                .is_some_and(|e| e.seq == oldest_seq)
                && let Some(gone) = inner.entries.remove(&oldest)
            {
                inner.bytes -= gone.answer.len();
            }
        }
        // Positions of replaced entries pile up only as fast as entries are written; drop the
        // stale ones at the front so the queue stays proportional to the map.
        while let Some((front, front_seq)) = inner.order.front().copied() {
            if inner
                .entries
                .get(&front)
                .is_some_and(|e| e.seq == front_seq)
            {
                break;
            }
            inner.order.pop_front();
        }
    }

    /// Bytes of answers held (tests).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn digest(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn memory_store_is_bounded_and_evicts_the_oldest() {
        let store = MemoryStore::new(100);
        let t = Uuid::new_v4();
        let hour = Duration::from_secs(3600);
        store.put(t, digest(1), Bytes::from(vec![b'a'; 40]), hour);
        store.put(t, digest(2), Bytes::from(vec![b'b'; 40]), hour);
        store.put(t, digest(3), Bytes::from(vec![b'c'; 40]), hour);
        assert!(store.bytes() <= 100);
        assert_eq!(store.get(t, &digest(1)), None, "the oldest went first");
        assert!(store.get(t, &digest(2)).is_some());
        assert!(store.get(t, &digest(3)).is_some());
        // Another organization never sees the entry.
        assert_eq!(store.get(Uuid::new_v4(), &digest(3)), None);
        // Replacing keeps the byte count right.
        store.put(t, digest(3), Bytes::from(vec![b'd'; 10]), hour);
        assert_eq!(store.get(t, &digest(3)).unwrap().len(), 10);
        assert_eq!(store.bytes(), 50);
    }

    #[test]
    fn memory_entries_expire() {
        let store = MemoryStore::new(100);
        let t = Uuid::new_v4();
        // Expires the moment it is written.
        store.put(t, digest(1), Bytes::from_static(b"x"), Duration::ZERO);
        assert_eq!(store.get(t, &digest(1)), None);
        assert_eq!(store.bytes(), 0);
    }
}
