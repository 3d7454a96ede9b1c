//! Model deployments gain what routing filters and smooths on: the model's context window in
//! tokens, its capabilities (a JSON array of `tools`, `vision`, `json_mode`), and the
//! provider's requests-per-minute and tokens-per-minute quotas for it. All nullable: NULL means
//! unknown (never filtered on) or no quota, so existing rows keep their meaning.
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ModelDeployments {
    Table,
    ContextWindow,
    Capabilities,
    RpmLimit,
    TpmLimit,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            big_integer_null(ModelDeployments::ContextWindow),
            json_null(ModelDeployments::Capabilities),
            big_integer_null(ModelDeployments::RpmLimit),
            big_integer_null(ModelDeployments::TpmLimit),
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
            ModelDeployments::TpmLimit,
            ModelDeployments::RpmLimit,
            ModelDeployments::Capabilities,
            ModelDeployments::ContextWindow,
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
