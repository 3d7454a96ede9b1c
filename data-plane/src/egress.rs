//! Everything between the gateway and a provider's address: the egress (SSRF) policy enforced
//! at connection time, and the hop header that stops request loops.
//!
//! # Egress
//!
//! Base URLs are tenant input, so every upstream connection is checked against
//! [`EgressPolicy`] (`SWITCHYARD_UPSTREAM_ALLOW_CIDRS`, see `shared::egress`) *when it is made*,
//! not only when the provider is saved: a name that resolved to a public address at write time
//! can resolve to `127.0.0.1` later (DNS rebinding). Two doors lead to a socket and both are
//! guarded:
//!
//! - host names go through [`EgressResolver`], the HTTP client's only resolver: it resolves,
//!   drops every refused address and fails when none is left, so the client never dials one;
//! - IP-literal hosts (`http://127.0.0.1`, `http://2130706433`, `http://[::ffff:7f00:1]`) never
//!   reach a resolver, so [`UpstreamClient::send`] checks them before the request leaves.
//!
//! Redirects are never followed (a redirect could point anywhere and would carry the provider
//! key), and no system proxy is used (it would connect on our behalf, past the resolver).
//!
//! # Loops
//!
//! A provider's base URL can point at the gateway itself, or at another organization's
//! provider that points back. Every upstream request therefore carries [`HOP_HEADER`]: the hops
//! the incoming request already had, plus this cluster's tag. The tag is derived from the master
//! key ([`MasterKey::derive_tag`](shared::crypto::MasterKey::derive_tag)), so every node of one
//! deployment shares it and nobody without the key can predict it. [`loop_guard`] runs at the
//! edge before anything else: a request carrying our own tag came from us, so it is a loop and
//! is refused with 508 before authentication, routing or metering; a request with more than
//! [`MAX_HOPS`] hops (a loop through other gateways) is refused the same way. The calling node
//! turns the 508 it receives into its own `loop_detected` answer, so a loop costs exactly one
//! extra request and one usage event, whatever the topology.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderName;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shared::egress::{EgressPolicy, Refused};
use tokio::time::{Instant, timeout_at};

use crate::config::Settings;
use crate::error::{GatewayError, Unreachable};

/// The header carrying the chain of gateways a request has passed through.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("x-switchyard-hop");
/// The most hops an incoming request may already carry. Legitimate chains (an app → a team
/// gateway → a central gateway) are two or three long; a loop through foreign gateways is cut here.
pub const MAX_HOPS: usize = 8;
/// Longest hop entry we pass on; ours are 35 characters.
const MAX_HOP_ENTRY: usize = 64;
/// How long resolving a provider's host name may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections to providers are closed after this long; providers close theirs
/// after about as long, and reusing a connection the other side just closed costs a failed request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keepalive on provider connections, so a dead peer under a long stream is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

// === impl HopTag ===

/// This cluster's hop tag, `sy-` + 32 hex digits, and the header value for a request with no
/// incoming hops (the common case, so it is built once).
#[derive(Debug, Clone)]
pub struct HopTag {
    tag: String,
    alone: HeaderValue,
}

impl HopTag {
    pub fn new(bytes: [u8; 16]) -> Self {
        let tag = format!("sy-{}", hex::encode(bytes));
        let alone = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("sy-invalid"));
        Self { tag, alone }
    }

    pub fn as_str(&self) -> &str {
        &self.tag
    }

    /// The hop header for a request that arrived with no hops.
    pub fn header(&self) -> HeaderValue {
        self.alone.clone()
    }
}

/// The value of [`HOP_HEADER`] on this request's upstream calls: incoming hops plus ours.
/// Inserted by [`loop_guard`]; read by authenticate, which keeps it in the `AuthContext`.
#[derive(Debug, Clone)]
pub struct Hops(pub HeaderValue);

/// Edge middleware: refuses looping requests (508) and records the hops to send upstream.
pub async fn loop_guard(
    State(tag): State<Arc<HopTag>>,
    mut request: Request,
    next: Next,
) -> Response {
    match outgoing_hops(&tag, request.headers().get_all(HOP_HEADER).iter()) {
        Ok(hops) => {
            request.extensions_mut().insert(Hops(hops));
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The outgoing hop chain, or the loop error. Entries are comma-separated, possibly over
/// several header lines; malformed ones (not a short token) are dropped rather than passed on.
fn outgoing_hops<'a>(
    tag: &HopTag,
    incoming: impl Iterator<Item = &'a HeaderValue>,
) -> Result<HeaderValue, GatewayError> {
    let mut chain: Vec<&str> = Vec::new();
    for value in incoming {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == tag.as_str() {
                return Err(GatewayError::LoopDetected {
                    hops: chain.len() + 1,
                });
            }
            let token = entry.len() <= MAX_HOP_ENTRY
                && entry
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if token {
                chain.push(entry);
            }
            if chain.len() > MAX_HOPS {
                return Err(GatewayError::LoopDetected { hops: chain.len() });
            }
        }
    }
    if chain.is_empty() {
        return Ok(tag.alone.clone());
    }
    chain.push(tag.as_str());
    HeaderValue::from_str(&chain.join(", "))
        .map_err(|_| GatewayError::Internal("hop chain is not a valid header".to_owned()))
}

// === impl EgressResolver ===

/// The upstream client's resolver: system DNS, then the egress policy.
#[derive(Debug, Clone)]
pub struct EgressResolver {
    policy: Arc<EgressPolicy>,
}

/// Why a host name yields no address we may connect to; found again by walking the error's
/// sources (see [`classify`]).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("egress policy refuses {host}: it resolves only to {refused}es")]
    Refused { host: String, refused: Refused },
    #[error("DNS lookup of {host} failed: {reason}")]
    Dns { host: String, reason: String },
    #[error("DNS lookup of {host} timed out")]
    Timeout { host: String },
}

impl EgressResolver {
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }

    /// Resolves `host` and keeps the addresses the policy allows.
    pub async fn resolve_allowed(
        policy: &EgressPolicy,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let host_owned = || host.chars().take(255).collect::<String>();
        let lookup = tokio::net::lookup_host((host, port));
        let addrs = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
            Err(_) => return Err(ResolveError::Timeout { host: host_owned() }),
            Ok(Err(e)) => {
                return Err(ResolveError::Dns {
                    host: host_owned(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(addrs)) => addrs,
        };
        let mut allowed = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match policy.check(addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refused)) => Err(ResolveError::Refused {
                host: host_owned(),
                refused,
            }),
            (true, None) => Err(ResolveError::Dns {
                host: host_owned(),
                reason: "no addresses".to_owned(),
            }),
        }
    }
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addrs = Self::resolve_allowed(&policy, name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

// === impl UpstreamClient ===

/// The one HTTP client for every provider: a shared connection pool, the egress policy at
/// connection time, bounded pools and timeouts.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
    /// The node's settings the clients are built from.
    settings: Settings,
    /// Clients for routes with their own `connect_ms` (a connect timeout is a client setting in
    /// reqwest), by timeout; bounded by [`MAX_CONNECT_VARIANTS`].
    by_connect: Arc<std::sync::Mutex<std::collections::HashMap<u64, reqwest::Client>>>,
}

/// Most distinct per-route connect timeouts that get their own client (and pool); routes past
/// that use the node's connect timeout.
const MAX_CONNECT_VARIANTS: usize = 16;

impl UpstreamClient {
    pub fn new(settings: &Settings, policy: Arc<EgressPolicy>) -> anyhow::Result<Self> {
        let client = Self::build(settings, Arc::clone(&policy))?;
        Ok(Self {
            client,
            policy,
            settings: settings.clone(),
            by_connect: Arc::default(),
        })
    }

    /// The client for `connect_ms`: the node's own, or one built (once) for a route's value.
    fn client_for(&self, connect_ms: u64) -> reqwest::Client {
        if connect_ms == self.settings.upstream_connect_timeout_ms {
            return self.client.clone();
        }
        let mut clients = self.by_connect.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&connect_ms) {
            return client.clone();
        }
        if clients.len() >= MAX_CONNECT_VARIANTS {
            return self.client.clone();
        }
        let settings = Settings {
            upstream_connect_timeout_ms: connect_ms,
            ..self.settings.clone()
        };
        match Self::build(&settings, Arc::clone(&self.policy)) {
            Ok(client) => {
                clients.insert(connect_ms, client.clone());
                client
            }
            Err(_) => self.client.clone(),
        }
    }

    fn build(settings: &Settings, policy: Arc<EgressPolicy>) -> anyhow::Result<reqwest::Client> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(settings.upstream_max_idle_per_host)
            .tcp_keepalive(TCP_KEEPALIVE)
            .tcp_nodelay(true)
            // A POST to a provider is never redirected: following one could send the provider
            // key to another host, and would bypass the egress check of IP literals.
            .redirect(reqwest::redirect::Policy::none())
            // A system proxy would connect on our behalf, past the resolver's check.
            .no_proxy()
            .dns_resolver(Arc::new(EgressResolver::new(Arc::clone(&policy))))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(client)
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends `builder` with the hop header and the W3C trace context
    /// ([`crate::telemetry`]), after checking an IP-literal host against the egress policy;
    /// connects within `connect_ms` and waits for the response headers until
    /// `headers_deadline`.
    pub(crate) async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        hops: &HeaderValue,
        connect_ms: u64,
        headers_deadline: Instant,
    ) -> Result<reqwest::Response, GatewayError> {
        let (_, request) = builder.header(HOP_HEADER, hops.clone()).build_split();
        let client = self.client_for(connect_ms);
        let mut request = request.map_err(|e| {
            GatewayError::ProviderUnavailable(format!(
                "cannot build the upstream request: {}",
                e.without_url()
            ))
        })?;
        // W3C trace context (our attempt's span, or the caller's context passed through).
        crate::telemetry::outgoing(&mut request);
        let url = request.url();
        let host = url.host_str().unwrap_or_default().to_owned();
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(refused) = self.policy.check(ip)
        {
            return Err(GatewayError::EgressRefused { host, refused });
        }
        match timeout_at(headers_deadline, client.execute(request)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout("no response headers in time")),
            Ok(Err(e)) => Err(classify(&host, e)),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// A failed send, named by host and cause. The URL is never included: a base URL may carry
/// credentials in its path or query.
pub(crate) fn classify(host: &str, e: reqwest::Error) -> GatewayError {
    let host: String = host.chars().take(255).collect();
    // Our resolver's verdict sits somewhere down the source chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(resolve) = err.downcast_ref::<ResolveError>() {
            return match resolve {
                ResolveError::Refused { refused, .. } => GatewayError::EgressRefused {
                    host,
                    refused: *refused,
                },
                ResolveError::Dns { .. } => GatewayError::UpstreamUnreachable {
                    host,
                    why: Unreachable::Dns,
                },
                ResolveError::Timeout { .. } => GatewayError::UpstreamUnreachable {
                    host,
                    why: Unreachable::Timeout,
                },
            };
        }
        source = err.source();
    }
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    let chain = crate::providers::transport::error_chain(&e.without_url()).to_ascii_lowercase();
    if timeout {
        return GatewayError::UpstreamUnreachable {
            host,
            why: Unreachable::Timeout,
        };
    }
    if connect {
        let why = if chain.contains("certificate")
            || chain.contains("tls")
            || chain.contains("handshake")
        {
            Unreachable::Tls
        } else if chain.contains("refused") {
            Unreachable::Refused
        } else if chain.contains("timed out") || chain.contains("timeout") {
            Unreachable::Timeout
        } else if chain.contains("dns") || chain.contains("resolve") {
            Unreachable::Dns
        } else {
            Unreachable::Other
        };
        return GatewayError::UpstreamUnreachable { host, why };
    }
    GatewayError::UpstreamProtocol(format!("no response from {host}: {chain}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn tag() -> HopTag {
        HopTag::new([7u8; 16])
    }

    fn hops(values: &[&'static str]) -> Result<String, GatewayError> {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_static(v)).collect();
        outgoing_hops(&tag(), values.iter()).map(|v| v.to_str().expect("ascii").to_owned())
    }

    #[test]
    fn our_own_tag_is_a_loop_and_foreign_hops_are_passed_on() {
        let ours = tag().as_str().to_owned();
        assert_eq!(hops(&[]).expect("no hops"), ours);
        assert_eq!(
            hops(&["sy-aaaa"]).expect("foreign"),
            format!("sy-aaaa, {ours}")
        );
        assert_eq!(
            hops(&["sy-aaaa, sy-bbbb", "sy-cccc"]).expect("several lines"),
            format!("sy-aaaa, sy-bbbb, sy-cccc, {ours}")
        );
        let looped: &'static str = Box::leak(format!("sy-aaaa, {ours}").into_boxed_str());
        assert_eq!(hops(&[looped]).expect_err("loop").code(), "loop_detected");
        // Junk is dropped, not propagated.
        assert_eq!(
            hops(&["bad value!, sy-ok"]).expect("junk dropped"),
            format!("sy-ok, {ours}")
        );
    }

    #[test]
    fn too_many_hops_are_refused() {
        let long: &'static str = Box::leak(
            (0..=MAX_HOPS)
                .map(|i| format!("gw-{i}"))
                .collect::<Vec<_>>()
                .join(",")
                .into_boxed_str(),
        );
        assert_eq!(hops(&[long]).expect_err("too deep").status().as_u16(), 508);
        let ok: &'static str = Box::leak(
            (0..MAX_HOPS)
                .map(|i| format!("gw-{i}"))
                .collect::<Vec<_>>()
                .join(",")
                .into_boxed_str(),
        );
        assert!(hops(&[ok]).is_ok());
    }
}
