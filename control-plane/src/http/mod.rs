//! The control API over HTTP: one module per resource, each exposing `router()`, merged under
//! `/api/v1` by [`api_router`]; plus `/healthz`, `/readyz` and the Swagger UI at `/docs`.
//!
//! Cross-cutting pieces live here:
//! - [`ApiJson`], [`ApiPath`], [`ApiQuery`]: axum's extractors with their rejections turned
//!   into [`ApiError`], so a malformed body or a bad id in the path gets the same error shape
//!   as every other failure;
//! - [`request_context`]: gives every request an id (UUIDv7) that is sent back as
//!   `x-switchyard-request-id` and recorded on the request's log span;
//! - [`router`]: the full control-plane router with its middleware stack.

pub mod auth;
pub mod catalog;
pub mod health;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod models;
pub mod providers;
pub mod teams;
pub mod usage;
mod validate;

use std::any::Any;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{self, ApiError};
use crate::state::AppState;

/// Header carrying the request id on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-switchyard-request-id");

/// The control API, every route under `/api/v1`, including the OpenAPI document.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(members::router())
        .merge(invitations::router())
        .merge(teams::router())
        .merge(keys::router())
        .merge(providers::router())
        .merge(models::router())
        .merge(catalog::router())
        .merge(usage::router())
        .method_not_allowed_fallback(method_not_allowed)
}

/// The whole control plane on its own: [`routes`] plus a JSON 404 for anything else. This is
/// what `crate::app` returns and what oneshot tests drive.
pub fn router(state: AppState) -> Router {
    with_fallback(routes(state))
}

/// The control-plane routes (`/api/v1/*`, `/healthz`, `/readyz`, `/docs`) with their middleware,
/// and no fallback, so they can be merged with the data plane's `/v1` router (which brings its
/// own request id and error shape) without one stack wrapping the other.
pub fn routes(state: AppState) -> Router {
    layered(
        Router::new()
            .nest("/api/v1", api_router())
            .merge(health::router().method_not_allowed_fallback(method_not_allowed))
            .with_state(state)
            .merge(crate::openapi::swagger_ui()),
    )
}

/// Adds the control plane's JSON 404 for every path no route matched.
pub fn with_fallback(router: Router) -> Router {
    router.fallback_service(layered(Router::new().fallback(not_found)))
}

/// The middleware stack of every control-plane response, in one `ServiceBuilder` so the order
/// reads top to bottom (outermost first): request id and span, error logging, panic → 500.
fn layered(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(request_context))
            .layer(middleware::from_fn(error::log_errors))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response {
    // The panic payload may carry request data, so it is not echoed; `log_errors` logs this
    // 500 once, inside the request's span.
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}

/// Assigns the request id, opens the request's span, adds `x-switchyard-request-id` to the
/// response and writes one access-log line.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %loggable_path(request.uri().path()),
    );
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = response.status().as_u16();
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        // Probes hit the health routes every few seconds; keep them out of the info log.
        if probe {
            tracing::debug!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
    });
    response
}

/// The path as it may be logged: an invitation token in the path is a secret (it lets its
/// holder's addressee join an organization), so it is replaced by `{token}`.
fn loggable_path(path: &str) -> &str {
    let is_accept = path
        .strip_prefix("/api/v1/invitations/")
        .is_some_and(|rest| rest.ends_with("/accept"));
    if is_accept {
        "/api/v1/invitations/{token}/accept"
    } else {
        path
    }
}

/// `axum::Json` whose rejections (bad JSON, missing field, wrong content type) are
/// `400 validation_failed` in our error shape.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Validation(rejection.body_text())
    }
}

/// `axum::extract::Path` whose rejections (e.g. an id that is not a UUID) are
/// `400 validation_failed` in our error shape.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::Validation(format!("invalid path parameter: {}", rejection.body_text()))
    }
}

/// `axum::extract::Query` whose rejections are `400 validation_failed` in our error shape.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(format!("invalid query string: {}", rejection.body_text()))
    }
}

/// The current time, truncated to whole microseconds: PostgreSQL keeps microseconds, so a
/// value returned at creation equals the one read back later.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn invitation_tokens_never_reach_the_access_log() {
        assert_eq!(
            loggable_path("/api/v1/invitations/s3cr3t-token/accept"),
            "/api/v1/invitations/{token}/accept"
        );
        for kept in [
            "/api/v1/invitations",
            "/api/v1/invitations/0192d4c1-0000-7000-8000-000000000000",
            "/api/v1/keys",
        ] {
            assert_eq!(loggable_path(kept), kept);
        }
    }
}
