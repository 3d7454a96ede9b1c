//! Health and metrics endpoints, outside authentication (they are the explicit allowlist in
//! [`crate::PUBLIC_ROUTES`]).

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::GatewayError;
use crate::metrics_registry;
use crate::state::AppState;

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

/// Prometheus text exposition of every metric this process records (see
/// [`crate::metrics_registry`]). With `SWITCHYARD_METRICS_TOKEN` set, only for
/// `Authorization: Bearer <token>`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !metrics_allowed(state.settings().metrics_token.as_ref(), &headers) {
        return GatewayError::MetricsUnauthorized.into_response();
    }
    metrics_registry::observe_node(&state);
    exposition()
}

/// Whether `headers` may read `/metrics` when the metrics token is `token` (always, without
/// one).
pub fn metrics_allowed(token: Option<&crate::config::Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token.filter(|t| !t.expose().is_empty()) else {
        return true;
    };
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            shared::crypto::constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
        })
}

/// The rendered exposition (call the `observe_*` functions first), in the Prometheus text
/// format.
pub fn exposition() -> Response {
    match metrics_registry::render() {
        Some(text) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are recorded by another exporter in this process",
        )
            .into_response(),
    }
}
