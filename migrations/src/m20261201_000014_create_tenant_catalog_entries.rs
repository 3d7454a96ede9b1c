//! A tenant's own model catalog entries: additions to the built-in catalog (a private
//! fine-tune) or replacements of a built-in entry with the same id (negotiated prices). The
//! primary key is `(tenant_id, id)`; the fields mirror the catalog file, prices in
//! micro-dollars per million tokens.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum TenantCatalogEntries {
    Table,
    TenantId,
    Id,
    Provider,
    UpstreamModel,
    DisplayName,
    Mode,
    ContextWindow,
    MaxOutputTokens,
    InputPriceMicrosPerMtok,
    OutputPriceMicrosPerMtok,
    CachedInputPriceMicrosPerMtok,
    SupportsTools,
    SupportsVision,
    SupportsJsonMode,
    SupportsEmbeddings,
    SupportsStreaming,
    Source,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantCatalogEntries::Table)
                    .col(uuid(TenantCatalogEntries::TenantId))
                    .col(text(TenantCatalogEntries::Id))
                    .col(text(TenantCatalogEntries::Provider))
                    .col(text(TenantCatalogEntries::UpstreamModel))
                    .col(text(TenantCatalogEntries::DisplayName))
                    .col(text(TenantCatalogEntries::Mode))
                    .col(big_integer(TenantCatalogEntries::ContextWindow))
                    .col(big_integer_null(TenantCatalogEntries::MaxOutputTokens))
                    .col(big_integer(TenantCatalogEntries::InputPriceMicrosPerMtok))
                    .col(big_integer(TenantCatalogEntries::OutputPriceMicrosPerMtok))
                    .col(big_integer_null(
                        TenantCatalogEntries::CachedInputPriceMicrosPerMtok,
                    ))
                    .col(boolean(TenantCatalogEntries::SupportsTools))
                    .col(boolean(TenantCatalogEntries::SupportsVision))
                    .col(boolean(TenantCatalogEntries::SupportsJsonMode))
                    .col(boolean(TenantCatalogEntries::SupportsEmbeddings))
                    .col(boolean(TenantCatalogEntries::SupportsStreaming))
                    .col(text_null(TenantCatalogEntries::Source))
                    .col(timestamp_with_time_zone(TenantCatalogEntries::CreatedAt))
                    .col(timestamp_with_time_zone(TenantCatalogEntries::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(TenantCatalogEntries::TenantId)
                            .col(TenantCatalogEntries::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tenant_catalog_entries_tenant")
                            .from(TenantCatalogEntries::Table, TenantCatalogEntries::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TenantCatalogEntries::Table).to_owned())
            .await
    }
}
