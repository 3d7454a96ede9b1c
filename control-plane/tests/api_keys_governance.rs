//! Key governance through the control API, against a real control plane on PostgreSQL (the
//! zero-setup mode's in-process bus and embedded gateway): `PATCH /keys/{id}` fields round
//! trip and are published in the key's `KeyRecord`; rotation publishes the old secret with the
//! grace's expiry, the old secret works through the gateway during the grace and is refused
//! after it; a second rotation and revocation end every old secret; `last_used_at` follows
//! usage, one write per key per ingest batch, never lowered; team and organization limits are
//! published in the `TenantConfig`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::Arc;
use std::time::Duration;

use cp_support::{Cp, Session};
use serde_json::{Value, json};
use shared::bus::MemoryBus;
use shared::config::KeyRecord;
use shared::governance::{KeyEndpoint, RateLimits};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn record(bus: &Arc<MemoryBus>, key: &str) -> Option<Arc<KeyRecord>> {
    bus.get_key(&shared::keys::hash_api_key(key))
}

fn ts(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}")),
        &Rfc3339,
    )
    .unwrap()
}

async fn chat(cp: &Cp, key: &str) -> u16 {
    cp.client
        .post(format!("{}/v1/chat/completions", cp.base))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn new_key(cp: &Cp, s: &Session, body: Value) -> (String, String, Value) {
    let v = cp
        .post("/api/v1/keys", Some(&s.token), body)
        .await
        .expect(201);
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
        v,
    )
}

#[tokio::test]
async fn patch_fields_round_trip_and_are_published() {
    let cp = Cp::start().await;
    let bus = cp.running.memory_bus().expect("zero-setup mode").clone();
    let s = cp.signup().await;
    let (id, key, created) = new_key(
        &cp,
        &s,
        json!({"name": "gov", "rpm_limit": 10, "metadata": {"service": "search"}}),
    )
    .await;
    assert_eq!(created["rpm_limit"], 10);
    assert_eq!(created["metadata"], json!({"service": "search"}));
    assert_eq!(created["last_used_at"], Value::Null);
    let rec = record(&bus, &key).expect("published");
    assert_eq!(rec.limits.rpm_limit, Some(10));
    assert_eq!(
        rec.metadata.get("service").map(String::as_str),
        Some("search")
    );

    let path = format!("/api/v1/keys/{id}");
    let patched = cp
        .patch(
            &path,
            &s.token,
            json!({
                "name": "gov-2",
                "models": ["gpt-test"],
                "expires_at": "2099-01-01T00:00:00Z",
                "rpm_limit": 100,
                "tpm_limit": 50000,
                "endpoints": ["chat", "embeddings", "chat"],
                "allowed_cidrs": ["10.1.2.3/8", "2001:db8::1"],
                "max_tokens_per_request": 512,
                "metadata": {"env": "prod", "team.tag": "a-b"},
            }),
        )
        .await
        .expect(200);
    let got = cp.get(&path, &s.token).await.expect(200);
    assert_eq!(patched, got, "PATCH answers what GET shows");
    assert_eq!(got["name"], "gov-2");
    assert_eq!(got["models"], json!(["gpt-test"]));
    assert_eq!(got["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(got["rpm_limit"], 100);
    assert_eq!(got["tpm_limit"], 50000);
    assert_eq!(got["endpoints"], json!(["chat", "embeddings"]));
    assert_eq!(
        got["allowed_cidrs"],
        json!(["10.0.0.0/8", "2001:db8::1/128"])
    );
    assert_eq!(got["max_tokens_per_request"], 512);
    assert_eq!(got["metadata"], json!({"env": "prod", "team.tag": "a-b"}));

    let rec = record(&bus, &key).expect("published");
    assert_eq!(
        rec.limits,
        RateLimits {
            rpm_limit: Some(100),
            tpm_limit: Some(50000)
        }
    );
    assert_eq!(
        rec.endpoints,
        Some(vec![KeyEndpoint::Chat, KeyEndpoint::Embeddings])
    );
    assert_eq!(
        rec.allowed_cidrs
            .as_ref()
            .map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>()),
        Some(vec!["10.0.0.0/8".to_owned(), "2001:db8::1/128".to_owned()])
    );
    assert_eq!(rec.max_tokens_per_request, Some(512));
    assert_eq!(rec.metadata.len(), 2);
    assert_eq!(rec.allowed_models, Some(vec!["gpt-test".to_owned()]));
    assert_eq!(rec.name, "gov-2");

    // null clears every field; omitted fields stay.
    let cleared = cp
        .patch(
            &path,
            &s.token,
            json!({
                "models": null, "expires_at": null, "rpm_limit": null, "tpm_limit": null,
                "endpoints": null, "allowed_cidrs": null, "max_tokens_per_request": null,
                "metadata": null,
            }),
        )
        .await
        .expect(200);
    assert_eq!(cleared["name"], "gov-2");
    for field in [
        "models",
        "expires_at",
        "rpm_limit",
        "tpm_limit",
        "endpoints",
        "allowed_cidrs",
        "max_tokens_per_request",
    ] {
        assert_eq!(cleared[field], Value::Null, "{field}: {cleared}");
    }
    assert_eq!(cleared["metadata"], json!({}));
    let rec = record(&bus, &key).expect("published");
    assert!(rec.limits.is_empty() && rec.endpoints.is_none() && rec.allowed_cidrs.is_none());
    assert!(rec.metadata.is_empty() && rec.max_tokens_per_request.is_none());

    // Refusals name the field; unknown fields are refused.
    for (body, field) in [
        (json!({"allowed_cidrs": ["not-an-ip"]}), "allowed_cidrs[0]"),
        (json!({"endpoints": ["files"]}), "endpoints"),
        (json!({"rpm_limit": 0}), "rpm_limit"),
        (json!({"metadata": {"bad key": "x"}}), "metadata"),
        (json!({"metadata": {"k": "x".repeat(257)}}), "metadata.k"),
        (json!({"name": null}), "name"),
        (json!({"team_id": Uuid::new_v4()}), "team_id"),
    ] {
        let msg = cp
            .patch(&path, &s.token, body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.contains(field), "{body} → {msg}");
    }
    let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    cp.patch(&path, &s.token, json!({"allowed_cidrs": many}))
        .await
        .expect_error(400, "validation_failed");
    cp.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_only() {
    let cp = Cp::start().await;
    let bus = cp.running.memory_bus().expect("zero-setup mode").clone();
    let s = cp.signup().await;
    cp.mock_model(&s, "gpt-test").await;
    let (id, old, _) = new_key(&cp, &s, json!({"name": "rotating", "rpm_limit": 7000})).await;
    assert_eq!(chat(&cp, &old).await, 200);

    // Rotate with a one-hour grace: both secrets work, both records carry the key id.
    let rotate = format!("/api/v1/keys/{id}/rotate");
    let before = OffsetDateTime::now_utc();
    let rotated = cp
        .post(&rotate, Some(&s.token), json!({"grace_seconds": 3600}))
        .await
        .expect(200);
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id.as_str());
    assert_eq!(rotated["rpm_limit"], 7000, "the key keeps its settings");
    let grace_end = ts(&rotated["previous_expires_at"]);
    assert!(grace_end >= before + time::Duration::seconds(3600));
    assert!(grace_end <= OffsetDateTime::now_utc() + time::Duration::seconds(3600));
    let old_rec = record(&bus, &old).expect("old secret still published");
    let new_rec = record(&bus, &new).expect("new secret published");
    assert_eq!(old_rec.key_id, new_rec.key_id);
    assert_eq!(old_rec.expires_at, Some(grace_end));
    assert_eq!(new_rec.expires_at, None);
    assert_eq!(old_rec.limits.rpm_limit, Some(7000));
    assert_eq!(
        chat(&cp, &old).await,
        200,
        "old secret works during the grace"
    );
    assert_eq!(chat(&cp, &new).await, 200);
    // A full republish (what a control plane does at start, e.g. after Redis lost its data)
    // publishes both secrets too.
    let fresh = MemoryBus::new();
    control_plane::sync::ConfigSync::new(
        cp.running.db().clone(),
        control_plane::publish::Publisher::in_memory(fresh.clone()),
    )
    .publish_all()
    .await
    .unwrap();
    assert_eq!(record(&fresh, &old).unwrap().expires_at, Some(grace_end));
    assert_eq!(record(&fresh, &new).unwrap().key_id, new_rec.key_id);
    // The list shows the new prefix only, never a secret.
    let listed = cp.get("/api/v1/keys", &s.token).await.expect(200);
    assert!(!listed.to_string().contains(&new) && !listed.to_string().contains(&old));

    // A second rotation with a one-second grace: the first secret is revoked at once, the
    // second one expires after a second.
    let again = cp
        .post(&rotate, Some(&s.token), json!({"grace_seconds": 1}))
        .await
        .expect(200);
    let newest = again["key"].as_str().unwrap().to_owned();
    assert!(
        record(&bus, &old)
            .expect("still published")
            .revoked_at
            .is_some()
    );
    assert_eq!(
        chat(&cp, &old).await,
        401,
        "the older secret is refused at once"
    );
    let mid = record(&bus, &new).unwrap();
    assert_eq!(mid.expires_at, Some(ts(&again["previous_expires_at"])));
    assert_eq!(chat(&cp, &newest).await, 200);
    testkit::poll::eventually(
        "the previous secret is refused after its grace",
        Duration::from_secs(10),
        || async { chat(&cp, &new).await == 401 },
    )
    .await;
    assert_eq!(chat(&cp, &newest).await, 200);

    // grace 0: refused at once. Bad graces are refused.
    let last = cp
        .post(&rotate, Some(&s.token), json!({"grace_seconds": 0}))
        .await
        .expect(200);
    assert_eq!(chat(&cp, &newest).await, 401);
    assert_eq!(last["previous_expires_at"], Value::Null);
    let latest = last["key"].as_str().unwrap().to_owned();
    cp.post(&rotate, Some(&s.token), json!({"grace_seconds": 604_801}))
        .await
        .expect_error(400, "validation_failed");

    // Revoking during a grace revokes both secrets.
    let during = cp
        .post(&rotate, Some(&s.token), json!({}))
        .await
        .expect(200);
    let (a, b) = (latest, during["key"].as_str().unwrap().to_owned());
    assert_eq!(chat(&cp, &a).await, 200);
    cp.delete(&format!("/api/v1/keys/{id}"), &s.token)
        .await
        .expect(204);
    assert_eq!((chat(&cp, &a).await, chat(&cp, &b).await), (401, 401));
    assert!(record(&bus, &a).unwrap().revoked_at.is_some());
    cp.post(&rotate, Some(&s.token), json!({}))
        .await
        .expect_error(409, "conflict");

    // Every rotation is audited, without secrets.
    let audit = cp
        .get(
            &format!("/api/v1/audit?object_id={id}&action=rotate"),
            &s.token,
        )
        .await
        .expect(200);
    assert_eq!(audit["data"].as_array().unwrap().len(), 4, "{audit}");
    for secret in [&old, &new, &newest] {
        assert!(!audit.to_string().contains(secret.as_str()));
    }
    cp.stop().await;
}

#[tokio::test]
async fn last_used_at_follows_usage_once_per_batch() {
    last_used_at(Cp::start().await).await;
}

#[tokio::test]
async fn last_used_at_on_sqlite() {
    last_used_at(Cp::start_sqlite().await).await;
}

async fn last_used_at(cp: Cp) {
    let s = cp.signup().await;
    cp.mock_model(&s, "gpt-test").await;
    let (id, key, _) = new_key(&cp, &s, json!({"name": "used"})).await;
    let path = format!("/api/v1/keys/{id}");
    let started = OffsetDateTime::now_utc();
    assert_eq!(chat(&cp, &key).await, 200);
    testkit::poll::eventually("last_used_at is set", Duration::from_secs(10), || async {
        !cp.get(&path, &s.token).await.expect(200)["last_used_at"].is_null()
    })
    .await;
    let first = ts(&cp.get(&path, &s.token).await.expect(200)["last_used_at"]);
    assert!(
        first >= started - time::Duration::seconds(1),
        "{first} vs {started}"
    );
    assert!(first <= OffsetDateTime::now_utc());

    // The writer directly: the latest event of the batch wins, an older batch never lowers it.
    let writer = control_plane::usage_store::DbUsageWriter::new(cp.running.db().clone());
    let key_id: Uuid = id.parse().unwrap();
    let tenant_id: Uuid = s.tenant_id.parse().unwrap();
    let at = |secs: i64| {
        let mut e = testkit::records::usage_event();
        e.key_id = Some(key_id);
        e.tenant_id = tenant_id;
        e.started_at = first + time::Duration::seconds(secs);
        e
    };
    writer.insert(&[at(5), at(30), at(10)]).await.unwrap();
    let got = ts(&cp.get(&path, &s.token).await.expect(200)["last_used_at"]);
    assert_eq!(got, first + time::Duration::seconds(30));
    writer.insert(&[at(20)]).await.unwrap();
    let got = ts(&cp.get(&path, &s.token).await.expect(200)["last_used_at"]);
    assert_eq!(got, first + time::Duration::seconds(30), "never lowered");
    cp.stop().await;
}

#[tokio::test]
async fn team_and_organization_limits_are_published() {
    let cp = Cp::start().await;
    let bus = cp.running.memory_bus().expect("zero-setup mode").clone();
    let s = cp.signup().await;
    let tenant: Uuid = s.tenant_id.parse().unwrap();
    let team = cp
        .post(
            "/api/v1/teams",
            Some(&s.token),
            json!({"name": "limited", "rpm_limit": 30}),
        )
        .await
        .expect(201);
    assert_eq!(team["rpm_limit"], 30);
    assert_eq!(team["tpm_limit"], Value::Null);
    let team_id: Uuid = team["id"].as_str().unwrap().parse().unwrap();
    let cfg = bus.get_tenant(tenant).expect("tenant published");
    assert_eq!(
        cfg.team_limits.get(&team_id).and_then(|l| l.rpm_limit),
        Some(30)
    );

    let path = format!("/api/v1/teams/{team_id}");
    let patched = cp
        .patch(
            &path,
            &s.token,
            json!({"tpm_limit": 9000, "rpm_limit": null}),
        )
        .await
        .expect(200);
    assert_eq!(
        (patched["rpm_limit"].clone(), patched["tpm_limit"].clone()),
        (Value::Null, json!(9000))
    );
    let cfg = bus.get_tenant(tenant).unwrap();
    assert_eq!(
        cfg.team_limits.get(&team_id),
        Some(&RateLimits {
            rpm_limit: None,
            tpm_limit: Some(9000)
        })
    );
    cp.patch(&path, &s.token, json!({"tpm_limit": null}))
        .await
        .expect(200);
    assert!(bus.get_tenant(tenant).unwrap().team_limits.is_empty());

    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"rpm_limit": 1000, "tpm_limit": 1000000}),
        )
        .await
        .expect(200);
    assert_eq!(org["rpm_limit"], 1000);
    let got = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert_eq!(got["tpm_limit"], 1_000_000);
    let cfg = bus.get_tenant(tenant).unwrap();
    assert_eq!(
        cfg.limits,
        RateLimits {
            rpm_limit: Some(1000),
            tpm_limit: Some(1_000_000)
        }
    );
    cp.patch("/api/v1/organization", &s.token, json!({"rpm_limit": null}))
        .await
        .expect(200);
    assert_eq!(bus.get_tenant(tenant).unwrap().limits.rpm_limit, None);
    cp.patch("/api/v1/organization", &s.token, json!({"rpm_limit": 0}))
        .await
        .expect_error(400, "validation_failed");
    // Audited with before and after.
    let audit = cp
        .get("/api/v1/audit?object_kind=organization", &s.token)
        .await
        .expect(200);
    let newest = &audit["data"][0];
    assert_eq!(newest["before"]["rpm_limit"], 1000);
    assert_eq!(newest["after"]["rpm_limit"], Value::Null);
    cp.stop().await;
}

#[tokio::test]
async fn keys_can_be_listed_per_team() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let team = |name: &'static str| {
        let (cp, s) = (&cp, &s);
        async move {
            cp.post("/api/v1/teams", Some(&s.token), json!({"name": name}))
                .await
                .expect(201)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (search, billing) = (team("search").await, team("billing").await);
    for (name, team_id) in [("a", Some(&search)), ("b", Some(&billing)), ("c", None)] {
        let mut body = json!({"name": name});
        if let Some(t) = team_id {
            body["team_id"] = json!(t);
        }
        cp.post("/api/v1/keys", Some(&s.token), body)
            .await
            .expect(201);
    }
    let names = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = cp.get("/api/v1/keys", &s.token).await.expect(200);
    assert_eq!(names(all).len(), 3);
    let only = cp
        .get(&format!("/api/v1/keys?team_id={search}"), &s.token)
        .await
        .expect(200);
    assert_eq!(names(only), vec!["a".to_owned()]);
    let msg = cp
        .get("/api/v1/keys?team_id=nope", &s.token)
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.contains("team_id"), "{msg}");
    cp.stop().await;
}
