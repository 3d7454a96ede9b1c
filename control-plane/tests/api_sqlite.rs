//! The core flow on SQLite, the zero-setup default: timestamps round-trip, usage sorts and pages
//! correctly (SQLite stores timestamps as text), and a restart on the same data directory keeps
//! secrets, sessions and keys working (config is republished to the fresh in-process bus).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use control_plane::config::Config;
use control_plane::usage_store::DbUsageWriter;
use cp_support::{Cp, PASSWORD};
use sea_orm::EntityTrait;
use serde_json::json;
use shared::usage::{UsageEvent, UsageOutcome};
use time::OffsetDateTime;
use uuid::Uuid;

async fn chat(cp: &Cp, key: &str, model: &str) -> reqwest::Response {
    cp.client
        .post(format!("{}/v1/chat/completions", cp.base))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn core_flow_on_sqlite_survives_a_restart() {
    let cp = Cp::start_sqlite().await;
    assert!(
        cp.dir.path().join("switchyard.db").exists(),
        "default database file"
    );
    let secrets = cp.dir.path().join("secrets.json");
    assert!(secrets.exists(), "zero-setup secrets file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let s = cp.signup().await;
    let login = cp
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": s.email, "password": PASSWORD}),
        )
        .await
        .expect(200);
    let refreshed = cp
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await
        .expect(200);
    let secret = "sk-upstream-sqlite-secret";
    let provider = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "mock", "kind": "mock", "api_key": secret}),
        )
        .await
        .expect(201);
    let model = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({"name": "m", "provider_id": provider["id"], "upstream_model": "mock-1", "input_price_per_mtok": 0.15, "output_price_per_mtok": "0.6"}),
        )
        .await
        .expect(201);
    assert_eq!(model["input_price_micros_per_mtok"], 150_000);
    // The organization's catalog (composite key, upsert) and a deployment from it.
    cp.post(
        "/api/v1/catalog",
        Some(&s.token),
        json!({"id": "house/mock", "provider": "mock", "upstream_model": "mock-2", "context_window": 4096, "max_output_tokens": 512, "input_price_per_mtok": "0.5", "output_price_per_mtok": "1", "cached_input_price_per_mtok": "0.05"}),
    )
    .await
    .expect(201);
    cp.put(
        "/api/v1/catalog/house/mock",
        &s.token,
        json!({"provider": "mock", "upstream_model": "mock-2", "context_window": 4096, "max_output_tokens": 512, "input_price_per_mtok": "0.4", "output_price_per_mtok": "1", "cached_input_price_per_mtok": "0.05"}),
    )
    .await
    .expect(200);
    let from_catalog = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({"name": "m2", "provider_id": provider["id"], "catalog_id": "house/mock"}),
        )
        .await
        .expect(201);
    assert_eq!(from_catalog["input_price_micros_per_mtok"], 400_000);
    assert_eq!(from_catalog["cached_input_price_micros_per_mtok"], 50_000);
    assert_eq!(from_catalog["max_output_tokens"], 512);
    assert_eq!(
        cp.get(
            &format!("/api/v1/models/{}", from_catalog["id"].as_str().unwrap()),
            &s.token
        )
        .await
        .expect(200),
        from_catalog
    );
    let key = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "k", "expires_at": "2099-01-01T00:00:00.123456Z"}),
        )
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap().to_owned();

    // Timestamps read back equal what was returned at creation.
    let again = cp
        .get(&format!("/api/v1/keys/{key_id}"), &s.token)
        .await
        .expect(200);
    assert_eq!(again["created_at"], key["created_at"]);
    assert_eq!(again["expires_at"], "2099-01-01T00:00:00.123456Z");
    assert_eq!(
        cp.get(
            &format!("/api/v1/models/{}", model["id"].as_str().unwrap()),
            &s.token
        )
        .await
        .expect(200),
        model
    );
    let row = control_plane::entities::api_key::Entity::find_by_id(key_id.parse::<Uuid>().unwrap())
        .one(cp.running.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.expires_at.unwrap(),
        time::macros::datetime!(2099-01-01 00:00:00.123456 UTC)
    );

    // The gateway works and is metered.
    let resp = chat(&cp, key["key"].as_str().unwrap(), "m").await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let usage = cp.get("/api/v1/usage", &s.token).await.expect(200);
        if usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == request_id.as_str())
        {
            assert_eq!(usage["totals"]["requests"], 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage row did not appear"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Restart on the same data directory.
    let dir = cp.dir;
    let client = cp.client.clone();
    cp.running.shutdown().await.unwrap();
    let running = control_plane::start(Config::embedded(dir.path(), None))
        .await
        .expect("restarts");
    let cp = Cp {
        base: running.base_url(),
        running,
        client,
        dir,
    };

    // Same JWT secret: the old access token still works; the rotated refresh token too.
    cp.get("/api/v1/me", &s.token).await.expect(200);
    cp.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refreshed["refresh_token"]}),
    )
    .await
    .expect(200);
    // Same master key: the stored provider secret still opens.
    let row = control_plane::entities::provider_credential::Entity::find_by_id(
        provider["id"].as_str().unwrap().parse::<Uuid>().unwrap(),
    )
    .one(cp.running.db())
    .await
    .unwrap()
    .unwrap();
    let sealed = row.api_key_sealed.unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains(secret));
    assert_eq!(
        cp.running
            .state()
            .master_key
            .open(&sealed, provider["id"].as_str().unwrap())
            .unwrap(),
        secret
    );
    // Config was republished into the new in-process bus: the key works right away.
    assert_eq!(
        chat(&cp, key["key"].as_str().unwrap(), "m").await.status(),
        200
    );
    cp.delete(&format!("/api/v1/keys/{key_id}"), &s.token)
        .await
        .expect(204);
    assert_eq!(
        chat(&cp, key["key"].as_str().unwrap(), "m").await.status(),
        401
    );
    cp.stop().await;
}

fn event(tenant_id: Uuid, started_at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        id: Uuid::new_v4(),
        tenant_id,
        key_id: None,
        team_id: None,
        model: "m".to_owned(),
        deployment_id: None,
        provider_id: None,
        provider: None,
        upstream_model: None,
        endpoint: "chat.completions".to_owned(),
        stream: true,
        status: 502,
        outcome: UsageOutcome::Error,
        error_code: Some("upstream_error".to_owned()),
        prompt_tokens: 1,
        completion_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: true,
        cost_micros: 1,
        latency_ms: 3,
        ttft_ms: Some(2),
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

/// SQLite stores `…:00Z`, `…:00.5Z` and `…:00.05Z` as text that does not sort in time order;
/// the usage API must still list and page them newest first.
#[tokio::test]
async fn usage_orders_sub_second_timestamps_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let tenant: Uuid = s.tenant_id.parse().unwrap();
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let nanos = [
        0_u32,
        500_000_000,
        50_000_000,
        999_000_000,
        5_000_000,
        123_456_000,
    ];
    let events: Vec<UsageEvent> = nanos
        .iter()
        .map(|n| event(tenant, base.replace_nanosecond(*n).unwrap()))
        .collect();
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&events)
        .await
        .unwrap();

    let mut want: Vec<&UsageEvent> = events.iter().collect();
    want.sort_by_key(|e| std::cmp::Reverse(e.started_at));
    let want: Vec<String> = want.iter().map(|e| e.id.to_string()).collect();
    let all = cp.get("/api/v1/usage", &s.token).await.expect(200);
    let got: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);
    let first = &all["data"][0];
    assert_eq!(first["outcome"], "error");
    assert_eq!(first["tokens_estimated"], true);
    assert_eq!(first["ttft_ms"], 2);
    let newest = base.replace_nanosecond(999_000_000).unwrap();
    assert_eq!(
        first["started_at"],
        newest
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );

    let mut seen = Vec::new();
    let mut path = "/api/v1/usage?limit=4".to_owned();
    loop {
        let page = cp.get(&path, &s.token).await.expect(200);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_str() {
            Some(c) => path = format!("/api/v1/usage?limit=4&before={c}"),
            None => break,
        }
    }
    assert_eq!(seen, want);
    cp.stop().await;
}
