//! Budgets: a spending cap of an organization, a team or a key over a period (`daily`,
//! `weekly`, `monthly` in an IANA time zone, or `lifetime`), in integer micro-dollars.
//!
//! `scope` is `tenant`, `team` or `key` and `scope_id` the id of that object. There is no foreign
//! key on `scope_id` (it names one of three tables): the API checks it belongs to the budget's
//! organization when the budget is written, and deleting a team deletes its budgets in the same
//! transaction (keys are revoked, never deleted). `alert_thresholds` is a JSON array of
//! percentages. Deleting the organization deletes its budgets.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Budgets {
    Table,
    Id,
    TenantId,
    Scope,
    ScopeId,
    LimitMicros,
    Period,
    Timezone,
    Hard,
    AlertThresholds,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Budgets::Table)
                    .col(pk_uuid(Budgets::Id))
                    .col(uuid(Budgets::TenantId))
                    .col(text(Budgets::Scope))
                    .col(uuid(Budgets::ScopeId))
                    .col(big_integer(Budgets::LimitMicros))
                    .col(text(Budgets::Period))
                    .col(text(Budgets::Timezone))
                    .col(boolean(Budgets::Hard).default(true))
                    .col(json(Budgets::AlertThresholds))
                    .col(timestamp_with_time_zone(Budgets::CreatedAt))
                    .col(timestamp_with_time_zone(Budgets::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_budgets_tenant")
                            .from(Budgets::Table, Budgets::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_budgets_tenant")
                    .table(Budgets::Table)
                    .col(Budgets::TenantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Budgets::Table).to_owned())
            .await
    }
}
