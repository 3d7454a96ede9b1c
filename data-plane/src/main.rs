//! The `data-plane` binary: parse and validate config, connect to Redis, serve, shut down
//! gracefully. Everything else lives in the library so tests and the control plane can use it.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use data_plane::config::Config;
use data_plane::lifecycle::{self, remaining, shutdown_signal};
use data_plane::store::{ConfigStore, redis_pool};
use data_plane::telemetry::{self, LogOutput};
use data_plane::usage_sink::UsageSink;
use data_plane::usage_spool::Spool;
use data_plane::{AppState, app};
use shared::config::RedisKeys;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the cause chain on one line, without a backtrace: startup errors
            // are about configuration, and the message names the variable to fix.
            eprintln!("data-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // Guard against a dependency enabling rustls' `ring` provider next to aws-lc-rs, which would
    // make the first TLS client panic (ARCHITECTURE.md, Dependency notes, D1).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let mut config = Config::parse();
    // A standalone data plane is the distributed mode: no non-public upstream address is
    // allowed unless the operator lists it (the zero-setup default allows loopback).
    config
        .settings
        .upstream_allow_cidrs
        .get_or_insert_with(String::new);
    let telemetry = telemetry::init(
        "switchyard-data-plane",
        config.log_format,
        LogOutput::Stdout,
    )?;
    let validated = config.validate()?;
    tracing::info!(node_id = %validated.node_id, settings = ?config.settings, "starting data plane");

    // Before anything records a metric (the spool's gauges count what a previous run left).
    let _ = data_plane::metrics_registry::recorder();
    let redis_url = config.redis_url.expose();
    let pool = redis_pool(redis_url).context("REDIS_URL")?;
    let keys = RedisKeys::new(config.redis_prefix.clone());
    let store = ConfigStore::redis(pool.clone(), redis_url, keys.clone(), validated.master_key)
        .await
        .context("cannot start the config store")?;
    let usage = if config.usage_spool_max_bytes == 0 {
        UsageSink::redis(pool, keys)
    } else {
        let dir = config.usage_spool_dir();
        let spool = Spool::open(&dir, config.usage_spool_max_bytes).with_context(|| {
            format!(
                "SWITCHYARD_USAGE_SPOOL_DIR: cannot open the usage spool at {}",
                dir.display()
            )
        })?;
        tracing::info!(dir = %dir.display(), events = spool.events(), "usage spool open");
        UsageSink::redis_spooled(pool, keys, spool)
    };
    let state = AppState::new(config.settings.clone(), store, usage.clone())?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("bound address")?;
    tracing::info!("listening on http://{addr}");

    // TCP_NODELAY, and JSON bodies for the errors hyper answers itself (414, 431, 400).
    let listener = data_plane::http::listener::listener(listener);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // With the peer address in each request's extensions, for keys' `allowed_cidrs`.
    let server = axum::serve(
        listener,
        app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    })
    .into_future();
    let mut server = tokio::spawn(server);

    let ended_early = tokio::select! {
        result = &mut server => Some(result),
        () = shutdown_signal() => None,
    };
    // Delay, grace, cut (see `lifecycle`); then everything below shares the drain period.
    let (drain_end, failure) = match ended_early {
        None => {
            let drain_end = lifecycle::stop_serving(
                state.lifecycle(),
                &stop_tx,
                server,
                Some(&state),
                &config.shutdown,
            )
            .await;
            (drain_end, None)
        }
        // Not expected (axum's accept loop does not end on its own); still settle and flush
        // what was served before reporting it.
        Some(result) => {
            let error = match result {
                Ok(Ok(())) => anyhow::anyhow!("the HTTP server stopped unexpectedly"),
                Ok(Err(e)) => anyhow::Error::new(e).context("server"),
                Err(e) => anyhow::Error::new(e).context("server task"),
            };
            state.lifecycle().cut_requests();
            state.drain(config.shutdown.drain() / 2).await;
            (Instant::now() + config.shutdown.drain() / 2, Some(error))
        }
    };
    // Every request has settled: report its consumption and give the leases back, so the
    // budget is whole for the other nodes at once (not after the lease expiry).
    if !state.ledger().shutdown().await {
        tracing::warn!("budget leases could not be returned; they expire on their own");
    }
    // To Redis, or (with a spool, once Redis had its share of the time) fsync'd to the spool,
    // which the next start replays.
    let unwritten = usage.flush(remaining(drain_end)).await;
    if unwritten > 0 {
        tracing::error!(
            unwritten,
            "usage events could not be written before shutdown"
        );
    } else if let Some(spool) = usage.spool_status().filter(|s| s.events > 0) {
        tracing::warn!(
            spooled = spool.events,
            "usage events left in the spool; the next start replays them"
        );
    }
    tracing::info!("stopped");
    // Last: every request's spans have ended; send them (bounded).
    telemetry.shutdown().await;
    failure.map_or(Ok(()), Err)
}
