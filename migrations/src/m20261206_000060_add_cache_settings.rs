//! Keys, teams and routes gain a nullable `cache` column: the response-cache setting of that
//! level (`shared::cache::CacheSettings` as JSON: `mode`, `ttl_seconds`, `min_similarity`,
//! `embedding_model`). NULL: the level has no setting, and a broader one applies (key, then
//! team, then route; see `shared::cache`).
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
}

#[derive(DeriveIden)]
enum Routes {
    Table,
}

#[derive(DeriveIden)]
enum Settings {
    Cache,
}

fn tables() -> [DynIden; 3] {
    [
        ApiKeys::Table.into_iden(),
        Teams::Table.into_iden(),
        Routes::Table.into_iden(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(json_null(Settings::Cache))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(Settings::Cache)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
