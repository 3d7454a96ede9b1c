//! Stage 2, limit: per-key and per-tenant rate limits (requests and tokens per minute).
//!
//! Pass-through for now. When limits arrive they are checked here, after authentication (so a
//! limit is always attributed to a key) and before any upstream work, failing closed: a limit
//! that cannot be checked (Redis down) refuses the request with 503 rather than letting it
//! through unmetered. A refusal is a `GatewayError` carrying `Retry-After`.

use crate::error::GatewayError;
use crate::pipeline::{AuthContext, Intent};
use crate::state::AppState;

/// Admits or refuses the request. Always admits for now.
pub async fn check(
    _state: &AppState,
    _auth: &AuthContext,
    _intent: &Intent<'_>,
) -> Result<(), GatewayError> {
    Ok(())
}
