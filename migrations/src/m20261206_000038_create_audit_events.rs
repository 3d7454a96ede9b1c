//! The audit log: one row per change made through the control API (who, through which session
//! and with which role, did what to which object, with JSON snapshots of the object before and
//! after, secrets never included). Written in the transaction of the change it describes.
//!
//! `id` is an increasing integer: the log is listed newest first by id, and pages continue
//! from an id. No foreign keys: the trail of an organization outlives the users and objects it
//! names (the tenant's rows go with the tenant).

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    ActorUserId,
    ActorSessionId,
    ActorRole,
    Action,
    ObjectKind,
    ObjectId,
    Before,
    After,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_pk_auto(AuditEvents::Id))
                    .col(uuid(AuditEvents::TenantId))
                    .col(uuid(AuditEvents::ActorUserId))
                    .col(uuid(AuditEvents::ActorSessionId))
                    .col(text(AuditEvents::ActorRole))
                    .col(text(AuditEvents::Action))
                    .col(text(AuditEvents::ObjectKind))
                    .col(text(AuditEvents::ObjectId))
                    .col(json_null(AuditEvents::Before))
                    .col(json_null(AuditEvents::After))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_audit_events_tenant")
                            .from(AuditEvents::Table, AuditEvents::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant_created")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // Pages are read newest first by id within one organization.
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
