//! Teams: `POST /teams`, `GET /teams`, `GET /teams/{id}`, `PATCH /teams/{id}`,
//! `DELETE /teams/{id}`. A team groups API keys (usage events carry the key's team). Owners and
//! admins manage teams; everyone reads them.
//!
//! A team may carry a region policy (`allowed_regions`, see `validate::region_list`): requests
//! made with the team's keys are only served by deployments in those regions, on top of the
//! organization's policy and the route's (the gateway intersects them). It is published in the
//! organization's config (`TenantConfig.team_regions`) before the call returns. Deleting a team
//! detaches its keys, which then no longer carry the team's policy.
//!
//! A team may carry rate limits (`rpm_limit`, `tpm_limit`): requests and tokens per minute over
//! all the team's keys together, on top of each key's and the organization's limits. They are
//! published in `TenantConfig.team_limits` (only teams with a limit) before the call returns;
//! `null` removes one. Members of a team are managed in `super::team_members`.
//!
//! A team may carry a response-cache setting (`cache`, see `super::cache`) for requests made
//! with its keys (a key's own setting wins over it, the team's over the route's). It is
//! published in `TenantConfig.team_cache` (only teams with a setting) before the call returns;
//! `null` removes it. Deleting a team deletes its budgets and its guardrail.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cache::{self, CacheDto, CacheRequest};
use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{api_key, team};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/teams", get(list_teams).post(create_team))
        .route(
            "/teams/{id}",
            get(get_team).patch(update_team).delete(delete_team),
        )
}

impl TenantScoped for team::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "team";
    const KIND: &'static str = "team";
    fn tenant_column() -> Self::Column {
        team::Column::TenantId
    }
    fn id_column() -> Self::Column {
        team::Column::Id
    }
    /// By name (unique within an organization).
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(team::Column::Name)
            .order_by_asc(team::Column::Id)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    /// Unique within the organization.
    #[schema(example = "search")]
    pub name: String,
    /// Regions (or region prefixes such as `eu`) the team's requests may be served in; omit
    /// or null for no team policy.
    #[serde(default)]
    #[schema(example = json!(["eu"]))]
    pub allowed_regions: Option<Vec<String>>,
    /// Requests per minute over all the team's keys; omit for none.
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute over all the team's keys; omit for none.
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    /// The team's response-cache setting (its keys' requests); omit for none.
    #[serde(default)]
    pub cache: Option<CacheRequest>,
}

/// Changes to a team; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    /// Unique within the organization.
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false, example = "search-eu")]
    pub name: Option<String>,
    /// Regions (or region prefixes) the team's requests may be served in; null removes the
    /// team's policy.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false, example = json!(["eu"]))]
    pub allowed_regions: Option<Option<Vec<String>>>,
    /// Requests per minute over all the team's keys; null removes the limit.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub rpm_limit: Option<Option<u64>>,
    /// Tokens per minute over all the team's keys; null removes the limit.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub tpm_limit: Option<Option<u64>>,
    /// Replaces the team's response-cache setting; null removes it.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<CacheRequest>, required = false)]
    pub cache: Option<Option<CacheRequest>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamDto {
    pub id: Uuid,
    pub name: String,
    /// The team's region policy; null: none.
    #[schema(example = json!(["eu"]))]
    pub allowed_regions: Option<Vec<String>>,
    /// Requests per minute over all the team's keys; null: none.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute over all the team's keys; null: none.
    pub tpm_limit: Option<u64>,
    /// The team's response-cache setting; null: none.
    pub cache: Option<CacheDto>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<team::Model> for TeamDto {
    fn from(t: team::Model) -> Self {
        Self {
            allowed_regions: t.region_policy(),
            rpm_limit: t.rpm_limit.and_then(|n| u64::try_from(n).ok()),
            tpm_limit: t.tpm_limit.and_then(|n| u64::try_from(n).ok()),
            cache: t.cache_settings().map(CacheDto::from),
            id: t.id,
            name: t.name,
            created_at: t.created_at,
        }
    }
}

/// A validated rpm limit (1 to 2^32 - 1) as stored.
pub(crate) fn rpm_value(field: &str, v: Option<u64>) -> Result<Option<i64>, ApiError> {
    limit_value(field, v, u64::from(u32::MAX))
}

/// A validated tpm limit (1 to 10^12) as stored.
pub(crate) fn tpm_value(field: &str, v: Option<u64>) -> Result<Option<i64>, ApiError> {
    limit_value(field, v, 1_000_000_000_000)
}

fn limit_value(field: &str, v: Option<u64>, max: u64) -> Result<Option<i64>, ApiError> {
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

/// A validated region policy as stored.
fn regions_json(
    field: &str,
    regions: Option<&[String]>,
) -> Result<Option<serde_json::Value>, ApiError> {
    regions
        .map(|r| validate::region_list(field, r).map(|r| serde_json::json!(r)))
        .transpose()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TeamList {
    pub data: Vec<TeamDto>,
}

/// Create a team.
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    security(("bearer" = [])),
    request_body = CreateTeamRequest,
    responses(
        (status = 201, body = TeamDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "A team with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn create_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateTeamRequest>,
) -> Result<(StatusCode, Json<TeamDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let allowed_regions = regions_json("allowed_regions", req.allowed_regions.as_deref())?;
    let row = team::Model {
        id: Uuid::new_v4(),
        tenant_id: auth.tenant_id,
        name,
        created_at: now(),
        allowed_regions,
        rpm_limit: rpm_value("rpm_limit", req.rpm_limit)?,
        tpm_limit: tpm_value("tpm_limit", req.tpm_limit)?,
        cache: cache::stored(req.cache.as_ref())?,
    };
    let mut change = Change::begin(&state, &auth).await?;
    team::Entity::insert(team::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        created_at: Set(row.created_at),
        allowed_regions: Set(row.allowed_regions.clone()),
        rpm_limit: Set(row.rpm_limit),
        tpm_limit: Set(row.tpm_limit),
        cache: Set(row.cache.clone()),
    })
    .exec_without_returning(change.tx())
    .await
    .on_unique_violation("a team with this name already exists")?;
    if row.allowed_regions.is_some() || !row.rate_limits().is_empty() || row.cache.is_some() {
        change.publish_tenant().await?;
    }
    let dto = TeamDto::from(row);
    change
        .audit::<team::Entity>(AuditAction::Create, &dto.id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// List teams.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    security(("bearer" = [])),
    responses((status = 200, body = TeamList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_teams(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<TeamList>, ApiError> {
    let rows = resource::list::<team::Entity, _>(&state.db, auth.tenant_id).await?;
    Ok(Json(TeamList {
        data: rows.into_iter().map(TeamDto::from).collect(),
    }))
}

/// Get one team.
#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses((status = 200, body = TeamDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TeamDto>, ApiError> {
    let row = resource::find::<team::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(TeamDto::from(row)))
}

/// Rename a team, or set its region policy, rate limits or response-cache setting.
///
/// A changed region policy, limit or cache setting is published to the data plane before the call returns.
#[utoipa::path(
    patch,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    request_body = UpdateTeamRequest,
    responses(
        (status = 200, body = TeamDto),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "A team with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn update_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateTeamRequest>,
) -> Result<Json<TeamDto>, ApiError> {
    auth.require_manage()?;
    let name = req
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    let regions = req
        .allowed_regions
        .as_ref()
        .map(|r| regions_json("allowed_regions", r.as_deref()))
        .transpose()?;
    let rpm = req
        .rpm_limit
        .map(|v| rpm_value("rpm_limit", v))
        .transpose()?;
    let tpm = req
        .tpm_limit
        .map(|v| tpm_value("tpm_limit", v))
        .transpose()?;
    let cache = req.cache.map(|v| cache::stored(v.as_ref())).transpose()?;
    let mut change = Change::begin(&state, &auth).await?;
    let mut row = change.find::<team::Entity>(id).await?;
    let before = row.clone();
    let mut update = team::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(name) = name {
        row.name = name.clone();
        update.name = Set(name);
    }
    if let Some(regions) = regions {
        if regions != row.allowed_regions {
            change.publish_tenant().await?;
        }
        row.allowed_regions = regions.clone();
        update.allowed_regions = Set(regions);
    }
    if let Some(v) = rpm {
        row.rpm_limit = v;
        update.rpm_limit = Set(v);
    }
    if let Some(v) = tpm {
        row.tpm_limit = v;
        update.tpm_limit = Set(v);
    }
    if let Some(v) = cache {
        row.cache = v.clone();
        update.cache = Set(v);
    }
    if row.rate_limits() != before.rate_limits() || row.cache != before.cache {
        change.publish_tenant().await?;
    }
    if update.is_changed() {
        team::Entity::update(update)
            .exec(change.tx())
            .await
            .on_unique_violation("a team with this name already exists")?;
        change
            .audit::<team::Entity>(AuditAction::Update, &id)
            .before(&TeamDto::from(before))
            .after(&TeamDto::from(row.clone()));
    }
    change.commit().await?;
    Ok(Json(TeamDto::from(row)))
}

/// Delete a team. Its keys keep working, without a team (and without its region policy, cache
/// setting, budgets and guardrail, which go with it).
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_team(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<team::Entity>(id).await?;
    if row.allowed_regions.is_some() || !row.rate_limits().is_empty() || row.cache.is_some() {
        // The team's entries leave `TenantConfig.team_regions` / `team_limits` / `team_cache`.
        change.publish_tenant().await?;
    }
    // Detach the team's keys explicitly (rather than leaving it to ON DELETE SET NULL) so each
    // key's version is bumped and its new record published.
    let keys: Vec<Uuid> = resource::scoped::<api_key::Entity>(auth.tenant_id)
        .filter(api_key::Column::TeamId.eq(id))
        .all(change.tx())
        .await?
        .into_iter()
        .map(|k| k.id)
        .collect();
    if !keys.is_empty() {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::TeamId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                api_key::Column::Version,
                Expr::col(api_key::Column::Version).add(1),
            )
            .filter(api_key::Column::Id.is_in(keys.clone()))
            .exec(change.tx())
            .await?;
        for key in keys {
            change.publish_key(key).await?;
        }
    }
    // The team's budgets go with it (see `budgets`).
    super::budgets::delete_for_scope(
        &mut change,
        auth.tenant_id,
        shared::governance::BudgetScope::Team,
        id,
    )
    .await?;
    // And its guardrail (see `guardrails`).
    super::guardrails::delete_for_scope(
        &mut change,
        auth.tenant_id,
        shared::guardrails::GuardrailScope::Team,
        id,
    )
    .await?;
    change
        .delete::<team::Entity>(id)
        .await?
        .before(&TeamDto::from(row));
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
