//! Admission control: how many requests a node serves at once, in total, per organization and
//! per provider, so one tenant cannot take a node down or starve the others.
//!
//! Nothing here queues. A request over a cap is answered at once: 503 `overloaded` when the
//! node is full, 429 `concurrency_limit_exceeded` when its organization holds its share, 503
//! `provider_overloaded` when the provider credential holds its share; all with
//! `Retry-After: 1`. An unbounded queue would turn a flood into latency for everyone; a fast
//! refusal keeps the other tenants' requests flowing, and SDKs retry 429/503 with backoff.
//!
//! The counts are per node, like the load balancer's spread: with N nodes an organization can
//! hold N × its cap. Rate limits across nodes (RPM/TPM) are the `limit` stage's job.
//!
//! A slot is held by the request *task* (see `pipeline`), not the handler, so a stream keeps
//! its slot until it ends, and a client that disconnects frees it only when metering is done.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::error::GatewayError;
use crate::state::InFlightGuard;

/// Concurrency counters keyed by `K` (organization or provider id), each capped at `cap`.
/// One short critical section per acquire and release, never held across an await.
pub(crate) struct Slots<K> {
    cap: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// One held slot; released on drop.
pub(crate) struct Slot<K: Hash + Eq + Copy> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Slots<K> {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        // A poisoned map only means a panic elsewhere mid-update of a plain counter map.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `key`, or `None` when `key` holds `cap` already.
    pub(crate) fn try_acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Slots held by `key` now.
    #[cfg(test)]
    pub(crate) fn held(&self, key: &K) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            // Keys with nothing in flight are removed, so the map stays as small as the set of
            // organizations (providers) active right now.
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The node-wide counter.
pub(crate) struct NodeSlots {
    cap: usize,
    held: AtomicUsize,
}

/// One held node slot; released on drop.
pub(crate) struct NodeSlot {
    node: Arc<NodeSlots>,
}

impl NodeSlots {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            held: AtomicUsize::new(0),
        })
    }

    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<NodeSlot> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.cap).then_some(held + 1)
            })
            .ok()
            .map(|_| NodeSlot {
                node: Arc::clone(self),
            })
    }
}

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.node.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything a request task holds for its whole life: its place in the shutdown drain, its
/// node and organization slots, and (once routed) its provider slot.
pub struct Admission {
    pub(crate) _in_flight: InFlightGuard,
    pub(crate) _node: NodeSlot,
    pub(crate) _org: Slot<Uuid>,
    pub(crate) provider: Option<Slot<Uuid>>,
}

/// The per-node caps and counters, shared by every request.
pub(crate) struct Limits {
    pub(crate) node: Arc<NodeSlots>,
    pub(crate) orgs: Arc<Slots<Uuid>>,
    pub(crate) providers: Arc<Slots<Uuid>>,
}

impl Limits {
    pub(crate) fn new(node: usize, per_org: usize, per_provider: usize) -> Self {
        Self {
            node: NodeSlots::new(node),
            orgs: Slots::new(per_org),
            providers: Slots::new(per_provider),
        }
    }

    /// Admits a request of `tenant`, or refuses it at once.
    pub(crate) fn admit(
        &self,
        tenant: Uuid,
        in_flight: InFlightGuard,
    ) -> Result<Admission, GatewayError> {
        // The organization's share first: a flooding organization is told it is the one over
        // its share (429) rather than that the node is full (503).
        let org = self.orgs.try_acquire(tenant).ok_or_else(|| {
            refused("organization");
            GatewayError::TooManyConcurrent {
                limit: self.orgs.cap(),
            }
        })?;
        let node = self.node.try_acquire().ok_or_else(|| {
            refused("node");
            GatewayError::Overloaded
        })?;
        Ok(Admission {
            _in_flight: in_flight,
            _node: node,
            _org: org,
            provider: None,
        })
    }
}

impl Limits {
    /// A slot on `provider` (a credential id), or the fast refusal when it is at its cap.
    pub(crate) fn provider_slot(&self, provider: Uuid) -> Result<Slot<Uuid>, GatewayError> {
        self.providers.try_acquire(provider).ok_or_else(|| {
            refused("provider");
            GatewayError::ProviderBusy {
                limit: self.providers.cap(),
            }
        })
    }
}

/// Counts a refusal by a concurrency cap of `scope`.
fn refused(scope: &'static str) {
    metrics::counter!("switchyard_concurrency_refusals_total", "scope" => scope).increment(1);
}

impl Admission {
    /// Keeps the slot of the provider that served for the rest of the request (a stream holds
    /// it until it ends), releasing any other.
    pub(crate) fn hold_provider(&mut self, slot: Slot<Uuid>) {
        self.provider = Some(slot);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keyed_slots_cap_each_key_and_free_on_drop() {
        let slots = Slots::new(2);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let a1 = slots.try_acquire(a).expect("first");
        let a2 = slots.try_acquire(a).expect("second");
        assert!(slots.try_acquire(a).is_none(), "third over the cap");
        let b1 = slots.try_acquire(b).expect("another key has its own share");
        assert_eq!(slots.held(&a), 2);
        drop(a1);
        assert_eq!(slots.held(&a), 1);
        let _a3 = slots.try_acquire(a).expect("freed slot is reusable");
        drop((a2, b1));
        assert_eq!(slots.held(&b), 0);
        assert!(!slots.lock().contains_key(&b), "idle keys are removed");
    }

    #[test]
    fn node_slots_cap_the_total() {
        let node = NodeSlots::new(1);
        let first = node.try_acquire().expect("first");
        assert!(node.try_acquire().is_none());
        drop(first);
        assert!(node.try_acquire().is_some());
    }
}
