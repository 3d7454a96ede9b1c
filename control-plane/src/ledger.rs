//! The control plane's read side of the budget ledger: what every data-plane node has spent and
//! holds against one budget window, and the reconciliation that raises the recorded spend to
//! what stored usage proves.
//!
//! The ledger itself is the data plane's ([`data_plane::governance::ledger`]): Redis in
//! distributed mode (a read reaps expired leases first, so `reserved` never counts a dead node's
//! holds), the embedded data plane's in-memory ledger in zero-setup mode (the same `Arc`, so the
//! numbers are the gateway's own).

use data_plane::governance::ledger::WindowKey;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Spent and held (reserved) µ$ of one budget window, as every node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowUsage {
    pub spent_micros: i64,
    pub reserved_micros: i64,
}

/// Spent and reserved µ$ of `budget_id`'s window `window_id` (its start, Unix seconds).
pub async fn window_usage(
    state: &AppState,
    tenant_id: Uuid,
    budget_id: Uuid,
    window_id: i64,
) -> Result<WindowUsage, ApiError> {
    let usage = state
        .ledger
        .window_usage(WindowKey {
            tenant_id,
            budget_id,
            window_id,
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "reading the budget ledger");
            ApiError::Unavailable("the budget ledger is unavailable")
        })?;
    Ok(WindowUsage {
        spent_micros: usage.spent_micros,
        reserved_micros: usage.held_micros.max(0),
    })
}

/// Raises the window's recorded spend to at least `floor_micros` (reconciliation from stored
/// usage); never lowers it.
pub async fn raise_spent(
    state: &AppState,
    tenant_id: Uuid,
    budget_id: Uuid,
    window_id: i64,
    floor_micros: i64,
) -> Result<(), ApiError> {
    state
        .ledger
        .raise_spent(
            WindowKey {
                tenant_id,
                budget_id,
                window_id,
            },
            floor_micros,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "raising the budget ledger's spend");
            ApiError::Unavailable("the budget ledger is unavailable")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use data_plane::governance::ledger::Ledger;

    use super::*;

    #[tokio::test]
    async fn the_ledger_reads_and_raises() {
        let ledger = Ledger::memory();
        let w = WindowKey {
            tenant_id: Uuid::new_v4(),
            budget_id: Uuid::new_v4(),
            window_id: 0,
        };
        ledger.raise_spent(w, 70).await.unwrap();
        ledger.raise_spent(w, 20).await.unwrap();
        let u = ledger.window_usage(w).await.unwrap();
        assert_eq!((u.spent_micros, u.held_micros), (70, 0));
    }
}
