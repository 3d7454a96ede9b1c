//! Model deployments: `POST /models`, `GET /models`, `GET /models/{id}`, `DELETE /models/{id}`.
//!
//! A deployment maps the model name clients send to a provider, the upstream model id and a
//! price in USD per million tokens. Prices are accepted as a JSON number (`2.5`) or string
//! (`"2.5"`) and parsed exactly into integer micro-dollars (`shared::money`), never through a
//! binary float. Several deployments may share a name. Every change bumps the tenant's config
//! version and is published before the call returns. Owners and admins manage models.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use shared::money::{MICROS_PER_USD, parse_usd_json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiJson, ApiPath, now, validate};
use crate::auth::AuthUser;
use crate::entities::{model_deployment, provider_credential};
use crate::error::ApiError;
use crate::state::AppState;
use crate::sync;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(list_models).post(create_model))
        .route("/models/{id}", get(get_model).delete(delete_model))
}

/// OpenAPI schema of a price: a decimal number or a string holding one.
fn price_schema() -> utoipa::openapi::OneOfBuilder {
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
pub struct CreateModelRequest {
    /// The model name clients send in `"model"`.
    #[schema(example = "gpt-4o-mini")]
    pub name: String,
    /// A provider of this organization.
    pub provider_id: Uuid,
    /// The model id sent to the provider.
    #[schema(example = "gpt-4o-mini-2024-07-18")]
    pub upstream_model: String,
    /// USD per million prompt tokens.
    #[schema(schema_with = price_schema)]
    pub input_price_per_mtok: serde_json::Value,
    /// USD per million completion tokens.
    #[schema(schema_with = price_schema)]
    pub output_price_per_mtok: serde_json::Value,
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
    pub region: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Micro-dollars to a JSON number. Exact for every price we accept: at most 13 significant
/// digits, and the quotient of two integers is the double nearest the decimal, which
/// serde_json prints in its shortest form (150000 → 0.15).
fn usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
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
            region: m.region.clone(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub data: Vec<ModelDto>,
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
        (status = 400, description = "Invalid field, e.g. a price with more than 6 decimals", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "`provider_id` is not a provider of this organization", body = crate::error::ErrorBody),
    )
)]
pub async fn create_model(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateModelRequest>,
) -> Result<(StatusCode, Json<ModelDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let upstream_model = validate::name("upstream_model", &req.upstream_model)?;
    let input = parse_usd_json(&req.input_price_per_mtok)
        .map_err(|e| ApiError::invalid("input_price_per_mtok", e))?;
    let output = parse_usd_json(&req.output_price_per_mtok)
        .map_err(|e| ApiError::invalid("output_price_per_mtok", e))?;
    let region = validate::optional_name("region", req.region.as_deref())?;

    let row = model_deployment::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        name,
        provider_id: req.provider_id,
        upstream_model,
        input_price_micros_per_mtok: input,
        output_price_micros_per_mtok: output,
        region,
        created_at: now(),
    };
    let tx = state.db.begin().await?;
    provider_credential::Entity::find_by_id(req.provider_id)
        .filter(provider_credential::Column::TenantId.eq(auth.tenant_id))
        .one(&tx)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
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
    })
    .exec_without_returning(&tx)
    .await?;
    let outbox_id = sync::bump_tenant_version(&tx, auth.tenant_id).await?;
    tx.commit().await?;
    state.sync.wait_published(&[outbox_id]).await;
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
    let rows = model_deployment::Entity::find()
        .filter(model_deployment::Column::TenantId.eq(auth.tenant_id))
        .order_by_asc(model_deployment::Column::CreatedAt)
        .order_by_asc(model_deployment::Column::Id)
        .all(&state.db)
        .await?;
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
    let row = model_deployment::Entity::find_by_id(id)
        .filter(model_deployment::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("model"))?;
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
    let tx = state.db.begin().await?;
    let deleted = model_deployment::Entity::delete_many()
        .filter(model_deployment::Column::Id.eq(id))
        .filter(model_deployment::Column::TenantId.eq(auth.tenant_id))
        .exec(&tx)
        .await?
        .rows_affected;
    if deleted == 0 {
        return Err(ApiError::NotFound("model"));
    }
    let outbox_id = sync::bump_tenant_version(&tx, auth.tenant_id).await?;
    tx.commit().await?;
    state.sync.wait_published(&[outbox_id]).await;
    Ok(StatusCode::NO_CONTENT)
}
