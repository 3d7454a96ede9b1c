//! Stage 3, reserve budget: reserve the request's estimated cost against the key's, team's and
//! tenant's budgets before the provider is called.
//!
//! Pass-through for now. The design (ARCHITECTURE.md, "reserve, then reconcile"): an atomic
//! reservation of the estimated cost (a Redis Lua script, so concurrent requests cannot all pass
//! a check-then-spend), failing closed, then the meter stage settles the reservation with the
//! actual cost. Being a mandatory stage rather than an `if` in a handler means no early return
//! can skip it.

use crate::error::GatewayError;
use crate::pipeline::AuthContext;
use crate::wire::ChatRequest;

/// Reserves budget for the request. Always succeeds for now.
pub async fn reserve(_auth: &AuthContext, _request: &ChatRequest) -> Result<(), GatewayError> {
    Ok(())
}
