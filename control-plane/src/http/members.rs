//! Organization members: `GET /members`, `POST /members`, `DELETE /members/{user_id}`.
//!
//! A member is an existing user (they signed up, which gave them their own organization) added
//! to this organization with a role. Owners and admins manage members; only an owner can grant
//! or take away the owner role, and the last owner cannot be removed. Removing a member revokes
//! their refresh tokens for this organization, and their access tokens stop working at once
//! (the [`AuthUser`] extractor re-reads the membership on every request).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::parse_role;
use super::{ApiJson, ApiPath, now, validate};
use crate::auth::{AuthUser, Role};
use crate::entities::{membership, refresh_token, user};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/members", get(list_members).post(add_member))
        .route("/members/{user_id}", delete(remove_member))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDto {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    /// When the user joined this organization.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMemberRequest {
    /// Email of an existing user.
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

/// Add an existing user to the organization.
#[utoipa::path(
    post,
    path = "/api/v1/members",
    tag = "members",
    security(("bearer" = [])),
    request_body = AddMemberRequest,
    responses(
        (status = 201, body = MemberDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin (owner to grant owner)", body = crate::error::ErrorBody),
        (status = 404, description = "No user with this email", body = crate::error::ErrorBody),
        (status = 409, description = "Already a member", body = crate::error::ErrorBody),
    )
)]
pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> Result<(StatusCode, Json<MemberDto>), ApiError> {
    auth.require_manage()?;
    if req.role == Role::Owner && auth.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can grant the owner role",
        ));
    }
    let email = validate::email(&req.email)?;
    let user = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let created_at = now();
    membership::Entity::insert(membership::ActiveModel {
        tenant_id: Set(auth.tenant_id),
        user_id: Set(user.id),
        role: Set(req.role.as_str().to_owned()),
        created_at: Set(created_at),
    })
    .exec_without_returning(&state.db)
    .await
    .on_unique_violation("this user is already a member")?;
    Ok((
        StatusCode::CREATED,
        Json(MemberDto {
            user_id: user.id,
            email: user.email,
            role: req.role,
            created_at,
        }),
    ))
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
    let tx = state.db.begin().await?;
    let target = membership::Entity::find_by_id((auth.tenant_id, user_id))
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if parse_role(&target.role)? == Role::Owner {
        if auth.role != Role::Owner {
            return Err(ApiError::Forbidden("only an owner can remove an owner"));
        }
        let owners = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(auth.tenant_id))
            .filter(membership::Column::Role.eq(Role::Owner.as_str()))
            .count(&tx)
            .await?;
        if owners <= 1 {
            return Err(ApiError::Conflict(
                "the last owner cannot be removed".to_owned(),
            ));
        }
    }
    membership::Entity::delete_by_id((auth.tenant_id, user_id))
        .exec(&tx)
        .await?;
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::TenantId.eq(auth.tenant_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(&tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
