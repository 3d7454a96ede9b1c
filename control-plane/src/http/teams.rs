//! Teams: `POST /teams`, `GET /teams`, `DELETE /teams/{id}`. A team groups API keys (usage
//! events carry the key's team). Owners and admins manage teams; everyone reads them.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiJson, ApiPath, now, validate};
use crate::auth::AuthUser;
use crate::entities::{api_key, team};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;
use crate::sync::{self, Outboxed};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams", get(list_teams).post(create_team))
        .route("/teams/{id}", delete(delete_team))
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
    team::Entity::insert(team::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(&state.db)
    .await
    .on_unique_violation("a team with this name already exists")?;
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
    let rows = team::Entity::find()
        .filter(team::Column::TenantId.eq(auth.tenant_id))
        .order_by_asc(team::Column::Name)
        .all(&state.db)
        .await?;
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
    let tx = state.db.begin().await?;
    team::Entity::find_by_id(id)
        .filter(team::Column::TenantId.eq(auth.tenant_id))
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("team"))?;
    // Detach the team's keys explicitly (rather than leaving it to ON DELETE SET NULL) so each
    // key's version is bumped and its new record published.
    let keys: Vec<Uuid> = api_key::Entity::find()
        .filter(api_key::Column::TenantId.eq(auth.tenant_id))
        .filter(api_key::Column::TeamId.eq(id))
        .all(&tx)
        .await?
        .into_iter()
        .map(|k| k.id)
        .collect();
    let mut outbox = Vec::with_capacity(keys.len());
    if !keys.is_empty() {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::TeamId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::Id.is_in(keys.clone()))
            .exec(&tx)
            .await?;
        for key in keys {
            outbox.push(sync::enqueue(&tx, Outboxed::Key(key)).await?);
        }
    }
    team::Entity::delete_by_id(id).exec(&tx).await?;
    tx.commit().await?;
    state.sync.wait_published(&outbox).await;
    Ok(StatusCode::NO_CONTENT)
}
