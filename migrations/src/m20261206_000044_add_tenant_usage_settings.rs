//! Organizations gain their usage storage settings: `usage_retention_days` (how long raw usage
//! rows and payloads are kept; NULL = the server default `SWITCHYARD_USAGE_RETENTION_DAYS`) and
//! `store_payloads` (opt-in to keeping prompts and answers in `usage_payloads`; off by default).
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    UsageRetentionDays,
    StorePayloads,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for mut column in [
            integer_null(Tenants::UsageRetentionDays),
            boolean(Tenants::StorePayloads).default(false).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Tenants::StorePayloads, Tenants::UsageRetentionDays] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tenants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
