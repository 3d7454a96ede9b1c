//! Organization members: `GET /members`, `POST /members`, `PATCH /members/{user_id}` (role),
//! `DELETE /members/{user_id}`.
//!
//! A member is a user who accepted an invitation to this organization (or created it).
//! `POST /members` does not add anyone: it creates an invitation exactly like
//! `POST /invitations` (see `super::invitations`) and answers `202 Accepted` with it, the same
//! whether or not the email belongs to an account. Owners and admins manage members; only an
//! owner can invite or remove an owner, and the last owner cannot be removed. Removing a member
//! closes their sessions in this organization, so their access tokens stop working at once,
//! and removes them from the organization's teams.
//!
//! Changing a role (`PATCH`): owners and admins; only an owner grants the owner role or changes
//! an owner's role, and the last owner cannot be demoted (409). The new role applies to the
//! member's next request (the role is read from the membership on every request). Every change
//! here is audited (object kind `member`, id = the user id).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{close_sessions_of, parse_role};
use super::invitations::{CreatedInvitation, invite};
use super::resource::Change;
use super::{ApiJson, ApiPath};
use crate::audit::AuditAction;
use crate::auth::{AuthUser, Role};
use crate::entities::{membership, team_member, user};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/members", get(list_members).post(add_member))
        .route(
            "/members/{user_id}",
            axum::routing::patch(update_member).delete(remove_member),
        )
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberDto {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    /// When the user joined this organization.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The object kind of a member in audit events.
pub const KIND: &str = "member";

/// A new role for a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Who to invite; they join when they accept.
    pub email: String,
    pub role: Role,
}

/// List the organization's members.
#[utoipa::path(
    get,
    path = "/api/v1/members",
    tag = "members",
    security(("bearer" = [])),
    responses((status = 200, body = MemberList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_members(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<MemberList>, ApiError> {
    let members = membership::Entity::find()
        .filter(membership::Column::TenantId.eq(auth.tenant_id))
        .order_by_asc(membership::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
    let emails: HashMap<Uuid, String> = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    let mut data = Vec::with_capacity(members.len());
    for m in members {
        data.push(MemberDto {
            email: emails.get(&m.user_id).cloned().unwrap_or_default(),
            role: parse_role(&m.role)?,
            user_id: m.user_id,
            created_at: m.created_at,
        });
    }
    Ok(Json(MemberList { data }))
}

/// Invite someone to the organization (they join when they accept).
///
/// The same as `POST /api/v1/invitations` without a team: answers 202 with the invitation and
/// its one-time token, whether or not an account exists for the email. Nobody is added until
/// the invitee accepts at `accept_path`.
#[utoipa::path(
    post,
    path = "/api/v1/members",
    tag = "members",
    security(("bearer" = [])),
    request_body = AddMemberRequest,
    responses(
        (status = 202, description = "Invitation created; the person joins when they accept it", body = CreatedInvitation),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin (owner to invite an owner)", body = crate::error::ErrorBody),
        (status = 409, description = "The email already belongs to a member of this organization", body = crate::error::ErrorBody),
    )
)]
pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> Result<(StatusCode, Json<CreatedInvitation>), ApiError> {
    let created = invite(&state, &auth, &req.email, req.role, None).await?;
    Ok((StatusCode::ACCEPTED, Json(created)))
}

/// Remove a member from the organization.
#[utoipa::path(
    delete,
    path = "/api/v1/members/{user_id}",
    tag = "members",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The last owner cannot be removed", body = crate::error::ErrorBody),
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(user_id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let target = membership::Entity::find_by_id((auth.tenant_id, user_id))
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if parse_role(&target.role)? == Role::Owner {
        if auth.role != Role::Owner {
            return Err(ApiError::Forbidden("only an owner can remove an owner"));
        }
        if owner_count(change.tx(), auth.tenant_id).await? <= 1 {
            return Err(ApiError::Conflict(
                "the last owner cannot be removed".to_owned(),
            ));
        }
    }
    let before = member_dto(change.tx(), &target).await?;
    membership::Entity::delete_by_id((auth.tenant_id, user_id))
        .exec(change.tx())
        .await?;
    team_member::Entity::delete_many()
        .filter(team_member::Column::TenantId.eq(auth.tenant_id))
        .filter(team_member::Column::UserId.eq(user_id))
        .exec(change.tx())
        .await?;
    close_sessions_of(change.tx(), user_id, auth.tenant_id).await?;
    change
        .audit_kind(AuditAction::Delete, KIND, &user_id)
        .before(&before);
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a member's role.
///
/// Only an owner grants the owner role or changes an owner's role; the last owner cannot be
/// demoted. Takes effect on the member's next request.
#[utoipa::path(
    patch,
    path = "/api/v1/members/{user_id}",
    tag = "members",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = UpdateMemberRequest,
    responses(
        (status = 200, body = MemberDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin (owner to grant or change the owner role)", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The last owner cannot be demoted", body = crate::error::ErrorBody),
    )
)]
pub async fn update_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(user_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateMemberRequest>,
) -> Result<Json<MemberDto>, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let target = membership::Entity::find_by_id((auth.tenant_id, user_id))
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let current = parse_role(&target.role)?;
    let before = member_dto(change.tx(), &target).await?;
    if current == req.role {
        return Ok(Json(before));
    }
    if (current == Role::Owner || req.role == Role::Owner) && auth.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can grant or change the owner role",
        ));
    }
    if current == Role::Owner && owner_count(change.tx(), auth.tenant_id).await? <= 1 {
        return Err(ApiError::Conflict(
            "the last owner cannot be demoted".to_owned(),
        ));
    }
    membership::Entity::update_many()
        .col_expr(membership::Column::Role, Expr::value(req.role.as_str()))
        .filter(membership::Column::TenantId.eq(auth.tenant_id))
        .filter(membership::Column::UserId.eq(user_id))
        .exec(change.tx())
        .await?;
    let after = MemberDto {
        role: req.role,
        ..before.clone()
    };
    change
        .audit_kind(AuditAction::Update, KIND, &user_id)
        .before(&before)
        .after(&after);
    change.commit().await?;
    Ok(Json(after))
}

/// How many owners `tenant_id` has, read in the change's transaction. (Two owners demoting
/// each other at the same instant could both pass; owner changes are rare, manual
/// and owner-only, so this is not locked.)
async fn owner_count<C: ConnectionTrait>(conn: &C, tenant_id: Uuid) -> Result<u64, ApiError> {
    Ok(membership::Entity::find()
        .filter(membership::Column::TenantId.eq(tenant_id))
        .filter(membership::Column::Role.eq(Role::Owner.as_str()))
        .count(conn)
        .await?)
}

async fn member_dto<C: ConnectionTrait>(
    conn: &C,
    m: &membership::Model,
) -> Result<MemberDto, ApiError> {
    let email = user::Entity::find_by_id(m.user_id)
        .one(conn)
        .await?
        .map(|u| u.email)
        .unwrap_or_default();
    Ok(MemberDto {
        user_id: m.user_id,
        email,
        role: parse_role(&m.role)?,
        created_at: m.created_at,
    })
}
