//! Team membership: which members of an organization belong to which of its teams. A user with
//! the `member` role creates keys only for their teams and sees only their teams' keys (and
//! the ones they created). `tenant_id` is the team's organization, kept on the row so "the
//! teams of this user in this organization" is one indexed lookup. Deleting the team, the user
//! or the organization deletes the row; removing someone from the organization deletes their
//! team rows in the same transaction (see `control_plane::http::members`).

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;
use crate::m20261121_000002_create_users::Users;
use crate::m20261121_000004_create_teams::Teams;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    TeamId,
    UserId,
    TenantId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TeamMembers::Table)
                    .col(uuid(TeamMembers::TeamId))
                    .col(uuid(TeamMembers::UserId))
                    .col(uuid(TeamMembers::TenantId))
                    .col(timestamp_with_time_zone(TeamMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(TeamMembers::TeamId)
                            .col(TeamMembers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_team")
                            .from(TeamMembers::Table, TeamMembers::TeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_user")
                            .from(TeamMembers::Table, TeamMembers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_tenant")
                            .from(TeamMembers::Table, TeamMembers::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // "The teams of this user in this organization" (key visibility of members).
        manager
            .create_index(
                Index::create()
                    .name("idx_team_members_tenant_user")
                    .table(TeamMembers::Table)
                    .col(TeamMembers::TenantId)
                    .col(TeamMembers::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TeamMembers::Table).to_owned())
            .await
    }
}
