//! The web console: the single-page app built into `web/dist` (committed build output),
//! compiled into the binary with rust-embed and served by the control plane in both modes, as
//! the fallback of every path no other route matched.
//!
//! - `/assets/*` (Vite's content-hashed files): the file with its content type,
//!   `cache-control: public, max-age=31536000, immutable`, an `ETag` (the file's SHA-256) and
//!   304 on a matching `If-None-Match`; a missing asset is a JSON 404.
//! - Other paths with a file extension in the last segment (`/favicon.svg`, `/robots.txt`):
//!   the root file of that name with `cache-control: no-cache` (and an `ETag`), else a JSON 404.
//! - Every other `GET`/`HEAD` path: `index.html` (the SPA's router takes it from there),
//!   `content-type: text/html; charset=utf-8`, `cache-control: no-cache`, `ETag`.
//! - Never the console: `/api` and `/v1` (and below them), `/docs…`, `/healthz`, `/readyz`,
//!   `/metrics` keep the JSON 404 of their API, so a mistyped API URL is never answered with HTML.
//!   (In zero-setup mode the gateway's router answers unknown `/v1/…` paths itself, in
//!   OpenAI's shape; this fallback never sees them.)
//!
//! The console's CSP and browser headers are set by `security::headers`, which tells console
//! paths from API paths ([`super::security`]); the cache headers set here are left as they are.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

/// The console bundle, `web/dist` (relative to this crate's manifest, i.e.
/// `$CARGO_MANIFEST_DIR/../web/dist`). `debug-embed`: debug builds embed it too.
#[derive(RustEmbed)]
#[folder = "../web/dist"]
pub struct Dist;

/// The SPA's entry document.
pub const INDEX: &str = "index.html";
/// Cache policy of content-hashed assets: forever (a new build has new names).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of `index.html` and other root files: revalidate every time (by `ETag`).
pub const NO_CACHE: &str = "no-cache";

/// Whether `path` belongs to an API (or the docs, or the probes), never to the console.
pub fn is_api_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    under("/api")
        || under("/v1")
        || path.starts_with(crate::openapi::DOCS_PATH)
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
}

/// The fallback handler: the console, or a JSON 404 (see the module docs).
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_api_path(path) || !(method == Method::GET || method == Method::HEAD) {
        return ApiError::NotFound("route").into_response();
    }
    let (name, cache) = if let Some(asset) = path.strip_prefix("/assets/") {
        (Cow::Owned(format!("assets/{asset}")), IMMUTABLE)
    } else {
        let last = path.rsplit('/').next().unwrap_or_default();
        if last.contains('.') {
            (Cow::Borrowed(path.trim_start_matches('/')), NO_CACHE)
        } else {
            (Cow::Borrowed(INDEX), NO_CACHE)
        }
    };
    // Embedded names never contain `..` or a leading slash, so no lookup escapes the bundle.
    let Some(file) = Dist::get(&name) else {
        return ApiError::NotFound(if cache == IMMUTABLE { "asset" } else { "file" })
            .into_response();
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if if_none_match(&headers, &etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let len = file.data.len();
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(file.data)
        };
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(ct) = HeaderValue::from_str(&content_type(file.metadata.mimetype())) {
            r.headers_mut().insert(CONTENT_TYPE, ct);
        }
        r
    };
    let h = response.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    response
}

/// A strong `ETag` from the file's SHA-256 (rust-embed computes it at build time).
fn etag(sha256: &[u8; 32]) -> String {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak validators match too (RFC 9110's weak
/// comparison, which `If-None-Match` uses).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The content type to send: text types get `charset=utf-8` (Vite writes UTF-8).
fn content_type(mime: &str) -> String {
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if textual && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_never_fall_back_to_the_console() {
        for api in [
            "/api",
            "/api/v1/nope",
            "/v1",
            "/v1/models",
            "/docs",
            "/docs/x",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(is_api_path(api), "{api}");
        }
        for console in [
            "/",
            "/keys/abc",
            "/apis",
            "/v1x",
            "/assets/x.js",
            "/favicon.svg",
        ] {
            assert!(!is_api_path(console), "{console}");
        }
    }

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        let tag = etag(&[0xab; 32]);
        assert_eq!(tag.len(), 66);
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, &tag));
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert!(if_none_match(&h, &tag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, &tag));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!if_none_match(&h, &tag));
    }

    #[test]
    fn text_types_are_utf8() {
        assert_eq!(content_type("text/html"), "text/html; charset=utf-8");
        assert_eq!(content_type("image/png"), "image/png");
        assert!(
            Dist::get(INDEX).is_some(),
            "web/dist/index.html is embedded"
        );
    }
}
