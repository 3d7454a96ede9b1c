//! Process lifecycle: the probes' rules and the graceful stop, shared by the standalone data plane
//! and the control plane (which runs the same stop for its own routes and, in zero-setup mode,
//! for the gateway it embeds).
//!
//! # Probes
//!
//! - `/healthz` (liveness) answers 200 as long as the process serves HTTP. It never looks at
//!   Redis or the database: an orchestrator restarts a process whose liveness fails, and a
//!   restart cannot fix Redis; it would only turn a Redis blip into a restart of every node, and
//!   drop the cached config they keep serving from.
//! - `/readyz` (readiness) answers 200 when the process can do its job: the data plane once its
//!   config store has subscribed to Redis and caught up with the change log (it has config), and
//!   through later Redis outages (it keeps serving its cache); the control plane when its database
//!   answers (migrations ran before the port was bound). Both answer 503
//!   `{"status":"shutting_down"}` from the moment a stop begins.
//!
//! # The stop (SIGTERM or Ctrl-C), [`stop_serving`]
//!
//! 1. **Delay** (`SWITCHYARD_SHUTDOWN_DELAY_SECONDS`, default 0). `/readyz` turns 503 at once,
//!    while the node keeps serving and accepting. A load balancer (or Kubernetes' endpoint
//!    controller, which learns of the termination at the same time as the pod, not before) keeps
//!    sending new connections for a few seconds; a node that closed its port at once would refuse
//!    them. Set it a little above the load balancer's probe period times its failure threshold.
//! 2. **Grace** (`SWITCHYARD_SHUTDOWN_GRACE_SECONDS`, default 30). The listener closes (new
//!    connections are refused), idle keep-alive connections are closed, and open requests and
//!    streams run on, up to the grace period. A request counts as finished once its request
//!    task (which meters it) has ended, not merely its connection: a non-streaming call whose
//!    client left still waits for its provider.
//! 3. **Cut.** What still runs when the grace period ends is cut by its own request task (see
//!    [`Lifecycle::cut_requests`]), so it is still metered: a stream gets a final error event
//!    with code `shutting_down` and ends without `[DONE]` (the SDKs raise on it, so the client
//!    never mistakes it for a complete answer); a request still waiting for its provider gets 503
//!    `shutting_down` with `Retry-After`. Usage events say `truncated` / `error` with error code
//!    `shutting_down`. They get up to half of the drain period to end.
//! 4. **Drain** (`SWITCHYARD_SHUTDOWN_DRAIN_SECONDS`, default 10), measured from the end of the
//!    grace period: the caller returns budget leases, flushes usage events (to Redis, then the
//!    spool; in zero-setup mode to the ingest, which stores its last batch) and stops its workers
//!    by the deadline [`stop_serving`] returns.
//!
//! The stop takes at most delay + grace + drain seconds.
//!
//! Cancelling the server task is not how requests end: axum serves each connection in its own
//! task, and each request's pipeline runs in another (`http::answer_from_task`), so aborting the
//! server stops neither. That is why no usage event was ever lost by aborting it, and also why it
//! did not stop anything: a stream still open after the grace period ran on until the process
//! exited, and its event was lost with it. The cut above ends such requests inside their task.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ShutdownSettings;
use crate::state::AppState;

/// Where a process is in its life: serving, stopping, cutting. Cheap to clone (one `Arc`); the
/// zero-setup control plane shares the embedded gateway's, so one stop covers both.
#[derive(Clone, Default)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    /// A stop has begun: `/readyz` answers 503.
    stopping: AtomicBool,
    /// The grace period is over: request tasks still running end now (see the module docs).
    cut: watch::Sender<bool>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            stopping: AtomicBool::new(false),
            cut: watch::Sender::new(false),
        }
    }
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("stopping", &self.is_shutting_down())
            .field("cut", &*self.inner.cut.borrow())
            .finish()
    }
}

impl Lifecycle {
    /// Marks the process as stopping: `/readyz` answers 503 `shutting_down` from now on.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// Whether a stop has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Ends every request still running, through its own task (see the module docs), so each is
    /// still metered. Requests that start after this are cut as soon as they reach a provider.
    pub fn cut_requests(&self) {
        self.begin_shutdown();
        self.inner.cut.send_replace(true);
    }

    /// Resolves once [`Lifecycle::cut_requests`] was called (at once if it already was). A
    /// request task selects on it while it waits for its provider and while it pumps a stream.
    pub fn cut(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.cut.subscribe();
        async move {
            // The sender lives as long as this lifecycle; if it is gone, nobody can cut.
            if rx.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The body of `/readyz` while stopping.
pub const SHUTTING_DOWN: &str = "shutting_down";

/// Resolves on SIGTERM (how orchestrators stop containers) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Phases 1 to 3 of the stop (see the module docs): marks `lifecycle` as stopping, keeps serving
/// for the delay, tells the server to stop accepting (`stop_accepting` is the signal its graceful
/// shutdown waits for), waits for its connections and, with a `gateway`, for its request tasks,
/// up to the grace period, then cuts what is left and waits for that up to half the drain
/// period. Returns the end of the drain period: the deadline for flushing usage and stopping
/// workers.
pub async fn stop_serving(
    lifecycle: &Lifecycle,
    stop_accepting: &watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    gateway: Option<&AppState>,
    timing: &ShutdownSettings,
) -> Instant {
    let mut server = ServerTask(Some(server));
    lifecycle.begin_shutdown();
    if !timing.delay().is_zero() {
        tracing::info!(
            delay_seconds = timing.shutdown_delay_seconds,
            "shutting down: /readyz answers 503, still serving until the delay ends"
        );
        tokio::time::sleep(timing.delay()).await;
    }
    tracing::info!("shutting down: no longer accepting connections; finishing open requests");
    let _ = stop_accepting.send(true);

    let grace_end = Instant::now() + timing.grace();
    let finished = tokio::time::timeout_at(grace_end, async {
        server.finished().await;
        if let Some(gateway) = gateway {
            gateway.drain(remaining(grace_end)).await;
        }
    })
    .await
    .is_ok()
        && gateway.is_none_or(|g| g.in_flight() == 0);

    let drain_start = Instant::now();
    let drain_end = drain_start + timing.drain();
    if !finished {
        tracing::warn!(
            running = gateway.map_or(0, AppState::in_flight),
            grace_seconds = timing.shutdown_grace_seconds,
            "open requests did not finish within the grace period; cutting them"
        );
        lifecycle.cut_requests();
        let cut_end = drain_start + timing.drain() / 2;
        let ended = tokio::time::timeout_at(cut_end, async {
            if let Some(gateway) = gateway {
                gateway.drain(remaining(cut_end)).await;
            }
            server.finished().await;
        })
        .await
        .is_ok();
        let running = gateway.map_or(0, AppState::in_flight);
        if running > 0 {
            tracing::error!(
                running,
                "request tasks still running after the cut; their usage events are lost"
            );
        } else if !ended {
            // Clients that do not read what is left of their answer; the process exit (or the
            // runtime's) closes their connections.
            tracing::warn!("connections still open after the cut; leaving them to the exit");
        }
        server.abort();
    }
    drain_end
}

/// Time left until `deadline` (zero once it passed).
pub fn remaining(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The server task, awaited to completion at most once (a `JoinHandle` must not be polled
/// again after it finished).
struct ServerTask(Option<JoinHandle<std::io::Result<()>>>);

impl ServerTask {
    /// Waits for the server to end (all its connections closed) and logs how it ended. Cancel
    /// safe: dropped early, the handle stays for the next call.
    async fn finished(&mut self) {
        let Some(handle) = self.0.as_mut() else {
            return;
        };
        let result = handle.await;
        self.0 = None;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "the HTTP server task failed"),
        }
    }

    /// Stops the accept loop if it still runs (connections run in their own tasks and are not
    /// affected).
    fn abort(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cut_resolves_for_waiters_before_and_after_it_happens() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_shutting_down());
        let before = tokio::spawn(lifecycle.cut());
        tokio::task::yield_now().await;
        assert!(!before.is_finished());
        lifecycle.cut_requests();
        assert!(lifecycle.is_shutting_down());
        assert!(before.await.is_ok());
        // A request that starts after the cut is cut at once.
        lifecycle.cut().await;
    }
}
