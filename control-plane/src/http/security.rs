//! Browser-facing protections of the control API: security headers on every response, CORS
//! locked to the configured console origins, and the egress policy provider addresses are
//! checked against.
//!
//! Headers (every control-plane response, errors and 404s included):
//! - `x-content-type-options: nosniff`, `x-frame-options: DENY`, and `referrer-policy:
//!   no-referrer` (the console's paths: `same-origin`);
//! - `content-security-policy`: for the API, `default-src 'none'; frame-ancestors 'none'; …`
//!   (JSON never needs to load anything); for the Swagger UI under `/docs`, same-origin
//!   scripts, styles (inline styles too: Swagger UI sets `style` attributes), images (and
//!   `data:` icons) and `fetch` of the spec, nothing from other origins; for the web console
//!   (every path that is not an API's, see `http::console`) [`CONSOLE_CSP`], with the public
//!   gateway's origin added to `connect-src` when `SWITCHYARD_PUBLIC_GATEWAY_URL` is set;
//! - `cache-control: no-store` on API answers (they carry tokens, keys and tenant data, which
//!   must not sit in a shared or browser cache); `/docs` sets none, and the console's files
//!   keep their own (`no-cache` or `immutable`; `no-store` when they set none);
//! - `strict-transport-security` only when `SWITCHYARD_HSTS_MAX_AGE_SECS` is set: the control
//!   plane speaks plain HTTP and cannot tell whether a TLS proxy is in front of it, and HSTS
//!   sent over a deployment reached by plain http would lock browsers out of it.
//!
//! CORS: with `SWITCHYARD_CORS_ORIGINS` unset (the default) no CORS headers are ever sent, so
//! browsers allow only same-origin calls (the console is served from the control plane's own
//! origin). Each listed origin (exact match, e.g. `https://console.example.com`) may call the
//! API with credentials; preflights from it are answered with the allowed methods and headers,
//! preflights from any other origin get no `access-control-allow-*` header.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ORIGIN, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use shared::egress::EgressPolicy;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{Config, CookieSecure};

/// The CSP of API responses: nothing may be loaded, framed, or submitted.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The CSP of the Swagger UI (`/docs`): its own scripts and styles from this origin only.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The CSP of the console (the SPA served at `/`) when no public gateway URL is configured:
/// its own scripts and styles (inline styles too: UI libraries set `style` attributes), images
/// and fonts from this origin or `data:`, API calls to this origin only, never framed.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// The console's CSP, with `gateway_origin` (`SWITCHYARD_PUBLIC_GATEWAY_URL`'s origin) added
/// to `connect-src`, so the playground can call a gateway served from another origin.
pub fn console_csp(gateway_origin: Option<&str>) -> String {
    match gateway_origin {
        Some(origin) => CONSOLE_CSP.replacen(
            "connect-src 'self';",
            &format!("connect-src 'self' {origin};"),
            1,
        ),
        None => CONSOLE_CSP.to_owned(),
    }
}

/// How long browsers may cache a CORS preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The security settings the control API applies, resolved once from [`Config`].
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Which upstream addresses provider `base_url`s may point at (checked at write time; the
    /// data plane checks again at connection time).
    pub egress: EgressPolicy,
    /// Origins allowed to call the API from a browser; empty: same-origin only.
    pub cors_origins: Vec<HeaderValue>,
    /// The `strict-transport-security` value, when configured.
    pub hsts: Option<HeaderValue>,
    /// Whether the console's session cookies carry `Secure` (see `http::auth`).
    pub cookie_secure: CookieSecure,
    /// The console's CSP when it differs from [`CONSOLE_CSP`] (the gateway's origin added to
    /// `connect-src` when `SWITCHYARD_PUBLIC_GATEWAY_URL` is set).
    pub console_csp: Option<HeaderValue>,
}

impl Security {
    /// From the validated configuration: the resolved egress policy, CORS origins and HSTS.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            egress: config.egress_policy()?,
            cors_origins: config.cors_origins()?,
            hsts: config.hsts_header(),
            cookie_secure: config.cookie_secure,
            console_csp: match config.public_gateway_url()? {
                Some(url) => Some(HeaderValue::from_str(&console_csp(Some(
                    &url.origin().ascii_serialization(),
                )))?),
                None => None,
            },
        })
    }

    /// The CORS layer, when any origin is allowed.
    pub(crate) fn cors_layer(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(self.cors_origins.iter().cloned()))
                .allow_credentials(true)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                // The cookie-session headers too, for a console served from a listed origin.
                .allow_headers([
                    AUTHORIZATION,
                    CONTENT_TYPE,
                    super::auth::SESSION_MODE_HEADER,
                    super::auth::CSRF_HEADER,
                ])
                .expose_headers([super::REQUEST_ID_HEADER])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// Adds the security headers of the module docs to every response.
pub async fn headers(
    State(security): State<Arc<Security>>,
    request: Request,
    next: Next,
) -> Response {
    let surface = Surface::of(request.uri().path());
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    match surface {
        Surface::Api => {
            h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(API_CSP));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Surface::Docs => {
            h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
        }
        Surface::Console => {
            h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
            let csp = security
                .console_csp
                .clone()
                .unwrap_or(HeaderValue::from_static(CONSOLE_CSP));
            h.insert(CONTENT_SECURITY_POLICY, csp);
            // The console's files carry their own cache policy (`http::console`); anything
            // else (its JSON 404s) is not cached.
            if !h.contains_key(CACHE_CONTROL) {
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
        }
    }
    if let Some(hsts) = &security.hsts {
        h.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

/// Which part of the control plane a path belongs to, for its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `/api/…`, `/v1/…`, the probes: JSON only.
    Api,
    /// The Swagger UI under `/docs`.
    Docs,
    /// Everything else: the web console (`http::console`).
    Console,
}

impl Surface {
    fn of(path: &str) -> Self {
        if is_docs(path) {
            Surface::Docs
        } else if super::console::is_api_path(path) {
            Surface::Api
        } else {
            Surface::Console
        }
    }
}

/// Outside the CORS layer: removes every `access-control-*` header from answers to a request
/// whose `Origin` is not listed. tower-http's layer omits `access-control-allow-origin` for
/// such origins (which is what browsers enforce) but still describes methods and headers on
/// preflights; an origin we do not serve learns nothing about the API this way.
pub async fn cors_only_for_listed_origins(
    State(security): State<Arc<Security>>,
    request: Request,
    next: Next,
) -> Response {
    let listed = request
        .headers()
        .get(ORIGIN)
        .is_some_and(|origin| security.cors_origins.contains(origin));
    let mut response = next.run(request).await;
    if !listed {
        data_plane::http::cors::strip_cors_headers(&mut response);
    }
    response
}

/// `/docs` and everything under it (the Swagger UI's files).
fn is_docs(path: &str) -> bool {
    let docs = crate::openapi::DOCS_PATH;
    path == docs
        || path
            .strip_prefix(docs)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_paths() {
        assert!(is_docs("/docs"));
        assert!(is_docs("/docs/"));
        assert!(is_docs("/docs/swagger-ui.css"));
        assert!(!is_docs("/docsx"));
        assert!(!is_docs("/api/v1/keys"));
        assert_eq!(Surface::of("/docs/index.css"), Surface::Docs);
        assert_eq!(Surface::of("/api/v1/keys"), Surface::Api);
        assert_eq!(Surface::of("/healthz"), Surface::Api);
        assert_eq!(Surface::of("/"), Surface::Console);
        assert_eq!(Surface::of("/assets/index-abc.js"), Surface::Console);
    }

    #[test]
    fn console_csp_adds_the_gateway_origin_to_connect_src() {
        assert_eq!(console_csp(None), CONSOLE_CSP);
        let csp = console_csp(Some("https://gw.example.com"));
        assert!(
            csp.contains("connect-src 'self' https://gw.example.com; font-src"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
