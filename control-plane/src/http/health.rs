//! `GET /healthz` (the process is up) and `GET /readyz` (it can do its job). Both sit at the
//! root, outside `/api/v1`, and need no authentication.
//!
//! Liveness never looks at the database or Redis: a restart cannot fix either, and would only
//! add an outage of the control plane to theirs. Readiness is the database answering: the
//! schema was migrated before the port was bound, and every API call needs the database.
//! Redis (distributed mode) is deliberately not part of it: the API keeps working without it
//! (config changes are committed and published when Redis is back, usage waits in the stream),
//! and taking every replica out of rotation would turn a Redis outage into a control-plane one.
//! From the start of a stop, readiness answers 503 `{"status":"shutting_down"}` (see
//! `data_plane::lifecycle`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`, `ready`, or (503 while stopping) `shutting_down`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: answers 200 as long as the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = HealthStatus)))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok" })
}

/// Readiness: 200 when the database answers; 503 when it does not, or while stopping.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, body = HealthStatus),
        (status = 503, description = "The database is unreachable (an error body), or the process is stopping (`{\"status\":\"shutting_down\"}`)", body = crate::error::ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.lifecycle.is_shutting_down() {
        let body = HealthStatus {
            status: data_plane::lifecycle::SHUTTING_DOWN,
        };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    if crate::db::ping(&state.db).await {
        Ok(Json(HealthStatus { status: "ready" }).into_response())
    } else {
        Err(ApiError::Unavailable("the database is unreachable"))
    }
}
