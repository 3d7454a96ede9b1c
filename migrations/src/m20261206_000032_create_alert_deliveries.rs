//! Webhook deliveries of budget alerts: a queue in the database, so a delivery survives a
//! restart and any control plane may send it.
//!
//! `payload` is the exact JSON body, fixed when the alert is queued, so every attempt sends the
//! same bytes (only the signature's timestamp changes). `status` is `pending`, `delivered` or
//! `failed`. Times a sender compares are integers (Unix milliseconds), the same on PostgreSQL
//! and SQLite: `next_attempt_at` (not before), `claimed_until` (a sender's claim: another sender
//! leaves the row alone until then, so two control planes never send one delivery at the same
//! time, and a crashed sender's claim runs out). Deleting the alert deletes its deliveries.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261206_000031_create_budget_alerts::BudgetAlerts;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AlertDeliveries {
    Table,
    Id,
    AlertId,
    TenantId,
    Url,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    LastError,
    DeliveredAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertDeliveries::Table)
                    .col(pk_uuid(AlertDeliveries::Id))
                    .col(uuid(AlertDeliveries::AlertId))
                    .col(uuid(AlertDeliveries::TenantId))
                    .col(text(AlertDeliveries::Url))
                    .col(text(AlertDeliveries::Payload))
                    .col(text(AlertDeliveries::Status))
                    .col(integer(AlertDeliveries::Attempts).default(0))
                    .col(big_integer(AlertDeliveries::NextAttemptAt))
                    .col(big_integer_null(AlertDeliveries::ClaimedUntil))
                    .col(text_null(AlertDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(AlertDeliveries::DeliveredAt))
                    .col(timestamp_with_time_zone(AlertDeliveries::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_deliveries_alert")
                            .from(AlertDeliveries::Table, AlertDeliveries::AlertId)
                            .to(BudgetAlerts::Table, BudgetAlerts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The sender's scan: pending rows due now.
        manager
            .create_index(
                Index::create()
                    .name("idx_alert_deliveries_due")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::Status)
                    .col(AlertDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alert_deliveries_alert")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::AlertId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AlertDeliveries::Table).to_owned())
            .await
    }
}
