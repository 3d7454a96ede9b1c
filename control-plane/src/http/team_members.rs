//! Team membership: `GET /teams/{id}/members`, `POST /teams/{id}/members`,
//! `DELETE /teams/{id}/members/{user_id}`.
//!
//! Only members of the organization can be added to its teams. Owners and admins manage team
//! membership; everyone reads it. It matters for users with the `member` role: they create
//! keys only for their own teams and see, change, rotate and revoke only their teams' keys (and
//! keys they created themselves); see `super::keys`. An invitation naming a team adds the
//! invitee to it on acceptance. Removing someone from the organization removes them from its
//! teams.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::parse_role;
use super::resource::{self, Change};
use super::{ApiJson, ApiPath, now};
use crate::audit::AuditAction;
use crate::auth::{AuthUser, Role};
use crate::entities::{membership, team, team_member, user};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

/// The object kind of a team membership in audit events (its id is `<team id>/<user id>`).
pub const KIND: &str = "team_member";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/teams/{id}/members",
            get(list_team_members).post(add_team_member),
        )
        .route("/teams/{id}/members/{user_id}", delete(remove_team_member))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTeamMemberRequest {
    /// A member of this organization.
    pub user_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamMemberDto {
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    /// The user's role in the organization.
    pub role: Role,
    /// When they joined the team.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamMemberList {
    pub data: Vec<TeamMemberDto>,
}

/// The teams `user_id` belongs to in `tenant_id`.
pub(crate) async fn teams_of<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    Ok(team_member::Entity::find()
        .filter(team_member::Column::TenantId.eq(tenant_id))
        .filter(team_member::Column::UserId.eq(user_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.team_id)
        .collect())
}

/// Adds `user_id` to `team_id` (both of `tenant_id`, already checked) unless already there.
pub(crate) async fn insert<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    team_id: Uuid,
    user_id: Uuid,
    at: OffsetDateTime,
) -> Result<(), ApiError> {
    team_member::Entity::insert(team_member::ActiveModel {
        team_id: Set(team_id),
        user_id: Set(user_id),
        tenant_id: Set(tenant_id),
        created_at: Set(at),
    })
    .exec_without_returning(conn)
    .await
    .on_unique_violation("this user already belongs to the team")?;
    Ok(())
}

async fn dto<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    row: &team_member::Model,
) -> Result<TeamMemberDto, ApiError> {
    let m = membership::Entity::find_by_id((tenant_id, row.user_id))
        .one(conn)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let email = user::Entity::find_by_id(row.user_id)
        .one(conn)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    Ok(TeamMemberDto {
        team_id: row.team_id,
        user_id: row.user_id,
        email,
        role: parse_role(&m.role)?,
        created_at: row.created_at,
    })
}

/// List a team's members.
#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}/members",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses(
        (status = 200, body = TeamMemberList),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn list_team_members(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TeamMemberList>, ApiError> {
    resource::find::<team::Entity, _>(&state.db, auth.tenant_id, id).await?;
    let rows = team_member::Entity::find()
        .filter(team_member::Column::TenantId.eq(auth.tenant_id))
        .filter(team_member::Column::TeamId.eq(id))
        .order_by_asc(team_member::Column::CreatedAt)
        .order_by_asc(team_member::Column::UserId)
        .all(&state.db)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.user_id).collect();
    let emails: HashMap<Uuid, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(ids.clone()))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let roles: HashMap<Uuid, String> = membership::Entity::find()
        .filter(membership::Column::TenantId.eq(auth.tenant_id))
        .filter(membership::Column::UserId.is_in(ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    let mut data = Vec::with_capacity(rows.len());
    for r in rows {
        // A row whose membership is gone (never left behind by the API) is not shown.
        let Some(role) = roles.get(&r.user_id) else {
            continue;
        };
        data.push(TeamMemberDto {
            team_id: r.team_id,
            user_id: r.user_id,
            email: emails.get(&r.user_id).cloned().unwrap_or_default(),
            role: parse_role(role)?,
            created_at: r.created_at,
        });
    }
    Ok(Json(TeamMemberList { data }))
}

/// Add a member of the organization to a team.
#[utoipa::path(
    post,
    path = "/api/v1/teams/{id}/members",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    request_body = AddTeamMemberRequest,
    responses(
        (status = 201, body = TeamMemberDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
        (status = 404, description = "No such team, or the user is not a member of this organization", body = crate::error::ErrorBody),
        (status = 409, description = "Already in the team", body = crate::error::ErrorBody),
    )
)]
pub async fn add_team_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<AddTeamMemberRequest>,
) -> Result<(StatusCode, Json<TeamMemberDto>), ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    change.find::<team::Entity>(id).await?;
    membership::Entity::find_by_id((auth.tenant_id, req.user_id))
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let row = team_member::Model {
        team_id: id,
        user_id: req.user_id,
        tenant_id: auth.tenant_id,
        created_at: now(),
    };
    insert(change.tx(), row.tenant_id, id, row.user_id, row.created_at).await?;
    let out = dto(change.tx(), auth.tenant_id, &row).await?;
    change
        .audit_kind(AuditAction::Create, KIND, &format!("{id}/{}", req.user_id))
        .after(&out);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Remove someone from a team (they stay a member of the organization).
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}/members/{user_id}",
    tag = "teams",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Team id"),
        ("user_id" = Uuid, Path, description = "The member's user id"),
    ),
    responses(
        (status = 204, description = "Removed from the team"),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
        (status = 404, description = "No such team, or the user is not in it", body = crate::error::ErrorBody),
    )
)]
pub async fn remove_team_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    change.find::<team::Entity>(id).await?;
    let row = team_member::Entity::find_by_id((id, user_id))
        .filter(team_member::Column::TenantId.eq(auth.tenant_id))
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("team member"))?;
    let before = dto(change.tx(), auth.tenant_id, &row).await.ok();
    team_member::Entity::delete_by_id((id, user_id))
        .exec(change.tx())
        .await?;
    change
        .audit_kind(AuditAction::Delete, KIND, &format!("{id}/{user_id}"))
        .before(&before);
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
