//! Budget alerts end to end: two control planes on one PostgreSQL database (both run the
//! detector and the webhook sender), spend driven through recorded usage, and a webhook
//! receiver on 127.0.0.1 that fails the first two deliveries. Checks: one alert per threshold
//! per window, one delivery each with a stable id, signed as documented, retried with backoff,
//! never sent twice once delivered nor by both control planes at once; the webhook settings and
//! `GET /alerts` (pages, roles).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use control_plane::config::{Config, Secret};
use control_plane::usage_store::DbUsageWriter;
use cp_support::{Cp, Session};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    delivery: String,
    signature: String,
    content_type: String,
    body: Bytes,
    answered: u16,
}

/// A webhook receiver that answers 500 to its first `fail_first` requests, then 204.
struct Receiver {
    fail_first: usize,
    got: Mutex<Vec<Received>>,
}

impl Receiver {
    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn for_delivery(&self, id: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.delivery == id)
            .collect()
    }
}

async fn hook(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut got = rx.got.lock().unwrap();
    let status = if got.len() < rx.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    got.push(Received {
        at: Instant::now(),
        delivery: header("x-switchyard-delivery"),
        signature: header("x-switchyard-signature"),
        content_type: header("content-type"),
        body,
        answered: status.as_u16(),
    });
    status
}

async fn start_receiver(fail_first: usize) -> (String, Arc<Receiver>) {
    let rx = Arc::new(Receiver {
        fail_first,
        got: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hooks/switchyard", axum::routing::post(hook))
        .with_state(Arc::clone(&rx));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hooks/switchyard"), rx)
}

/// Checks `x-switchyard-signature` the way a receiver would: `t=<unix>,v1=<hex>` with
/// v1 = HMAC-SHA256(secret, "<t>.<body>").
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let Ok(sig) = hex::decode(v1) else {
        return false;
    };
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (OffsetDateTime::now_utc().unix_timestamp() - t).abs() < 300);
    fresh && mac.verify_slice(&sig).is_ok()
}

/// The master key and JWT secret every control plane of this test binary uses: they share one
/// database (as production control planes do), so each must open the others' sealed secrets.
fn shared_secrets(c: &mut Config) {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| shared::crypto::MasterKey::generate().to_hex());
    c.master_key = Some(Secret::new(key.clone()));
    c.jwt_secret = Some(Secret::new("alerts-test-jwt-secret-0123456789abcdef"));
    c.alert_interval_ms = 50;
}

/// A control plane on the test binary's database, checking budgets every 50 ms.
async fn control_plane() -> Cp {
    Cp::start_configured(Some(cp_support::database_url().await), shared_secrets).await
}

async fn record(cp: &Cp, s: &Session, team: &str, cost: i64) {
    let mut e = testkit::records::usage_event();
    e.tenant_id = s.tenant_id.parse().unwrap();
    e.team_id = Some(team.parse().unwrap());
    e.cost_micros = cost;
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[e])
        .await
        .expect("usage stored");
}

/// Waits until `GET /alerts` lists `n` alerts, the newest delivered; returns the list.
async fn delivered_alerts(cp: &Cp, s: &Session, n: usize) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        last = cp.get("/api/v1/alerts", &s.token).await.expect(200);
        let data = last["data"].as_array().unwrap();
        if data.len() == n && data[0]["delivery"]["status"] == "delivered" {
            return last;
        }
        tokio::time::sleep(testkit::poll::INTERVAL).await;
    }
    panic!("timed out waiting for {n} delivered alerts; last: {last}");
}

#[tokio::test]
async fn each_threshold_fires_once_signed_and_retried_until_delivered() {
    // Two control planes on one database: both run the detector and the sender.
    let cp = control_plane().await;
    let other_cp = control_plane().await;
    let (url, rx) = start_receiver(2).await;
    let s = cp.signup().await;

    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"alert_webhook_url": url}),
        )
        .await
        .expect(200);
    assert_eq!(org["alert_webhook_url"], url.as_str());
    assert_eq!(org["alert_webhook_secret_set"], true);
    let secret = org["alert_webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let org = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert_eq!(org["alert_webhook_url"], url.as_str());
    assert_eq!(org["alert_webhook_secret_set"], true);
    assert!(org.get("alert_webhook_secret").is_none(), "{org}");

    let team = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": "search"}))
        .await
        .expect(201);
    let team_id = team["id"].as_str().unwrap().to_owned();
    let budget = cp
        .post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": "team", "scope_id": team_id, "limit_usd": "1", "period": "daily", "alert_thresholds": [50, 100]}),
        )
        .await
        .expect(201);
    let budget_id = budget["id"].as_str().unwrap().to_owned();

    // 60 % of the budget: the 50 % threshold fires.
    record(&cp, &s, &team_id, 600_000).await;
    let alerts = delivered_alerts(&cp, &s, 1).await;
    let alert = &alerts["data"][0];
    assert_eq!(alert["budget_id"], budget_id.as_str());
    assert_eq!(alert["threshold"], 50);
    assert_eq!(alert["spent_usd"], "0.6");
    assert_eq!(alert["limit_usd"], "1");
    assert_eq!(alert["scope"], "team");
    assert_eq!(alert["period_start"], budget["period_start"]);
    let delivery = &alert["delivery"];
    assert_eq!(delivery["attempts"], 3, "{alert}");
    assert!(delivery["last_error"].is_null(), "{alert}");
    let delivery_id = delivery["id"].as_str().unwrap().to_owned();

    // Three POSTs of the same delivery (500, 500, then 2xx), identical bodies, each signed,
    // spaced by the backoff (1 s, then 2 s).
    let got = rx.for_delivery(&delivery_id);
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 500, 204],
        "{got:?}"
    );
    assert_eq!(rx.requests().len(), 3, "nothing else was sent");
    for r in &got {
        assert_eq!(r.body, got[0].body);
        assert_eq!(r.content_type, "application/json");
        assert!(verify(&secret, &r.signature, &r.body), "{r:?}");
        assert!(!verify("whsec_wrong", &r.signature, &r.body));
    }
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(900),
        "{got:?}"
    );
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(1900),
        "{got:?}"
    );
    let event: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["id"], alert["id"]);
    assert_eq!(event["type"], "budget.threshold_crossed");
    assert!(event["created_at"].is_string());
    assert_eq!(
        event["data"],
        json!({
            "budget_id": budget_id, "scope": "team", "scope_id": team_id, "threshold": 50,
            "spent_usd": "0.6", "limit_usd": "1",
            "period_start": budget["period_start"], "period_end": budget["period_end"],
        })
    );

    // Past 100 %: one more alert, delivered at the first attempt, signed with a rotated secret.
    let rotated = cp
        .post(
            "/api/v1/organization/webhook-secret",
            Some(&s.token),
            json!({}),
        )
        .await
        .expect(200);
    let new_secret = rotated["alert_webhook_secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    record(&cp, &s, &team_id, 500_000).await;
    let alerts = delivered_alerts(&cp, &s, 2).await;
    let newest = &alerts["data"][0];
    assert_eq!(newest["threshold"], 100);
    assert_eq!(newest["spent_usd"], "1.1");
    assert_eq!(newest["delivery"]["attempts"], 1);
    let second = rx.for_delivery(newest["delivery"]["id"].as_str().unwrap());
    assert_eq!(second.len(), 1);
    assert!(verify(&new_secret, &second[0].signature, &second[0].body));
    assert!(!verify(&secret, &second[0].signature, &second[0].body));

    // Nothing fires again: more passes of the detector (on either control plane) find every
    // crossing recorded, and the receiver got each delivery exactly once with a 2xx.
    for c in [&cp, &other_cp] {
        let fired = control_plane::alerts::detect(c.running.state(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(fired, 0);
    }
    let all = rx.requests();
    assert_eq!(all.len(), 4, "{all:?}");
    let ok: Vec<&str> = all
        .iter()
        .filter(|r| r.answered < 300)
        .map(|r| r.delivery.as_str())
        .collect();
    assert_eq!(ok.len(), 2);
    assert_ne!(ok[0], ok[1]);

    // Pages, newest first.
    let page = cp.get("/api/v1/alerts?limit=1", &s.token).await.expect(200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["threshold"], 100);
    let before = page["next_before"].as_str().unwrap();
    let page = cp
        .get(&format!("/api/v1/alerts?limit=1&before={before}"), &s.token)
        .await
        .expect(200);
    assert_eq!(page["data"][0]["threshold"], 50);
    let before = page["next_before"].as_str().unwrap();
    let page = cp
        .get(&format!("/api/v1/alerts?limit=1&before={before}"), &s.token)
        .await
        .expect(200);
    assert_eq!(page["data"], json!([]));
    assert!(page["next_before"].is_null());
    cp.get("/api/v1/alerts?limit=0", &s.token)
        .await
        .expect_error(400, "validation_failed");

    other_cp.stop().await;
    cp.stop().await;
}

#[tokio::test]
async fn webhook_settings_are_validated_and_restricted() {
    let cp = control_plane().await;
    let owner = cp.signup().await;
    for bad in [
        "ftp://example.com/hook",
        "not a url",
        "https://user:pw@example.com/hook",
        "http://169.254.169.254/latest",
    ] {
        let msg = cp
            .patch(
                "/api/v1/organization",
                &owner.token,
                json!({"alert_webhook_url": bad}),
            )
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with("alert_webhook_url"), "{bad} → {msg}");
    }
    let org = cp
        .get("/api/v1/organization", &owner.token)
        .await
        .expect(200);
    assert!(org["alert_webhook_url"].is_null());
    assert_eq!(org["alert_webhook_secret_set"], false);

    let set = cp
        .patch(
            "/api/v1/organization",
            &owner.token,
            json!({"alert_webhook_url": "http://127.0.0.1:9/hook"}),
        )
        .await
        .expect(200);
    assert!(set["alert_webhook_secret"].is_string());
    // Changing the URL keeps the secret (not shown again); null clears the URL only.
    let changed = cp
        .patch(
            "/api/v1/organization",
            &owner.token,
            json!({"alert_webhook_url": "http://127.0.0.1:10/hook"}),
        )
        .await
        .expect(200);
    assert!(changed.get("alert_webhook_secret").is_none(), "{changed}");
    let cleared = cp
        .patch(
            "/api/v1/organization",
            &owner.token,
            json!({"alert_webhook_url": null}),
        )
        .await
        .expect(200);
    assert!(cleared["alert_webhook_url"].is_null());
    assert_eq!(cleared["alert_webhook_secret_set"], true);

    for role in ["member", "viewer"] {
        let user = cp.signup().await;
        let joined = cp.join(&owner, &user, role).await;
        cp.get("/api/v1/alerts", &joined.token)
            .await
            .expect_error(403, "forbidden");
        cp.post(
            "/api/v1/organization/webhook-secret",
            Some(&joined.token),
            json!({}),
        )
        .await
        .expect_error(403, "forbidden");
        cp.patch(
            "/api/v1/organization",
            &joined.token,
            json!({"alert_webhook_url": "http://127.0.0.1:9/hook"}),
        )
        .await
        .expect_error(403, "forbidden");
    }
    let admin = cp.signup().await;
    let admin = cp.join(&owner, &admin, "admin").await;
    cp.get("/api/v1/alerts", &admin.token).await.expect(200);
    cp.stop().await;
}

#[tokio::test]
async fn retries_go_to_the_url_set_now() {
    let cp = control_plane().await;
    let (broken_url, broken) = start_receiver(usize::MAX).await;
    let (fixed_url, fixed) = start_receiver(0).await;
    let s = cp.signup().await;
    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"alert_webhook_url": broken_url}),
        )
        .await
        .expect(200);
    let secret = org["alert_webhook_secret"].as_str().unwrap().to_owned();
    let team = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": "t"}))
        .await
        .expect(201);
    let team_id = team["id"].as_str().unwrap().to_owned();
    cp.post(
        "/api/v1/budgets",
        Some(&s.token),
        json!({"scope": "team", "scope_id": team_id, "limit_usd": "2", "period": "weekly", "alert_thresholds": [10]}),
    )
    .await
    .expect(201);
    record(&cp, &s, &team_id, 300_000).await;
    testkit::poll::eventually(
        "the broken receiver is tried",
        Duration::from_secs(20),
        || async { !broken.requests().is_empty() },
    )
    .await;
    cp.patch(
        "/api/v1/organization",
        &s.token,
        json!({"alert_webhook_url": fixed_url}),
    )
    .await
    .expect(200);
    let alerts = delivered_alerts(&cp, &s, 1).await;
    let delivery_id = alerts["data"][0]["delivery"]["id"].as_str().unwrap();
    let got = fixed.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].delivery, delivery_id);
    assert!(verify(&secret, &got[0].signature, &got[0].body));
    assert!(broken.requests().iter().all(|r| r.delivery == delivery_id));
    assert_eq!(
        alerts["data"][0]["delivery"]["attempts"],
        broken.requests().len() + 1
    );
    cp.stop().await;
}

#[tokio::test]
async fn alerts_fire_and_deliver_on_sqlite() {
    let cp = Cp::start_configured(None, shared_secrets).await;
    let (url, rx) = start_receiver(1).await;
    let s = cp.signup().await;
    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"alert_webhook_url": url}),
        )
        .await
        .expect(200);
    let secret = org["alert_webhook_secret"].as_str().unwrap().to_owned();
    let team = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": "t"}))
        .await
        .expect(201);
    let team_id = team["id"].as_str().unwrap().to_owned();
    cp.post(
        "/api/v1/budgets",
        Some(&s.token),
        json!({"scope": "team", "scope_id": team_id, "limit_usd": "0.5", "period": "monthly", "timezone": "Asia/Tokyo", "alert_thresholds": [80, 100]}),
    )
    .await
    .expect(201);
    record(&cp, &s, &team_id, 500_000).await;
    let alerts = delivered_alerts(&cp, &s, 2).await;
    let thresholds: Vec<&Value> = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["threshold"])
        .collect();
    let mut sorted: Vec<i64> = thresholds.iter().map(|t| t.as_i64().unwrap()).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![80, 100]);
    testkit::poll::eventually(
        "both deliveries delivered",
        Duration::from_secs(20),
        || async {
            let list = cp.get("/api/v1/alerts", &s.token).await.expect(200);
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["delivery"]["status"] == "delivered")
        },
    )
    .await;
    let got = rx.requests();
    assert_eq!(
        got.iter().filter(|r| r.answered < 300).count(),
        2,
        "{got:?}"
    );
    assert_eq!(
        got.len(),
        3,
        "one failure, then each delivered once: {got:?}"
    );
    assert!(got.iter().all(|r| verify(&secret, &r.signature, &r.body)));
    assert_eq!(
        control_plane::alerts::detect(cp.running.state(), OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
    cp.stop().await;
}
