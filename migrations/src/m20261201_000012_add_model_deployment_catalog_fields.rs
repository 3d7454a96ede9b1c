//! Model deployments gain what the model catalog knows about a model: the catalog entry they
//! were created from (`catalog_id`), the price of prompt tokens read from the provider's cache,
//! the model's output limit, and whether it is a chat or an embedding model (`mode`, default
//! `chat`, so existing rows keep their meaning).
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ModelDeployments {
    Table,
    CatalogId,
    CachedInputPriceMicrosPerMtok,
    MaxOutputTokens,
    Mode,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            text_null(ModelDeployments::CatalogId),
            big_integer_null(ModelDeployments::CachedInputPriceMicrosPerMtok),
            big_integer_null(ModelDeployments::MaxOutputTokens),
            text(ModelDeployments::Mode).default("chat").to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ModelDeployments::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ModelDeployments::Mode,
            ModelDeployments::MaxOutputTokens,
            ModelDeployments::CachedInputPriceMicrosPerMtok,
            ModelDeployments::CatalogId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ModelDeployments::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
