//! Region policies: an organization (`tenants.allowed_regions`) and a team
//! (`teams.allowed_regions`) may pin requests to deployments in some regions. Each is a JSON
//! array of region entries (`eu`, `eu-west-1`; an entry allows a region equal to it or starting
//! with it followed by `-`), or NULL for no pin, so existing rows keep their meaning.
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    AllowedRegions,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    AllowedRegions,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(json_null(Tenants::AllowedRegions))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Teams::Table)
                    .add_column(json_null(Teams::AllowedRegions))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Teams::Table)
                    .drop_column(Teams::AllowedRegions)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .drop_column(Tenants::AllowedRegions)
                    .to_owned(),
            )
            .await
    }
}
