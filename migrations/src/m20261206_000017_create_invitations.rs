//! Invitations to join an organization. Nobody becomes a member without accepting: an owner or
//! admin creates an invitation for an email address (whether or not an account exists for it),
//! gets a one-time token (stored here as SHA-256 only), and the invitee accepts it while signed
//! in with that email. An invitation is pending while `accepted_at` and `revoked_at` are null
//! and `expires_at` is in the future.
//!
//! `team_id` is the team the invitation names (optional; set to null if the team is deleted).
//! `invited_by` and `accepted_by` are user ids, kept for the audit trail without
//! foreign keys so deleting a user never blocks or erases the history of an organization.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;
use crate::m20261121_000004_create_teams::Teams;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    TenantId,
    Email,
    Role,
    TeamId,
    TokenHash,
    InvitedBy,
    ExpiresAt,
    AcceptedAt,
    AcceptedBy,
    RevokedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(pk_uuid(Invitations::Id))
                    .col(uuid(Invitations::TenantId))
                    .col(text(Invitations::Email))
                    .col(text(Invitations::Role))
                    .col(uuid_null(Invitations::TeamId))
                    .col(text_uniq(Invitations::TokenHash))
                    .col(uuid(Invitations::InvitedBy))
                    .col(timestamp_with_time_zone(Invitations::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Invitations::AcceptedAt))
                    .col(uuid_null(Invitations::AcceptedBy))
                    .col(timestamp_with_time_zone_null(Invitations::RevokedAt))
                    .col(timestamp_with_time_zone(Invitations::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invitations_tenant")
                            .from(Invitations::Table, Invitations::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_invitations_team")
                            .from(Invitations::Table, Invitations::TeamId)
                            .to(Teams::Table, Teams::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // "The pending invitations of this organization (for this email)".
        manager
            .create_index(
                Index::create()
                    .name("idx_invitations_tenant_email")
                    .table(Invitations::Table)
                    .col(Invitations::TenantId)
                    .col(Invitations::Email)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Invitations::Table).to_owned())
            .await
    }
}
