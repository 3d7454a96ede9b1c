//! A fake Stripe API on `127.0.0.1:0`, for the billing tests: the same client code that talks to
//! Stripe (`STRIPE_API_BASE` pointed here) talks to this.
//!
//! What it follows from Stripe's documentation:
//! - requests: `Authorization: Bearer sk_test_…` (anything else → 401 with an
//!   `invalid_request_error`), form-encoded bodies with bracketed nesting
//!   (`metadata[plan]=payg`, `line_items[0][price]=price_…`), JSON answers, errors as
//!   `{"error":{"type","message"}}` (<https://docs.stripe.com/api/authentication>,
//!   <https://docs.stripe.com/api/errors>);
//! - idempotency: a POST with an `Idempotency-Key` seen before gets the first answer again
//!   (status and body) and is recorded as a replay; the same key with other parameters → 400
//!   `idempotency_error` (<https://docs.stripe.com/api/idempotent_requests>);
//! - `POST /v1/customers` (<https://docs.stripe.com/api/customers/create>);
//! - `POST /v1/checkout/sessions` (<https://docs.stripe.com/api/checkout/sessions/create>):
//!   `mode=subscription` needs `line_items`; a metered price takes no `quantity`;
//! - `POST /v1/billing_portal/sessions` (<https://docs.stripe.com/api/customer_portal/sessions/create>);
//! - `POST /v1/billing/meter_events` (<https://docs.stripe.com/api/billing/meter-event/create>):
//!   `event_name`, `payload[stripe_customer_id]`, `payload[value]` (a whole number),
//!   `identifier` (events with an identifier seen before are not counted again), `timestamp`;
//! - `GET /v1/invoices?customer=…&limit=…` (<https://docs.stripe.com/api/invoices/list>), a list
//!   object of the invoices a test added with [`FakeStripe::add_invoice`];
//! - webhooks: [`FakeStripe::event`] builds an event object
//!   (<https://docs.stripe.com/api/events/object>) and [`send_webhook`] signs it the way Stripe
//!   does (`Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//!   <https://docs.stripe.com/webhooks#verify-manually>) and POSTs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;

/// A recorded meter event (first occurrence of its identifier).
#[derive(Debug, Clone)]
pub struct MeterEvent {
    pub event_name: String,
    pub customer: String,
    pub value: i64,
    pub identifier: String,
    pub timestamp: i64,
}

/// A recorded checkout session.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub customer: String,
    pub client_reference_id: Option<String>,
    pub price: Option<String>,
    pub plan: Option<String>,
}

#[derive(Default)]
struct Inner {
    customers: Vec<Value>,
    sessions: Vec<CheckoutSession>,
    portal_sessions: usize,
    meter_events: Vec<MeterEvent>,
    /// Meter event requests received (replays and duplicates included).
    meter_requests: usize,
    /// Requests answered from the idempotency cache.
    idempotent_replays: usize,
    idempotency: HashMap<String, (String, u16, Value)>,
    invoices: Vec<Value>,
    next_id: u64,
}

struct Shared {
    secret_key: String,
    inner: Mutex<Inner>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeStripe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeStripe {
    /// Starts the fake accepting `secret_key` (e.g. `sk_test_fake`).
    pub async fn start(secret_key: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            secret_key: secret_key.to_owned(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// What `STRIPE_API_BASE` should be (ends with `/`).
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn customers(&self) -> Vec<Value> {
        lock(&self.shared).customers.clone()
    }

    pub fn checkout_sessions(&self) -> Vec<CheckoutSession> {
        lock(&self.shared).sessions.clone()
    }

    pub fn portal_sessions(&self) -> usize {
        lock(&self.shared).portal_sessions
    }

    /// Meter events counted (one per identifier).
    pub fn meter_events(&self) -> Vec<MeterEvent> {
        lock(&self.shared).meter_events.clone()
    }

    /// Meter event requests received, replays and duplicate identifiers included.
    pub fn meter_requests(&self) -> usize {
        lock(&self.shared).meter_requests
    }

    /// Requests answered from the idempotency cache.
    pub fn idempotent_replays(&self) -> usize {
        lock(&self.shared).idempotent_replays
    }

    /// The usage billed to `customer`: the sum of its counted meter event values.
    pub fn metered_total(&self, customer: &str) -> i64 {
        lock(&self.shared)
            .meter_events
            .iter()
            .filter(|e| e.customer == customer)
            .map(|e| e.value)
            .sum()
    }

    /// Adds an invoice for `customer`; returns it (an invoice object).
    pub fn add_invoice(&self, customer: &str, amount_due: i64, status: &str) -> Value {
        let mut inner = lock(&self.shared);
        inner.next_id += 1;
        let id = format!("in_test_{}", inner.next_id);
        let now = unix_now();
        let invoice = json!({
            "id": id,
            "object": "invoice",
            "customer": customer,
            "status": status,
            "currency": "usd",
            "amount_due": amount_due,
            "amount_paid": if status == "paid" { amount_due } else { 0 },
            "amount_remaining": if status == "paid" { 0 } else { amount_due },
            "created": now,
            "period_start": now - 30 * 86_400,
            "period_end": now,
            "livemode": false,
            "hosted_invoice_url": format!("https://invoice.stripe.com/i/{id}"),
        });
        inner.invoices.push(invoice.clone());
        invoice
    }

    /// A Stripe event object of `type_` around `object`, with a fresh `evt_…` id.
    pub fn event(&self, type_: &str, object: Value) -> Value {
        let mut inner = lock(&self.shared);
        inner.next_id += 1;
        json!({
            "id": format!("evt_test_{}", inner.next_id),
            "object": "event",
            "api_version": "2026-09-30.endive",
            "created": unix_now(),
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": type_,
            "data": {"object": object},
        })
    }

    /// The `checkout.session.completed` event Stripe sends once `session` is paid: the
    /// session object with `status: complete` and a new subscription id.
    pub fn complete_checkout(&self, session: &CheckoutSession) -> Value {
        let sub = {
            let mut inner = lock(&self.shared);
            inner.next_id += 1;
            format!("sub_test_{}", inner.next_id)
        };
        self.event(
            "checkout.session.completed",
            json!({
                "id": session.id,
                "object": "checkout.session",
                "mode": "subscription",
                "status": "complete",
                "payment_status": "paid",
                "customer": session.customer,
                "client_reference_id": session.client_reference_id,
                "subscription": sub,
                "metadata": {"plan": session.plan},
            }),
        )
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `Stripe-Signature` for `payload` signed with `secret` at `t` (Unix seconds).
pub fn signature(payload: &str, secret: &str, t: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{t}.{payload}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `event` to `url` as Stripe does, signed with `secret` at `t` (None: unsigned).
/// Returns the status and the body.
pub async fn send_webhook(
    client: &reqwest::Client,
    url: &str,
    event: &Value,
    secret: &str,
    t: Option<i64>,
) -> anyhow::Result<(u16, Value)> {
    let payload = event.to_string();
    let mut req = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        );
    if let Some(t) = t {
        req = req.header("stripe-signature", signature(&payload, secret, t));
    }
    let resp = req.body(payload).send().await?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Signs `event` at the current time.
pub async fn send_signed(
    client: &reqwest::Client,
    url: &str,
    event: &Value,
    secret: &str,
) -> anyhow::Result<(u16, Value)> {
    send_webhook(client, url, event, secret, Some(unix_now())).await
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> (u16, Value) {
    (
        status.as_u16(),
        json!({"error": {"type": kind, "message": message}}),
    )
}

fn respond((status, body): (u16, Value)) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let expected = format!("Bearer {}", shared.secret_key);
    let authorized = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authorized {
        return respond(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        ));
    }
    let form: Vec<(String, String)> = if parts.method == Method::GET {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default()
    } else {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    };
    let path = parts.uri.path().to_owned();
    let key = idempotency_key(&parts.headers);
    let fingerprint = format!("{} {path} {}", parts.method, String::from_utf8_lossy(&body));
    let mut inner = lock(&shared);
    if parts.method == Method::POST
        && let Some(key) = &key
        && let Some((seen, status, body)) = inner.idempotency.get(key).cloned()
    {
        if seen != fingerprint {
            return respond(stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ));
        }
        inner.idempotent_replays += 1;
        if path == "/v1/billing/meter_events" {
            inner.meter_requests += 1;
        }
        return respond((status, body));
    }
    let answer = route(&mut inner, &parts.method, &path, &form);
    if parts.method == Method::POST
        && let Some(key) = key
    {
        inner
            .idempotency
            .insert(key, (fingerprint, answer.0, answer.1.clone()));
    }
    respond(answer)
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn metadata(form: &[(String, String)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        if let Some(name) = k
            .strip_prefix("metadata[")
            .and_then(|r| r.strip_suffix(']'))
        {
            m.insert(name.to_owned(), Value::String(v.clone()));
        }
    }
    Value::Object(m)
}

fn route(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    form: &[(String, String)],
) -> (u16, Value) {
    inner.next_id += 1;
    let n = inner.next_id;
    let now = unix_now();
    match (method.as_str(), path) {
        ("POST", "/v1/customers") => {
            let customer = json!({
                "id": format!("cus_test_{n}"),
                "object": "customer",
                "created": now,
                "livemode": false,
                "name": field(form, "name"),
                "email": field(form, "email"),
                "metadata": metadata(form),
            });
            inner.customers.push(customer.clone());
            (200, customer)
        }
        ("POST", "/v1/checkout/sessions") => {
            let Some(customer) = field(form, "customer") else {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing required param: customer.",
                );
            };
            if !inner.customers.iter().any(|c| c["id"] == customer) {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("No such customer: '{customer}'"),
                );
            }
            if field(form, "mode") != Some("subscription") {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Only subscription mode is faked.",
                );
            }
            let price = field(form, "line_items[0][price]");
            if price.is_none() {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "In `subscription` mode, `line_items` is required.",
                );
            }
            if field(form, "line_items[0][quantity]").is_some() {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Quantity should not be specified where usage_type is `metered`.",
                );
            }
            if field(form, "success_url").is_none() {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing required param: success_url.",
                );
            }
            let id = format!("cs_test_{n}");
            let meta = metadata(form);
            let session = CheckoutSession {
                id: id.clone(),
                customer: customer.to_owned(),
                client_reference_id: field(form, "client_reference_id").map(str::to_owned),
                price: price.map(str::to_owned),
                plan: meta.get("plan").and_then(Value::as_str).map(str::to_owned),
            };
            inner.sessions.push(session.clone());
            (
                200,
                json!({
                    "id": id,
                    "object": "checkout.session",
                    "created": now,
                    "expires_at": now + 86_400,
                    "livemode": false,
                    "mode": "subscription",
                    "status": "open",
                    "payment_status": "unpaid",
                    "customer": customer,
                    "client_reference_id": session.client_reference_id,
                    "metadata": meta,
                    "success_url": field(form, "success_url"),
                    "cancel_url": field(form, "cancel_url"),
                    "url": format!("https://checkout.stripe.com/c/pay/{id}"),
                }),
            )
        }
        ("POST", "/v1/billing_portal/sessions") => {
            let Some(customer) = field(form, "customer") else {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing required param: customer.",
                );
            };
            inner.portal_sessions += 1;
            let id = format!("bps_test_{n}");
            (
                200,
                json!({
                    "id": id,
                    "object": "billing_portal.session",
                    "created": now,
                    "customer": customer,
                    "livemode": false,
                    "return_url": field(form, "return_url"),
                    "url": format!("https://billing.stripe.com/p/session/{id}"),
                }),
            )
        }
        ("POST", "/v1/billing/meter_events") => {
            inner.meter_requests += 1;
            let (Some(event_name), Some(customer), Some(value)) = (
                field(form, "event_name"),
                field(form, "payload[stripe_customer_id]"),
                field(form, "payload[value]"),
            ) else {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Missing event_name, payload[stripe_customer_id] or payload[value].",
                );
            };
            let Ok(value) = value.parse::<i64>() else {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "payload[value] must be a whole number.",
                );
            };
            let identifier = field(form, "identifier")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("auto_{n}"));
            let timestamp = field(form, "timestamp")
                .and_then(|t| t.parse().ok())
                .unwrap_or(now);
            if timestamp < now - 35 * 86_400 || timestamp > now + 300 {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "timestamp must be within the past 35 days or up to 5 minutes in the future.",
                );
            }
            // Stripe enforces identifier uniqueness: a duplicate is not counted again.
            if !inner
                .meter_events
                .iter()
                .any(|e| e.identifier == identifier)
            {
                inner.meter_events.push(MeterEvent {
                    event_name: event_name.to_owned(),
                    customer: customer.to_owned(),
                    value,
                    identifier: identifier.clone(),
                    timestamp,
                });
            }
            (
                200,
                json!({
                    "object": "billing.meter_event",
                    "created": now,
                    "event_name": event_name,
                    "identifier": identifier,
                    "livemode": false,
                    "payload": {"stripe_customer_id": customer, "value": value.to_string()},
                    "timestamp": timestamp,
                }),
            )
        }
        ("GET", "/v1/invoices") => {
            let customer = field(form, "customer");
            let limit = field(form, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(10);
            let data: Vec<Value> = inner
                .invoices
                .iter()
                .rev()
                .filter(|i| customer.is_none_or(|c| i["customer"] == c))
                .take(limit)
                .cloned()
                .collect();
            (
                200,
                json!({"object": "list", "data": data, "has_more": false, "url": "/v1/invoices"}),
            )
        }
        _ => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("Unrecognized request URL ({method}: {path})."),
        ),
    }
}
