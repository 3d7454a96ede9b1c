//! Provider credentials. `api_key_sealed` is the provider's API key sealed with the master key
//! (`v1:…`, see `shared::crypto`), never the plaintext. Names are unique per tenant.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum ProviderCredentials {
    Table,
    Id,
    TenantId,
    Name,
    Kind,
    BaseUrl,
    ApiKeySealed,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProviderCredentials::Table)
                    .col(pk_uuid(ProviderCredentials::Id))
                    .col(uuid(ProviderCredentials::TenantId))
                    .col(text(ProviderCredentials::Name))
                    .col(text(ProviderCredentials::Kind))
                    .col(text_null(ProviderCredentials::BaseUrl))
                    .col(text_null(ProviderCredentials::ApiKeySealed))
                    .col(timestamp_with_time_zone(ProviderCredentials::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_provider_credentials_tenant")
                            .from(ProviderCredentials::Table, ProviderCredentials::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_provider_credentials_tenant_name")
                    .table(ProviderCredentials::Table)
                    .col(ProviderCredentials::TenantId)
                    .col(ProviderCredentials::Name)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProviderCredentials::Table).to_owned())
            .await
    }
}
