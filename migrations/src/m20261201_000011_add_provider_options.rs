//! Provider credentials gain `options`: a JSON object of non-secret, kind-specific settings
//! (Azure `api_version`; Bedrock `region` and `access_key_id`). Secrets never go here: the
//! Bedrock secret access key is sealed into `api_key_sealed` like every other provider secret.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ProviderCredentials {
    Table,
    Options,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProviderCredentials::Table)
                    .add_column(json_null(ProviderCredentials::Options))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ProviderCredentials::Table)
                    .drop_column(ProviderCredentials::Options)
                    .to_owned(),
            )
            .await
    }
}
