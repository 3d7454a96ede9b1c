//! [`AppState`]: what every handler shares. Cheap to clone (one `Arc`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

use crate::admission::{Admission, Limits};
use crate::config::Settings;
use crate::egress::{HopTag, UpstreamClient};
use crate::error::GatewayError;
use crate::governance::ledger::{Ledger, LedgerOptions};
use crate::governance::limits::RateLimiter;
use crate::lifecycle::Lifecycle;
use crate::response_cache::ResponseCache;
use crate::routing::{Health, HealthSettings, Quotas};
use crate::store::ConfigStore;
use crate::usage_sink::UsageSink;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    store: ConfigStore,
    usage: UsageSink,
    /// One client for every provider: its connection pool is shared, and building a client
    /// (TLS roots) is far too slow to do per request. It enforces the egress policy.
    http: UpstreamClient,
    /// This cluster's loop-detection tag (see [`crate::egress`]).
    hop_tag: Arc<HopTag>,
    /// Per-node concurrency caps (see [`crate::admission`]).
    limits: Limits,
    /// Per-deployment health: latency, success rate, circuit breakers (see [`crate::routing`]).
    health: Health,
    /// Provider quota counters, shared through Redis when there is one.
    quotas: Quotas,
    /// Key, team and organization rate limits (see [`crate::governance::limits`]).
    rate_limiter: RateLimiter,
    /// `SWITCHYARD_TRUSTED_PROXIES`, parsed (see `pipeline::authenticate::client_ip`).
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The budget ledger: Redis (with this node's leases) when there is one, else in memory.
    ledger: Ledger,
    in_flight: InFlight,
    /// Serving, stopping or cutting (see [`crate::lifecycle`]).
    lifecycle: Lifecycle,
    /// Stored answers (see [`crate::response_cache`]): Redis when there is one, else in memory.
    response_cache: ResponseCache,
}

impl AppState {
    /// Validates `settings` and builds the shared upstream HTTP client.
    pub fn new(settings: Settings, store: ConfigStore, usage: UsageSink) -> anyhow::Result<Self> {
        settings.validate()?;
        let policy = Arc::new(settings.egress_policy()?);
        let http = UpstreamClient::new(&settings, policy)
            .context("cannot build the upstream HTTP client")?;
        let hop_tag = Arc::new(HopTag::new(store.hop_tag()));
        let quotas = Quotas::new(store.redis_parts());
        let redis_wait = Duration::from_millis(settings.governance_redis_timeout_ms);
        let rate_limiter =
            RateLimiter::with_redis_wait(store.redis_parts(), settings.node_count, redis_wait);
        let trusted_proxies = settings.trusted_proxies()?;
        let ledger = match store.redis_parts() {
            Some((pool, keys)) => Ledger::redis(
                pool,
                keys,
                LedgerOptions {
                    lease_ttl: Duration::from_millis(settings.budget_lease_ttl_ms),
                    redis_wait,
                    ..LedgerOptions::default()
                },
            ),
            None => Ledger::memory(),
        };
        let limits = Limits::new(
            settings.max_concurrent_requests,
            settings.max_concurrent_per_org,
            settings.max_concurrent_per_provider,
        );
        let response_cache = ResponseCache::new(store.redis_parts(), redis_wait);
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                store,
                usage,
                http,
                hop_tag,
                limits,
                health: Health::new(HealthSettings::default()),
                quotas,
                rate_limiter,
                trusted_proxies,
                ledger,
                in_flight: InFlight::default(),
                lifecycle: Lifecycle::default(),
                response_cache,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn store(&self) -> &ConfigStore {
        &self.inner.store
    }

    pub fn usage(&self) -> &UsageSink {
        &self.inner.usage
    }

    pub(crate) fn http(&self) -> &UpstreamClient {
        &self.inner.http
    }

    /// This cluster's hop tag, for the loop guard.
    pub fn hop_tag(&self) -> Arc<HopTag> {
        Arc::clone(&self.inner.hop_tag)
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Provider quota counters (see [`crate::routing::quota`]).
    pub fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    /// Key, team and organization rate limits.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.rate_limiter
    }

    /// Uses `limiter` instead of the one built from the config store (several nodes counting
    /// in one Redis while their records come from an in-memory store, as in tests). Only
    /// before the state is shared: a state already cloned is refused.
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> anyhow::Result<Self> {
        let inner = Arc::get_mut(&mut self.inner)
            .context("with_rate_limiter must be called before the state is cloned")?;
        inner.rate_limiter = limiter;
        Ok(self)
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.inner.trusted_proxies
    }

    /// The budget ledger (see [`crate::governance::ledger`]); the zero-setup control plane
    /// reads the same one.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// This node's view of every deployment's health.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Admits a request task of `tenant` (see [`crate::admission`]): marks it in flight for
    /// the shutdown drain and takes its node and organization slots, or refuses it at once.
    pub(crate) fn admit(&self, tenant: uuid::Uuid) -> Result<Admission, GatewayError> {
        self.inner.limits.admit(tenant, self.track())
    }

    /// Marks a request task as running until the guard is dropped (see [`AppState::drain`]).
    pub(crate) fn track(&self) -> InFlightGuard {
        self.inner.in_flight.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            state: self.clone(),
        }
    }

    /// Where the process is in its life (see [`crate::lifecycle`]): `/readyz` reads it, request
    /// tasks wait on its cut.
    pub fn response_cache(&self) -> &ResponseCache {
        &self.inner.response_cache
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Request tasks running right now (each until its usage event is emitted).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.count.load(Ordering::Acquire)
    }

    /// On shutdown, after the server stopped accepting requests: waits until every request
    /// task has emitted its usage event, or `timeout` passes. Returns how many are still running.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let in_flight = &self.inner.in_flight;
        let wait = async {
            loop {
                // Register interest before checking, so a guard dropped in between still wakes us.
                let notified = in_flight.zero.notified();
                if in_flight.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        in_flight.count.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    zero: Notify,
}

/// Held by each request task for its whole life, metering included.
pub(crate) struct InFlightGuard {
    state: AppState,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let in_flight = &self.state.inner.in_flight;
        if in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            in_flight.zero.notify_waiters();
        }
    }
}
