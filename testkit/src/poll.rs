//! Poll-with-deadline for "eventually visible" assertions (see also
//! [`e2e::poll_until`](crate::e2e::poll_until), which returns the last error instead).

use std::future::Future;
use std::time::Duration;

/// How long [`eventually`] waits between checks.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Calls `check` every [`INTERVAL`] until it returns true; panics naming `what` once `timeout`
/// has passed. The first check happens at once.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}
