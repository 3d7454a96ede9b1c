//! `GET /metrics` (Prometheus text format, outside `/api/v1`, no session: a scraper has none)
//! and the middleware that counts every control-plane API request. Names, help texts and
//! buckets live in `data_plane::metrics_registry`, shared by both planes; in the zero-setup
//! process this one endpoint shows both planes' metrics.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use data_plane::metrics_registry;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::entities::config_outbox;
use crate::error::ApiError;
use crate::state::AppState;

/// What `/metrics` reads besides the database pool: the embedded gateway (zero-setup) and the
/// Redis pool (distributed mode), and the metrics token.
#[derive(Clone, Default)]
pub struct Observed {
    /// The in-process data plane of the zero-setup mode.
    pub gateway: Option<data_plane::AppState>,
    /// The control plane's Redis pool (publisher and ingest), in distributed mode.
    pub redis: Option<deadpool_redis::Pool>,
    /// `SWITCHYARD_METRICS_TOKEN`: when set, `/metrics` needs it as a bearer token.
    pub token: Option<data_plane::config::Secret>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("gateway", &self.gateway.is_some())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// `GET /metrics`: every metric of this process, in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !data_plane::http::health::metrics_allowed(state.observed.token.as_ref(), &headers) {
        return ApiError::Unauthorized(
            "this endpoint needs the metrics token (SWITCHYARD_METRICS_TOKEN) as a bearer token",
        )
        .into_response();
    }
    observe(&state).await;
    data_plane::http::health::exposition()
}

/// The gauges read at scrape time: the database and Redis pools, the config outbox, and (in
/// zero-setup) the embedded gateway's.
async fn observe(state: &AppState) {
    if let Some(gateway) = &state.observed.gateway {
        metrics_registry::observe_node(gateway);
    }
    if let Some(redis) = &state.observed.redis {
        metrics_registry::redis_pool("control_plane", redis);
    }
    let (size, idle, max) = crate::db::pool_status(&state.db);
    metrics::gauge!("switchyard_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("switchyard_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("switchyard_db_pool_max_connections").set(f64::from(max));
    // One indexed count; the outbox holds only what is not published yet.
    if let Ok(pending) = config_outbox::Entity::find().count(&state.db).await {
        metrics::gauge!("switchyard_config_outbox_pending").set(pending as f64);
    }
}

/// Counts a control-plane request by method, route template (never the raw path: ids would
/// make every request its own series) and status class, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let class = metrics_registry::status_class(response.status().as_u16());
    metrics::counter!(
        "switchyard_api_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status_class" => class,
    )
    .increment(1);
    metrics::histogram!(
        "switchyard_api_request_duration_seconds",
        "method" => method,
        "route" => route,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A method as a label (a fixed set).
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}
