//! Guardrails: an organization's prompt policies (`shared::guardrails::GuardrailRecord`), each
//! applying to the organization, one team, one key or one route.
//!
//! `scope` is the wire name (`organization`, `team`, `key`, `route`) and `scope_id` the id of
//! that object, NULL for `organization`. There is no foreign key on `scope_id` (it names one of
//! three tables): the API checks it belongs to the guardrail's organization when the guardrail
//! is written, and deleting a team or a route deletes its guardrail in the same transaction
//! (keys are revoked, never deleted). The policy is stored as the record has it: `pii` a JSON
//! object (`mode`, `detectors`, `custom`, `restore`), `blocked_terms` a JSON array,
//! `max_prompt_tokens` NULL for no cap, `allowed_tools` a JSON array or NULL for any tool.
//!
//! Three unique indexes make what the API promises hold under concurrent writes: a name is
//! taken once per organization, and each scope object has at most one guardrail. The scope one
//! is two indexes because NULLs are distinct in a unique index (on PostgreSQL and SQLite
//! alike): `(tenant_id, scope, scope_id)` for team, key and route guardrails, and a partial
//! index on `tenant_id` where `scope_id IS NULL` for the one organization-wide guardrail.
//! Deleting the organization deletes its guardrails.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Guardrails {
    Table,
    Id,
    TenantId,
    Name,
    Scope,
    ScopeId,
    Pii,
    BlockedTerms,
    MaxPromptTokens,
    AllowedTools,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Guardrails::Table)
                    .col(pk_uuid(Guardrails::Id))
                    .col(uuid(Guardrails::TenantId))
                    .col(text(Guardrails::Name))
                    .col(text(Guardrails::Scope))
                    .col(uuid_null(Guardrails::ScopeId))
                    .col(json(Guardrails::Pii))
                    .col(json(Guardrails::BlockedTerms))
                    .col(big_integer_null(Guardrails::MaxPromptTokens))
                    .col(json_null(Guardrails::AllowedTools))
                    .col(timestamp_with_time_zone(Guardrails::CreatedAt))
                    .col(timestamp_with_time_zone(Guardrails::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_guardrails_tenant")
                            .from(Guardrails::Table, Guardrails::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_guardrails_tenant_name")
                    .table(Guardrails::Table)
                    .col(Guardrails::TenantId)
                    .col(Guardrails::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_guardrails_scope")
                    .table(Guardrails::Table)
                    .col(Guardrails::TenantId)
                    .col(Guardrails::Scope)
                    .col(Guardrails::ScopeId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_guardrails_organization")
                    .table(Guardrails::Table)
                    .col(Guardrails::TenantId)
                    .unique()
                    .and_where(Expr::col(Guardrails::ScopeId).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Guardrails::Table).to_owned())
            .await
    }
}
