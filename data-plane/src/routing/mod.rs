//! Routing logic for one node, with no IO: which deployments are healthy, in which order a
//! route tries its candidates, and which failures move on to the next attempt.
//!
//! # Layout
//!
//! - [`health`]: [`Health`], the node's per-deployment record (EWMA latency and time to first
//!   token, success rate over a sliding window, requests in flight, circuit breaker, 429
//!   cool-down). An attempt takes an [`AttemptGuard`] from [`Health::try_acquire`] and reports
//!   how it ended; the breaker's half-open probe slot is taken atomically there.
//! - [`strategy`]: [`order`] sorts a route's [`Candidate`]s in place by the route's
//!   [`RouteStrategy`](shared::config::RouteStrategy): the first is the choice, the rest the
//!   fallback order, unavailable ones (open breaker, cooling down) last.
//! - [`retry`]: [`classify`] maps a [`GatewayError`](crate::error::GatewayError) to its
//!   [`RetryClass`](shared::config::RetryClass) (or `None`: never retried), and [`Backoff`]
//!   spaces retries of one deployment (exponential, full jitter, within the deadline, honouring
//!   `Retry-After`).
//!
//! # How the attempt stage uses it
//!
//! ```text
//! candidates = route's candidates after region/capability filters, each with health.snapshot(id)
//! order(strategy, &mut candidates, &facts, &mut rand::rng())
//! for each candidate (up to max_attempts, within the total deadline):
//!     guard = health.try_acquire(id)?            // None: breaker open / probe taken / cooling: skip
//!     call the provider
//!     ok  → guard.success(latency, ttft)          // (a stream: guard.first_token(ttft) at its first byte)
//!     err → guard.report_error(&err); class = classify(&err)
//!           class not in retry_on (DEFAULT_RETRY_ON when the route sets none) → return err
//!           same deployment next? backoff.next_delay(retry_after(&err), remaining, rng) or move on
//! ```
//!
//! Nothing here holds a lock across an `.await`: every critical section is a few field updates
//! under a `std::sync::Mutex`, and the request path allocates only when a deployment is seen
//! for the first time.

pub mod health;
pub mod quota;
pub mod retry;
pub mod strategy;

pub use health::{
    AttemptGuard, BreakerState, Clock, DeploymentStats, Health, HealthSettings, ManualClock,
    SystemClock,
};
pub use quota::Quotas;
pub use retry::{Backoff, DEFAULT_RETRY_ON, classify, retry_after, retryable};
pub use strategy::{Candidate, RequestFacts, order};
