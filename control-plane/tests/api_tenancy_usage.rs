//! Tenant isolation (another organization's objects look missing) and the usage API, fed both
//! through the usage writer and by real requests through the embedded gateway (mock provider).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::time::Duration;

use control_plane::usage_store::DbUsageWriter;
use cp_support::Cp;
use serde_json::{Value, json};
use shared::usage::{UsageEvent, UsageOutcome};
use time::OffsetDateTime;
use uuid::Uuid;

fn event(
    tenant_id: Uuid,
    key_id: Option<Uuid>,
    started_at: OffsetDateTime,
    prompt: u64,
    completion: u64,
    cost: i64,
) -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        tenant_id,
        key_id,
        team_id: None,
        model: "m".to_owned(),
        deployment_id: Some(Uuid::new_v4()),
        provider_id: Some(Uuid::new_v4()),
        provider: Some("mock".to_owned()),
        upstream_model: Some("mock-1".to_owned()),
        endpoint: "chat.completions".to_owned(),
        stream: false,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: cost,
        latency_ms: 12,
        ttft_ms: None,
        started_at,
        route: None,
        failed_attempts: Vec::new(),
        tags: Default::default(),
        region: None,
        error_class: None,
        cache_hit: false,
        payload: None,
        guardrails: Vec::new(),
    }
}

#[tokio::test]
async fn another_tenants_objects_are_not_found() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let b = cp.signup().await;
    let (provider, model) = cp.mock_model(&a, "a-model").await;
    let key = cp
        .post("/api/v1/keys", Some(&a.token), json!({"name": "a-key"}))
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap();
    let team = cp
        .post("/api/v1/teams", Some(&a.token), json!({"name": "a-team"}))
        .await
        .expect(201);
    let team_id = team["id"].as_str().unwrap();

    for path in [
        format!("/api/v1/keys/{key_id}"),
        format!("/api/v1/providers/{provider}"),
        format!("/api/v1/models/{model}"),
    ] {
        cp.get(&path, &b.token).await.expect_error(404, "not_found");
        cp.delete(&path, &b.token)
            .await
            .expect_error(404, "not_found");
        cp.get(&path, &a.token).await.expect(200);
    }
    cp.delete(&format!("/api/v1/teams/{team_id}"), &b.token)
        .await
        .expect_error(404, "not_found");
    cp.delete(&format!("/api/v1/members/{}", a.user_id), &b.token)
        .await
        .expect_error(404, "not_found");
    // References to A's objects from B's requests are just as missing.
    cp.post(
        "/api/v1/models",
        Some(&b.token),
        json!({"name": "x", "provider_id": provider, "upstream_model": "u", "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
    )
    .await
    .expect_error(404, "not_found");
    cp.post(
        "/api/v1/keys",
        Some(&b.token),
        json!({"name": "x", "team_id": team_id}),
    )
    .await
    .expect_error(404, "not_found");
    // Signing in to A's organization as B is refused.
    cp.post(
        "/api/v1/auth/login",
        None,
        json!({"email": b.email, "password": cp_support::PASSWORD, "organization_id": a.tenant_id}),
    )
    .await
    .expect_error(404, "not_found");
    // Lists are scoped, and A's objects survived B's attempts.
    for path in [
        "/api/v1/keys",
        "/api/v1/providers",
        "/api/v1/models",
        "/api/v1/teams",
    ] {
        assert_eq!(
            cp.get(path, &b.token).await.expect(200)["data"],
            json!([]),
            "{path}"
        );
        assert_eq!(
            cp.get(path, &a.token).await.expect(200)["data"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{path}"
        );
    }
    assert_eq!(
        cp.get("/api/v1/members", &b.token).await.expect(200)["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    cp.stop().await;
}

#[tokio::test]
async fn usage_is_listed_newest_first_with_totals_and_scoped_to_the_tenant() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let b = cp.signup().await;
    let key = cp
        .post("/api/v1/keys", Some(&a.token), json!({"name": "reporting"}))
        .await
        .expect(201);
    let key_id: Uuid = key["id"].as_str().unwrap().parse().unwrap();
    let ta: Uuid = a.tenant_id.parse().unwrap();
    let tb: Uuid = b.tenant_id.parse().unwrap();

    // Five events of A within one second (sub-second ordering matters), one of B.
    let base =
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::minutes(10);
    let offsets_ms = [0_i64, 500, 120, 5, 999];
    let events: Vec<UsageEvent> = offsets_ms
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            event(
                ta,
                Some(key_id),
                base + time::Duration::milliseconds(*ms),
                1000 + i as u64,
                500,
                7_500,
            )
        })
        .collect();
    let foreign = event(tb, None, base, 99_999, 99_999, 1_000_000);
    let writer = DbUsageWriter::new(cp.running.db().clone());
    writer.insert(&events).await.unwrap();
    writer.insert(std::slice::from_ref(&foreign)).await.unwrap();
    // Re-delivery is idempotent.
    assert_eq!(writer.insert(&events).await.unwrap(), 0);

    let usage = cp.get("/api/v1/usage", &a.token).await.expect(200);
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let mut expected: Vec<&UsageEvent> = events.iter().collect();
    expected.sort_by_key(|e| std::cmp::Reverse(e.started_at));
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let want: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, want, "newest first");
    let first = &rows[0];
    assert_eq!(first["key_id"], key_id.to_string());
    assert_eq!(first["key_name"], "reporting");
    assert_eq!(first["cost_micros"], 7_500);
    assert_eq!(first["cost_usd"], "0.0075");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["status"], 200);
    assert_eq!(first["provider"], "mock");
    assert_eq!(usage["totals"]["requests"], 5);
    assert_eq!(
        usage["totals"]["prompt_tokens"],
        1000 + 1001 + 1002 + 1003 + 1004
    );
    assert_eq!(usage["totals"]["completion_tokens"], 2500);
    assert_eq!(usage["totals"]["cost_micros"], 37_500);
    assert_eq!(usage["totals"]["cost_usd"], "0.0375");
    assert!(!usage.to_string().contains(&foreign.id.to_string()));

    // B sees only its own row and totals; A's cursor means nothing to B.
    let usage_b = cp.get("/api/v1/usage", &b.token).await.expect(200);
    assert_eq!(usage_b["data"].as_array().unwrap().len(), 1);
    assert_eq!(usage_b["data"][0]["id"], foreign.id.to_string());
    assert_eq!(usage_b["totals"]["requests"], 1);
    assert_eq!(usage_b["totals"]["cost_micros"], 1_000_000);
    cp.get(&format!("/api/v1/usage?before={}", events[0].id), &b.token)
        .await
        .expect_error(400, "validation_failed");

    // Paging with the cursor walks every row once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/usage?limit=2&before={c}"),
            None => "/api/v1/usage?limit=2".to_owned(),
        };
        let page = cp.get(&path, &a.token).await.expect(200);
        assert_eq!(page["totals"]["requests"], 5, "totals ignore paging");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, want);

    // A time window narrows rows and totals.
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let since = fmt(base + time::Duration::milliseconds(100));
    let until = fmt(base + time::Duration::milliseconds(600));
    let windowed = cp
        .get(
            &format!(
                "/api/v1/usage?since={}&until={}",
                urlencode(&since),
                urlencode(&until)
            ),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(windowed["data"].as_array().unwrap().len(), 2, "{windowed}");
    assert_eq!(windowed["totals"]["requests"], 2);
    let before = cp
        .get(
            &format!("/api/v1/usage?before={}", urlencode(&since)),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(
        before["data"].as_array().unwrap().len(),
        2,
        "events at +0 ms and +5 ms"
    );
    cp.get("/api/v1/usage?since=yesterday", &a.token)
        .await
        .expect_error(400, "validation_failed");
    cp.get("/api/v1/usage?limit=1001", &a.token)
        .await
        .expect_error(400, "validation_failed");
    cp.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// A real request through the embedded `/v1` (mock provider) shows up in `/usage` with its cost.
#[tokio::test]
async fn a_gateway_request_is_metered_into_usage() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    cp.mock_model(&s, "mock-chat").await;
    let key = cp
        .post("/api/v1/keys", Some(&s.token), json!({"name": "gateway"}))
        .await
        .expect(201);
    let resp = cp
        .client
        .post(format!("{}/v1/chat/completions", cp.base))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    let usage = &body["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_i64().unwrap(),
        usage["completion_tokens"].as_i64().unwrap(),
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let page = cp.get("/api/v1/usage", &s.token).await.expect(200);
        if let Some(row) = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == request_id.as_str())
        {
            break row.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage row did not appear: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["model"], "mock-chat");
    assert_eq!(row["key_name"], "gateway");
    assert_eq!(row["prompt_tokens"], prompt);
    assert_eq!(row["completion_tokens"], completion);
    // Prices of mock_model: $2.5 / $10 per million tokens.
    let cost = shared::money::cost_micros(prompt as u64, completion as u64, 2_500_000, 10_000_000);
    assert_eq!(row["cost_micros"], cost);
    assert_eq!(row["cost_usd"], shared::money::format_usd(cost));

    // Revocation is effective on the gateway as soon as DELETE returns.
    cp.delete(
        &format!("/api/v1/keys/{}", key["id"].as_str().unwrap()),
        &s.token,
    )
    .await
    .expect(204);
    let resp = cp
        .client
        .post(format!("{}/v1/chat/completions", cp.base))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({"model": "mock-chat", "messages": [{"role": "user", "content": "again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    cp.stop().await;
}

/// Prompt-cache token counts travel from the usage event to the row and the API (per row and
/// in the totals), on both databases.
async fn cache_tokens_round_trip(cp: Cp) {
    let s = cp.signup().await;
    let tenant: Uuid = s.tenant_id.parse().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut cached = event(tenant, None, now, 1000, 10, 5);
    cached.cache_read_tokens = 800;
    cached.cache_write_tokens = 150;
    let mut writes = event(tenant, None, now - time::Duration::seconds(1), 500, 5, 3);
    writes.cache_write_tokens = 400;
    let plain = event(tenant, None, now - time::Duration::seconds(2), 20, 2, 1);
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[cached.clone(), writes.clone(), plain.clone()])
        .await
        .unwrap();
    let usage = cp.get("/api/v1/usage", &s.token).await.expect(200);
    let rows = usage["data"].as_array().unwrap();
    let row = |id: Uuid| {
        rows.iter()
            .find(|r| r["id"] == id.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(row(cached.id)["cache_read_tokens"], 800);
    assert_eq!(row(cached.id)["cache_write_tokens"], 150);
    assert_eq!(row(writes.id)["cache_read_tokens"], 0);
    assert_eq!(row(writes.id)["cache_write_tokens"], 400);
    assert_eq!(row(plain.id)["cache_read_tokens"], 0);
    assert_eq!(usage["totals"]["cache_read_tokens"], 800);
    assert_eq!(usage["totals"]["cache_write_tokens"], 550);
    assert_eq!(usage["totals"]["prompt_tokens"], 1520);
    cp.stop().await;
}

#[tokio::test]
async fn cache_tokens_round_trip_on_postgres() {
    cache_tokens_round_trip(Cp::start().await).await;
}

#[tokio::test]
async fn cache_tokens_round_trip_on_sqlite() {
    cache_tokens_round_trip(Cp::start_sqlite().await).await;
}
