//! Stripe webhook events: applied once each (by event id), then the organization's suspension
//! is re-decided at once, so a paid invoice reinstates it (and a failed payment past a zero
//! grace suspends it) within the webhook request.
//!
//! Handled (<https://docs.stripe.com/api/events/types>):
//! - `checkout.session.completed`: `client_reference_id` is the organization id (set by
//!   `POST /billing/checkout`); links the customer and subscription and moves the organization
//!   to the plan it subscribed to (`metadata.plan`, else the first pay-as-you-go plan).
//! - `customer.subscription.created` / `.updated`: records the subscription id and status.
//! - `customer.subscription.deleted`: status `canceled`, plan back to the default.
//! - `invoice.paid`: clears `payment_failed_at` (lifts a `payment_failed` suspension).
//! - `invoice.payment_failed`: sets `payment_failed_at` (kept from the first failure), which
//!   starts the grace period.
//!
//! Other types are acknowledged and recorded, not applied. Events naming a customer no
//! organization has are acknowledged (logged) so Stripe stops retrying them.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::PlanKind;
use crate::entities::{stripe_event, tenant};
use crate::state::AppState;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Seen before (same event id): nothing done.
    Duplicate,
    /// Recorded, but its type is not one billing acts on, or it names no organization.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

fn str_field<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    match object.get(name)? {
        Value::String(s) => Some(s),
        // An expanded object: its id.
        Value::Object(o) => o.get("id").and_then(Value::as_str),
        _ => None,
    }
}

/// Applies a verified event once.
pub async fn handle(state: &AppState, event: &::billing::WebhookEvent) -> anyhow::Result<Outcome> {
    let tx = state.db.begin().await?;
    let inserted = stripe_event::Entity::insert(stripe_event::ActiveModel {
        id: Set(event.id.clone()),
        r#type: Set(event.type_.clone()),
        received_at: Set(crate::http::now()),
    })
    .on_conflict(
        OnConflict::column(stripe_event::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&tx)
    .await?;
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    let tenant_id = apply(state, &tx, event).await?;
    tx.commit().await?;
    match tenant_id {
        Some(id) => {
            tracing::info!(event_id = %event.id, event_type = %event.type_, tenant_id = %id, "stripe event applied");
            // Decided at the time after the change (a grace of 0 suspends at once).
            super::suspension::check_one(state, id, OffsetDateTime::now_utc()).await?;
            Ok(Outcome::Applied)
        }
        None => {
            tracing::info!(event_id = %event.id, event_type = %event.type_, "stripe event ignored");
            Ok(Outcome::Ignored)
        }
    }
}

async fn tenant_by_customer<C: ConnectionTrait>(
    db: &C,
    customer: Option<&str>,
) -> anyhow::Result<Option<tenant::Model>> {
    let Some(customer) = customer else {
        return Ok(None);
    };
    Ok(tenant::Entity::find()
        .filter(tenant::Column::StripeCustomerId.eq(customer))
        .one(db)
        .await?)
}

/// Applies the event inside `tx`; returns the organization it changed.
async fn apply<C: ConnectionTrait>(
    state: &AppState,
    tx: &C,
    event: &::billing::WebhookEvent,
) -> anyhow::Result<Option<Uuid>> {
    let o = &event.object;
    match event.type_.as_str() {
        "checkout.session.completed" => {
            let Some(tenant_id) =
                str_field(o, "client_reference_id").and_then(|s| Uuid::parse_str(s).ok())
            else {
                return Ok(None);
            };
            let Some(t) = tenant::Entity::find_by_id(tenant_id).one(tx).await? else {
                return Ok(None);
            };
            let plan = o
                .get("metadata")
                .and_then(|m| str_field(m, "plan"))
                .and_then(|name| state.billing.plans.get(name))
                .filter(|p| p.kind == PlanKind::Payg)
                .or_else(|| state.billing.plans.first_payg())
                .map(|p| p.name.clone());
            let mut update = tenant::ActiveModel {
                id: Set(t.id),
                plan: Set(plan.or(t.plan.clone())),
                subscription_status: Set(Some("active".to_owned())),
                ..Default::default()
            };
            if let Some(customer) = str_field(o, "customer") {
                update.stripe_customer_id = Set(Some(customer.to_owned()));
            }
            if let Some(sub) = str_field(o, "subscription") {
                update.stripe_subscription_id = Set(Some(sub.to_owned()));
            }
            tenant::Entity::update(update).exec(tx).await?;
            Ok(Some(t.id))
        }
        "customer.subscription.created" | "customer.subscription.updated" => {
            let Some(t) = tenant_by_customer(tx, str_field(o, "customer")).await? else {
                return Ok(None);
            };
            tenant::Entity::update(tenant::ActiveModel {
                id: Set(t.id),
                stripe_subscription_id: Set(str_field(o, "id").map(str::to_owned)),
                subscription_status: Set(str_field(o, "status").map(str::to_owned)),
                ..Default::default()
            })
            .exec(tx)
            .await?;
            Ok(Some(t.id))
        }
        "customer.subscription.deleted" => {
            let Some(t) = tenant_by_customer(tx, str_field(o, "customer")).await? else {
                return Ok(None);
            };
            tenant::Entity::update(tenant::ActiveModel {
                id: Set(t.id),
                subscription_status: Set(Some("canceled".to_owned())),
                plan: Set(None),
                ..Default::default()
            })
            .exec(tx)
            .await?;
            Ok(Some(t.id))
        }
        "invoice.paid" => {
            let Some(t) = tenant_by_customer(tx, str_field(o, "customer")).await? else {
                return Ok(None);
            };
            tenant::Entity::update(tenant::ActiveModel {
                id: Set(t.id),
                payment_failed_at: Set(None),
                ..Default::default()
            })
            .exec(tx)
            .await?;
            Ok(Some(t.id))
        }
        "invoice.payment_failed" => {
            let Some(t) = tenant_by_customer(tx, str_field(o, "customer")).await? else {
                return Ok(None);
            };
            // The grace period runs from the first failure until an invoice is paid.
            tenant::Entity::update_many()
                .col_expr(
                    tenant::Column::PaymentFailedAt,
                    Expr::value(Some(crate::http::now())),
                )
                .filter(tenant::Column::Id.eq(t.id))
                .filter(tenant::Column::PaymentFailedAt.is_null())
                .exec(tx)
                .await?;
            Ok(Some(t.id))
        }
        _ => Ok(None),
    }
}
