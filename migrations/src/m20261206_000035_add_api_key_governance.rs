//! API keys gain their governance fields: their own rate limits (`rpm_limit`, `tpm_limit`),
//! scopes (`endpoints`: a JSON array of `chat`/`messages`/`embeddings`; `allowed_cidrs`: a JSON
//! array of CIDRs; `max_tokens_per_request`), `metadata` (a JSON object of string tags), when
//! the key was last used (`last_used_at`, kept by the usage ingest once per key per batch), and
//! rotation (`rotated_at`, plus the secret the key had before its last rotation:
//! `previous_key_hash`, accepted until `previous_expires_at`). All nullable: NULL means no
//! limit, no scope, never used, never rotated, so existing rows keep their meaning.
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    RpmLimit,
    TpmLimit,
    Endpoints,
    AllowedCidrs,
    MaxTokensPerRequest,
    Metadata,
    LastUsedAt,
    RotatedAt,
    PreviousKeyHash,
    PreviousExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            big_integer_null(ApiKeys::RpmLimit),
            big_integer_null(ApiKeys::TpmLimit),
            json_null(ApiKeys::Endpoints),
            json_null(ApiKeys::AllowedCidrs),
            big_integer_null(ApiKeys::MaxTokensPerRequest),
            json_null(ApiKeys::Metadata),
            timestamp_with_time_zone_null(ApiKeys::LastUsedAt),
            timestamp_with_time_zone_null(ApiKeys::RotatedAt),
            text_null(ApiKeys::PreviousKeyHash),
            timestamp_with_time_zone_null(ApiKeys::PreviousExpiresAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ApiKeys::PreviousExpiresAt,
            ApiKeys::PreviousKeyHash,
            ApiKeys::RotatedAt,
            ApiKeys::LastUsedAt,
            ApiKeys::Metadata,
            ApiKeys::MaxTokensPerRequest,
            ApiKeys::AllowedCidrs,
            ApiKeys::Endpoints,
            ApiKeys::TpmLimit,
            ApiKeys::RpmLimit,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
