//! Billing over HTTP: `GET /billing`, `POST /billing/checkout`, `POST /billing/portal`,
//! `POST /billing/webhook` (see `crate::billing` for plans, metering and suspension).
//!
//! Owners manage billing (checkout, portal); owners and admins read it. The webhook is public:
//! it is authenticated by its `Stripe-Signature` (HMAC-SHA256 with the endpoint secret, within
//! the tolerance window); an unsigned, forged or stale request gets 400 and is not applied. The
//! body is never logged. Events are applied once each (by event id); a redelivery answers 200.
//!
//! With billing off (no `STRIPE_SECRET_KEY`), `GET /billing` answers `"enabled": false` and the
//! other operations 409.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use shared::money::format_usd;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{AuthUser, Role};
use crate::billing::{self, Plan, PlanKind, Reconciliation};
use crate::entities::tenant;
use crate::error::ApiError;
use crate::state::AppState;

/// How many invoices `GET /billing` shows.
const INVOICES_SHOWN: i64 = 12;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing", get(get_billing))
        .route("/billing/checkout", post(checkout))
        .route("/billing/portal", post(portal))
        .route("/billing/webhook", post(webhook))
}

fn billing_off() -> ApiError {
    ApiError::Conflict(
        "billing is not enabled on this server (set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET)"
            .to_owned(),
    )
}

fn require_owner(auth: &AuthUser) -> Result<(), ApiError> {
    if auth.role == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only owners manage billing"))
    }
}

/// The caller's organization row.
async fn organization(state: &AppState, auth: &AuthUser) -> Result<tenant::Model, ApiError> {
    tenant::Entity::find_by_id(auth.tenant_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("organization"))
}

/// The organization's suspension.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuspensionDto {
    /// `payment_failed`, `credit_exhausted` or `manual`.
    pub reason: String,
    /// What API callers are told (with their 402 `organization_suspended`).
    pub message: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
}

impl SuspensionDto {
    /// The organization's suspension as its row has it (`None`: not suspended). Shown by
    /// `GET /billing` and, to every member, by `GET /organization`.
    pub fn of(t: &tenant::Model) -> Option<Self> {
        billing::suspension::of_row(t).map(|s| Self {
            reason: billing::suspension::reason_name(s.reason).to_owned(),
            message: s.message,
            since: t.suspended_at,
        })
    }
}

/// Usage of the current period (the calendar month, UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodUsage {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Provider cost, USD.
    #[schema(example = "1.25")]
    pub cost_usd: String,
    /// What the plan bills for it (cost × (1 + margin)), USD.
    #[schema(example = "1.5")]
    pub billed_usd: String,
    /// Free plans: the included credit and what is left of it.
    pub included_credit_usd: Option<String>,
    pub credit_remaining_usd: Option<String>,
}

/// An invoice, as Stripe has it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceDto {
    pub id: String,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    pub currency: String,
    /// Smallest currency unit (cents).
    pub amount_due: i64,
    pub amount_paid: i64,
    /// Unix seconds.
    pub created: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub hosted_invoice_url: Option<String>,
}

/// `GET /billing`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingDto {
    /// False when this server runs without Stripe (the zero-setup default): nothing is billed
    /// and nobody is suspended by billing.
    pub enabled: bool,
    /// Why billing is off, when it is.
    pub message: Option<String>,
    pub plan: Plan,
    /// `active`, `past_due` (a payment failed; in the grace period), `suspended` or `free`
    /// (no subscription).
    pub status: String,
    /// Stripe's subscription status, when there is a subscription.
    pub subscription_status: Option<String>,
    pub stripe_customer_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub payment_failed_at: Option<OffsetDateTime>,
    /// When a failed payment turns into a suspension.
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_ends_at: Option<OffsetDateTime>,
    pub suspension: Option<SuspensionDto>,
    pub current_period: Option<PeriodUsage>,
    pub invoices: Vec<InvoiceDto>,
    /// Set when Stripe could not be asked for the invoices just now.
    pub invoices_error: Option<String>,
    /// Pay-as-you-go: reported = metered for every closed hour window.
    pub reconciliation: Option<Reconciliation>,
}

/// Show the organization's plan, billing status, usage of the period, invoices and the
/// reconciliation of metered usage.
#[utoipa::path(
    get,
    path = "/api/v1/billing",
    tag = "billing",
    security(("bearer" = [])),
    responses(
        (status = 200, body = BillingDto),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn get_billing(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<BillingDto>, ApiError> {
    auth.require_manage()?;
    let b = &state.billing;
    let t = organization(&state, &auth).await?;
    let plan = b.plan_of(t.plan.as_deref()).clone();
    if !b.enabled() {
        return Ok(Json(BillingDto {
            enabled: false,
            message: Some(
                "Billing is off on this server: no STRIPE_SECRET_KEY is configured, so usage is not billed and no organization is suspended by billing."
                    .to_owned(),
            ),
            plan,
            status: "disabled".to_owned(),
            subscription_status: None,
            stripe_customer_id: None,
            payment_failed_at: None,
            grace_ends_at: None,
            suspension: None,
            current_period: None,
            invoices: Vec::new(),
            invoices_error: None,
            reconciliation: None,
        }));
    }
    let now = OffsetDateTime::now_utc();
    let from = billing::month_start(now);
    let to = billing::next_month_start(now);
    let cost: i64 = billing::hourly_cost(&state.db, t.id, from, to)
        .await?
        .iter()
        .map(|(_, c)| c)
        .sum();
    let billed = billing::billed_micros(cost, plan.margin_bps);
    let free = plan.kind == PlanKind::Free;
    let current_period = PeriodUsage {
        start: OffsetDateTime::from_unix_timestamp(from).unwrap_or(now),
        end: OffsetDateTime::from_unix_timestamp(to).unwrap_or(now),
        cost_usd: format_usd(cost),
        billed_usd: format_usd(billed),
        included_credit_usd: free.then(|| format_usd(plan.included_credit_micros)),
        credit_remaining_usd: free
            .then(|| format_usd((plan.included_credit_micros - billed).max(0))),
    };
    let suspension = SuspensionDto::of(&t);
    let status = if suspension.is_some() {
        "suspended"
    } else if t.payment_failed_at.is_some() {
        "past_due"
    } else if plan.kind == PlanKind::Enterprise
        || (plan.kind == PlanKind::Payg
            && matches!(
                t.subscription_status.as_deref(),
                Some("active" | "trialing")
            ))
    {
        "active"
    } else {
        "free"
    };
    let (invoices, invoices_error) = match (b.stripe(), t.stripe_customer_id.as_deref()) {
        (Some(stripe), Some(customer)) => {
            match stripe.list_invoices(customer, INVOICES_SHOWN).await {
                Ok(list) => (
                    list.into_iter()
                        .map(|i| InvoiceDto {
                            id: i.id,
                            status: i.status,
                            currency: i.currency,
                            amount_due: i.amount_due,
                            amount_paid: i.amount_paid,
                            created: i.created,
                            period_start: i.period_start,
                            period_end: i.period_end,
                            hosted_invoice_url: i.hosted_invoice_url,
                        })
                        .collect(),
                    None,
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "listing invoices from Stripe failed");
                    (
                        Vec::new(),
                        Some("Stripe could not be reached; try again shortly".to_owned()),
                    )
                }
            }
        }
        _ => (Vec::new(), None),
    };
    let reconciliation = if plan.kind == PlanKind::Payg {
        Some(billing::reconcile(&state, &t, now).await?)
    } else {
        None
    };
    Ok(Json(BillingDto {
        enabled: true,
        message: None,
        plan,
        status: status.to_owned(),
        subscription_status: t.subscription_status.clone(),
        stripe_customer_id: t.stripe_customer_id.clone(),
        payment_failed_at: t.payment_failed_at,
        grace_ends_at: t.payment_failed_at.map(|f| f + b.grace()),
        suspension,
        current_period: Some(current_period),
        invoices,
        invoices_error,
        reconciliation,
    }))
}

/// `POST /billing/checkout`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A pay-as-you-go plan (default: the first one configured, `payg`).
    pub plan: Option<String>,
    /// Where Stripe sends the user after paying (default `SWITCHYARD_BILLING_RETURN_URL`).
    pub success_url: Option<String>,
    /// Where Stripe sends the user on cancel (default `SWITCHYARD_BILLING_RETURN_URL`).
    pub cancel_url: Option<String>,
}

/// A Stripe-hosted page to send the user to.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    /// Open this in the browser.
    pub url: String,
    pub session_id: String,
    pub stripe_customer_id: String,
}

fn check_url(field: &str, url: &str) -> Result<(), ApiError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(()),
        _ => Err(ApiError::invalid(field, "must be an http(s) URL")),
    }
}

/// The organization's Stripe customer, created on first use (with an idempotency key derived
/// from the organization, so two concurrent calls create one customer).
async fn ensure_customer(
    state: &AppState,
    stripe: &::billing::Stripe,
    t: &tenant::Model,
) -> Result<String, ApiError> {
    if let Some(c) = &t.stripe_customer_id {
        return Ok(c.clone());
    }
    let customer = stripe
        .create_customer(
            &t.name,
            None,
            HashMap::from([("switchyard_organization_id".to_owned(), t.id.to_string())]),
            &format!("sy_customer_{}", t.id.simple()),
        )
        .await
        .map_err(stripe_error)?;
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::StripeCustomerId,
            Expr::value(Some(customer.id.clone())),
        )
        .filter(tenant::Column::Id.eq(t.id))
        .filter(tenant::Column::StripeCustomerId.is_null())
        .exec(&state.db)
        .await?;
    let stored = tenant::Entity::find_by_id(t.id)
        .one(&state.db)
        .await?
        .and_then(|t| t.stripe_customer_id);
    Ok(stored.unwrap_or(customer.id))
}

fn stripe_error(e: ::billing::BillingError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("stripe: {e}"))
}

/// Start a Stripe Checkout Session to subscribe to pay-as-you-go (adds a payment method).
///
/// Creates the organization's Stripe customer on first use. The subscription takes effect
/// when Stripe reports `checkout.session.completed` to the webhook.
#[utoipa::path(
    post,
    path = "/api/v1/billing/checkout",
    tag = "billing",
    security(("bearer" = [])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, body = SessionDto),
        (status = 400, description = "Unknown plan or bad URL", body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner", body = crate::error::ErrorBody),
        (status = 409, description = "Billing off, or the organization is billed by invoice", body = crate::error::ErrorBody),
    )
)]
pub async fn checkout(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CheckoutRequest>,
) -> Result<Json<SessionDto>, ApiError> {
    require_owner(&auth)?;
    let stripe = state.billing.stripe().ok_or_else(billing_off)?;
    let t = organization(&state, &auth).await?;
    if state.billing.plan_of(t.plan.as_deref()).kind == PlanKind::Enterprise {
        return Err(ApiError::Conflict(
            "this organization is billed by invoice; there is nothing to check out".to_owned(),
        ));
    }
    let plan =
        match &req.plan {
            Some(name) => state
                .billing
                .plans
                .get(name)
                .filter(|p| p.kind == PlanKind::Payg)
                .ok_or_else(|| ApiError::invalid("plan", "is not a pay-as-you-go plan"))?,
            None => state.billing.plans.first_payg().ok_or_else(|| {
                ApiError::Conflict("no pay-as-you-go plan is configured".to_owned())
            })?,
        };
    let price = plan
        .stripe_price_id
        .as_deref()
        .ok_or_else(|| ApiError::Conflict("the plan has no Stripe price".to_owned()))?;
    let default_url = state.billing.settings.return_url.clone();
    let success = req.success_url.unwrap_or_else(|| default_url.clone());
    let cancel = req.cancel_url.unwrap_or(default_url);
    check_url("success_url", &success)?;
    check_url("cancel_url", &cancel)?;
    let customer = ensure_customer(&state, stripe, &t).await?;
    let session = stripe
        .create_checkout_session(
            &customer,
            price,
            &t.id.to_string(),
            &plan.name,
            &success,
            &cancel,
        )
        .await
        .map_err(stripe_error)?;
    Ok(Json(SessionDto {
        url: session.url.unwrap_or_default(),
        session_id: session.id,
        stripe_customer_id: customer,
    }))
}

/// `POST /billing/portal`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalRequest {
    /// Where the portal's "return" link goes (default `SWITCHYARD_BILLING_RETURN_URL`).
    pub return_url: Option<String>,
}

/// Open the Stripe Customer Portal (payment methods, invoices, cancellation).
#[utoipa::path(
    post,
    path = "/api/v1/billing/portal",
    tag = "billing",
    security(("bearer" = [])),
    request_body = PortalRequest,
    responses(
        (status = 200, body = SessionDto),
        (status = 403, description = "Needs owner", body = crate::error::ErrorBody),
        (status = 409, description = "Billing off, or no Stripe customer yet", body = crate::error::ErrorBody),
    )
)]
pub async fn portal(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<PortalRequest>,
) -> Result<Json<SessionDto>, ApiError> {
    require_owner(&auth)?;
    let stripe = state.billing.stripe().ok_or_else(billing_off)?;
    let t = organization(&state, &auth).await?;
    let customer = t.stripe_customer_id.clone().ok_or_else(|| {
        ApiError::Conflict(
            "this organization has no Stripe customer yet: subscribe with POST /api/v1/billing/checkout first"
                .to_owned(),
        )
    })?;
    let return_url = req
        .return_url
        .unwrap_or_else(|| state.billing.settings.return_url.clone());
    check_url("return_url", &return_url)?;
    let session = stripe
        .create_portal_session(&customer, &return_url)
        .await
        .map_err(stripe_error)?;
    Ok(Json(SessionDto {
        url: session.url.unwrap_or_default(),
        session_id: session.id,
        stripe_customer_id: customer,
    }))
}

/// The webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// `applied`, `duplicate` (seen before: not applied again) or `ignored`.
    pub outcome: String,
}

/// Receive a Stripe webhook event (public; authenticated by `Stripe-Signature`).
#[utoipa::path(
    post,
    path = "/api/v1/billing/webhook",
    tag = "billing",
    request_body(content = String, content_type = "application/json", description = "A Stripe event, as Stripe sends it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "Unsigned, forged or stale event", body = crate::error::ErrorBody),
        (status = 409, description = "Billing off", body = crate::error::ErrorBody),
    )
)]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, ApiError> {
    let b = &state.billing;
    if !b.enabled() {
        return Err(billing_off());
    }
    let secret = b
        .settings
        .stripe_webhook_secret
        .as_ref()
        .ok_or_else(billing_off)?;
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::Validation("the webhook body is not UTF-8".to_owned()))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = OffsetDateTime::now_utc();
    let event = ::billing::verify_webhook(
        payload,
        signature,
        secret.expose(),
        std::time::Duration::from_secs(b.settings.webhook_tolerance_secs),
        now.unix_timestamp(),
    )
    .map_err(|why| {
        tracing::warn!(reason = %why, "stripe webhook refused");
        ApiError::Validation(format!("webhook refused: {why}"))
    })?;
    let outcome = billing::webhook::handle(&state, &event).await?;
    Ok(Json(WebhookAck {
        received: true,
        outcome: outcome.as_str().to_owned(),
    }))
}
