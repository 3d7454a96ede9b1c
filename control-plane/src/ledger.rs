//! STUB — replaced by branch gov-a
//!
//! The control plane's read side of the budget ledger (spent and reserved µ$ per budget
//! window, as every data-plane node sees them). This stub answers zeros so the budgets API and
//! the alert worker build and run on their own; the real implementation reads the shared
//! ledger (Redis, or the in-memory ledger in zero-setup mode).

use uuid::Uuid;

/// Spent and held (reserved) µ$ of one budget window, as every node sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowUsage {
    pub spent_micros: i64,
    pub reserved_micros: i64,
}

/// The ledger's view of `budget_id`'s window `window_id` (its start in Unix seconds).
pub async fn window_usage(
    _state: &crate::state::AppState,
    _tenant_id: Uuid,
    _budget_id: Uuid,
    _window_id: i64,
) -> Result<WindowUsage, crate::error::ApiError> {
    Ok(WindowUsage::default())
}

/// Raises the window's recorded spend to at least `floor_micros` (reconciliation from stored
/// usage); never lowers it.
pub async fn raise_spent(
    _state: &crate::state::AppState,
    _tenant_id: Uuid,
    _budget_id: Uuid,
    _window_id: i64,
    _floor_micros: i64,
) -> Result<(), crate::error::ApiError> {
    Ok(())
}
