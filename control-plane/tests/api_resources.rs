//! Keys, providers, models, teams and roles against a real control plane on PostgreSQL,
//! including what reaches the (in-process) data plane and how secrets are stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::Cp;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn keys_are_shown_once_listed_without_secrets_and_revoked_everywhere() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let bus = cp.running.memory_bus().expect("zero-setup mode").clone();

    let team = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": "search"}))
        .await
        .expect(201);
    cp.post("/api/v1/teams", Some(&s.token), json!({"name": "search"}))
        .await
        .expect_error(409, "conflict");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let created = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "backend", "team_id": team["id"], "models": ["m1", "m2", "m1"], "expires_at": expires}),
        )
        .await
        .expect(201);
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(shared::keys::looks_like_key(&key), "{key}");
    assert_eq!(created["prefix"], shared::keys::display_prefix(&key));
    assert_eq!(created["models"], json!(["m1", "m2"]));
    assert_eq!(created["team_id"], team["id"]);
    assert!(created["revoked_at"].is_null());
    assert!(created["expires_at"].is_string() && created["created_at"].is_string());
    let id = created["id"].as_str().unwrap().to_owned();
    let hash = shared::keys::hash_api_key(&key);

    // Published before the POST returned.
    let record = bus.get_key(&hash).expect("key record published");
    assert_eq!(record.key_id.to_string(), id);
    assert_eq!(
        record.allowed_models,
        Some(vec!["m1".to_owned(), "m2".to_owned()])
    );
    assert!(record.revoked_at.is_none());
    assert_eq!(
        record.team_id.map(|t| t.to_string()),
        team["id"].as_str().map(str::to_owned)
    );

    // GET never shows the key or its hash.
    let list = cp.get("/api/v1/keys", &s.token).await.expect(200);
    let one = cp
        .get(&format!("/api/v1/keys/{id}"), &s.token)
        .await
        .expect(200);
    for body in [&list, &one] {
        let text = body.to_string();
        assert!(!text.contains(&key) && !text.contains(&hash), "{text}");
        assert!(!text.contains("\"key\""), "{text}");
    }
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["id"], id.as_str());
    assert_eq!(one["prefix"], created["prefix"]);

    // Revoke: 204, published before the DELETE returned, idempotent.
    cp.delete(&format!("/api/v1/keys/{id}"), &s.token)
        .await
        .expect(204);
    let record = bus.get_key(&hash).expect("still published");
    assert!(
        record.revoked_at.is_some(),
        "revocation published before DELETE returned"
    );
    assert_eq!(record.version, 2);
    cp.delete(&format!("/api/v1/keys/{id}"), &s.token)
        .await
        .expect(204);
    let one = cp
        .get(&format!("/api/v1/keys/{id}"), &s.token)
        .await
        .expect(200);
    assert!(one["revoked_at"].is_string());
    cp.delete(&format!("/api/v1/keys/{}", Uuid::new_v4()), &s.token)
        .await
        .expect_error(404, "not_found");

    // Validation of key fields.
    let past = "2000-01-01T00:00:00Z";
    let msg = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "x", "expires_at": past}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("expires_at"), "{msg}");
    cp.post(
        "/api/v1/keys",
        Some(&s.token),
        json!({"name": "x", "expires_at": "soon"}),
    )
    .await
    .expect_error(400, "validation_failed");
    cp.post(
        "/api/v1/keys",
        Some(&s.token),
        json!({"name": "x", "models": []}),
    )
    .await
    .expect_error(400, "validation_failed");
    cp.post("/api/v1/keys", Some(&s.token), json!({"name": ""}))
        .await
        .expect_error(400, "validation_failed");
    cp.post(
        "/api/v1/keys",
        Some(&s.token),
        json!({"name": "x", "team_id": Uuid::new_v4()}),
    )
    .await
    .expect_error(404, "not_found");

    // Deleting the team detaches (and republishes) its keys.
    let k2 = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "k2", "team_id": team["id"]}),
        )
        .await
        .expect(201);
    cp.delete(
        &format!("/api/v1/teams/{}", team["id"].as_str().unwrap()),
        &s.token,
    )
    .await
    .expect(204);
    let k2_after = cp
        .get(
            &format!("/api/v1/keys/{}", k2["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .expect(200);
    assert!(k2_after["team_id"].is_null());
    let rec = bus
        .get_key(&shared::keys::hash_api_key(k2["key"].as_str().unwrap()))
        .unwrap();
    assert!(rec.team_id.is_none());
    assert_eq!(rec.version, 2);
    cp.stop().await;
}

#[tokio::test]
async fn providers_never_return_their_secret_and_store_it_sealed() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let secret = format!("sk-upstream-{}", Uuid::new_v4().simple());
    let created = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "vllm", "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1/", "api_key": secret}),
        )
        .await
        .expect(201);
    assert_eq!(created["kind"], "openai_compatible");
    assert_eq!(created["base_url"], "http://127.0.0.1:9/v1");
    assert_eq!(created["has_api_key"], true);
    let id = created["id"].as_str().unwrap().to_owned();
    for body in [
        created.clone(),
        cp.get("/api/v1/providers", &s.token).await.expect(200),
        cp.get(&format!("/api/v1/providers/{id}"), &s.token)
            .await
            .expect(200),
    ] {
        assert!(!body.to_string().contains(&secret), "{body}");
        assert!(!body.to_string().contains("v1:"), "{body}");
    }

    // In the database: sealed, bound to the provider id, opens with the master key.
    let row = control_plane::entities::provider_credential::Entity::find_by_id(
        id.parse::<Uuid>().unwrap(),
    )
    .one(cp.running.db())
    .await
    .unwrap()
    .unwrap();
    let sealed = row.api_key_sealed.unwrap();
    assert!(sealed.starts_with("v1:"), "{sealed}");
    assert!(!sealed.contains(&secret));
    let master = &cp.running.state().master_key;
    assert_eq!(master.open(&sealed, &id).unwrap(), secret);
    assert!(master.open(&sealed, &Uuid::new_v4().to_string()).is_err());

    // Published sealed as stored, with the tenant's version bumped.
    let tenant_id: Uuid = s.tenant_id.parse().unwrap();
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(tenant_id)
        .expect("tenant published");
    assert_eq!(config.version, 1);
    assert_eq!(config.providers.len(), 1);
    assert_eq!(
        config.providers[0].api_key_sealed.as_deref(),
        Some(sealed.as_str())
    );

    // Validation.
    let bad = |body: Value| cp.post("/api/v1/providers", Some(&s.token), body);
    let msg = bad(json!({"name": "a", "kind": "openai_compatible"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("base_url"), "{msg}");
    bad(json!({"name": "a", "kind": "openai_compatible", "base_url": "ftp://x"}))
        .await
        .expect_error(400, "validation_failed");
    bad(json!({"name": "a", "kind": "anthropic"}))
        .await
        .expect_error(400, "validation_failed");
    bad(json!({"name": "a", "kind": "openai", "api_key": ""}))
        .await
        .expect_error(400, "validation_failed");
    bad(json!({"name": "vllm", "kind": "mock"}))
        .await
        .expect_error(409, "conflict");
    bad(json!({"name": "a", "kind": "openai"}))
        .await
        .expect_error(400, "validation_failed");
    let local = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "local", "kind": "ollama"}),
        )
        .await
        .expect(201);
    assert_eq!(local["has_api_key"], false);
    assert!(local["base_url"].is_null(), "the kind's default applies");
    assert_eq!(local["options"], json!({}));

    // A provider in use cannot be deleted; once its models are gone it can.
    let model = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({"name": "m", "provider_id": id, "upstream_model": "llama", "input_price_per_mtok": 1, "output_price_per_mtok": 2}),
        )
        .await
        .expect(201);
    cp.delete(&format!("/api/v1/providers/{id}"), &s.token)
        .await
        .expect_error(409, "conflict");
    cp.delete(
        &format!("/api/v1/models/{}", model["id"].as_str().unwrap()),
        &s.token,
    )
    .await
    .expect(204);
    cp.delete(&format!("/api/v1/providers/{id}"), &s.token)
        .await
        .expect(204);
    cp.get(&format!("/api/v1/providers/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(tenant_id)
        .unwrap();
    assert_eq!(
        config.providers.len(),
        1,
        "only the ollama provider is left"
    );
    assert!(config.deployments.is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn model_prices_are_parsed_exactly() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let (provider_id, _) = cp.mock_model(&s, "first").await;
    let create = |input: Value, output: Value| {
        cp.post(
            "/api/v1/models",
            Some(&s.token),
            json!({
                "name": "gpt-x",
                "provider_id": provider_id,
                "upstream_model": "gpt-x-2026",
                "input_price_per_mtok": input,
                "output_price_per_mtok": output,
                "region": "eu-west",
            }),
        )
    };
    let m = create(json!(0.15), json!("0.6")).await.expect(201);
    assert_eq!(m["input_price_micros_per_mtok"], 150_000);
    assert_eq!(m["output_price_micros_per_mtok"], 600_000);
    assert_eq!(m["input_price_per_mtok"], json!(0.15));
    assert_eq!(m["output_price_per_mtok"], json!(0.6));
    assert_eq!(m["region"], "eu-west");
    assert_eq!(m["provider_id"], provider_id.as_str());
    assert_eq!(m["upstream_model"], "gpt-x-2026");
    // 0.1 + 0.2 style float traps do not exist here: 2.675 stays 2.675.
    let m2 = create(json!(2.675), json!(1_000_000)).await.expect(201);
    assert_eq!(m2["input_price_micros_per_mtok"], 2_675_000);
    assert_eq!(m2["output_price_micros_per_mtok"], 1_000_000_000_000_i64);
    assert_eq!(m2["input_price_per_mtok"], json!(2.675));

    for (bad_in, bad_out, field) in [
        (json!(-1), json!(1), "input_price_per_mtok"),
        (json!("abc"), json!(1), "input_price_per_mtok"),
        (json!(0.0000001), json!(1), "input_price_per_mtok"),
        (json!(1), json!(1_000_001), "output_price_per_mtok"),
        (json!(1), json!(null), "output_price_per_mtok"),
    ] {
        let msg = create(bad_in, bad_out)
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{msg}");
    }
    cp.post(
        "/api/v1/models",
        Some(&s.token),
        json!({"name": "x", "provider_id": Uuid::new_v4(), "upstream_model": "x", "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
    )
    .await
    .expect_error(404, "not_found");

    let id = m["id"].as_str().unwrap();
    assert_eq!(
        cp.get(&format!("/api/v1/models/{id}"), &s.token)
            .await
            .expect(200),
        m,
        "GET equals the POST answer"
    );
    let list = cp.get("/api/v1/models", &s.token).await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(s.tenant_id.parse().unwrap())
        .unwrap();
    assert_eq!(config.deployments.len(), 3);
    assert_eq!(config.version, 4, "one provider + three models");
    let d = config
        .deployments
        .iter()
        .find(|d| d.id.to_string() == id)
        .unwrap();
    assert_eq!(
        (
            d.input_price_micros_per_mtok,
            d.output_price_micros_per_mtok
        ),
        (150_000, 600_000)
    );
    cp.delete(&format!("/api/v1/models/{id}"), &s.token)
        .await
        .expect(204);
    cp.delete(&format!("/api/v1/models/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn viewers_read_members_manage_keys_only_admins_manage_config() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let (provider_id, model_id) = cp.mock_model(&owner, "m").await;
    let key = cp
        .post("/api/v1/keys", Some(&owner.token), json!({"name": "k"}))
        .await
        .expect(201);
    let key_id = key["id"].as_str().unwrap();
    let team = cp
        .post("/api/v1/teams", Some(&owner.token), json!({"name": "t"}))
        .await
        .expect(201);
    let team_id = team["id"].as_str().unwrap();

    let v = cp.signup().await;
    let viewer = cp.join(&owner, &v, "viewer").await;
    let m = cp.signup().await;
    let member = cp.join(&owner, &m, "member").await;

    // Viewers read everything…
    for path in [
        "/api/v1/keys",
        "/api/v1/providers",
        "/api/v1/models",
        "/api/v1/teams",
        "/api/v1/usage",
        "/api/v1/members",
        "/api/v1/me",
    ] {
        cp.get(path, &viewer.token).await.expect(200);
    }
    assert_eq!(
        cp.get("/api/v1/me", &viewer.token).await.expect(200)["role"],
        "viewer"
    );
    // …and write nothing.
    let writes = [
        ("POST", "/api/v1/keys".to_owned(), json!({"name": "x"})),
        ("DELETE", format!("/api/v1/keys/{key_id}"), Value::Null),
        (
            "POST",
            "/api/v1/providers".to_owned(),
            json!({"name": "p", "kind": "mock"}),
        ),
        (
            "DELETE",
            format!("/api/v1/providers/{provider_id}"),
            Value::Null,
        ),
        (
            "POST",
            "/api/v1/models".to_owned(),
            json!({"name": "m", "provider_id": provider_id, "upstream_model": "u", "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
        ),
        ("DELETE", format!("/api/v1/models/{model_id}"), Value::Null),
        ("POST", "/api/v1/teams".to_owned(), json!({"name": "x"})),
        ("DELETE", format!("/api/v1/teams/{team_id}"), Value::Null),
        (
            "POST",
            "/api/v1/members".to_owned(),
            json!({"email": m.email, "role": "admin"}),
        ),
        (
            "DELETE",
            format!("/api/v1/members/{}", member.user_id),
            Value::Null,
        ),
    ];
    for (method, path, body) in &writes {
        let answer = match *method {
            "POST" => cp.post(path, Some(&viewer.token), body.clone()).await,
            _ => cp.delete(path, &viewer.token).await,
        };
        answer.expect_error(403, "forbidden");
    }
    // Members manage keys (for their teams) but not config.
    cp.post(
        &format!("/api/v1/teams/{team_id}/members"),
        Some(&owner.token),
        json!({"user_id": member.user_id}),
    )
    .await
    .expect(201);
    let mk = cp
        .post(
            "/api/v1/keys",
            Some(&member.token),
            json!({"name": "mine", "team_id": team_id}),
        )
        .await
        .expect(201);
    cp.delete(
        &format!("/api/v1/keys/{}", mk["id"].as_str().unwrap()),
        &member.token,
    )
    .await
    .expect(204);
    cp.post(
        "/api/v1/providers",
        Some(&member.token),
        json!({"name": "p", "kind": "mock"}),
    )
    .await
    .expect_error(403, "forbidden");
    cp.delete(&format!("/api/v1/models/{model_id}"), &member.token)
        .await
        .expect_error(403, "forbidden");
    // Only owners grant owner.
    let a = cp.signup().await;
    let admin = cp.join(&owner, &a, "admin").await;
    let o = cp.signup().await;
    cp.post(
        "/api/v1/members",
        Some(&admin.token),
        json!({"email": o.email, "role": "owner"}),
    )
    .await
    .expect_error(403, "forbidden");
    // `POST /members` invites (202); re-inviting replaces the pending invitation; a member
    // cannot be invited again.
    let first = cp
        .post(
            "/api/v1/members",
            Some(&admin.token),
            json!({"email": o.email, "role": "viewer"}),
        )
        .await
        .expect(202);
    let second = cp
        .post(
            "/api/v1/members",
            Some(&admin.token),
            json!({"email": o.email, "role": "viewer"}),
        )
        .await
        .expect(202);
    cp.post(
        first["accept_path"].as_str().unwrap(),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    cp.post(
        second["accept_path"].as_str().unwrap(),
        Some(&o.token),
        json!({}),
    )
    .await
    .expect(200);
    cp.post(
        "/api/v1/members",
        Some(&admin.token),
        json!({"email": o.email, "role": "viewer"}),
    )
    .await
    .expect_error(409, "conflict");
    // An email without an account gets an invitation too.
    cp.post(
        "/api/v1/members",
        Some(&admin.token),
        json!({"email": "nobody@example.com", "role": "viewer"}),
    )
    .await
    .expect(202);
    cp.stop().await;
}
