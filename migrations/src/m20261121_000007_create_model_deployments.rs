//! Model deployments: the model name clients send, the provider that serves it, and its price
//! in micro-dollars per million tokens. Several deployments may share a name (routing picks
//! among them), so the name is not unique.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;
use crate::m20261121_000006_create_provider_credentials::ProviderCredentials;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ModelDeployments {
    Table,
    Id,
    TenantId,
    Name,
    ProviderId,
    UpstreamModel,
    InputPriceMicrosPerMtok,
    OutputPriceMicrosPerMtok,
    Region,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ModelDeployments::Table)
                    .col(pk_uuid(ModelDeployments::Id))
                    .col(uuid(ModelDeployments::TenantId))
                    .col(text(ModelDeployments::Name))
                    .col(uuid(ModelDeployments::ProviderId))
                    .col(text(ModelDeployments::UpstreamModel))
                    .col(big_integer(ModelDeployments::InputPriceMicrosPerMtok))
                    .col(big_integer(ModelDeployments::OutputPriceMicrosPerMtok))
                    .col(text_null(ModelDeployments::Region))
                    .col(timestamp_with_time_zone(ModelDeployments::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_model_deployments_tenant")
                            .from(ModelDeployments::Table, ModelDeployments::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        // A provider still in use cannot be deleted (the API answers 409).
                        ForeignKey::create()
                            .name("fk_model_deployments_provider")
                            .from(ModelDeployments::Table, ModelDeployments::ProviderId)
                            .to(ProviderCredentials::Table, ProviderCredentials::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_model_deployments_tenant")
                    .table(ModelDeployments::Table)
                    .col(ModelDeployments::TenantId)
                    .col(ModelDeployments::Name)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_model_deployments_provider")
                    .table(ModelDeployments::Table)
                    .col(ModelDeployments::ProviderId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ModelDeployments::Table).to_owned())
            .await
    }
}
