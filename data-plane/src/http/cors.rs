//! CORS for the gateway's `/v1` API (`SWITCHYARD_GATEWAY_CORS_ORIGINS`), so a browser app on
//! another origin (the web console's playground when the gateway has its own host) can call it.
//!
//! Off by default: no CORS header is ever sent, and browsers allow only same-origin calls (the
//! zero-setup console is same-origin). With origins listed (or `*`), preflights from them are
//! answered (methods `GET`, `POST`, `OPTIONS`; the request headers clients send: `authorization`,
//! `content-type`, `x-api-key`, `anthropic-version`, `anthropic-beta`, `x-switchyard-tags`,
//! `x-switchyard-route`, `x-switchyard-sticky-key`), and answers expose the gateway's own
//! response headers (`x-switchyard-request-id`, `-provider`, `-deployment`, `-route`,
//! `-region`, `-attempts`, the `x-ratelimit-*` headers and `retry-after`). Credentials are never
//! allowed: keys are bearer headers, and no cookie means anything here. A request from an
//! origin that is not listed gets no `access-control-*` header at all (tower-http's layer would
//! still describe methods and headers on its preflights), so the browser refuses it.
//!
//! The layer wraps only the `/v1` routes ([`crate::v1_router`]), inside the edge layers, before
//! authentication: a preflight carries no key.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{ORIGIN, RETRY_AFTER};
use axum::http::{HeaderName, Method};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::GatewayCors;
use crate::pipeline::attempt::{
    ATTEMPTS_HEADER, DEPLOYMENT_HEADER, PROVIDER_HEADER, REGION_HEADER, ROUTE_HEADER,
};
use crate::pipeline::limit::{
    LIMIT_REQUESTS, LIMIT_TOKENS, REMAINING_REQUESTS, REMAINING_TOKENS, RESET_REQUESTS,
    RESET_TOKENS,
};

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a browser client may send.
const ALLOWED_HEADERS: [HeaderName; 8] = [
    HeaderName::from_static("authorization"),
    HeaderName::from_static("content-type"),
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
    HeaderName::from_static("x-switchyard-tags"),
    HeaderName::from_static("x-switchyard-route"),
    HeaderName::from_static("x-switchyard-sticky-key"),
];

/// The CORS layer for `cors`, or `None` when CORS is off.
pub fn layer(cors: &GatewayCors) -> Option<CorsLayer> {
    let origins = match cors {
        GatewayCors::Off => return None,
        GatewayCors::Any => AllowOrigin::any(),
        GatewayCors::Origins(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers([
                super::REQUEST_ID_HEADER,
                super::OVERHEAD_HEADER,
                super::CACHE_HEADER,
                super::CACHE_SIMILARITY_HEADER,
                PROVIDER_HEADER,
                DEPLOYMENT_HEADER,
                ROUTE_HEADER,
                REGION_HEADER,
                ATTEMPTS_HEADER,
                LIMIT_REQUESTS,
                REMAINING_REQUESTS,
                RESET_REQUESTS,
                LIMIT_TOKENS,
                REMAINING_TOKENS,
                RESET_TOKENS,
                RETRY_AFTER,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// Outside the CORS layer: removes every `access-control-*` header from answers to a request
/// whose `Origin` is not allowed (see the module docs).
pub async fn only_for_allowed_origins(
    State(cors): State<GatewayCors>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = match &cors {
        GatewayCors::Off => false,
        GatewayCors::Any => true,
        GatewayCors::Origins(list) => request
            .headers()
            .get(ORIGIN)
            .is_some_and(|origin| list.contains(origin)),
    };
    let mut response = next.run(request).await;
    if !allowed {
        strip_cors_headers(&mut response);
    }
    response
}

/// Removes every `access-control-*` header from `response` (an answer to an origin that is not
/// allowed learns nothing about the API). Shared with the control plane's CORS.
pub fn strip_cors_headers(response: &mut Response) {
    let names: Vec<_> = response
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        response.headers_mut().remove(name);
    }
}

/// Wraps `router` (the `/v1` routes) in the CORS layers when `cors` is on.
pub fn wrap(router: axum::Router, cors: &GatewayCors) -> axum::Router {
    match layer(cors) {
        Some(layer) => router
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(
                cors.clone(),
                only_for_allowed_origins,
            )),
        None => router,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_means_no_layer() {
        assert!(layer(&GatewayCors::Off).is_none());
        assert!(layer(&GatewayCors::Any).is_some());
    }
}
