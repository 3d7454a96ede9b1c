//! The model catalog: `GET /catalog`, `GET /catalog/{id}`, `POST /catalog`,
//! `PUT /catalog/{id}`, `DELETE /catalog/{id}`.
//!
//! What an organization sees is the built-in catalog (see [`crate::catalog`]) merged with its
//! own entries (`tenant_catalog_entries`): an own entry with the id of a built-in one replaces
//! it (negotiated prices), others are additions (a private fine-tune). Every listed entry says
//! where it comes from in `source_kind` (`builtin` | `tenant`). Another organization's entries
//! are invisible. Listing is sorted by id and filterable by `?provider=` and `?mode=`.
//!
//! Catalog ids contain `/` (`openai/gpt-4o-mini`); in the `{id}` routes the id may be written as
//! is (`/catalog/openai/gpt-4o-mini`) or with the slash encoded (`/catalog/openai%2Fgpt-4o-mini`).
//!
//! Writing (owners and admins): `POST` adds an entry (409 if the organization already has one
//! with this id; use `PUT` to replace), `PUT /catalog/{id}` creates (201) or replaces (200) it,
//! `DELETE` removes the organization's entry (a built-in entry it overrode shows again; built-in
//! entries themselves cannot be deleted). When the id is a built-in one, fields the request
//! leaves out are taken from the built-in entry, so overriding a price needs only the price.
//! Otherwise `provider`, `upstream_model`, `context_window` and both prices are required.
//!
//! The catalog is not published to the data plane: a deployment created from an entry
//! (`POST /models {catalog_id}`) copies its values, so later catalog edits change no existing
//! deployment's price.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Select,
};
use serde::{Deserialize, Serialize};
use shared::config::ProviderKind;
use shared::money::{MICROS_PER_USD, parse_usd_json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::validate::{MAX_URL_LEN, preview};
use super::{ApiJson, ApiPath, ApiQuery, now};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::catalog::{
    Capabilities, Catalog, CatalogEntry, ModelMode, provider_kind_names, validate_id,
};
use crate::entities::tenant_catalog_entry;
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/catalog", get(list_catalog).post(create_entry))
        .route(
            "/catalog/{*id}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
}

impl TenantScoped for tenant_catalog_entry::Entity {
    type Id = String;
    /// Only the organization's own entries are rows; a built-in entry is never "found" here.
    const NOUN: &'static str = "organization catalog entry";
    const KIND: &'static str = "catalog_entry";
    fn tenant_column() -> Self::Column {
        tenant_catalog_entry::Column::TenantId
    }
    fn id_column() -> Self::Column {
        tenant_catalog_entry::Column::Id
    }
    fn ordered(select: Select<Self>) -> Select<Self> {
        select.order_by_asc(tenant_catalog_entry::Column::Id)
    }
}

/// Where a listed entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The built-in catalog (or the operator's `SWITCHYARD_CATALOG_PATH` file).
    Builtin,
    /// This organization's own entry (an addition, or an override of a built-in entry).
    Tenant,
}

/// One catalog entry. Prices are USD per million tokens, as numbers and as the exact integer
/// micro-dollars they come from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogEntryDto {
    /// Stable catalog id; pass it as `catalog_id` to `POST /models`.
    #[schema(example = "openai/gpt-4o-mini")]
    pub id: String,
    /// The provider kind that serves it (`azure_openai` providers also serve `openai` entries).
    #[schema(example = "openai")]
    pub provider: String,
    /// The model id sent to the provider.
    #[schema(example = "gpt-4o-mini")]
    pub upstream_model: String,
    #[schema(example = "GPT-4o mini")]
    pub display_name: String,
    pub mode: ModelMode,
    #[schema(example = 128000)]
    pub context_window: u64,
    /// The model's output limit; null for embeddings and where none is documented.
    #[schema(example = 16384)]
    pub max_output_tokens: Option<u32>,
    #[schema(example = 0.15)]
    pub input_price_per_mtok: f64,
    #[schema(example = 0.6)]
    pub output_price_per_mtok: f64,
    /// Price of prompt tokens read from the provider's prompt cache; null: no cache pricing.
    #[schema(example = 0.075)]
    pub cached_input_price_per_mtok: Option<f64>,
    #[schema(example = 150000)]
    pub input_price_micros_per_mtok: i64,
    #[schema(example = 600000)]
    pub output_price_micros_per_mtok: i64,
    #[schema(example = 75000)]
    pub cached_input_price_micros_per_mtok: Option<i64>,
    pub capabilities: Capabilities,
    /// Where the prices come from (a pricing page URL).
    #[schema(example = "https://openai.com/api/pricing/")]
    pub source: Option<String>,
    pub source_kind: SourceKind,
}

/// Micro-dollars as a JSON number (exact for every accepted price; see `models::usd`).
pub(crate) fn usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
}

impl CatalogEntryDto {
    pub(crate) fn new(e: &CatalogEntry, source_kind: SourceKind) -> Self {
        Self {
            id: e.id.clone(),
            provider: e.provider.as_str().to_owned(),
            upstream_model: e.upstream_model.clone(),
            display_name: e.display_name.clone(),
            mode: e.mode,
            context_window: e.context_window,
            max_output_tokens: e.max_output_tokens,
            input_price_per_mtok: usd(e.input_price_micros_per_mtok),
            output_price_per_mtok: usd(e.output_price_micros_per_mtok),
            cached_input_price_per_mtok: e.cached_input_price_micros_per_mtok.map(usd),
            input_price_micros_per_mtok: e.input_price_micros_per_mtok,
            output_price_micros_per_mtok: e.output_price_micros_per_mtok,
            cached_input_price_micros_per_mtok: e.cached_input_price_micros_per_mtok,
            capabilities: e.capabilities,
            source: e.source.clone(),
            source_kind,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogList {
    /// When the built-in prices were taken (verify them before billing on them).
    #[schema(example = "2026-11")]
    pub as_of: String,
    pub data: Vec<CatalogEntryDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    /// Only entries of this provider kind, e.g. `bedrock`.
    pub provider: Option<String>,
    /// Only `chat` or only `embedding` models.
    pub mode: Option<String>,
}

/// OpenAPI schema of a price: a decimal number or a string holding one.
fn price_schema() -> utoipa::openapi::OneOfBuilder {
    super::models::price_schema()
}

/// A catalog entry to add or to replace. With the id of a built-in entry, omitted fields are
/// taken from it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntryRequest {
    /// Required for `POST`; for `PUT` it comes from the path (and must match if given).
    /// Letters, digits and `- _ . : / @ +`, e.g. `acme/llama-ft-v2`.
    #[serde(default)]
    #[schema(example = "acme/llama-ft-v2")]
    pub id: Option<String>,
    /// A provider kind wire name, e.g. `openai_compatible`.
    #[serde(default)]
    #[schema(example = "openai_compatible")]
    pub provider: Option<String>,
    #[serde(default)]
    #[schema(example = "acme-llama-ft-v2")]
    pub upstream_model: Option<String>,
    /// Default: the built-in entry's, else `upstream_model`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Default: the built-in entry's, else `chat`.
    #[serde(default)]
    pub mode: Option<ModelMode>,
    #[serde(default)]
    #[schema(example = 131072)]
    pub context_window: Option<u64>,
    #[serde(default)]
    #[schema(example = 8192)]
    pub max_output_tokens: Option<u32>,
    /// USD per million prompt tokens.
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub input_price_per_mtok: Option<serde_json::Value>,
    /// USD per million completion tokens.
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub output_price_per_mtok: Option<serde_json::Value>,
    /// USD per million prompt tokens read from the provider's cache.
    #[serde(default)]
    #[schema(schema_with = price_schema, required = false)]
    pub cached_input_price_per_mtok: Option<serde_json::Value>,
    /// Default: the built-in entry's, else `streaming` for chat and `embeddings` for embedding
    /// models. Fields left out are false.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// Where the numbers come from, e.g. your contract or a pricing page (http(s) URL).
    #[serde(default)]
    pub source: Option<String>,
}

/// A catalog id from the path: longer than any id can be is a 400 (before any lookup); any
/// other id is looked up as is (an id with odd characters simply does not exist: 404).
fn path_id(id: &str) -> Result<(), ApiError> {
    if id.chars().count() > crate::catalog::MAX_ID_LEN {
        return Err(ApiError::invalid(
            "id",
            format_args!("must be at most {} characters", crate::catalog::MAX_ID_LEN),
        ));
    }
    Ok(())
}

/// An organization's row as a catalog entry. A row that no longer parses
/// (never written by this code) reads as absent rather than failing the request.
fn entry_from_row(row: &tenant_catalog_entry::Model) -> Option<CatalogEntry> {
    let entry = CatalogEntry {
        id: row.id.clone(),
        provider: ProviderKind::parse(&row.provider)?,
        upstream_model: row.upstream_model.clone(),
        display_name: row.display_name.clone(),
        mode: ModelMode::parse(&row.mode)?,
        context_window: u64::try_from(row.context_window).ok()?,
        max_output_tokens: match row.max_output_tokens {
            Some(n) => Some(u32::try_from(n).ok()?),
            None => None,
        },
        input_price_micros_per_mtok: row.input_price_micros_per_mtok,
        output_price_micros_per_mtok: row.output_price_micros_per_mtok,
        cached_input_price_micros_per_mtok: row.cached_input_price_micros_per_mtok,
        capabilities: Capabilities {
            tools: row.supports_tools,
            vision: row.supports_vision,
            json_mode: row.supports_json_mode,
            embeddings: row.supports_embeddings,
            streaming: row.supports_streaming,
        },
        source: row.source.clone(),
    };
    if let Err(problem) = entry.validate() {
        tracing::warn!(tenant_id = %row.tenant_id, catalog_id = %row.id, %problem, "ignoring an invalid tenant catalog entry");
        return None;
    }
    Some(entry)
}

/// The entry `id` as organization `tenant_id` sees it: its own entry, else the built-in one.
pub(crate) async fn resolve<C: ConnectionTrait>(
    conn: &C,
    catalog: &Catalog,
    tenant_id: Uuid,
    id: &str,
) -> Result<Option<(CatalogEntry, SourceKind)>, DbErr> {
    let own = tenant_catalog_entry::Entity::find_by_id((tenant_id, id.to_owned()))
        .one(conn)
        .await?;
    if let Some(entry) = own.as_ref().and_then(entry_from_row) {
        return Ok(Some((entry, SourceKind::Tenant)));
    }
    Ok(catalog.get(id).map(|e| (e.clone(), SourceKind::Builtin)))
}

/// List the catalog: built-in entries merged with this organization's (its own win).
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "catalog",
    security(("bearer" = [])),
    params(CatalogQuery),
    responses(
        (status = 200, body = CatalogList),
        (status = 400, description = "Unknown provider kind or mode in the filter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
pub async fn list_catalog(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<CatalogQuery>,
) -> Result<Json<CatalogList>, ApiError> {
    let provider = match q
        .provider
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(p) => Some(ProviderKind::parse(p).ok_or_else(|| {
            ApiError::invalid(
                "provider",
                format_args!(
                    "unknown provider kind {:?}; valid kinds: {}",
                    preview(p, 32),
                    provider_kind_names()
                ),
            )
        })?),
        None => None,
    };
    let mode = match q.mode.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(m) => Some(
            ModelMode::parse(m)
                .ok_or_else(|| ApiError::invalid("mode", "must be chat or embedding"))?,
        ),
        None => None,
    };
    let rows = resource::list::<tenant_catalog_entry::Entity, _>(&state.db, auth.tenant_id).await?;
    let own: Vec<CatalogEntry> = rows.iter().filter_map(entry_from_row).collect();
    let mut merged: std::collections::BTreeMap<&str, CatalogEntryDto> = state
        .catalog
        .entries()
        .iter()
        .map(|e| (e.id.as_str(), CatalogEntryDto::new(e, SourceKind::Builtin)))
        .collect();
    for e in &own {
        merged.insert(e.id.as_str(), CatalogEntryDto::new(e, SourceKind::Tenant));
    }
    let data = merged
        .into_values()
        .filter(|e| provider.is_none_or(|p| e.provider == p.as_str()))
        .filter(|e| mode.is_none_or(|m| e.mode == m))
        .collect();
    Ok(Json(CatalogList {
        as_of: state.catalog.as_of().to_owned(),
        data,
    }))
}

/// Get one catalog entry as this organization sees it.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Catalog id, e.g. `openai/gpt-4o-mini` (the slash as is or as %2F)")),
    responses((status = 200, body = CatalogEntryDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CatalogEntryDto>, ApiError> {
    path_id(&id)?;
    let (entry, kind) = resolve(&state.db, &state.catalog, auth.tenant_id, &id)
        .await?
        .ok_or(ApiError::NotFound("catalog entry"))?;
    Ok(Json(CatalogEntryDto::new(&entry, kind)))
}

/// Builds and validates the entry `id` from a request, filling omitted fields from `base`
/// (the built-in entry with the same id, if any).
fn build_entry(
    id: String,
    req: &CatalogEntryRequest,
    base: Option<&CatalogEntry>,
) -> Result<CatalogEntry, ApiError> {
    validate_id(&id).map_err(|e| ApiError::invalid("id", e))?;
    let required = |field: &str| {
        ApiError::invalid(
            field,
            "is required (unless the id is a built-in catalog entry, whose value is then kept)",
        )
    };
    let provider = match req.provider.as_deref().map(str::trim) {
        Some(p) => ProviderKind::parse(p).ok_or_else(|| {
            ApiError::invalid(
                "provider",
                format_args!(
                    "unknown provider kind {:?}; valid kinds: {}",
                    preview(p, 32),
                    provider_kind_names()
                ),
            )
        })?,
        None => base
            .map(|b| b.provider)
            .ok_or_else(|| required("provider"))?,
    };
    let upstream_model = match &req.upstream_model {
        Some(u) => u.trim().to_owned(),
        None => base
            .map(|b| b.upstream_model.clone())
            .ok_or_else(|| required("upstream_model"))?,
    };
    let display_name = match &req.display_name {
        Some(d) => d.trim().to_owned(),
        None => base
            .map(|b| b.display_name.clone())
            .unwrap_or_else(|| upstream_model.clone()),
    };
    let mode = req.mode.or(base.map(|b| b.mode)).unwrap_or(ModelMode::Chat);
    let context_window = req
        .context_window
        .or(base.map(|b| b.context_window))
        .ok_or_else(|| required("context_window"))?;
    let max_output_tokens = match req.max_output_tokens {
        Some(n) => Some(n),
        // A built-in chat limit does not carry over to an entry turned into an embedding model.
        None => base
            .filter(|b| b.mode == mode)
            .and_then(|b| b.max_output_tokens),
    };
    let price = |field: &str, v: &Option<serde_json::Value>, from_base: Option<i64>| match v {
        Some(v) => parse_usd_json(v)
            .map(Some)
            .map_err(|e| ApiError::invalid(field, e)),
        None => Ok(from_base),
    };
    let input = price(
        "input_price_per_mtok",
        &req.input_price_per_mtok,
        base.map(|b| b.input_price_micros_per_mtok),
    )?
    .ok_or_else(|| required("input_price_per_mtok"))?;
    let output = price(
        "output_price_per_mtok",
        &req.output_price_per_mtok,
        base.map(|b| b.output_price_micros_per_mtok),
    )?
    .ok_or_else(|| required("output_price_per_mtok"))?;
    let cached = price(
        "cached_input_price_per_mtok",
        &req.cached_input_price_per_mtok,
        base.and_then(|b| b.cached_input_price_micros_per_mtok),
    )?;
    let capabilities = req
        .capabilities
        .or(base.filter(|b| b.mode == mode).map(|b| b.capabilities))
        .unwrap_or(Capabilities {
            streaming: mode == ModelMode::Chat,
            embeddings: mode == ModelMode::Embedding,
            ..Capabilities::default()
        });
    if req.source.as_ref().is_some_and(|s| s.len() > MAX_URL_LEN) {
        return Err(ApiError::invalid(
            "source",
            format_args!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let source = match req.source.as_deref().map(str::trim) {
        Some("") => None,
        Some(s) => Some(s.to_owned()),
        None => base.and_then(|b| b.source.clone()),
    };
    let entry = CatalogEntry {
        id,
        provider,
        upstream_model,
        display_name,
        mode,
        context_window,
        max_output_tokens,
        input_price_micros_per_mtok: input,
        output_price_micros_per_mtok: output,
        cached_input_price_micros_per_mtok: cached,
        capabilities,
        source,
    };
    // The validation message starts with the field name, like every other 400.
    entry.validate().map_err(ApiError::Validation)?;
    Ok(entry)
}

/// The row for `entry` in organization `tenant_id`.
fn active_row(
    tenant_id: Uuid,
    e: &CatalogEntry,
    now: time::OffsetDateTime,
) -> tenant_catalog_entry::ActiveModel {
    tenant_catalog_entry::ActiveModel {
        tenant_id: Set(tenant_id),
        id: Set(e.id.clone()),
        provider: Set(e.provider.as_str().to_owned()),
        upstream_model: Set(e.upstream_model.clone()),
        display_name: Set(e.display_name.clone()),
        mode: Set(e.mode.as_str().to_owned()),
        // Beyond i64::MAX is not a real context window; clamp rather than wrap.
        context_window: Set(i64::try_from(e.context_window).unwrap_or(i64::MAX)),
        max_output_tokens: Set(e.max_output_tokens.map(i64::from)),
        input_price_micros_per_mtok: Set(e.input_price_micros_per_mtok),
        output_price_micros_per_mtok: Set(e.output_price_micros_per_mtok),
        cached_input_price_micros_per_mtok: Set(e.cached_input_price_micros_per_mtok),
        supports_tools: Set(e.capabilities.tools),
        supports_vision: Set(e.capabilities.vision),
        supports_json_mode: Set(e.capabilities.json_mode),
        supports_embeddings: Set(e.capabilities.embeddings),
        supports_streaming: Set(e.capabilities.streaming),
        source: Set(e.source.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Add a catalog entry for this organization (an addition, or an override of a built-in id).
#[utoipa::path(
    post,
    path = "/api/v1/catalog",
    tag = "catalog",
    security(("bearer" = [])),
    request_body = CatalogEntryRequest,
    responses(
        (status = 201, body = CatalogEntryDto),
        (status = 400, description = "Invalid or missing field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "This organization already has an entry with this id; use PUT to replace it", body = crate::error::ErrorBody),
    )
)]
pub async fn create_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CatalogEntryRequest>,
) -> Result<(StatusCode, Json<CatalogEntryDto>), ApiError> {
    auth.require_manage()?;
    let id = req
        .id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("id", "is required"))?
        .to_owned();
    let entry = build_entry(id.clone(), &req, state.catalog.get(&id))?;
    let mut change = Change::begin(&state, &auth).await?;
    tenant_catalog_entry::Entity::insert(active_row(auth.tenant_id, &entry, now()))
        .exec_without_returning(change.tx())
        .await
        .on_unique_violation(
            "this organization already has a catalog entry with this id; use PUT /api/v1/catalog/{id} to replace it",
        )?;
    let dto = CatalogEntryDto::new(&entry, SourceKind::Tenant);
    change
        .audit::<tenant_catalog_entry::Entity>(AuditAction::Create, &entry.id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// Create or replace this organization's catalog entry `id`.
#[utoipa::path(
    put,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Catalog id, e.g. `openai/gpt-4o-mini` (the slash as is or as %2F)")),
    request_body = CatalogEntryRequest,
    responses(
        (status = 200, description = "Replaced", body = CatalogEntryDto),
        (status = 201, description = "Created", body = CatalogEntryDto),
        (status = 400, description = "Invalid or missing field, or an `id` in the body that differs from the path", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
    )
)]
pub async fn put_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CatalogEntryRequest>,
) -> Result<(StatusCode, Json<CatalogEntryDto>), ApiError> {
    auth.require_manage()?;
    path_id(&id)?;
    if let Some(body_id) = req.id.as_deref().map(str::trim)
        && body_id != id
    {
        return Err(ApiError::invalid("id", "must match the id in the path"));
    }
    let entry = build_entry(id.clone(), &req, state.catalog.get(&id))?;
    let now = now();
    let mut change = Change::begin(&state, &auth).await?;
    let existing = resource::scoped::<tenant_catalog_entry::Entity>(auth.tenant_id)
        .filter(tenant_catalog_entry::Column::Id.eq(entry.id.as_str()))
        .one(change.tx())
        .await?;
    let status = match existing {
        Some(old) => {
            let mut row = active_row(auth.tenant_id, &entry, now);
            row.created_at = Set(old.created_at);
            tenant_catalog_entry::Entity::update(row)
                .exec(change.tx())
                .await?;
            let before = entry_from_row(&old).map(|e| CatalogEntryDto::new(&e, SourceKind::Tenant));
            change
                .audit::<tenant_catalog_entry::Entity>(AuditAction::Update, &entry.id)
                .before(&before)
                .after(&CatalogEntryDto::new(&entry, SourceKind::Tenant));
            StatusCode::OK
        }
        None => {
            tenant_catalog_entry::Entity::insert(active_row(auth.tenant_id, &entry, now))
                .exec_without_returning(change.tx())
                .await
                // Two concurrent PUTs of a new id: the loser is told to retry.
                .on_unique_violation("the entry was created concurrently; retry")?;
            change
                .audit::<tenant_catalog_entry::Entity>(AuditAction::Create, &entry.id)
                .after(&CatalogEntryDto::new(&entry, SourceKind::Tenant));
            StatusCode::CREATED
        }
    };
    change.commit().await?;
    Ok((
        status,
        Json(CatalogEntryDto::new(&entry, SourceKind::Tenant)),
    ))
}

/// Delete this organization's catalog entry `id` (a built-in entry it overrode shows again).
#[utoipa::path(
    delete,
    path = "/api/v1/catalog/{id}",
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Catalog id, e.g. `acme/llama-ft-v2`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "This organization has no entry with this id (built-in entries cannot be deleted)", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_entry(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    path_id(&id)?;
    let mut change = Change::begin(&state, &auth).await?;
    let before = resource::scoped::<tenant_catalog_entry::Entity>(auth.tenant_id)
        .filter(tenant_catalog_entry::Column::Id.eq(id.as_str()))
        .one(change.tx())
        .await?
        .and_then(|row| entry_from_row(&row))
        .map(|e| CatalogEntryDto::new(&e, SourceKind::Tenant));
    change
        .delete::<tenant_catalog_entry::Entity>(id)
        .await?
        .before(&before);
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
