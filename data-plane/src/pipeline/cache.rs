//! Stage 4, cache: answer a repeated request from a response cache.
//!
//! Pass-through for now: every lookup is a miss. A cache fails open (an unreachable cache is a
//! miss, never an error) and sits after limits and budget, so cached answers still count
//! against them.

use crate::pipeline::{AuthContext, Intent};
use crate::state::AppState;

/// A cached answer. Uninhabited until the cache exists, so the pipeline's handling of a hit
/// compiles to nothing; the caching issue gives it the stored answer.
pub enum Hit {}

/// A cached answer for the request, if any. Always `None` for now.
pub async fn lookup(_state: &AppState, _auth: &AuthContext, _intent: &Intent<'_>) -> Option<Hit> {
    // No cache is configured for anyone yet: every request bypasses it.
    metrics::counter!("switchyard_cache_lookups_total", "result" => "bypass").increment(1);
    None
}
