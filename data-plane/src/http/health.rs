//! Health and metrics endpoints, outside authentication (they are the explicit allowlist in
//! [`crate::PUBLIC_ROUTES`]).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::routing::BreakerState;
use crate::state::AppState;

/// How often histogram samples are folded into their summaries when nobody scrapes
/// `/metrics`; without it the pending samples would grow without bound.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Liveness: the process answers. Always 200; never depends on Redis (see
/// [`crate::lifecycle`]).
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: 503 `shutting_down` once a stop has begun; otherwise 200 once the config store
/// has subscribed to Redis and caught up (and through later Redis outages), 503 `not_ready`
/// before.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let unavailable = |status: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status })),
        )
            .into_response()
    };
    if state.lifecycle().is_shutting_down() {
        unavailable(crate::lifecycle::SHUTTING_DOWN)
    } else if state.store().is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        unavailable("not_ready")
    }
}

/// Prometheus text exposition of every metric this process records.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match recorder() {
        Some(handle) => {
            // Breaker states are read at scrape time: one gauge per deployment this node has
            // seen recently, 1 for its current state and 0 for the others.
            for (deployment, current) in state.health().states() {
                let deployment = deployment.to_string();
                for s in [
                    BreakerState::Closed,
                    BreakerState::Open,
                    BreakerState::HalfOpen,
                ] {
                    metrics::gauge!(
                        "switchyard_breaker_state",
                        "deployment" => deployment.clone(),
                        "state" => s.as_str(),
                    )
                    .set(if s == current { 1.0 } else { 0.0 });
                }
            }
            handle.run_upkeep();
            (
                [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            "metrics are recorded by another exporter in this process",
        )
            .into_response(),
    }
}

/// Installs the Prometheus recorder once per process (tests build many apps). `None` when
/// another recorder was installed first, e.g. by an embedding process.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let upkeep = handle.clone();
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}
