//! Budget alerts: the detector that records each threshold a budget crosses (once per
//! threshold per window) and the sender that delivers them to the organization's webhook,
//! signed, retried with backoff.
//!
//! # What a budget has spent
//!
//! [`window_spend`] is what `GET /budgets` shows and what the detector compares: the larger of
//! the ledger's spend for the window (`crate::ledger`, what the data-plane nodes settled) and the
//! usage recorded in the database for the window ([`recorded_spend`]: the sum of
//! `usage_records.cost_micros` of the budget's tenant, team or key with `started_at` in the
//! window). Each pass also raises the ledger's spend to the recorded spend
//! (`ledger::raise_spent`), so the ledger never lags behind what was billed (a node that died
//! before reporting, a ledger that lost its data).
//!
//! # Detector
//!
//! Every `SWITCHYARD_ALERT_INTERVAL_MS` (default 1 s) the worker reads every budget, computes
//! its current window and spend, and for each threshold with `spent × 100 ≥ limit × threshold`
//! inserts a `budget_alerts` row with `ON CONFLICT DO NOTHING` on the unique
//! (`budget_id`, `window_start`, `threshold`). Only the control plane whose insert went in
//! queues the webhook (in the same transaction), so an alert fires once per threshold per window
//! however many control planes run the detector, and a restart never fires it again.
//!
//! # Sender
//!
//! Deliveries (`alert_deliveries`) are a queue in the database. A sender claims a due row with a
//! compare-and-set `UPDATE` (status still `pending`, attempts unchanged, no live claim) that
//! sets `claimed_until`; only the process whose update changed the row sends it, so two control
//! planes never send one delivery at the same time, and a claim of a process that died runs out
//! after [`CLAIM_MS`]. The POST carries `content-type: application/json`,
//! `x-switchyard-delivery: <delivery id>` (stable across attempts, for the receiver's dedupe) and
//! `x-switchyard-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` where the
//! key is the organization's `whsec_…` secret as shown (all its bytes). Every attempt goes to the
//! organization's URL and secret as they are at that moment, so fixing a wrong URL (or rotating
//! the secret) applies to the retries of deliveries already queued; with the URL removed, the
//! attempt fails (and is retried until it gives up). A 2xx answer marks it
//! `delivered`; anything else (status, timeout, refused connection) retries after 1 s, 2 s,
//! 4 s, … (capped at [`BACKOFF_MAX_MS`]) and gives up after [`MAX_ATTEMPTS`] attempts
//! (`failed`). Delivery is at least once: a receiver whose 2xx answer is lost on the way back sees
//! the same delivery id again.
//!
//! Webhooks go out through the data plane's [`UpstreamClient`]: the egress policy
//! (`SWITCHYARD_UPSTREAM_ALLOW_CIDRS`) is checked on every resolved address (and on IP-literal
//! hosts here), redirects are not followed, no system proxy is used.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::sea_query::{Condition, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::Serialize;
use sha2::Sha256;
use shared::governance::{BudgetScope, PeriodWindow};
use shared::money::format_usd;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::{Host, Url};
use uuid::Uuid;

use crate::entities::{alert_delivery, budget, budget_alert, tenant, usage_record};
use crate::error::ApiError;
use crate::http::usage::{Cmp, started_at_cmp, sum};
use crate::ledger;
use crate::state::AppState;
use data_plane::egress::UpstreamClient;

/// Attempts before a delivery is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 10;
/// First retry delay; it doubles after every failed attempt.
pub const BACKOFF_START_MS: i64 = 1_000;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: i64 = 5 * 60 * 1_000;
/// How long a sender's claim on a delivery lasts (well past the request timeout).
pub const CLAIM_MS: i64 = 60_000;
/// How long one webhook POST may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries claimed per pass, and sent at once.
const DELIVERY_BATCH: u64 = 50;
const CONCURRENT_SENDS: usize = 8;
/// Longest `last_error` kept.
const MAX_ERROR_LEN: usize = 500;
/// The event type of a threshold crossing.
pub const EVENT_TYPE: &str = "budget.threshold_crossed";
/// Prefix of webhook signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// Delivery states as stored.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// A budget's current window and what it has spent and holds in it.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpend {
    pub window: PeriodWindow,
    /// max(ledger spend, recorded spend), µ$.
    pub spent_micros: i64,
    /// Held by requests in flight (ledger), µ$.
    pub reserved_micros: i64,
    /// What the database has recorded for the window, µ$.
    pub recorded_micros: i64,
}

/// The window of `b` containing `now` and its spend (see the module docs).
pub async fn window_spend(
    state: &AppState,
    b: &budget::Model,
    now: OffsetDateTime,
) -> Result<WindowSpend, ApiError> {
    let window = window_of(b, now)?;
    let recorded_micros = recorded_spend(&state.db, b, window).await?;
    // The ledger unreachable must not hide what the database knows: fall back to the recorded
    // spend (and nothing reserved), and say so.
    let usage = match ledger::window_usage(state, b.tenant_id, b.id, window.id()).await {
        Ok(usage) => usage,
        Err(e) => {
            tracing::warn!(budget_id = %b.id, error = %e, "budget ledger unavailable; showing recorded spend only");
            ledger::WindowUsage::default()
        }
    };
    Ok(WindowSpend {
        window,
        spent_micros: usage.spent_micros.max(recorded_micros),
        reserved_micros: usage.reserved_micros,
        recorded_micros,
    })
}

fn window_of(b: &budget::Model, now: OffsetDateTime) -> Result<PeriodWindow, ApiError> {
    let record = b
        .record()
        .with_context(|| format!("budget {} has an unknown scope or period", b.id))?;
    record
        .window(now)
        .with_context(|| format!("budget {}: period window", b.id))
        .map_err(ApiError::Internal)
}

/// The cost recorded in `usage_records` for `b`'s scope with `started_at` in `window`, µ$.
pub async fn recorded_spend<C: ConnectionTrait>(
    db: &C,
    b: &budget::Model,
    window: PeriodWindow,
) -> Result<i64, ApiError> {
    let backend = db.get_database_backend();
    let mut q = usage_record::Entity::find()
        .select_only()
        .column_as(sum("cost_micros"), "total")
        .filter(usage_record::Column::TenantId.eq(b.tenant_id));
    q = match BudgetScope::parse(&b.scope) {
        Some(BudgetScope::Tenant) => q,
        Some(BudgetScope::Team) => q.filter(usage_record::Column::TeamId.eq(b.scope_id)),
        Some(BudgetScope::Key) => q.filter(usage_record::Column::KeyId.eq(b.scope_id)),
        None => return Ok(0),
    };
    if window.start != OffsetDateTime::UNIX_EPOCH {
        q = q.filter(started_at_cmp(backend, Cmp::Ge, window.start));
    }
    if let Some(end) = window.end {
        q = q.filter(started_at_cmp(backend, Cmp::Lt, end));
    }
    Ok(q.into_tuple::<i64>().one(db).await?.unwrap_or(0))
}

/// Whether `spent` has reached `threshold` percent of `limit`.
pub fn crossed(spent_micros: i64, limit_micros: i64, threshold: u32) -> bool {
    i128::from(spent_micros) * 100 >= i128::from(limit_micros) * i128::from(threshold)
}

/// The signature header value for `body` sent at `t` (Unix seconds) with `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

/// The associated data a tenant's webhook secret is sealed with.
pub fn secret_context(tenant_id: Uuid) -> String {
    format!("alert_webhook:{tenant_id}")
}

/// The retry delay after `attempts` failed attempts (1 s, 2 s, 4 s, … capped).
pub fn backoff_ms(attempts: i32) -> i64 {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
    BACKOFF_START_MS
        .saturating_mul(1_i64 << exp)
        .min(BACKOFF_MAX_MS)
}

/// The webhook body.
#[derive(Debug, Serialize)]
struct Event<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    data: EventData<'a>,
}

#[derive(Debug, Serialize)]
struct EventData<'a> {
    budget_id: Uuid,
    scope: &'a str,
    scope_id: Uuid,
    threshold: u32,
    spent_usd: String,
    limit_usd: String,
    #[serde(with = "time::serde::rfc3339")]
    period_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    period_end: Option<OffsetDateTime>,
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The alert worker: detector and sender, every `interval`, until `shutdown`.
pub fn spawn(
    state: AppState,
    client: UpstreamClient,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = detect(&state, OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %format!("{e:#}"), "budget alert detection failed; retrying");
            }
            if let Err(e) = send_due(&state, &client).await {
                tracing::warn!(error = %format!("{e:#}"), "alert webhook delivery pass failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    })
}

/// Raises every budget's ledger spend for its current window to what the database recorded,
/// without firing alerts. Run once at start, before the server accepts requests: an in-memory
/// ledger (zero-setup) starts empty after a restart, and a Redis that lost its data (no
/// persistence) forgets spend too; without this, requests in the first moments after either
/// could pass a budget already spent. Returns how many budgets it raised.
pub async fn reconcile(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let budgets = budget::Entity::find()
        .order_by_asc(budget::Column::Id)
        .all(&state.db)
        .await?;
    let mut raised = 0;
    for b in &budgets {
        let window = window_of(b, now).map_err(|e| anyhow::anyhow!("{e}"))?;
        let recorded = recorded_spend(&state.db, b, window)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if recorded > 0 {
            ledger::raise_spent(state, b.tenant_id, b.id, window.id(), recorded)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            raised += 1;
        }
    }
    Ok(raised)
}

/// One detector pass over every budget (see the module docs). Returns how many alerts it
/// recorded.
pub async fn detect(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let budgets = budget::Entity::find()
        .order_by_asc(budget::Column::Id)
        .all(&state.db)
        .await?;
    let mut webhooks: HashMap<Uuid, Option<String>> = HashMap::new();
    let mut fired = 0;
    for b in &budgets {
        match detect_one(state, b, now, &mut webhooks).await {
            Ok(n) => fired += n,
            Err(e) => {
                tracing::warn!(budget_id = %b.id, error = %format!("{e:#}"), "budget alert check failed")
            }
        }
    }
    Ok(fired)
}

async fn detect_one(
    state: &AppState,
    b: &budget::Model,
    now: OffsetDateTime,
    webhooks: &mut HashMap<Uuid, Option<String>>,
) -> anyhow::Result<usize> {
    let spend = window_spend(state, b, now)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let window_id = spend.window.id();
    if spend.recorded_micros > 0 {
        ledger::raise_spent(state, b.tenant_id, b.id, window_id, spend.recorded_micros)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let due: Vec<u32> = b
        .thresholds()
        .into_iter()
        .filter(|t| crossed(spend.spent_micros, b.limit_micros, *t))
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let seen: HashSet<i32> = budget_alert::Entity::find()
        .filter(budget_alert::Column::BudgetId.eq(b.id))
        .filter(budget_alert::Column::WindowStart.eq(window_id))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|a| a.threshold)
        .collect();
    let mut fired = 0;
    for threshold in due {
        let Ok(t) = i32::try_from(threshold) else {
            continue;
        };
        if seen.contains(&t) {
            continue;
        }
        let url = match webhooks.get(&b.tenant_id) {
            Some(url) => url.clone(),
            None => {
                let url = tenant::Entity::find_by_id(b.tenant_id)
                    .one(&state.db)
                    .await?
                    .and_then(|t| t.alert_webhook_url);
                webhooks.insert(b.tenant_id, url.clone());
                url
            }
        };
        if record_alert(&state.db, b, &spend, threshold, url, now).await? {
            fired += 1;
            tracing::info!(budget_id = %b.id, tenant_id = %b.tenant_id, threshold, spent_micros = spend.spent_micros, limit_micros = b.limit_micros, "budget threshold crossed");
        }
    }
    Ok(fired)
}

/// Inserts the alert (once per budget × window × threshold) and, when this call inserted it and
/// the organization has a webhook, queues its delivery, in one transaction. Returns whether
/// the alert is new.
async fn record_alert(
    db: &DatabaseConnection,
    b: &budget::Model,
    spend: &WindowSpend,
    threshold: u32,
    url: Option<String>,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let alert_id = Uuid::now_v7();
    let created_at = crate::http::now();
    let tx = db.begin().await?;
    let inserted = budget_alert::Entity::insert(budget_alert::ActiveModel {
        id: Set(alert_id),
        tenant_id: Set(b.tenant_id),
        budget_id: Set(b.id),
        window_start: Set(spend.window.id()),
        threshold: Set(i32::try_from(threshold).unwrap_or(i32::MAX)),
        spent_micros: Set(spend.spent_micros),
        limit_micros: Set(b.limit_micros),
        created_at: Set(created_at),
    })
    .on_conflict(
        OnConflict::columns([
            budget_alert::Column::BudgetId,
            budget_alert::Column::WindowStart,
            budget_alert::Column::Threshold,
        ])
        .do_nothing()
        .to_owned(),
    )
    .try_insert()
    .exec_without_returning(&tx)
    .await?;
    let new = matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    if !new {
        return Ok(false);
    }
    if let Some(url) = url {
        let event = Event {
            id: alert_id,
            kind: EVENT_TYPE,
            created_at,
            data: EventData {
                budget_id: b.id,
                scope: &b.scope,
                scope_id: b.scope_id,
                threshold,
                spent_usd: format_usd(spend.spent_micros),
                limit_usd: format_usd(b.limit_micros),
                period_start: spend.window.start,
                period_end: spend.window.end,
            },
        };
        alert_delivery::Entity::insert(alert_delivery::ActiveModel {
            id: Set(Uuid::now_v7()),
            alert_id: Set(alert_id),
            tenant_id: Set(b.tenant_id),
            url: Set(url),
            payload: Set(serde_json::to_string(&event)?),
            status: Set(PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(unix_ms(now)),
            claimed_until: Set(None),
            last_error: Set(None),
            delivered_at: Set(None),
            created_at: Set(created_at),
        })
        .exec_without_returning(&tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// One sender pass: claims the due deliveries and sends them. Returns how many were sent
/// (whatever the outcome).
pub async fn send_due(state: &AppState, client: &UpstreamClient) -> anyhow::Result<usize> {
    let now_ms = unix_ms(OffsetDateTime::now_utc());
    let due = alert_delivery::Entity::find()
        .filter(alert_delivery::Column::Status.eq(PENDING))
        .filter(alert_delivery::Column::NextAttemptAt.lte(now_ms))
        .filter(unclaimed(now_ms))
        .order_by_asc(alert_delivery::Column::NextAttemptAt)
        .order_by_asc(alert_delivery::Column::Id)
        .limit(DELIVERY_BATCH)
        .all(&state.db)
        .await?;
    let mut claimed = Vec::new();
    for d in due {
        let until = now_ms.saturating_add(CLAIM_MS);
        let n = alert_delivery::Entity::update_many()
            .col_expr(alert_delivery::Column::ClaimedUntil, Expr::value(until))
            .filter(alert_delivery::Column::Id.eq(d.id))
            .filter(alert_delivery::Column::Status.eq(PENDING))
            .filter(alert_delivery::Column::Attempts.eq(d.attempts))
            .filter(unclaimed(now_ms))
            .exec(&state.db)
            .await?
            .rows_affected;
        if n == 1 {
            claimed.push((d, until));
        }
    }
    let sent = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(CONCURRENT_SENDS, |(d, until)| async move {
            if let Err(e) = send_one(state, client, d, until).await {
                tracing::warn!(error = %format!("{e:#}"), "recording a webhook attempt failed");
            }
        })
        .await;
    Ok(sent)
}

/// No live claim at `now_ms`.
fn unclaimed(now_ms: i64) -> Condition {
    Condition::any()
        .add(alert_delivery::Column::ClaimedUntil.is_null())
        .add(alert_delivery::Column::ClaimedUntil.lt(now_ms))
}

/// Sends one claimed delivery and records the outcome (only while the claim is still ours).
async fn send_one(
    state: &AppState,
    client: &UpstreamClient,
    d: alert_delivery::Model,
    claim: i64,
) -> anyhow::Result<()> {
    let (url, outcome) = match attempt(state, client, &d).await {
        Ok(url) => (url, Ok(())),
        Err((url, why)) => (url, Err(why)),
    };
    let attempts = d.attempts.saturating_add(1);
    let now = OffsetDateTime::now_utc();
    let mut update = alert_delivery::Entity::update_many()
        .col_expr(alert_delivery::Column::Attempts, Expr::value(attempts))
        .col_expr(alert_delivery::Column::Url, Expr::value(url))
        .col_expr(
            alert_delivery::Column::ClaimedUntil,
            Expr::value(Option::<i64>::None),
        );
    match &outcome {
        Ok(()) => {
            update = update
                .col_expr(alert_delivery::Column::Status, Expr::value(DELIVERED))
                .col_expr(
                    alert_delivery::Column::DeliveredAt,
                    Expr::value(crate::http::now()),
                )
                .col_expr(
                    alert_delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                );
            tracing::info!(delivery_id = %d.id, attempts, "alert webhook delivered");
        }
        Err(why) => {
            let why: String = why.chars().take(MAX_ERROR_LEN).collect();
            let status = if attempts >= MAX_ATTEMPTS {
                FAILED
            } else {
                PENDING
            };
            update = update
                .col_expr(alert_delivery::Column::Status, Expr::value(status))
                .col_expr(
                    alert_delivery::Column::NextAttemptAt,
                    Expr::value(unix_ms(now).saturating_add(backoff_ms(attempts))),
                )
                .col_expr(alert_delivery::Column::LastError, Expr::value(why.clone()));
            tracing::warn!(delivery_id = %d.id, attempts, status, error = %why, "alert webhook attempt failed");
        }
    }
    update
        .filter(alert_delivery::Column::Id.eq(d.id))
        .filter(alert_delivery::Column::ClaimedUntil.eq(claim))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// One POST of `d` to the organization's webhook URL as it is now (a URL fixed after a failure
/// gets the retries; the last URL tried is recorded on the row). Returns that URL, and on
/// failure why the attempt did not count as delivered.
async fn attempt(
    state: &AppState,
    client: &UpstreamClient,
    d: &alert_delivery::Model,
) -> Result<String, (String, String)> {
    let org = tenant::Entity::find_by_id(d.tenant_id)
        .one(&state.db)
        .await
        .map_err(|e| (d.url.clone(), format!("reading the webhook settings: {e}")))?;
    let Some((url, sealed)) = org.and_then(|t| t.alert_webhook_url.zip(t.alert_webhook_secret))
    else {
        return Err((
            d.url.clone(),
            "the organization has no webhook URL or signing secret now".to_owned(),
        ));
    };
    post(state, client, d, &url, &sealed)
        .await
        .map(|()| url.clone())
        .map_err(|why| (url, why))
}

async fn post(
    state: &AppState,
    client: &UpstreamClient,
    d: &alert_delivery::Model,
    url: &str,
    sealed: &str,
) -> Result<(), String> {
    let secret = state
        .master_key
        .open(sealed, &secret_context(d.tenant_id))
        .map_err(|_| "the webhook signing secret cannot be opened with this master key")?;
    let url = Url::parse(url).map_err(|_| "the webhook URL is not a valid URL".to_owned())?;
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(ip) = ip {
        client
            .policy()
            .check(ip)
            .map_err(|r| format!("the egress policy refuses {ip} ({})", r.range))?;
    }
    let t = OffsetDateTime::now_utc().unix_timestamp();
    let body = d.payload.clone().into_bytes();
    let response = client
        .post(url)
        .timeout(REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .header("x-switchyard-signature", signature(&secret, t, &body))
        .header("x-switchyard-delivery", d.id.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn signatures_match_the_documented_scheme() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let sig = signature("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"whsec_test").unwrap();
        mac.update(br#"1700000000.{"a":1}"#);
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn backoff_doubles_from_one_second_and_is_capped() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(3), 4_000);
        assert_eq!(backoff_ms(30), BACKOFF_MAX_MS);
    }

    #[test]
    fn thresholds_cross_at_exact_percentages() {
        assert!(!crossed(499_999, 1_000_000, 50));
        assert!(crossed(500_000, 1_000_000, 50));
        assert!(crossed(i64::MAX, i64::MAX, 100));
        assert!(!crossed(1_000_000, 1_000_000, 101));
    }

    #[test]
    fn secrets_are_prefixed_and_random() {
        let a = new_secret();
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 64);
        assert_ne!(a, new_secret());
    }
}
