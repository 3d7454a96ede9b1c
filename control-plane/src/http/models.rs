//! Model deployments: `POST /models`, `GET /models`, `GET /models/{id}`, `DELETE /models/{id}`.
//!
//! A deployment maps the model name clients send to a provider, the upstream model id and a
//! price in USD per million tokens. Prices are accepted as a JSON number (`2.5`) or string
//! (`"2.5"`) and parsed exactly into integer micro-dollars (`shared::money`), never through a
//! binary float. Several deployments may share a name. Every change bumps the tenant's config
//! version and is published before the call returns. Owners and admins manage models.
//!
//! A deployment may name a `catalog_id` (see `crate::http::catalog`; the organization's own
//! entries win over built-in ones): the upstream model, the prices (cached input included), the
//! output limit and the mode are then taken from that entry, and any of them given explicitly
//! in the request overrides the entry's. The values are copied, so a later catalog change does
//! not reprice an existing deployment. The provider must be able to serve the entry: the same
//! kind, or an `azure_openai` provider for an `openai` entry (else 400). Without `catalog_id`,
//! `upstream_model` and both prices are required.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use shared::config::ProviderKind;
use shared::money::parse_usd_json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::catalog::usd;
use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::catalog::{ModelMode, provider_serves};
use crate::entities::{model_deployment, provider_credential};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(list_models).post(create_model))
        .route("/models/{id}", get(get_model).delete(delete_model))
}

impl TenantScoped for model_deployment::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "model";
    const KIND: &'static str = "model_deployment";
    fn tenant_column() -> Self::Column {
        model_deployment::Column::TenantId
    }
    fn id_column() -> Self::Column {
        model_deployment::Column::Id
    }
    /// Creation order: the order routing sees deployments of one name in.
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(model_deployment::Column::CreatedAt)
            .order_by_asc(model_deployment::Column::Id)
    }
}

/// OpenAPI schema of a price: a decimal number or a string holding one.
pub(crate) fn price_schema() -> utoipa::openapi::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0.0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]*(\.[0-9]*)?$")),
        )
        .description(Some(
            "USD per million tokens, at most 6 decimal places, e.g. 2.5 or \"0.15\"",
        ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModelRequest {
    /// The model name clients send in `"model"`.
    #[schema(example = "gpt-4o-mini")]
    pub name: String,
    /// A provider of this organization.
    pub provider_id: Uuid,
    /// A catalog entry (`GET /api/v1/catalog`) to take the upstream model, prices, output
    /// limit and mode from; explicit fields below override it.
    #[serde(default)]
    #[schema(example = "openai/gpt-4o-mini")]
    pub catalog_id: Option<String>,
    /// The model id sent to the provider. Required without `catalog_id`.
    #[serde(default)]
    #[schema(example = "gpt-4o-mini-2024-07-18")]
    pub upstream_model: Option<String>,
    /// USD per million prompt tokens. Required without `catalog_id`.
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub input_price_per_mtok: Option<serde_json::Value>,
    /// USD per million completion tokens. Required without `catalog_id`.
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub output_price_per_mtok: Option<serde_json::Value>,
    /// USD per million prompt tokens read from the provider's prompt cache (default: the
    /// catalog's, else billed at the input price).
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub cached_input_price_per_mtok: Option<serde_json::Value>,
    /// The model's output limit, used where a provider requires `max_tokens` and the client
    /// sent none (default: the catalog's).
    #[serde(default)]
    #[schema(example = 16384)]
    pub max_output_tokens: Option<u32>,
    /// `chat` or `embedding` (default: the catalog's, else `chat`).
    #[serde(default)]
    pub mode: Option<ModelMode>,
    #[serde(default)]
    #[schema(example = "eu-west")]
    pub region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    pub id: Uuid,
    pub name: String,
    pub provider_id: Uuid,
    pub upstream_model: String,
    /// USD per million prompt tokens (exact: derived from the integer below).
    #[schema(example = 0.15)]
    pub input_price_per_mtok: f64,
    /// USD per million completion tokens.
    #[schema(example = 0.6)]
    pub output_price_per_mtok: f64,
    /// Micro-dollars per million prompt tokens, the stored value.
    #[schema(example = 150000)]
    pub input_price_micros_per_mtok: i64,
    /// Micro-dollars per million completion tokens.
    #[schema(example = 600000)]
    pub output_price_micros_per_mtok: i64,
    /// USD per million prompt tokens read from the provider's cache; null: the input price.
    #[schema(example = 0.075)]
    pub cached_input_price_per_mtok: Option<f64>,
    /// Micro-dollars per million cached prompt tokens.
    #[schema(example = 75000)]
    pub cached_input_price_micros_per_mtok: Option<i64>,
    /// The model's output limit, if known.
    #[schema(example = 16384)]
    pub max_output_tokens: Option<u32>,
    /// The catalog entry this deployment was created from.
    #[schema(example = "openai/gpt-4o-mini")]
    pub catalog_id: Option<String>,
    pub mode: ModelMode,
    pub region: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&model_deployment::Model> for ModelDto {
    fn from(m: &model_deployment::Model) -> Self {
        Self {
            id: m.id,
            name: m.name.clone(),
            provider_id: m.provider_id,
            upstream_model: m.upstream_model.clone(),
            input_price_per_mtok: usd(m.input_price_micros_per_mtok),
            output_price_per_mtok: usd(m.output_price_micros_per_mtok),
            input_price_micros_per_mtok: m.input_price_micros_per_mtok,
            output_price_micros_per_mtok: m.output_price_micros_per_mtok,
            cached_input_price_per_mtok: m.cached_input_price_micros_per_mtok.map(usd),
            cached_input_price_micros_per_mtok: m.cached_input_price_micros_per_mtok,
            max_output_tokens: m.max_output_tokens.and_then(|n| u32::try_from(n).ok()),
            catalog_id: m.catalog_id.clone(),
            // Written by this code only; an unknown value reads as the column default.
            mode: ModelMode::parse(&m.mode).unwrap_or(ModelMode::Chat),
            region: m.region.clone(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub data: Vec<ModelDto>,
}

/// A price field: `Some(µ$)` when given, `None` when absent; a bad value names the field.
fn price(field: &str, v: Option<&serde_json::Value>) -> Result<Option<i64>, ApiError> {
    v.map(|v| parse_usd_json(v).map_err(|e| ApiError::invalid(field, e)))
        .transpose()
}

/// Add a model deployment.
#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    security(("bearer" = [])),
    request_body = CreateModelRequest,
    responses(
        (status = 201, body = ModelDto),
        (status = 400, description = "Invalid field (e.g. a price with more than 6 decimals), a missing field without `catalog_id`, or a catalog entry the provider's kind cannot serve", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "`provider_id` is not a provider of this organization, or `catalog_id` is not in its catalog", body = crate::error::ErrorBody),
    )
)]
pub async fn create_model(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateModelRequest>,
) -> Result<(StatusCode, Json<ModelDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let upstream_model = req
        .upstream_model
        .as_deref()
        .map(|u| validate::name("upstream_model", u))
        .transpose()?;
    let input = price("input_price_per_mtok", req.input_price_per_mtok.as_ref())?;
    let output = price("output_price_per_mtok", req.output_price_per_mtok.as_ref())?;
    let cached = price(
        "cached_input_price_per_mtok",
        req.cached_input_price_per_mtok.as_ref(),
    )?;
    if req.max_output_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "must be greater than 0",
        ));
    }
    let region = validate::optional_name("region", req.region.as_deref())?;
    let catalog_id = req
        .catalog_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(id) = catalog_id {
        crate::catalog::validate_id(id).map_err(|e| ApiError::invalid("catalog_id", e))?;
    }

    let mut change = Change::begin(&state, &auth).await?;
    let provider = change
        .find::<provider_credential::Entity>(req.provider_id)
        .await?;
    let entry = match catalog_id {
        Some(id) => {
            let (entry, _) =
                super::catalog::resolve(change.tx(), &state.catalog, auth.tenant_id, id)
                    .await?
                    .ok_or(ApiError::NotFound("catalog entry"))?;
            let kind = ProviderKind::parse(&provider.kind);
            if !kind.is_some_and(|k| provider_serves(k, entry.provider)) {
                return Err(ApiError::invalid(
                    "catalog_id",
                    format_args!(
                        "entry {} is for provider kind {}, but provider {} is of kind {}{}",
                        entry.id,
                        entry.provider.as_str(),
                        provider.name,
                        provider.kind,
                        if entry.provider == ProviderKind::OpenAi {
                            " (openai entries need an openai or azure_openai provider)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            Some(entry)
        }
        None => None,
    };
    let missing = |field: &str| ApiError::invalid(field, "is required unless catalog_id is given");
    let mode = req
        .mode
        .or(entry.as_ref().map(|e| e.mode))
        .unwrap_or(ModelMode::Chat);
    let max_output_tokens = match req.max_output_tokens {
        Some(n) => Some(n),
        // An entry's chat output limit means nothing to a deployment used for embeddings.
        None => entry
            .as_ref()
            .filter(|e| e.mode == mode)
            .and_then(|e| e.max_output_tokens),
    };
    if mode == ModelMode::Embedding && max_output_tokens.is_some() {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "must not be set for embedding models",
        ));
    }

    let row = model_deployment::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        name,
        provider_id: req.provider_id,
        upstream_model: match (upstream_model, &entry) {
            (Some(u), _) => u,
            (None, Some(e)) => e.upstream_model.clone(),
            (None, None) => return Err(missing("upstream_model")),
        },
        input_price_micros_per_mtok: input
            .or(entry.as_ref().map(|e| e.input_price_micros_per_mtok))
            .ok_or_else(|| missing("input_price_per_mtok"))?,
        output_price_micros_per_mtok: output
            .or(entry.as_ref().map(|e| e.output_price_micros_per_mtok))
            .ok_or_else(|| missing("output_price_per_mtok"))?,
        region,
        created_at: now(),
        catalog_id: entry.as_ref().map(|e| e.id.clone()),
        cached_input_price_micros_per_mtok: cached.or(entry
            .as_ref()
            .and_then(|e| e.cached_input_price_micros_per_mtok)),
        max_output_tokens: max_output_tokens.map(i64::from),
        mode: mode.as_str().to_owned(),
    };
    model_deployment::Entity::insert(model_deployment::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        provider_id: Set(row.provider_id),
        upstream_model: Set(row.upstream_model.clone()),
        input_price_micros_per_mtok: Set(row.input_price_micros_per_mtok),
        output_price_micros_per_mtok: Set(row.output_price_micros_per_mtok),
        region: Set(row.region.clone()),
        created_at: Set(row.created_at),
        catalog_id: Set(row.catalog_id.clone()),
        cached_input_price_micros_per_mtok: Set(row.cached_input_price_micros_per_mtok),
        max_output_tokens: Set(row.max_output_tokens),
        mode: Set(row.mode.clone()),
    })
    .exec_without_returning(change.tx())
    .await?;
    change.publish_tenant().await?;
    change.audit::<model_deployment::Entity>(AuditAction::Create, &row.id);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(ModelDto::from(&row))))
}

/// List model deployments, in creation order (the order routing sees them in).
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    security(("bearer" = [])),
    responses((status = 200, body = ModelList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_models(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<ModelList>, ApiError> {
    let rows = resource::list::<model_deployment::Entity, _>(&state.db, auth.tenant_id).await?;
    Ok(Json(ModelList {
        data: rows.iter().map(ModelDto::from).collect(),
    }))
}

/// Get one model deployment.
#[utoipa::path(
    get,
    path = "/api/v1/models/{id}",
    tag = "models",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Model deployment id")),
    responses((status = 200, body = ModelDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_model(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelDto>, ApiError> {
    let row = resource::find::<model_deployment::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(ModelDto::from(&row)))
}

/// Delete a model deployment.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{id}",
    tag = "models",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Model deployment id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_model(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    change.delete::<model_deployment::Entity>(id).await?;
    change.publish_tenant().await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
