//! The in-process variant: the [`MemoryBus`] already holds every record in memory, so lookups go
//! to it directly and only tenant views (which cost a decryption per provider) are cached, keyed
//! by version so a cached view can never be older than the bus.

use std::sync::Arc;

use shared::bus::MemoryBus;
use shared::config::{ChangeKind, ConfigChange};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::cache::Cached;
use super::{Shared, TenantView};

/// Returns the view of the bus's current version of the tenant, building it if needed.
pub(super) fn tenant(shared: &Shared, bus: &MemoryBus, tenant_id: Uuid) -> Option<Arc<TenantView>> {
    let config = bus.get_tenant(tenant_id)?;
    if let Cached::Hit(view) = shared.tenants.get(&tenant_id)
        && view.version() == config.version
    {
        return Some(view);
    }
    let view = Arc::new(shared.build_view(&config));
    shared.tenants.replace(tenant_id, Arc::clone(&view));
    Some(view)
}

/// Frees views of tenants that changed; on lag, frees everything (views are rebuilt on demand).
pub(super) async fn run(shared: Arc<Shared>, mut changes: broadcast::Receiver<ConfigChange>) {
    loop {
        let change = changes.recv().await;
        if change.is_ok() {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            shared.mark_synced(u64::try_from(now).unwrap_or(0));
        }
        match change {
            Ok(ConfigChange {
                kind: ChangeKind::Tenant,
                id,
                version,
                ..
            }) => {
                if let Ok(tenant_id) = id.parse::<Uuid>()
                    && shared
                        .tenants
                        .invalidate(&tenant_id)
                        .is_some_and(|v| v < version)
                {
                    shared.tenants.remove(&tenant_id);
                }
            }
            Ok(ConfigChange {
                kind: ChangeKind::All,
                ..
            }) => shared.clear_all(),
            Ok(ConfigChange {
                kind: ChangeKind::Key,
                ..
            }) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(
                    missed,
                    "config announcements lagged; dropping cached tenant views"
                );
                shared.clear_all();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
