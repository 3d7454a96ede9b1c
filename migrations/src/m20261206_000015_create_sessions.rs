//! Sign-in sessions. A session starts at signup or login and lives through every refresh of
//! its refresh tokens; access tokens carry its id (`sid`), and the control plane checks on
//! every request that the session is still open. Logging out (or reusing a rotated refresh
//! token, or losing the membership) sets `revoked_at`, which cuts off the session's access
//! tokens at once instead of when they expire.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;
use crate::m20261121_000002_create_users::Users;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    TenantId,
    RevokedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(uuid(Sessions::TenantId))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_tenant")
                            .from(Sessions::Table, Sessions::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "End every session of this user in this tenant" (refresh-token reuse, member removal).
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_tenant")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .col(Sessions::TenantId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await
    }
}
