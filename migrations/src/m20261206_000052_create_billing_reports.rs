//! Metered usage reported to Stripe: one row per Billing Meter Event, per organization, hour
//! window (`window_start`/`window_end`, Unix seconds) and `sequence` (0 = the window's first
//! report, 1.. = corrections for usage that arrived late). The row is written *before* the
//! event is sent (`reported_at` NULL) with the `identifier` and `idempotency_key` derived from
//! (organization, window, sequence), and marked after Stripe answered: a crash in between
//! resends the same identifier and key, which Stripe dedupes, so a window is never billed twice.
//! `quantity` is what this event adds (in the meter's unit: billed micro-dollars).
//! Unique (`tenant_id`, `window_start`, `sequence`).

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum BillingReports {
    Table,
    Id,
    TenantId,
    WindowStart,
    WindowEnd,
    Sequence,
    Quantity,
    CostMicros,
    IdempotencyKey,
    Identifier,
    CreatedAt,
    ReportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BillingReports::Table)
                    .col(pk_uuid(BillingReports::Id))
                    .col(uuid(BillingReports::TenantId))
                    .col(big_integer(BillingReports::WindowStart))
                    .col(big_integer(BillingReports::WindowEnd))
                    .col(integer(BillingReports::Sequence))
                    .col(big_integer(BillingReports::Quantity))
                    .col(big_integer(BillingReports::CostMicros))
                    .col(text(BillingReports::IdempotencyKey))
                    .col(text(BillingReports::Identifier))
                    .col(timestamp_with_time_zone(BillingReports::CreatedAt))
                    .col(timestamp_with_time_zone_null(BillingReports::ReportedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_billing_reports_tenant")
                            .from(BillingReports::Table, BillingReports::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_billing_reports_window")
                    .table(BillingReports::Table)
                    .col(BillingReports::TenantId)
                    .col(BillingReports::WindowStart)
                    .col(BillingReports::Sequence)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BillingReports::Table).to_owned())
            .await
    }
}
