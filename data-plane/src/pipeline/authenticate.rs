//! Stage 1, authenticate: axum middleware in front of every `/v1` route.
//!
//! The key comes from `Authorization: Bearer <key>` (what OpenAI SDKs send) or `x-api-key`
//! (what Anthropic-style clients send). Its SHA-256 is looked up in the [`ConfigStore`]: a
//! cached key costs no network round trip. Refusals are 401s that say why (missing, unknown,
//! revoked, expired) but never echo the key or its hash. On success the request gets an
//! [`AuthContext`] extension.
//!
//! Then the key's scopes:
//! - `endpoints`: the API the path belongs to ([`endpoint_of`]: chat → `/v1/chat/completions`,
//!   messages → `/v1/messages` and `/v1/messages/count_tokens`, embeddings → `/v1/embeddings`;
//!   `/v1/models` is always allowed) must be listed, else 403 `endpoint_not_allowed` naming the
//!   endpoint;
//! - `allowed_cidrs`: the client's address ([`client_ip`]) must be in one of them, else 403
//!   `ip_not_allowed`, whose message names neither the key nor the allowlist. The client's
//!   address is the TCP peer's, unless the peer is one of `SWITCHYARD_TRUSTED_PROXIES`: then it
//!   is the right-most `X-Forwarded-For` address that is not a trusted proxy (the left part of
//!   that header is whatever the client wrote, so only what trusted proxies appended counts).
//!   A request with no peer address (a router driven in-process) never matches an allowlist.
//!
//! Then the organization: a suspended one (billing, `TenantConfig.suspension`) is refused with
//! 402 `organization_suspended` on every endpoint ([`check_suspension`]).
//!
//! `max_tokens_per_request` is checked once the body is parsed ([`cap_output_tokens`]).
//!
//! [`ConfigStore`]: crate::store::ConfigStore

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use ipnet::IpNet;
use shared::governance::KeyEndpoint;

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
    /// `x-switchyard-tags`, parsed (see [`parse_tags`]); `None` when the request sent none.
    pub tags: Option<Arc<BTreeMap<String, String>>>,
    /// The request's `Cache-Control` directives for the response cache.
    pub cache_control: CacheControl,
}

/// What a request's `Cache-Control` header asks of the response cache (RFC 9111 request
/// directives, as far as they concern a cache in front of an API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-cache`: do not answer from the cache; the fresh answer replaces the entry.
    pub no_cache: bool,
    /// `no-store`: leave the cache out entirely (nothing read, nothing written).
    pub no_store: bool,
}

impl CacheControl {
    /// Parses the `Cache-Control` headers of `headers` (directives are case-insensitive,
    /// comma-separated, possibly over several header lines; unknown ones are ignored).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut out = Self::default();
        for value in headers.get_all(axum::http::header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',') {
                let name = directive.split('=').next().unwrap_or_default().trim();
                if name.eq_ignore_ascii_case("no-cache") {
                    out.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    out.no_store = true;
                }
            }
        }
        out
    }
}

/// The header a client sets to stay on one deployment of a sticky weighted route.
pub const STICKY_KEY_HEADER: &str = "x-switchyard-sticky-key";

/// The header a client tags a request with: `k=v,k=v` (feature, cohort, …), copied into the
/// request's usage event next to the key's `metadata`, which wins on a shared name (an
/// administrator's attribution cannot be overridden by a client).
pub const TAGS_HEADER: &str = "x-switchyard-tags";
/// Most tags one request may carry.
pub const MAX_TAGS: usize = shared::usage::MAX_TAGS;
/// Longest tag name (`[A-Za-z0-9_.-]`, so characters are bytes).
pub const MAX_TAG_NAME: usize = shared::usage::MAX_TAG_KEY_LEN;
/// Longest tag value, in bytes (the usage event's bound).
pub const MAX_TAG_VALUE: usize = shared::usage::MAX_TAG_VALUE_LEN;

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
    let authenticated = authenticate(&state, request.headers(), hops)
        .await
        .and_then(|auth| check_scopes(&state, &auth.key, &request).map(|()| auth));
    match authenticated {
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
    check_suspension(state, &key).await?;
    let sticky_key = headers
        .get(STICKY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(Arc::from);
    let tags = match headers.get(TAGS_HEADER) {
        None => None,
        Some(value) => {
            let invalid = |why: String| GatewayError::InvalidRequest {
                message: format!("the {TAGS_HEADER} header {why}"),
                param: Some(TAGS_HEADER.to_owned()),
            };
            let text = value
                .to_str()
                .map_err(|_| invalid("must be visible ASCII".to_owned()))?;
            Some(Arc::new(parse_tags(text).map_err(invalid)?)).filter(|t| !t.is_empty())
        }
    };
    Ok(AuthContext {
        key,
        hops,
        sticky_key,
        tags,
        cache_control: CacheControl::of(headers),
    })
}

/// Refuses every request of a suspended organization (402 `organization_suspended`), on every
/// endpoint, as soon as the tenant is known. The tenant's config is the same cached snapshot
/// routing reads, so a suspension (or its lifting) applies as soon as the control plane
/// publishes it. A tenant config that cannot be read now is not a refusal here: the stages
/// that need it fail on their own.
async fn check_suspension(state: &AppState, key: &KeyRecord) -> Result<(), GatewayError> {
    let Ok(Some(tenant)) = state.store().tenant(key.tenant_id).await else {
        return Ok(());
    };
    match tenant.suspension() {
        None => Ok(()),
        Some(s) => Err(GatewayError::OrganizationSuspended {
            reason: match s.reason {
                shared::config::SuspensionReason::PaymentFailed => "payment_failed",
                shared::config::SuspensionReason::CreditExhausted => "credit_exhausted",
                shared::config::SuspensionReason::Manual => "manual",
            },
            message: s.message.clone(),
        }),
    }
}

/// Parses `name=value,name=value` (spaces around items trimmed; a later duplicate name wins).
/// Names are 1–[`MAX_TAG_NAME`] characters of `[A-Za-z0-9_.-]`, values at most
/// [`MAX_TAG_VALUE`] bytes, at most [`MAX_TAGS`] tags. The error says what is wrong, never
/// echoing a value.
pub fn parse_tags(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| "must be a list of name=value pairs separated by commas".to_owned())?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || name.len() > MAX_TAG_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(format!(
                "has an invalid tag name: names are 1 to {MAX_TAG_NAME} characters of A-Z, a-z, 0-9, _ . -"
            ));
        }
        if value.len() > MAX_TAG_VALUE {
            return Err(format!(
                "has a value longer than {MAX_TAG_VALUE} bytes (tag {name:?})"
            ));
        }
        tags.insert(name.to_owned(), value.to_owned());
        if tags.len() > MAX_TAGS {
            return Err(format!("has more than {MAX_TAGS} tags"));
        }
    }
    Ok(tags)
}

/// The key's `endpoints` and `allowed_cidrs` scopes for this request.
fn check_scopes(state: &AppState, key: &KeyRecord, request: &Request) -> Result<(), GatewayError> {
    if let Some(allowed) = &key.endpoints
        && let Some((endpoint, path)) = endpoint_of(request.uri().path())
        && !allowed.contains(&endpoint)
    {
        return Err(GatewayError::EndpointNotAllowed { endpoint: path });
    }
    if let Some(cidrs) = &key.allowed_cidrs {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let ip = client_ip(peer, request.headers(), state.trusted_proxies());
        if !ip.is_some_and(|ip| cidrs.iter().any(|net| net.contains(&canonical(ip)))) {
            return Err(GatewayError::ClientIpNotAllowed {
                ip: ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            });
        }
    }
    Ok(())
}

/// The scope an API path belongs to, and the path to name in a refusal; `None` for paths every
/// key may call (`/v1/models`).
pub fn endpoint_of(path: &str) -> Option<(KeyEndpoint, &'static str)> {
    match path.trim_end_matches('/') {
        "/v1/chat/completions" => Some((KeyEndpoint::Chat, "/v1/chat/completions")),
        "/v1/messages" => Some((KeyEndpoint::Messages, "/v1/messages")),
        "/v1/messages/count_tokens" => Some((KeyEndpoint::Messages, "/v1/messages/count_tokens")),
        "/v1/embeddings" => Some((KeyEndpoint::Embeddings, "/v1/embeddings")),
        _ => None,
    }
}

/// The client's address: the TCP `peer`, unless it is a trusted proxy; then the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (every `X-Forwarded-For` header, in
/// order). If every listed address is a trusted proxy, the left-most one; if the header is
/// missing or malformed, the peer.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return Some(peer);
        };
        for item in value.split(',') {
            match parse_forwarded(item.trim()) {
                Some(ip) => hops.push(canonical(ip)),
                None => return Some(peer),
            }
        }
    }
    match hops.iter().rev().find(|ip| !is_trusted(**ip)) {
        Some(ip) => Some(*ip),
        None => Some(hops.first().copied().unwrap_or(peer)),
    }
}

/// An `X-Forwarded-For` item: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded(item: &str) -> Option<IpAddr> {
    item.parse::<IpAddr>()
        .ok()
        .or_else(|| item.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The key's `max_tokens_per_request`: a chat request asking for more output is refused with a
/// 400 naming the field (`max_tokens` on `/v1/messages`, whose body is translated); one asking
/// for none gets it as its `max_completion_tokens`, so no provider generates more.
pub fn cap_output_tokens(
    key: &KeyRecord,
    request: &mut crate::wire::ChatRequest,
    endpoint: &str,
) -> Result<(), GatewayError> {
    let Some(cap) = key.max_tokens_per_request else {
        return Ok(());
    };
    let asked = [
        ("max_completion_tokens", request.max_completion_tokens),
        ("max_tokens", request.max_tokens),
    ];
    for (field, value) in asked {
        if let Some(value) = value
            && value > cap
        {
            let field = if endpoint == crate::anthropic_api::ENDPOINT {
                "max_tokens"
            } else {
                field
            };
            return Err(crate::error::invalid(
                field,
                format!("`{field}` is {value}, more than this API key allows per request ({cap})."),
            ));
        }
    }
    if request.max_completion_tokens.is_none() && request.max_tokens.is_none() {
        request.max_completion_tokens = Some(cap);
    }
    Ok(())
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
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tags_parse_bounded_and_never_echo_values() {
        let tags = parse_tags(" feature=search , cohort = beta,empty=,feature=chat").unwrap();
        assert_eq!(
            tags.into_iter().collect::<Vec<_>>(),
            [
                ("cohort".to_owned(), "beta".to_owned()),
                ("empty".to_owned(), String::new()),
                ("feature".to_owned(), "chat".to_owned()),
            ]
        );
        assert!(parse_tags("").unwrap().is_empty());
        assert!(parse_tags("novalue").unwrap_err().contains("name=value"));
        assert!(parse_tags("bad name=x").unwrap_err().contains("tag name"));
        assert!(parse_tags(&format!("{}=x", "n".repeat(65))).is_err());
        let long = format!("n=secret{}", "x".repeat(300));
        let err = parse_tags(&long).unwrap_err();
        assert!(
            err.contains("longer than 256") && !err.contains("secret"),
            "{err}"
        );
        let many: Vec<String> = (0..17).map(|i| format!("t{i}=v")).collect();
        assert!(
            parse_tags(&many.join(","))
                .unwrap_err()
                .contains("more than 16")
        );
        let max: Vec<String> = (0..16).map(|i| format!("t{i}=v")).collect();
        assert_eq!(parse_tags(&max.join(",")).unwrap().len(), 16);
    }

    #[test]
    fn the_client_ip_is_the_peer_unless_a_trusted_proxy_forwards() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static(v));
            h
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff("1.1.1.1"), &trusted),
            ip("203.0.113.9")
        );
        // A trusted peer: the right-most address that is not a trusted proxy.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &xff("6.6.6.6, 198.51.100.7, 10.0.0.1"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // No header: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        // Nothing trusted: the header is ignored.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff("6.6.6.6"), &[]),
            ip("10.0.0.2")
        );
        // IPv4-mapped IPv6 peers count as IPv4.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &xff("192.0.2.1:443"), &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(client_ip(None, &xff("6.6.6.6"), &trusted), None);
    }

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
