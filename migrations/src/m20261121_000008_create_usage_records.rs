//! One row per data-plane request. The primary key is the usage event id (the request id), so
//! a re-delivered event is skipped by `ON CONFLICT DO NOTHING`. No foreign keys: this is an
//! append-only ledger fed by events, and a constraint failure must never wedge ingestion.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    TenantId,
    KeyId,
    TeamId,
    Model,
    DeploymentId,
    ProviderId,
    Provider,
    UpstreamModel,
    Endpoint,
    Stream,
    Status,
    Outcome,
    ErrorCode,
    PromptTokens,
    CompletionTokens,
    TokensEstimated,
    CostMicros,
    LatencyMs,
    TtftMs,
    StartedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageRecords::Table)
                    .col(pk_uuid(UsageRecords::Id))
                    .col(uuid(UsageRecords::TenantId))
                    .col(uuid_null(UsageRecords::KeyId))
                    .col(uuid_null(UsageRecords::TeamId))
                    .col(text(UsageRecords::Model))
                    .col(uuid_null(UsageRecords::DeploymentId))
                    .col(uuid_null(UsageRecords::ProviderId))
                    .col(text_null(UsageRecords::Provider))
                    .col(text_null(UsageRecords::UpstreamModel))
                    .col(text(UsageRecords::Endpoint))
                    .col(boolean(UsageRecords::Stream))
                    .col(integer(UsageRecords::Status))
                    .col(text(UsageRecords::Outcome))
                    .col(text_null(UsageRecords::ErrorCode))
                    .col(big_integer(UsageRecords::PromptTokens))
                    .col(big_integer(UsageRecords::CompletionTokens))
                    .col(boolean(UsageRecords::TokensEstimated))
                    .col(big_integer(UsageRecords::CostMicros))
                    .col(big_integer(UsageRecords::LatencyMs))
                    .col(big_integer_null(UsageRecords::TtftMs))
                    .col(timestamp_with_time_zone(UsageRecords::StartedAt))
                    .col(timestamp_with_time_zone(UsageRecords::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Listing is "newest first within a tenant", paged by (started_at, id).
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_tenant_started")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::TenantId)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageRecords::Table).to_owned())
            .await
    }
}
