//! Virtual API keys: `POST /keys`, `GET /keys`, `GET /keys/{id}`, `DELETE /keys/{id}`.
//!
//! The plaintext key (`sk-sy-…`) is returned once, by `POST`; only its SHA-256 is stored and
//! published. Revoking (`DELETE`) keeps the row with `revoked_at` set, bumps the key's version
//! and publishes the new record before answering (see `crate::sync`), so every data-plane node
//! refuses the key right after the call returns. Members may create and revoke keys; viewers
//! only read them.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{api_key, team};
use crate::error::ApiError;
use crate::state::AppState;

/// Most model names one key may be limited to.
const MAX_ALLOWED_MODELS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", get(get_key).delete(revoke_key))
}

impl TenantScoped for api_key::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "api key";
    const KIND: &'static str = "api_key";
    fn tenant_column() -> Self::Column {
        api_key::Column::TenantId
    }
    fn id_column() -> Self::Column {
        api_key::Column::Id
    }
    /// Newest first, revoked ones included.
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_desc(api_key::Column::CreatedAt)
            .order_by_desc(api_key::Column::Id)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    #[schema(example = "production backend")]
    pub name: String,
    /// A team of this organization.
    #[serde(default)]
    pub team_id: Option<Uuid>,
    /// Model names this key may call; omit (or null) for every model of the organization.
    #[serde(default)]
    #[schema(example = json!(["gpt-4o-mini"]))]
    pub models: Option<Vec<String>>,
    /// RFC 3339 timestamp in the future after which the key is refused.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-01-01T00:00:00Z")]
    pub expires_at: Option<String>,
}

/// A key as listed: never the plaintext, never the hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDto {
    pub id: Uuid,
    pub name: String,
    /// A recognizable, non-secret form of the key, e.g. `sk-sy-AbCd…wxyz`.
    #[schema(example = "sk-sy-AbCd…wxyz")]
    pub prefix: String,
    pub team_id: Option<Uuid>,
    /// Allowed model names; null means every model.
    pub models: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<&api_key::Model> for KeyDto {
    fn from(k: &api_key::Model) -> Self {
        Self {
            id: k.id,
            name: k.name.clone(),
            prefix: k.display_prefix.clone(),
            team_id: k.team_id,
            models: k.allowed_model_names(),
            expires_at: k.expires_at,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just created: the only response that contains the plaintext `key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyDto {
    pub id: Uuid,
    pub name: String,
    /// The API key. Shown once: store it now.
    #[schema(example = "sk-sy-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg")]
    pub key: String,
    #[schema(example = "sk-sy-AbCd…defg")]
    pub prefix: String,
    pub team_id: Option<Uuid>,
    pub models: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Always null for a new key.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyDto>,
}

/// Create an API key.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = CreatedKeyDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Viewers cannot create keys", body = crate::error::ErrorBody),
        (status = 404, description = "`team_id` is not a team of this organization", body = crate::error::ErrorBody),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyDto>), ApiError> {
    auth.require_key_writer()?;
    let name = validate::name("name", &req.name)?;
    let models = req.models.map(|m| allowed_models(&m)).transpose()?;
    let created_at = now();
    let expires_at = match req.expires_at.as_deref() {
        Some(s) => {
            let t = validate::timestamp("expires_at", s)?;
            if t <= created_at {
                return Err(ApiError::invalid("expires_at", "must be in the future"));
            }
            Some(t)
        }
        None => None,
    };

    let key = shared::keys::generate_api_key();
    let row = api_key::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        team_id: req.team_id,
        name,
        key_hash: shared::keys::hash_api_key(&key),
        display_prefix: shared::keys::display_prefix(&key),
        allowed_models: models.as_ref().map(|m| serde_json::json!(m)),
        expires_at,
        revoked_at: None,
        version: 1,
        created_by: auth.user_id,
        created_at,
    };
    let mut change = Change::begin(&state, &auth).await?;
    if let Some(team_id) = req.team_id {
        change.find::<team::Entity>(team_id).await?;
    }
    api_key::Entity::insert(api_key::ActiveModel::from(row.clone()))
        .exec_without_returning(change.tx())
        .await?;
    change.publish_key(row.id).await?;
    change.audit::<api_key::Entity>(AuditAction::Create, &row.id);
    change.commit().await?;

    let dto = KeyDto::from(&row);
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyDto {
            id: dto.id,
            name: dto.name,
            key,
            prefix: dto.prefix,
            team_id: dto.team_id,
            models: dto.models,
            expires_at: dto.expires_at,
            created_at: dto.created_at,
            revoked_at: None,
        }),
    ))
}

/// List API keys, newest first, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<KeyList>, ApiError> {
    let rows = resource::list::<api_key::Entity, _>(&state.db, auth.tenant_id).await?;
    Ok(Json(KeyList {
        data: rows.iter().map(KeyDto::from).collect(),
    }))
}

/// Get one API key.
#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 200, body = KeyDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_key(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<KeyDto>, ApiError> {
    let row = resource::find::<api_key::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(KeyDto::from(&row)))
}

/// Revoke an API key.
///
/// Returns once the revocation has been published to the data plane (normally well under a
/// second; at most about 2 s if Redis is unreachable, after which publishing continues in the
/// background). Revoking a revoked key is a no-op (204).
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Viewers cannot revoke keys", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_key_writer()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<api_key::Entity>(id).await?;
    if row.revoked_at.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let updated = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(now()))
        .col_expr(
            api_key::Column::Version,
            Expr::col(api_key::Column::Version).add(1),
        )
        .filter(api_key::Column::Id.eq(id))
        // A concurrent revoke already did it: nothing to publish.
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(change.tx())
        .await?
        .rows_affected;
    if updated > 0 {
        change.publish_key(id).await?;
        change.audit::<api_key::Entity>(AuditAction::Revoke, &id);
    }
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Trims, refuses empty names, removes duplicates (keeping order).
fn allowed_models(models: &[String]) -> Result<Vec<String>, ApiError> {
    if models.is_empty() {
        return Err(ApiError::invalid(
            "models",
            "must not be empty; omit it to allow every model",
        ));
    }
    if models.len() > MAX_ALLOWED_MODELS {
        return Err(ApiError::invalid(
            "models",
            format_args!("must list at most {MAX_ALLOWED_MODELS} models"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(models.len());
    for m in models {
        let m = validate::name("models", m)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}
