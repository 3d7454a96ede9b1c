//! Billing state of an organization (all NULL until billing touches it): its plan (`plan`,
//! NULL = the configured default plan), its Stripe customer and subscription, when a payment
//! failed (cleared when an invoice is paid), and its suspension (`suspended_at`,
//! `suspension_reason`: `payment_failed`, `credit_exhausted` or `manual`; `suspension_message`,
//! what API callers are told, published as is).
//! `billing_claimed_until` (Unix ms) is the usage reporter's compare-and-set claim on the
//! organization, so two control planes never report its usage at the same time.
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Plan,
    StripeCustomerId,
    StripeSubscriptionId,
    SubscriptionStatus,
    PaymentFailedAt,
    SuspendedAt,
    SuspensionReason,
    SuspensionMessage,
    BillingClaimedUntil,
}

fn columns() -> Vec<ColumnDef> {
    vec![
        text_null(Tenants::Plan),
        text_null(Tenants::StripeCustomerId),
        text_null(Tenants::StripeSubscriptionId),
        text_null(Tenants::SubscriptionStatus),
        timestamp_with_time_zone_null(Tenants::PaymentFailedAt),
        timestamp_with_time_zone_null(Tenants::SuspendedAt),
        text_null(Tenants::SuspensionReason),
        text_null(Tenants::SuspensionMessage),
        big_integer_null(Tenants::BillingClaimedUntil),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for mut column in columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // Webhooks find the organization by its Stripe customer.
        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_stripe_customer_id")
                    .table(Tenants::Table)
                    .col(Tenants::StripeCustomerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_tenants_stripe_customer_id")
                    .table(Tenants::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Tenants::BillingClaimedUntil,
            Tenants::SuspensionMessage,
            Tenants::SuspensionReason,
            Tenants::SuspendedAt,
            Tenants::PaymentFailedAt,
            Tenants::SubscriptionStatus,
            Tenants::StripeSubscriptionId,
            Tenants::StripeCustomerId,
            Tenants::Plan,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
