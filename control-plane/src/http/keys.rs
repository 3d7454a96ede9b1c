//! Virtual API keys: `POST /keys`, `GET /keys`, `GET /keys/{id}`, `PATCH /keys/{id}`,
//! `DELETE /keys/{id}`, `POST /keys/{id}/rotate`.
//!
//! The plaintext key (`sk-sy-…`) is returned once, by `POST` and by `rotate`; only its SHA-256
//! is stored and published. Revoking (`DELETE`) keeps the row with `revoked_at` set, bumps the
//! key's version and publishes the new record before answering (see `crate::sync`), so every
//! data-plane node refuses the key right after the call returns.
//!
//! # Governance fields
//!
//! Accepted on create and `PATCH` (where each is nullable: `null` clears it): `rpm_limit`,
//! `tpm_limit` (the key's own requests/tokens per minute; the team's and organization's limits
//! apply too), `endpoints` (`chat`, `messages`, `embeddings`), `allowed_cidrs` (client
//! addresses or networks, at most [`MAX_CIDRS`]; which address counts as the client's behind a
//! proxy is the data plane's setting), `max_tokens_per_request`,
//! `metadata` (string tags attached to every usage event of the key: at most
//! [`MAX_METADATA_ENTRIES`] entries, keys of 1 to [`MAX_METADATA_KEY_LEN`] characters
//! `[a-zA-Z0-9_.-]`, values of at most [`MAX_METADATA_VALUE_LEN`] characters), `cache` (the
//! key's response-cache setting, see `super::cache`; the most specific level). All of them are
//! published in the key's `KeyRecord`.
//!
//! # Rotation
//!
//! `POST /keys/{id}/rotate` `{"grace_seconds": n}` (0 to [`MAX_GRACE_SECONDS`], default
//! [`DEFAULT_GRACE_SECONDS`]) gives the key a new secret (same id, limits, budgets, usage
//! history). The old secret keeps working for `grace_seconds` (never past the key's own
//! expiry): the row keeps it as `previous_key_hash` until `previous_expires_at`, and the sync
//! publishes a second `KeyRecord` under the old hash with the same `key_id` and that expiry, so
//! budgets and limits keyed by key id cover both secrets. With 0 the old secret is refused at
//! once. Rotating again during a grace period ends the older secret at once (it is published
//! revoked). Revoking the key revokes both secrets.
//!
//! # Who sees which keys
//!
//! Owners, admins and viewers see every key of the organization (viewers only read). A user
//! with the `member` role creates keys only for a team they belong to (`team_id` is required
//! for them, so every key a member makes falls under a team's budgets and limits), and sees,
//! changes, rotates and revokes only keys of their teams and keys they created; other keys are
//! 404 to them.
//!
//! `last_used_at` is kept by the usage ingest (`crate::usage_store`): once per key per batch of
//! usage events, never a write per request, so it lags real use by the ingest delay (about a
//! second).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use shared::governance::KeyEndpoint;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cache::{self, CacheDto, CacheRequest};
use super::resource::{self, Change, TenantScoped};
use super::team_members::teams_of;
use super::{ApiJson, ApiPath, ApiQuery, now, validate};
use crate::audit::AuditAction;
use crate::auth::{AuthUser, Role};
use crate::entities::{api_key, team};
use crate::error::ApiError;
use crate::state::AppState;

/// Most model names one key may be limited to.
const MAX_ALLOWED_MODELS: usize = 100;
/// Most entries in `allowed_cidrs`.
pub const MAX_CIDRS: usize = 100;
/// Most `metadata` entries.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest `metadata` key, in characters.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest `metadata` value, in characters.
pub const MAX_METADATA_VALUE_LEN: usize = 256;
/// Rotation grace when the request names none: one day.
pub const DEFAULT_GRACE_SECONDS: u64 = 86_400;
/// Longest rotation grace: seven days.
pub const MAX_GRACE_SECONDS: u64 = 7 * 86_400;
/// Largest `rpm_limit` and `max_tokens_per_request` (they are published as 32-bit numbers).
const MAX_U32_FIELD: u64 = u32::MAX as u64;
/// Largest `tpm_limit`.
const MAX_TPM: u64 = 1_000_000_000_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route(
            "/keys/{id}",
            get(get_key).patch(update_key).delete(revoke_key),
        )
        .route("/keys/{id}/rotate", post(rotate_key))
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
    /// A team of this organization. Required for users with the `member` role (one of their
    /// teams).
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
    /// Requests per minute (rolling); omit for none.
    #[serde(default)]
    #[schema(example = 600)]
    pub rpm_limit: Option<u64>,
    /// Tokens (prompt + completion) per minute (rolling); omit for none.
    #[serde(default)]
    #[schema(example = 200000)]
    pub tpm_limit: Option<u64>,
    /// APIs the key may call; omit for all.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, example = json!(["chat", "messages"]))]
    pub endpoints: Option<Vec<KeyEndpoint>>,
    /// Client addresses or networks (CIDR) the key may be used from, at most 100; omit for any.
    #[serde(default)]
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::1"]))]
    pub allowed_cidrs: Option<Vec<String>>,
    /// The most output tokens one request may ask for (also the default when it asks none).
    #[serde(default)]
    #[schema(example = 4096)]
    pub max_tokens_per_request: Option<u64>,
    /// Tags attached to every usage event of the key (at most 32; keys `[a-zA-Z0-9_.-]{1,64}`,
    /// values up to 256 characters).
    #[serde(default)]
    #[schema(example = json!({"service": "search", "env": "prod"}))]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The key's response-cache setting (overrides its team's and the route's); omit for none.
    #[serde(default)]
    pub cache: Option<CacheRequest>,
}

/// Changes to a key; fields left out stay as they are, `null` clears a field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, format = DateTime, required = false)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub tpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false)]
    pub endpoints: Option<Option<Vec<KeyEndpoint>>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false)]
    pub allowed_cidrs: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub max_tokens_per_request: Option<Option<u64>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<BTreeMap<String, String>>, required = false)]
    pub metadata: Option<Option<BTreeMap<String, String>>>,
    /// Replaces the key's response-cache setting; null removes it.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<CacheRequest>, required = false)]
    pub cache: Option<Option<CacheRequest>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old secret keeps working, 0 to 604800 (7 days); default 86400 (1 day).
    /// 0 refuses it at once.
    #[serde(default)]
    #[schema(example = 3600)]
    pub grace_seconds: Option<u64>,
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
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    /// APIs the key may call; null: all.
    #[schema(value_type = Option<Vec<String>>)]
    pub endpoints: Option<Vec<KeyEndpoint>>,
    /// Client networks the key may be used from; null: any.
    pub allowed_cidrs: Option<Vec<String>>,
    pub max_tokens_per_request: Option<u64>,
    /// Tags on every usage event of the key.
    pub metadata: BTreeMap<String, String>,
    /// When the key was last used (kept from usage, about a second behind).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the key was last rotated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub rotated_at: Option<OffsetDateTime>,
    /// Until when the secret before the last rotation is still accepted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_expires_at: Option<OffsetDateTime>,
    /// The user who created the key.
    pub created_by: Uuid,
    /// The key's response-cache setting; null: none (its team's or the route's applies).
    pub cache: Option<CacheDto>,
}

impl From<&api_key::Model> for KeyDto {
    fn from(k: &api_key::Model) -> Self {
        let n = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        Self {
            id: k.id,
            name: k.name.clone(),
            prefix: k.display_prefix.clone(),
            team_id: k.team_id,
            models: k.allowed_model_names(),
            expires_at: k.expires_at,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            rpm_limit: n(k.rpm_limit),
            tpm_limit: n(k.tpm_limit),
            endpoints: k.endpoint_list(),
            allowed_cidrs: k
                .cidr_list()
                .map(|l| l.iter().map(ToString::to_string).collect()),
            max_tokens_per_request: n(k.max_tokens_per_request),
            metadata: k.metadata_map(),
            last_used_at: k.last_used_at,
            rotated_at: k.rotated_at,
            previous_expires_at: k.previous_key_hash.as_ref().and(k.previous_expires_at),
            created_by: k.created_by,
            cache: k.cache_settings().map(CacheDto::from),
        }
    }
}

/// A key just created or rotated: the only responses that contain the plaintext `key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyDto {
    /// The API key. Shown once: store it now.
    #[schema(example = "sk-sy-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg")]
    pub key: String,
    #[serde(flatten)]
    pub details: KeyDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyDto>,
}

/// The governance fields as stored, validated.
#[derive(Debug, Default, Clone, PartialEq)]
struct Scopes {
    rpm_limit: Option<i64>,
    tpm_limit: Option<i64>,
    endpoints: Option<serde_json::Value>,
    allowed_cidrs: Option<serde_json::Value>,
    max_tokens_per_request: Option<i64>,
    metadata: Option<serde_json::Value>,
}

fn bounded(field: &str, v: Option<u64>, max: u64) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(0) => Err(ApiError::invalid(
            field,
            "must be at least 1; send null for no limit",
        )),
        Some(n) if n > max => Err(ApiError::invalid(
            field,
            format_args!("must be at most {max}"),
        )),
        Some(n) => Ok(i64::try_from(n).ok()),
    }
}

fn endpoints_json(v: Option<&[KeyEndpoint]>) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(list) = v else { return Ok(None) };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "endpoints",
            "must list at least one of chat, messages, embeddings; send null for all",
        ));
    }
    let mut out: Vec<KeyEndpoint> = Vec::with_capacity(list.len());
    for e in list {
        if !out.contains(e) {
            out.push(*e);
        }
    }
    Ok(Some(serde_json::json!(out)))
}

/// Parses `allowed_cidrs`: CIDRs (`10.0.0.0/8`, host bits cleared) or single addresses
/// (`/32`, `/128`), duplicates dropped.
fn cidrs_json(v: Option<&[String]>) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(list) = v else { return Ok(None) };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "allowed_cidrs",
            "must list at least one address or network; send null to allow any",
        ));
    }
    if list.len() > MAX_CIDRS {
        return Err(ApiError::invalid(
            "allowed_cidrs",
            format_args!("must list at most {MAX_CIDRS} entries"),
        ));
    }
    let mut out: Vec<ipnet::IpNet> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let s = raw.trim();
        let net = s
            .parse::<ipnet::IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                ApiError::invalid(
                    &format!("allowed_cidrs[{i}]"),
                    "must be an IP address or CIDR such as 203.0.113.0/24 or 2001:db8::/32",
                )
            })?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(Some(serde_json::json!(
        out.iter().map(ToString::to_string).collect::<Vec<_>>()
    )))
}

fn metadata_json(
    v: Option<&BTreeMap<String, String>>,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(map) = v else { return Ok(None) };
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(ApiError::invalid(
            "metadata",
            format_args!("must have at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (k, value) in map {
        let key_ok = !k.is_empty()
            && k.chars().count() <= MAX_METADATA_KEY_LEN
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !key_ok {
            return Err(ApiError::invalid(
                "metadata",
                format_args!(
                    "keys must be 1 to {MAX_METADATA_KEY_LEN} characters of letters, digits, _, . and - (got {:?})",
                    validate::preview(k, 16)
                ),
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                &format!("metadata.{k}"),
                format_args!(
                    "must be at most {MAX_METADATA_VALUE_LEN} characters without control characters"
                ),
            ));
        }
    }
    Ok((!map.is_empty()).then(|| serde_json::json!(map)))
}

fn expiry(s: &str, at: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
    let t = validate::timestamp("expires_at", s)?;
    if t <= at {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    Ok(t)
}

/// The keys `auth` may see (see the module docs): every key of the organization, or for the
/// `member` role, their teams' keys and the keys they created.
pub(crate) async fn visible<C: ConnectionTrait>(
    conn: &C,
    auth: &AuthUser,
) -> Result<Select<api_key::Entity>, ApiError> {
    let all = resource::scoped::<api_key::Entity>(auth.tenant_id);
    if auth.role != Role::Member {
        return Ok(all);
    }
    let teams = teams_of(conn, auth.tenant_id, auth.user_id).await?;
    Ok(all.filter(
        Condition::any()
            .add(api_key::Column::TeamId.is_in(teams))
            .add(api_key::Column::CreatedBy.eq(auth.user_id)),
    ))
}

async fn find_visible<C: ConnectionTrait>(
    conn: &C,
    auth: &AuthUser,
    id: Uuid,
) -> Result<api_key::Model, ApiError> {
    visible(conn, auth)
        .await?
        .filter(api_key::Column::Id.eq(id))
        .one(conn)
        .await?
        .ok_or(ApiError::NotFound(<api_key::Entity as TenantScoped>::NOUN))
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
        (status = 403, description = "Viewers cannot create keys; members only for their own teams", body = crate::error::ErrorBody),
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
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|s| expiry(s, created_at))
        .transpose()?;
    let scopes = Scopes {
        rpm_limit: bounded("rpm_limit", req.rpm_limit, MAX_U32_FIELD)?,
        tpm_limit: bounded("tpm_limit", req.tpm_limit, MAX_TPM)?,
        endpoints: endpoints_json(req.endpoints.as_deref())?,
        allowed_cidrs: cidrs_json(req.allowed_cidrs.as_deref())?,
        max_tokens_per_request: bounded(
            "max_tokens_per_request",
            req.max_tokens_per_request,
            MAX_U32_FIELD,
        )?,
        metadata: metadata_json(req.metadata.as_ref())?,
    };
    let cache = cache::stored(req.cache.as_ref())?;

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
        rpm_limit: scopes.rpm_limit,
        tpm_limit: scopes.tpm_limit,
        endpoints: scopes.endpoints,
        allowed_cidrs: scopes.allowed_cidrs,
        max_tokens_per_request: scopes.max_tokens_per_request,
        metadata: scopes.metadata,
        last_used_at: None,
        rotated_at: None,
        previous_key_hash: None,
        previous_expires_at: None,
        cache,
    };
    let mut change = Change::begin(&state, &auth).await?;
    match req.team_id {
        Some(team_id) => {
            change.find::<team::Entity>(team_id).await?;
            if auth.role == Role::Member
                && !teams_of(change.tx(), auth.tenant_id, auth.user_id)
                    .await?
                    .contains(&team_id)
            {
                return Err(ApiError::Forbidden(
                    "members create keys only for teams they belong to",
                ));
            }
        }
        None if auth.role == Role::Member => {
            return Err(ApiError::invalid(
                "team_id",
                "is required for members: one of your teams",
            ));
        }
        None => {}
    }
    api_key::Entity::insert(api_key::ActiveModel::from(row.clone()))
        .exec_without_returning(change.tx())
        .await?;
    change.publish_key(row.id).await?;
    let details = KeyDto::from(&row);
    change
        .audit::<api_key::Entity>(AuditAction::Create, &row.id)
        .after(&details);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedKeyDto { key, details })))
}

/// `GET /keys` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    /// Only the keys of this team.
    pub team_id: Option<Uuid>,
}

/// List API keys, newest first, revoked ones included (members: their teams' keys and their
/// own); `team_id` narrows to one team's keys.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    params(KeyListQuery),
    responses(
        (status = 200, body = KeyList),
        (status = 400, description = "Invalid filter", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<KeyListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let mut select = visible(&state.db, &auth).await?;
    if let Some(team_id) = q.team_id {
        select = select.filter(api_key::Column::TeamId.eq(team_id));
    }
    let rows = api_key::Entity::ordered(select).all(&state.db).await?;
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
    let row = find_visible(&state.db, &auth, id).await?;
    Ok(Json(KeyDto::from(&row)))
}

/// Change a key: name, models, expiry, limits, scopes, metadata, response cache.
///
/// Fields left out stay as they are; `null` clears one (no limit, every endpoint, any client
/// address, no tags, no expiry, no cache setting). The new record is published to the data plane before the call
/// returns.
#[utoipa::path(
    patch,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    request_body = UpdateKeyRequest,
    responses(
        (status = 200, body = KeyDto),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, description = "Viewers cannot change keys", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn update_key(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyDto>, ApiError> {
    auth.require_key_writer()?;
    let at = now();
    let name = req
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    let models = req
        .models
        .map(|m| m.map(|m| allowed_models(&m)).transpose())
        .transpose()?;
    let expires_at = req
        .expires_at
        .map(|e| e.as_deref().map(|s| expiry(s, at)).transpose())
        .transpose()?;
    let rpm = req
        .rpm_limit
        .map(|v| bounded("rpm_limit", v, MAX_U32_FIELD))
        .transpose()?;
    let tpm = req
        .tpm_limit
        .map(|v| bounded("tpm_limit", v, MAX_TPM))
        .transpose()?;
    let endpoints = req
        .endpoints
        .map(|v| endpoints_json(v.as_deref()))
        .transpose()?;
    let cidrs = req
        .allowed_cidrs
        .map(|v| cidrs_json(v.as_deref()))
        .transpose()?;
    let max_tokens = req
        .max_tokens_per_request
        .map(|v| bounded("max_tokens_per_request", v, MAX_U32_FIELD))
        .transpose()?;
    let metadata = req
        .metadata
        .map(|v| metadata_json(v.as_ref()))
        .transpose()?;
    let cache = req.cache.map(|v| cache::stored(v.as_ref())).transpose()?;

    let mut change = Change::begin(&state, &auth).await?;
    let before = find_visible(change.tx(), &auth, id).await?;
    let mut row = before.clone();
    if let Some(v) = name {
        row.name = v;
    }
    if let Some(v) = models {
        row.allowed_models = v.map(|m| serde_json::json!(m));
    }
    if let Some(v) = expires_at {
        row.expires_at = v;
    }
    if let Some(v) = rpm {
        row.rpm_limit = v;
    }
    if let Some(v) = tpm {
        row.tpm_limit = v;
    }
    if let Some(v) = endpoints {
        row.endpoints = v;
    }
    if let Some(v) = cidrs {
        row.allowed_cidrs = v;
    }
    if let Some(v) = max_tokens {
        row.max_tokens_per_request = v;
    }
    if let Some(v) = metadata {
        row.metadata = v;
    }
    if let Some(v) = cache {
        row.cache = v;
    }
    if row != before {
        row.version = before.version + 1;
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Name, Expr::value(row.name.clone()))
            .col_expr(
                api_key::Column::AllowedModels,
                Expr::value(row.allowed_models.clone()),
            )
            .col_expr(api_key::Column::ExpiresAt, Expr::value(row.expires_at))
            .col_expr(api_key::Column::RpmLimit, Expr::value(row.rpm_limit))
            .col_expr(api_key::Column::TpmLimit, Expr::value(row.tpm_limit))
            .col_expr(
                api_key::Column::Endpoints,
                Expr::value(row.endpoints.clone()),
            )
            .col_expr(
                api_key::Column::AllowedCidrs,
                Expr::value(row.allowed_cidrs.clone()),
            )
            .col_expr(
                api_key::Column::MaxTokensPerRequest,
                Expr::value(row.max_tokens_per_request),
            )
            .col_expr(api_key::Column::Metadata, Expr::value(row.metadata.clone()))
            .col_expr(api_key::Column::Cache, Expr::value(row.cache.clone()))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::Id.eq(id))
            .exec(change.tx())
            .await?;
        change.publish_key(id).await?;
        change
            .audit::<api_key::Entity>(AuditAction::Update, &id)
            .before(&KeyDto::from(&before))
            .after(&KeyDto::from(&row));
    }
    change.commit().await?;
    Ok(Json(KeyDto::from(&row)))
}

/// Rotate a key: a new secret for the same key (shown once).
///
/// The old secret keeps working for `grace_seconds` (default 86400; 0 refuses it at once; never
/// past the key's own expiry). Rotating again during a grace period ends the older secret at
/// once. Published to the data plane before the call returns.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    request_body = RotateKeyRequest,
    responses(
        (status = 200, description = "The key with its new secret", body = CreatedKeyDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "Viewers cannot rotate keys", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The key is revoked, or was rotated concurrently", body = crate::error::ErrorBody),
    )
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RotateKeyRequest>,
) -> Result<Json<CreatedKeyDto>, ApiError> {
    auth.require_key_writer()?;
    let grace = req.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "grace_seconds",
            format_args!("must be between 0 and {MAX_GRACE_SECONDS} (7 days)"),
        ));
    }
    let at = now();
    let mut change = Change::begin(&state, &auth).await?;
    let before = find_visible(change.tx(), &auth, id).await?;
    if before.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "a revoked key cannot be rotated".to_owned(),
        ));
    }
    let key = shared::keys::generate_api_key();
    let mut row = before.clone();
    row.key_hash = shared::keys::hash_api_key(&key);
    row.display_prefix = shared::keys::display_prefix(&key);
    row.rotated_at = Some(at);
    row.version = before.version + 1;
    // i64 seconds: the grace is at most 7 days.
    let grace_end = at + time::Duration::seconds(i64::try_from(grace).unwrap_or(0));
    let mut retired = Vec::new();
    if grace == 0 {
        row.previous_key_hash = None;
        row.previous_expires_at = None;
        retired.push(before.key_hash.clone());
    } else {
        row.previous_key_hash = Some(before.key_hash.clone());
        row.previous_expires_at = Some(match before.expires_at {
            Some(e) if e < grace_end => e,
            _ => grace_end,
        });
    }
    // The secret before this one, if its grace was still running: it ends now.
    if let Some(older) = before.previous_key_hash.clone() {
        retired.push(older);
    }
    let updated = api_key::Entity::update_many()
        .col_expr(api_key::Column::KeyHash, Expr::value(row.key_hash.clone()))
        .col_expr(
            api_key::Column::DisplayPrefix,
            Expr::value(row.display_prefix.clone()),
        )
        .col_expr(api_key::Column::RotatedAt, Expr::value(row.rotated_at))
        .col_expr(
            api_key::Column::PreviousKeyHash,
            Expr::value(row.previous_key_hash.clone()),
        )
        .col_expr(
            api_key::Column::PreviousExpiresAt,
            Expr::value(row.previous_expires_at),
        )
        .col_expr(
            api_key::Column::Version,
            Expr::col(api_key::Column::Version).add(1),
        )
        .filter(api_key::Column::Id.eq(id))
        // Of two concurrent rotations, one wins; the other is told to retry.
        .filter(api_key::Column::KeyHash.eq(before.key_hash.as_str()))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(change.tx())
        .await?
        .rows_affected;
    if updated != 1 {
        return Err(ApiError::Conflict(
            "the key was changed concurrently; try again".to_owned(),
        ));
    }
    change.publish_key(id).await?;
    for hash in retired {
        change.publish_retired_key(id, &hash).await?;
    }
    let details = KeyDto::from(&row);
    change
        .audit::<api_key::Entity>(AuditAction::Rotate, &id)
        .before(&KeyDto::from(&before))
        .after(&details);
    change.commit().await?;
    Ok(Json(CreatedKeyDto { key, details }))
}

/// Revoke an API key (both its secrets, during a rotation grace).
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
    let row = find_visible(change.tx(), &auth, id).await?;
    if row.revoked_at.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let at = now();
    let updated = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(at))
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
        let mut after = row.clone();
        after.revoked_at = Some(at);
        change
            .audit::<api_key::Entity>(AuditAction::Revoke, &id)
            .before(&KeyDto::from(&row))
            .after(&KeyDto::from(&after));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cidrs_are_parsed_normalized_and_bounded() {
        let v = cidrs_json(Some(&[
            "10.1.2.3/8".to_owned(),
            " 203.0.113.7 ".to_owned(),
            "2001:db8::1".to_owned(),
            "10.0.0.0/8".to_owned(),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!(["10.0.0.0/8", "203.0.113.7/32", "2001:db8::1/128"])
        );
        assert!(cidrs_json(Some(&["nope".to_owned()])).is_err());
        assert!(cidrs_json(Some(&[])).is_err());
        let many: Vec<String> = (0..=MAX_CIDRS)
            .map(|i| format!("10.0.{}.1", i % 250))
            .collect();
        assert!(cidrs_json(Some(&many)).is_err());
    }

    #[test]
    fn metadata_is_bounded() {
        let ok: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        assert!(metadata_json(Some(&ok)).unwrap().is_some());
        assert_eq!(metadata_json(Some(&BTreeMap::new())).unwrap(), None);
        let bad_key: BTreeMap<String, String> = [("a b".to_owned(), "x".to_owned())].into();
        assert!(metadata_json(Some(&bad_key)).is_err());
        let long: BTreeMap<String, String> = [("k".to_owned(), "x".repeat(257))].into();
        assert!(metadata_json(Some(&long)).is_err());
        let many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(metadata_json(Some(&many)).is_err());
    }

    #[test]
    fn limits_are_positive_and_bounded() {
        assert_eq!(
            bounded("rpm_limit", Some(5), MAX_U32_FIELD).unwrap(),
            Some(5)
        );
        assert!(bounded("rpm_limit", Some(0), MAX_U32_FIELD).is_err());
        assert!(bounded("rpm_limit", Some(MAX_U32_FIELD + 1), MAX_U32_FIELD).is_err());
    }
}
