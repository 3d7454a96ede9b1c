//! The HTTP surface: routes, and the edge layers every response passes through.
//!
//! - [`chat`]: `POST /v1/chat/completions`, which hands over to the [`pipeline`](crate::pipeline);
//! - [`embeddings`]: `POST /v1/embeddings`, the same stages for embeddings;
//! - [`messages`]: `POST /v1/messages` and `/v1/messages/count_tokens`, Anthropic's API, with
//!   its own error format (see [`anthropic_api`](crate::anthropic_api));
//! - [`models`]: `GET /v1/models` (and `GET /v1/models/{model}`);
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` (the only unauthenticated routes besides
//!   the 404 answer for unknown paths);
//! - [`cors`]: CORS on the `/v1` routes for listed browser origins
//!   (`SWITCHYARD_GATEWAY_CORS_ORIGINS`; off by default).
//!
//! The edge layers ([`with_edge`]), outermost first: [`request_id`] (a fresh UUIDv7 per request,
//! echoed as `x-switchyard-request-id` on every response and used as the usage event id),
//! [`messages::anthropic_errors`] (error bodies in Anthropic's format for `/v1/messages` paths,
//! and `/v1/models` paths called by an Anthropic client; every other path keeps OpenAI's),
//! [`log_errors`] (logs each error once and counts it), catch-panic (a panic becomes an
//! OpenAI-format 500), [`limit_head`] (414 for a URL over [`MAX_URI_BYTES`], 431 for a header
//! over [`MAX_HEADER_BYTES`] or all headers over [`MAX_HEADERS_BYTES`], naming the header),
//! [`limit_body`] (413 on an oversized `Content-Length`, and a hard cap while a body of unknown
//! length is read) and [`egress::loop_guard`](crate::egress::loop_guard) (508 for a request
//! that came back to this gateway, before authentication). Requests too large for the HTTP
//! parser itself (a URL over 64 KiB, headers over its buffer) get their JSON error from
//! [`listener`]. Errors are rendered once, in OpenAI's format, and
//! translated by the second layer, so the edge's own errors (413, panic 500) are translated too.

pub mod chat;
pub mod cors;
pub mod embeddings;
pub mod health;
pub mod listener;
pub mod messages;
pub mod models;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::error::{GatewayError, LoggedError};
use crate::pipeline::RequestId;
use crate::state::AppState;

/// The response header carrying the request id (also the usage event's id).
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-switchyard-request-id");

/// Runs a pipeline `task` in a spawned task, so a client disconnect cannot cancel metering,
/// and returns whatever response it sends first on the channel `response` reads.
pub(crate) async fn answer_from_task(
    task: impl Future<Output = ()> + Send + 'static,
    response: tokio::sync::oneshot::Receiver<Response>,
) -> Response {
    // The task keeps the request's span, so its log lines carry the request id (and its
    // spans belong to the request's trace), and the caller's trace context.
    tokio::spawn(crate::telemetry::carry(task).instrument(tracing::Span::current()));
    match response.await {
        Ok(response) => response,
        // The task ended without answering: it panicked (the panic is in the log).
        Err(_) => GatewayError::Internal("the request task ended without a response".to_owned())
            .into_response(),
    }
}

/// Wraps `router` in the edge layers, as one `ServiceBuilder` (outermost first, in the order
/// documented on this module).
pub fn with_edge(router: Router, state: &AppState) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(request_id))
            .layer(middleware::from_fn(messages::anthropic_errors))
            .layer(middleware::from_fn(log_errors))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn(limit_head))
            .layer(middleware::from_fn_with_state(
                state.settings().max_body_bytes,
                limit_body,
            ))
            .layer(middleware::from_fn_with_state(
                state.hop_tag(),
                crate::egress::loop_guard,
            )),
    )
}

/// Longest accepted request URL (path and query), in bytes. Every route is short; a longer URL
/// is a mistake or an attack, and would otherwise be quoted in logs.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest accepted single header value, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest accepted total of header names and values, in bytes.
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// Refuses oversized URLs (414) and headers (431, naming the header) before anything reads
/// them, in the API's own error format.
pub async fn limit_head(request: Request, next: Next) -> Response {
    if let Err(error) = check_head(&request) {
        return error.into_response();
    }
    next.run(request).await
}

fn check_head(request: &Request) -> Result<(), GatewayError> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(GatewayError::UriTooLong {
            limit: MAX_URI_BYTES,
        });
    }
    let mut total = 0;
    for (name, value) in request.headers() {
        let len = value.len();
        total += name.as_str().len() + len;
        if len > MAX_HEADER_BYTES {
            return Err(GatewayError::HeaderTooLarge {
                name: crate::error::truncate(name.as_str(), crate::error::MAX_ECHO),
                limit: MAX_HEADER_BYTES,
            });
        }
    }
    if total > MAX_HEADERS_BYTES {
        return Err(GatewayError::HeaderTooLarge {
            name: "(all headers)".to_owned(),
            limit: MAX_HEADERS_BYTES,
        });
    }
    Ok(())
}

/// The response header with the gateway's own time for the request, in milliseconds with
/// microsecond precision (`0.215`): everything but waiting on providers, up to the response
/// head (for a stream, its first bytes' translation is not included).
pub const OVERHEAD_HEADER: HeaderName = HeaderName::from_static("x-switchyard-overhead-ms");

/// The response cache's verdict on the request: `hit`, `miss` or `bypass` (see
/// [`crate::pipeline::cache`]); on every gateway answer.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-cache");
/// On a semantic cache hit: the cosine similarity of the stored prompt (`0.9731`).
pub const CACHE_SIMILARITY_HEADER: HeaderName =
    HeaderName::from_static("x-switchyard-cache-similarity");

/// Sets [`OVERHEAD_HEADER`] to `own`.
pub(crate) fn put_overhead(headers: &mut axum::http::HeaderMap, own: Duration) {
    let micros = u64::try_from(own.as_micros()).unwrap_or(u64::MAX);
    let text = format!("{}.{:03}", micros / 1000, micros % 1000);
    if let Ok(value) = HeaderValue::from_str(&text) {
        headers.insert(OVERHEAD_HEADER, value);
    }
}

/// A request path as the overhead histogram's `endpoint` label (a fixed set).
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat.completions",
        "/v1/messages" => "messages",
        "/v1/messages/count_tokens" => "count_tokens",
        "/v1/embeddings" => "embeddings",
        "/healthz" | "/readyz" | "/metrics" => "internal",
        p if p.starts_with("/v1/models") => "models",
        _ => "other",
    }
}

/// Gives the request a fresh id. A client's own `x-request-id` (or a forged
/// `x-switchyard-request-id`) is never trusted: the id is the usage event's deduplication key,
/// so reusing one would make a second request free.
///
/// Also opens the request's span (logs: `request{id method path}`; traces: the server span,
/// child of the caller's `traceparent`, see [`crate::telemetry`]).
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let rid = RequestId::new();
    let endpoint = endpoint_label(request.uri().path());
    request.headers_mut().remove(&REQUEST_ID_HEADER);
    request.extensions_mut().insert(rid);
    let (span, caller) = crate::telemetry::server_span(&request, rid.id);
    let mut response = caller
        .scope(next.run(request))
        .instrument(span.clone())
        .await;
    crate::telemetry::record_response(&span, &response);
    // The pipeline put its own figure (upstream time excluded) on its answers; any other
    // answer (a refusal at the edge, /v1/models) never waited on a provider.
    let overhead = match response.headers().get(&OVERHEAD_HEADER) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
            .unwrap_or_default(),
        None => {
            let own = rid.started.elapsed();
            put_overhead(response.headers_mut(), own);
            own
        }
    };
    metrics::histogram!("switchyard_gateway_overhead_seconds", "endpoint" => endpoint)
        .record(overhead.as_secs_f64());
    // Answers the pipeline never saw (an edge refusal, /v1/models) did not use the cache.
    if !response.headers().contains_key(&CACHE_HEADER) {
        response
            .headers_mut()
            .insert(CACHE_HEADER, HeaderValue::from_static("bypass"));
    }
    let mut buf = uuid::Uuid::encode_buffer();
    if let Ok(value) = HeaderValue::from_str(rid.id.hyphenated().encode_lower(&mut buf)) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Logs the error a response carries, once, inside the request's span, and counts every
/// response by status and error code. 5xx are errors (with the internal detail, which the
/// client never sees), 4xx are informational.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let code = match response.extensions().get::<LoggedError>() {
        Some(LoggedError(error)) => {
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), code = error.code(), error = %error, "request failed");
            } else {
                tracing::info!(status = status.as_u16(), code = error.code(), error = %error, "request refused");
            }
            error.code()
        }
        None => "",
    };
    tracing::debug!(status = status.as_u16(), "response sent");
    metrics::counter!(
        "switchyard_http_responses_total",
        "status" => status.as_str().to_owned(),
        "code" => code,
    )
    .increment(1);
    response
}

/// A panic in a handler becomes an OpenAI-format 500 (translated by [`messages::anthropic_errors`]
/// where that applies); the payload goes to the log only.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let detail = if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "non-string panic payload".to_owned()
    };
    GatewayError::Internal(format!("handler panicked: {detail}")).into_response()
}

/// Refuses a body whose `Content-Length` exceeds the limit before anything reads it, and caps
/// bodies of unknown length (chunked) while they are read.
pub async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return GatewayError::RequestTooLarge { limit }.into_response();
    }
    let request = request.map(|body| Body::new(Limited::new(body, limit)));
    next.run(request).await
}

/// The answer for paths we do not serve, in OpenAI's format.
pub async fn not_found() -> Response {
    GatewayError::RouteNotFound.into_response()
}

/// The answer for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    GatewayError::MethodNotAllowed.into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Settings;
    use crate::store::ConfigStore;
    use crate::usage_sink::UsageSink;

    /// The edge layers around a router whose `/boom` and `/v1/messages` routes panic.
    fn panicking_app() -> Router {
        let bus = shared::bus::MemoryBus::new();
        let store = ConfigStore::in_memory(Arc::clone(&bus), shared::crypto::MasterKey::generate());
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let state = AppState::new(Settings::default(), store, UsageSink::in_memory(tx)).unwrap();
        let boom = get(|| async {
            panic!("secret internal detail");
            #[allow(unreachable_code)]
            ""
        });
        let router: Router = Router::new()
            .route("/boom", boom.clone())
            .route("/v1/messages", boom);
        with_edge(router, &state)
    }

    #[tokio::test]
    async fn a_panic_on_messages_becomes_an_anthropic_500_with_a_request_id() {
        let response = panicking_app()
            .oneshot(
                axum::http::Request::get("/v1/messages")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let rid = response.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.headers()["request-id"], rid.as_str());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "api_error", "{body}");
        assert_eq!(body["request_id"], rid.as_str(), "{body}");
        assert!(body["error"].get("code").is_none(), "{body}");
        assert!(
            !body.to_string().contains("secret internal detail"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_an_openai_500_with_a_request_id() {
        let response = panicking_app()
            .oneshot(
                axum::http::Request::get("/boom")
                    .header("anthropic-version", "2023-06-01")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert_eq!(body["error"]["type"], "api_error");
        assert!(
            !body.to_string().contains("secret internal detail"),
            "{body}"
        );
    }
}
