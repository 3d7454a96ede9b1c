//! Billing: plans, the Stripe customer of each organization, metered usage reported to Stripe,
//! Stripe webhooks, and suspension.
//!
//! # Off by default
//!
//! Without `STRIPE_SECRET_KEY` (the zero-setup default) billing is off: no worker runs, nobody
//! is suspended by billing, `GET /api/v1/billing` answers `"enabled": false`, and the write
//! endpoints answer 409 `conflict` saying so. The Stripe calls themselves are thin wrappers in
//! the `billing` crate (`control-plane/billing`, async-stripe), which only this crate uses.
//!
//! # Plans ([`plans`])
//!
//! Built-in `free` (an included monthly credit, $5; spent → suspended with reason
//! `credit_exhausted`), `payg` (provider cost × (1 + margin), reported to Stripe as metered
//! usage against `STRIPE_PRICE_ID`), `enterprise` (by invoice: no checkout, usage shown, never
//! suspended automatically). `SWITCHYARD_BILLING_PLANS` (a JSON file) overrides or adds plans by
//! name. An organization's plan is `tenants.plan` (NULL: `SWITCHYARD_BILLING_DEFAULT_PLAN`);
//! a completed Checkout moves it to the plan it subscribed to, a deleted subscription back to the
//! default.
//!
//! # Metered usage ([`reporter`])
//!
//! The meter's unit is the **billed micro-dollar** (provider cost × (1 + margin), rounded half
//! up per hour window): one Billing Meter Event per organization and closed hour window, read
//! from the hour rollups (`usage_rollups`, `grain = 'hour'`, `tag_key = ''`), sent with
//! `identifier` = `Idempotency-Key` = `sy_<org>_<window start>_<sequence>`, recorded in
//! `billing_reports` before and after sending. Late usage in a reported window is sent as a
//! correction (next sequence) for the difference only. Reconciliation ([`reconcile`]) compares,
//! for every closed window, the metered amount with the sum reported.
//!
//! # Suspension ([`suspension`])
//!
//! Decided by a worker (and at once after each webhook): a payment failed more than
//! `SWITCHYARD_BILLING_GRACE_SECS` ago and no invoice was paid since → `payment_failed`; a free
//! plan whose month's billed usage reached its credit → `credit_exhausted`. The decision is a
//! compare-and-set on the tenant row plus a config version bump in one transaction, then the
//! normal publish path carries `TenantConfig.suspension` to every data-plane node, which refuses
//! the organization's requests with 402 `organization_suspended`. Lifting works the same way.

pub mod plans;
pub mod reporter;
pub mod suspension;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

pub use self::plans::{Plan, PlanKind, Plans};
pub use self::reporter::{Reconciliation, reconcile};
use crate::config::Secret;

/// One hour, the metering window.
pub const WINDOW_SECS: i64 = 3600;

/// Billing settings (all optional; see the module docs).
#[derive(Clone, clap::Args)]
pub struct BillingSettings {
    /// Stripe secret key (`sk_live_…`, `sk_test_…` or a restricted `rk_…`). Unset: billing off.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,
    /// The webhook endpoint's signing secret (`whsec_…`), from the Stripe dashboard.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,
    /// Stripe's API base (a fake Stripe in tests); requests go to `{base}v1/…`.
    #[arg(long, env = "STRIPE_API_BASE", default_value = ::billing::DEFAULT_API_BASE)]
    pub stripe_api_base: String,
    /// The metered price of the `payg` plan (`price_…`), unless the plans file names one.
    #[arg(long, env = "STRIPE_PRICE_ID")]
    pub stripe_price_id: Option<String>,
    /// The `event_name` of the Billing Meter usage is reported to.
    #[arg(
        long,
        env = "STRIPE_METER_EVENT_NAME",
        default_value = "switchyard_usage"
    )]
    pub meter_event_name: String,
    /// A JSON file of plans overriding (by name) or adding to the built-in ones.
    #[arg(long, env = "SWITCHYARD_BILLING_PLANS")]
    pub plans_path: Option<PathBuf>,
    /// The plan of an organization that never subscribed.
    #[arg(long, env = "SWITCHYARD_BILLING_DEFAULT_PLAN", default_value = "free")]
    pub default_plan: String,
    /// How long after a failed payment the organization is suspended if no invoice is paid.
    #[arg(long, env = "SWITCHYARD_BILLING_GRACE_SECS", default_value_t = 3 * 24 * 3600)]
    pub grace_secs: u64,
    /// How often the usage reporter and the suspension check run, in milliseconds.
    #[arg(long, env = "SWITCHYARD_BILLING_INTERVAL_MS", default_value_t = 60_000)]
    pub interval_ms: u64,
    /// How long after an hour ends before it is reported (usage still arriving).
    #[arg(long, env = "SWITCHYARD_BILLING_LATENESS_SECS", default_value_t = 300)]
    pub lateness_secs: u64,
    /// How many hours back the reporter (and reconciliation) looks for windows to report or
    /// correct (Stripe accepts meter events up to 35 days old).
    #[arg(long, env = "SWITCHYARD_BILLING_LOOKBACK_HOURS", default_value_t = 168)]
    pub lookback_hours: u64,
    /// How far a webhook's signature timestamp may be from now.
    #[arg(
        long,
        env = "SWITCHYARD_BILLING_WEBHOOK_TOLERANCE_SECS",
        default_value_t = 300
    )]
    pub webhook_tolerance_secs: u64,
    /// Where Checkout and the Customer Portal send the user back when the request names no URL.
    #[arg(
        long,
        env = "SWITCHYARD_BILLING_RETURN_URL",
        default_value = "http://localhost:8080/"
    )]
    pub return_url: String,
}

impl std::fmt::Debug for BillingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingSettings")
            .field("enabled", &self.stripe_secret_key.is_some())
            .field("stripe_api_base", &self.stripe_api_base)
            .field("stripe_price_id", &self.stripe_price_id)
            .field("meter_event_name", &self.meter_event_name)
            .field("plans_path", &self.plans_path)
            .field("default_plan", &self.default_plan)
            .field("grace_secs", &self.grace_secs)
            .field("interval_ms", &self.interval_ms)
            .field("lateness_secs", &self.lateness_secs)
            .field("lookback_hours", &self.lookback_hours)
            .finish_non_exhaustive()
    }
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: ::billing::DEFAULT_API_BASE.to_owned(),
            stripe_price_id: None,
            meter_event_name: "switchyard_usage".to_owned(),
            plans_path: None,
            default_plan: "free".to_owned(),
            grace_secs: 3 * 24 * 3600,
            interval_ms: 60_000,
            lateness_secs: 300,
            lookback_hours: 168,
            webhook_tolerance_secs: 300,
            return_url: "http://localhost:8080/".to_owned(),
        }
    }
}

/// Billing as the control plane runs it: settings, plans and (when enabled) the Stripe client.
#[derive(Debug)]
pub struct Billing {
    pub settings: BillingSettings,
    pub plans: Plans,
    stripe: Option<::billing::Stripe>,
}

impl Billing {
    /// Billing off (no Stripe key).
    pub fn disabled() -> Self {
        let settings = BillingSettings::default();
        let plans = Plans::builtin(&settings);
        Self {
            settings,
            plans,
            stripe: None,
        }
    }

    /// Loads the plans and builds the Stripe client; fails on a bad plans file or setting.
    pub fn from_settings(settings: &BillingSettings) -> anyhow::Result<Self> {
        let plans = Plans::load(settings)?;
        let stripe = match &settings.stripe_secret_key {
            None => None,
            Some(key) => {
                if settings.interval_ms == 0 {
                    anyhow::bail!("SWITCHYARD_BILLING_INTERVAL_MS must be at least 1");
                }
                if settings.stripe_webhook_secret.is_none() {
                    anyhow::bail!(
                        "STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY (the webhook endpoint's signing secret)"
                    );
                }
                for p in plans.all() {
                    if p.kind == PlanKind::Payg && p.stripe_price_id.is_none() {
                        anyhow::bail!(
                            "plan {:?} is pay-as-you-go but has no Stripe price: set STRIPE_PRICE_ID (or stripe_price_id in SWITCHYARD_BILLING_PLANS)",
                            p.name
                        );
                    }
                }
                let mut base = settings.stripe_api_base.clone();
                if !base.ends_with('/') {
                    base.push('/');
                }
                Some(
                    ::billing::Stripe::new(&::billing::StripeConfig {
                        secret_key: key.expose().to_owned(),
                        api_base: base,
                    })
                    .context("building the Stripe client")?,
                )
            }
        };
        Ok(Self {
            settings: settings.clone(),
            plans,
            stripe,
        })
    }

    pub fn enabled(&self) -> bool {
        self.stripe.is_some()
    }

    /// The Stripe client; `None` when billing is off.
    pub fn stripe(&self) -> Option<&::billing::Stripe> {
        self.stripe.as_ref()
    }

    /// The plan of an organization (its stored plan name, else the default; an unknown stored
    /// name, e.g. a plan removed from the file, reads as the default).
    pub fn plan_of(&self, stored: Option<&str>) -> &Plan {
        stored
            .and_then(|name| self.plans.get(name))
            .unwrap_or_else(|| self.plans.default_plan())
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.settings.grace_secs)
    }
}

/// Billed amount for a provider cost: `cost × (10 000 + margin_bps) / 10 000`, rounded half up.
pub fn billed_micros(cost_micros: i64, margin_bps: i64) -> i64 {
    let n = i128::from(cost_micros) * i128::from(10_000 + margin_bps);
    i64::try_from((n + 5_000).div_euclid(10_000)).unwrap_or(i64::MAX)
}

/// `identifier` and `Idempotency-Key` of the meter event for (organization, window, sequence).
pub fn report_identifier(tenant_id: Uuid, window_start: i64, sequence: i32) -> String {
    format!("sy_{}_{window_start}_{sequence}", tenant_id.simple())
}

fn sum_bigint(column: &str) -> SimpleExpr {
    Expr::cust(format!("CAST(COALESCE(SUM(\"{column}\"), 0) AS BIGINT)"))
}

/// Provider cost (µ$) of `tenant_id` per hour window with `from ≤ bucket_start < to`, from the
/// untagged hour rollups, in window order.
pub async fn hourly_cost<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    let q = Query::select()
        .expr_as(Expr::col(Alias::new("bucket_start")), Alias::new("w"))
        .expr_as(sum_bigint("cost_micros"), Alias::new("cost"))
        .from(Alias::new("usage_rollups"))
        .and_where(Expr::col(Alias::new("tenant_id")).eq(tenant_id))
        .and_where(Expr::col(Alias::new("grain")).eq("hour"))
        .and_where(Expr::col(Alias::new("tag_key")).eq(""))
        .and_where(Expr::col(Alias::new("bucket_start")).gte(from))
        .and_where(Expr::col(Alias::new("bucket_start")).lt(to))
        .group_by_col(Alias::new("bucket_start"))
        .order_by(Alias::new("bucket_start"), sea_orm::Order::Asc)
        .to_owned();
    let rows = db.query_all(&q).await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64>("", "w")?, r.try_get::<i64>("", "cost")?)))
        .collect()
}

/// Provider cost (µ$) per organization with `bucket_start ≥ from`, from the untagged hour
/// rollups (the current hour included: rollups are written with the raw rows).
pub async fn cost_since_by_tenant<C: ConnectionTrait>(
    db: &C,
    from: i64,
) -> Result<std::collections::HashMap<Uuid, i64>, DbErr> {
    let q = Query::select()
        .expr_as(Expr::col(Alias::new("tenant_id")), Alias::new("t"))
        .expr_as(sum_bigint("cost_micros"), Alias::new("cost"))
        .from(Alias::new("usage_rollups"))
        .and_where(Expr::col(Alias::new("grain")).eq("hour"))
        .and_where(Expr::col(Alias::new("tag_key")).eq(""))
        .and_where(Expr::col(Alias::new("bucket_start")).gte(from))
        .group_by_col(Alias::new("tenant_id"))
        .to_owned();
    let rows = db.query_all(&q).await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<Uuid>("", "t")?, r.try_get::<i64>("", "cost")?)))
        .collect()
}

/// Unix seconds of the start of the UTC month containing `now`.
pub fn month_start(now: time::OffsetDateTime) -> i64 {
    let d = now.date();
    time::Date::from_calendar_date(d.year(), d.month(), 1)
        .map(|first| first.midnight().assume_utc().unix_timestamp())
        .unwrap_or(0)
}

/// Unix seconds of the start of the next UTC month after `now`.
pub fn next_month_start(now: time::OffsetDateTime) -> i64 {
    let d = now.date();
    let (y, m) = if d.month() == time::Month::December {
        (d.year() + 1, time::Month::January)
    } else {
        (d.year(), d.month().next())
    };
    time::Date::from_calendar_date(y, m, 1)
        .map(|first| first.midnight().assume_utc().unix_timestamp())
        .unwrap_or(0)
}

/// Starts the billing workers (usage reporter, suspension check) when billing is on.
pub fn spawn(
    state: crate::state::AppState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !state.billing.enabled() {
        return None;
    }
    let interval = Duration::from_millis(state.billing.settings.interval_ms);
    let mut shutdown = shutdown;
    Some(tokio::spawn(async move {
        loop {
            let now = time::OffsetDateTime::now_utc();
            if let Err(e) = suspension::check_all(&state, now).await {
                tracing::warn!(error = %format!("{e:#}"), "billing suspension check failed; retrying");
            }
            if let Err(e) = reporter::report_all(&state, now).await {
                tracing::warn!(error = %format!("{e:#}"), "metered usage report pass failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billed_amount_rounds_half_up() {
        assert_eq!(billed_micros(1_000_000, 2_000), 1_200_000);
        assert_eq!(billed_micros(1, 2_000), 1);
        assert_eq!(billed_micros(3, 5_000), 5); // 4.5 → 5
        assert_eq!(billed_micros(0, 2_000), 0);
        assert_eq!(billed_micros(7, 0), 7);
    }

    #[test]
    fn identifiers_are_derived_from_org_window_sequence() {
        let id = Uuid::nil();
        assert_eq!(
            report_identifier(id, 3600, 1),
            "sy_00000000000000000000000000000000_3600_1"
        );
    }

    #[test]
    fn months() {
        let t = time::macros::datetime!(2026-12-06 09:00 UTC);
        assert_eq!(
            month_start(t),
            time::macros::datetime!(2026-12-01 00:00 UTC).unix_timestamp()
        );
        assert_eq!(
            next_month_start(t),
            time::macros::datetime!(2027-01-01 00:00 UTC).unix_timestamp()
        );
    }
}
