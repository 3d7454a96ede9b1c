//! Stage reserve budget (after route: it needs the plan's prices): reserve the request's estimated cost against the key's, team's and
//! tenant's budgets before the provider is called.
//!
//! Pass-through for now. The design (ARCHITECTURE.md, "reserve, then reconcile"): an atomic
//! reservation of the estimated cost (a Redis Lua script, so concurrent requests cannot all pass
//! a check-then-spend), failing closed, then the meter stage settles the reservation with the
//! actual cost. Being a mandatory stage rather than an `if` in a handler means no early return
//! can skip it.

use crate::error::GatewayError;
use crate::pipeline::route::Plan;
use crate::pipeline::{AuthContext, Intent};
use crate::state::AppState;

/// Money held against the applicable budgets for one request, until the meter settles it.
/// Empty for now; the governance issue gives it the reserved amount and the budgets it holds.
#[derive(Debug, Default)]
#[must_use = "a reservation must reach the meter, which settles or releases it"]
pub struct Reservation {
    _private: (),
}

impl Reservation {
    /// Settles the reservation with the request's actual cost (0 for a request that failed),
    /// releasing the rest. Called once, by the meter, when the usage event is built.
    pub fn settle(self, _actual_cost_micros: i64) {}
}

/// Reserves the request's worst-case cost for `plan` against every applicable budget.
/// Always succeeds (with an empty reservation) for now.
pub async fn reserve(
    _state: &AppState,
    _auth: &AuthContext,
    _intent: &Intent<'_>,
    _plan: &Plan,
) -> Result<Reservation, GatewayError> {
    Ok(Reservation::default())
}
