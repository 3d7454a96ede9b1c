//! `usage_rollups`: pre-aggregated usage for analytics, one table for three grains (`minute`,
//! `hour`, `day`). A row is one bucket (`bucket_start`, unix seconds UTC) of one combination of
//! dimensions (team, key, deployment, model, provider, route, region, endpoint, and a tag);
//! `dims_hash` is a hex hash over all of them, so the natural key stays short and fixed-width.
//!
//! Every event is counted once in the untagged rows (`tag_key = ''`, `tag_value = ''`) of each
//! grain and once more per tag it carries, in a row with that tag: totals and non-tag group-bys
//! read `tag_key = ''`, tag group-bys read `tag_key = <k>`. Latency and TTFT are kept as
//! mergeable sketches (`crate::sketch::Sketch::encode()` in the control plane), so percentiles
//! over any range merge bucket sketches instead of scanning raw rows.
//!
//! The primary key is the unique key `(tenant_id, grain, bucket_start, dims_hash)`; the writer
//! merges into it. `(grain, bucket_start)` serves the retention worker, which drops old rows of
//! each grain for every tenant at once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRollups {
    Table,
    TenantId,
    Grain,
    BucketStart,
    DimsHash,
    TeamId,
    KeyId,
    DeploymentId,
    Model,
    Provider,
    Route,
    Region,
    Endpoint,
    TagKey,
    TagValue,
    Requests,
    Successes,
    CacheHits,
    TokensEstimated,
    PromptTokens,
    CompletionTokens,
    CacheReadTokens,
    CostMicros,
    ErrorClasses,
    LatencySketch,
    TtftSketch,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageRollups::Table)
                    .col(uuid(UsageRollups::TenantId))
                    .col(text(UsageRollups::Grain))
                    .col(big_integer(UsageRollups::BucketStart))
                    .col(text(UsageRollups::DimsHash))
                    .col(uuid_null(UsageRollups::TeamId))
                    .col(uuid_null(UsageRollups::KeyId))
                    .col(uuid_null(UsageRollups::DeploymentId))
                    .col(text(UsageRollups::Model))
                    .col(text_null(UsageRollups::Provider))
                    .col(text_null(UsageRollups::Route))
                    .col(text_null(UsageRollups::Region))
                    .col(text(UsageRollups::Endpoint))
                    .col(text(UsageRollups::TagKey))
                    .col(text(UsageRollups::TagValue))
                    .col(big_integer(UsageRollups::Requests))
                    .col(big_integer(UsageRollups::Successes))
                    .col(big_integer(UsageRollups::CacheHits))
                    .col(big_integer(UsageRollups::TokensEstimated))
                    .col(big_integer(UsageRollups::PromptTokens))
                    .col(big_integer(UsageRollups::CompletionTokens))
                    .col(big_integer(UsageRollups::CacheReadTokens))
                    .col(big_integer(UsageRollups::CostMicros))
                    .col(text(UsageRollups::ErrorClasses))
                    .col(blob(UsageRollups::LatencySketch))
                    .col(blob(UsageRollups::TtftSketch))
                    .col(timestamp_with_time_zone(UsageRollups::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(UsageRollups::TenantId)
                            .col(UsageRollups::Grain)
                            .col(UsageRollups::BucketStart)
                            .col(UsageRollups::DimsHash),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_rollups_tag")
                    .table(UsageRollups::Table)
                    .col(UsageRollups::TenantId)
                    .col(UsageRollups::Grain)
                    .col(UsageRollups::TagKey)
                    .col(UsageRollups::BucketStart)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_rollups_retention")
                    .table(UsageRollups::Table)
                    .col(UsageRollups::Grain)
                    .col(UsageRollups::BucketStart)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageRollups::Table).to_owned())
            .await
    }
}
