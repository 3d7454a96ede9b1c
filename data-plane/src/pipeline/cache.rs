//! Stage 4, cache: answer a repeated request from a response cache.
//!
//! Pass-through for now: every lookup is a miss. A cache fails open (an unreachable cache is a
//! miss, never an error) and sits after limits and budget, so cached answers still count
//! against them.

use crate::pipeline::AuthContext;
use crate::pipeline::attempt::Attempt;
use crate::wire::ChatRequest;

/// A cached answer for `request`, if any. Always `None` for now.
pub async fn lookup(_auth: &AuthContext, _request: &ChatRequest) -> Option<Attempt> {
    None
}
