//! Routes, region policies and the deployment fields routing reads, against a real control
//! plane (PostgreSQL, and SQLite at the end): the API round trip, every validation error naming
//! its field, tenant isolation, and what reaches the (in-process) data plane's config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::sync::Arc;

use cp_support::{Cp, Session};
use serde_json::{Value, json};
use shared::config::{Capability, RetryClass, RouteStrategy, TenantConfig};
use uuid::Uuid;

/// The tenant config the in-process data plane holds now.
fn published(cp: &Cp, s: &Session) -> Arc<TenantConfig> {
    cp.running
        .memory_bus()
        .expect("zero-setup mode")
        .get_tenant(s.tenant_id.parse().unwrap())
        .expect("tenant published")
}

/// A mock provider of `s`.
async fn provider(cp: &Cp, s: &Session) -> String {
    let p = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": format!("mock-{}", Uuid::new_v4().simple()), "kind": "mock"}),
        )
        .await
        .expect(201);
    p["id"].as_str().unwrap().to_owned()
}

/// A deployment on `provider` with `extra` fields; returns its id.
async fn deployment(cp: &Cp, s: &Session, provider: &str, name: &str, extra: Value) -> String {
    let mut body = json!({
        "name": name,
        "provider_id": provider,
        "upstream_model": "mock-1",
        "input_price_per_mtok": "1",
        "output_price_per_mtok": "2",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let m = cp
        .post("/api/v1/models", Some(&s.token), body)
        .await
        .expect(201);
    m["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deployment_fields_are_stored_copied_from_the_catalog_and_published() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let p = provider(&cp, &s).await;

    let m = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({
                "name": "chat", "provider_id": p, "upstream_model": "mock-1",
                "input_price_per_mtok": 1, "output_price_per_mtok": 2, "region": "eu-west-1",
                "context_window": 128000, "capabilities": ["json_mode", "tools", "tools"],
                "rpm_limit": 500, "tpm_limit": 200000,
            }),
        )
        .await
        .expect(201);
    assert_eq!(m["context_window"], 128000);
    assert_eq!(m["capabilities"], json!(["tools", "json_mode"]));
    assert_eq!(m["rpm_limit"], 500);
    assert_eq!(m["tpm_limit"], 200000);
    let id = m["id"].as_str().unwrap();
    let got = cp
        .get(&format!("/api/v1/models/{id}"), &s.token)
        .await
        .expect(200);
    assert_eq!(got, m);
    let list = cp.get("/api/v1/models", &s.token).await.expect(200);
    assert_eq!(list["data"][0], m);

    // Unset fields are null, not invented.
    let plain = deployment(&cp, &s, &p, "plain", json!({})).await;
    let plain = cp
        .get(&format!("/api/v1/models/{plain}"), &s.token)
        .await
        .expect(200);
    for field in ["context_window", "capabilities", "rpm_limit", "tpm_limit"] {
        assert!(plain[field].is_null(), "{field}: {plain}");
    }

    // From a catalog entry: context window and capabilities copied, unless given.
    cp.post(
        "/api/v1/catalog",
        Some(&s.token),
        json!({
            "id": "acme/mock-ft", "provider": "mock", "upstream_model": "mock-ft",
            "context_window": 32000, "input_price_per_mtok": "1", "output_price_per_mtok": "2",
            "capabilities": {"tools": true, "vision": false, "json_mode": true, "streaming": true},
        }),
    )
    .await
    .expect(201);
    let from_catalog = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({"name": "ft", "provider_id": p, "catalog_id": "acme/mock-ft"}),
        )
        .await
        .expect(201);
    assert_eq!(from_catalog["context_window"], 32000);
    assert_eq!(from_catalog["capabilities"], json!(["tools", "json_mode"]));
    let overridden = cp
        .post(
            "/api/v1/models",
            Some(&s.token),
            json!({"name": "ft2", "provider_id": p, "catalog_id": "acme/mock-ft",
                   "context_window": 16000, "capabilities": []}),
        )
        .await
        .expect(201);
    assert_eq!(overridden["context_window"], 16000);
    assert_eq!(overridden["capabilities"], json!([]));

    // Published in the deployment records.
    let config = published(&cp, &s);
    let rec = config
        .deployments
        .iter()
        .find(|d| d.id.to_string() == id)
        .unwrap();
    assert_eq!(rec.context_window, Some(128_000));
    assert_eq!(
        rec.capabilities,
        Some(vec![Capability::Tools, Capability::JsonMode])
    );
    assert_eq!((rec.rpm_limit, rec.tpm_limit), (Some(500), Some(200_000)));
    assert_eq!(rec.region.as_deref(), Some("eu-west-1"));
    let rec = config
        .deployments
        .iter()
        .find(|d| d.id.to_string() == from_catalog["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(rec.context_window, Some(32_000));

    // Validation names the field.
    let bad = |extra: Value| {
        let mut body = json!({"name": "x", "provider_id": p, "upstream_model": "u",
                              "input_price_per_mtok": 1, "output_price_per_mtok": 1});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        cp.post("/api/v1/models", Some(&s.token), body)
    };
    for (extra, field) in [
        (json!({"context_window": 0}), "context_window:"),
        (
            json!({"context_window": 1_000_000_000u64}),
            "context_window:",
        ),
        (
            json!({"capabilities": ["tools", "telepathy"]}),
            "capabilities[1]:",
        ),
        (json!({"capabilities": "tools"}), "capabilities:"),
        (json!({"rpm_limit": 0}), "rpm_limit:"),
        (json!({"rpm_limit": -5}), "rpm_limit:"),
        (json!({"tpm_limit": 0}), "tpm_limit:"),
    ] {
        let msg = bad(extra.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{extra}: {msg}");
    }
    cp.stop().await;
}

#[tokio::test]
async fn routes_round_trip_publish_and_guard_their_deployments() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let p = provider(&cp, &s).await;
    let eu = deployment(&cp, &s, &p, "gpt", json!({"region": "eu-west-1"})).await;
    let eu2 = deployment(&cp, &s, &p, "gpt", json!({"region": "eu-central-1"})).await;
    let us = deployment(&cp, &s, &p, "gpt-us", json!({"region": "us-east-1"})).await;
    let version_before = published(&cp, &s).version;

    let created = cp
        .post(
            "/api/v1/routes",
            Some(&s.token),
            json!({
                "name": "support", "strategy": "priority",
                "candidates": [{"model_id": eu, "priority": 1}, {"model_id": eu2, "priority": 0}],
                "allowed_regions": ["eu"], "max_attempts": 3,
                "retry_on": ["rate_limited", "server_error", "timeout"],
                "timeouts": {"connect_ms": 2000, "first_token_ms": 10000, "total_ms": 60000},
                "hedge_after_ms": 1500,
            }),
        )
        .await
        .expect(201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "support");
    assert_eq!(created["strategy"], "priority");
    assert_eq!(
        created["candidates"],
        json!([
            {"model_id": eu, "weight": null, "priority": 1},
            {"model_id": eu2, "weight": null, "priority": 0},
        ])
    );
    assert_eq!(created["allowed_regions"], json!(["eu"]));
    assert_eq!(created["max_attempts"], 3);
    assert_eq!(
        created["retry_on"],
        json!(["rate_limited", "server_error", "timeout"])
    );
    assert_eq!(
        created["timeouts"],
        json!({"connect_ms": 2000, "first_token_ms": 10000, "total_ms": 60000})
    );
    assert_eq!(created["hedge_after_ms"], 1500);
    assert_eq!(created["sticky"], false);
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());

    let got = cp
        .get(&format!("/api/v1/routes/{id}"), &s.token)
        .await
        .expect(200);
    assert_eq!(got, created);
    let list = cp.get("/api/v1/routes", &s.token).await.expect(200);
    assert_eq!(list["data"], json!([created]));

    // Published before the POST returned, with the deployment ids as candidates.
    let config = published(&cp, &s);
    assert!(config.version > version_before);
    assert_eq!(config.routes.len(), 1);
    let r = &config.routes[0];
    assert_eq!(r.id.to_string(), id);
    assert_eq!(r.name, "support");
    assert_eq!(r.strategy, RouteStrategy::Priority);
    let cands: Vec<(String, Option<i32>)> = r
        .candidates
        .iter()
        .map(|c| (c.deployment_id.to_string(), c.priority))
        .collect();
    assert_eq!(cands, vec![(eu.clone(), Some(1)), (eu2.clone(), Some(0))]);
    assert_eq!(r.allowed_regions, Some(vec!["eu".to_owned()]));
    assert_eq!(r.max_attempts, Some(3));
    assert_eq!(
        r.retry_on,
        Some(vec![
            RetryClass::RateLimited,
            RetryClass::ServerError,
            RetryClass::Timeout
        ])
    );
    assert_eq!(r.timeouts.connect_ms, Some(2000));
    assert_eq!(r.timeouts.first_token_ms, Some(10_000));
    assert_eq!(r.timeouts.total_ms, Some(60_000));
    assert_eq!(r.hedge_after_ms, Some(1500));
    assert!(!r.sticky);

    // A name that a deployment has is allowed (the route shadows it); a taken route name is not.
    cp.post(
        "/api/v1/routes",
        Some(&s.token),
        json!({"name": "gpt", "strategy": "cheapest", "candidates": [{"model_id": us}, {"model_id": eu}]}),
    )
    .await
    .expect(201);
    let msg = cp
        .post(
            "/api/v1/routes",
            Some(&s.token),
            json!({"name": "support", "strategy": "fastest", "candidates": [{"model_id": us}]}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(msg.contains("already exists"), "{msg}");
    let msg = cp
        .patch(
            &format!("/api/v1/routes/{id}"),
            &s.token,
            json!({"name": "gpt"}),
        )
        .await
        .expect_error(409, "conflict");
    assert!(msg.contains("already exists"), "{msg}");

    // PATCH: only what is named changes; the result is validated as a whole.
    let msg = cp
        .patch(
            &format!("/api/v1/routes/{id}"),
            &s.token,
            json!({"strategy": "weighted"}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(
        msg.starts_with("candidates[0].priority: is only used by strategy priority"),
        "{msg}"
    );
    let patched = cp
        .patch(
            &format!("/api/v1/routes/{id}"),
            &s.token,
            json!({
                "strategy": "weighted", "sticky": true,
                "candidates": [{"model_id": eu, "weight": 3}, {"model_id": eu2, "weight": 1}],
                "timeouts": null, "hedge_after_ms": null, "retry_on": null,
            }),
        )
        .await
        .expect(200);
    assert_eq!(patched["name"], "support");
    assert_eq!(patched["strategy"], "weighted");
    assert_eq!(patched["sticky"], true);
    assert_eq!(patched["max_attempts"], 3, "untouched fields stay");
    assert_eq!(patched["allowed_regions"], json!(["eu"]));
    assert_eq!(
        patched["timeouts"],
        json!({"connect_ms": null, "first_token_ms": null, "total_ms": null})
    );
    assert!(patched["retry_on"].is_null() && patched["hedge_after_ms"].is_null());
    assert_eq!(patched["created_at"], created["created_at"]);
    let r = published(&cp, &s)
        .routes
        .iter()
        .find(|r| r.id.to_string() == id)
        .cloned()
        .unwrap();
    assert_eq!(r.strategy, RouteStrategy::Weighted);
    assert!(r.sticky);
    let weights: Vec<Option<u32>> = r.candidates.iter().map(|c| c.weight).collect();
    assert_eq!(weights, vec![Some(3), Some(1)]);
    assert_eq!(r.timeouts.total_ms, None);
    assert_eq!(r.retry_on, None);
    // Adding a candidate outside the route's region pin is refused.
    let msg = cp
        .patch(
            &format!("/api/v1/routes/{id}"),
            &s.token,
            json!({"candidates": [{"model_id": eu}, {"model_id": us}]}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert!(
        msg.starts_with("candidates[1].model_id: the deployment has region \"us-east-1\""),
        "{msg}"
    );
    // Clearing the pin allows it.
    cp.patch(
        &format!("/api/v1/routes/{id}"),
        &s.token,
        json!({"allowed_regions": null, "candidates": [{"model_id": eu}, {"model_id": us}]}),
    )
    .await
    .expect(200);
    assert_eq!(
        published(&cp, &s)
            .routes
            .iter()
            .find(|r| r.id.to_string() == id)
            .unwrap()
            .allowed_regions,
        None
    );

    // A deployment a route lists cannot be deleted; the answer names the routes.
    let msg = cp
        .delete(&format!("/api/v1/models/{us}"), &s.token)
        .await
        .expect_error(409, "conflict");
    assert!(
        msg.contains("\"gpt\"") && msg.contains("\"support\""),
        "{msg}"
    );
    cp.patch(
        &format!("/api/v1/routes/{id}"),
        &s.token,
        json!({"candidates": [{"model_id": eu}]}),
    )
    .await
    .expect(200);
    let msg = cp
        .delete(&format!("/api/v1/models/{us}"), &s.token)
        .await
        .expect_error(409, "conflict");
    assert!(
        msg.contains("route \"gpt\"") && !msg.contains("support"),
        "{msg}"
    );
    // Deleting the routes releases it.
    let gpt_route = cp.get("/api/v1/routes", &s.token).await.expect(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "gpt")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cp.delete(&format!("/api/v1/routes/{gpt_route}"), &s.token)
        .await
        .expect(204);
    cp.delete(&format!("/api/v1/models/{us}"), &s.token)
        .await
        .expect(204);

    cp.delete(&format!("/api/v1/routes/{id}"), &s.token)
        .await
        .expect(204);
    cp.get(&format!("/api/v1/routes/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    cp.delete(&format!("/api/v1/routes/{id}"), &s.token)
        .await
        .expect_error(404, "not_found");
    assert!(published(&cp, &s).routes.is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn every_route_validation_error_names_its_field() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let other = cp.signup().await;
    let p = provider(&cp, &s).await;
    let chat = deployment(&cp, &s, &p, "chat", json!({"region": "eu-west-1"})).await;
    let chat2 = deployment(&cp, &s, &p, "chat2", json!({})).await;
    let embed = deployment(&cp, &s, &p, "embed", json!({"mode": "embedding"})).await;
    let other_p = provider(&cp, &other).await;
    let foreign = deployment(&cp, &other, &other_p, "theirs", json!({})).await;
    let unknown = Uuid::new_v4().to_string();

    let route = |extra: Value| {
        let mut body =
            json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": chat}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        // serde's own errors name the field too.
        (
            route(json!({"strategy": "random"})),
            "strategy: must be one of priority, weighted, cheapest, fastest, reliable, least_busy",
        ),
        (
            route(json!({"retry_on": ["timeout", "sometimes"]})),
            "retry_on[1]: must be one of rate_limited",
        ),
        (
            route(json!({"candidates": [{"model_id": chat}, {"model_id": "nope"}]})),
            "candidates[1].model_id: must be a UUID",
        ),
        (
            route(json!({"candidates": [{"model_id": chat, "wieght": 2}]})),
            "candidates[0].wieght: unknown field",
        ),
        (
            route(json!({"timeouts": {"total": 5}})),
            "timeouts.total: unknown field",
        ),
        (
            json!({"name": "r", "candidates": [{"model_id": chat}]}),
            "strategy: is required",
        ),
        // The rules.
        (route(json!({"name": "  "})), "name: must not be empty"),
        (
            route(json!({"name": "x".repeat(201)})),
            "name: must be at most 200 characters",
        ),
        (
            route(json!({"candidates": []})),
            "candidates: must list at least one model deployment",
        ),
        (
            route(json!({"candidates": [{"model_id": chat}, {"model_id": unknown}]})),
            "candidates[1].model_id: no model deployment with this id in this organization",
        ),
        (
            route(json!({"candidates": [{"model_id": chat}, {"model_id": foreign}]})),
            "candidates[1].model_id: no model deployment with this id in this organization",
        ),
        (
            route(
                json!({"candidates": [{"model_id": chat}, {"model_id": chat2}, {"model_id": chat}]}),
            ),
            "candidates[2].model_id: lists the same deployment as candidates[0]",
        ),
        (
            route(json!({"candidates": [{"model_id": chat}, {"model_id": embed}]})),
            "candidates[1].model_id: is an embedding deployment, but candidates[0] is a chat deployment",
        ),
        (
            route(
                json!({"strategy": "weighted", "candidates": [{"model_id": chat, "weight": -1}]}),
            ),
            "candidates[0].weight: must be between 0 and 1000000",
        ),
        (
            route(
                json!({"strategy": "weighted", "candidates": [{"model_id": chat, "weight": 0}, {"model_id": chat2, "weight": 0}]}),
            ),
            "candidates: the weights must not all be 0",
        ),
        (
            route(json!({"candidates": [{"model_id": chat, "weight": 1}]})),
            "candidates[0].weight: is only used by strategy weighted",
        ),
        (
            route(
                json!({"strategy": "reliable", "candidates": [{"model_id": chat, "priority": 1}]}),
            ),
            "candidates[0].priority: is only used by strategy priority",
        ),
        (
            route(json!({"allowed_regions": ["eu", ""]})),
            "allowed_regions[1]: must not be empty",
        ),
        (
            route(json!({"allowed_regions": []})),
            "allowed_regions: must list at least one region",
        ),
        (
            route(json!({"allowed_regions": ["us"]})),
            "candidates[0].model_id: the deployment has region \"eu-west-1\", which allowed_regions does not allow",
        ),
        (
            route(json!({"max_attempts": 0})),
            "max_attempts: must be between 1 and 10",
        ),
        (
            route(json!({"max_attempts": 11})),
            "max_attempts: must be between 1 and 10",
        ),
        (
            route(json!({"timeouts": {"connect_ms": -1}})),
            "timeouts.connect_ms: must be between 1 and 3600000",
        ),
        (
            route(json!({"timeouts": {"first_token_ms": 3_600_001}})),
            "timeouts.first_token_ms: must be between 1 and 3600000",
        ),
        (
            route(json!({"timeouts": {"connect_ms": 5000, "total_ms": 1000}})),
            "timeouts.connect_ms: must not exceed timeouts.total_ms",
        ),
        (
            route(json!({"hedge_after_ms": 0})),
            "hedge_after_ms: must be between 1 and 3600000",
        ),
        (
            route(json!({"hedge_after_ms": 100})),
            "hedge_after_ms: needs at least two candidates",
        ),
        (
            route(json!({"sticky": true})),
            "sticky: is only used by strategy weighted",
        ),
    ];
    for (body, want) in cases {
        let msg = cp
            .post("/api/v1/routes", Some(&s.token), body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(
            msg.starts_with(want),
            "{body}\n  got:  {msg}\n  want: {want}"
        );
    }
    // Nothing was created by any of them.
    let list = cp.get("/api/v1/routes", &s.token).await.expect(200);
    assert_eq!(list["data"], json!([]));

    // PATCH: the same rules, and fields without a "no value" refuse null.
    let r = cp
        .post("/api/v1/routes", Some(&s.token), route(json!({})))
        .await
        .expect(201);
    let path = format!("/api/v1/routes/{}", r["id"].as_str().unwrap());
    for (body, want) in [
        (json!({"name": null}), "name: must be"),
        (json!({"sticky": null}), "sticky: must be"),
        (json!({"candidates": null}), "candidates: must be"),
        (
            json!({"candidates": [{"model_id": foreign}]}),
            "candidates[0].model_id: no model deployment with this id in this organization",
        ),
        (
            json!({"strategy": "round_robin"}),
            "strategy: must be one of",
        ),
        (json!({"colour": "blue"}), "colour: unknown field"),
    ] {
        let msg = cp
            .patch(&path, &s.token, body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(
            msg.starts_with(want),
            "{body}\n  got:  {msg}\n  want: {want}"
        );
    }
    // Unchanged by the refused PATCHes.
    assert_eq!(cp.get(&path, &s.token).await.expect(200), r);
    cp.stop().await;
}

#[tokio::test]
async fn routes_are_tenant_scoped_and_managed_by_owners_and_admins() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let b = cp.signup().await;
    let pa = provider(&cp, &a).await;
    let da = deployment(&cp, &a, &pa, "m", json!({})).await;
    let route = cp
        .post(
            "/api/v1/routes",
            Some(&a.token),
            json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": da}]}),
        )
        .await
        .expect(201);
    let path = format!("/api/v1/routes/{}", route["id"].as_str().unwrap());

    // Another organization sees nothing and can change nothing: 404, like a missing route.
    cp.get(&path, &b.token).await.expect_error(404, "not_found");
    cp.patch(&path, &b.token, json!({"name": "mine"}))
        .await
        .expect_error(404, "not_found");
    cp.delete(&path, &b.token)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        cp.get("/api/v1/routes", &b.token).await.expect(200)["data"],
        json!([])
    );
    // Nor can it route to a's deployment (same answer as an unknown id), or delete it.
    let msg = cp
        .post(
            "/api/v1/routes",
            Some(&b.token),
            json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": da}]}),
        )
        .await
        .expect_error(400, "validation_failed");
    assert_eq!(
        msg,
        "candidates[0].model_id: no model deployment with this id in this organization"
    );
    cp.delete(&format!("/api/v1/models/{da}"), &b.token)
        .await
        .expect_error(404, "not_found");
    // b may use the same route name: names are per organization.
    let pb = provider(&cp, &b).await;
    let db = deployment(&cp, &b, &pb, "m", json!({})).await;
    cp.post(
        "/api/v1/routes",
        Some(&b.token),
        json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": db}]}),
    )
    .await
    .expect(201);
    assert_eq!(published(&cp, &a).routes.len(), 1);
    assert_eq!(
        published(&cp, &b).routes[0].candidates[0]
            .deployment_id
            .to_string(),
        db
    );

    // Members and viewers read routes but do not change them.
    let member_user = cp.signup().await;
    let member = cp.join(&a, &member_user, "member").await;
    assert_eq!(
        cp.get("/api/v1/routes", &member.token).await.expect(200)["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    cp.post(
        "/api/v1/routes",
        Some(&member.token),
        json!({"name": "r2", "strategy": "priority", "candidates": [{"model_id": da}]}),
    )
    .await
    .expect_error(403, "forbidden");
    cp.patch(&path, &member.token, json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    cp.delete(&path, &member.token)
        .await
        .expect_error(403, "forbidden");
    cp.stop().await;
}

#[tokio::test]
async fn organization_and_team_region_policies_are_published() {
    let cp = Cp::start().await;
    let s = cp.signup().await;

    let org = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert_eq!(org["id"], s.tenant_id.as_str());
    assert!(org["allowed_regions"].is_null());
    assert!(org["name"].is_string() && org["created_at"].is_string());
    assert_eq!(published(&cp, &s).allowed_regions, None);

    let before = published(&cp, &s).version;
    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"allowed_regions": [" eu ", "us-east-1", "EU"]}),
        )
        .await
        .expect(200);
    assert_eq!(org["allowed_regions"], json!(["eu", "us-east-1"]));
    let config = published(&cp, &s);
    assert_eq!(
        config.allowed_regions,
        Some(vec!["eu".to_owned(), "us-east-1".to_owned()])
    );
    assert!(config.version > before);
    assert_eq!(
        cp.get("/api/v1/organization", &s.token).await.expect(200),
        org
    );
    // An empty PATCH changes nothing (and publishes nothing).
    let v = published(&cp, &s).version;
    assert_eq!(
        cp.patch("/api/v1/organization", &s.token, json!({}))
            .await
            .expect(200),
        org
    );
    assert_eq!(published(&cp, &s).version, v);
    for (body, want) in [
        (
            json!({"allowed_regions": []}),
            "allowed_regions: must list at least one region",
        ),
        (
            json!({"allowed_regions": ["eu", " "]}),
            "allowed_regions[1]: must not be empty",
        ),
        (
            json!({"allowed_regions": ["eu west"]}),
            "allowed_regions[0]: must be a region",
        ),
        (json!({"allowed_regions": "eu"}), "allowed_regions: must be"),
        (json!({"name": "  "}), "name: must not be empty"),
        (json!({"nickname": "x"}), "nickname: unknown field"),
    ] {
        let msg = cp
            .patch("/api/v1/organization", &s.token, body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(want), "{body}: {msg}");
    }
    // Owners and admins rename it (trimmed); the answer and later reads show the new name.
    let renamed = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"name": "  Renamed Inc  "}),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "Renamed Inc");
    assert_eq!(
        cp.get("/api/v1/organization", &s.token).await.expect(200)["name"],
        "Renamed Inc"
    );
    // Members read it but cannot change it.
    let member_user = cp.signup().await;
    let member = cp.join(&s, &member_user, "member").await;
    assert_eq!(
        cp.get("/api/v1/organization", &member.token)
            .await
            .expect(200)["allowed_regions"],
        json!(["eu", "us-east-1"])
    );
    cp.patch(
        "/api/v1/organization",
        &member.token,
        json!({"allowed_regions": null}),
    )
    .await
    .expect_error(403, "forbidden");
    // null removes the policy.
    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"allowed_regions": null}),
        )
        .await
        .expect(200);
    assert!(org["allowed_regions"].is_null());
    assert_eq!(published(&cp, &s).allowed_regions, None);

    // Teams: created with a policy, changed, renamed, cleared, deleted.
    let eu_team = cp
        .post(
            "/api/v1/teams",
            Some(&s.token),
            json!({"name": "eu-team", "allowed_regions": ["eu"]}),
        )
        .await
        .expect(201);
    assert_eq!(eu_team["allowed_regions"], json!(["eu"]));
    let eu_id: Uuid = eu_team["id"].as_str().unwrap().parse().unwrap();
    let plain = cp
        .post("/api/v1/teams", Some(&s.token), json!({"name": "plain"}))
        .await
        .expect(201);
    assert!(plain["allowed_regions"].is_null());
    let config = published(&cp, &s);
    assert_eq!(config.team_regions.len(), 1, "only teams with a policy");
    assert_eq!(config.team_regions[&eu_id], vec!["eu".to_owned()]);

    let team_path = format!("/api/v1/teams/{eu_id}");
    let patched = cp
        .patch(
            &team_path,
            &s.token,
            json!({"allowed_regions": ["eu-west-1", "eu-central-1"]}),
        )
        .await
        .expect(200);
    assert_eq!(patched["name"], "eu-team");
    assert_eq!(
        patched["allowed_regions"],
        json!(["eu-west-1", "eu-central-1"])
    );
    assert_eq!(
        published(&cp, &s).team_regions[&eu_id],
        vec!["eu-west-1".to_owned(), "eu-central-1".to_owned()]
    );
    let renamed = cp
        .patch(&team_path, &s.token, json!({"name": "europe"}))
        .await
        .expect(200);
    assert_eq!(renamed["name"], "europe");
    assert_eq!(renamed["allowed_regions"], patched["allowed_regions"]);
    assert_eq!(cp.get(&team_path, &s.token).await.expect(200), renamed);
    cp.patch(&team_path, &s.token, json!({"name": "plain"}))
        .await
        .expect_error(409, "conflict");
    for (body, want) in [
        (
            json!({"allowed_regions": []}),
            "allowed_regions: must list at least one region",
        ),
        (json!({"name": null}), "name: must be"),
        (json!({"name": ""}), "name: must not be empty"),
        (json!({"budget": 5}), "budget: unknown field"),
    ] {
        let msg = cp
            .patch(&team_path, &s.token, body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with(want), "{body}: {msg}");
    }
    cp.patch(&team_path, &member.token, json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    // Another organization's team is missing.
    let other = cp.signup().await;
    cp.get(&team_path, &other.token)
        .await
        .expect_error(404, "not_found");
    cp.patch(&team_path, &other.token, json!({"allowed_regions": null}))
        .await
        .expect_error(404, "not_found");

    let cleared = cp
        .patch(&team_path, &s.token, json!({"allowed_regions": null}))
        .await
        .expect(200);
    assert!(cleared["allowed_regions"].is_null());
    assert!(published(&cp, &s).team_regions.is_empty());
    // Deleting a team with a policy takes it out of the published config.
    cp.patch(&team_path, &s.token, json!({"allowed_regions": ["eu"]}))
        .await
        .expect(200);
    assert_eq!(published(&cp, &s).team_regions.len(), 1);
    cp.delete(&team_path, &s.token).await.expect(204);
    assert!(published(&cp, &s).team_regions.is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn routes_and_regions_work_on_sqlite() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let p = provider(&cp, &s).await;
    let a = deployment(
        &cp,
        &s,
        &p,
        "a",
        json!({"region": "eu-west-1", "context_window": 8000, "capabilities": ["vision"]}),
    )
    .await;
    let b = deployment(&cp, &s, &p, "b", json!({"region": "eu-north-1"})).await;
    let route = cp
        .post(
            "/api/v1/routes",
            Some(&s.token),
            json!({"name": "r", "strategy": "weighted", "sticky": true,
                   "candidates": [{"model_id": a, "weight": 2}, {"model_id": b}],
                   "allowed_regions": ["eu"], "retry_on": ["connection"]}),
        )
        .await
        .expect(201);
    let path = format!("/api/v1/routes/{}", route["id"].as_str().unwrap());
    assert_eq!(cp.get(&path, &s.token).await.expect(200), route);
    // The foreign key holds on SQLite too.
    cp.delete(&format!("/api/v1/models/{b}"), &s.token)
        .await
        .expect_error(409, "conflict");
    cp.post(
        "/api/v1/routes",
        Some(&s.token),
        json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": a}]}),
    )
    .await
    .expect_error(409, "conflict");
    cp.patch(&path, &s.token, json!({"candidates": [{"model_id": a}]}))
        .await
        .expect(200);
    cp.delete(&format!("/api/v1/models/{b}"), &s.token)
        .await
        .expect(204);
    cp.patch(
        "/api/v1/organization",
        &s.token,
        json!({"allowed_regions": ["eu"]}),
    )
    .await
    .expect(200);
    let team = cp
        .post(
            "/api/v1/teams",
            Some(&s.token),
            json!({"name": "t", "allowed_regions": ["eu-west-1"]}),
        )
        .await
        .expect(201);

    let config = published(&cp, &s);
    assert_eq!(config.allowed_regions, Some(vec!["eu".to_owned()]));
    let team_id: Uuid = team["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(config.team_regions[&team_id], vec!["eu-west-1".to_owned()]);
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].candidates.len(), 1);
    assert_eq!(
        config.routes[0].retry_on,
        Some(vec![RetryClass::Connection])
    );
    let d = &config.deployments[0];
    assert_eq!(d.context_window, Some(8000));
    assert_eq!(d.capabilities, Some(vec![Capability::Vision]));

    cp.delete(&path, &s.token).await.expect(204);
    assert!(published(&cp, &s).routes.is_empty());
    cp.stop().await;
}

#[tokio::test]
async fn testkit_helpers_drive_routes_and_regions() {
    let cp = Cp::start().await;
    let mut api = testkit::api::ControlApi::new(&cp.base).unwrap();
    let provisioned = api
        .provision(&testkit::api::Provision {
            kind: "mock",
            base_url: None,
            api_key: None,
            model: "m",
            upstream_model: "mock-1",
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
        })
        .await
        .unwrap();
    let route = api
        .create_route(&json!({"name": "r", "strategy": "priority",
                               "candidates": [{"model_id": provisioned.model_id}]}))
        .await
        .unwrap();
    let id = route["id"].as_str().unwrap();
    let updated = api
        .update_route(id, &json!({"max_attempts": 2}))
        .await
        .unwrap();
    assert_eq!(updated["max_attempts"], 2);
    let team = api.create_team(&json!({"name": "eu"})).await.unwrap();
    let team_id = team["id"].as_str().unwrap();
    let team = api.set_team_regions(team_id, Some(&["eu"])).await.unwrap();
    assert_eq!(team["allowed_regions"], json!(["eu"]));
    let org = api.set_org_regions(Some(&["eu", "us"])).await.unwrap();
    assert_eq!(org["allowed_regions"], json!(["eu", "us"]));

    let tenant_id: Uuid = org["id"].as_str().unwrap().parse().unwrap();
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(tenant_id)
        .unwrap();
    assert_eq!(config.routes[0].max_attempts, Some(2));
    assert_eq!(
        config.team_regions[&team_id.parse::<Uuid>().unwrap()],
        vec!["eu".to_owned()]
    );
    let org = api.set_org_regions(None).await.unwrap();
    assert!(org["allowed_regions"].is_null());
    api.set_team_regions(team_id, None).await.unwrap();
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(tenant_id)
        .unwrap();
    assert_eq!(config.allowed_regions, None);
    assert!(config.team_regions.is_empty());
    cp.stop().await;
}
