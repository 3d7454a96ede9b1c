//! The metered usage reporter and reconciliation.
//!
//! For every pay-as-you-go organization with a Stripe customer, each pass:
//! 1. claims the organization with a compare-and-set on `tenants.billing_claimed_until` (Unix
//!    ms; a claim of a process that died runs out after [`CLAIM_MS`]), so two control planes
//!    never report one organization at the same time;
//! 2. reads the billed amount of every closed hour window in the lookback (a window is closed
//!    once `window_end + SWITCHYARD_BILLING_LATENESS_SECS ≤ now`) from the hour rollups;
//! 3. for each window, first resends any report recorded but not confirmed (a crash or a failed
//!    request: same `identifier`, same `Idempotency-Key`, so Stripe counts it once), then, if
//!    the metered amount is above what was reported (late usage), records and sends one more
//!    report for the difference with the next sequence number;
//! 4. releases the claim.
//!
//! The row is inserted *before* the request (unique on tenant, window, sequence: a second
//! writer's insert fails instead of double-reporting) and marked `reported_at` after Stripe
//! accepted it.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Billing, PlanKind, WINDOW_SECS, billed_micros, report_identifier};
use crate::entities::{billing_report, tenant};
use crate::state::AppState;

/// How long a reporter's claim on an organization lasts.
pub const CLAIM_MS: i64 = 60_000;

/// The closed windows considered at `now`: `[from, to)` of window starts.
pub fn closed_range(billing: &Billing, now: OffsetDateTime) -> (i64, i64) {
    let lateness = i64::try_from(billing.settings.lateness_secs).unwrap_or(i64::MAX);
    let horizon = now.unix_timestamp().saturating_sub(lateness);
    // Windows [s, s + 1h) with s + 1h ≤ horizon.
    let to = horizon.div_euclid(WINDOW_SECS) * WINDOW_SECS;
    let lookback = i64::try_from(billing.settings.lookback_hours)
        .unwrap_or(i64::MAX / WINDOW_SECS)
        .saturating_mul(WINDOW_SECS);
    (to.saturating_sub(lookback), to)
}

/// One pass over every pay-as-you-go organization. Returns how many meter events were sent.
pub async fn report_all(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let payg: Vec<String> = state
        .billing
        .plans
        .all()
        .iter()
        .filter(|p| p.kind == PlanKind::Payg)
        .map(|p| p.name.clone())
        .collect();
    let default_is_payg = state.billing.plans.default_plan().kind == PlanKind::Payg;
    let mut plan_filter = Condition::any().add(tenant::Column::Plan.is_in(payg));
    if default_is_payg {
        plan_filter = plan_filter.add(tenant::Column::Plan.is_null());
    }
    let tenants = tenant::Entity::find()
        .filter(tenant::Column::StripeCustomerId.is_not_null())
        .filter(plan_filter)
        .all(&state.db)
        .await?;
    let mut sent = 0;
    for t in tenants {
        match report_tenant(state, &t, now).await {
            Ok(n) => sent += n,
            Err(e) => {
                tracing::warn!(tenant_id = %t.id, error = %format!("{e:#}"), "reporting metered usage failed; retried next pass")
            }
        }
    }
    Ok(sent)
}

/// Claims, reports and releases one organization. Returns the meter events sent (0 when
/// another control plane holds the claim).
pub async fn report_tenant(
    state: &AppState,
    t: &tenant::Model,
    now: OffsetDateTime,
) -> anyhow::Result<usize> {
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let until = now_ms.saturating_add(CLAIM_MS);
    let claimed = tenant::Entity::update_many()
        .col_expr(tenant::Column::BillingClaimedUntil, Expr::value(until))
        .filter(tenant::Column::Id.eq(t.id))
        .filter(
            Condition::any()
                .add(tenant::Column::BillingClaimedUntil.is_null())
                .add(tenant::Column::BillingClaimedUntil.lt(now_ms)),
        )
        .exec(&state.db)
        .await?
        .rows_affected;
    if claimed != 1 {
        return Ok(0);
    }
    let result = report_claimed(state, t, now).await;
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::BillingClaimedUntil,
            Expr::value(Option::<i64>::None),
        )
        .filter(tenant::Column::Id.eq(t.id))
        .filter(tenant::Column::BillingClaimedUntil.eq(until))
        .exec(&state.db)
        .await?;
    result
}

async fn report_claimed(
    state: &AppState,
    t: &tenant::Model,
    now: OffsetDateTime,
) -> anyhow::Result<usize> {
    let (Some(stripe), Some(customer)) = (state.billing.stripe(), t.stripe_customer_id.as_deref())
    else {
        return Ok(0);
    };
    let plan = state.billing.plan_of(t.plan.as_deref());
    let (from, to) = closed_range(&state.billing, now);
    let metered = super::hourly_cost(&state.db, t.id, from, to).await?;
    let mut reports = reports_by_window(state, t.id, from, to).await?;
    let mut sent = 0;
    for (window_start, cost) in metered {
        let billed = billed_micros(cost, plan.margin_bps);
        let rows = reports.remove(&window_start).unwrap_or_default();
        // 1. Anything recorded but not confirmed: resend as it was.
        for r in rows.iter().filter(|r| r.reported_at.is_none()) {
            send(state, stripe, customer, r).await?;
            sent += 1;
        }
        // 2. Late usage: one correction for the difference.
        let reported: i64 = rows.iter().map(|r| r.quantity).sum();
        let reported_cost: i64 = rows.iter().map(|r| r.cost_micros).sum();
        let delta = billed - reported;
        if delta <= 0 {
            if delta < 0 {
                tracing::warn!(tenant_id = %t.id, window_start, metered = billed, reported, "reported more than metered for a window (rollups shrank?); not corrected");
            }
            continue;
        }
        let sequence = rows.iter().map(|r| r.sequence + 1).max().unwrap_or(0);
        let identifier = report_identifier(t.id, window_start, sequence);
        let row = billing_report::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(t.id),
            window_start: Set(window_start),
            window_end: Set(window_start + WINDOW_SECS),
            sequence: Set(sequence),
            quantity: Set(delta),
            cost_micros: Set(cost - reported_cost),
            idempotency_key: Set(identifier.clone()),
            identifier: Set(identifier),
            created_at: Set(crate::http::now()),
            reported_at: Set(None),
        };
        let inserted = billing_report::Entity::insert(row)
            .exec_with_returning(&state.db)
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) => {
                // A unique violation means another writer recorded this sequence; it sends it.
                tracing::info!(tenant_id = %t.id, window_start, sequence, error = %e, "report already recorded elsewhere");
                continue;
            }
        };
        send(state, stripe, customer, &row).await?;
        sent += 1;
    }
    Ok(sent)
}

async fn reports_by_window(
    state: &AppState,
    tenant_id: Uuid,
    from: i64,
    to: i64,
) -> anyhow::Result<BTreeMap<i64, Vec<billing_report::Model>>> {
    let rows = billing_report::Entity::find()
        .filter(billing_report::Column::TenantId.eq(tenant_id))
        .filter(billing_report::Column::WindowStart.gte(from))
        .filter(billing_report::Column::WindowStart.lt(to))
        .order_by_asc(billing_report::Column::WindowStart)
        .order_by_asc(billing_report::Column::Sequence)
        .all(&state.db)
        .await?;
    let mut by_window: BTreeMap<i64, Vec<billing_report::Model>> = BTreeMap::new();
    for r in rows {
        by_window.entry(r.window_start).or_default().push(r);
    }
    Ok(by_window)
}

async fn send(
    state: &AppState,
    stripe: &::billing::Stripe,
    customer: &str,
    r: &billing_report::Model,
) -> anyhow::Result<()> {
    stripe
        .create_meter_event(&::billing::MeterReport {
            event_name: &state.billing.settings.meter_event_name,
            customer,
            value: r.quantity,
            identifier: &r.identifier,
            idempotency_key: &r.idempotency_key,
            timestamp: r.window_start,
        })
        .await
        .map_err(|e| anyhow::anyhow!("meter event {}: {e}", r.identifier))?;
    billing_report::Entity::update_many()
        .col_expr(
            billing_report::Column::ReportedAt,
            Expr::value(Some(crate::http::now())),
        )
        .filter(billing_report::Column::Id.eq(r.id))
        .exec(&state.db)
        .await?;
    tracing::info!(tenant_id = %r.tenant_id, window_start = r.window_start, sequence = r.sequence, quantity = r.quantity, "metered usage reported");
    Ok(())
}

/// One closed window whose reported amount differs from the metered one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowMismatch {
    /// Unix seconds.
    pub window_start: i64,
    /// Billed micro-dollars metered (rollups × margin).
    pub metered_micros: i64,
    /// Billed micro-dollars Stripe accepted for the window.
    pub reported_micros: i64,
}

/// Reported = metered, for every closed window in the lookback.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reconciliation {
    /// Window starts considered: `[from, to)`, Unix seconds.
    pub from: i64,
    pub to: i64,
    /// Closed windows with usage or reports.
    pub closed_windows: usize,
    /// Windows where reported = metered.
    pub matched_windows: usize,
    /// The others (usually: not reported yet, or a report awaiting Stripe).
    pub mismatched: Vec<WindowMismatch>,
    /// Sums over the closed windows, micro-dollars billed.
    pub metered_micros: i64,
    pub reported_micros: i64,
    /// `mismatched` is empty.
    pub reconciled: bool,
}

/// Compares, per closed window, the metered billed amount with what Stripe accepted.
pub async fn reconcile(
    state: &AppState,
    t: &tenant::Model,
    now: OffsetDateTime,
) -> anyhow::Result<Reconciliation> {
    let plan = state.billing.plan_of(t.plan.as_deref());
    let (from, to) = closed_range(&state.billing, now);
    let mut windows: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (w, cost) in super::hourly_cost(&state.db, t.id, from, to).await? {
        windows.entry(w).or_default().0 = billed_micros(cost, plan.margin_bps);
    }
    for (w, rows) in reports_by_window(state, t.id, from, to).await? {
        windows.entry(w).or_default().1 = rows
            .iter()
            .filter(|r| r.reported_at.is_some())
            .map(|r| r.quantity)
            .sum();
    }
    let mismatched: Vec<WindowMismatch> = windows
        .iter()
        .filter(|(_, (m, r))| m != r)
        .map(|(w, (m, r))| WindowMismatch {
            window_start: *w,
            metered_micros: *m,
            reported_micros: *r,
        })
        .collect();
    Ok(Reconciliation {
        from,
        to,
        closed_windows: windows.len(),
        matched_windows: windows.len() - mismatched.len(),
        metered_micros: windows.values().map(|(m, _)| m).sum(),
        reported_micros: windows.values().map(|(_, r)| r).sum(),
        reconciled: mismatched.is_empty(),
        mismatched,
    })
}
