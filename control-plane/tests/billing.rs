//! Billing against the fake Stripe (`testkit::fake_stripe`): the whole journey (checkout →
//! webhook → metered usage reports → payment failure → grace → suspension (402 on the gateway,
//! both API formats) → payment → reinstatement), idempotency shown by replaying a report and a
//! webhook, late usage corrected by a delta, reconciliation, webhook signature refusals, the
//! free credit, and billing off in the zero-setup default.
//!
//! Usage enters through the hour rollups (`usage_rollups`), seeded directly in closed hours so
//! the expected amounts are exact (the gateway requests the tests make add their own, tiny,
//! cost to the current hour, which is never reported before it closes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod cp_support;

use std::time::Duration;

use control_plane::billing::{BillingSettings, billed_micros, report_identifier};
use control_plane::config::Secret;
use cp_support::{Cp, Session};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use testkit::fake_stripe::{self, FakeStripe};
use uuid::Uuid;

const SK: &str = "sk_test_switchyard_fake";
const WHSEC: &str = "whsec_test_switchyard";
const PRICE: &str = "price_test_metered";
const WAIT: Duration = Duration::from_secs(15);

fn settings(fake: &FakeStripe, grace_secs: u64) -> BillingSettings {
    BillingSettings {
        stripe_secret_key: Some(Secret::new(SK)),
        stripe_webhook_secret: Some(Secret::new(WHSEC)),
        stripe_api_base: fake.base_url(),
        stripe_price_id: Some(PRICE.to_owned()),
        grace_secs,
        interval_ms: 100,
        lateness_secs: 0,
        ..BillingSettings::default()
    }
}

/// A control plane on a database of its own: billing workers act on every organization of
/// their database, and each test has its own fake Stripe (a real deployment has one).
async fn start(fake: &FakeStripe, grace_secs: u64) -> Cp {
    let db = testkit::pg::fresh_database()
        .await
        .expect("fresh Postgres database (is Postgres running?)");
    Cp::start_configured(Some(db.url), |c| c.billing = settings(fake, grace_secs)).await
}

fn db(cp: &Cp) -> &sea_orm::DatabaseConnection {
    &cp.running.state().db
}

/// One untagged hour rollup row of `cost_micros` for `tenant` in the hour starting at `bucket`
/// (a distinct `dims` per call: another model, say).
async fn seed_hour(cp: &Cp, tenant: &str, bucket: i64, dims: &str, cost_micros: i64) {
    let tenant = Uuid::parse_str(tenant).expect("tenant id");
    db(cp)
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO usage_rollups (tenant_id, grain, bucket_start, dims_hash, model, endpoint,
                 tag_key, tag_value, requests, successes, cache_hits, tokens_estimated,
                 prompt_tokens, completion_tokens, cache_read_tokens, cost_micros, error_classes,
                 latency_sketch, ttft_sketch, updated_at)
             VALUES ($1, 'hour', $2, $3, $3, 'chat.completions', '', '', 1, 1, 0, 0, 10, 10, 0, $4,
                 '{}', $5, $5, now())",
            [
                tenant.into(),
                bucket.into(),
                dims.into(),
                cost_micros.into(),
                Vec::<u8>::new().into(),
            ],
        ))
        .await
        .expect("seed rollup");
}

/// Waits for the next hour when less than `margin` is left of the current one: a test that
/// counts closed hour windows would see one more if the hour turned while it ran.
async fn clear_of_the_hour_boundary(margin: Duration) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let left = 3600 - now.rem_euclid(3600);
    if left < margin.as_secs() as i64 {
        tokio::time::sleep(Duration::from_secs(left as u64 + 1)).await;
    }
}

fn this_hour() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    now - now.rem_euclid(3600)
}

fn webhook_url(cp: &Cp) -> String {
    format!("{}/api/v1/billing/webhook", cp.base)
}

async fn new_key(cp: &Cp, s: &Session) -> String {
    cp.mock_model(s, "mock-chat").await;
    cp.post("/api/v1/keys", Some(&s.token), json!({"name": "gateway"}))
        .await
        .expect(201)["key"]
        .as_str()
        .expect("key")
        .to_owned()
}

async fn chat(cp: &Cp, key: &str) -> (StatusCode, Value) {
    let resp = cp
        .client
        .post(format!("{}/v1/chat/completions", cp.base))
        .bearer_auth(key)
        .json(&json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn messages(cp: &Cp, key: &str) -> (StatusCode, Value) {
    let resp = cp
        .client
        .post(format!("{}/v1/messages", cp.base))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "mock-chat", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(cp: &Cp, event: &Value) -> (u16, Value) {
    fake_stripe::send_signed(&cp.client, &webhook_url(cp), event, WHSEC)
        .await
        .expect("webhook delivered")
}

async fn billing(cp: &Cp, s: &Session) -> Value {
    cp.get("/api/v1/billing", &s.token).await.expect(200)
}

/// The whole Stripe journey, with a report and a webhook replayed.
#[tokio::test]
async fn stripe_journey_checkout_usage_failure_suspension_payment() {
    // The journey counts closed hour windows: it must not straddle an hour boundary (it takes
    // seconds; give it a minute).
    clear_of_the_hour_boundary(Duration::from_secs(60)).await;
    let fake = FakeStripe::start(SK).await.expect("fake stripe");
    let cp = start(&fake, 1).await;
    let s = cp.signup().await;
    let key = new_key(&cp, &s).await;
    assert_eq!(chat(&cp, &key).await.0, 200);

    // Before subscribing: the free plan, no customer.
    let b = billing(&cp, &s).await;
    assert_eq!(b["enabled"], true, "{b}");
    assert_eq!(b["plan"]["name"], "free", "{b}");
    assert_eq!(b["status"], "free", "{b}");

    // Checkout: creates the customer (once), answers the Checkout page.
    let checkout = cp
        .post("/api/v1/billing/checkout", Some(&s.token), json!({}))
        .await
        .expect(200);
    let url = checkout["url"].as_str().expect("url");
    assert!(
        url.starts_with("https://checkout.stripe.com/"),
        "{checkout}"
    );
    let customer = checkout["stripe_customer_id"]
        .as_str()
        .expect("customer")
        .to_owned();
    let again = cp
        .post("/api/v1/billing/checkout", Some(&s.token), json!({}))
        .await
        .expect(200);
    assert_eq!(again["stripe_customer_id"], customer.as_str());
    assert_eq!(fake.customers().len(), 1, "one customer per organization");
    let sessions = fake.checkout_sessions();
    let session = sessions.last().expect("a checkout session").clone();
    assert_eq!(session.price.as_deref(), Some(PRICE));
    assert_eq!(
        session.client_reference_id.as_deref(),
        Some(s.tenant_id.as_str())
    );

    // Usage before the subscription (two closed hours) and in the current hour.
    let h2 = this_hour() - 2 * 3600;
    let h1 = this_hour() - 3600;
    seed_hour(&cp, &s.tenant_id, h2, "gpt-a", 1_000_000).await;
    seed_hour(&cp, &s.tenant_id, h1, "gpt-a", 250_001).await;
    seed_hour(&cp, &s.tenant_id, this_hour(), "gpt-a", 42).await;

    // Stripe reports the completed checkout; a replay of the same event is not applied again.
    let completed = fake.complete_checkout(&session);
    let (status, ack) = send(&cp, &completed).await;
    assert_eq!(
        (status, ack["outcome"].as_str()),
        (200, Some("applied")),
        "{ack}"
    );
    let (status, ack) = send(&cp, &completed).await;
    assert_eq!(
        (status, ack["outcome"].as_str()),
        (200, Some("duplicate")),
        "{ack}"
    );
    let b = billing(&cp, &s).await;
    assert_eq!(b["plan"]["name"], "payg", "{b}");
    assert_eq!(b["status"], "active", "{b}");

    // The reporter sends one meter event per closed window (not the open hour).
    let expected = billed_micros(1_000_000, 2_000) + billed_micros(250_001, 2_000);
    testkit::poll::eventually("both closed windows reported", WAIT, || async {
        fake.metered_total(&customer) == expected
    })
    .await;
    let tenant = Uuid::parse_str(&s.tenant_id).expect("uuid");
    let ids: Vec<String> = fake
        .meter_events()
        .iter()
        .map(|e| e.identifier.clone())
        .collect();
    assert!(ids.contains(&report_identifier(tenant, h2, 0)), "{ids:?}");
    assert!(ids.contains(&report_identifier(tenant, h1, 0)), "{ids:?}");
    assert_eq!(fake.meter_events().len(), 2);
    assert!(
        fake.meter_events()
            .iter()
            .all(|e| e.event_name == "switchyard_usage")
    );

    // Replay a report: as if the process died after Stripe accepted it but before recording
    // that. The resend carries the same identifier and Idempotency-Key: billed once.
    let requests_before = fake.meter_requests();
    let replays_before = fake.idempotent_replays();
    db(&cp)
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE billing_reports SET reported_at = NULL WHERE tenant_id = $1 AND window_start = $2",
            [tenant.into(), h2.into()],
        ))
        .await
        .expect("forget the confirmation");
    testkit::poll::eventually("the unconfirmed report is resent and confirmed", WAIT, || async {
        let row = db(&cp)
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM billing_reports WHERE tenant_id = $1 AND reported_at IS NULL",
                [tenant.into()],
            ))
            .await
            .expect("query")
            .expect("row");
        row.try_get::<i64>("", "n").expect("n") == 0 && fake.meter_requests() > requests_before
    })
    .await;
    assert!(
        fake.idempotent_replays() > replays_before,
        "the resend was an idempotent replay"
    );
    assert_eq!(fake.metered_total(&customer), expected, "billed once");
    assert_eq!(fake.meter_events().len(), 2);

    // Late usage in a reported window: only the difference goes out, as a correction.
    seed_hour(&cp, &s.tenant_id, h2, "gpt-b", 500_000).await;
    let expected = billed_micros(1_500_000, 2_000) + billed_micros(250_001, 2_000);
    testkit::poll::eventually(
        "the late usage is reported as a correction",
        WAIT,
        || async { fake.metered_total(&customer) == expected },
    )
    .await;
    let correction = fake
        .meter_events()
        .into_iter()
        .find(|e| e.identifier == report_identifier(tenant, h2, 1))
        .expect("a correction with its own identifier");
    assert_eq!(
        correction.value,
        billed_micros(1_500_000, 2_000) - billed_micros(1_000_000, 2_000)
    );

    // Reconciliation: reported = metered for every closed window.
    let b = billing(&cp, &s).await;
    let r = &b["reconciliation"];
    assert_eq!(r["reconciled"], true, "{b}");
    assert_eq!(r["closed_windows"], 2, "{b}");
    assert_eq!(r["metered_micros"], expected, "{b}");
    assert_eq!(r["reported_micros"], expected, "{b}");
    // This month: the seeded hours plus the gateway requests' own (tiny) cost.
    let cost = b["current_period"]["cost_usd"].as_str().expect("cost");
    assert!(cost.starts_with("1.75"), "{b}");

    // Invoices come from Stripe.
    fake.add_invoice(&customer, 212, "paid");
    let b = billing(&cp, &s).await;
    assert_eq!(b["invoices"][0]["amount_due"], 212, "{b}");
    assert_eq!(b["invoices"][0]["status"], "paid", "{b}");

    // The portal.
    let portal = cp
        .post("/api/v1/billing/portal", Some(&s.token), json!({}))
        .await
        .expect(200);
    assert!(
        portal["url"]
            .as_str()
            .expect("url")
            .starts_with("https://billing.stripe.com/")
    );

    // A payment fails: past due during the grace period (1 s here), then suspended.
    let invoice = fake.add_invoice(&customer, 500, "open");
    let (status, ack) = send(&cp, &fake.event("invoice.payment_failed", invoice.clone())).await;
    assert_eq!(
        (status, ack["outcome"].as_str()),
        (200, Some("applied")),
        "{ack}"
    );
    testkit::poll::eventually(
        "the gateway refuses the suspended organization",
        WAIT,
        || async { chat(&cp, &key).await.0 == StatusCode::PAYMENT_REQUIRED },
    )
    .await;
    let (status, body) = chat(&cp, &key).await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["code"], "organization_suspended", "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("/api/v1/billing/portal"),
        "says how to fix it: {message}"
    );
    let (status, body) = messages(&cp, &key).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "billing_error", "{body}");
    let b = billing(&cp, &s).await;
    assert_eq!(b["status"], "suspended", "{b}");
    assert_eq!(b["suspension"]["reason"], "payment_failed", "{b}");

    // Paying lifts it at once (the webhook re-decides and publishes before answering).
    let paid = fake.event(
        "invoice.paid",
        json!({"id": invoice["id"], "object": "invoice",
                                                  "customer": customer, "status": "paid"}),
    );
    let (status, ack) = send(&cp, &paid).await;
    assert_eq!(
        (status, ack["outcome"].as_str()),
        (200, Some("applied")),
        "{ack}"
    );
    testkit::poll::eventually("requests work again", Duration::from_secs(1), || async {
        chat(&cp, &key).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(messages(&cp, &key).await.0, 200);
    let (_, ack) = send(&cp, &paid).await;
    assert_eq!(ack["outcome"], "duplicate");
    let b = billing(&cp, &s).await;
    assert_eq!(b["status"], "active", "{b}");
    assert!(b["suspension"].is_null(), "{b}");

    // The subscription is cancelled: back to the default plan.
    let (status, _) = send(
        &cp,
        &fake.event("customer.subscription.deleted", json!({"id": "sub_x", "object": "subscription",
                                                             "customer": customer, "status": "canceled"})),
    )
    .await;
    assert_eq!(status, 200);
    let b = billing(&cp, &s).await;
    assert_eq!(b["subscription_status"], "canceled", "{b}");
    cp.stop().await;
}

/// Unsigned, forged and stale webhooks are refused with 400 and change nothing.
#[tokio::test]
async fn unsigned_forged_and_stale_webhooks_are_refused() {
    let fake = FakeStripe::start(SK).await.expect("fake stripe");
    let cp = start(&fake, 0).await;
    let s = cp.signup().await;
    let checkout = cp
        .post("/api/v1/billing/checkout", Some(&s.token), json!({}))
        .await
        .expect(200);
    let customer = checkout["stripe_customer_id"].as_str().expect("customer");
    let failed = fake.event(
        "invoice.payment_failed",
        json!({"id": "in_1", "object": "invoice",
                                                              "customer": customer}),
    );
    let url = webhook_url(&cp);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cases = [
        (
            "unsigned",
            fake_stripe::send_webhook(&cp.client, &url, &failed, WHSEC, None).await,
        ),
        (
            "forged",
            fake_stripe::send_webhook(&cp.client, &url, &failed, "whsec_wrong", Some(now)).await,
        ),
        (
            "stale",
            fake_stripe::send_webhook(&cp.client, &url, &failed, WHSEC, Some(now - 3600)).await,
        ),
        (
            "future",
            fake_stripe::send_webhook(&cp.client, &url, &failed, WHSEC, Some(now + 3600)).await,
        ),
    ];
    for (what, result) in cases {
        let (status, body) = result.expect("delivered");
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{what}: {body}");
    }
    // A tampered body with a signature of the original.
    let payload = failed.to_string();
    let sig = fake_stripe::signature(&payload, WHSEC, now);
    let resp = cp
        .client
        .post(&url)
        .header("stripe-signature", sig)
        .body(payload.replace("in_1", "in_2"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
    let b = billing(&cp, &s).await;
    assert!(b["payment_failed_at"].is_null(), "nothing applied: {b}");
    assert_eq!(b["status"], "free", "{b}");
    // Signed properly, it applies (and with a grace of 0, suspends at once).
    let (status, ack) = send(&cp, &failed).await;
    assert_eq!(
        (status, ack["outcome"].as_str()),
        (200, Some("applied")),
        "{ack}"
    );
    let b = billing(&cp, &s).await;
    assert_eq!(b["suspension"]["reason"], "payment_failed", "{b}");
    cp.stop().await;
}

/// The free plan's included credit: spent → `credit_exhausted` (402); subscribing lifts it.
/// Every member (not only those who may read `GET /billing`) sees the suspension in
/// `GET /organization`.
#[tokio::test]
async fn spent_free_credit_suspends_until_subscribed() {
    let fake = FakeStripe::start(SK).await.expect("fake stripe");
    let cp = start(&fake, 3600).await;
    let s = cp.signup().await;
    let viewer = cp.join(&s, &cp.signup().await, "viewer").await;
    let org = cp
        .get("/api/v1/organization", &viewer.token)
        .await
        .expect(200);
    assert!(org["suspension"].is_null(), "{org}");
    let key = new_key(&cp, &s).await;
    assert_eq!(chat(&cp, &key).await.0, 200);
    // $5 of credit at a 20 % margin: $4.17 of provider cost spends it.
    seed_hour(&cp, &s.tenant_id, this_hour(), "gpt-a", 4_170_000).await;
    testkit::poll::eventually("suspended for spent credit", WAIT, || async {
        chat(&cp, &key).await.0 == StatusCode::PAYMENT_REQUIRED
    })
    .await;
    let (_, body) = chat(&cp, &key).await;
    assert_eq!(body["error"]["code"], "organization_suspended", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/v1/billing/checkout")
    );
    let b = billing(&cp, &s).await;
    assert_eq!(b["suspension"]["reason"], "credit_exhausted", "{b}");
    assert_eq!(b["current_period"]["credit_remaining_usd"], "0", "{b}");
    cp.get("/api/v1/billing", &viewer.token)
        .await
        .expect_error(403, "forbidden");
    let org = cp
        .get("/api/v1/organization", &viewer.token)
        .await
        .expect(200);
    assert_eq!(org["suspension"], b["suspension"], "{org}");
    assert!(
        org["suspension"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/v1/billing/checkout"),
        "{org}"
    );

    cp.post("/api/v1/billing/checkout", Some(&s.token), json!({}))
        .await
        .expect(200);
    let session = fake.checkout_sessions().last().expect("session").clone();
    let (status, _) = send(&cp, &fake.complete_checkout(&session)).await;
    assert_eq!(status, 200);
    testkit::poll::eventually(
        "reinstated on subscribing",
        Duration::from_secs(1),
        || async { chat(&cp, &key).await.0 == StatusCode::OK },
    )
    .await;
    let org = cp
        .get("/api/v1/organization", &viewer.token)
        .await
        .expect(200);
    assert!(org["suspension"].is_null(), "{org}");
    cp.stop().await;
}

/// Owners manage billing; admins read it; members do neither.
#[tokio::test]
async fn only_owners_manage_billing() {
    let fake = FakeStripe::start(SK).await.expect("fake stripe");
    let cp = start(&fake, 3600).await;
    let owner = cp.signup().await;
    let admin = cp.join(&owner, &cp.signup().await, "admin").await;
    let member = cp.join(&owner, &cp.signup().await, "member").await;
    cp.get("/api/v1/billing", &admin.token).await.expect(200);
    cp.post("/api/v1/billing/checkout", Some(&admin.token), json!({}))
        .await
        .expect_error(403, "forbidden");
    cp.get("/api/v1/billing", &member.token)
        .await
        .expect_error(403, "forbidden");
    cp.stop().await;
}

/// Without STRIPE_SECRET_KEY (the zero-setup default) billing is off, and says so.
#[tokio::test]
async fn billing_is_off_in_the_zero_setup_default() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let b = billing(&cp, &s).await;
    assert_eq!(b["enabled"], false, "{b}");
    let org = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert!(org["suspension"].is_null(), "not suspended: {org}");
    assert!(
        b["message"]
            .as_str()
            .expect("message")
            .contains("STRIPE_SECRET_KEY"),
        "{b}"
    );
    cp.post("/api/v1/billing/checkout", Some(&s.token), json!({}))
        .await
        .expect_error(409, "conflict");
    cp.post("/api/v1/billing/portal", Some(&s.token), json!({}))
        .await
        .expect_error(409, "conflict");
    let (status, _) = fake_stripe::send_webhook(
        &cp.client,
        &webhook_url(&cp),
        &json!({"id": "evt_1", "type": "invoice.paid", "data": {"object": {}}}),
        WHSEC,
        Some(time::OffsetDateTime::now_utc().unix_timestamp()),
    )
    .await
    .expect("delivered");
    assert_eq!(status, 409);
    cp.stop().await;
}
