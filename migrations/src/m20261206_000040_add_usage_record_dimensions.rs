//! Usage records gain the dimensions of the issue-11 usage event: `route`, `region`,
//! `error_class` (see `shared::usage::error_class`), `cache_hit`, `attempts` (1 + the failed
//! attempts), `failed_attempts` (a JSON array of `shared::usage::FailedAttempt`, NULL when there
//! were none) and `tags` (a JSON object, NULL when none). Older rows read as one attempt, no
//! cache hit, no tags.
//!
//! On PostgreSQL the two JSON columns are `jsonb`, so tags can carry a GIN index (migration
//! 000041); SQLite has a single JSON text type. One column per `ALTER TABLE` for SQLite.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Route,
    Region,
    ErrorClass,
    CacheHit,
    Attempts,
    FailedAttempts,
    Tags,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let pg = manager.get_database_backend() == DbBackend::Postgres;
        let json_col = |c: UsageRecords| {
            if pg {
                json_binary_null(c)
            } else {
                json_null(c)
            }
        };
        for column in [
            text_null(UsageRecords::Route),
            text_null(UsageRecords::Region),
            text_null(UsageRecords::ErrorClass),
            boolean(UsageRecords::CacheHit).default(false).to_owned(),
            integer(UsageRecords::Attempts).default(1).to_owned(),
            json_col(UsageRecords::FailedAttempts),
            json_col(UsageRecords::Tags),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(UsageRecords::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            UsageRecords::Tags,
            UsageRecords::FailedAttempts,
            UsageRecords::Attempts,
            UsageRecords::CacheHit,
            UsageRecords::ErrorClass,
            UsageRecords::Region,
            UsageRecords::Route,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UsageRecords::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
