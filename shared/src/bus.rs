//! The in-process stand-in for Redis, used when the control plane and the data plane run in one
//! process (the zero-setup default).
//!
//! It keeps the same semantics as the Redis scheme in [`crate::config`]: records are accepted only
//! with a higher version, every accepted write is announced as a [`ConfigChange`], and usage
//! events travel over a bounded channel to the control plane's ingest task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::config::{ChangeKind, ConfigChange, KeyRecord, TenantConfig};
use crate::usage::UsageEvent;

/// Capacity of the usage channel; a full channel makes senders wait (backpressure, nothing dropped).
pub const USAGE_CHANNEL_CAPACITY: usize = 10_000;

#[derive(Default)]
struct Records {
    keys: HashMap<String, Arc<KeyRecord>>,
    tenants: HashMap<Uuid, Arc<TenantConfig>>,
}

/// Shared by both planes in one process; clone the `Arc`.
pub struct MemoryBus {
    // A std lock: it is never held across an `.await`.
    records: RwLock<Records>,
    changes: broadcast::Sender<ConfigChange>,
    usage_tx: mpsc::Sender<UsageEvent>,
    usage_rx: Mutex<Option<mpsc::Receiver<UsageEvent>>>,
}

impl MemoryBus {
    pub fn new() -> Arc<Self> {
        let (changes, _) = broadcast::channel(1024);
        let (usage_tx, usage_rx) = mpsc::channel(USAGE_CHANNEL_CAPACITY);
        Arc::new(Self {
            records: RwLock::new(Records::default()),
            changes,
            usage_tx,
            usage_rx: Mutex::new(Some(usage_rx)),
        })
    }

    /// Stores `record` unless a record with an equal or higher version is already there.
    /// Returns whether it was stored (and announced).
    pub fn put_key(&self, record: KeyRecord) -> bool {
        let change = ConfigChange {
            kind: ChangeKind::Key,
            id: record.key_hash.clone(),
            version: record.version,
            seq: String::new(),
        };
        {
            let mut r = self.records.write().unwrap_or_else(|p| p.into_inner());
            if r.keys
                .get(&record.key_hash)
                .is_some_and(|old| old.version >= record.version)
            {
                return false;
            }
            r.keys.insert(record.key_hash.clone(), Arc::new(record));
        }
        let _ = self.changes.send(change);
        true
    }

    /// Stores `config` unless one with an equal or higher version is already there.
    pub fn put_tenant(&self, config: TenantConfig) -> bool {
        let change = ConfigChange {
            kind: ChangeKind::Tenant,
            id: config.tenant_id.to_string(),
            version: config.version,
            seq: String::new(),
        };
        {
            let mut r = self.records.write().unwrap_or_else(|p| p.into_inner());
            if r.tenants
                .get(&config.tenant_id)
                .is_some_and(|old| old.version >= config.version)
            {
                return false;
            }
            r.tenants.insert(config.tenant_id, Arc::new(config));
        }
        let _ = self.changes.send(change);
        true
    }

    pub fn get_key(&self, key_hash: &str) -> Option<Arc<KeyRecord>> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .get(key_hash)
            .cloned()
    }

    pub fn get_tenant(&self, tenant_id: Uuid) -> Option<Arc<TenantConfig>> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tenants
            .get(&tenant_id)
            .cloned()
    }

    /// Announcements of every accepted write, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<ConfigChange> {
        self.changes.subscribe()
    }

    /// Where the data plane sends usage events.
    pub fn usage_sender(&self) -> mpsc::Sender<UsageEvent> {
        self.usage_tx.clone()
    }

    /// The receiving end for the control plane's ingest task; `None` once taken.
    pub fn take_usage_receiver(&self) -> Option<mpsc::Receiver<UsageEvent>> {
        self.usage_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(version: i64) -> TenantConfig {
        TenantConfig {
            tenant_id: Uuid::nil(),
            version,
            routes: Vec::new(),
            allowed_regions: None,
            team_regions: Default::default(),
            budgets: Vec::new(),
            limits: Default::default(),
            team_limits: Default::default(),
            suspension: None,
            store_payloads: false,
            team_cache: Default::default(),
            guardrails: Vec::new(),
            deployments: vec![],
            providers: vec![],
        }
    }

    #[test]
    fn older_versions_never_replace_newer_ones() {
        let bus = MemoryBus::new();
        let mut rx = bus.subscribe();
        assert!(bus.put_tenant(tenant(2)));
        assert!(!bus.put_tenant(tenant(1)));
        assert!(!bus.put_tenant(tenant(2)));
        assert_eq!(bus.get_tenant(Uuid::nil()).map(|t| t.version), Some(2));
        assert_eq!(rx.try_recv().map(|c| c.version).ok(), Some(2));
        assert!(rx.try_recv().is_err(), "refused writes are not announced");
    }
}
