//! Budgets: `POST /budgets`, `GET /budgets`, `GET /budgets/{id}`, `PATCH /budgets/{id}`,
//! `DELETE /budgets/{id}`. A budget caps what an organization, a team or one key spends per
//! period; the data plane enforces it (every budget is published in `TenantConfig.budgets`
//! before the call returns) and the alert worker (`crate::alerts`) fires its thresholds.
//!
//! - `scope` (`tenant`, `team`, `key`) and `scope_id`: the organization itself (the default
//!   `scope_id` for `tenant`), one of its teams or one of its keys; anything else is a 404, the
//!   same as an id of another organization. Scope cannot change (create another budget).
//! - `limit_usd`: a decimal string or JSON number, > 0, at most 6 decimal places and
//!   1 000 000, stored as integer µ$ (parsed from its text, never through a binary float).
//! - `period`: `daily`, `weekly`, `monthly` or `lifetime`; `timezone` an IANA name (default
//!   `UTC`) the period boundaries are computed in (`shared::governance`).
//! - `hard` (default true): a hard budget refuses requests; a soft one only alerts.
//! - `alert_thresholds`: percentages of the limit from 1 to 1000 (default `[50, 80, 100]`),
//!   at most [`MAX_THRESHOLDS`], stored sorted without duplicates; `[]` means no alerts.
//!
//! Reads show the current period: `period_start`, `period_end` (null for `lifetime`),
//! `spent_usd` (the larger of the ledger's spend and the usage recorded in the database for
//! the window, see `crate::alerts::window_spend`) and `reserved_usd` (held by in-flight
//! requests). Owners and admins manage budgets; everyone reads them.
//!
//! Reads also carry `forecast_usd`, the spend expected by the end of the current period, and
//! `forecast_method` ([`FORECAST_METHOD`], see [`forecast_micros`]): the window's spend so far
//! extrapolated linearly at its average rate (spent ÷ elapsed × period length, with at least
//! one hour counted as elapsed so a period's first minutes do not explode the estimate); null
//! for `lifetime` budgets, which have no end.
//!
//! Deleting a team deletes its budgets in the same change ([`delete_for_scope`]); keys are
//! revoked, not deleted, so a revoked key's budget stays (it can no longer be spent against).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use shared::governance::{BudgetPeriod, BudgetScope, is_valid_timezone};
use shared::money::{MoneyError, format_usd, parse_usd_json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::alerts::{self, WindowSpend};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{api_key, budget, team};
use crate::error::ApiError;
use crate::state::AppState;

/// How `forecast_usd` is computed (see [`forecast_micros`]).
pub const FORECAST_METHOD: &str = "linear_extrapolation";
/// Least elapsed time a forecast divides by.
const MIN_FORECAST_ELAPSED_SECS: i64 = 3600;

/// The spend expected at the end of the window `[start, end)` if spending continues at the
/// window's average rate so far: `spent × (end − start) / elapsed`, where elapsed is
/// `now − start` counted as at least one hour (and at most the whole window), rounded half up
/// to the µ$. `None` without an end (lifetime budgets). Never below `spent`.
pub fn forecast_micros(
    spent: i64,
    start: OffsetDateTime,
    end: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<i64> {
    let end = end?;
    let total = (end - start).whole_seconds().max(1);
    let elapsed = (now - start)
        .whole_seconds()
        .max(MIN_FORECAST_ELAPSED_SECS)
        .min(total);
    let scaled = i128::from(spent) * i128::from(total);
    let elapsed = i128::from(elapsed);
    let forecast = (2 * scaled + elapsed).div_euclid(2 * elapsed);
    Some(i64::try_from(forecast).unwrap_or(i64::MAX).max(spent))
}

/// Most alert thresholds on one budget.
pub const MAX_THRESHOLDS: usize = 10;
/// Largest threshold, in percent of the limit.
pub const MAX_THRESHOLD_PERCENT: u32 = 1000;
/// Thresholds of a budget created without `alert_thresholds`.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];
/// Longest accepted time zone name (real IANA names are under 40 characters).
const MAX_TIMEZONE_LEN: usize = 64;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/budgets", get(list_budgets).post(create_budget))
        .route(
            "/budgets/{id}",
            get(get_budget).patch(update_budget).delete(delete_budget),
        )
}

impl TenantScoped for budget::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "budget";
    const KIND: &'static str = "budget";
    fn tenant_column() -> Self::Column {
        budget::Column::TenantId
    }
    fn id_column() -> Self::Column {
        budget::Column::Id
    }
    /// Oldest first.
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(budget::Column::CreatedAt)
            .order_by_asc(budget::Column::Id)
    }
}

/// OpenAPI schema of an amount in USD: a decimal number or a string holding one.
fn usd_schema() -> utoipa::openapi::OneOfBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]*(\.[0-9]*)?$")),
        )
        .description(Some(
            "USD, more than 0, at most 6 decimal places and 1000000, e.g. 25 or \"12.50\"",
        ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBudgetRequest {
    /// `tenant` (the whole organization), `team` or `key`.
    #[schema(example = "team")]
    pub scope: String,
    /// The team or key id; for `tenant`, the organization's id (optional).
    #[serde(default)]
    pub scope_id: Option<Uuid>,
    /// The cap in USD.
    #[schema(schema_with = usd_schema)]
    pub limit_usd: serde_json::Value,
    /// `daily`, `weekly`, `monthly` or `lifetime`.
    #[schema(example = "monthly")]
    pub period: String,
    /// IANA time zone the period rolls over in (local midnight, Monday, the 1st); default UTC.
    #[serde(default)]
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// Refuse requests that could exceed the cap (default true); false only alerts.
    #[serde(default)]
    pub hard: Option<bool>,
    /// Percentages of the cap (1 to 1000) at which an alert fires; default [50, 80, 100].
    #[serde(default)]
    #[schema(example = json!([50, 80, 100]))]
    pub alert_thresholds: Option<Vec<u32>>,
}

/// Changes to a budget; fields left out stay as they are. Scope cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBudgetRequest {
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(schema_with = usd_schema, required = false)]
    pub limit_usd: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false, example = "weekly")]
    pub period: Option<String>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false, example = "UTC")]
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = bool, required = false)]
    pub hard: Option<bool>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = Vec<u32>, required = false, example = json!([80, 100]))]
    pub alert_thresholds: Option<Vec<u32>>,
}

/// A budget and its current period.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetDto {
    pub id: Uuid,
    #[schema(example = "team")]
    pub scope: String,
    pub scope_id: Uuid,
    /// The cap, as a decimal string.
    #[schema(example = "25")]
    pub limit_usd: String,
    /// The cap in µ$.
    pub limit_micros: i64,
    #[schema(example = "monthly")]
    pub period: String,
    #[schema(example = "UTC")]
    pub timezone: String,
    pub hard: bool,
    #[schema(example = json!([50, 80, 100]))]
    pub alert_thresholds: Vec<u32>,
    /// Spent in the current period (decimal string).
    #[schema(example = "3.25")]
    pub spent_usd: String,
    /// Held by requests in flight in the current period (decimal string).
    #[schema(example = "0.02")]
    pub reserved_usd: String,
    /// Spend expected by `period_end` at the period's average rate so far (decimal string);
    /// null for `lifetime`. See `forecast_method`.
    #[schema(example = "9.75")]
    pub forecast_usd: Option<String>,
    /// How `forecast_usd` is computed: `linear_extrapolation` (spent ÷ elapsed × period
    /// length, elapsed counted as at least one hour).
    #[schema(example = "linear_extrapolation")]
    pub forecast_method: String,
    /// Start of the current period.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// End of the current period (exclusive); null for `lifetime`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_end: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl BudgetDto {
    fn new(b: budget::Model, spend: WindowSpend, now: OffsetDateTime) -> Self {
        let forecast = forecast_micros(
            spend.spent_micros,
            spend.window.start,
            spend.window.end,
            now,
        );
        Self {
            forecast_usd: forecast.map(format_usd),
            forecast_method: FORECAST_METHOD.to_owned(),
            alert_thresholds: b.thresholds(),
            id: b.id,
            scope: b.scope,
            scope_id: b.scope_id,
            limit_usd: format_usd(b.limit_micros),
            limit_micros: b.limit_micros,
            period: b.period,
            timezone: b.timezone,
            hard: b.hard,
            spent_usd: format_usd(spend.spent_micros),
            reserved_usd: format_usd(spend.reserved_micros),
            period_start: spend.window.start,
            period_end: spend.window.end,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    pub data: Vec<BudgetDto>,
}

/// `limit_usd`: > 0, at most 6 decimals and 1 000 000 USD, in µ$.
fn limit(value: &serde_json::Value) -> Result<i64, ApiError> {
    let field = "limit_usd";
    match parse_usd_json(value) {
        Ok(0) => Err(ApiError::invalid(field, "must be more than 0")),
        Ok(micros) => Ok(micros),
        Err(MoneyError::NotADecimal) => Err(ApiError::invalid(
            field,
            "must be a positive decimal number such as 25 or \"12.50\"",
        )),
        Err(e) => Err(ApiError::invalid(field, e)),
    }
}

fn period(value: &str) -> Result<BudgetPeriod, ApiError> {
    BudgetPeriod::parse(value).ok_or_else(|| {
        ApiError::invalid("period", "must be one of daily, weekly, monthly, lifetime")
    })
}

fn timezone(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.len() > MAX_TIMEZONE_LEN || !is_valid_timezone(v) {
        return Err(ApiError::invalid(
            "timezone",
            format_args!(
                "unknown time zone {:?} (expected an IANA name such as \"Europe/Berlin\" or \"UTC\")",
                validate::preview(v, 64)
            ),
        ));
    }
    Ok(v.to_owned())
}

/// Thresholds sorted, without duplicates, each 1..=[`MAX_THRESHOLD_PERCENT`].
fn thresholds(values: &[u32]) -> Result<Vec<u32>, ApiError> {
    let field = "alert_thresholds";
    let mut out = values.to_vec();
    out.sort_unstable();
    out.dedup();
    if out.len() > MAX_THRESHOLDS {
        return Err(ApiError::invalid(
            field,
            format_args!("must list at most {MAX_THRESHOLDS} thresholds"),
        ));
    }
    if out.iter().any(|t| !(1..=MAX_THRESHOLD_PERCENT).contains(t)) {
        return Err(ApiError::invalid(
            field,
            format_args!("each threshold must be a percentage from 1 to {MAX_THRESHOLD_PERCENT}"),
        ));
    }
    Ok(out)
}

fn scope(value: &str) -> Result<BudgetScope, ApiError> {
    BudgetScope::parse(value)
        .ok_or_else(|| ApiError::invalid("scope", "must be one of tenant, team, key"))
}

/// The scope's object id, checked to belong to the caller's organization (404 otherwise).
async fn scope_id<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    scope: BudgetScope,
    id: Option<Uuid>,
) -> Result<Uuid, ApiError> {
    match (scope, id) {
        (BudgetScope::Tenant, None) => Ok(tenant_id),
        (BudgetScope::Tenant, Some(id)) if id == tenant_id => Ok(id),
        (BudgetScope::Tenant, Some(_)) => Err(ApiError::NotFound("organization")),
        (BudgetScope::Team | BudgetScope::Key, None) => Err(ApiError::invalid(
            "scope_id",
            "is required for a team or key budget",
        )),
        (BudgetScope::Team, Some(id)) => {
            resource::find::<team::Entity, _>(conn, tenant_id, id).await?;
            Ok(id)
        }
        (BudgetScope::Key, Some(id)) => {
            resource::find::<api_key::Entity, _>(conn, tenant_id, id).await?;
            Ok(id)
        }
    }
}

/// The budget's DTO with its current period read now.
async fn dto(state: &AppState, b: budget::Model) -> Result<BudgetDto, ApiError> {
    let now = OffsetDateTime::now_utc();
    let spend = alerts::window_spend(state, &b, now).await?;
    Ok(BudgetDto::new(b, spend, now))
}

/// Deletes the budgets of `scope` object `scope_id` (a team being deleted) in `change`, and
/// republishes the organization's config when there were any.
pub(crate) async fn delete_for_scope(
    change: &mut Change<'_>,
    tenant_id: Uuid,
    scope: BudgetScope,
    scope_id: Uuid,
) -> Result<(), ApiError> {
    let ids: Vec<Uuid> = resource::scoped::<budget::Entity>(tenant_id)
        .filter(budget::Column::Scope.eq(scope.as_str()))
        .filter(budget::Column::ScopeId.eq(scope_id))
        .all(change.tx())
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    for id in ids {
        change.delete::<budget::Entity>(id).await?;
        change.publish_tenant().await?;
    }
    Ok(())
}

/// Create a budget.
///
/// It is published to the data plane (and enforced) before the call returns.
#[utoipa::path(
    post,
    path = "/api/v1/budgets",
    tag = "budgets",
    security(("bearer" = [])),
    request_body = CreateBudgetRequest,
    responses(
        (status = 201, body = BudgetDto),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
        (status = 404, description = "`scope_id` is not this organization, or not one of its teams or keys", body = crate::error::ErrorBody),
    )
)]
pub async fn create_budget(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateBudgetRequest>,
) -> Result<(StatusCode, Json<BudgetDto>), ApiError> {
    auth.require_manage()?;
    let scope = scope(&req.scope)?;
    let limit_micros = limit(&req.limit_usd)?;
    let period = period(&req.period)?;
    let timezone = timezone(req.timezone.as_deref().unwrap_or("UTC"))?;
    let thresholds = thresholds(
        req.alert_thresholds
            .as_deref()
            .unwrap_or(&DEFAULT_THRESHOLDS),
    )?;
    let mut change = Change::begin(&state, &auth).await?;
    let scope_id = scope_id(change.tx(), auth.tenant_id, scope, req.scope_id).await?;
    let at = now();
    let row = budget::Model {
        id: Uuid::now_v7(),
        tenant_id: auth.tenant_id,
        scope: scope.as_str().to_owned(),
        scope_id,
        limit_micros,
        period: period.as_str().to_owned(),
        timezone,
        hard: req.hard.unwrap_or(true),
        alert_thresholds: serde_json::json!(thresholds),
        created_at: at,
        updated_at: at,
    };
    budget::Entity::insert(budget::ActiveModel::from(row.clone()).reset_all())
        .exec_without_returning(change.tx())
        .await?;
    change.publish_tenant().await?;
    change
        .audit::<budget::Entity>(AuditAction::Create, &row.id)
        .after(&snapshot(&row));
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto(&state, row).await?)))
}

/// List budgets, oldest first, each with its current period.
#[utoipa::path(
    get,
    path = "/api/v1/budgets",
    tag = "budgets",
    security(("bearer" = [])),
    responses((status = 200, body = BudgetList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_budgets(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<BudgetList>, ApiError> {
    let rows = resource::list::<budget::Entity, _>(&state.db, auth.tenant_id).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(dto(&state, row).await?);
    }
    Ok(Json(BudgetList { data }))
}

/// Get one budget with its current period.
#[utoipa::path(
    get,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Budget id")),
    responses((status = 200, body = BudgetDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_budget(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<BudgetDto>, ApiError> {
    let row = resource::find::<budget::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(dto(&state, row).await?))
}

/// Change a budget's limit, period, time zone, hardness or thresholds.
///
/// The change is published to the data plane before the call returns.
#[utoipa::path(
    patch,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Budget id")),
    request_body = UpdateBudgetRequest,
    responses(
        (status = 200, body = BudgetDto),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn update_budget(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateBudgetRequest>,
) -> Result<Json<BudgetDto>, ApiError> {
    auth.require_manage()?;
    let limit_micros = req.limit_usd.as_ref().map(limit).transpose()?;
    let period = req.period.as_deref().map(period).transpose()?;
    let timezone = req.timezone.as_deref().map(timezone).transpose()?;
    let thresholds = req
        .alert_thresholds
        .as_deref()
        .map(thresholds)
        .transpose()?;
    let mut change = Change::begin(&state, &auth).await?;
    let mut row = change.find::<budget::Entity>(id).await?;
    let before = snapshot(&row);
    let mut update = budget::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(v) = limit_micros.filter(|v| *v != row.limit_micros) {
        row.limit_micros = v;
        update.limit_micros = Set(v);
    }
    if let Some(v) = period
        .map(|p| p.as_str().to_owned())
        .filter(|v| *v != row.period)
    {
        row.period = v.clone();
        update.period = Set(v);
    }
    if let Some(v) = timezone.filter(|v| *v != row.timezone) {
        row.timezone = v.clone();
        update.timezone = Set(v);
    }
    if let Some(v) = req.hard.filter(|v| *v != row.hard) {
        row.hard = v;
        update.hard = Set(v);
    }
    if let Some(v) = thresholds
        .map(|t| serde_json::json!(t))
        .filter(|v| *v != row.alert_thresholds)
    {
        row.alert_thresholds = v.clone();
        update.alert_thresholds = Set(v);
    }
    if update.is_changed() {
        row.updated_at = now();
        update.updated_at = Set(row.updated_at);
        budget::Entity::update(update).exec(change.tx()).await?;
        change.publish_tenant().await?;
        change
            .audit::<budget::Entity>(AuditAction::Update, &id)
            .before(&before)
            .after(&snapshot(&row));
    }
    change.commit().await?;
    Ok(Json(dto(&state, row).await?))
}

/// Delete a budget (and its alerts). Requests are no longer checked against it once the call
/// returns.
#[utoipa::path(
    delete,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Budget id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_budget(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<budget::Entity>(id).await?;
    change
        .delete::<budget::Entity>(id)
        .await?
        .before(&snapshot(&row));
    change.publish_tenant().await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A budget's settings as the audit log records them (no spend: that is not a change).
fn snapshot(row: &budget::Model) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "scope": row.scope,
        "scope_id": row.scope_id,
        "limit_usd": shared::money::format_usd(row.limit_micros),
        "period": row.period,
        "timezone": row.timezone,
        "hard": row.hard,
        "alert_thresholds": row.alert_thresholds,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn limits_parse_exactly_and_refuse_bad_forms() {
        assert_eq!(limit(&serde_json::json!("12.50")).ok(), Some(12_500_000));
        assert_eq!(limit(&serde_json::json!(0.1)).ok(), Some(100_000));
        assert_eq!(limit(&serde_json::json!(25)).ok(), Some(25_000_000));
        for bad in [
            serde_json::json!("1e3"),
            serde_json::json!("-1"),
            serde_json::json!(-1),
            serde_json::json!("0.0000001"),
            serde_json::json!("0"),
            serde_json::json!(0),
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!("1000001"),
        ] {
            assert!(limit(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forecasts_extrapolate_the_average_rate() {
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let end = Some(start + time::Duration::days(30));
        // 10 days in, $3 spent → $9 by the end.
        let now = start + time::Duration::days(10);
        assert_eq!(forecast_micros(3_000_000, start, end, now), Some(9_000_000));
        // A minute in: counted as an hour, so $0.01 → $7.20, not $432.
        let now = start + time::Duration::minutes(1);
        assert_eq!(forecast_micros(10_000, start, end, now), Some(7_200_000));
        // Past the end: what was spent.
        let now = start + time::Duration::days(40);
        assert_eq!(forecast_micros(5, start, end, now), Some(5));
        assert_eq!(forecast_micros(5, start, None, now), None);
    }

    #[test]
    fn thresholds_are_sorted_deduped_and_bounded() {
        assert_eq!(thresholds(&[100, 50, 50, 80]).ok(), Some(vec![50, 80, 100]));
        assert_eq!(thresholds(&[]).ok(), Some(vec![]));
        assert!(thresholds(&[0]).is_err());
        assert!(thresholds(&[1001]).is_err());
        assert!(thresholds(&(1..=11).collect::<Vec<_>>()).is_err());
    }
}
