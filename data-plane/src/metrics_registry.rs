//! The Prometheus side of both planes: every metric's name, type, help text and histogram
//! buckets in one table ([`CATALOG`]), the process-wide recorder ([`recorder`]), the gauges read
//! at scrape time ([`observe_node`]) and the `/metrics` answer ([`render`]).
//!
//! One recorder serves the whole process: the standalone data plane, the control plane, and the
//! zero-setup process where both planes run (their metrics appear on one `/metrics`).
//!
//! Rules every metric follows (see the README's metrics list):
//! - Prometheus names: `switchyard_` prefix, base units (`_seconds`, `_bytes`), `_total` for
//!   counters; money as integer micro-dollars (`_microdollars_total`), like the rest of the code.
//! - Labels are bounded: model, route, provider kind, deployment id, endpoint, status class,
//!   error class and small fixed sets. Never a key, a user, a tenant or a prompt.
//! - Every histogram has explicit buckets for what it measures: the gateway's own overhead is
//!   sub-millisecond, a generation takes seconds.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use shared::usage::UsageEvent;

use crate::routing::BreakerState;
use crate::state::AppState;

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`;
/// without it the pending samples would grow without bound.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A metric's type, for its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric of the catalog.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    /// Histogram bucket upper bounds (in the metric's unit); `None` for counters and gauges.
    pub buckets: Option<&'static [f64]>,
}

/// Whole requests, upstream included: 10 ms … 5 min (long generations).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Time to first token: 10 ms … 1 min, dense around one second.
pub const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];
/// The gateway's own time: 25 µs … 250 ms, dense below a millisecond.
pub const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,
];
/// Control-plane API calls: 1 ms … 10 s.
pub const API_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const fn counter(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        unit: None,
        help,
        buckets: None,
    }
}

const fn gauge(name: &'static str, unit: Option<Unit>, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Gauge,
        unit,
        help,
        buckets: None,
    }
}

const fn seconds(name: &'static str, help: &'static str, buckets: &'static [f64]) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help,
        buckets: Some(buckets),
    }
}

/// Every metric either plane records. A test checks that each `switchyard_*` name used in the
/// sources is here, and the scrape tests that each one rendered has its help text.
pub static CATALOG: &[MetricDef] = &[
    // --- both planes ---
    gauge(
        "switchyard_build_info",
        None,
        "Always 1; labels carry the plane (data, control) and the version.",
    ),
    // --- data plane: requests ---
    counter(
        "switchyard_requests_total",
        "Gateway requests by endpoint, model, route, provider kind, deployment, status class and error class (none on success).",
    ),
    seconds(
        "switchyard_request_duration_seconds",
        "Whole gateway requests, from arrival to the last byte (streams included), upstream time included.",
        REQUEST_BUCKETS,
    ),
    seconds(
        "switchyard_time_to_first_token_seconds",
        "Streamed requests: time from arrival to the first content token sent to the client.",
        TTFT_BUCKETS,
    ),
    seconds(
        "switchyard_gateway_overhead_seconds",
        "The gateway's own time per request up to the response head, excluding time spent waiting on providers (also the x-switchyard-overhead-ms header).",
        OVERHEAD_BUCKETS,
    ),
    counter(
        "switchyard_tokens_total",
        "Tokens metered, by model, provider kind and kind (input, output, cache_read, cache_write).",
    ),
    counter(
        "switchyard_cost_microdollars_total",
        "Cost metered, in micro-dollars (USD x 1e6), by model and provider kind.",
    ),
    counter(
        "switchyard_cache_lookups_total",
        "Response cache lookups by result (hit, miss, bypass) and mode (exact, semantic, none).",
    ),
    counter(
        "switchyard_cache_stores_total",
        "Complete answers stored in the response cache.",
    ),
    counter(
        "switchyard_cache_errors_total",
        "Response cache operations that failed open, by operation (lookup, store, embed).",
    ),
    counter(
        "switchyard_guardrail_decisions_total",
        "Guardrail decisions by rule (custom patterns as pii.custom) and action (redacted, blocked, restored), counting findings.",
    ),
    counter(
        "switchyard_http_responses_total",
        "Gateway responses by HTTP status and error code (empty on success).",
    ),
    // --- data plane: governance ---
    counter(
        "switchyard_rate_limit_refusals_total",
        "Requests refused by an RPM/TPM limit, by scope (key, team, organization) and kind (requests, tokens).",
    ),
    counter(
        "switchyard_budget_refusals_total",
        "Requests refused by a budget, by reason.",
    ),
    counter(
        "switchyard_concurrency_refusals_total",
        "Requests refused at once by a per-node concurrency cap, by scope (node, organization, provider).",
    ),
    counter(
        "switchyard_budget_ledger_round_trips_total",
        "Redis round trips made by the budget ledger, by operation.",
    ),
    counter(
        "switchyard_budget_ledger_errors_total",
        "Budget ledger operations that failed (Redis unreachable or slow).",
    ),
    counter(
        "switchyard_rate_limit_fallback_total",
        "Rate-limit checks answered by the node-local fallback because Redis did not answer in time.",
    ),
    counter(
        "switchyard_rate_limit_checks_total",
        "Rate-limit checks by how they were answered: lease (the node's leases, no Redis call), redis (the check script on the request's path) or local (no Redis, or Redis unreachable).",
    ),
    counter(
        "switchyard_rate_limit_round_trips_total",
        "Calls of the rate-limit check script, by operation: check (on a request's path) or refill (a lease taken in the background).",
    ),
    counter(
        "switchyard_rate_limit_corrections_dropped_total",
        "Token-limit corrections (estimate vs actual) that could not be applied.",
    ),
    gauge(
        "switchyard_in_flight_requests",
        None,
        "Gateway requests running on this node now (streams included).",
    ),
    gauge(
        "switchyard_max_concurrent_requests",
        None,
        "This node's concurrency cap (SWITCHYARD_MAX_CONCURRENT_REQUESTS).",
    ),
    // --- data plane: routing and resilience ---
    gauge(
        "switchyard_breaker_state",
        None,
        "Circuit breaker state per deployment: 1 for the current state (closed, open, half_open), 0 for the others.",
    ),
    counter(
        "switchyard_retries_total",
        "Failed upstream attempts that moved on to another attempt, by deployment and failure class.",
    ),
    counter(
        "switchyard_fallbacks_total",
        "Requests served after at least one failed attempt, by model.",
    ),
    counter(
        "switchyard_hedges_total",
        "Hedged attempts started (a second candidate raced against a slow first).",
    ),
    // --- data plane: config ---
    gauge(
        "switchyard_config_version",
        None,
        "Position of the newest config change this node applied: the change log entry's time in Unix milliseconds (equal on every node once in sync).",
    ),
    gauge(
        "switchyard_config_age_seconds",
        Some(Unit::Seconds),
        "Seconds since this node last confirmed its config is current with the change log (0 in-process).",
    ),
    counter(
        "switchyard_config_cache_lookups_total",
        "Config cache lookups by record kind and result.",
    ),
    counter(
        "switchyard_config_cache_resets_total",
        "Times this node dropped its whole config cache (change log trimmed or reset).",
    ),
    // --- usage pipeline ---
    counter(
        "switchyard_usage_events_total",
        "Usage events emitted by the gateway, by outcome.",
    ),
    counter(
        "switchyard_usage_events_sent_total",
        "Usage events written to the Redis usage stream.",
    ),
    counter(
        "switchyard_usage_events_lost_total",
        "Usage events that could not be written anywhere (should stay 0).",
    ),
    counter(
        "switchyard_usage_write_failures_total",
        "Failed writes of a usage batch to Redis (retried or spooled).",
    ),
    counter(
        "switchyard_usage_spooled_total",
        "Usage events written to the local spool while Redis was unreachable.",
    ),
    counter(
        "switchyard_usage_spool_refused_total",
        "Usage batches the spool refused (full or failing).",
    ),
    counter(
        "switchyard_usage_replayed_total",
        "Spooled usage events replayed to Redis.",
    ),
    counter(
        "switchyard_usage_malformed_total",
        "Usage records that could not be parsed (skipped, logged).",
    ),
    gauge(
        "switchyard_usage_spool_events",
        None,
        "Usage events in the local spool, waiting for Redis.",
    ),
    gauge(
        "switchyard_usage_spool_bytes",
        Some(Unit::Bytes),
        "Size of the local usage spool.",
    ),
    gauge(
        "switchyard_usage_queue_events",
        None,
        "Usage events emitted by this node and not yet written (queued, in the batch being written, or waiting for queue space).",
    ),
    gauge(
        "switchyard_usage_pipeline_lag_seconds",
        Some(Unit::Seconds),
        "Age of the oldest event of the last batch when it passed a stage: sink (written to Redis or the ingest channel) or ingest (stored in the database), counted from the request's end.",
    ),
    counter(
        "switchyard_usage_ingested_total",
        "Usage events stored in the database by ingest.",
    ),
    counter(
        "switchyard_usage_claimed_total",
        "Usage events ingest claimed from another consumer that stopped (crashed control-plane replica).",
    ),
    // --- pools ---
    gauge(
        "switchyard_redis_pool_connections",
        None,
        "Redis pool connections by pool and state (idle, in_use).",
    ),
    gauge(
        "switchyard_redis_pool_max_connections",
        None,
        "Redis pool size limit, by pool.",
    ),
    gauge(
        "switchyard_redis_pool_waiting",
        None,
        "Tasks waiting for a Redis connection, by pool.",
    ),
    gauge(
        "switchyard_db_pool_connections",
        None,
        "Database pool connections by state (idle, in_use).",
    ),
    gauge(
        "switchyard_db_pool_max_connections",
        None,
        "Database pool size limit.",
    ),
    // --- control plane ---
    counter(
        "switchyard_api_requests_total",
        "Control-plane API requests by method, route template and status class.",
    ),
    seconds(
        "switchyard_api_request_duration_seconds",
        "Control-plane API request duration by method and route template.",
        API_BUCKETS,
    ),
    counter(
        "switchyard_config_published_total",
        "Config records published to the data plane, by kind and result.",
    ),
    gauge(
        "switchyard_config_outbox_pending",
        None,
        "Committed config changes not yet published to the data plane.",
    ),
];

/// The catalog entry named `name`.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

/// Installs the Prometheus recorder once per process (tests build many apps) and describes
/// every metric. `None` when another recorder was installed first, e.g. by an embedding
/// process.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = build().ok()?.install_recorder().ok()?;
            describe();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let upkeep = handle.clone();
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}

/// The exporter with every histogram's buckets (any histogram outside the catalog gets the
/// request buckets, so nothing is ever exported as a summary). Fails only on an empty bucket
/// list, which the catalog test rules out.
fn build() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(REQUEST_BUCKETS)?;
    for m in CATALOG {
        if let Some(buckets) = m.buckets {
            builder = builder.set_buckets_for_metric(Matcher::Full(m.name.to_owned()), buckets)?;
        }
    }
    Ok(builder)
}

fn describe() {
    for m in CATALOG {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(m.name, unit, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Sets `switchyard_build_info` for `plane` (`data` or `control`), and exports the counters an
/// alert watches at 0 from the start (a series that appears only on the first event makes
/// `rate()` and "> 0" alerts miss it).
pub fn build_info(plane: &'static str) {
    if recorder().is_none() {
        return;
    }
    metrics::gauge!(
        "switchyard_build_info",
        "plane" => plane,
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
    metrics::counter!("switchyard_usage_events_lost_total").increment(0);
    if plane == "data" {
        for scope in ["node", "organization", "provider"] {
            metrics::counter!("switchyard_concurrency_refusals_total", "scope" => scope)
                .increment(0);
        }
        for scope in ["key", "team", "organization"] {
            for kind in ["requests", "tokens"] {
                metrics::counter!(
                    "switchyard_rate_limit_refusals_total",
                    "scope" => scope,
                    "kind" => kind,
                )
                .increment(0);
            }
        }
    }
}

/// The Prometheus text exposition of everything recorded, or `None` without our recorder.
pub fn render() -> Option<String> {
    let handle = recorder()?;
    handle.run_upkeep();
    Some(handle.render())
}

/// The data plane's gauges that are read rather than counted: in-flight requests, breaker
/// states, config position and age, the usage queue, the Redis pool. Called before each render.
pub fn observe_node(state: &AppState) {
    metrics::gauge!("switchyard_in_flight_requests").set(state.in_flight() as f64);
    metrics::gauge!("switchyard_max_concurrent_requests")
        .set(state.settings().max_concurrent_requests as f64);
    // One gauge per deployment this node has seen recently, 1 for its current state.
    for (deployment, current) in state.health().states() {
        let deployment = deployment.to_string();
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            metrics::gauge!(
                "switchyard_breaker_state",
                "deployment" => deployment.clone(),
                "state" => s.as_str(),
            )
            .set(if s == current { 1.0 } else { 0.0 });
        }
    }
    let sync = state.store().sync_status();
    metrics::gauge!("switchyard_config_version").set(sync.position_ms as f64);
    metrics::gauge!("switchyard_config_age_seconds").set(sync.age.as_secs_f64());
    metrics::gauge!("switchyard_usage_queue_events").set(state.usage().unwritten() as f64);
    if let Some((pool, _)) = state.store().redis_parts() {
        redis_pool("data_plane", &pool);
    }
}

/// The gauges of one Redis pool, labelled `pool`.
pub fn redis_pool(pool: &'static str, redis: &deadpool_redis::Pool) {
    let status = redis.status();
    let in_use = status.size.saturating_sub(status.available);
    metrics::gauge!("switchyard_redis_pool_connections", "pool" => pool, "state" => "idle")
        .set(status.available as f64);
    metrics::gauge!("switchyard_redis_pool_connections", "pool" => pool, "state" => "in_use")
        .set(in_use as f64);
    metrics::gauge!("switchyard_redis_pool_max_connections", "pool" => pool)
        .set(status.max_size as f64);
    metrics::gauge!("switchyard_redis_pool_waiting", "pool" => pool).set(status.waiting as f64);
}

/// Sets `switchyard_usage_pipeline_lag_seconds{stage}` from a batch that just passed `stage`:
/// the age of its oldest event, counted from the end of that event's request.
pub fn record_lag<'a>(stage: &'static str, events: impl IntoIterator<Item = &'a UsageEvent>) {
    let oldest = events.into_iter().map(event_end).min();
    if let Some(end) = oldest {
        let lag = (time::OffsetDateTime::now_utc() - end)
            .as_seconds_f64()
            .max(0.0);
        metrics::gauge!("switchyard_usage_pipeline_lag_seconds", "stage" => stage).set(lag);
    }
}

/// When the request of `event` ended.
pub fn event_end(event: &UsageEvent) -> time::OffsetDateTime {
    let ms = i64::try_from(event.latency_ms).unwrap_or(i64::MAX);
    event
        .started_at
        .saturating_add(time::Duration::milliseconds(ms))
}

/// An HTTP status as its class label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Every `switchyard_*` metric name the two planes' sources record is in the catalog (so
    /// it has help text and, for a histogram, buckets), and every catalog entry is recorded
    /// somewhere.
    #[test]
    fn catalog_matches_the_sources() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut used = std::collections::BTreeSet::new();
        for dir in ["data-plane/src", "control-plane/src"] {
            collect(&root.join(dir), &mut used);
        }
        let missing: Vec<_> = used.iter().filter(|n| find(n).is_none()).collect();
        assert!(
            missing.is_empty(),
            "recorded but not in CATALOG: {missing:?}"
        );
        let unused: Vec<_> = CATALOG
            .iter()
            .filter(|m| !used.contains(m.name))
            .map(|m| m.name)
            .collect();
        assert!(
            unused.is_empty(),
            "in CATALOG but never recorded: {unused:?}"
        );
        let mut names: Vec<_> = CATALOG.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "duplicate catalog entries");
    }

    /// Names in `counter!("…"`, `gauge!("…"` and `histogram!("…"` calls under `dir`.
    fn collect(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut text = std::fs::read_to_string(&path).unwrap();
                if path.ends_with("metrics_registry.rs") {
                    // This file's code, not its table or these tests.
                    let code = text.find("pub fn find(").unwrap();
                    let tests = text.find("#[cfg(test)]").unwrap();
                    text = text[code..tests].to_owned();
                }
                for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                    for (i, _) in text.match_indices(macro_name) {
                        let rest = text[i + macro_name.len()..].trim_start();
                        if let Some(rest) = rest.strip_prefix('"')
                            && let Some(end) = rest.find('"')
                        {
                            out.insert(rest[..end].to_owned());
                        }
                    }
                }
            }
        }
    }

    /// The README's metric list is this catalog (`UPDATE_README=1` rewrites it).
    #[test]
    fn readme_lists_the_catalog() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (start, end) = ("<!-- metrics:start -->\n", "<!-- metrics:end -->");
        let from = readme.find(start).expect("README has the metrics markers") + start.len();
        let to = readme.find(end).unwrap();
        let mut table = String::from("| metric | type | what it measures |\n| --- | --- | --- |\n");
        for m in CATALOG {
            let kind = match (m.kind, m.buckets) {
                (Kind::Counter, _) => "counter".to_owned(),
                (Kind::Gauge, _) => "gauge".to_owned(),
                (Kind::Histogram, Some(b)) => format!(
                    "histogram ({} … {} s)",
                    b.first().unwrap(),
                    b.last().unwrap()
                ),
                (Kind::Histogram, None) => "histogram".to_owned(),
            };
            table.push_str(&format!("| `{}` | {kind} | {} |\n", m.name, m.help));
        }
        if readme[from..to] != table {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{table}{}", &readme[..from], &readme[to..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!(
                    "README's metric list is stale: run UPDATE_README=1 cargo test -p data-plane --lib metrics_registry"
                );
            }
        }
    }

    #[test]
    fn histograms_have_increasing_buckets_and_others_none() {
        for m in CATALOG {
            match (m.kind, m.buckets) {
                (Kind::Histogram, Some(b)) => {
                    assert!(b.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
                    assert!(m.name.ends_with("_seconds"), "{}", m.name);
                }
                (Kind::Histogram, None) => panic!("{} has no buckets", m.name),
                (_, Some(_)) => panic!("{} is not a histogram", m.name),
                (Kind::Counter, None) => assert!(m.name.ends_with("_total"), "{}", m.name),
                (Kind::Gauge, None) => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
