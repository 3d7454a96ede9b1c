//! Thin wrappers over the async-stripe crates: the few Stripe calls the control plane's billing
//! makes, and webhook verification. Nothing here knows about tenants or databases.
//!
//! Requests are *built* by the SDK's typed builders (so parameter names and the form encoding
//! are Stripe's), and their answers are read into the small structs below rather than the SDK's
//! full objects: those have dozens of required fields that change between API versions, and
//! billing needs only a handful (ids, urls, statuses, amounts). Unknown fields are ignored.
//!
//! Stripe references followed:
//! - Customers: <https://docs.stripe.com/api/customers/create>
//! - Checkout Sessions (subscription mode, metered price without quantity):
//!   <https://docs.stripe.com/api/checkout/sessions/create>
//! - Customer Portal sessions: <https://docs.stripe.com/api/customer_portal/sessions/create>
//! - Billing Meter Events (`event_name`, `payload[stripe_customer_id]`, `payload[value]`,
//!   `identifier`, `timestamp`): <https://docs.stripe.com/api/billing/meter-event/create>
//! - Idempotent requests (`Idempotency-Key` header): <https://docs.stripe.com/api/idempotent_requests>
//! - Invoices list: <https://docs.stripe.com/api/invoices/list>
//! - Webhook signatures (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of `"{t}.{body}"` with the
//!   endpoint secret, tolerance on `t`): <https://docs.stripe.com/webhooks#verify-events>

use std::collections::HashMap;
use std::time::Duration;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};

pub use stripe::StripeError;

/// Stripe's own API base; tests point the client at a fake with [`StripeConfig::api_base`].
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

/// Default webhook tolerance (Stripe's libraries use 5 minutes).
pub const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// What the client needs.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_live_…` / `sk_test_…` (or a restricted key `rk_…`).
    pub secret_key: String,
    /// Base URL ending in `/`; requests go to `{base}v1/…`.
    pub api_base: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &"<redacted>")
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("stripe: {0}")]
    Stripe(#[from] StripeError),
    #[error("invalid idempotency key: {0}")]
    IdempotencyKey(String),
}

/// A Stripe API client (cheap to clone).
#[derive(Clone)]
pub struct Stripe {
    client: Client,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").finish_non_exhaustive()
    }
}

/// A customer as billing reads it.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Customer {
    pub id: String,
}

/// A Checkout or Customer Portal session: its id and the page to send the user to.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Session {
    pub id: String,
    pub url: Option<String>,
}

/// A recorded Billing Meter Event.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct MeterEvent {
    pub identifier: String,
    pub event_name: String,
}

/// An invoice as `GET /api/v1/billing` shows it.
#[derive(Debug, Clone, miniserde::Deserialize)]
pub struct Invoice {
    pub id: String,
    pub status: Option<String>,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub created: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub hosted_invoice_url: Option<String>,
}

#[derive(miniserde::Deserialize)]
struct InvoiceList {
    data: Vec<Invoice>,
}

/// One metered usage report.
#[derive(Debug, Clone)]
pub struct MeterReport<'a> {
    /// The meter's `event_name`.
    pub event_name: &'a str,
    pub customer: &'a str,
    /// The value (in the meter's unit; Switchyard reports cents of billed amount... see the
    /// control plane's billing module for the unit).
    pub value: i64,
    /// Stripe dedupes meter events by identifier.
    pub identifier: &'a str,
    /// Sent as `Idempotency-Key`: a retried request replays the first answer.
    pub idempotency_key: &'a str,
    /// Unix seconds of the usage (the window's start).
    pub timestamp: i64,
}

impl Stripe {
    /// Builds the client (no request is made).
    pub fn new(config: &StripeConfig) -> Result<Self, BillingError> {
        let client = ClientBuilder::new(config.secret_key.clone())
            .url(config.api_base.clone())
            .build()?;
        Ok(Self { client })
    }

    /// `POST /v1/customers`, with the organization id in metadata.
    pub async fn create_customer(
        &self,
        name: &str,
        email: Option<&str>,
        metadata: HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<Customer, BillingError> {
        let mut req = stripe_core::customer::CreateCustomer::new()
            .name(name)
            .metadata(metadata);
        if let Some(email) = email {
            req = req.email(email);
        }
        Ok(req
            .build()
            .customize::<Customer>()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await?)
    }

    /// `POST /v1/checkout/sessions` in subscription mode with one metered price (no quantity,
    /// as Stripe requires for metered prices).
    pub async fn create_checkout_session(
        &self,
        customer: &str,
        price: &str,
        client_reference_id: &str,
        plan: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<Session, BillingError> {
        use stripe_checkout::checkout_session::{
            CreateCheckoutSession, CreateCheckoutSessionLineItems,
        };
        let item = CreateCheckoutSessionLineItems {
            price: Some(price.to_owned()),
            ..CreateCheckoutSessionLineItems::new()
        };
        let req = CreateCheckoutSession::new()
            .customer(customer)
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .line_items(vec![item])
            .client_reference_id(client_reference_id)
            .metadata(HashMap::from([("plan".to_owned(), plan.to_owned())]))
            .success_url(success_url)
            .cancel_url(cancel_url);
        Ok(req
            .build()
            .customize::<Session>()
            .send(&self.client)
            .await?)
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<Session, BillingError> {
        let req = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        Ok(req
            .build()
            .customize::<Session>()
            .send(&self.client)
            .await?)
    }

    /// `POST /v1/billing/meter_events` with `identifier` and an `Idempotency-Key`.
    pub async fn create_meter_event(
        &self,
        report: &MeterReport<'_>,
    ) -> Result<MeterEvent, BillingError> {
        let payload = HashMap::from([
            ("stripe_customer_id".to_owned(), report.customer.to_owned()),
            ("value".to_owned(), report.value.to_string()),
        ]);
        let req = stripe_billing::billing_meter_event::CreateBillingMeterEvent::new(
            report.event_name,
            payload,
        )
        .identifier(report.identifier)
        .timestamp(report.timestamp);
        Ok(req
            .build()
            .customize::<MeterEvent>()
            .request_strategy(idempotent(report.idempotency_key)?)
            .send(&self.client)
            .await?)
    }

    /// `GET /v1/invoices?customer=…&limit=…`, newest first.
    pub async fn list_invoices(
        &self,
        customer: &str,
        limit: i64,
    ) -> Result<Vec<Invoice>, BillingError> {
        let req = stripe_billing::invoice::ListInvoice::new()
            .customer(customer)
            .limit(limit);
        Ok(req
            .build()
            .customize::<InvoiceList>()
            .send(&self.client)
            .await?
            .data)
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, BillingError> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| BillingError::IdempotencyKey(e.to_string()))
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookRejection {
    #[error("missing Stripe-Signature header")]
    Unsigned,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("no v1 signature matches the endpoint secret")]
    Forged,
    #[error("the signature timestamp is outside the tolerance window")]
    Stale,
    #[error("the body is not a Stripe event")]
    NotAnEvent,
}

/// The parts of a verified event that billing acts on. `object` is the raw `data.object`
/// (read by field, so events rendered with another API version still apply).
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub id: String,
    pub type_: String,
    pub created: i64,
    pub object: serde_json::Value,
}

/// Verifies `Stripe-Signature` (HMAC-SHA256 by async-stripe's webhook signer, compared in
/// constant time) and the timestamp against `now` ± `tolerance`, then reads the event envelope
/// by field (the SDK's typed parse would refuse events of other API versions and logs them as
/// errors).
pub fn verify_webhook(
    payload: &str,
    signature: Option<&str>,
    secret: &str,
    tolerance: Duration,
    now_unix: i64,
) -> Result<WebhookEvent, WebhookRejection> {
    let signature = signature.ok_or(WebhookRejection::Unsigned)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(WebhookRejection::Malformed)?;
    if candidates.is_empty() {
        return Err(WebhookRejection::Malformed);
    }
    // The expected `v1` for (t, payload), computed by async-stripe's signer (HMAC-SHA256 of
    // "{t}.{payload}" with the endpoint secret); compared in constant time with every `v1` the
    // header carries (Stripe sends several while a secret is being rolled).
    let expected = stripe_webhook::Webhook::generate_test_header(payload, secret, Some(t));
    let expected = expected
        .rsplit_once("v1=")
        .map(|(_, v)| v)
        .ok_or(WebhookRejection::Forged)?;
    if !candidates
        .iter()
        .any(|c| shared::crypto::constant_time_eq(c.as_bytes(), expected.as_bytes()))
    {
        return Err(WebhookRejection::Forged);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if (now_unix - t).abs() > tolerance {
        return Err(WebhookRejection::Stale);
    }
    let value: serde_json::Value =
        serde_json::from_str(payload).map_err(|_| WebhookRejection::NotAnEvent)?;
    let id = value.get("id").and_then(|v| v.as_str());
    let type_ = value.get("type").and_then(|v| v.as_str());
    let object = value.get("data").and_then(|d| d.get("object"));
    match (id, type_, object) {
        (Some(id), Some(type_), Some(object)) => Ok(WebhookEvent {
            id: id.to_owned(),
            type_: type_.to_owned(),
            created: value.get("created").and_then(|v| v.as_i64()).unwrap_or(0),
            object: object.clone(),
        }),
        _ => Err(WebhookRejection::NotAnEvent),
    }
}

/// A `Stripe-Signature` header for `payload` signed at `timestamp` (what Stripe sends; for the
/// fake Stripe and tests).
pub fn sign_webhook(payload: &str, secret: &str, timestamp: i64) -> String {
    stripe_webhook::Webhook::generate_test_header(payload, secret, Some(timestamp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    const SECRET: &str = "whsec_test";
    const BODY: &str = r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1","customer":"cus_1"}}}"#;

    #[test]
    fn signature_round_trip_and_refusals() {
        let now = 1_800_000_000;
        let sig = sign_webhook(BODY, SECRET, now);
        let ev = verify_webhook(
            BODY,
            Some(&sig),
            SECRET,
            DEFAULT_WEBHOOK_TOLERANCE,
            now + 10,
        )
        .expect("a fresh, correctly signed event verifies");
        assert_eq!(ev.id, "evt_1");
        assert_eq!(ev.type_, "invoice.paid");
        assert_eq!(ev.object["customer"], "cus_1");

        assert_eq!(
            verify_webhook(BODY, None, SECRET, DEFAULT_WEBHOOK_TOLERANCE, now).err(),
            Some(WebhookRejection::Unsigned)
        );
        let forged = sign_webhook(BODY, "whsec_other", now);
        assert_eq!(
            verify_webhook(BODY, Some(&forged), SECRET, DEFAULT_WEBHOOK_TOLERANCE, now).err(),
            Some(WebhookRejection::Forged)
        );
        let tampered = BODY.replace("cus_1", "cus_2");
        assert_eq!(
            verify_webhook(
                &tampered,
                Some(&sig),
                SECRET,
                DEFAULT_WEBHOOK_TOLERANCE,
                now
            )
            .err(),
            Some(WebhookRejection::Forged)
        );
        assert_eq!(
            verify_webhook(
                BODY,
                Some(&sig),
                SECRET,
                DEFAULT_WEBHOOK_TOLERANCE,
                now + 301
            )
            .err(),
            Some(WebhookRejection::Stale)
        );
        assert_eq!(
            verify_webhook(BODY, Some("v1=abc"), SECRET, DEFAULT_WEBHOOK_TOLERANCE, now).err(),
            Some(WebhookRejection::Malformed)
        );
    }
}
