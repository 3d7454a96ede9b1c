//! Stage 1, authenticate: axum middleware in front of every `/v1` route.
//!
//! The key comes from `Authorization: Bearer <key>` (what OpenAI SDKs send) or `x-api-key`
//! (what Anthropic-style clients send). Its SHA-256 is looked up in the [`ConfigStore`]: a
//! cached key costs no network round trip. Refusals are 401s that say why (missing, unknown,
//! revoked, expired) but never echo the key or its hash. On success the request gets an
//! [`AuthContext`] extension.
//!
//! [`ConfigStore`]: crate::store::ConfigStore

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::config::KeyRecord;
use time::OffsetDateTime;

use crate::egress::Hops;
use crate::error::GatewayError;
use crate::state::AppState;

/// The authenticated key, for every later stage.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub key: Arc<KeyRecord>,
    /// The `x-switchyard-hop` value for this request's upstream calls: the hops it arrived
    /// with plus this cluster's tag (see [`crate::egress`]).
    pub hops: HeaderValue,
    /// `x-switchyard-sticky-key`, which keeps a client on one deployment of a sticky weighted
    /// route (ahead of the request's `user` field).
    pub sticky_key: Option<Arc<str>>,
}

/// The header a client sets to stay on one deployment of a sticky weighted route.
pub const STICKY_KEY_HEADER: &str = "x-switchyard-sticky-key";

/// The middleware: refuses the request or inserts [`AuthContext`] and passes it on.
pub async fn middleware(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let hops = match request.extensions().get::<Hops>() {
        Some(Hops(hops)) => hops.clone(),
        None => state.hop_tag().header(),
    };
    match authenticate(&state, request.headers(), hops).await {
        Ok(auth) => {
            request.extensions_mut().insert(auth);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    hops: HeaderValue,
) -> Result<AuthContext, GatewayError> {
    let presented = presented_key(headers).ok_or(GatewayError::MissingApiKey)?;
    let hash = shared::keys::hash_api_key(presented);
    let key = state
        .store()
        .key(&hash)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?
        .ok_or(GatewayError::InvalidApiKey)?;
    if key.revoked_at.is_some() {
        return Err(GatewayError::KeyRevoked);
    }
    if key.is_expired(OffsetDateTime::now_utc()) {
        return Err(GatewayError::KeyExpired);
    }
    let sticky_key = headers
        .get(STICKY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(Arc::from);
    Ok(AuthContext {
        key,
        hops,
        sticky_key,
    })
}

/// The presented key: `Authorization: Bearer <key>` (scheme case-insensitive) first, then
/// `x-api-key`. Empty values count as absent.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    bearer
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_bearer_or_x_api_key() {
        let check = |pairs: &[(&'static str, &'static str)], want: Option<&str>| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(presented_key(&h), want, "{pairs:?}");
        };
        check(&[("authorization", "Bearer sk-sy-abc")], Some("sk-sy-abc"));
        check(
            &[("authorization", "bearer   sk-sy-abc ")],
            Some("sk-sy-abc"),
        );
        check(&[("x-api-key", "sk-sy-xyz")], Some("sk-sy-xyz"));
        check(
            &[("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", "k")],
            Some("k"),
        );
        check(&[("authorization", "Bearer ")], None);
        check(&[], None);
    }
}
