//! Usage records gain the prompt-cache token counts of the usage event: how many of the prompt
//! tokens were read from (`cache_read_tokens`) or written to (`cache_write_tokens`) the
//! provider's prompt cache. Both default to 0, which is what every older row means.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    CacheReadTokens,
    CacheWriteTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite accepts a single change per ALTER TABLE.
        for column in [
            UsageRecords::CacheReadTokens,
            UsageRecords::CacheWriteTokens,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(UsageRecords::Table)
                        .add_column(big_integer(column).default(0))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            UsageRecords::CacheWriteTokens,
            UsageRecords::CacheReadTokens,
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
