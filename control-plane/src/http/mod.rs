//! The control API over HTTP: one module per resource, each exposing `router()`, merged under
//! `/api/v1` by [`api_router`]; plus `/healthz`, `/readyz` and the Swagger UI at `/docs`.
//!
//! Cross-cutting pieces live here:
//! - [`ApiJson`], [`ApiPath`], [`ApiQuery`] (in `extract`): axum's extractors with their
//!   rejections turned into [`ApiError`], so a malformed body, an unknown field or a bad id in
//!   the path gets the same error shape as every other failure, naming the field;
//! - [`request_context`]: gives every request an id (UUIDv7) that is sent back as
//!   `x-switchyard-request-id` and recorded on the request's log span;
//! - [`resource`]: the shared path of every tenant-scoped resource (find/list/delete scoped by
//!   tenant, version bump + outbox, audit), so a resource module is its DTOs and rules only;
//! - [`security`]: security headers, CORS, and the egress policy provider URLs are checked
//!   against;
//! - input caps: bodies over [`MAX_BODY_BYTES`] are refused with 413, paths and query strings
//!   over [`MAX_URI_BYTES`] with 414, both in our error shape;
//! - [`permissions`]: the permission matrix (minimum role of every operation), enforced by a
//!   route layer on every `/api/v1` route and rendered into README.md;
//! - [`console`]: the web console (the embedded `web/dist` SPA), served as the fallback of
//!   every path that is not an API's;
//! - [`meta`]: `GET /api/v1/meta`, public deployment facts for the console;
//! - [`router`]: the full control-plane router with its middleware stack.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod budgets;
pub mod cache;
pub mod catalog;
pub mod console;
mod extract;
pub mod guardrails;
pub mod health;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod meta;
pub mod metrics;
pub mod models;
pub mod organization;
pub mod permissions;
pub mod providers;
pub mod requests;
pub(crate) mod resource;
pub mod routes;
pub mod security;
pub mod team_members;
pub mod teams;
pub mod usage;
mod validate;

use std::any::Any;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use uuid::Uuid;

pub use self::extract::{ApiJson, ApiPath, ApiQuery};
use crate::error::{self, ApiError};
use crate::state::AppState;

/// Header carrying the request id on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-switchyard-request-id");

/// Largest request body the control API reads (1 MiB); larger ones get 413. The biggest real
/// body (a catalog entry, a key limited to 100 models) is a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest path plus query string (8 KiB); longer ones get 414. (Past 64 KiB the HTTP server
/// itself answers 414, before any of our code runs.)
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Longest path written to the access log; the rest is cut.
const MAX_LOGGED_PATH_CHARS: usize = 256;

/// The control API, every route under `/api/v1`. Every route is gated by the permission
/// matrix ([`permissions::enforce`], added in [`routes`]).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(members::router())
        .merge(invitations::router())
        .merge(teams::router())
        .merge(team_members::router())
        .merge(audit::router())
        .merge(keys::router())
        .merge(providers::router())
        .merge(models::router())
        .merge(routes::router())
        .merge(organization::router())
        .merge(catalog::router())
        .merge(usage::router())
        .merge(budgets::router())
        .merge(guardrails::router())
        .merge(alerts::router())
        .merge(analytics::router())
        .merge(requests::router())
        .merge(billing::router())
        .merge(meta::router())
        .method_not_allowed_fallback(method_not_allowed)
}

/// The whole control plane on its own: [`routes`] plus a JSON 404 for anything else. This is
/// what `crate::app` returns and what oneshot tests drive.
pub fn router(state: AppState) -> Router {
    let routes = routes(state.clone());
    with_fallback(routes, &state)
}

/// The control-plane routes (`/api/v1/*`, `/healthz`, `/readyz`, `/docs`) with their middleware,
/// and no fallback, so they can be merged with the data plane's `/v1` router (which brings its
/// own request id and error shape) without one stack wrapping the other.
pub fn routes(state: AppState) -> Router {
    layered(
        Router::new()
            .nest(
                "/api/v1",
                api_router().route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    permissions::enforce,
                )),
            )
            .merge(health::router().method_not_allowed_fallback(method_not_allowed))
            .merge(metrics::router().method_not_allowed_fallback(method_not_allowed))
            .with_state(state.clone())
            .merge(crate::openapi::swagger_ui()),
        &state,
    )
}

/// Adds the fallback for every path no route matched: the web console ([`console::serve`]:
/// `index.html` for the SPA's paths, its files), or the control plane's JSON 404 for API paths
/// and missing files, with the same middleware (and so the same security headers, the
/// console's for console paths) as every other control-plane response.
pub fn with_fallback(router: Router, state: &AppState) -> Router {
    router.fallback_service(layered(Router::new().fallback(console::serve), state))
}

/// The middleware stack of every control-plane response. Each `ServiceBuilder` reads top to
/// bottom (outermost first): request id and span, security headers, CORS (only when origins
/// are configured, so preflights are answered before anything else), error logging, the URI
/// length cap, panic → 500, the body size cap.
fn layered(router: Router, state: &AppState) -> Router {
    let inner = router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(metrics::track))
            .layer(middleware::from_fn(error::log_errors))
            .layer(middleware::from_fn(uri_limit))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    );
    let inner = match state.security.cors_layer() {
        Some(cors) => inner.layer(cors).layer(middleware::from_fn_with_state(
            state.security.clone(),
            security::cors_only_for_listed_origins,
        )),
        None => inner,
    };
    inner.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(request_context))
            .layer(middleware::from_fn_with_state(
                state.security.clone(),
                security::headers,
            )),
    )
}

/// Refuses a path plus query string longer than [`MAX_URI_BYTES`] (414, in our error shape)
/// before any extractor or handler sees it.
async fn uri_limit(request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!(
            "the path and query string must be at most {MAX_URI_BYTES} bytes"
        ))
        .into_response();
    }
    next.run(request).await
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
        // Bounded: a client controls the path, and a 60 KB path must not become a 60 KB line.
        path = %validate::preview(loggable_path(request.uri().path()), MAX_LOGGED_PATH_CHARS),
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
