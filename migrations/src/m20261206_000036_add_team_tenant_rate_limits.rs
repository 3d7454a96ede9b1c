//! Teams and organizations gain requests- and tokens-per-minute limits (`rpm_limit`,
//! `tpm_limit`), enforced by the data plane across every key of the team / organization.
//! NULL: no limit.
//!
//! SQLite accepts one change per `ALTER TABLE`, so every column is its own statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Teams {
    Table,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
}

#[derive(DeriveIden)]
enum Limits {
    RpmLimit,
    TpmLimit,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Teams::Table.into_iden(), Tenants::Table.into_iden()] {
            for column in [
                big_integer_null(Limits::RpmLimit),
                big_integer_null(Limits::TpmLimit),
            ] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(table.clone())
                            .add_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Teams::Table.into_iden(), Tenants::Table.into_iden()] {
            for column in [Limits::TpmLimit, Limits::RpmLimit] {
                manager
                    .alter_table(
                        Table::alter()
                            .table(table.clone())
                            .drop_column(column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
