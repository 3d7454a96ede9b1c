//! Routes: a name clients send as `model` that resolves to a choice among the organization's
//! model deployments (`routes`), and the deployments it may choose (`route_candidates`, in
//! the order the route lists them).
//!
//! Candidates are rows, not a JSON column, so the database itself guarantees what the API
//! promises: a candidate names an existing deployment (a deployment a route uses cannot be
//! deleted; the API answers 409 naming the routes, and the foreign key catches a concurrent
//! delete), a route lists a deployment at most once, and deleting a route deletes its
//! candidates. The foreign key to the deployment is `NO ACTION` rather than `RESTRICT`: both
//! refuse deleting a used deployment, but `NO ACTION` checks at the end of the statement, so
//! deleting a whole organization (which cascades to its routes and its deployments) works.
//!
//! Route names are unique per organization. Optional settings are NULL when unset (the
//! gateway's defaults apply); `allowed_regions` and `retry_on` are JSON arrays of strings.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_tenants::Tenants;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Routes {
    Table,
    Id,
    TenantId,
    Name,
    Strategy,
    AllowedRegions,
    MaxAttempts,
    RetryOn,
    ConnectTimeoutMs,
    FirstTokenTimeoutMs,
    TotalTimeoutMs,
    HedgeAfterMs,
    Sticky,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RouteCandidates {
    Table,
    RouteId,
    Position,
    DeploymentId,
    Weight,
    Priority,
}

#[derive(DeriveIden)]
enum ModelDeployments {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Routes::Table)
                    .col(pk_uuid(Routes::Id))
                    .col(uuid(Routes::TenantId))
                    .col(text(Routes::Name))
                    .col(text(Routes::Strategy))
                    .col(json_null(Routes::AllowedRegions))
                    .col(integer_null(Routes::MaxAttempts))
                    .col(json_null(Routes::RetryOn))
                    .col(big_integer_null(Routes::ConnectTimeoutMs))
                    .col(big_integer_null(Routes::FirstTokenTimeoutMs))
                    .col(big_integer_null(Routes::TotalTimeoutMs))
                    .col(big_integer_null(Routes::HedgeAfterMs))
                    .col(boolean(Routes::Sticky).default(false))
                    .col(timestamp_with_time_zone(Routes::CreatedAt))
                    .col(timestamp_with_time_zone(Routes::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_routes_tenant")
                            .from(Routes::Table, Routes::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_routes_tenant_name")
                    .table(Routes::Table)
                    .col(Routes::TenantId)
                    .col(Routes::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RouteCandidates::Table)
                    .col(uuid(RouteCandidates::RouteId))
                    .col(integer(RouteCandidates::Position))
                    .col(uuid(RouteCandidates::DeploymentId))
                    .col(big_integer_null(RouteCandidates::Weight))
                    .col(integer_null(RouteCandidates::Priority))
                    .primary_key(
                        Index::create()
                            .col(RouteCandidates::RouteId)
                            .col(RouteCandidates::Position),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_route_candidates_route")
                            .from(RouteCandidates::Table, RouteCandidates::RouteId)
                            .to(Routes::Table, Routes::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_route_candidates_deployment")
                            .from(RouteCandidates::Table, RouteCandidates::DeploymentId)
                            .to(ModelDeployments::Table, ModelDeployments::Id)
                            .on_delete(ForeignKeyAction::NoAction),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_route_candidates_route_deployment")
                    .table(RouteCandidates::Table)
                    .col(RouteCandidates::RouteId)
                    .col(RouteCandidates::DeploymentId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // "Which routes use this deployment" (deleting a deployment).
        manager
            .create_index(
                Index::create()
                    .name("idx_route_candidates_deployment")
                    .table(RouteCandidates::Table)
                    .col(RouteCandidates::DeploymentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RouteCandidates::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Routes::Table).to_owned())
            .await
    }
}
