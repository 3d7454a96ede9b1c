//! Teams: `POST /teams`, `GET /teams`, `DELETE /teams/{id}`. A team groups API keys (usage
//! events carry the key's team). Owners and admins manage teams; everyone reads them.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{api_key, team};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/{id}", delete(delete_team))
}

impl TenantScoped for team::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "team";
    const KIND: &'static str = "team";
    fn tenant_column() -> Self::Column {
        team::Column::TenantId
    }
    fn id_column() -> Self::Column {
        team::Column::Id
    }
    /// By name (unique within an organization).
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(team::Column::Name)
            .order_by_asc(team::Column::Id)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    /// Unique within the organization.
    #[schema(example = "search")]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamDto {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<team::Model> for TeamDto {
    fn from(t: team::Model) -> Self {
        Self {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    pub data: Vec<TeamDto>,
}

/// Create a team.
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    security(("bearer" = [])),
    request_body = CreateTeamRequest,
    responses(
        (status = 201, body = TeamDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "A team with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn create_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateTeamRequest>,
) -> Result<(StatusCode, Json<TeamDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let row = team::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        name,
        created_at: now(),
    };
    let mut change = Change::begin(&state, &auth).await?;
    team::Entity::insert(team::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(change.tx())
    .await
    .on_unique_violation("a team with this name already exists")?;
    change.audit::<team::Entity>(AuditAction::Create, &row.id);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(TeamDto::from(row))))
}

/// List teams.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    security(("bearer" = [])),
    responses((status = 200, body = TeamList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_teams(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<TeamList>, ApiError> {
    let rows = resource::list::<team::Entity, _>(&state.db, auth.tenant_id).await?;
    Ok(Json(TeamList {
        data: rows.into_iter().map(TeamDto::from).collect(),
    }))
}

/// Delete a team. Its keys keep working, without a team.
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    change.find::<team::Entity>(id).await?;
    // Detach the team's keys explicitly (rather than leaving it to ON DELETE SET NULL) so each
    // key's version is bumped and its new record published.
    let keys: Vec<Uuid> = resource::scoped::<api_key::Entity>(auth.tenant_id)
        .filter(api_key::Column::TeamId.eq(id))
        .all(change.tx())
        .await?
        .into_iter()
        .map(|k| k.id)
        .collect();
    if !keys.is_empty() {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::TeamId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::Id.is_in(keys.clone()))
            .exec(change.tx())
            .await?;
        for key in keys {
            change.publish_key(key).await?;
        }
    }
    change.delete::<team::Entity>(id).await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
