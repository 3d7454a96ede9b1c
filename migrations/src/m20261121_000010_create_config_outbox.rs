//! The config outbox: a row per committed change that must reach the data plane, written in the
//! same transaction as the change. `kind` is `key` (`ref_id` = api key id) or `tenant`
//! (`ref_id` = tenant id). Rows are deleted only after the record was published.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ConfigOutbox {
    Table,
    Id,
    Kind,
    RefId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConfigOutbox::Table)
                    .col(big_pk_auto(ConfigOutbox::Id))
                    .col(text(ConfigOutbox::Kind))
                    .col(text(ConfigOutbox::RefId))
                    .col(timestamp_with_time_zone(ConfigOutbox::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConfigOutbox::Table).to_owned())
            .await
    }
}
