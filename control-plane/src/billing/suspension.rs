//! Suspension: what an organization's billing state says it should be, and applying that
//! through the normal publish path.
//!
//! [`desired`] is a pure function of the tenant row, its plan, its month's billed usage and the
//! time. [`apply`] writes a change with a compare-and-set on `suspension_reason` (so two control
//! planes deciding at once write it once) and a config version bump + outbox row in the same
//! transaction, then waits for the publish: every data-plane node sees the new
//! `TenantConfig.suspension` within the publish latency (well under a second).
//!
//! A `manual` suspension (set by an operator in the database) is never lifted automatically.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use shared::config::{Suspension, SuspensionReason};
use shared::money::format_usd;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Billing, PlanKind, billed_micros, month_start};
use crate::entities::tenant;
use crate::state::AppState;

/// Wire name of a reason (as stored in `tenants.suspension_reason`).
pub fn reason_name(reason: SuspensionReason) -> &'static str {
    match reason {
        SuspensionReason::PaymentFailed => "payment_failed",
        SuspensionReason::CreditExhausted => "credit_exhausted",
        SuspensionReason::Manual => "manual",
    }
}

pub fn parse_reason(name: &str) -> Option<SuspensionReason> {
    match name {
        "payment_failed" => Some(SuspensionReason::PaymentFailed),
        "credit_exhausted" => Some(SuspensionReason::CreditExhausted),
        "manual" => Some(SuspensionReason::Manual),
        _ => None,
    }
}

/// The message API callers get with their 402: what happened and how to fix it.
pub fn message(billing: &Billing, reason: SuspensionReason, plan_credit_micros: i64) -> String {
    match reason {
        SuspensionReason::PaymentFailed => "This organization is suspended: a payment failed and was not settled within the grace period. \
             An owner can update the payment method and pay the open invoice in the billing portal (POST /api/v1/billing/portal); \
             requests are accepted again as soon as the invoice is paid."
            .to_owned(),
        SuspensionReason::CreditExhausted => format!(
            "This organization has used the ${} of usage its free plan includes this month. \
             An owner can subscribe to pay-as-you-go (POST /api/v1/billing/checkout) to continue now; \
             otherwise the credit renews on the first day of next month (UTC).",
            format_usd(plan_credit_micros)
        ),
        SuspensionReason::Manual => {
            let _ = billing;
            "This organization is suspended by the operator of this gateway; contact them to have it reinstated."
                .to_owned()
        }
    }
}

/// The suspension the organization's billing state calls for (`None`: not suspended).
pub fn desired(
    billing: &Billing,
    t: &tenant::Model,
    month_cost_micros: i64,
    now: OffsetDateTime,
) -> Option<SuspensionReason> {
    let current = t.suspension_reason.as_deref().and_then(parse_reason);
    if current == Some(SuspensionReason::Manual) {
        return current;
    }
    let plan = billing.plan_of(t.plan.as_deref());
    if plan.kind == PlanKind::Enterprise {
        return None;
    }
    if let Some(failed) = t.payment_failed_at
        && now - failed >= billing.grace()
    {
        return Some(SuspensionReason::PaymentFailed);
    }
    if plan.kind == PlanKind::Free
        && billed_micros(month_cost_micros, plan.margin_bps) >= plan.included_credit_micros
        && month_cost_micros > 0
    {
        return Some(SuspensionReason::CreditExhausted);
    }
    None
}

/// The suspension a tenant row publishes (`TenantConfig.suspension`): its stored reason and
/// message. A reason this version does not know reads as `manual` (fail closed).
pub fn of_row(t: &tenant::Model) -> Option<Suspension> {
    let reason = t.suspension_reason.as_deref()?;
    Some(Suspension {
        reason: parse_reason(reason).unwrap_or(SuspensionReason::Manual),
        message: t.suspension_message.clone().unwrap_or_else(|| {
            "This organization is suspended; an owner can see why in GET /api/v1/billing."
                .to_owned()
        }),
    })
}

/// Sets the tenant's suspension to `want` if it is still `t.suspension_reason` (compare and
/// set), bumping the config version in the same transaction, then waits for the publish.
/// Returns whether this call changed it.
pub async fn apply(
    state: &AppState,
    t: &tenant::Model,
    want: Option<SuspensionReason>,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let want_name = want.map(reason_name);
    if want_name == t.suspension_reason.as_deref() {
        return Ok(false);
    }
    let tx = state.db.begin().await?;
    let mut update = tenant::Entity::update_many()
        .col_expr(tenant::Column::SuspensionReason, Expr::value(want_name))
        .col_expr(
            tenant::Column::SuspensionMessage,
            Expr::value(want.map(|r| {
                message(
                    &state.billing,
                    r,
                    state
                        .billing
                        .plan_of(t.plan.as_deref())
                        .included_credit_micros,
                )
            })),
        )
        .col_expr(
            tenant::Column::SuspendedAt,
            Expr::value(want.map(|_| crate::http::now())),
        )
        .filter(tenant::Column::Id.eq(t.id));
    update = match &t.suspension_reason {
        Some(old) => update.filter(tenant::Column::SuspensionReason.eq(old.clone())),
        None => update.filter(tenant::Column::SuspensionReason.is_null()),
    };
    if update.exec(&tx).await?.rows_affected != 1 {
        // Another control plane decided first.
        return Ok(false);
    }
    let outbox = crate::sync::bump_tenant_version(&tx, t.id).await?;
    tx.commit().await?;
    match want {
        Some(reason) => {
            tracing::info!(tenant_id = %t.id, reason = reason_name(reason), "organization suspended")
        }
        None => tracing::info!(tenant_id = %t.id, "organization reinstated"),
    }
    let _ = now;
    state.sync.wait_published(&[outbox]).await;
    Ok(true)
}

/// Re-decides one organization now (after a webhook changed its billing state).
pub async fn check_one(
    state: &AppState,
    tenant_id: Uuid,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let Some(t) = tenant::Entity::find_by_id(tenant_id).one(&state.db).await? else {
        return Ok(());
    };
    let month_cost = month_cost(&state.db, &state.billing, &t, now).await?;
    let want = desired(&state.billing, &t, month_cost, now);
    apply(state, &t, want, now).await?;
    Ok(())
}

async fn month_cost(
    db: &DatabaseConnection,
    billing: &Billing,
    t: &tenant::Model,
    now: OffsetDateTime,
) -> anyhow::Result<i64> {
    if billing.plan_of(t.plan.as_deref()).kind != PlanKind::Free {
        return Ok(0);
    }
    let from = month_start(now);
    let rows = super::hourly_cost(db, t.id, from, i64::MAX).await?;
    Ok(rows.iter().map(|(_, c)| c).sum())
}

/// One pass over every organization (the worker).
pub async fn check_all(state: &AppState, now: OffsetDateTime) -> anyhow::Result<usize> {
    let tenants = tenant::Entity::find().all(&state.db).await?;
    let costs: HashMap<Uuid, i64> =
        super::cost_since_by_tenant(&state.db, month_start(now)).await?;
    let mut changed = 0;
    for t in &tenants {
        let want = desired(
            &state.billing,
            t,
            costs.get(&t.id).copied().unwrap_or(0),
            now,
        );
        match apply(state, t, want, now).await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(tenant_id = %t.id, error = %format!("{e:#}"), "applying a suspension decision failed")
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingSettings;

    fn row(plan: Option<&str>) -> tenant::Model {
        tenant::Model {
            id: Uuid::nil(),
            name: "org".into(),
            config_version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            allowed_regions: None,
            alert_webhook_url: None,
            alert_webhook_secret: None,
            rpm_limit: None,
            tpm_limit: None,
            usage_retention_days: None,
            store_payloads: false,
            plan: plan.map(str::to_owned),
            stripe_customer_id: None,
            stripe_subscription_id: None,
            subscription_status: None,
            payment_failed_at: None,
            suspended_at: None,
            suspension_reason: None,
            suspension_message: None,
            billing_claimed_until: None,
        }
    }

    #[test]
    fn decisions() {
        let billing = Billing {
            settings: BillingSettings {
                grace_secs: 60,
                ..BillingSettings::default()
            },
            plans: super::super::Plans::builtin(&BillingSettings::default()),
            stripe: None,
        };
        let now = time::macros::datetime!(2026-12-06 10:00 UTC);
        // Free: $5 billed at 20 % margin is $4.166667 of cost.
        assert_eq!(desired(&billing, &row(None), 4_166_000, now), None);
        assert_eq!(
            desired(&billing, &row(None), 4_166_667, now),
            Some(SuspensionReason::CreditExhausted)
        );
        // Pay-as-you-go: no credit; a failed payment within the grace period is not a suspension.
        let mut t = row(Some("payg"));
        assert_eq!(desired(&billing, &t, 99_000_000, now), None);
        t.payment_failed_at = Some(now - time::Duration::seconds(59));
        assert_eq!(desired(&billing, &t, 0, now), None);
        t.payment_failed_at = Some(now - time::Duration::seconds(60));
        assert_eq!(
            desired(&billing, &t, 0, now),
            Some(SuspensionReason::PaymentFailed)
        );
        // Enterprise: never automatically; manual: never lifted automatically.
        let mut e = row(Some("enterprise"));
        e.payment_failed_at = t.payment_failed_at;
        assert_eq!(desired(&billing, &e, 99_000_000, now), None);
        let mut m = row(Some("payg"));
        m.suspension_reason = Some("manual".into());
        assert_eq!(
            desired(&billing, &m, 0, now),
            Some(SuspensionReason::Manual)
        );
        assert_eq!(of_row(&m).map(|s| s.reason), Some(SuspensionReason::Manual));
    }
}
