//! Usage records gain `guardrails`: what the guardrail policy that applied to the request
//! decided (a JSON array of `shared::usage::GuardrailDecision`: policy id, rule, action, count;
//! never the matched text), NULL when it decided nothing. `jsonb` on PostgreSQL like the other
//! JSON columns of the table (000040); SQLite has a single JSON text type. On PostgreSQL the
//! column is added to the partitioned parent, which adds it to every partition.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Guardrails,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = if manager.get_database_backend() == DbBackend::Postgres {
            json_binary_null(UsageRecords::Guardrails)
        } else {
            json_null(UsageRecords::Guardrails)
        };
        manager
            .alter_table(
                Table::alter()
                    .table(UsageRecords::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UsageRecords::Table)
                    .drop_column(UsageRecords::Guardrails)
                    .to_owned(),
            )
            .await
    }
}
