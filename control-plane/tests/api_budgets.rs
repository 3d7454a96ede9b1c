//! Budgets through the control API against a real control plane (PostgreSQL, and SQLite at the
//! end): the round trip, the current period and its spend (from recorded usage), every
//! validation error naming its field, roles, tenant isolation, what reaches the (in-process)
//! data plane's config, and a deleted team taking its budgets along.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::Arc;

use control_plane::usage_store::DbUsageWriter;
use cp_support::{Cp, Session};
use serde_json::{Value, json};
use shared::config::TenantConfig;
use shared::governance::{BudgetPeriod, BudgetScope, period_window};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The tenant config the in-process data plane holds now.
fn published(cp: &Cp, s: &Session) -> Arc<TenantConfig> {
    cp.running
        .memory_bus()
        .expect("zero-setup mode")
        .get_tenant(s.tenant_id.parse().unwrap())
        .expect("tenant published")
}

async fn team(cp: &Cp, s: &Session, name: &str) -> String {
    let t = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": name}))
        .await
        .expect(201);
    t["id"].as_str().unwrap().to_owned()
}

/// Records usage of `cost` µ$ for `s`'s organization (team and key optional), started now.
async fn record(cp: &Cp, s: &Session, team: Option<&str>, key: Option<&str>, cost: i64) {
    let mut e = testkit::records::usage_event();
    e.tenant_id = s.tenant_id.parse().unwrap();
    e.team_id = team.map(|t| t.parse().unwrap());
    e.key_id = key.map(|k| k.parse().unwrap());
    e.cost_micros = cost;
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[e])
        .await
        .expect("usage stored");
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

#[tokio::test]
async fn budgets_round_trip_show_their_period_and_reach_the_data_plane() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let team_id = team(&cp, &s, "search").await;

    let created = cp
        .post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({
                "scope": "team", "scope_id": team_id, "limit_usd": "12.50",
                "period": "monthly", "timezone": "Europe/Berlin",
                "alert_thresholds": [100, 50, 50],
            }),
        )
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope"], "team");
    assert_eq!(created["scope_id"], team_id.as_str());
    assert_eq!(created["limit_usd"], "12.5");
    assert_eq!(created["limit_micros"], 12_500_000);
    assert_eq!(created["period"], "monthly");
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["hard"], true);
    assert_eq!(created["alert_thresholds"], json!([50, 100]));
    assert_eq!(created["spent_usd"], "0");
    assert_eq!(created["reserved_usd"], "0");
    let window = period_window(
        BudgetPeriod::Monthly,
        "Europe/Berlin",
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(created["period_start"], rfc3339(window.start));
    assert_eq!(created["period_end"], rfc3339(window.end.unwrap()));

    // Published before the call returned.
    let cfg = published(&cp, &s);
    assert_eq!(cfg.budgets.len(), 1, "{:?}", cfg.budgets);
    let rec = &cfg.budgets[0];
    assert_eq!(rec.id.to_string(), id);
    assert_eq!(rec.scope, BudgetScope::Team);
    assert_eq!(rec.scope_id.to_string(), team_id);
    assert_eq!(rec.limit_micros, 12_500_000);
    assert_eq!(rec.period, BudgetPeriod::Monthly);
    assert_eq!(rec.timezone, "Europe/Berlin");
    assert!(rec.hard);
    assert_eq!(rec.alert_thresholds, vec![50, 100]);

    // Spend recorded for the team (and only the team) shows up.
    record(&cp, &s, Some(&team_id), None, 1_250_000).await;
    record(&cp, &s, Some(&team_id), None, 250_001).await;
    record(&cp, &s, None, None, 9_000_000).await;
    let got = cp
        .get(&format!("/api/v1/budgets/{id}"), &s.token)
        .await
        .expect(200);
    assert_eq!(got["spent_usd"], "1.500001");
    let list = cp.get("/api/v1/budgets", &s.token).await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The forecast extrapolates to the period's end from *now*, so two reads a few
    // milliseconds apart may differ in its last digits; everything else is the same object.
    let without_forecast = |v: &Value| {
        let mut v = v.clone();
        let forecast = v.as_object_mut().unwrap().remove("forecast_usd");
        assert!(forecast.is_some_and(|f| f.as_str().is_some()), "{v}");
        v
    };
    assert_eq!(without_forecast(&list["data"][0]), without_forecast(&got));

    // Defaults: UTC, hard, [50, 80, 100]; a tenant budget's scope_id defaults to the org.
    let tenant_budget = cp
        .post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": "tenant", "limit_usd": 100, "period": "daily"}),
        )
        .await
        .expect(201);
    assert_eq!(tenant_budget["scope_id"], s.tenant_id.as_str());
    assert_eq!(tenant_budget["timezone"], "UTC");
    assert_eq!(tenant_budget["hard"], true);
    assert_eq!(tenant_budget["alert_thresholds"], json!([50, 80, 100]));
    assert_eq!(tenant_budget["limit_usd"], "100");
    // All of the organization's recorded spend today counts.
    assert_eq!(tenant_budget["spent_usd"], "10.500001");
    let day = period_window(BudgetPeriod::Daily, "UTC", OffsetDateTime::now_utc()).unwrap();
    assert_eq!(tenant_budget["period_start"], rfc3339(day.start));

    // PATCH: lifetime has no end; the change is published.
    let patched = cp
        .patch(
            &format!("/api/v1/budgets/{id}"),
            &s.token,
            json!({"limit_usd": 0.1, "period": "lifetime", "hard": false, "alert_thresholds": []}),
        )
        .await
        .expect(200);
    assert_eq!(patched["limit_usd"], "0.1");
    assert_eq!(patched["period"], "lifetime");
    assert_eq!(patched["hard"], false);
    assert_eq!(patched["alert_thresholds"], json!([]));
    assert_eq!(patched["period_start"], "1970-01-01T00:00:00Z");
    assert!(patched["period_end"].is_null(), "{patched}");
    assert_eq!(patched["spent_usd"], "1.500001");
    assert_eq!(patched["created_at"], created["created_at"]);
    let cfg = published(&cp, &s);
    let rec = cfg.budgets.iter().find(|b| b.id.to_string() == id).unwrap();
    assert_eq!(rec.limit_micros, 100_000);
    assert_eq!(rec.period, BudgetPeriod::Lifetime);
    assert!(!rec.hard);

    // DELETE: gone from the API and from the published config.
    cp.delete(&format!("/api/v1/budgets/{id}"), &s.token)
        .await
        .expect(204);
    cp.get(&format!("/api/v1/budgets/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    cp.delete(&format!("/api/v1/budgets/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    let cfg = published(&cp, &s);
    assert_eq!(cfg.budgets.len(), 1);
    assert_eq!(cfg.budgets[0].scope, BudgetScope::Tenant);
    cp.stop().await;
}

#[tokio::test]
async fn invalid_budgets_are_refused_naming_the_field() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let other = cp.signup().await;
    let team_id = team(&cp, &s, "t").await;
    let other_team = team(&cp, &other, "t").await;
    let key = cp
        .post("/api/v1/keys", Some(&s.token), json!({"name": "k"}))
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap().to_owned();
    let base = json!({"scope": "team", "scope_id": team_id, "limit_usd": "5", "period": "weekly"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("timezone", json!("Mars/Olympus")), "timezone"),
        (with("timezone", json!("")), "timezone"),
        (with("limit_usd", json!("1e3")), "limit_usd"),
        (with("limit_usd", json!("-1")), "limit_usd"),
        (with("limit_usd", json!(-1)), "limit_usd"),
        (with("limit_usd", json!("0.0000001")), "limit_usd"),
        (with("limit_usd", json!(0)), "limit_usd"),
        (with("limit_usd", json!("abc")), "limit_usd"),
        (with("limit_usd", json!(null)), "limit_usd"),
        (with("limit_usd", json!("1000001")), "limit_usd"),
        (with("period", json!("hourly")), "period"),
        (with("scope", json!("org")), "scope"),
        (with("alert_thresholds", json!([0])), "alert_thresholds"),
        (with("alert_thresholds", json!([1001])), "alert_thresholds"),
        (
            with(
                "alert_thresholds",
                json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
            ),
            "alert_thresholds",
        ),
        (with("alert_thresholds", json!([-5])), "alert_thresholds"),
        (with("nope", json!(1)), "nope"),
        (
            json!({"scope": "team", "limit_usd": "5", "period": "weekly"}),
            "scope_id",
        ),
    ];
    for (body, field) in cases {
        let msg = cp
            .post("/api/v1/budgets", Some(&s.token), body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{body} → {msg}");
    }
    // A scope_id that is not this organization's: 404, like a missing one.
    for (scope, id) in [
        ("team", other_team.clone()),
        ("team", Uuid::new_v4().to_string()),
        ("team", key_id.clone()),
        ("key", Uuid::new_v4().to_string()),
        ("key", team_id.clone()),
        ("tenant", other.tenant_id.clone()),
    ] {
        cp.post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": scope, "scope_id": id, "limit_usd": "5", "period": "daily"}),
        )
        .await
        .expect_error(404, "not_found");
    }
    // A key budget of this org's key is fine.
    let kb = cp
        .post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": "key", "scope_id": key_id, "limit_usd": "5", "period": "daily"}),
        )
        .await
        .expect(201);
    let kb_id = kb["id"].as_str().unwrap();
    // PATCH validates too, and cannot change the scope.
    for (body, field) in [
        (json!({"timezone": "Nowhere/Land"}), "timezone"),
        (json!({"limit_usd": "0"}), "limit_usd"),
        (json!({"limit_usd": null}), "limit_usd"),
        (json!({"period": "yearly"}), "period"),
        (json!({"scope": "tenant"}), "scope"),
    ] {
        let msg = cp
            .patch(&format!("/api/v1/budgets/{kb_id}"), &s.token, body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{body} → {msg}");
    }
    // Another organization sees nothing.
    cp.get(&format!("/api/v1/budgets/{kb_id}"), &other.token)
        .await
        .expect_error(404, "not_found");
    cp.delete(&format!("/api/v1/budgets/{kb_id}"), &other.token)
        .await
        .expect_error(404, "not_found");
    let list = cp.get("/api/v1/budgets", &other.token).await.expect(200);
    assert_eq!(list["data"], json!([]));
    cp.stop().await;
}

#[tokio::test]
async fn owners_and_admins_manage_budgets_and_everyone_reads_them() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let body = json!({"scope": "tenant", "limit_usd": "5", "period": "daily"});
    let b = cp
        .post("/api/v1/budgets", Some(&owner.token), body.clone())
        .await
        .expect(201);
    let path = format!("/api/v1/budgets/{}", b["id"].as_str().unwrap());
    for role in ["admin", "member", "viewer"] {
        let user = cp.signup().await;
        let joined = cp.join(&owner, &user, role).await;
        cp.get(&path, &joined.token).await.expect(200);
        cp.get("/api/v1/budgets", &joined.token).await.expect(200);
        let create = cp
            .post("/api/v1/budgets", Some(&joined.token), body.clone())
            .await;
        let patch = cp
            .patch(&path, &joined.token, json!({"limit_usd": "6"}))
            .await;
        if role == "admin" {
            let created = create.expect(201);
            patch.expect(200);
            cp.delete(
                &format!("/api/v1/budgets/{}", created["id"].as_str().unwrap()),
                &joined.token,
            )
            .await
            .expect(204);
        } else {
            create.expect_error(403, "forbidden");
            patch.expect_error(403, "forbidden");
            cp.delete(&path, &joined.token)
                .await
                .expect_error(403, "forbidden");
        }
    }
    cp.call(reqwest::Method::GET, "/api/v1/budgets", None, None)
        .await
        .expect_error(401, "unauthorized");
    cp.stop().await;
}

#[tokio::test]
async fn deleting_a_team_deletes_its_budgets() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let team_id = team(&cp, &s, "doomed").await;
    let keep = team(&cp, &s, "kept").await;
    for t in [&team_id, &keep] {
        cp.post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": "team", "scope_id": t, "limit_usd": "5", "period": "daily"}),
        )
        .await
        .expect(201);
    }
    assert_eq!(published(&cp, &s).budgets.len(), 2);
    cp.delete(&format!("/api/v1/teams/{team_id}"), &s.token)
        .await
        .expect(204);
    let list = cp.get("/api/v1/budgets", &s.token).await.expect(200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(data[0]["scope_id"], keep.as_str());
    let cfg = published(&cp, &s);
    assert_eq!(cfg.budgets.len(), 1);
    assert_eq!(cfg.budgets[0].scope_id.to_string(), keep);
    cp.stop().await;
}

#[tokio::test]
async fn budgets_work_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let key = cp
        .post("/api/v1/keys", Some(&s.token), json!({"name": "k"}))
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap().to_owned();
    let b = cp
        .post(
            "/api/v1/budgets",
            Some(&s.token),
            json!({"scope": "key", "scope_id": key_id, "limit_usd": 2.5, "period": "weekly", "timezone": "America/New_York"}),
        )
        .await
        .expect(201);
    record(&cp, &s, None, Some(&key_id), 700_000).await;
    record(&cp, &s, None, Some(&Uuid::new_v4().to_string()), 1).await;
    let got = cp
        .get(
            &format!("/api/v1/budgets/{}", b["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .expect(200);
    assert_eq!(got["spent_usd"], "0.7");
    assert_eq!(got["limit_usd"], "2.5");
    let week = period_window(
        BudgetPeriod::Weekly,
        "America/New_York",
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(got["period_start"], rfc3339(week.start));
    assert_eq!(published(&cp, &s).budgets.len(), 1);
    cp.stop().await;
}

/// A restarted zero-setup gateway starts with an empty in-memory ledger; the spend the database
/// recorded is put back before the first request is served, so a spent budget stays spent.
#[tokio::test]
async fn a_restart_keeps_what_was_spent_before_the_first_request() {
    let url = cp_support::database_url().await;
    let data = tempfile::tempdir().expect("data dir");
    let settings = |dir: std::path::PathBuf| {
        move |c: &mut control_plane::config::Config| {
            // The same secrets across the restart; no periodic alert pass to hide behind.
            c.data_dir = dir;
            c.alert_interval_ms = 3_600_000;
        }
    };
    let cp = Cp::start_configured(Some(url.clone()), settings(data.path().to_owned())).await;
    let s = cp.signup().await;
    cp.mock_model(&s, "gpt-test").await;
    let key = cp
        .post("/api/v1/keys", Some(&s.token), json!({"name": "capped"}))
        .await
        .expect(201);
    let (key_id, secret) = (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    );
    cp.post(
        "/api/v1/budgets",
        Some(&s.token),
        json!({"scope": "key", "scope_id": key_id, "limit_usd": "1", "period": "monthly"}),
    )
    .await
    .expect(201);
    // The whole cap recorded, as by requests this process's ledger never saw.
    record(&cp, &s, None, Some(&key_id), 1_000_000).await;
    cp.stop().await;

    let cp = Cp::start_configured(Some(url), settings(data.path().to_owned())).await;
    let first = testkit::e2e::poll_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(20),
        || async {
            let r = testkit::e2e::chat(
                &cp.client,
                &cp.base,
                &secret,
                &json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await?;
            // Until the key is loaded; anything else is the first real answer.
            anyhow::ensure!(r.status() != 401, "key not loaded yet");
            Ok(r)
        },
    )
    .await
    .expect("an answer");
    assert_eq!(first.status(), 429);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    cp.stop().await;
}
