//! Budget alerts and the webhook signing secret: `GET /alerts`,
//! `POST /organization/webhook-secret`.
//!
//! `GET /alerts` lists the organization's alerts (one per threshold a budget crossed in one
//! period, see `crate::alerts`), newest first, with their webhook delivery (null when no webhook
//! was configured when the alert fired). Pages: `limit` (1 to 200, default 50) and `before`
//! (the `next_before` of the previous page: an alert id; ids are UUIDv7, so id order is time
//! order). Owners and admins read alerts (they configure budgets and webhooks).
//!
//! `POST /organization/webhook-secret` generates a new signing secret (`whsec_…`), stores it
//! sealed with the master key, and returns it once; deliveries from then on are signed with it.
//! The webhook URL itself is set with `PATCH /organization` (`alert_webhook_url`), which also
//! generates the first secret.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use shared::money::format_usd;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::ApiQuery;
use super::resource::Change;
use crate::alerts;
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{alert_delivery, budget, budget_alert, tenant};
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(list_alerts))
        .route("/organization/webhook-secret", post(rotate_webhook_secret))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Alerts per page, 1 to 200 (default 50).
    pub limit: Option<u64>,
    /// `next_before` of the previous page.
    pub before: Option<Uuid>,
}

/// A webhook delivery of an alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// Sent as `x-switchyard-delivery`; the same on every attempt.
    pub id: Uuid,
    /// `pending`, `delivered` or `failed` (gave up).
    #[schema(example = "delivered")]
    pub status: String,
    pub attempts: i32,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

/// A threshold a budget crossed in one period.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDto {
    /// The event id (`id` of the webhook body).
    pub id: Uuid,
    pub budget_id: Uuid,
    /// The budget's scope and scope id (null when the budget is gone).
    pub scope: Option<String>,
    pub scope_id: Option<Uuid>,
    /// Percent of the limit.
    pub threshold: i32,
    /// Spent when the crossing was seen.
    #[schema(example = "8.01")]
    pub spent_usd: String,
    #[schema(example = "10")]
    pub limit_usd: String,
    /// Start of the period the crossing belongs to.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The webhook delivery; null when no webhook was configured.
    pub delivery: Option<DeliveryDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub data: Vec<AlertDto>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<Uuid>,
}

/// A freshly generated webhook signing secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecret {
    /// The HMAC-SHA256 key of `x-switchyard-signature` (all its bytes, prefix included).
    #[schema(example = "whsec_5f1c…")]
    pub alert_webhook_secret: String,
}

/// List budget alerts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    security(("bearer" = [])),
    params(AlertQuery),
    responses(
        (status = 200, body = AlertList),
        (status = 400, description = "Bad limit or cursor", body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<AlertList>, ApiError> {
    auth.require_manage()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format_args!("must be from 1 to {MAX_LIMIT}"),
        ));
    }
    let mut page =
        budget_alert::Entity::find().filter(budget_alert::Column::TenantId.eq(auth.tenant_id));
    if let Some(before) = q.before {
        page = page.filter(budget_alert::Column::Id.lt(before));
    }
    let rows = page
        .order_by_desc(budget_alert::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|a| a.id).collect();
    let mut deliveries: HashMap<Uuid, alert_delivery::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        alert_delivery::Entity::find()
            .filter(alert_delivery::Column::AlertId.is_in(ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|d| (d.alert_id, d))
            .collect()
    };
    let budget_ids: Vec<Uuid> = rows.iter().map(|a| a.budget_id).collect();
    let budgets: HashMap<Uuid, budget::Model> = if budget_ids.is_empty() {
        HashMap::new()
    } else {
        super::resource::scoped::<budget::Entity>(auth.tenant_id)
            .filter(budget::Column::Id.is_in(budget_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|b| (b.id, b))
            .collect()
    };
    let next_before = match rows.last() {
        Some(last) if rows.len() as u64 == limit => Some(last.id),
        _ => None,
    };
    let data = rows
        .into_iter()
        .map(|a| {
            let b = budgets.get(&a.budget_id);
            AlertDto {
                delivery: deliveries.remove(&a.id).map(|d| DeliveryDto {
                    id: d.id,
                    status: d.status,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    delivered_at: d.delivered_at,
                }),
                id: a.id,
                budget_id: a.budget_id,
                scope: b.map(|b| b.scope.clone()),
                scope_id: b.map(|b| b.scope_id),
                threshold: a.threshold,
                spent_usd: format_usd(a.spent_micros),
                limit_usd: format_usd(a.limit_micros),
                period_start: OffsetDateTime::from_unix_timestamp(a.window_start)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                created_at: a.created_at,
            }
        })
        .collect();
    Ok(Json(AlertList { data, next_before }))
}

/// Generate a new webhook signing secret (returned once).
///
/// Deliveries sent after the call are signed with the new secret.
#[utoipa::path(
    post,
    path = "/api/v1/organization/webhook-secret",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, body = WebhookSecret),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<WebhookSecret>, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let secret = set_new_secret(&state, &change, auth.tenant_id).await?;
    change.audit_kind(
        AuditAction::Update,
        "organization_webhook_secret",
        &auth.tenant_id,
    );
    change.commit().await?;
    Ok(Json(WebhookSecret {
        alert_webhook_secret: secret,
    }))
}

/// Generates a signing secret for `tenant_id`, stores it sealed in `change`, returns it.
pub(crate) async fn set_new_secret(
    state: &AppState,
    change: &Change<'_>,
    tenant_id: Uuid,
) -> Result<String, ApiError> {
    let secret = alerts::new_secret();
    let sealed = state
        .master_key
        .seal(&secret, &alerts::secret_context(tenant_id));
    tenant::Entity::update(tenant::ActiveModel {
        id: Set(tenant_id),
        alert_webhook_secret: Set(Some(sealed)),
        ..Default::default()
    })
    .exec(change.tx())
    .await?;
    Ok(secret)
}
