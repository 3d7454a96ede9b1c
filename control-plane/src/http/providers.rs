//! Provider credentials: `POST /providers`, `GET /providers`, `GET /providers/{id}`,
//! `DELETE /providers/{id}`.
//!
//! The provider's API key is sealed with the master key (AES-256-GCM, the provider id bound as
//! associated data, see `shared::crypto`) before it reaches the database; responses only say
//! whether one is set (`has_api_key`). Every change bumps the tenant's config version and is
//! published to the data plane before the call returns. Owners and admins manage providers.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use shared::config::ProviderKind;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiJson, ApiPath, now, validate};
use crate::auth::AuthUser;
use crate::entities::{model_deployment, provider_credential};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;
use crate::sync;

/// Longest accepted provider API key.
const MAX_API_KEY_LEN: usize = 4096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers", get(list_providers).post(create_provider))
        .route("/providers/{id}", get(get_provider).delete(delete_provider))
}

/// Which wire protocol the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ProviderKindDto {
    /// api.openai.com (base URL optional).
    #[serde(rename = "openai")]
    OpenAi,
    /// Any server speaking OpenAI's chat completions API (vLLM, Ollama, …); needs `base_url`.
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    /// Built in, no network: echoes the last user message. For trying things out.
    #[serde(rename = "mock")]
    Mock,
}

impl From<ProviderKindDto> for ProviderKind {
    fn from(k: ProviderKindDto) -> Self {
        match k {
            ProviderKindDto::OpenAi => ProviderKind::OpenAi,
            ProviderKindDto::OpenAiCompatible => ProviderKind::OpenAiCompatible,
            ProviderKindDto::Mock => ProviderKind::Mock,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProviderRequest {
    /// Unique within the organization.
    #[schema(example = "openai-prod")]
    pub name: String,
    pub kind: ProviderKindDto,
    /// Base URL including the version path, e.g. `http://127.0.0.1:8000/v1`. Required for
    /// `openai_compatible`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The provider's API key. Stored sealed; never returned.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// A provider credential. The API key itself is never returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderDto {
    pub id: Uuid,
    pub name: String,
    /// `openai`, `openai_compatible` or `mock`.
    #[schema(example = "openai")]
    pub kind: String,
    pub base_url: Option<String>,
    /// Whether an API key is stored.
    pub has_api_key: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&provider_credential::Model> for ProviderDto {
    fn from(p: &provider_credential::Model) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            kind: p.kind.clone(),
            base_url: p.base_url.clone(),
            has_api_key: p.api_key_sealed.is_some(),
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub data: Vec<ProviderDto>,
}

/// Add a provider credential.
#[utoipa::path(
    post,
    path = "/api/v1/providers",
    tag = "providers",
    security(("bearer" = [])),
    request_body = CreateProviderRequest,
    responses(
        (status = 201, body = ProviderDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "A provider with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn create_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateProviderRequest>,
) -> Result<(StatusCode, Json<ProviderDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let kind = ProviderKind::from(req.kind);
    let base_url = match req
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(url) => Some(validate::http_url("base_url", url)?),
        None if kind == ProviderKind::OpenAiCompatible => {
            return Err(ApiError::invalid(
                "base_url",
                "is required for kind openai_compatible",
            ));
        }
        None => None,
    };
    let api_key = match req.api_key.as_deref().map(str::trim) {
        Some("") => {
            return Err(ApiError::invalid(
                "api_key",
                "must not be empty; omit it if the provider needs none",
            ));
        }
        Some(k) if k.len() > MAX_API_KEY_LEN => {
            return Err(ApiError::invalid(
                "api_key",
                format_args!("must be at most {MAX_API_KEY_LEN} bytes"),
            ));
        }
        other => other,
    };

    let id = Uuid::new_v4();
    let row = provider_credential::Model {
        id,
        tenant_id: auth.tenant_id,
        name,
        kind: kind.as_str().to_owned(),
        base_url,
        // Bound to this provider's id: a sealed key copied onto another row does not open.
        api_key_sealed: api_key.map(|k| state.master_key.seal(k, &id.to_string())),
        created_at: now(),
    };
    let tx = state.db.begin().await?;
    provider_credential::Entity::insert(provider_credential::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        kind: Set(row.kind.clone()),
        base_url: Set(row.base_url.clone()),
        api_key_sealed: Set(row.api_key_sealed.clone()),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(&tx)
    .await
    .on_unique_violation("a provider with this name already exists")?;
    let outbox_id = sync::bump_tenant_version(&tx, auth.tenant_id).await?;
    tx.commit().await?;
    state.sync.wait_published(&[outbox_id]).await;
    Ok((StatusCode::CREATED, Json(ProviderDto::from(&row))))
}

/// List provider credentials.
#[utoipa::path(
    get,
    path = "/api/v1/providers",
    tag = "providers",
    security(("bearer" = [])),
    responses((status = 200, body = ProviderList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_providers(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<ProviderList>, ApiError> {
    let rows = provider_credential::Entity::find()
        .filter(provider_credential::Column::TenantId.eq(auth.tenant_id))
        .order_by_asc(provider_credential::Column::CreatedAt)
        .order_by_asc(provider_credential::Column::Id)
        .all(&state.db)
        .await?;
    Ok(Json(ProviderList {
        data: rows.iter().map(ProviderDto::from).collect(),
    }))
}

/// Get one provider credential.
#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Provider id")),
    responses((status = 200, body = ProviderDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProviderDto>, ApiError> {
    let row = provider_credential::Entity::find_by_id(id)
        .filter(provider_credential::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    Ok(Json(ProviderDto::from(&row)))
}

/// Delete a provider credential. Refused (409) while model deployments use it.
#[utoipa::path(
    delete,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Provider id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Model deployments still use this provider", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let tx = state.db.begin().await?;
    provider_credential::Entity::find_by_id(id)
        .filter(provider_credential::Column::TenantId.eq(auth.tenant_id))
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    let in_use = model_deployment::Entity::find()
        .filter(model_deployment::Column::ProviderId.eq(id))
        .count(&tx)
        .await?;
    if in_use > 0 {
        return Err(ApiError::Conflict(format!(
            "provider is used by {in_use} model deployment(s); delete them first"
        )));
    }
    provider_credential::Entity::delete_by_id(id)
        .exec(&tx)
        .await
        // A deployment created concurrently still holds the foreign key.
        .on_foreign_key_violation("provider is used by model deployments; delete them first")?;
    let outbox_id = sync::bump_tenant_version(&tx, auth.tenant_id).await?;
    tx.commit().await?;
    state.sync.wait_published(&[outbox_id]).await;
    Ok(StatusCode::NO_CONTENT)
}
