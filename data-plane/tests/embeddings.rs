//! `POST /v1/embeddings` end to end: OpenAI-family and Azure upstreams (testkit's
//! `FakeOpenAi`), the usage event (endpoint, tokens, estimates, cost), bad bodies, routing
//! errors and providers without embeddings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Gateway, REQUEST_ID, assert_error, deployment};
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use testkit::fake_openai::{self, FakeOpenAi};

const PROVIDER_KEY: &str = "sk-provider-secret-0123456789";
const AZURE_KEY: &str = "azure-secret-key-abcdef0123456789";

/// Deployments: `embed` (OpenAI, upstream `text-embedding-3-small`), `embed-{fake model}`,
/// `azure-embed` (Azure deployment `embed-prod`), `mock` (the mock provider).
async fn setup() -> (Gateway, FakeOpenAi, FakeOpenAi, String) {
    let fake = FakeOpenAi::start_with_key(PROVIDER_KEY).await.unwrap();
    let azure_fake = FakeOpenAi::start_with_key(AZURE_KEY).await.unwrap();
    let gw = Gateway::start().await;
    let openai = gw.provider(
        ProviderKind::OpenAi,
        Some(fake.base_url()),
        Some(PROVIDER_KEY),
    );
    let azure = gw.provider(
        ProviderKind::AzureOpenAi,
        Some(azure_fake.azure_endpoint()),
        Some(AZURE_KEY),
    );
    let mock = gw.provider(ProviderKind::Mock, None, None);
    let mut deployments = vec![
        deployment("embed", &openai, "text-embedding-3-small"),
        deployment("azure-embed", &azure, "embed-prod"),
        deployment("mock", &mock, "mock-1"),
    ];
    for model in fake_openai::MODELS {
        deployments.push(deployment(&format!("embed-{model}"), &openai, model));
    }
    gw.set_tenant(vec![openai, azure, mock], deployments);
    let key = gw.key();
    (gw, fake, azure_fake, key)
}

fn vectors(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn openai_family_embeddings_are_forwarded_metered_and_priced() {
    let (mut gw, fake, _azure, key) = setup().await;
    let response = gw.embeddings(&key,
        json!({"model": "embed", "input": ["first text", "second text"], "dimensions": 8, "user": "u-1", "x_extra": 1}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(
        vectors(&body),
        [
            fake_openai::fake_embedding("first text").to_vec(),
            fake_openai::fake_embedding("second text").to_vec()
        ]
    );
    assert_eq!(body["usage"]["prompt_tokens"], 6);

    let sent = fake.embedding_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].bearer(), Some(PROVIDER_KEY));
    assert_eq!(sent[0].body["model"], "text-embedding-3-small");
    assert_eq!(sent[0].body["input"], json!(["first text", "second text"]));
    assert_eq!(sent[0].body["dimensions"], 8);
    assert_eq!(sent[0].body["user"], "u-1");
    assert_eq!(sent[0].body["x_extra"], 1, "unknown fields pass through");

    let usage = gw.next_usage().await;
    assert_eq!(usage.id.to_string(), id);
    assert_eq!(usage.endpoint, "embeddings");
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert!(!usage.stream);
    assert_eq!(usage.model, "embed");
    assert_eq!(usage.provider.as_deref(), Some("openai"));
    assert_eq!(
        usage.upstream_model.as_deref(),
        Some("text-embedding-3-small")
    );
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (6, 0));
    assert!(!usage.tokens_estimated);
    // 6 tokens × $2.50 per million = 15 µ$; no output tokens.
    assert_eq!(usage.cost_micros, 15);
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn base64_and_token_inputs_pass_through() {
    let (mut gw, fake, _azure, key) = setup().await;
    let body: Value = gw.embeddings(&key,
        json!({"model": "embed", "input": [[9906, 1917], [15339]], "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        body["data"][0]["embedding"],
        fake_openai::base64_f32(&fake_openai::fake_embedding("9906,1917"))
    );
    assert_eq!(
        fake.embedding_requests()[0].body["encoding_format"],
        "base64"
    );
    let usage = gw.next_usage().await;
    assert_eq!(usage.prompt_tokens, 6);
}

#[tokio::test]
async fn missing_upstream_usage_is_estimated_from_the_input() {
    let (mut gw, _fake, _azure, key) = setup().await;
    let model = format!("embed-{}", fake_openai::MODEL_NO_USAGE);
    let response = gw
        .embeddings(&key, json!({"model": model, "input": ["Hello", "Hello"]}))
        .await;
    assert_eq!(response.status(), 200);
    let usage = gw.next_usage().await;
    assert!(usage.tokens_estimated);
    // "Hello" is one o200k token.
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (2, 0));

    let response = gw
        .embeddings(&key, json!({"model": model, "input": [1, 2, 3, 4]}))
        .await;
    assert_eq!(response.status(), 200);
    let usage = gw.next_usage().await;
    assert!(usage.tokens_estimated);
    assert_eq!(usage.prompt_tokens, 4, "token ids count exactly");
}

#[tokio::test]
async fn azure_embeddings_use_the_deployment_url_and_api_key() {
    let (mut gw, _fake, azure, key) = setup().await;
    let response = gw
        .embeddings(&key, json!({"model": "azure-embed", "input": "some text"}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        vectors(&body),
        [fake_openai::fake_embedding("some text").to_vec()]
    );
    let sent = azure.azure_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].deployment, "embed-prod");
    assert_eq!(sent[0].operation, "embeddings");
    assert_eq!(sent[0].api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(sent[0].request.header("api-key"), Some(AZURE_KEY));
    assert_eq!(sent[0].request.header("authorization"), None);
    let usage = gw.next_usage().await;
    assert_eq!(usage.endpoint, "embeddings");
    assert_eq!(usage.provider.as_deref(), Some("azure_openai"));
    assert_eq!(usage.prompt_tokens, 3);
    assert!(!usage.tokens_estimated);
}

#[tokio::test]
async fn bad_bodies_are_400s_naming_the_field() {
    let (mut gw, fake, _azure, key) = setup().await;
    let cases = [
        (json!({"model": "embed"}), Some("input")),
        (json!({"input": "x"}), Some("model")),
        (json!({"model": "embed", "input": ""}), Some("input")),
        (json!({"model": "embed", "input": []}), Some("input")),
        (json!({"model": "embed", "input": 42}), Some("input")),
        (
            json!({"model": "embed", "input": {"text": "x"}}),
            Some("input"),
        ),
        (
            json!({"model": "embed", "input": ["ok", ""]}),
            Some("input[1]"),
        ),
        (
            json!({"model": "embed", "input": [[1], []]}),
            Some("input[1]"),
        ),
        (
            json!({"model": "embed", "input": "x", "encoding_format": "int8"}),
            Some("encoding_format"),
        ),
        (
            json!({"model": "embed", "input": "x", "dimensions": -1}),
            Some("dimensions"),
        ),
        (json!({"model": 7, "input": "x"}), Some("model")),
    ];
    for (body, param) in cases {
        let e = assert_error(
            gw.embeddings(&key, body.clone()).await,
            400,
            "invalid_request",
        )
        .await;
        assert_eq!(e["param"].as_str(), param, "{body}: {e}");
        assert_eq!(e["type"], "invalid_request_error");
        let usage = gw.next_usage().await;
        assert_eq!((usage.status, usage.outcome), (400, UsageOutcome::Error));
        assert_eq!(usage.endpoint, "embeddings");
        assert_eq!(usage.error_code.as_deref(), Some("invalid_request"));
    }
    // Not JSON at all.
    let response = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_json").await;
    gw.next_usage().await;
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn routing_errors_and_providers_without_embeddings() {
    let (mut gw, _fake, _azure, key) = setup().await;
    let e = assert_error(
        gw.embeddings(&key, json!({"model": "no-such-model", "input": "x"}))
            .await,
        404,
        "model_not_found",
    )
    .await;
    assert_eq!(e["param"], "model");
    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.model.as_str()), (404, "no-such-model"));

    let e = assert_error(
        gw.embeddings(&key, json!({"model": "mock", "input": "x"}))
            .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "model");
    assert!(e["message"].as_str().unwrap().contains("embeddings"), "{e}");
    let usage = gw.next_usage().await;
    assert_eq!(usage.provider.as_deref(), Some("mock"));
    assert_eq!(usage.cost_micros, 0);

    let response = gw
        .http
        .post(gw.url("/v1/embeddings"))
        .json(&json!({"model": "embed", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "missing_api_key").await;
}

#[tokio::test]
async fn upstream_errors_map_as_for_chat() {
    let (mut gw, _fake, _azure, key) = setup().await;
    let response = gw
        .embeddings(
            &key,
            json!({"model": format!("embed-{}", fake_openai::MODEL_429), "input": "x"}),
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "7");
    assert_error(response, 429, "rate_limit_exceeded").await;
    assert_eq!(gw.next_usage().await.status, 429);

    assert_error(
        gw.embeddings(
            &key,
            json!({"model": format!("embed-{}", fake_openai::MODEL_500), "input": "x"}),
        )
        .await,
        502,
        "upstream_error",
    )
    .await;
    gw.next_usage().await;
}

/// A deployment marked `embedding` (by the catalog or the API) is refused for chat with a 400
/// naming `model`, before any upstream call; embeddings still reach it.
#[tokio::test]
async fn chat_with_an_embedding_model_is_refused_before_the_provider() {
    let fake = FakeOpenAi::start_with_key(PROVIDER_KEY).await.unwrap();
    let gw = Gateway::start().await;
    let openai = gw.provider(
        ProviderKind::OpenAi,
        Some(fake.base_url()),
        Some(PROVIDER_KEY),
    );
    let mut embedding = deployment("vectors", &openai, "text-embedding-3-small");
    embedding.mode = shared::config::DeploymentMode::Embedding;
    gw.set_tenant(vec![openai], vec![embedding]);
    let key = gw.key();

    let response = gw
        .chat(
            &key,
            json!({"model": "vectors", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let error = assert_error(response, 400, "invalid_request").await;
    assert_eq!(error["param"], "model");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/v1/embeddings"),
        "{error}"
    );
    assert!(fake.requests().is_empty(), "nothing reached the provider");

    let response = gw
        .embeddings(&key, json!({"model": "vectors", "input": "hello"}))
        .await;
    assert_eq!(response.status(), 200);
}
