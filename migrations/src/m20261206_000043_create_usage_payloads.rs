//! `usage_payloads`: the prompt and answer of a request, kept only for organizations that opted
//! in (`tenants.store_payloads`). Separate from `usage_records` so the hot, scanned table never
//! carries large text; `id` is the request id (= the usage record's id). Retention deletes by
//! `(tenant_id, started_at)` and `started_at`, like the raw rows.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsagePayloads {
    Table,
    Id,
    TenantId,
    StartedAt,
    Request,
    Response,
    Truncated,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsagePayloads::Table)
                    .col(pk_uuid(UsagePayloads::Id))
                    .col(uuid(UsagePayloads::TenantId))
                    .col(timestamp_with_time_zone(UsagePayloads::StartedAt))
                    .col(text(UsagePayloads::Request))
                    .col(text(UsagePayloads::Response))
                    .col(boolean(UsagePayloads::Truncated))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_payloads_tenant_started")
                    .table(UsagePayloads::Table)
                    .col(UsagePayloads::TenantId)
                    .col(UsagePayloads::StartedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_payloads_started")
                    .table(UsagePayloads::Table)
                    .col(UsagePayloads::StartedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsagePayloads::Table).to_owned())
            .await
    }
}
