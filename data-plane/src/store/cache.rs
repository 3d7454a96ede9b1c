//! The in-memory tables behind [`super::ConfigStore`]: positive entries, a bounded negative
//! cache, and an epoch that makes "fetched before an invalidation, stored after it" impossible.
//!
//! Locks are `std` locks, never held across an `.await`: every method here is synchronous.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};

use super::StoreError;

/// Records carry a version; a cache never replaces a record with an older one.
pub(crate) trait Versioned {
    fn version(&self) -> i64;
}

/// The outcome of a fetch, shared by every caller waiting on the same miss.
pub(crate) type FetchResult<V> = Result<Option<Arc<V>>, StoreError>;
pub(crate) type SharedFetch<V> = Shared<BoxFuture<'static, FetchResult<V>>>;

/// What a cache lookup found.
pub(crate) enum Cached<V> {
    /// A record.
    Hit(Arc<V>),
    /// A recent "no such record".
    Absent,
    /// Nothing known: ask the backing store.
    Miss,
}

/// Negative entries with a fixed time-to-live and a hard cap.
///
/// Because every entry gets the same TTL, insertion order is expiry order, so a FIFO queue finds
/// expired entries in O(1) and the oldest one to evict when full. Each insertion gets a unique
/// sequence number; `order` may hold stale tuples (for entries removed or re-inserted since),
/// recognised by a sequence number that no longer matches, skipped when popped, and compacted
/// away if the queue ever grows past twice the cap.
pub(crate) struct NegativeCache<K> {
    entries: HashMap<K, (Instant, u64)>,
    order: VecDeque<(K, u64)>,
    next_seq: u64,
    cap: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone> NegativeCache<K> {
    pub(crate) fn new(cap: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            cap: cap.max(1),
            ttl,
        }
    }

    pub(crate) fn contains_fresh<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .get(key)
            .is_some_and(|(expires, _)| *expires > now)
    }

    pub(crate) fn insert(&mut self, key: K, now: Instant) {
        // Drop expired (and stale) entries from the front.
        while let Some((k, seq)) = self.order.front() {
            match self.entries.get(k) {
                Some((expires, s)) if s == seq => {
                    if *expires > now {
                        break;
                    }
                    self.entries.remove(k);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        // Full: evict the oldest live entry.
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            while let Some((k, seq)) = self.order.pop_front() {
                if self.entries.get(&k).is_some_and(|(_, s)| *s == seq) {
                    self.entries.remove(&k);
                    break;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.entries.insert(key.clone(), (now + self.ttl, seq));
        self.order.push_back((key, seq));
        if self.order.len() > self.cap.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(k, seq)| entries.get(k).is_some_and(|(_, s)| s == seq));
        }
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

pub(crate) struct Table<K, V> {
    positive: HashMap<K, Arc<V>>,
    negative: NegativeCache<K>,
    /// Bumped (under the write lock) by every invalidation. A fetch remembers the epoch it
    /// started in and stores its result only if the epoch is unchanged, so an answer read from
    /// Redis before a change was announced can never be cached after the announcement was handled.
    epoch: u64,
}

/// One kind of record (keys or tenants): the table plus the in-flight fetches.
pub(crate) struct Cache<K, V> {
    table: RwLock<Table<K, V>>,
    /// Single-flight: concurrent misses for the same id share one fetch.
    pub(crate) inflight: Mutex<HashMap<K, SharedFetch<V>>>,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone,
    V: Versioned,
{
    pub(crate) fn new(negative_cap: usize, negative_ttl: Duration) -> Self {
        Self {
            table: RwLock::new(Table {
                positive: HashMap::new(),
                negative: NegativeCache::new(negative_cap, negative_ttl),
                epoch: 0,
            }),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table<K, V>> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // (each operation is a single insert/remove), so a poisoned lock is still usable.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table<K, V>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The request-path lookup: one read lock, no allocation.
    pub(crate) fn get<Q>(&self, key: &Q) -> Cached<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.read();
        if let Some(v) = t.positive.get(key) {
            return Cached::Hit(Arc::clone(v));
        }
        if t.negative.contains_fresh(key, Instant::now()) {
            return Cached::Absent;
        }
        Cached::Miss
    }

    /// The current epoch; read before starting a fetch.
    pub(crate) fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Stores a fetch result unless an invalidation happened since `epoch`.
    pub(crate) fn store_fetched(&self, key: K, epoch: u64, result: Option<&Arc<V>>) {
        let mut t = self.write();
        if t.epoch != epoch {
            return;
        }
        match result {
            Some(v) => {
                t.negative.remove(&key);
                insert_if_newer(&mut t.positive, key, Arc::clone(v));
            }
            None => {
                if !t.positive.contains_key(&key) {
                    t.negative.insert(key, Instant::now());
                }
            }
        }
    }

    /// Called for every announced change: bumps the epoch, forgets a negative entry and returns
    /// the version of the cached record, if any (the caller decides whether to refetch).
    pub(crate) fn invalidate<Q>(&self, key: &Q) -> Option<i64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut t = self.write();
        t.epoch = t.epoch.wrapping_add(1);
        t.negative.remove(key);
        t.positive.get(key).map(|v| v.version())
    }

    /// Replaces the cached record after a refetch (only if newer).
    pub(crate) fn replace(&self, key: K, value: Arc<V>) {
        let mut t = self.write();
        t.negative.remove(&key);
        insert_if_newer(&mut t.positive, key, value);
    }

    /// Drops one record (it no longer exists in the backing store).
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut t = self.write();
        t.epoch = t.epoch.wrapping_add(1);
        t.positive.remove(key);
    }

    /// Drops everything (positive and negative) and bumps the epoch.
    pub(crate) fn clear(&self) {
        let mut t = self.write();
        t.epoch = t.epoch.wrapping_add(1);
        t.positive.clear();
        t.negative.clear();
    }

    /// (positive, negative) entry counts, for tests and metrics.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let t = self.read();
        (t.positive.len(), t.negative.len())
    }
}

fn insert_if_newer<K: Hash + Eq, V: Versioned>(
    map: &mut HashMap<K, Arc<V>>,
    key: K,
    value: Arc<V>,
) {
    match map.get(&key) {
        Some(old) if old.version() >= value.version() => {}
        _ => {
            map.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    struct V(i64);
    impl Versioned for V {
        fn version(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn negative_cache_is_bounded_and_expires() {
        let ttl = Duration::from_secs(30);
        let mut n = NegativeCache::new(3, ttl);
        let t0 = Instant::now();
        for i in 0..10 {
            n.insert(i, t0);
            assert!(n.len() <= 3);
        }
        assert!(n.contains_fresh(&9, t0));
        assert!(!n.contains_fresh(&0, t0), "oldest entries were evicted");
        assert!(!n.contains_fresh(&9, t0 + ttl), "entries expire");
        n.insert(42, t0 + ttl);
        assert_eq!(n.len(), 1, "expired entries are purged on insert");
        for _ in 0..100 {
            n.insert(1, t0 + ttl);
            n.remove(&1);
        }
        assert!(n.order.len() <= 6, "the order queue stays bounded");
    }

    #[test]
    fn stale_fetches_are_not_stored_after_an_invalidation() {
        let c: Cache<String, V> = Cache::new(10, Duration::from_secs(30));
        let e = c.epoch();
        c.invalidate("a");
        c.store_fetched("a".into(), e, None);
        assert!(matches!(c.get("a"), Cached::Miss));
        let e = c.epoch();
        c.store_fetched("a".into(), e, None);
        assert!(matches!(c.get("a"), Cached::Absent));
        c.store_fetched("a".into(), e, Some(&Arc::new(V(2))));
        c.replace("a".into(), Arc::new(V(1)));
        assert!(
            matches!(c.get("a"), Cached::Hit(v) if v.0 == 2),
            "older versions never replace newer ones"
        );
        assert_eq!(c.invalidate("a"), Some(2));
    }
}
