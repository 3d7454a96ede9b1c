//! The caller's organization: `GET /organization`, `PATCH /organization`.
//!
//! Today the one setting is the organization's region policy (`allowed_regions`, see
//! `validate::region_list`): every request of the organization is only served by deployments in
//! those regions, on top of the key's team's policy and the route's (the gateway intersects
//! them). `null` removes it. A change is published to the data plane
//! (`TenantConfig.allowed_regions`) before the call returns. Everyone reads the organization;
//! owners and admins change it.
//!
//! The organization's alert webhook (`alert_webhook_url`) is set here too: the URL is checked
//! against the egress policy like a provider's `base_url`; setting the first URL generates the
//! signing secret, returned once in that answer (rotate it with
//! `POST /organization/webhook-secret`, see `http::alerts`). Reads show the URL and whether a
//! secret exists, never the secret.
//! Rate limits: `rpm_limit` and `tpm_limit` cap requests and tokens per minute over every key
//! of the organization together (on top of each key's and team's limits); published in
//! `TenantConfig.limits`, `null` removes one.
//! Usage storage: `usage_retention_days` (1–3650; `null` = the server default
//! `SWITCHYARD_USAGE_RETENTION_DAYS`) is how long the organization's raw usage rows and payloads
//! are kept (`crate::retention`); `store_payloads` opts in to storing prompts and answers,
//! published in `TenantConfig.store_payloads` (the data plane only captures them when it is on).
//! Suspension: `suspension` says, to every member, whether and why the organization is
//! suspended (the same object `GET /billing` shows owners and admins), so the console can warn
//! everyone.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::billing::SuspensionDto;
use super::resource::Change;
use super::{ApiJson, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::tenant;
use crate::error::ApiError;
use crate::state::AppState;

/// The object kind of the organization in audit events.
const KIND: &str = "organization";

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/organization",
        get(get_organization).patch(update_organization),
    )
}

/// The caller's organization and its settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationDetails {
    pub id: Uuid,
    pub name: String,
    /// The organization's region policy; null: none.
    #[schema(example = json!(["eu"]))]
    pub allowed_regions: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Where budget alerts are POSTed (see `GET /alerts`); null: nowhere.
    #[schema(example = "https://hooks.example.com/switchyard")]
    pub alert_webhook_url: Option<String>,
    /// Whether a webhook signing secret exists (the secret itself is shown only once).
    pub alert_webhook_secret_set: bool,
    /// The new signing secret, only in the answer that generated it (the first time a webhook
    /// URL is set); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "whsec_5f1c…")]
    pub alert_webhook_secret: Option<String>,
    /// Requests per minute over every key of the organization; null: none.
    pub rpm_limit: Option<u64>,
    /// Tokens per minute over every key of the organization; null: none.
    pub tpm_limit: Option<u64>,
    /// Days raw usage rows and payloads are kept; null: the server default
    /// (`SWITCHYARD_USAGE_RETENTION_DAYS`, 30 unless configured).
    #[schema(example = 90)]
    pub usage_retention_days: Option<u32>,
    /// Whether prompts and answers are stored with the usage (off by default).
    pub store_payloads: bool,
    /// Set while the organization is suspended (the gateway answers its requests with 402
    /// `organization_suspended`): why, and what to do. Every member reads it; `GET /billing`
    /// (owners and admins) shows the same.
    pub suspension: Option<SuspensionDto>,
}

impl From<&tenant::Model> for OrganizationDetails {
    fn from(t: &tenant::Model) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            allowed_regions: t.region_policy(),
            created_at: t.created_at,
            alert_webhook_url: t.alert_webhook_url.clone(),
            alert_webhook_secret_set: t.alert_webhook_secret.is_some(),
            alert_webhook_secret: None,
            rpm_limit: t.rpm_limit.and_then(|n| u64::try_from(n).ok()),
            tpm_limit: t.tpm_limit.and_then(|n| u64::try_from(n).ok()),
            usage_retention_days: t.usage_retention_days.and_then(|n| u32::try_from(n).ok()),
            store_payloads: t.store_payloads,
            suspension: SuspensionDto::of(t),
        }
    }
}

/// Changes to the organization's settings; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganizationRequest {
    /// The organization's display name (1–100 characters, as at sign-up).
    #[serde(default)]
    #[schema(required = false, example = "Acme")]
    pub name: Option<String>,
    /// Regions (or region prefixes such as `eu`) the organization's requests may be served
    /// in; null removes the policy.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false, example = json!(["eu"]))]
    pub allowed_regions: Option<Option<Vec<String>>>,
    /// An http(s) URL budget alerts are POSTed to, signed (see `GET /alerts`); null removes
    /// it. Setting the first URL generates a signing secret, returned once in this answer.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<String>, required = false, example = "https://hooks.example.com/switchyard")]
    pub alert_webhook_url: Option<Option<String>>,
    /// Requests per minute over every key of the organization; null removes the limit.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub rpm_limit: Option<Option<u64>>,
    /// Tokens per minute over every key of the organization; null removes the limit.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u64>, required = false)]
    pub tpm_limit: Option<Option<u64>>,
    /// Days raw usage rows and payloads are kept, 1–3650; null: the server default.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u32>, required = false, example = 90)]
    pub usage_retention_days: Option<Option<u32>>,
    /// Store prompts and answers with the usage.
    #[serde(default)]
    #[schema(required = false)]
    pub store_payloads: Option<bool>,
}

/// Longest per-organization usage retention, in days (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The caller's organization.
#[utoipa::path(
    get,
    path = "/api/v1/organization",
    tag = "organization",
    security(("bearer" = [])),
    responses((status = 200, body = OrganizationDetails), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn get_organization(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<OrganizationDetails>, ApiError> {
    let row = tenant::Entity::find_by_id(auth.tenant_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok(Json(OrganizationDetails::from(&row)))
}

/// Change the organization's name and settings (regions, webhook, rate limits, usage storage).
///
/// A changed policy is published to the data plane before the call returns.
#[utoipa::path(
    patch,
    path = "/api/v1/organization",
    tag = "organization",
    security(("bearer" = [])),
    request_body = UpdateOrganizationRequest,
    responses(
        (status = 200, body = OrganizationDetails),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn update_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<UpdateOrganizationRequest>,
) -> Result<Json<OrganizationDetails>, ApiError> {
    auth.require_manage()?;
    let name = req
        .name
        .as_deref()
        .map(|n| validate::name("name", n))
        .transpose()?;
    let regions = req
        .allowed_regions
        .map(|r| {
            r.map(|list| {
                validate::region_list("allowed_regions", &list).map(|l| serde_json::json!(l))
            })
            .transpose()
        })
        .transpose()?;
    let webhook = match req.alert_webhook_url.as_ref() {
        Some(Some(url)) => {
            let url = validate::http_url("alert_webhook_url", url)?;
            validate::upstream_address("alert_webhook_url", &url, &state.security.egress).await?;
            Some(Some(url.to_string()))
        }
        Some(None) => Some(None),
        None => None,
    };
    let rpm = req
        .rpm_limit
        .map(|v| super::teams::rpm_value("rpm_limit", v))
        .transpose()?;
    let tpm = req
        .tpm_limit
        .map(|v| super::teams::tpm_value("tpm_limit", v))
        .transpose()?;
    let retention = match req.usage_retention_days {
        Some(Some(days)) if !(1..=MAX_RETENTION_DAYS).contains(&days) => {
            return Err(ApiError::Validation(format!(
                "usage_retention_days must be between 1 and {MAX_RETENTION_DAYS}, or null"
            )));
        }
        Some(days) => Some(days.map(|d| i32::try_from(d).unwrap_or(i32::MAX))),
        None => None,
    };
    let mut change = Change::begin(&state, &auth).await?;
    let mut row = tenant::Entity::find_by_id(auth.tenant_id)
        .one(change.tx())
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    let before = OrganizationDetails::from(&row);
    let mut changed = false;
    if let Some(name) = name
        && name != row.name
    {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            name: Set(name.clone()),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        row.name = name;
        changed = true;
    }
    if let Some(regions) = regions
        && regions != row.allowed_regions
    {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            allowed_regions: Set(regions.clone()),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        row.allowed_regions = regions;
        change.publish_tenant().await?;
        changed = true;
    }
    // Rate limits (governance).
    let (rpm, tpm) = (rpm.unwrap_or(row.rpm_limit), tpm.unwrap_or(row.tpm_limit));
    if (rpm, tpm) != (row.rpm_limit, row.tpm_limit) {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            rpm_limit: Set(rpm),
            tpm_limit: Set(tpm),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        (row.rpm_limit, row.tpm_limit) = (rpm, tpm);
        change.publish_tenant().await?;
        changed = true;
    }
    // Usage storage.
    if let Some(days) = retention
        && days != row.usage_retention_days
    {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            usage_retention_days: Set(days),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        row.usage_retention_days = days;
        changed = true;
    }
    if let Some(store) = req.store_payloads
        && store != row.store_payloads
    {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            store_payloads: Set(store),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        row.store_payloads = store;
        change.publish_tenant().await?;
        changed = true;
    }
    let mut new_secret = None;
    if let Some(url) = webhook
        && url != row.alert_webhook_url
    {
        tenant::Entity::update(tenant::ActiveModel {
            id: Set(auth.tenant_id),
            alert_webhook_url: Set(url.clone()),
            ..Default::default()
        })
        .exec(change.tx())
        .await?;
        if url.is_some() && row.alert_webhook_secret.is_none() {
            let secret = super::alerts::set_new_secret(&state, &change, auth.tenant_id).await?;
            row.alert_webhook_secret = Some(String::new());
            new_secret = Some(secret);
        }
        row.alert_webhook_url = url;
        changed = true;
    }
    if changed {
        change
            .audit_kind(AuditAction::Update, KIND, &auth.tenant_id)
            .before(&before)
            .after(&OrganizationDetails::from(&row));
    }
    change.commit().await?;
    let mut details = OrganizationDetails::from(&row);
    details.alert_webhook_secret = new_secret;
    Ok(Json(details))
}
