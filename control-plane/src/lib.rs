//! The Switchyard control plane: the management API (organizations, users, API keys, provider
//! credentials, model deployments, usage) over a PostgreSQL or SQLite database, and the
//! publisher that hands committed config to the data plane.
//!
//! Without `REDIS_URL` (the zero-setup default) the same process also serves the data plane's
//! OpenAI-compatible `/v1` routes on the same port, connected through an in-process bus. With
//! `REDIS_URL` it serves only the control API and talks to data-plane nodes through Redis.
//!
//! # Layout
//!
//! - [`config`]: [`Config`](config::Config), parsed once from the environment and validated.
//! - [`catalog`]: the model catalog (built-in `catalog/models.json` or `SWITCHYARD_CATALOG_PATH`),
//!   validated at start.
//! - [`secrets`]: the zero-setup secrets file (generated master key and JWT secret).
//! - [`db`]: connecting (SQLite tuned for one writer) and running the `migrations` crate.
//! - [`entities`]: sea-orm rows, one module per table; never used as API types.
//! - [`error`]: [`ApiError`](error::ApiError), the one error type, rendered as
//!   `{"error":{"code","message"}}` in one place.
//! - [`audit`]: the audit log every change to an organization goes through (stored in the
//!   change's transaction, with before/after snapshots scrubbed of secrets).
//! - [`auth`]: passwords (argon2id), access tokens (JWT, bound to a session), refresh tokens,
//!   roles and the [`AuthUser`](auth::AuthUser) extractor.
//! - [`password`]: the password policy (length, zxcvbn strength).
//! - [`throttle`]: login throttling per account and client IP, sign-up rate per client IP, and
//!   the [`ClientIp`](throttle::ClientIp) extractor.
//! - [`http`]: one module per resource under `/api/v1`, plus health, `GET /metrics`
//!   (`http::metrics`, with the middleware counting every API request), `GET /api/v1/meta`, the
//!   web console (`http::console`, the embedded `web/dist` served at `/`) and the middleware
//!   stack.
//! - [`openapi`]: the OpenAPI document and Swagger UI (`/docs`).
//! - [`sync`]: the config outbox worker: committed changes → published records.
//! - [`publish`]: [`Publisher`](publish::Publisher), writes records to Redis or the in-process bus.
//! - [`ingest`]: moves usage events from Redis (or the in-process channel) into the database.
//! - [`usage_store`]: the database side of ingest ([`DbUsageWriter`](usage_store::DbUsageWriter)).
//! - [`alerts`]: the budget alert worker (thresholds crossed → `budget_alerts`, signed webhook
//!   deliveries with retries); [`ledger`]: the budget ledger's read side.
//! - [`rollup`]: rollup keys and aggregation (minute/hour/day × dimensions × tag) for
//!   `usage_rollups`; [`retention`]: the worker that drops old usage partitions, rows, payloads
//!   and rollups per organization.
//! - [`analytics`]: timeseries and breakdowns over the usage rollups (merged sketches for
//!   percentiles); the request log and CSV export live in `http::requests` and `http::usage`.
//! - [`billing`]: plans, Stripe customers and checkout, metered usage reports, webhooks,
//!   suspension (off without `STRIPE_SECRET_KEY`).
//! - [`state`]: [`AppState`](state::AppState), what handlers share.
//!
//! # Entry points
//!
//! [`run`] is the binary: start, wait for SIGTERM or Ctrl-C, shut down gracefully. [`start`]
//! does everything up to serving and returns a [`RunningControlPlane`] (tests use it on
//! `127.0.0.1:0`). [`app`] is the bare control-plane router for `oneshot` tests.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod openapi;
pub mod password;
pub mod publish;
pub mod retention;
pub mod rollup;
pub mod secrets;
pub mod sketch;
pub mod state;
pub mod sync;
pub mod throttle;
pub mod usage_store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sea_orm::DatabaseConnection;
use shared::bus::MemoryBus;
use shared::config::RedisKeys;
use shared::crypto::MasterKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::TokenService;
use crate::config::{Config, LogFormat};
use crate::publish::Publisher;
use crate::state::AppState;
use crate::sync::ConfigSync;
use crate::throttle::{Clock, SystemClock, Throttle};
use crate::usage_store::DbUsageWriter;
use data_plane::config::ShutdownSettings;
use data_plane::lifecycle::{remaining, shutdown_signal};

/// The control-plane router on its own (no `/v1`), for `tower::ServiceExt::oneshot` tests.
pub fn app(state: AppState) -> Router {
    http::router(state)
}

/// The binary: starts, serves until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let telemetry = data_plane::telemetry::init(
        "switchyard-control-plane",
        config.log_format,
        data_plane::telemetry::LogOutput::Stderr,
    )?;
    let running = start(config).await?;
    let failure = tokio::select! {
        () = shutdown_signal() => None,
        // Not expected (axum's accept loop does not end on its own); still settle and flush
        // what was served before reporting it.
        result = running.server_stopped() => Some(
            result.err().unwrap_or_else(|| anyhow::anyhow!("the HTTP server stopped unexpectedly")),
        ),
    };
    let result = running.shutdown().await;
    // Last: the embedded gateway's requests have ended; send their spans (bounded).
    telemetry.shutdown().await;
    result?;
    failure.map_or(Ok(()), Err)
}

/// A started control plane. Dropping it does not stop it; call [`RunningControlPlane::shutdown`].
pub struct RunningControlPlane {
    /// The address the listener is bound to (the real port when `SWITCHYARD_LISTEN` used port 0).
    pub addr: SocketAddr,
    state: AppState,
    embedded: Option<EmbeddedDataPlane>,
    stop_server: watch::Sender<bool>,
    stop_workers: watch::Sender<bool>,
    server: tokio::sync::Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    workers: Vec<JoinHandle<()>>,
    /// `SWITCHYARD_SHUTDOWN_*`: the timing of [`RunningControlPlane::shutdown`].
    shutdown: ShutdownSettings,
}

/// The in-process pieces of the zero-setup mode.
struct EmbeddedDataPlane {
    bus: Arc<MemoryBus>,
    state: data_plane::AppState,
}

impl std::fmt::Debug for RunningControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningControlPlane")
            .field("addr", &self.addr)
            .field("embedded", &self.embedded.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningControlPlane {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, with `127.0.0.1` when bound to an unspecified address.
    pub fn base_url(&self) -> String {
        format!("http://{}", display_addr(self.addr))
    }

    /// The database pool (tests read rows directly).
    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// The shared application state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The in-process bus, in zero-setup mode.
    pub fn memory_bus(&self) -> Option<&Arc<MemoryBus>> {
        self.embedded.as_ref().map(|e| &e.bus)
    }

    /// Resolves when the HTTP server ends on its own (an error, normally never).
    async fn server_stopped(&self) -> anyhow::Result<()> {
        let mut guard = self.server.lock().await;
        match guard.as_mut() {
            Some(handle) => {
                let result = handle.await;
                *guard = None;
                result.context("server task")?.context("server")
            }
            None => std::future::pending().await,
        }
    }

    /// Graceful stop (see `data_plane::lifecycle`): `/readyz` answers 503 at once; after
    /// `SWITCHYARD_SHUTDOWN_DELAY_SECONDS` stop accepting and let open requests finish (the
    /// embedded gateway's request tasks included) for up to `SWITCHYARD_SHUTDOWN_GRACE_SECONDS`,
    /// cut what is left; then, within `SWITCHYARD_SHUTDOWN_DRAIN_SECONDS`, let usage events
    /// reach the ingest, stop ingest (it stores what is queued) and the other workers, and close
    /// the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let gateway = self.embedded.as_ref().map(|e| &e.state);
        let server = self.server.lock().await.take();
        let drain_end = match server {
            Some(server) => {
                data_plane::lifecycle::stop_serving(
                    &self.state.lifecycle,
                    &self.stop_server,
                    server,
                    gateway,
                    &self.shutdown,
                )
                .await
            }
            // The server already ended on its own (see `run`): settle what its requests left.
            None => {
                self.state.lifecycle.cut_requests();
                if let Some(gateway) = gateway {
                    gateway.drain(self.shutdown.drain() / 2).await;
                }
                tokio::time::Instant::now() + self.shutdown.drain() / 2
            }
        };
        if let Some(gateway) = gateway {
            gateway.ledger().shutdown().await;
            let unwritten = gateway.usage().flush(remaining(drain_end)).await;
            if unwritten > 0 {
                tracing::error!(
                    unwritten,
                    "usage events could not be handed to ingest before shutdown"
                );
            }
        }
        let _ = self.stop_workers.send(true);
        for worker in self.workers {
            let abort = worker.abort_handle();
            if tokio::time::timeout_at(drain_end, worker).await.is_err() {
                tracing::warn!(
                    drain_seconds = self.shutdown.shutdown_drain_seconds,
                    "a background task did not stop within the drain period"
                );
                abort.abort();
            }
        }
        if let Err(e) = self.state.db.clone().close().await {
            tracing::warn!(error = %e, "closing the database pool");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Validates `config`, opens and migrates the database, wires the publisher and usage ingest
/// (Redis or in-process), republishes all config, binds the listener and starts serving.
pub async fn start(config: Config) -> anyhow::Result<RunningControlPlane> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with the clock the login and sign-up throttles read, so tests can move time
/// forward instead of waiting out a lock.
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningControlPlane> {
    config.validate()?;
    // Before anything records a metric (once per process; tests start many planes).
    let _ = data_plane::metrics_registry::recorder();
    let billing = billing::Billing::from_settings(&config.billing)?;
    let security = http::security::Security::from_config(&config)?;
    // Before touching the database: a bad catalog file is a configuration error.
    let catalog = Arc::new(catalog::Catalog::load(config.catalog_path.as_deref())?);
    let embedded = config.is_embedded();
    let node_id = config.node_id();

    if embedded || config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create SWITCHYARD_DATA_DIR {}",
                config.data_dir.display()
            )
        })?;
    }
    let (master_key, jwt_secret) = resolve_secrets(&config)?;
    let database_url = config.database_url();
    let db = db::connect_and_migrate(&database_url).await?;
    tracing::info!(
        node_id = %node_id,
        mode = if embedded { "zero-setup (data plane embedded, no Redis)" } else { "distributed (Redis)" },
        database = %config::redact_url(&database_url),
        catalog_models = catalog.len(),
        catalog_as_of = catalog.as_of(),
        upstream_allow_cidrs = %security.egress.allowed().iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        cors_origins = security.cors_origins.len(),
        "control plane starting"
    );

    let (stop_server, server_rx) = watch::channel(false);
    let (stop_workers, workers_rx) = watch::channel(false);
    let writer = Arc::new(DbUsageWriter::new(db.clone()));
    let mut workers = Vec::new();

    let mut observed = http::metrics::Observed {
        token: config.settings.metrics_token.clone(),
        ..Default::default()
    };
    let (publisher, embedded_dp, ledger) = if embedded {
        let bus = MemoryBus::new();
        let publisher = Publisher::in_memory(bus.clone());
        let usage_rx = bus
            .take_usage_receiver()
            .context("the in-process usage channel was already taken")?;
        workers.push(ingest::spawn_memory_ingest(
            usage_rx,
            writer,
            workers_rx.clone(),
        ));
        let store = data_plane::store::ConfigStore::in_memory(bus.clone(), master_key.clone());
        let sink = data_plane::usage_sink::UsageSink::in_memory(bus.usage_sender());
        let dp_state = data_plane::AppState::new(config.settings.clone(), store, sink)
            .context("cannot start the embedded data plane")?;
        // One ledger for both planes: the control plane reads what the gateway reserves.
        let ledger = dp_state.ledger().clone();
        observed.gateway = Some(dp_state.clone());
        (
            publisher,
            Some(EmbeddedDataPlane {
                bus,
                state: dp_state,
            }),
            ledger,
        )
    } else {
        let redis_url = config
            .redis_url
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or_default();
        let pool = data_plane::store::redis_pool(redis_url).context("REDIS_URL")?;
        let keys = RedisKeys::new(config.redis_prefix.clone());
        observed.redis = Some(pool.clone());
        workers.push(ingest::spawn_redis_ingest_with_options(
            pool.clone(),
            keys.clone(),
            node_id.clone(),
            writer,
            workers_rx.clone(),
            ingest::IngestOptions::with_claim_idle(Duration::from_millis(
                config.usage_claim_idle_ms,
            )),
        ));
        // Reads only: this ledger never holds a lease, so its flusher stays idle.
        let ledger = data_plane::governance::ledger::Ledger::redis(
            pool.clone(),
            keys.clone(),
            Default::default(),
        );
        (Publisher::redis(pool, keys), None, ledger)
    };

    let sync = ConfigSync::new(db.clone(), publisher);
    if embedded_dp.is_some() {
        // The in-process bus starts empty and cannot fail: fill it before serving, so the very
        // first gateway request already finds its key.
        sync.publish_all()
            .await
            .context("publishing config to the embedded data plane")?;
        workers.push(sync.spawn_worker(false, workers_rx.clone()));
    } else {
        // Redis may be down right now; the worker retries in the background.
        workers.push(sync.spawn_worker(true, workers_rx.clone()));
    }

    let tokens = TokenService::new(
        &jwt_secret,
        Duration::from_secs(config.access_token_ttl_secs),
        Duration::from_secs(config.refresh_token_ttl_secs),
    );
    let state = AppState {
        db,
        tokens: Arc::new(tokens),
        master_key,
        sync,
        catalog,
        throttle: Arc::new(Throttle::new(config.throttle_settings(), clock)),
        security: Arc::new(security),
        ledger,
        billing: Arc::new(billing),
        meta: Arc::new(http::meta::Meta {
            gateway_base_url: config
                .public_gateway_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            embedded_gateway: embedded,
        }),
        observed,
        // Zero-setup: the embedded gateway's, so `/readyz` and the gateway's cut are one.
        lifecycle: embedded_dp
            .as_ref()
            .map(|dp| dp.state.lifecycle().clone())
            .unwrap_or_default(),
    };
    data_plane::metrics_registry::build_info("control");
    if embedded {
        data_plane::metrics_registry::build_info("data");
    }

    // The budget ledger knows at least what the database recorded before any request is served
    // (an in-memory ledger starts empty; see `alerts::reconcile`). Best effort: with Redis down
    // the data plane fails closed on budgets anyway, and the alert worker retries every pass.
    match alerts::reconcile(&state, time::OffsetDateTime::now_utc()).await {
        Ok(n) if n > 0 => tracing::info!(budgets = n, "budget ledger raised to recorded spend"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "budget ledger reconciliation failed at start; the alert worker retries")
        }
    }

    // Budget alerts: detector and webhook sender, in both modes (see `alerts`). Webhooks go out
    // through the gateway's egress-checked client.
    let webhook_client = data_plane::egress::UpstreamClient::new(
        &config.settings,
        Arc::new(state.security.egress.clone()),
    )
    .context("building the alert webhook client")?;
    // Billing (metered usage reporter, suspension check): only with STRIPE_SECRET_KEY.
    workers.extend(billing::spawn(state.clone(), workers_rx.clone()));
    workers.push(alerts::spawn(
        state.clone(),
        webhook_client,
        Duration::from_millis(config.alert_interval_ms),
        workers_rx.clone(),
    ));
    // Usage retention: drops old partitions and rows, trims rollups (see `retention`).
    workers.push(retention::spawn(
        state.db.clone(),
        config.retention_settings(),
        Duration::from_secs(config.retention_interval_secs),
        workers_rx,
    ));

    let router = match &embedded_dp {
        // The gateway's /v1 routes keep their own middleware (request id = usage event id,
        // OpenAI error shape); the control plane's stack wraps only its own routes.
        Some(dp) => http::with_fallback(
            http::routes(state.clone()).merge(data_plane::v1_router(dp.state.clone())),
            &state,
        ),
        None => http::router(state.clone()),
    };

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (SWITCHYARD_LISTEN)", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("listening on http://{addr}");
    if embedded {
        print_getting_started(
            addr,
            config.log_format,
            if db::is_sqlite(&database_url) {
                "SQLite"
            } else {
                "PostgreSQL"
            },
        );
    }

    let mut stop = server_rx;
    // TCP_NODELAY (Nagle's algorithm would hold small SSE chunks back for up to ~40 ms), and
    // JSON bodies for the errors the HTTP parser answers itself (414, 431, 400).
    let listener = data_plane::http::listener::listener(listener);
    // With the peer address in each request's extensions: the login and sign-up throttles count
    // per client address (`throttle::ClientIp`).
    let server = tokio::spawn(
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .into_future(),
    );

    Ok(RunningControlPlane {
        addr,
        state,
        embedded: embedded_dp,
        stop_server,
        stop_workers,
        server: tokio::sync::Mutex::new(Some(server)),
        workers,
        shutdown: config.shutdown,
    })
}

/// The master key and JWT secret: from the environment, else (zero-setup only; `validate`
/// already refused distributed mode without them) from the secrets file.
fn resolve_secrets(config: &Config) -> anyhow::Result<(MasterKey, Vec<u8>)> {
    let env_key = config
        .master_key
        .as_ref()
        .map(|k| MasterKey::parse(k.expose()))
        .transpose()
        .context("SWITCHYARD_MASTER_KEY is invalid")?;
    let env_jwt = config
        .jwt_secret
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec());
    match (env_key, env_jwt) {
        (Some(key), Some(jwt)) => Ok((key, jwt)),
        (key, jwt) => {
            let file = secrets::load_or_create(&config.data_dir)?;
            if file.created {
                tracing::info!(path = %file.path.display(), "generated the master key and JWT secret (keep this file; back it up)");
            }
            Ok((
                key.unwrap_or(file.master_key),
                jwt.unwrap_or(file.jwt_secret),
            ))
        }
    }
}

fn display_addr(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// A short how-to for a person who just ran the binary with no configuration.
fn print_getting_started(addr: SocketAddr, format: LogFormat, database: &str) {
    let base = format!("http://{}", display_addr(addr));
    if format == LogFormat::Json {
        tracing::info!(console = %format!("{base}/"), api = %format!("{base}/api/v1"), docs = %format!("{base}/docs"), gateway = %format!("{base}/v1"), "zero-setup mode");
        return;
    }
    eprintln!(
        r#"
Switchyard is running in zero-setup mode: no Redis, the gateway runs in this process ({database}).
  Console     : {base}/
  Control API : {base}/api/v1      (API docs: {base}/docs)
  Gateway     : {base}/v1          (OpenAI-compatible)

Get started (the README's "Your first request" does all of it, offline, with the mock provider):
  1. sign up:   curl -s {base}/api/v1/auth/signup -H 'content-type: application/json' \
                  -d '{{"email":"you@example.com","password":"change-me-please","organization":"My org"}}'
  2. with the access_token from the answer, add a provider ({{"name":"mock","kind":"mock"}}) at
     {base}/api/v1/providers and a model ({{"name":"echo","provider_id":…,"upstream_model":"mock-1",
     "input_price_per_mtok":1,"output_price_per_mtok":2}}) at {base}/api/v1/models
     (for a real provider, {base}/api/v1/catalog lists models whose prices a deployment
     can take with {{"catalog_id":"openai/gpt-4o-mini"}})
  3. create a key (shown once):
                curl -s {base}/api/v1/keys -H "authorization: Bearer $ACCESS_TOKEN" \
                  -H 'content-type: application/json' -d '{{"name":"first key"}}'
  4. call {base}/v1/chat/completions with that key, from curl or any OpenAI SDK.
"#
    );
}
