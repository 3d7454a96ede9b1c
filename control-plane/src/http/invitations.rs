//! Invitations: `POST /invitations`, `GET /invitations`, `DELETE /invitations/{id}`, and
//! `POST /invitations/{token}/accept`.
//!
//! Nobody joins an organization without agreeing to: an owner or admin invites an email
//! address with a role, gets a one-time token (shown once, stored as SHA-256, valid for
//! [`INVITATION_TTL_DAYS`] days) and passes it on; the invitee accepts it while signed in with
//! that email and becomes a member. Someone without an account signs up first (which gives them
//! their own organization too) and then accepts. Only owners invite (or revoke invitations for)
//! owners. Inviting an email again replaces its pending invitation, whose token stops working.
//!
//! No answer here tells whether an email is registered: creating an invitation never looks at
//! the users table except to refuse inviting someone who is already a member of *this*
//! organization (which its admins can see in `GET /members` anyway), and that check is one
//! query whatever the email. Unknown, expired, revoked and used tokens all get the same 404.
//!
//! `team_id` is recorded on the invitation (and checked to be a team of the organization);
//! accepting grants the organization role and adds the invitee to that team (if it still
//! exists). Creating, revoking and accepting are audited (accepting as the creation of a
//! `member`, by the invitee).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Select, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{CookieSession, SetCookies, TokenResponse, new_session, parse_role};
use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::{self, Actor, AuditAction, AuditEvent};
use crate::auth::{self as authn, AuthUser, Role};
use crate::entities::{invitation, membership, team, tenant, user};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

/// How long an invitation can be accepted.
pub const INVITATION_TTL_DAYS: i64 = 7;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/invitations",
            get(list_invitations).post(create_invitation),
        )
        // One parameter name per position (the router refuses two); `{id}` is the invitation
        // id on DELETE and the token on `/accept`, as documented.
        .route("/invitations/{id}", delete(revoke_invitation))
        .route("/invitations/{id}/accept", post(accept_invitation))
}

impl TenantScoped for invitation::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "invitation";
    const KIND: &'static str = "invitation";
    fn tenant_column() -> Self::Column {
        invitation::Column::TenantId
    }
    fn id_column() -> Self::Column {
        invitation::Column::Id
    }
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(invitation::Column::CreatedAt)
            .order_by_asc(invitation::Column::Id)
    }
}

// === DTOs ===

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    /// Who is invited; they accept while signed in with this email.
    #[schema(example = "bob@example.com")]
    pub email: String,
    /// The role they get. Only an owner can invite an owner.
    pub role: Role,
    /// A team of this organization to note on the invitation.
    #[serde(default)]
    pub team_id: Option<Uuid>,
}

/// A pending invitation (the token is never shown again after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationDto {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub team_id: Option<Uuid>,
    /// The user who created it.
    pub invited_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A new invitation, with its one-time token. The same shape whether or not the email belongs
/// to an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInvitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub team_id: Option<Uuid>,
    pub invited_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The one-time token, shown only in this response. Give it to the invitee.
    pub token: String,
    /// Where the invitee accepts: `POST` this path with their own access token.
    #[schema(example = "/api/v1/invitations/<token>/accept")]
    pub accept_path: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub data: Vec<InvitationDto>,
}

impl InvitationDto {
    fn from_row(row: &invitation::Model) -> Result<Self, ApiError> {
        Ok(Self {
            id: row.id,
            email: row.email.clone(),
            role: parse_role(&row.role)?,
            team_id: row.team_id,
            invited_by: row.invited_by,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

// === handlers ===

/// Invite someone to the organization.
///
/// Answers 201 with the invitation and its one-time token, the same whether or not an account
/// exists for the email. The invitee accepts at `accept_path`.
#[utoipa::path(
    post,
    path = "/api/v1/invitations",
    tag = "members",
    security(("bearer" = [])),
    request_body = CreateInvitationRequest,
    responses(
        (status = 201, body = CreatedInvitation),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin (owner to invite an owner)", body = crate::error::ErrorBody),
        (status = 404, description = "`team_id` is not a team of this organization", body = crate::error::ErrorBody),
        (status = 409, description = "The email already belongs to a member of this organization", body = crate::error::ErrorBody),
    )
)]
pub async fn create_invitation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateInvitationRequest>,
) -> Result<(StatusCode, Json<CreatedInvitation>), ApiError> {
    let created = invite(&state, &auth, &req.email, req.role, req.team_id).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The organization's pending invitations (not accepted, revoked or expired).
#[utoipa::path(
    get,
    path = "/api/v1/invitations",
    tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 200, body = InvitationList),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn list_invitations(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<InvitationList>, ApiError> {
    auth.require_manage()?;
    let rows = invitation::Entity::ordered(pending(auth.tenant_id))
        .filter(invitation::Column::ExpiresAt.gt(now()))
        .all(&state.db)
        .await?;
    let data = rows
        .iter()
        .map(InvitationDto::from_row)
        .collect::<Result<_, _>>()?;
    Ok(Json(InvitationList { data }))
}

/// Revoke a pending invitation; its token stops working.
#[utoipa::path(
    delete,
    path = "/api/v1/invitations/{id}",
    tag = "members",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The invitation id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Needs owner or admin (owner for an owner invitation)", body = crate::error::ErrorBody),
        (status = 404, description = "No pending invitation with this id", body = crate::error::ErrorBody),
    )
)]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = pending(auth.tenant_id)
        .filter(invitation::Column::Id.eq(id))
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    if parse_role(&row.role)? == Role::Owner && auth.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner can revoke an owner invitation",
        ));
    }
    let revoked = invitation::Entity::update_many()
        .col_expr(invitation::Column::RevokedAt, Expr::value(now()))
        .filter(invitation::Column::Id.eq(row.id))
        .filter(invitation::Column::RevokedAt.is_null())
        .exec(change.tx())
        .await?
        .rows_affected;
    if revoked > 0 {
        let before = InvitationDto::from_row(&row)?;
        change
            .audit::<invitation::Entity>(AuditAction::Revoke, &row.id)
            .before(&before);
    }
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation: join its organization.
///
/// The caller must be signed in (in any organization) with the email the invitation was sent
/// to. Answers a session in the joined organization. New users sign up first, then accept. An
/// unknown, expired, revoked or already used token is 404. With `x-switchyard-session:
/// cookie`, the new session is a cookie session (see `POST /auth/login`).
#[utoipa::path(
    post,
    path = "/api/v1/invitations/{token}/accept",
    tag = "members",
    security(("bearer" = [])),
    params(
        ("token" = String, Path, description = "The invitation's one-time token"),
        ("x-switchyard-session" = Option<String>, Header, description = "`cookie`: a cookie session for the web console. The refresh token is set as the HttpOnly cookie `switchyard_refresh` (Path=/api/v1/auth) with a CSRF cookie `switchyard_csrf` (Path=/, readable by scripts), both SameSite=Strict with Max-Age = the refresh token lifetime (Secure per SWITCHYARD_COOKIE_SECURE), and the body's `refresh_token` is empty"),
    ),
    responses(
        (status = 200, description = "Joined; a session in the organization", body = TokenResponse, headers(("set-cookie" = String, description = "With `x-switchyard-session: cookie`: `switchyard_refresh` and `switchyard_csrf`"))),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "The invitation was sent to another email address", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown, expired, revoked or used invitation", body = crate::error::ErrorBody),
        (status = 409, description = "Already a member of the organization", body = crate::error::ErrorBody),
    )
)]
pub async fn accept_invitation(
    State(state): State<AppState>,
    auth: AuthUser,
    cookies: CookieSession,
    ApiPath(token): ApiPath<String>,
) -> Result<(SetCookies, Json<TokenResponse>), ApiError> {
    let hash = authn::hash_refresh_token(token.trim());
    let at = now();
    let tx = state.db.begin().await?;
    // By token, whatever the organization: the caller is joining another one.
    let row = invitation::Entity::find()
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .filter(invitation::Column::TokenHash.eq(hash.as_str()))
        .filter(invitation::Column::ExpiresAt.gt(at))
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    let user = user::Entity::find_by_id(auth.user_id)
        .one(&tx)
        .await?
        .ok_or(ApiError::Unauthorized("invalid access token"))?;
    if user.email != row.email {
        return Err(ApiError::Forbidden(
            "this invitation was sent to another email address",
        ));
    }
    let role = parse_role(&row.role)?;
    // Claim it: of two concurrent accepts, one wins.
    let claimed = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(at))
        .col_expr(invitation::Column::AcceptedBy, Expr::value(user.id))
        .filter(invitation::Column::Id.eq(row.id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .exec(&tx)
        .await?
        .rows_affected;
    if claimed != 1 {
        return Err(ApiError::NotFound("invitation"));
    }
    membership::Entity::insert(membership::ActiveModel {
        tenant_id: Set(row.tenant_id),
        user_id: Set(user.id),
        role: Set(role.as_str().to_owned()),
        created_at: Set(at),
    })
    .exec_without_returning(&tx)
    .await
    .on_unique_violation("you already belong to this organization")?;
    let tenant = tenant::Entity::find_by_id(row.tenant_id)
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    if let Some(team_id) = row.team_id {
        super::team_members::insert(&tx, row.tenant_id, team_id, user.id, at).await?;
    }
    // Audited in the organization joined, by the invitee (with the role they were given).
    audit::store(
        &tx,
        &[AuditEvent {
            tenant_id: row.tenant_id,
            actor: Actor {
                user_id: user.id,
                session_id: auth.session_id,
                role,
            },
            action: AuditAction::Create,
            object_kind: super::members::KIND,
            object_id: user.id.to_string(),
            before: None,
            after: audit::snapshot(&serde_json::json!({
                "user_id": user.id,
                "email": user.email,
                "role": role,
                "created_at": at.format(&time::format_description::well_known::Rfc3339).ok(),
                "invitation_id": row.id,
                "team_id": row.team_id,
            })),
        }],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant.id, user_id = %user.id, role = role.as_str(), "invitation accepted");
    let tokens = new_session(&state, user.id, &tenant, role).await?;
    if cookies.requested() {
        // The new session's refresh cookie replaces the caller's: close the session it belonged
        // to rather than leave it open, unreachable, until it expires.
        super::auth::close_session(&state.db, auth.session_id).await?;
    }
    Ok(cookies.hand_over(tokens))
}

// === shared with `POST /members` ===

/// Creates an invitation of `email` with `role` to the caller's organization (replacing a
/// pending one for the same email) and returns it with its token.
pub(crate) async fn invite(
    state: &AppState,
    auth: &AuthUser,
    email: &str,
    role: Role,
    team_id: Option<Uuid>,
) -> Result<CreatedInvitation, ApiError> {
    auth.require_manage()?;
    if role == Role::Owner && auth.role != Role::Owner {
        return Err(ApiError::Forbidden("only an owner can invite an owner"));
    }
    let email = validate::email(email)?;
    let mut change = Change::begin(state, auth).await?;
    if let Some(team_id) = team_id {
        change.find::<team::Entity>(team_id).await?;
    }
    if is_member_email(change.tx(), auth.tenant_id, &email).await? {
        return Err(ApiError::Conflict(
            "this email already belongs to a member of this organization".to_owned(),
        ));
    }
    let created_at = now();
    invitation::Entity::update_many()
        .col_expr(invitation::Column::RevokedAt, Expr::value(created_at))
        .filter(invitation::Column::TenantId.eq(auth.tenant_id))
        .filter(invitation::Column::Email.eq(email.as_str()))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
        .exec(change.tx())
        .await?;
    let (token, token_hash) = authn::new_refresh_token();
    let row = invitation::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        email,
        role: role.as_str().to_owned(),
        team_id,
        token_hash,
        invited_by: auth.user_id,
        expires_at: created_at + time::Duration::days(INVITATION_TTL_DAYS),
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
        created_at,
    };
    invitation::Entity::insert(invitation::ActiveModel::from(row.clone()))
        .exec_without_returning(change.tx())
        .await?;
    let dto = InvitationDto::from_row(&row)?;
    change
        .audit::<invitation::Entity>(AuditAction::Create, &row.id)
        .after(&dto);
    change.commit().await?;
    Ok(CreatedInvitation {
        id: row.id,
        email: row.email,
        role,
        team_id: row.team_id,
        invited_by: row.invited_by,
        created_at: row.created_at,
        expires_at: row.expires_at,
        accept_path: format!("/api/v1/invitations/{token}/accept"),
        token,
    })
}

/// The invitations of `tenant_id` not accepted and not revoked (callers add the expiry filter
/// with their own "now").
fn pending(tenant_id: Uuid) -> Select<invitation::Entity> {
    resource::scoped::<invitation::Entity>(tenant_id)
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::RevokedAt.is_null())
}

/// Whether a member of `tenant_id` has this email: one query (a subquery on users), so its
/// cost does not depend on whether the email is registered.
async fn is_member_email<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    email: &str,
) -> Result<bool, ApiError> {
    let users_with_email = Query::select()
        .column(user::Column::Id)
        .from(user::Entity)
        .and_where(user::Column::Email.eq(email))
        .to_owned();
    let n = membership::Entity::find()
        .filter(membership::Column::TenantId.eq(tenant_id))
        .filter(membership::Column::UserId.in_subquery(users_with_email))
        .count(conn)
        .await?;
    Ok(n > 0)
}
