//! Guardrails and response-cache settings through the control API against a real control plane
//! (PostgreSQL, and SQLite at the end): the guardrail round trip and what reaches the
//! (in-process) data plane's config, every refusal with its status and a message naming the
//! field, roles, tenant isolation, a deleted team or route taking its guardrail along, the
//! `cache` field of keys, teams and routes (validated, published, cleared by `null`), and
//! guardrail decisions of ingested usage shown by the request log and the CSV export.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::Arc;

use control_plane::usage_store::DbUsageWriter;
use cp_support::{Cp, Session};
use serde_json::{Value, json};
use shared::cache::{CacheMode, CacheSettings};
use shared::config::{KeyRecord, TenantConfig};
use shared::guardrails::{GuardrailScope, PiiDetector, PiiMode};
use shared::usage::{GuardrailAction, GuardrailDecision};
use uuid::Uuid;

/// The tenant config the in-process data plane holds now.
fn published(cp: &Cp, s: &Session) -> Arc<TenantConfig> {
    cp.running
        .memory_bus()
        .expect("zero-setup mode")
        .get_tenant(s.tenant_id.parse().unwrap())
        .expect("tenant published")
}

/// The key record the in-process data plane holds for the plaintext `key`.
fn published_key(cp: &Cp, key: &str) -> Arc<KeyRecord> {
    cp.running
        .memory_bus()
        .expect("zero-setup mode")
        .get_key(&shared::keys::hash_api_key(key))
        .expect("key published")
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn team(cp: &Cp, s: &Session, name: &str) -> String {
    id(&cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": name}))
        .await
        .expect(201))
}

/// A key of `s`'s organization: (id, plaintext).
async fn key(cp: &Cp, s: &Session) -> (String, String) {
    let k = cp
        .post("/api/v1/keys", Some(&s.token), json!({"name": "k"}))
        .await
        .expect(201);
    (id(&k), k["key"].as_str().unwrap().to_owned())
}

async fn route(cp: &Cp, s: &Session, name: &str) -> String {
    let (_, model) = cp.mock_model(s, &format!("{name}-model")).await;
    id(&cp
        .post(
            "/api/v1/routes",
            Some(&s.token),
            json!({"name": name, "strategy": "priority", "candidates": [{"model_id": model}]}),
        )
        .await
        .expect(201))
}

const GUARDRAILS: &str = "/api/v1/guardrails";

fn path(id: &str) -> String {
    format!("{GUARDRAILS}/{id}")
}

#[tokio::test]
async fn guardrails_round_trip_and_reach_the_data_plane() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let team_id = team(&cp, &s, "search").await;

    let created = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({
                "name": "  no customer PII  ",
                "scope": "organization",
                "pii": {
                    "mode": "redact",
                    "detectors": ["email", "card"],
                    "custom": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}],
                    "restore": true,
                },
                "blocked_terms": ["project nightingale"],
                "max_prompt_tokens": 8000,
            }),
        )
        .await
        .expect(201);
    let org_id = id(&created);
    assert_eq!(created["name"], "no customer PII", "trimmed: {created}");
    assert_eq!(created["scope"], "organization");
    assert_eq!(created["scope_id"], Value::Null);
    assert_eq!(
        created["pii"],
        json!({
            "mode": "redact", "detectors": ["email", "card"],
            "custom": [{"name": "employee_id", "pattern": "EMP-[0-9]{6}"}], "restore": true,
        })
    );
    assert_eq!(created["blocked_terms"], json!(["project nightingale"]));
    assert_eq!(created["max_prompt_tokens"], 8000);
    assert_eq!(created["allowed_tools"], Value::Null);
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());

    // A bare team guardrail: PII off with every detector, no filters.
    let team_rail = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "search team", "scope": "team", "scope_id": team_id, "allowed_tools": ["lookup"]}),
        )
        .await
        .expect(201);
    let team_rail_id = id(&team_rail);
    assert_eq!(
        team_rail["pii"],
        json!({"mode": "off", "detectors": ["email", "phone", "card", "iban", "ip"], "custom": [], "restore": false})
    );
    assert_eq!(team_rail["scope_id"], team_id.as_str());

    let list = cp.get(GUARDRAILS, &s.token).await.expect(200);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [org_id.as_str(), team_rail_id.as_str()],
        "oldest first"
    );
    assert_eq!(cp.get(&path(&org_id), &s.token).await.expect(200), created);

    // What the data plane holds: both records, as written.
    let cfg = published(&cp, &s);
    assert_eq!(cfg.guardrails.len(), 2, "{:?}", cfg.guardrails);
    let org = &cfg.guardrails[0];
    assert_eq!(org.id.to_string(), org_id);
    assert_eq!(org.scope, GuardrailScope::Organization);
    assert_eq!(org.scope_id, None);
    assert_eq!(org.pii.mode, PiiMode::Redact);
    assert_eq!(org.pii.detectors, [PiiDetector::Email, PiiDetector::Card]);
    assert_eq!(org.pii.custom[0].pattern, "EMP-[0-9]{6}");
    assert!(org.pii.restore);
    assert_eq!(org.max_prompt_tokens, Some(8000));
    let tr = &cfg.guardrails[1];
    assert_eq!(tr.scope, GuardrailScope::Team);
    assert_eq!(tr.scope_id.map(|u| u.to_string()), Some(team_id.clone()));
    assert_eq!(tr.allowed_tools, Some(vec!["lookup".to_owned()]));

    // PATCH merges: inside `pii` only the fields given change; null clears the cap.
    let patched = cp
        .patch(
            &path(&org_id),
            &s.token,
            json!({"pii": {"mode": "block"}, "max_prompt_tokens": null, "blocked_terms": []}),
        )
        .await
        .expect(200);
    assert_eq!(patched["pii"]["mode"], "block");
    assert_eq!(patched["pii"]["detectors"], json!(["email", "card"]));
    assert_eq!(patched["pii"]["custom"][0]["name"], "employee_id");
    assert_eq!(patched["max_prompt_tokens"], Value::Null);
    assert_eq!(patched["blocked_terms"], json!([]));
    assert_eq!(patched["created_at"], created["created_at"]);
    let org = published(&cp, &s).guardrails[0].clone();
    assert_eq!(org.pii.mode, PiiMode::Block);
    assert_eq!(org.max_prompt_tokens, None);
    assert!(org.blocked_terms.is_empty());
    // A PATCH that changes nothing is answered without a write.
    let version = published(&cp, &s).version;
    cp.patch(&path(&org_id), &s.token, json!({"pii": {"mode": "block"}}))
        .await
        .expect(200);
    assert_eq!(published(&cp, &s).version, version);

    // Every write is audited.
    let audit = cp
        .get("/api/v1/audit?object_kind=guardrail", &s.token)
        .await
        .expect(200);
    let actions: Vec<(&str, &str)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["object_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("update", org_id.as_str()),
            ("create", team_rail_id.as_str()),
            ("create", org_id.as_str()),
        ],
        "{audit}"
    );

    // Delete: 204, gone from reads and from the data plane's config.
    cp.delete(&path(&org_id), &s.token).await.expect(204);
    cp.get(&path(&org_id), &s.token)
        .await
        .expect_error(404, "not_found");
    cp.delete(&path(&org_id), &s.token)
        .await
        .expect_error(404, "not_found");
    let cfg = published(&cp, &s);
    assert_eq!(cfg.guardrails.len(), 1);
    assert_eq!(cfg.guardrails[0].id.to_string(), team_rail_id);

    // The organization's scope is free again.
    cp.post(
        GUARDRAILS,
        Some(&s.token),
        json!({"name": "again", "scope": "organization"}),
    )
    .await
    .expect(201);
    cp.stop().await;
}

#[tokio::test]
async fn invalid_guardrails_are_refused_naming_the_field() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let other = cp.signup().await;
    let team_id = team(&cp, &s, "t").await;
    let foreign_team = team(&cp, &other, "theirs").await;
    let (foreign_key, _) = key(&cp, &other).await;
    let foreign_route = route(&cp, &other, "their-route").await;

    let custom = |pattern: &str| {
        json!({"name": "g", "scope": "organization",
               "pii": {"mode": "redact", "custom": [{"name": "mine", "pattern": pattern}]}})
    };
    // (body, status, code, what the message must contain)
    let cases: Vec<(Value, u16, &str, Vec<&str>)> = vec![
        (
            custom("("),
            400,
            "validation_failed",
            vec!["pii.custom `mine`", "does not compile"],
        ),
        (
            custom(r"(a)\1"),
            400,
            "validation_failed",
            vec!["pii.custom `mine`", "back-references"],
        ),
        (
            custom("foo(?=bar)"),
            400,
            "validation_failed",
            vec!["pii.custom `mine`", "look-around"],
        ),
        (
            custom("a*"),
            400,
            "validation_failed",
            vec!["pii.custom `mine`", "empty string"],
        ),
        (
            custom(&"a".repeat(1025)),
            400,
            "validation_failed",
            vec!["pii.custom `mine`", "1024"],
        ),
        (
            json!({"name": "g", "scope": "organization",
                   "pii": {"custom": [{"name": "Bad Name", "pattern": "x"}]}}),
            400,
            "validation_failed",
            vec!["pii.custom name"],
        ),
        (
            json!({"name": "g", "scope": "organization",
                   "pii": {"custom": [{"name": "a", "pattern": "x", "flags": "i"}]}}),
            400,
            "validation_failed",
            vec!["flags"],
        ),
        (
            json!({"name": "g", "scope": "organization", "pii": {"mode": "shout"}}),
            400,
            "validation_failed",
            vec!["pii.mode"],
        ),
        (
            json!({"name": "g", "scope": "organization", "pii": {"detectors": ["ssn"]}}),
            400,
            "validation_failed",
            vec!["pii.detectors"],
        ),
        (
            json!({"name": "g", "scope": "planet"}),
            400,
            "validation_failed",
            vec!["scope"],
        ),
        (
            json!({"name": "g", "scope": "organization", "extra": 1}),
            400,
            "validation_failed",
            vec!["extra"],
        ),
        (
            json!({"name": " ", "scope": "organization"}),
            400,
            "validation_failed",
            vec!["name"],
        ),
        (
            json!({"name": "g", "scope": "team"}),
            400,
            "validation_failed",
            vec!["scope_id is required for scope team"],
        ),
        (
            json!({"name": "g", "scope": "organization", "scope_id": team_id}),
            400,
            "validation_failed",
            vec!["scope_id must be absent"],
        ),
        (
            json!({"name": "g", "scope": "organization", "blocked_terms": ["  "]}),
            400,
            "validation_failed",
            vec!["blocked_terms"],
        ),
        (
            json!({"name": "g", "scope": "organization", "max_prompt_tokens": 0}),
            400,
            "validation_failed",
            vec!["max_prompt_tokens"],
        ),
        (
            json!({"name": "g", "scope": "organization", "allowed_tools": [""]}),
            400,
            "validation_failed",
            vec!["allowed_tools"],
        ),
        (
            json!({"name": "g", "scope": "team", "scope_id": Uuid::new_v4()}),
            404,
            "not_found",
            vec!["team not found"],
        ),
        // Another organization's objects look exactly like unknown ones.
        (
            json!({"name": "g", "scope": "team", "scope_id": foreign_team}),
            404,
            "not_found",
            vec!["team not found"],
        ),
        (
            json!({"name": "g", "scope": "key", "scope_id": foreign_key}),
            404,
            "not_found",
            vec!["api key not found"],
        ),
        (
            json!({"name": "g", "scope": "route", "scope_id": foreign_route}),
            404,
            "not_found",
            vec!["route not found"],
        ),
        // A team id given as a route.
        (
            json!({"name": "g", "scope": "route", "scope_id": team_id}),
            404,
            "not_found",
            vec!["route not found"],
        ),
    ];
    for (body, status, code, parts) in cases {
        let message = cp
            .post(GUARDRAILS, Some(&s.token), body.clone())
            .await
            .expect_error(status, code);
        for part in parts {
            assert!(message.contains(part), "{body} → {message}");
        }
    }
    assert!(
        cp.get(GUARDRAILS, &s.token).await.expect(200)["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was stored"
    );
    assert!(published(&cp, &s).guardrails.is_empty());

    // One guardrail per scope object, one name per organization.
    let first = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "team one", "scope": "team", "scope_id": team_id}),
        )
        .await
        .expect(201);
    let message = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "team two", "scope": "team", "scope_id": team_id}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(
        message.contains("this team already has a guardrail") && message.contains(&id(&first)),
        "{message}"
    );
    let org = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "org", "scope": "organization"}),
        )
        .await
        .expect(201);
    let message = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "org two", "scope": "organization"}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(
        message.contains("the organization already has"),
        "{message}"
    );
    let message = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "org", "scope": "team", "scope_id": team(&cp, &s, "t2").await}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(message.contains("name already exists"), "{message}");
    // The other organization may use the same name and scope kind.
    cp.post(
        GUARDRAILS,
        Some(&other.token),
        json!({"name": "org", "scope": "organization"}),
    )
    .await
    .expect(201);

    // PATCH validates the merged policy and the same rules.
    let org_path = path(&id(&org));
    let message = cp
        .patch(
            &org_path,
            &s.token,
            json!({"pii": {"custom": [{"name": "x", "pattern": "(?<=a)b"}]}}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(message.contains("pii.custom `x`"), "{message}");
    let message = cp
        .patch(&org_path, &s.token, json!({"scope": "team"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(message.contains("scope_id"), "{message}");
    cp.patch(
        &org_path,
        &s.token,
        json!({"scope": "team", "scope_id": team_id}),
    )
    .await
    .expect_error(409, "conflict");
    cp.patch(&org_path, &s.token, json!({"name": "team one"}))
        .await
        .expect_error(409, "conflict");
    cp.patch(&org_path, &s.token, json!({"name": null}))
        .await
        .expect_error(400, "validation_failed");
    cp.patch(&org_path, &s.token, json!({"nope": 1}))
        .await
        .expect_error(400, "validation_failed");
    // Another organization's guardrail is a 404 for every method.
    let theirs = cp.get(GUARDRAILS, &other.token).await.expect(200)["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cp.get(&path(&theirs), &s.token)
        .await
        .expect_error(404, "not_found");
    cp.patch(&path(&theirs), &s.token, json!({"name": "mine"}))
        .await
        .expect_error(404, "not_found");
    cp.delete(&path(&theirs), &s.token)
        .await
        .expect_error(404, "not_found");
    // Moving to a scope that is free works, and is checked like a create.
    let (key_id, _) = key(&cp, &s).await;
    let moved = cp
        .patch(
            &org_path,
            &s.token,
            json!({"scope": "key", "scope_id": key_id}),
        )
        .await
        .expect(200);
    assert_eq!(moved["scope"], "key");
    cp.patch(
        &org_path,
        &s.token,
        json!({"scope": "route", "scope_id": foreign_route}),
    )
    .await
    .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn owners_and_admins_manage_guardrails_and_everyone_reads_them() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let g = cp
        .post(
            GUARDRAILS,
            Some(&owner.token),
            json!({"name": "base", "scope": "organization"}),
        )
        .await
        .expect(201);
    let p = path(&id(&g));
    for role in ["admin", "member", "viewer"] {
        let user = cp.signup().await;
        let joined = cp.join(&owner, &user, role).await;
        cp.get(&p, &joined.token).await.expect(200);
        cp.get(GUARDRAILS, &joined.token).await.expect(200);
        let t = team(&cp, &owner, &format!("team-{role}")).await;
        let create = cp
            .post(
                GUARDRAILS,
                Some(&joined.token),
                json!({"name": format!("by {role}"), "scope": "team", "scope_id": t}),
            )
            .await;
        let patch = cp
            .patch(&p, &joined.token, json!({"blocked_terms": [role]}))
            .await;
        if role == "admin" {
            let created = create.expect(201);
            patch.expect(200);
            cp.delete(&path(&id(&created)), &joined.token)
                .await
                .expect(204);
        } else {
            create.expect_error(403, "forbidden");
            patch.expect_error(403, "forbidden");
            cp.delete(&p, &joined.token)
                .await
                .expect_error(403, "forbidden");
        }
    }
    cp.call(reqwest::Method::GET, GUARDRAILS, None, None)
        .await
        .expect_error(401, "unauthorized");
    cp.stop().await;
}

#[tokio::test]
async fn deleting_a_team_or_route_deletes_its_guardrail() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let team_id = team(&cp, &s, "doomed").await;
    let route_id = route(&cp, &s, "doomed-route").await;
    let (key_id, _) = key(&cp, &s).await;
    for (scope, scope_id) in [("team", &team_id), ("route", &route_id), ("key", &key_id)] {
        cp.post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": scope, "scope": scope, "scope_id": scope_id}),
        )
        .await
        .expect(201);
    }
    assert_eq!(published(&cp, &s).guardrails.len(), 3);
    cp.delete(&format!("/api/v1/teams/{team_id}"), &s.token)
        .await
        .expect(204);
    cp.delete(&format!("/api/v1/routes/{route_id}"), &s.token)
        .await
        .expect(204);
    // A revoked key keeps its guardrail (keys are never deleted).
    cp.delete(&format!("/api/v1/keys/{key_id}"), &s.token)
        .await
        .expect(204);
    let list = cp.get(GUARDRAILS, &s.token).await.expect(200);
    let scopes: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["key"]);
    let cfg = published(&cp, &s);
    assert_eq!(cfg.guardrails.len(), 1);
    assert_eq!(cfg.guardrails[0].scope, GuardrailScope::Key);
    cp.stop().await;
}

#[tokio::test]
async fn cache_settings_of_keys_teams_and_routes_are_validated_and_published() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let (key_id, plaintext) = key(&cp, &s).await;
    let team_id = team(&cp, &s, "cached").await;
    let route_id = route(&cp, &s, "cached-route").await;
    let resources = [
        format!("/api/v1/keys/{key_id}"),
        format!("/api/v1/teams/{team_id}"),
        format!("/api/v1/routes/{route_id}"),
    ];
    for p in &resources {
        assert_eq!(cp.get(p, &s.token).await.expect(200)["cache"], Value::Null);
    }
    assert_eq!(published_key(&cp, &plaintext).cache, None);
    assert!(published(&cp, &s).team_cache.is_empty());

    // Refusals name the field, for each resource, and change nothing.
    let bad: [(Value, &str); 6] = [
        (
            json!({"mode": "exact", "ttl_seconds": 0}),
            "cache.ttl_seconds",
        ),
        (
            json!({"mode": "exact", "ttl_seconds": 30 * 24 * 3600 + 1}),
            "cache.ttl_seconds",
        ),
        (
            json!({"mode": "semantic", "min_similarity": 1.5}),
            "cache.min_similarity",
        ),
        (
            json!({"mode": "semantic", "embedding_model": " "}),
            "cache.embedding_model",
        ),
        (json!({"mode": "fuzzy"}), "cache.mode"),
        (json!({"mode": "exact", "ttl": 60}), "ttl"),
    ];
    for p in &resources {
        for (cache, field) in &bad {
            let message = cp
                .patch(p, &s.token, json!({"cache": cache}))
                .await
                .expect_error(400, "validation_failed");
            assert!(message.contains(field), "{p} {cache} → {message}");
        }
        assert_eq!(cp.get(p, &s.token).await.expect(200)["cache"], Value::Null);
    }

    // Set: defaults fill in, the answer and the data plane agree.
    let key_cache = cp
        .patch(
            &resources[0],
            &s.token,
            json!({"cache": {"mode": "exact", "ttl_seconds": 60}}),
        )
        .await
        .expect(200)["cache"]
        .clone();
    assert_eq!(
        key_cache,
        json!({"mode": "exact", "ttl_seconds": 60, "min_similarity": 0.95, "embedding_model": null})
    );
    assert_eq!(
        published_key(&cp, &plaintext).cache,
        Some(CacheSettings {
            mode: CacheMode::Exact,
            ttl_seconds: 60,
            min_similarity: 0.95,
            embedding_model: None,
        })
    );
    let semantic = json!({"mode": "semantic", "min_similarity": 0.9, "embedding_model": "embed"});
    let team_cache = cp
        .patch(&resources[1], &s.token, json!({"cache": semantic}))
        .await
        .expect(200)["cache"]
        .clone();
    assert_eq!(team_cache["ttl_seconds"], 3600);
    let cfg = published(&cp, &s);
    let published_team = cfg.team_cache[&team_id.parse::<Uuid>().unwrap()].clone();
    assert_eq!(published_team.mode, CacheMode::Semantic);
    assert_eq!(published_team.min_similarity, 0.9);
    assert_eq!(published_team.embedding_model.as_deref(), Some("embed"));
    cp.patch(&resources[2], &s.token, json!({"cache": {"mode": "off"}}))
        .await
        .expect(200);
    let route_record = published(&cp, &s)
        .routes
        .iter()
        .find(|r| r.id.to_string() == route_id)
        .cloned()
        .expect("route published");
    assert_eq!(route_record.cache.map(|c| c.mode), Some(CacheMode::Off));
    // Another field's PATCH keeps the setting; the route's is re-validated with it.
    cp.patch(&resources[2], &s.token, json!({"max_attempts": 2}))
        .await
        .expect(200);
    assert_eq!(
        cp.get(&resources[2], &s.token).await.expect(200)["cache"]["mode"],
        "off"
    );
    for p in &resources {
        assert!(cp.get(p, &s.token).await.expect(200)["cache"].is_object());
    }
    // Changes are audited like any other change of the resource.
    let audit = cp
        .get(
            &format!("/api/v1/audit?object_kind=team&object_id={team_id}&action=update"),
            &s.token,
        )
        .await
        .expect(200);
    assert_eq!(audit["data"][0]["after"]["cache"]["mode"], "semantic");
    assert_eq!(audit["data"][0]["before"]["cache"], Value::Null);

    // null clears, everywhere.
    for p in &resources {
        let cleared = cp
            .patch(p, &s.token, json!({"cache": null}))
            .await
            .expect(200);
        assert_eq!(cleared["cache"], Value::Null, "{p}");
    }
    assert_eq!(published_key(&cp, &plaintext).cache, None);
    let cfg = published(&cp, &s);
    assert!(cfg.team_cache.is_empty());
    assert!(cfg.routes.iter().all(|r| r.cache.is_none()));

    // Accepted on create too.
    let k = cp
        .post(
            "/api/v1/keys",
            Some(&s.token),
            json!({"name": "cached", "cache": {"mode": "exact"}}),
        )
        .await
        .expect(201);
    assert_eq!(k["cache"]["mode"], "exact");
    assert_eq!(
        published_key(&cp, k["key"].as_str().unwrap())
            .cache
            .as_ref()
            .map(|c| c.mode),
        Some(CacheMode::Exact)
    );
    let t = cp
        .post(
            "/api/v1/teams",
            Some(&s.token),
            json!({"name": "born cached", "cache": {"mode": "exact", "ttl_seconds": 5}}),
        )
        .await
        .expect(201);
    assert_eq!(
        published(&cp, &s).team_cache[&id(&t).parse::<Uuid>().unwrap()].ttl_seconds,
        5
    );
    let (_, model) = cp.mock_model(&s, "born-model").await;
    let r = cp
        .post(
            "/api/v1/routes",
            Some(&s.token),
            json!({"name": "born", "strategy": "priority", "candidates": [{"model_id": model}],
                   "cache": {"mode": "semantic"}}),
        )
        .await
        .expect(201);
    assert_eq!(r["cache"]["min_similarity"], 0.95);
    cp.post(
        "/api/v1/teams",
        Some(&s.token),
        json!({"name": "bad", "cache": {"mode": "exact", "ttl_seconds": 0}}),
    )
    .await
    .expect_error(400, "validation_failed");
    // Deleting a cached team takes its entry out of the published config.
    cp.delete(&format!("/api/v1/teams/{}", id(&t)), &s.token)
        .await
        .expect(204);
    assert!(published(&cp, &s).team_cache.is_empty());
    cp.stop().await;
}

/// Stores a usage event of `s`'s organization with `decisions`; returns its id.
async fn record(cp: &Cp, s: &Session, decisions: Vec<GuardrailDecision>) -> Uuid {
    let mut e = testkit::records::usage_event();
    e.tenant_id = s.tenant_id.parse().unwrap();
    e.guardrails = decisions;
    let id = e.id;
    DbUsageWriter::new(cp.running.db().clone())
        .insert(&[e])
        .await
        .expect("usage stored");
    id
}

async fn decisions_are_shown_by_the_request_log(cp: &Cp) {
    let s = cp.signup().await;
    let guardrail_id = Uuid::new_v4();
    let decisions = vec![
        GuardrailDecision {
            guardrail_id,
            rule: "pii.email".to_owned(),
            action: GuardrailAction::Redacted,
            count: 2,
        },
        GuardrailDecision {
            guardrail_id,
            rule: "pii.email".to_owned(),
            action: GuardrailAction::Restored,
            count: 1,
        },
    ];
    let with = record(cp, &s, decisions).await;
    let without = record(cp, &s, Vec::new()).await;
    let expected = json!([
        {"guardrail_id": guardrail_id, "rule": "pii.email", "action": "redacted", "count": 2},
        {"guardrail_id": guardrail_id, "rule": "pii.email", "action": "restored", "count": 1},
    ]);
    let page = cp
        .get(&format!("/api/v1/requests?id={with}"), &s.token)
        .await
        .expect(200);
    assert_eq!(page["data"][0]["guardrails"], expected);
    let detail = cp
        .get(&format!("/api/v1/requests/{with}"), &s.token)
        .await
        .expect(200);
    assert_eq!(detail["guardrails"], expected);
    let page = cp
        .get(&format!("/api/v1/requests?id={without}"), &s.token)
        .await
        .expect(200);
    assert_eq!(page["data"][0]["guardrails"], json!([]));

    // The CSV export carries them as a JSON array in its last column.
    let text = cp
        .client
        .get(format!("{}/api/v1/usage/export", cp.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let header = text.lines().next().unwrap();
    assert!(header.ends_with(",tags,guardrails"), "{header}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&with.to_string()))
        .expect("row");
    assert!(
        line.contains(r#""[{""action"":""redacted"""#),
        "a quoted JSON array: {line}"
    );
}

#[tokio::test]
async fn guardrail_decisions_show_in_the_request_log() {
    let cp = Cp::start().await;
    decisions_are_shown_by_the_request_log(&cp).await;
    cp.stop().await;
}

#[tokio::test]
async fn guardrails_cache_and_decisions_work_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let team_id = team(&cp, &s, "t").await;
    let g = cp
        .post(
            GUARDRAILS,
            Some(&s.token),
            json!({"name": "t", "scope": "team", "scope_id": team_id,
                   "pii": {"mode": "block", "custom": [{"name": "x", "pattern": "X-[0-9]+"}]}}),
        )
        .await
        .expect(201);
    cp.post(
        GUARDRAILS,
        Some(&s.token),
        json!({"name": "t2", "scope": "team", "scope_id": team_id}),
    )
    .await
    .expect_error(409, "conflict");
    cp.post(
        GUARDRAILS,
        Some(&s.token),
        json!({"name": "org", "scope": "organization"}),
    )
    .await
    .expect(201);
    cp.post(
        GUARDRAILS,
        Some(&s.token),
        json!({"name": "org2", "scope": "organization"}),
    )
    .await
    .expect_error(409, "conflict");
    assert_eq!(published(&cp, &s).guardrails.len(), 2);
    cp.patch(
        &path(&id(&g)),
        &s.token,
        json!({"pii": {"restore": true, "mode": "redact"}}),
    )
    .await
    .expect(200);
    assert!(published(&cp, &s).guardrails[0].pii.restore);
    cp.patch(
        &format!("/api/v1/teams/{team_id}"),
        &s.token,
        json!({"cache": {"mode": "exact"}}),
    )
    .await
    .expect(200);
    assert_eq!(published(&cp, &s).team_cache.len(), 1);
    cp.delete(&path(&id(&g)), &s.token).await.expect(204);
    assert_eq!(published(&cp, &s).guardrails.len(), 1);
    decisions_are_shown_by_the_request_log(&cp).await;
    cp.stop().await;
}
