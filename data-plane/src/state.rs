//! [`AppState`]: what every handler shares. Cheap to clone (one `Arc`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

use crate::config::Settings;
use crate::store::ConfigStore;
use crate::usage_sink::UsageSink;

/// Idle pooled connections to providers are closed after this long; providers close theirs
/// after about as long, and reusing a connection the other side just closed costs a failed request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keepalive on provider connections, so a dead peer under a long stream is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    store: ConfigStore,
    usage: UsageSink,
    /// One client for every provider: its connection pool is shared, and building a client
    /// (TLS roots) is far too slow to do per request.
    http: reqwest::Client,
    in_flight: InFlight,
}

impl AppState {
    /// Validates `settings` and builds the shared upstream HTTP client.
    pub fn new(settings: Settings, store: ConfigStore, usage: UsageSink) -> anyhow::Result<Self> {
        settings.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .tcp_nodelay(true)
            // A POST to a provider is never redirected: following one could send the provider
            // key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the upstream HTTP client")?;
        crate::tokens::warm_up();
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                store,
                usage,
                http,
                in_flight: InFlight::default(),
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

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Marks a request task as running until the guard is dropped (see [`AppState::drain`]).
    pub(crate) fn track(&self) -> InFlightGuard {
        self.inner.in_flight.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            state: self.clone(),
        }
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
