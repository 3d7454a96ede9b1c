//! The model catalog API on PostgreSQL: the built-in listing and its filters, an organization's
//! own entries (overrides and additions, invisible to other organizations), deployments created
//! from a catalog entry (and what reaches the data plane), and the operator's catalog file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::{Cp, Session};
use serde_json::{Value, json};
use uuid::Uuid;

/// The ids of a listing.
fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
}

async fn provider(cp: &Cp, s: &Session, body: Value) -> String {
    cp.post("/api/v1/providers", Some(&s.token), body)
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_builtin_catalog_is_listed_and_filtered() {
    let cp = Cp::start().await;
    let owner = cp.signup().await;
    let v = cp.signup().await;
    let viewer = cp.join(&owner, &v, "viewer").await;

    let all = cp.get("/api/v1/catalog", &viewer.token).await.expect(200);
    assert_eq!(all["as_of"], "2026-11");
    let all_ids = ids(&all);
    assert!(all_ids.len() >= 60, "{} entries", all_ids.len());
    let mut sorted = all_ids.clone();
    sorted.sort();
    assert_eq!(all_ids, sorted, "sorted by id");
    assert!(
        all["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["source_kind"] == "builtin")
    );
    let mini = find(&all, "openai/gpt-4o-mini").expect("gpt-4o-mini listed");
    assert_eq!(mini["provider"], "openai");
    assert_eq!(mini["upstream_model"], "gpt-4o-mini");
    assert_eq!(mini["mode"], "chat");
    assert_eq!(mini["input_price_per_mtok"], json!(0.15));
    assert_eq!(mini["input_price_micros_per_mtok"], 150_000);
    assert_eq!(mini["output_price_micros_per_mtok"], 600_000);
    assert_eq!(mini["cached_input_price_micros_per_mtok"], 75_000);
    assert_eq!(mini["cached_input_price_per_mtok"], json!(0.075));
    assert_eq!(mini["max_output_tokens"], 16_384);
    assert_eq!(mini["context_window"], 128_000);
    assert_eq!(mini["capabilities"]["tools"], true);
    assert!(mini["source"].as_str().unwrap().starts_with("https://"));

    let bedrock = cp
        .get("/api/v1/catalog?provider=bedrock", &owner.token)
        .await
        .expect(200);
    assert!(ids(&bedrock).len() >= 10);
    assert!(
        bedrock["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["provider"] == "bedrock")
    );
    assert!(find(&bedrock, "bedrock/amazon.titan-embed-text-v2").is_some());

    let embeddings = cp
        .get("/api/v1/catalog?mode=embedding", &owner.token)
        .await
        .expect(200);
    for e in embeddings["data"].as_array().unwrap() {
        assert_eq!(e["mode"], "embedding", "{e}");
        assert!(e["max_output_tokens"].is_null(), "{e}");
        assert_eq!(e["capabilities"]["embeddings"], true, "{e}");
    }
    for id in [
        "openai/text-embedding-3-small",
        "openai/text-embedding-3-large",
        "gemini/gemini-embedding-001",
        "bedrock/cohere.embed-english-v3",
        "mistral/mistral-embed",
    ] {
        assert!(find(&embeddings, id).is_some(), "{id}");
    }
    let both = cp
        .get(
            "/api/v1/catalog?provider=openai&mode=embedding",
            &owner.token,
        )
        .await
        .expect(200);
    assert!(
        both["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["provider"] == "openai" && e["mode"] == "embedding")
    );
    assert_eq!(ids(&both).len(), 3);

    let msg = cp
        .get("/api/v1/catalog?provider=nope", &owner.token)
        .await
        .expect_error(400, "validation_failed");
    assert!(
        msg.starts_with("provider:") && msg.contains("azure_openai"),
        "{msg}"
    );
    cp.get("/api/v1/catalog?mode=image", &owner.token)
        .await
        .expect_error(400, "validation_failed");

    // One entry, with the slash in the id as is or encoded.
    let one = cp
        .get("/api/v1/catalog/openai/gpt-4o-mini", &viewer.token)
        .await
        .expect(200);
    assert_eq!(&one, mini);
    let encoded = cp
        .get("/api/v1/catalog/openai%2Fgpt-4o-mini", &viewer.token)
        .await
        .expect(200);
    assert_eq!(encoded, one);
    cp.get(
        "/api/v1/catalog/bedrock/anthropic.claude-3-haiku",
        &viewer.token,
    )
    .await
    .expect(200);
    cp.get("/api/v1/catalog/openai/no-such-model", &viewer.token)
        .await
        .expect_error(404, "not_found");
    cp.call(reqwest::Method::GET, "/api/v1/catalog", None, None)
        .await
        .expect_error(401, "unauthorized");
    cp.stop().await;
}

#[tokio::test]
async fn an_organizations_entries_override_the_builtin_ones_and_stay_private() {
    let cp = Cp::start().await;
    let a = cp.signup().await;
    let b = cp.signup().await;
    let m = cp.signup().await;
    let a_member = cp.join(&a, &m, "member").await;

    // Override a built-in price: only the price is needed, the rest is inherited.
    let over = cp
        .put(
            "/api/v1/catalog/openai/gpt-4o-mini",
            &a.token,
            json!({"input_price_per_mtok": "0.1", "cached_input_price_per_mtok": 0.05}),
        )
        .await
        .expect(201);
    assert_eq!(over["source_kind"], "tenant");
    assert_eq!(over["input_price_micros_per_mtok"], 100_000);
    assert_eq!(over["output_price_micros_per_mtok"], 600_000);
    assert_eq!(over["cached_input_price_micros_per_mtok"], 50_000);
    assert_eq!(over["upstream_model"], "gpt-4o-mini");
    assert_eq!(over["max_output_tokens"], 16_384);
    // PUT again replaces (200); the id in the body must match the path.
    let over = cp
        .put(
            "/api/v1/catalog/openai%2Fgpt-4o-mini",
            &a.token,
            json!({"id": "openai/gpt-4o-mini", "input_price_per_mtok": "0.12"}),
        )
        .await
        .expect(200);
    assert_eq!(over["input_price_micros_per_mtok"], 120_000);
    assert_eq!(
        over["cached_input_price_micros_per_mtok"], 75_000,
        "a replacement starts from the built-in entry again"
    );
    cp.put(
        "/api/v1/catalog/openai/gpt-4o-mini",
        &a.token,
        json!({"id": "openai/gpt-4o", "input_price_per_mtok": "0.12"}),
    )
    .await
    .expect_error(400, "validation_failed");

    // A private addition.
    let ft = json!({
        "id": "acme/llama-ft-v2",
        "provider": "openai_compatible",
        "upstream_model": "acme-llama-ft-v2",
        "context_window": 131072,
        "max_output_tokens": 8192,
        "input_price_per_mtok": 0.4,
        "output_price_per_mtok": "0.8",
        "capabilities": {"tools": true, "streaming": true},
        "source": "https://acme.example/contract"
    });
    let added = cp
        .post("/api/v1/catalog", Some(&a.token), ft.clone())
        .await
        .expect(201);
    assert_eq!(added["display_name"], "acme-llama-ft-v2");
    assert_eq!(added["mode"], "chat");
    assert_eq!(added["capabilities"]["vision"], false);
    assert!(added["cached_input_price_per_mtok"].is_null());
    cp.post("/api/v1/catalog", Some(&a.token), ft.clone())
        .await
        .expect_error(409, "conflict");

    // A sees the merged catalog…
    let a_list = cp.get("/api/v1/catalog", &a.token).await.expect(200);
    let a_mini = find(&a_list, "openai/gpt-4o-mini").unwrap();
    assert_eq!(a_mini["source_kind"], "tenant");
    assert_eq!(a_mini["input_price_micros_per_mtok"], 120_000);
    assert_eq!(
        find(&a_list, "acme/llama-ft-v2").unwrap()["source_kind"],
        "tenant"
    );
    let filtered = cp
        .get("/api/v1/catalog?provider=openai_compatible", &a.token)
        .await
        .expect(200);
    assert_eq!(ids(&filtered), vec!["acme/llama-ft-v2".to_owned()]);
    // …B sees none of it.
    let b_list = cp.get("/api/v1/catalog", &b.token).await.expect(200);
    assert!(find(&b_list, "acme/llama-ft-v2").is_none());
    let b_mini = find(&b_list, "openai/gpt-4o-mini").unwrap();
    assert_eq!(b_mini["source_kind"], "builtin");
    assert_eq!(b_mini["input_price_micros_per_mtok"], 150_000);
    assert_eq!(ids(&b_list).len() + 1, ids(&a_list).len());
    cp.get("/api/v1/catalog/acme/llama-ft-v2", &b.token)
        .await
        .expect_error(404, "not_found");
    cp.delete("/api/v1/catalog/acme/llama-ft-v2", &b.token)
        .await
        .expect_error(404, "not_found");
    // B may use the same id for its own entry.
    cp.post("/api/v1/catalog", Some(&b.token), ft.clone())
        .await
        .expect(201);

    // Only owners and admins write.
    cp.post(
        "/api/v1/catalog",
        Some(&a_member.token),
        json!({"id": "x/y", "provider": "openai", "upstream_model": "y", "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
    )
    .await
    .expect_error(403, "forbidden");
    cp.put(
        "/api/v1/catalog/openai/gpt-4o",
        &a_member.token,
        json!({"input_price_per_mtok": 1}),
    )
    .await
    .expect_error(403, "forbidden");
    cp.delete("/api/v1/catalog/acme/llama-ft-v2", &a_member.token)
        .await
        .expect_error(403, "forbidden");
    cp.get("/api/v1/catalog/acme/llama-ft-v2", &a_member.token)
        .await
        .expect(200);

    // Validation names the field.
    let bad = |body: Value| cp.post("/api/v1/catalog", Some(&a.token), body);
    for (body, field) in [
        (json!({"provider": "openai"}), "id"),
        (
            json!({"id": "new/one", "upstream_model": "u", "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "provider",
        ),
        (
            json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "context_window",
        ),
        (
            json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "context_window": 10, "output_price_per_mtok": 1}),
            "input_price_per_mtok",
        ),
        (
            json!({"id": "new/one", "provider": "nope", "upstream_model": "u", "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "provider",
        ),
        (
            json!({"id": "new one", "provider": "openai", "upstream_model": "u", "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "id",
        ),
        (
            json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "context_window": 0, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "context_window",
        ),
        (
            json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "context_window": 10, "input_price_per_mtok": "1.0000001", "output_price_per_mtok": 1}),
            "input_price_per_mtok",
        ),
        (
            json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "mode": "embedding", "max_output_tokens": 5, "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 0}),
            "max_output_tokens",
        ),
    ] {
        let msg = bad(body).await.expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{msg} should name {field}");
    }
    bad(json!({"id": "new/one", "provider": "openai", "upstream_model": "u", "context_window": 10, "input_price_per_mtok": 1, "output_price_per_mtok": 1, "unknown": true}))
        .await
        .expect_error(400, "validation_failed");

    // Deleting the override brings the built-in entry back; built-in entries cannot be deleted.
    cp.delete("/api/v1/catalog/openai/gpt-4o-mini", &a.token)
        .await
        .expect(204);
    let back = cp
        .get("/api/v1/catalog/openai/gpt-4o-mini", &a.token)
        .await
        .expect(200);
    assert_eq!(back["source_kind"], "builtin");
    assert_eq!(back["input_price_micros_per_mtok"], 150_000);
    cp.delete("/api/v1/catalog/openai/gpt-4o-mini", &a.token)
        .await
        .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn deployments_take_their_values_from_the_catalog() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let tenant_id: Uuid = s.tenant_id.parse().unwrap();
    let bus = cp.running.memory_bus().expect("zero-setup mode").clone();
    let openai = provider(
        &cp,
        &s,
        json!({"name": "oai", "kind": "openai", "api_key": "sk-test"}),
    )
    .await;
    let azure = provider(
        &cp,
        &s,
        json!({"name": "az", "kind": "azure_openai", "base_url": "https://r.openai.azure.com", "api_key": "k"}),
    )
    .await;
    let bedrock = provider(
        &cp,
        &s,
        json!({"name": "aws", "kind": "bedrock", "region": "us-east-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "secret"}),
    )
    .await;
    let model = |body: Value| cp.post("/api/v1/models", Some(&s.token), body);

    // Everything from the catalog.
    let m =
        model(json!({"name": "mini", "provider_id": openai, "catalog_id": "openai/gpt-4o-mini"}))
            .await
            .expect(201);
    assert_eq!(m["upstream_model"], "gpt-4o-mini");
    assert_eq!(m["input_price_micros_per_mtok"], 150_000);
    assert_eq!(m["output_price_micros_per_mtok"], 600_000);
    assert_eq!(m["cached_input_price_micros_per_mtok"], 75_000);
    assert_eq!(m["cached_input_price_per_mtok"], json!(0.075));
    assert_eq!(m["max_output_tokens"], 16_384);
    assert_eq!(m["catalog_id"], "openai/gpt-4o-mini");
    assert_eq!(m["mode"], "chat");
    let id = m["id"].as_str().unwrap();
    assert_eq!(
        cp.get(&format!("/api/v1/models/{id}"), &s.token)
            .await
            .expect(200),
        m
    );
    // Published to the data plane before the POST returned.
    let config = bus.get_tenant(tenant_id).expect("tenant published");
    let d = config
        .deployments
        .iter()
        .find(|d| d.id.to_string() == id)
        .expect("deployment published");
    assert_eq!(d.upstream_model, "gpt-4o-mini");
    assert_eq!(
        (
            d.input_price_micros_per_mtok,
            d.output_price_micros_per_mtok
        ),
        (150_000, 600_000)
    );
    assert_eq!(d.cached_input_price_micros_per_mtok, Some(75_000));
    assert_eq!(d.max_output_tokens, Some(16_384));
    assert_eq!(d.catalog_id.as_deref(), Some("openai/gpt-4o-mini"));

    // Explicit fields override the catalog's.
    let m = model(json!({
        "name": "mini-pinned", "provider_id": openai, "catalog_id": "openai/gpt-4o-mini",
        "upstream_model": "gpt-4o-mini-2024-07-18", "input_price_per_mtok": "0.2",
        "cached_input_price_per_mtok": 0.01, "max_output_tokens": 1000
    }))
    .await
    .expect(201);
    assert_eq!(m["upstream_model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(m["input_price_micros_per_mtok"], 200_000);
    assert_eq!(m["output_price_micros_per_mtok"], 600_000);
    assert_eq!(m["cached_input_price_micros_per_mtok"], 10_000);
    assert_eq!(m["max_output_tokens"], 1000);
    let config = bus.get_tenant(tenant_id).unwrap();
    let d = config
        .deployments
        .iter()
        .find(|d| d.name == "mini-pinned")
        .unwrap();
    assert_eq!(d.input_price_micros_per_mtok, 200_000);
    assert_eq!(d.max_output_tokens, Some(1000));

    // Embedding models keep their mode and have no output limit.
    let e = model(json!({"name": "embed", "provider_id": openai, "catalog_id": "openai/text-embedding-3-small"}))
        .await
        .expect(201);
    assert_eq!(e["mode"], "embedding");
    assert!(e["max_output_tokens"].is_null());
    assert_eq!(e["input_price_micros_per_mtok"], 20_000);
    assert!(e["cached_input_price_per_mtok"].is_null());
    // The mode reaches the data plane, which refuses chat requests for embedding models.
    let config = bus.get_tenant(tenant_id).unwrap();
    let published = |name: &str| {
        config
            .deployments
            .iter()
            .find(|d| d.name == name)
            .unwrap()
            .mode
    };
    assert_eq!(
        published("embed"),
        shared::config::DeploymentMode::Embedding
    );
    assert_eq!(
        published("mini-pinned"),
        shared::config::DeploymentMode::Chat
    );

    // Azure serves OpenAI entries; Bedrock serves Bedrock entries only.
    let az = model(json!({"name": "az-4o", "provider_id": azure, "catalog_id": "openai/gpt-4o"}))
        .await
        .expect(201);
    assert_eq!(az["upstream_model"], "gpt-4o");
    model(json!({"name": "az-own", "provider_id": azure, "catalog_id": "azure_openai/gpt-4o"}))
        .await
        .expect(201);
    let br = model(json!({"name": "claude", "provider_id": bedrock, "catalog_id": "bedrock/anthropic.claude-sonnet-4-5"}))
        .await
        .expect(201);
    assert_eq!(
        br["upstream_model"],
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    assert_eq!(br["max_output_tokens"], 64_000);
    for (provider_id, catalog_id) in [
        (&openai, "anthropic/claude-sonnet-4"),
        (&openai, "bedrock/anthropic.claude-sonnet-4-5"),
        (&openai, "azure_openai/gpt-4o"),
        (&bedrock, "openai/gpt-4o"),
        (&bedrock, "anthropic/claude-sonnet-4"),
        (&azure, "anthropic/claude-sonnet-4"),
    ] {
        let msg = model(json!({"name": "x", "provider_id": provider_id, "catalog_id": catalog_id}))
            .await
            .expect_error(400, "validation_failed");
        assert!(msg.starts_with("catalog_id"), "{msg}");
    }
    model(json!({"name": "x", "provider_id": openai, "catalog_id": "openai/no-such-model"}))
        .await
        .expect_error(404, "not_found");
    // Without a catalog entry the upstream model and both prices are required.
    for (body, field) in [
        (
            json!({"name": "x", "provider_id": openai, "input_price_per_mtok": 1, "output_price_per_mtok": 1}),
            "upstream_model",
        ),
        (
            json!({"name": "x", "provider_id": openai, "upstream_model": "u", "output_price_per_mtok": 1}),
            "input_price_per_mtok",
        ),
        (
            json!({"name": "x", "provider_id": openai, "upstream_model": "u", "input_price_per_mtok": 1}),
            "output_price_per_mtok",
        ),
        (
            json!({"name": "x", "provider_id": openai, "catalog_id": "openai/gpt-4o", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"name": "x", "provider_id": openai, "catalog_id": "openai/text-embedding-3-large", "max_output_tokens": 10}),
            "max_output_tokens",
        ),
    ] {
        let msg = model(body).await.expect_error(400, "validation_failed");
        assert!(msg.starts_with(field), "{msg} should name {field}");
    }

    // The organization's own entries are used, and the values are copied at creation.
    cp.put(
        "/api/v1/catalog/openai/gpt-4o",
        &s.token,
        json!({"input_price_per_mtok": "2", "output_price_per_mtok": "8"}),
    )
    .await
    .expect(201);
    let negotiated =
        model(json!({"name": "4o", "provider_id": openai, "catalog_id": "openai/gpt-4o"}))
            .await
            .expect(201);
    assert_eq!(negotiated["input_price_micros_per_mtok"], 2_000_000);
    assert_eq!(negotiated["output_price_micros_per_mtok"], 8_000_000);
    assert_eq!(negotiated["cached_input_price_micros_per_mtok"], 1_250_000);
    cp.put(
        "/api/v1/catalog/openai/gpt-4o",
        &s.token,
        json!({"input_price_per_mtok": "1"}),
    )
    .await
    .expect(200);
    let again = cp
        .get(
            &format!("/api/v1/models/{}", negotiated["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .expect(200);
    assert_eq!(again["input_price_micros_per_mtok"], 2_000_000);

    // Another organization cannot use this organization's private entry.
    cp.post(
        "/api/v1/catalog",
        Some(&s.token),
        json!({"id": "acme/private", "provider": "openai", "upstream_model": "ft:gpt-4o-mini:acme", "context_window": 128000, "input_price_per_mtok": "0.3", "output_price_per_mtok": "1.2"}),
    )
    .await
    .expect(201);
    let ft = model(json!({"name": "ft", "provider_id": openai, "catalog_id": "acme/private"}))
        .await
        .expect(201);
    assert_eq!(ft["upstream_model"], "ft:gpt-4o-mini:acme");
    let other = cp.signup().await;
    let other_openai = provider(
        &cp,
        &other,
        json!({"name": "oai", "kind": "openai", "api_key": "sk-other"}),
    )
    .await;
    cp.post(
        "/api/v1/models",
        Some(&other.token),
        json!({"name": "ft", "provider_id": other_openai, "catalog_id": "acme/private"}),
    )
    .await
    .expect_error(404, "not_found");
    cp.stop().await;
}

#[tokio::test]
async fn an_operator_catalog_file_replaces_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.json");
    std::fs::write(
        &path,
        json!({"as_of": "2027-01", "models": [{
            "id": "house/llama", "provider": "vllm", "upstream_model": "meta-llama/Llama-3.3-70B-Instruct",
            "display_name": "House Llama", "mode": "chat", "context_window": 131072, "max_output_tokens": 4096,
            "input_price_per_mtok": "0.05", "output_price_per_mtok": "0.1", "cached_input_price_per_mtok": null,
            "capabilities": {"tools": true, "vision": false, "json_mode": true, "embeddings": false, "streaming": true},
            "source": "https://intranet.example/pricing"
        }]})
        .to_string(),
    )
    .unwrap();
    let url = cp_support::database_url().await;
    let catalog_path = path.clone();
    let cp = Cp::start_configured(Some(url.clone()), move |c| {
        c.catalog_path = Some(catalog_path)
    })
    .await;
    let s = cp.signup().await;
    let list = cp.get("/api/v1/catalog", &s.token).await.expect(200);
    assert_eq!(list["as_of"], "2027-01");
    assert_eq!(ids(&list), vec!["house/llama".to_owned()]);
    cp.get("/api/v1/catalog/openai/gpt-4o-mini", &s.token)
        .await
        .expect_error(404, "not_found");
    cp.stop().await;

    // A bad file stops the start, naming the variable, the entry and the field.
    std::fs::write(
        &path,
        json!({"as_of": "x", "models": [{
            "id": "house/llama", "provider": "vllm", "upstream_model": "m", "display_name": "m",
            "mode": "chat", "context_window": 0, "max_output_tokens": null,
            "input_price_per_mtok": "1", "output_price_per_mtok": "1", "cached_input_price_per_mtok": null,
            "capabilities": {}, "source": "https://x.example"
        }]})
        .to_string(),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = control_plane::config::Config::embedded(data.path(), Some(url));
    config.catalog_path = Some(path);
    let err = format!(
        "{:#}",
        control_plane::start(config)
            .await
            .expect_err("a bad catalog refuses to start")
    );
    assert!(
        err.contains("SWITCHYARD_CATALOG_PATH")
            && err.contains("house/llama")
            && err.contains("context_window"),
        "{err}"
    );
}
