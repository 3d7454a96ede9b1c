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
//!
//! What routing filters and smooths on (all optional): `context_window` (tokens of prompt plus
//! output; a request that cannot fit is routed elsewhere), `capabilities` (`tools`, `vision`,
//! `json_mode`: a request needing one is only routed to deployments that list it; unknown
//! (null) is never filtered on), and the provider's quotas `rpm_limit` / `tpm_limit` (the
//! gateway's nodes keep under them together and route to the next candidate before the
//! provider answers 429). From a catalog entry, the context window and capabilities are copied
//! unless given.
//!
//! A deployment that a route lists cannot be deleted (409 naming the routes): remove it from
//! them first (`PATCH /routes/{id}`), so a route never silently loses its fallback.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use shared::config::{Capability, ProviderKind};
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
use crate::entities::{model_deployment, provider_credential, route, route_candidate};
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

/// Largest accepted context window, in tokens (the largest real ones are around 10 million).
const MAX_CONTEXT_WINDOW: u64 = 100_000_000;
/// Largest accepted tokens-per-minute quota.
const MAX_TPM_LIMIT: u64 = 1_000_000_000_000;
/// How many route names a 409 for a deployment in use names.
const MAX_ROUTES_NAMED: usize = 5;

/// OpenAPI schema of `capabilities`: a list of capability wire names.
pub(crate) fn capabilities_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["tools", "vision", "json_mode"])),
        )
        .description(Some(
            "What the model can do: tools (function calling), vision (image input), json_mode (response_format); null = unknown, never filtered on",
        ))
        .examples([serde_json::json!(["tools", "json_mode"])])
        .build()
}

/// The wire name of a capability, as stored (exhaustive, so a new capability is a compile error
/// here until the OpenAPI schema above lists it too).
fn capability_name(c: Capability) -> &'static str {
    match c {
        Capability::Tools => "tools",
        Capability::Vision => "vision",
        Capability::JsonMode => "json_mode",
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
    /// Where the model runs, e.g. `eu-west-1`; region policies (`allowed_regions`) match it
    /// exactly or by prefix (`eu` allows `eu-west-1`). A deployment without one never serves a
    /// region-pinned request.
    #[serde(default)]
    #[schema(example = "eu-west-1")]
    pub region: Option<String>,
    /// Tokens of prompt plus output the model accepts (default: the catalog's).
    #[serde(default)]
    #[schema(example = 128000)]
    pub context_window: Option<u64>,
    /// What the model can do (default: the catalog's).
    #[serde(default)]
    #[schema(schema_with = capabilities_schema, required = false)]
    pub capabilities: Option<Vec<Capability>>,
    /// The provider's requests-per-minute quota for this deployment; the gateway's nodes keep
    /// under it together.
    #[serde(default)]
    #[schema(example = 500)]
    pub rpm_limit: Option<u32>,
    /// The provider's tokens-per-minute quota for this deployment.
    #[serde(default)]
    #[schema(example = 200000)]
    pub tpm_limit: Option<u64>,
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
    /// Tokens of prompt plus output the model accepts; null: unknown.
    #[schema(example = 128000)]
    pub context_window: Option<u64>,
    #[schema(schema_with = capabilities_schema)]
    pub capabilities: Option<Vec<Capability>>,
    /// The provider's requests-per-minute quota; null: none.
    pub rpm_limit: Option<u32>,
    /// The provider's tokens-per-minute quota; null: none.
    pub tpm_limit: Option<u64>,
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
            // Stored as bigint; the API only writes values that fit.
            context_window: m.context_window.and_then(|n| u64::try_from(n).ok()),
            capabilities: m.capability_list(),
            rpm_limit: m.rpm_limit.and_then(|n| u32::try_from(n).ok()),
            tpm_limit: m.tpm_limit.and_then(|n| u64::try_from(n).ok()),
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
    if let Some(n) = req.context_window
        && !(1..=MAX_CONTEXT_WINDOW).contains(&n)
    {
        return Err(ApiError::invalid(
            "context_window",
            format_args!("must be between 1 and {MAX_CONTEXT_WINDOW}"),
        ));
    }
    if req.rpm_limit == Some(0) {
        return Err(ApiError::invalid(
            "rpm_limit",
            "must be greater than 0; omit it for no quota",
        ));
    }
    if let Some(n) = req.tpm_limit
        && !(1..=MAX_TPM_LIMIT).contains(&n)
    {
        return Err(ApiError::invalid(
            "tpm_limit",
            format_args!("must be between 1 and {MAX_TPM_LIMIT}; omit it for no quota"),
        ));
    }
    let capabilities = req.capabilities.clone().map(|mut c| {
        c.sort();
        c.dedup();
        c
    });
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
    // Like the output limit: what an entry says about a chat model does not describe an
    // embedding deployment of it (or the reverse).
    let same_mode_entry = entry.as_ref().filter(|e| e.mode == mode);
    let context_window = req
        .context_window
        .or(same_mode_entry.map(|e| e.context_window));
    let capabilities = capabilities.or(same_mode_entry.map(|e| {
        let c = e.capabilities;
        [
            (c.tools, Capability::Tools),
            (c.vision, Capability::Vision),
            (c.json_mode, Capability::JsonMode),
        ]
        .into_iter()
        .filter_map(|(has, cap)| has.then_some(cap))
        .collect()
    }));
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
        // Both bounded above, far below i64::MAX.
        context_window: context_window.and_then(|n| i64::try_from(n).ok()),
        capabilities: capabilities
            .as_ref()
            .map(|c| serde_json::json!(c.iter().copied().map(capability_name).collect::<Vec<_>>())),
        rpm_limit: req.rpm_limit.map(i64::from),
        tpm_limit: req.tpm_limit.and_then(|n| i64::try_from(n).ok()),
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
        context_window: Set(row.context_window),
        capabilities: Set(row.capabilities.clone()),
        rpm_limit: Set(row.rpm_limit),
        tpm_limit: Set(row.tpm_limit),
    })
    .exec_without_returning(change.tx())
    .await?;
    change.publish_tenant().await?;
    let dto = ModelDto::from(&row);
    change
        .audit::<model_deployment::Entity>(AuditAction::Create, &row.id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
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

/// Delete a model deployment. Refused (409, naming them) while routes use it.
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
        (status = 409, description = "Routes use this deployment (the message names them); remove it from them first", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_model(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let before = ModelDto::from(&change.find::<model_deployment::Entity>(id).await?);
    let users = routes_using(change.tx(), auth.tenant_id, id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(in_use_message(&users)));
    }
    change
        .delete_or_conflict::<model_deployment::Entity>(
            id,
            // A route created concurrently still holds the foreign key.
            "model is used by a route; remove it from the route first",
        )
        .await?
        .before(&before);
    change.publish_tenant().await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The names of the routes of `tenant_id` that list deployment `id`, in name order.
async fn routes_using<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Vec<String>, ApiError> {
    use sea_orm::sea_query::Query;
    use sea_orm::{ColumnTrait, QueryFilter};
    let listing = Query::select()
        .column(route_candidate::Column::RouteId)
        .from(route_candidate::Entity)
        .and_where(route_candidate::Column::DeploymentId.eq(id))
        .to_owned();
    Ok(resource::scoped::<route::Entity>(tenant_id)
        .filter(route::Column::Id.in_subquery(listing))
        .order_by_asc(route::Column::Name)
        .all(conn)
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect())
}

/// "model is used by routes a, b; …", naming at most [`MAX_ROUTES_NAMED`] routes.
fn in_use_message(routes: &[String]) -> String {
    let named: Vec<String> = routes
        .iter()
        .take(MAX_ROUTES_NAMED)
        .map(|n| format!("{:?}", validate::preview(n, 64)))
        .collect();
    let more = routes.len().saturating_sub(MAX_ROUTES_NAMED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let plural = if routes.len() > 1 { "s" } else { "" };
    format!(
        "model is used by route{plural} {}{more}; remove it from them (PATCH /api/v1/routes/{{id}}) or delete them first",
        named.join(", ")
    )
}
