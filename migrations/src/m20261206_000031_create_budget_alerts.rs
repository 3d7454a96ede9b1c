//! Budget alerts: one row per threshold a budget crossed in one window. The unique index on
//! (`budget_id`, `window_start`, `threshold`) is what makes an alert fire once per threshold per
//! period, however many control planes look at the same budget: each inserts with
//! `ON CONFLICT DO NOTHING` and only the one that inserted goes on to queue the webhook.
//! `window_start` is the window's start in Unix seconds (the ledger's window id). Deleting the
//! budget deletes its alerts.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;
use crate::m20261206_000030_create_budgets::Budgets;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum BudgetAlerts {
    Table,
    Id,
    TenantId,
    BudgetId,
    WindowStart,
    Threshold,
    SpentMicros,
    LimitMicros,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BudgetAlerts::Table)
                    .col(pk_uuid(BudgetAlerts::Id))
                    .col(uuid(BudgetAlerts::TenantId))
                    .col(uuid(BudgetAlerts::BudgetId))
                    .col(big_integer(BudgetAlerts::WindowStart))
                    .col(integer(BudgetAlerts::Threshold))
                    .col(big_integer(BudgetAlerts::SpentMicros))
                    .col(big_integer(BudgetAlerts::LimitMicros))
                    .col(timestamp_with_time_zone(BudgetAlerts::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_budget_alerts_tenant")
                            .from(BudgetAlerts::Table, BudgetAlerts::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_budget_alerts_budget")
                            .from(BudgetAlerts::Table, BudgetAlerts::BudgetId)
                            .to(Budgets::Table, Budgets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_budget_alerts_crossing")
                    .table(BudgetAlerts::Table)
                    .col(BudgetAlerts::BudgetId)
                    .col(BudgetAlerts::WindowStart)
                    .col(BudgetAlerts::Threshold)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // `GET /alerts`: an organization's alerts, newest first (ids are UUIDv7).
        manager
            .create_index(
                Index::create()
                    .name("idx_budget_alerts_tenant_id")
                    .table(BudgetAlerts::Table)
                    .col(BudgetAlerts::TenantId)
                    .col(BudgetAlerts::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BudgetAlerts::Table).to_owned())
            .await
    }
}
