//! The Switchyard data plane: an OpenAI- and Anthropic-compatible gateway that authenticates virtual keys,
//! routes each request to a tenant's model deployment, streams the provider's answer back and
//! meters every request into a usage event. It has no database: it reads the records the control
//! plane publishes (through Redis, or in-process) and writes only usage events.
//!
//! # Layout
//!
//! - [`config`]: `Config` for the standalone binary and [`Settings`](config::Settings)
//!   (body limit, upstream timeouts), shared with the embedded mode.
//! - [`state`]: [`AppState`], what every handler shares: settings, config store, usage sink and
//!   the one upstream HTTP client.
//! - [`http`]: routes and the edge layers (request id, Anthropic error format on Anthropic
//!   paths, error logging, catch-panic, URL/header/body limits, loop guard).
//! - [`egress`]: the upstream HTTP client with the egress (SSRF) policy enforced at connection
//!   time, and the hop header with the loop guard that refuses requests that came back to us.
//! - [`lifecycle`]: the probes' rules and the graceful stop (delay, grace, cut, drain), shared
//!   with the control plane.
//! - [`admission`]: per-node concurrency caps (node, organization, provider): over a cap a
//!   request is refused at once, never queued.
//! - [`anthropic_api`]: the Anthropic Messages API at the edge: `/v1/messages` requests are
//!   translated to OpenAI chat requests, run through the same pipeline, and their answers,
//!   streams and errors translated back.
//! - [`pipeline`]: the request pipeline, one module per stage, in order: authenticate → limit →
//!   reserve budget → cache → route → attempt → provider adapter → meter (`embed` runs the same
//!   stages for `/v1/embeddings`). Its module doc lists which stage inserts and reads each
//!   request fact.
//! - [`governance`]: key, team and organization rate limits (`limits`: per-second buckets in
//!   Redis, one script per request; in memory in-process).
//! - [`routing`]: per-node health and circuit breakers, candidate strategies, retry classes.
//! - [`providers`]: provider adapters (`openai` for OpenAI and the OpenAI-compatible family with
//!   per-provider presets, `azure`, `anthropic`, `gemini`, `bedrock`, `mock`), the
//!   provider-neutral `canonical` request view and OpenAI output builders they share, and the
//!   shared HTTP `transport`.
//! - [`wire`]: the OpenAI request types we read, the pass-through / drop / refuse rule for
//!   fields, and field-naming 400s.
//! - [`error`]: [`GatewayError`](error::GatewayError), rendered once in OpenAI's error shape.
//! - [`tokens`]: local token counting for the mock provider and for estimates.
//! - [`store`]: `ConfigStore`, the node's cache of published keys and tenant configs.
//! - [`telemetry`]: logs (text or JSON) and OpenTelemetry traces for both binaries: one
//!   `init`, the server and GenAI client spans, W3C trace context in and out.
//! - [`usage_sink`]: `UsageSink`, which ships usage events to Redis or the in-process channel.
//! - [`metrics_registry`]: every Prometheus metric (name, help, buckets), the recorder and
//!   `/metrics`.
//! - [`usage_spool`]: `Spool`, the local append-only file store the Redis sink writes to while
//!   Redis is unreachable, replayed when it returns (or on the next start).
//!
//! # Entry points
//!
//! [`app`] is the standalone binary's whole router; [`v1_router`] is only the `/v1` API, which
//! the control plane mounts in-process in the zero-setup default.

pub mod admission;
pub mod anthropic_api;
pub mod config;
pub mod egress;
pub mod error;
pub mod governance;
pub mod http;
pub mod lifecycle;
pub mod metrics_registry;
pub mod pipeline;
pub mod providers;
pub mod response_cache;
pub mod routing;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod usage_sink;
pub mod usage_spool;
pub mod wire;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post};

pub use state::AppState;

/// Routes served without authentication (deny by default: everything else under `/v1` passes
/// through [`pipeline::authenticate`]). Unknown paths are answered 404 without authentication
/// too, so probing a wrong URL says "not found" rather than "unauthorized".
pub const PUBLIC_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The `/v1` routes without the edge layers: every API route, behind one authentication layer
/// applied once to all of them, plus the 404 answer for unknown `/v1` paths. No router-level
/// fallback, so it merges into any other router.
fn v1_routes(state: &AppState) -> Router {
    // Every API route, OpenAI's and Anthropic's alike, is added here, before the one
    // `route_layer` below: a route added after it would be served without authentication.
    let api = Router::new()
        .route(
            "/v1/chat/completions",
            post(http::chat::chat_completions).fallback(http::method_not_allowed),
        )
        .route(
            "/v1/embeddings",
            post(http::embeddings::embeddings).fallback(http::method_not_allowed),
        )
        .route(
            "/v1/models",
            get(http::models::list).fallback(http::method_not_allowed),
        )
        .route(
            "/v1/models/{model}",
            get(http::models::retrieve).fallback(http::method_not_allowed),
        )
        .merge(http::messages::routes())
        .route_layer(from_fn_with_state(
            state.clone(),
            pipeline::authenticate::middleware,
        ));
    let v1 = Router::new()
        .merge(api)
        .route("/v1/{*rest}", any(http::not_found))
        .with_state(state.clone());
    // CORS outside authentication (a preflight carries no key); `AppState::new` validated the
    // setting, so an error cannot happen here.
    let cors = state
        .settings()
        .gateway_cors()
        .unwrap_or(config::GatewayCors::Off);
    http::cors::wrap(v1, &cors)
}

/// Only the `/v1` API (chat completions, models), with authentication and the edge layers
/// (request id, error logging, catch-panic, body limit). The control plane mounts this in the
/// zero-setup default; it has no fallback, so it merges into another router.
pub fn v1_router(state: AppState) -> Router {
    http::with_edge(v1_routes(&state), &state)
}

/// The standalone binary's app: the `/v1` API plus `/healthz`, `/readyz` and `/metrics`, and a
/// 404 in OpenAI's format for every other path. Installs the Prometheus recorder (once per
/// process).
pub fn app(state: AppState) -> Router {
    metrics_registry::build_info("data");
    let [healthz, readyz, metrics] = PUBLIC_ROUTES;
    let public = Router::new()
        .route(healthz, get(http::health::healthz))
        .route(readyz, get(http::health::readyz))
        .route(metrics, get(http::health::metrics))
        .with_state(state.clone());
    let router = v1_routes(&state).merge(public).fallback(http::not_found);
    http::with_edge(router, &state)
}
