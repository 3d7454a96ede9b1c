//! Provider kinds through the control API on PostgreSQL: every kind is accepted with the fields
//! it needs and published with its non-secret options; each refuses what it lacks; and the
//! Bedrock secret access key is sealed like an API key, never returned and never stored or
//! published in plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use cp_support::Cp;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use shared::config::ProviderKind;
use uuid::Uuid;

/// A valid creation body for each kind (what the README's examples show).
fn body_for(kind: ProviderKind) -> Value {
    let name = format!("{}-prod", kind.as_str());
    match kind {
        ProviderKind::OpenAiCompatible => {
            json!({"name": name, "kind": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"})
        }
        ProviderKind::Vllm | ProviderKind::Ollama | ProviderKind::LlamaCpp | ProviderKind::Mock => {
            json!({"name": name, "kind": kind.as_str()})
        }
        ProviderKind::AzureOpenAi => json!({
            "name": name, "kind": "azure_openai",
            "base_url": "https://my-resource.openai.azure.com", "api_key": "azure-key",
            "api_version": "2025-04-01-preview"
        }),
        ProviderKind::Bedrock => json!({
            "name": name, "kind": "bedrock", "region": "us-west-2",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        }),
        hosted => {
            json!({"name": name, "kind": hosted.as_str(), "api_key": format!("key-for-{}", hosted.as_str())})
        }
    }
}

#[tokio::test]
async fn every_kind_is_accepted_and_published_with_its_options() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let bus = cp.running.memory_bus().unwrap().clone();
    let tenant_id: Uuid = s.tenant_id.parse().unwrap();
    for kind in ProviderKind::ALL {
        let created = cp
            .post("/api/v1/providers", Some(&s.token), body_for(kind))
            .await
            .expect(201);
        assert_eq!(created["kind"], kind.as_str());
        let want_options = match kind {
            ProviderKind::AzureOpenAi => json!({"api_version": "2025-04-01-preview"}),
            ProviderKind::Bedrock => {
                json!({"region": "us-west-2", "access_key_id": "AKIAIOSFODNN7EXAMPLE"})
            }
            _ => json!({}),
        };
        assert_eq!(created["options"], want_options, "{kind:?}");
        let has_secret = !matches!(
            kind,
            ProviderKind::OpenAiCompatible
                | ProviderKind::Vllm
                | ProviderKind::Ollama
                | ProviderKind::LlamaCpp
                | ProviderKind::Mock
        );
        assert_eq!(created["has_api_key"], has_secret, "{kind:?}");

        let config = bus.get_tenant(tenant_id).expect("published");
        let record = config
            .providers
            .iter()
            .find(|p| p.id.to_string() == created["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{kind:?} published"));
        assert_eq!(record.kind, kind);
        assert_eq!(
            serde_json::to_value(&record.options).unwrap(),
            want_options,
            "{kind:?}"
        );
        assert_eq!(record.api_key_sealed.is_some(), has_secret, "{kind:?}");
        assert_eq!(record.base_url.as_deref(), created["base_url"].as_str());
    }
    let list = cp.get("/api/v1/providers", &s.token).await.expect(200);
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        ProviderKind::ALL.len()
    );

    // Azure without an api_version gets the documented default, stored on the credential.
    let azure = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "az2", "kind": "azure_openai", "base_url": "https://r2.openai.azure.com/", "api_key": "k"}),
        )
        .await
        .expect(201);
    assert_eq!(azure["options"], json!({"api_version": "2024-10-21"}));
    assert_eq!(azure["base_url"], "https://r2.openai.azure.com");
    // Plain http only for a local endpoint (a proxy or a test fake).
    cp.post(
        "/api/v1/providers",
        Some(&s.token),
        json!({"name": "az-local", "kind": "azure_openai", "base_url": "http://127.0.0.1:9", "api_key": "k"}),
    )
    .await
    .expect(201);
    cp.stop().await;
}

#[tokio::test]
async fn each_kind_refuses_what_it_lacks() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let bad = |body: Value| cp.post("/api/v1/providers", Some(&s.token), body);
    let azure = json!({"name": "az", "kind": "azure_openai", "base_url": "https://r.openai.azure.com", "api_key": "k"});
    let bedrock = json!({"name": "br", "kind": "bedrock", "region": "us-east-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s"});
    let without = |body: &Value, field: &str| {
        let mut b = body.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let with = |body: &Value, field: &str, value: Value| {
        let mut b = body.clone();
        b[field] = value;
        b
    };
    let cases = [
        // Azure: the resource endpoint (https) and the key are required.
        (
            without(&azure, "base_url"),
            "base_url: is required for kind azure_openai",
        ),
        (
            with(&azure, "base_url", json!("http://r.openai.azure.com")),
            "base_url",
        ),
        (
            without(&azure, "api_key"),
            "api_key: is required for kind azure_openai",
        ),
        (
            with(&azure, "api_version", json!("2024-10-21&x=y")),
            "api_version",
        ),
        // Bedrock: region (well-formed), access key id and secret are required; api_key is not used.
        (
            without(&bedrock, "region"),
            "region: is required for kind bedrock",
        ),
        (with(&bedrock, "region", json!("us_east_1")), "region"),
        (with(&bedrock, "region", json!("Virginia")), "region"),
        (
            without(&bedrock, "access_key_id"),
            "access_key_id: is required",
        ),
        (
            with(&bedrock, "access_key_id", json!("not a key id")),
            "access_key_id",
        ),
        (
            without(&bedrock, "secret_access_key"),
            "secret_access_key: is required",
        ),
        (
            with(&bedrock, "secret_access_key", json!("")),
            "secret_access_key",
        ),
        (
            with(&bedrock, "api_key", json!("k")),
            "api_key: is not used by kind bedrock",
        ),
        // Hosted providers need a key; self-hosted OpenAI-compatible servers need a URL.
        (
            json!({"name": "a", "kind": "anthropic"}),
            "api_key: is required for kind anthropic",
        ),
        (json!({"name": "a", "kind": "gemini"}), "api_key"),
        (json!({"name": "a", "kind": "openrouter"}), "api_key"),
        (
            json!({"name": "a", "kind": "openai_compatible"}),
            "base_url",
        ),
        (
            json!({"name": "a", "kind": "ollama", "base_url": "ftp://x"}),
            "base_url",
        ),
        // Fields of another kind, a generic options object, unknown kinds and fields.
        (
            json!({"name": "a", "kind": "openai", "api_key": "k", "region": "us-east-1"}),
            "region: is only used by kind bedrock",
        ),
        (
            json!({"name": "a", "kind": "anthropic", "api_key": "k", "api_version": "2024-10-21"}),
            "api_version: is only used by kind azure_openai",
        ),
        (
            json!({"name": "a", "kind": "openai", "api_key": "k", "secret_access_key": "s"}),
            "secret_access_key",
        ),
        (
            json!({"name": "a", "kind": "openai", "api_key": "k", "options": {"region": "us-east-1"}}),
            "options",
        ),
    ];
    for (body, want) in cases {
        let msg = bad(body.clone())
            .await
            .expect_error(400, "validation_failed");
        assert!(
            msg.starts_with(want),
            "{body}: {msg} should start with {want}"
        );
    }
    let msg = bad(json!({"name": "a", "kind": "cohere", "api_key": "k"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(msg.starts_with("kind:"), "{msg}");
    for kind in ProviderKind::ALL {
        assert!(msg.contains(kind.as_str()), "{msg} lists {}", kind.as_str());
    }
    bad(json!({"name": "a", "kind": "openai", "api_key": "k", "regoin": "x"}))
        .await
        .expect_error(400, "validation_failed");
    assert!(
        cp.get("/api/v1/providers", &s.token).await.expect(200)["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was stored"
    );
    cp.stop().await;
}

#[tokio::test]
async fn the_bedrock_secret_is_sealed_and_never_returned() {
    let cp = Cp::start().await;
    let s = cp.signup().await;
    let secret = format!("wJalrXUtnFEMI/K7MDENG/{}", Uuid::new_v4().simple());
    let created = cp
        .post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "aws", "kind": "bedrock", "region": "eu-central-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": secret, "base_url": "http://127.0.0.1:9"}),
        )
        .await
        .expect(201);
    assert_eq!(created["has_api_key"], true);
    assert_eq!(
        created["options"],
        json!({"region": "eu-central-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE"})
    );
    assert_eq!(created["base_url"], "http://127.0.0.1:9");
    let id = created["id"].as_str().unwrap().to_owned();
    for body in [
        created.clone(),
        cp.get("/api/v1/providers", &s.token).await.expect(200),
        cp.get(&format!("/api/v1/providers/{id}"), &s.token)
            .await
            .expect(200),
    ] {
        let text = body.to_string();
        assert!(!text.contains(&secret) && !text.contains("v1:"), "{text}");
        assert!(!text.contains("secret_access_key"), "{text}");
    }

    // The row: sealed with the master key, bound to the provider id; options hold no secret.
    let row = control_plane::entities::provider_credential::Entity::find_by_id(
        id.parse::<Uuid>().unwrap(),
    )
    .one(cp.running.db())
    .await
    .unwrap()
    .unwrap();
    let sealed = row.api_key_sealed.clone().unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains(&secret));
    let master = &cp.running.state().master_key;
    assert_eq!(master.open(&sealed, &id).unwrap(), secret);
    assert!(master.open(&sealed, &Uuid::new_v4().to_string()).is_err());
    assert!(!format!("{row:?}").contains(&secret));
    // Nowhere in the whole database in plaintext (every table, every column).
    let dump = testkit::pg::dump_text(&cp_support::database_url().await)
        .await
        .unwrap();
    assert!(
        dump.iter().any(|r| r.text.contains(&id)),
        "the dump sees the row"
    );
    for r in &dump {
        assert!(!r.text.contains(&secret), "plaintext secret in {}", r.table);
    }

    // Published sealed, with the non-secret options only.
    let config = cp
        .running
        .memory_bus()
        .unwrap()
        .get_tenant(s.tenant_id.parse().unwrap())
        .unwrap();
    let record = config
        .providers
        .iter()
        .find(|p| p.id.to_string() == id)
        .unwrap();
    assert_eq!(record.kind, ProviderKind::Bedrock);
    assert_eq!(record.api_key_sealed.as_deref(), Some(sealed.as_str()));
    assert_eq!(
        record.options.get("region").map(String::as_str),
        Some("eu-central-1")
    );
    assert!(!serde_json::to_string(&*config).unwrap().contains(&secret));
    cp.stop().await;
}
