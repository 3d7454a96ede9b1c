//! The OpenAI-compatible family through the gateway against testkit's `FakeOpenAi`: every
//! preset kind's URL and auth, the parameters presets refuse, drop or rename, pass-through of
//! unknown fields, Azure OpenAI's deployment URLs / `api-version` / `api-key` and its errors,
//! and tool calls (whole and streamed) through the OpenAI adapter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Gateway, assert_error, deployment, sse_data, streamed_text, user_message};
use serde_json::{Value, json};
use shared::config::{ProviderKind, ProviderRecord};
use shared::usage::UsageOutcome;
use testkit::fake_openai::{self, FakeOpenAi};

const PROVIDER_KEY: &str = "sk-provider-secret-0123456789";
const AZURE_KEY: &str = "azure-secret-key-abcdef0123456789";

/// Every kind served by the OpenAI adapter (Azure has its own tests below).
const FAMILY: [ProviderKind; 12] = [
    ProviderKind::OpenAi,
    ProviderKind::OpenAiCompatible,
    ProviderKind::Mistral,
    ProviderKind::Groq,
    ProviderKind::DeepSeek,
    ProviderKind::Together,
    ProviderKind::Fireworks,
    ProviderKind::Xai,
    ProviderKind::OpenRouter,
    ProviderKind::Vllm,
    ProviderKind::Ollama,
    ProviderKind::LlamaCpp,
];

/// Kinds whose preset leaves `stream_options` out (they reject it or report usage anyway).
fn omits_stream_options(kind: ProviderKind) -> bool {
    matches!(
        kind,
        ProviderKind::Mistral | ProviderKind::Fireworks | ProviderKind::LlamaCpp
    )
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

/// One provider of `kind` pointing at the fake, with a deployment named after the kind (and
/// `{kind}-{fake model}` for each special fake model).
fn provider_for(gw: &Gateway, fake: &FakeOpenAi, kind: ProviderKind) -> ProviderRecord {
    gw.provider(kind, Some(fake.base_url()), Some(PROVIDER_KEY))
}

#[tokio::test]
async fn every_preset_kind_reaches_its_upstream_with_bearer_auth() {
    let fake = FakeOpenAi::start_with_key(PROVIDER_KEY).await.unwrap();
    let mut gw = Gateway::start().await;
    let providers: Vec<ProviderRecord> = FAMILY
        .iter()
        .map(|kind| provider_for(&gw, &fake, *kind))
        .collect();
    let deployments = providers
        .iter()
        .map(|p| deployment(p.kind.as_str(), p, "gpt-4o-mini"))
        .collect();
    gw.set_tenant(providers, deployments);
    let key = gw.key();

    for kind in FAMILY {
        let name = kind.as_str();
        fake.clear_requests();
        let response = gw.chat(&key, user_message(name, "Say hello")).await;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            fake_openai::CONTENT,
            "{name}"
        );
        let sent = fake.chat_requests();
        assert_eq!(sent.len(), 1, "{name}");
        assert_eq!(sent[0].path, "/v1/chat/completions", "{name}");
        assert_eq!(sent[0].bearer(), Some(PROVIDER_KEY), "{name}");
        assert_eq!(sent[0].body["model"], "gpt-4o-mini", "{name}");
        let usage = gw.next_usage().await;
        assert_eq!(usage.provider.as_deref(), Some(name));
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
        assert!(!usage.tokens_estimated, "{name}");

        // Streams ask for usage unless the preset says the server rejects the field.
        fake.clear_requests();
        let response = gw
            .chat(&key, streaming(user_message(name, "Say hello")))
            .await;
        assert_eq!(response.status(), 200, "{name}");
        let events = sse_data(&response.text().await.unwrap());
        assert_eq!(streamed_text(&events), fake_openai::CONTENT, "{name}");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{name}");
        let sent = &fake.chat_requests()[0].body;
        let usage = gw.next_usage().await;
        assert_eq!(usage.outcome, UsageOutcome::Success, "{name}");
        if omits_stream_options(kind) {
            assert!(sent.get("stream_options").is_none(), "{name}: {sent}");
            // The fake reports stream usage only when asked: the meter estimates.
            assert!(usage.tokens_estimated, "{name}");
            assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
        } else {
            assert_eq!(sent["stream_options"]["include_usage"], true, "{name}");
            assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
            assert!(!usage.tokens_estimated, "{name}");
        }
    }
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn local_servers_need_no_key_and_hosted_apis_do() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut gw = Gateway::start().await;
    let mut providers = Vec::new();
    let mut deployments = Vec::new();
    for kind in [
        ProviderKind::Vllm,
        ProviderKind::Ollama,
        ProviderKind::LlamaCpp,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Groq,
    ] {
        let p = gw.provider(kind, Some(fake.base_url()), None);
        deployments.push(deployment(kind.as_str(), &p, "llama3"));
        providers.push(p);
    }
    gw.set_tenant(providers, deployments);
    let key = gw.key();
    for name in ["vllm", "ollama", "llamacpp", "openai_compatible"] {
        fake.clear_requests();
        let response = gw.chat(&key, user_message(name, "hi")).await;
        assert_eq!(response.status(), 200, "{name}");
        let sent = fake.chat_requests();
        assert_eq!(sent[0].header("authorization"), None, "{name}");
        gw.next_usage().await;
    }
    fake.clear_requests();
    assert_error(
        gw.chat(&key, user_message("groq", "hi")).await,
        502,
        "provider_unavailable",
    )
    .await;
    assert!(fake.requests().is_empty(), "nothing sent without a key");
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("provider_unavailable")
    );
}

/// A gateway with one provider of each given kind, deployment named after the kind.
async fn setup(kinds: &[ProviderKind]) -> (Gateway, FakeOpenAi, String) {
    let fake = FakeOpenAi::start().await.unwrap();
    let gw = Gateway::start().await;
    let mut providers = Vec::new();
    let mut deployments = Vec::new();
    for kind in kinds {
        let p = provider_for(&gw, &fake, *kind);
        deployments.push(deployment(kind.as_str(), &p, "upstream-model"));
        for model in fake_openai::MODELS {
            deployments.push(deployment(&format!("{}-{model}", kind.as_str()), &p, model));
        }
        providers.push(p);
    }
    gw.set_tenant(providers, deployments);
    let key = gw.key();
    (gw, fake, key)
}

#[tokio::test]
async fn refused_parameters_are_a_400_naming_them_and_never_sent() {
    let (mut gw, fake, key) = setup(&[
        ProviderKind::Groq,
        ProviderKind::Mistral,
        ProviderKind::Ollama,
        ProviderKind::DeepSeek,
    ])
    .await;
    let cases = [
        ("groq", json!({"logprobs": true}), "logprobs"),
        ("groq", json!({"n": 2}), "n"),
        ("groq", json!({"logit_bias": {"1000": 5}}), "logit_bias"),
        ("mistral", json!({"top_logprobs": 3}), "top_logprobs"),
        ("ollama", json!({"n": 3}), "n"),
        ("deepseek", json!({"n": 2}), "n"),
    ];
    for (model, extra, param) in cases {
        let mut body = user_message(model, "hi");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
        assert_eq!(e["param"], param, "{model}: {e}");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains(param), "{e}");
        let usage = gw.next_usage().await;
        assert_eq!((usage.status, usage.outcome), (400, UsageOutcome::Error));
        assert_eq!(usage.model, model);
    }
    assert!(
        fake.requests().is_empty(),
        "refusals happen before any call"
    );
}

#[tokio::test]
async fn dropped_and_renamed_parameters_do_not_reach_the_upstream() {
    let (mut gw, fake, key) = setup(&[ProviderKind::Groq, ProviderKind::Mistral]).await;
    let body = json!({
        "model": "groq",
        "messages": [
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny"}
        ],
        "n": 1,
        "logprobs": false,
        "x_groq_feature": {"on": true},
    });
    assert_eq!(gw.chat(&key, body).await.status(), 200);
    let sent = &fake.chat_requests()[0].body;
    assert!(sent["messages"][0].get("name").is_none(), "{sent}");
    assert_eq!(
        sent["messages"][2]["name"], "get_weather",
        "tool names kept"
    );
    assert!(
        sent.get("n").is_none() && sent.get("logprobs").is_none(),
        "{sent}"
    );
    assert_eq!(
        sent["x_groq_feature"],
        json!({"on": true}),
        "unknown fields pass"
    );
    gw.next_usage().await;

    fake.clear_requests();
    let body = json!({
        "model": "mistral",
        "messages": [{"role": "user", "content": "hi", "name": "alice"}],
        "max_completion_tokens": 64,
        "seed": 7,
        "user": "end-user-1",
        "store": true,
        "safe_prompt": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);
    let sent = &fake.chat_requests()[0].body;
    assert_eq!(sent["max_tokens"], 64, "{sent}");
    assert_eq!(sent["random_seed"], 7, "{sent}");
    for gone in [
        "max_completion_tokens",
        "seed",
        "user",
        "store",
        "stream_options",
    ] {
        assert!(sent.get(gone).is_none(), "{gone} must not be sent: {sent}");
    }
    assert!(sent["messages"][0].get("name").is_none());
    assert_eq!(sent["safe_prompt"], true, "Mistral's own fields pass");
    let usage = gw.next_usage().await;
    assert!(
        usage.tokens_estimated,
        "no usage chunk from the fake: estimated"
    );
}

#[tokio::test]
async fn unknown_fields_pass_through_for_openai_and_compatible() {
    let (mut gw, fake, key) = setup(&[ProviderKind::OpenAi, ProviderKind::OpenAiCompatible]).await;
    for model in ["openai", "openai_compatible"] {
        fake.clear_requests();
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi", "name": "alice"}],
            "n": 2,
            "logprobs": true,
            "top_logprobs": 2,
            "logit_bias": {"50256": -100},
            "prediction": {"type": "content", "content": "Hello"},
            "reasoning_effort": "low",
            "x_future_param": [1, {"deep": true}],
        });
        assert_eq!(gw.chat(&key, body.clone()).await.status(), 200, "{model}");
        let sent = &fake.chat_requests()[0].body;
        for field in [
            "n",
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "prediction",
            "reasoning_effort",
            "x_future_param",
        ] {
            assert_eq!(sent[field], body[field], "{model}: {field}");
        }
        assert_eq!(sent["messages"][0]["name"], "alice");
        assert_eq!(sent["model"], "upstream-model");
        gw.next_usage().await;
    }
}

#[tokio::test]
async fn tool_calls_come_back_whole_and_streamed_in_fragments() {
    let (mut gw, _fake, key) = setup(&[ProviderKind::OpenAi]).await;
    let model = format!("openai-{}", fake_openai::MODEL_TOOL);
    let mut request = user_message(&model, "Weather in Paris?");
    request["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]);

    let body: Value = gw.chat(&key, request.clone()).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], fake_openai::TOOL_NAME);
    assert_eq!(call["function"]["arguments"], fake_openai::TOOL_ARGUMENTS);
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));

    let response = gw.chat(&key, streaming(request)).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut arguments = String::new();
    let mut names = Vec::new();
    let mut finish = None;
    for chunk in &chunks {
        let choice = &chunk["choices"][0];
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(call["index"], 0);
            if let Some(name) = call["function"]["name"].as_str() {
                names.push(name.to_owned());
                assert!(call["id"].as_str().unwrap().starts_with("call_"));
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(names, [fake_openai::TOOL_NAME]);
    assert_eq!(arguments, r#"{"city":"Paris","unit":"celsius"}"#);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
    assert!(!usage.tokens_estimated);
}

#[tokio::test]
async fn context_length_exceeded_stays_a_400_with_that_code() {
    let (mut gw, _fake, key) = setup(&[ProviderKind::OpenAi, ProviderKind::Vllm]).await;
    for kind in ["openai", "vllm"] {
        let model = format!("{kind}-{}", fake_openai::MODEL_400_CONTEXT);
        for body in [
            user_message(&model, "hi"),
            streaming(user_message(&model, "hi")),
        ] {
            let e = assert_error(gw.chat(&key, body).await, 400, "context_length_exceeded").await;
            assert_eq!(e["param"], "messages");
            assert_eq!(e["type"], "invalid_request_error");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("maximum context length")
            );
            gw.next_usage().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Azure OpenAI

fn azure_provider(gw: &Gateway, fake: &FakeOpenAi, api_version: Option<&str>) -> ProviderRecord {
    let mut p = gw.provider(
        ProviderKind::AzureOpenAi,
        Some(format!("{}/", fake.azure_endpoint())),
        Some(AZURE_KEY),
    );
    if let Some(v) = api_version {
        p.options.insert("api_version".into(), v.into());
    }
    p
}

/// Deployments `azure` (→ Azure deployment `gpt4o-prod`), `azure-{fake model}` for each special
/// model, `azure-missing`, and `azure-old` on a provider pinned to an older API version.
async fn azure_setup() -> (Gateway, FakeOpenAi, String) {
    let fake = FakeOpenAi::start_with_key(AZURE_KEY).await.unwrap();
    let gw = Gateway::start().await;
    let current = azure_provider(&gw, &fake, None);
    let old = azure_provider(&gw, &fake, Some("2024-06-01"));
    let mut deployments = vec![
        deployment("azure", &current, "gpt4o-prod"),
        deployment("azure-old", &old, "gpt4o-prod"),
        deployment(
            "azure-missing",
            &current,
            fake_openai::AZURE_MISSING_DEPLOYMENT,
        ),
        deployment(
            "azure-filtered",
            &current,
            fake_openai::MODEL_CONTENT_FILTER,
        ),
    ];
    for model in fake_openai::MODELS {
        deployments.push(deployment(&format!("azure-{model}"), &current, model));
    }
    gw.set_tenant(vec![current, old], deployments);
    let key = gw.key();
    (gw, fake, key)
}

#[tokio::test]
async fn azure_uses_deployment_urls_api_version_and_api_key() {
    let (mut gw, fake, key) = azure_setup().await;
    let mut request = user_message("azure", "Say hello");
    request["x_azure_extension"] = json!({"data_sources": []});
    let response = gw.chat(&key, request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        fake_openai::CONTENT
    );
    let sent = fake.azure_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].deployment, "gpt4o-prod");
    assert_eq!(sent[0].operation, "chat/completions");
    assert_eq!(sent[0].api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(sent[0].request.header("api-key"), Some(AZURE_KEY));
    assert_eq!(sent[0].request.header("authorization"), None, "no Bearer");
    assert_eq!(
        sent[0].request.body["x_azure_extension"],
        json!({"data_sources": []})
    );
    let usage = gw.next_usage().await;
    assert_eq!(usage.provider.as_deref(), Some("azure_openai"));
    assert_eq!(usage.upstream_model.as_deref(), Some("gpt4o-prod"));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));

    // Streams: Azure's annotation-only prompt-filter chunk is dropped, so every event is an
    // OpenAI chunk; usage is asked for and metered.
    fake.clear_requests();
    let response = gw
        .chat(&key, streaming(user_message("azure", "Say hello")))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert!(chunk.get("prompt_filter_results").is_none(), "{chunk}");
    }
    let sent = &fake.azure_requests()[0].request.body;
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);

    // An API version older than stream_options: not sent, usage estimated.
    fake.clear_requests();
    let response = gw
        .chat(&key, streaming(user_message("azure-old", "Say hello")))
        .await;
    assert_eq!(
        streamed_text(&sse_data(&response.text().await.unwrap())),
        fake_openai::CONTENT
    );
    let sent = &fake.azure_requests()[0];
    assert_eq!(sent.api_version.as_deref(), Some("2024-06-01"));
    assert!(sent.request.body.get("stream_options").is_none());
    assert!(gw.next_usage().await.tokens_estimated);
}

#[tokio::test]
async fn azure_errors_map_like_openai_ones() {
    let (mut gw, _fake, key) = azure_setup().await;

    let e = assert_error(
        gw.chat(&key, user_message("azure-filtered", "hi")).await,
        400,
        "content_filter",
    )
    .await;
    assert_eq!(e["param"], "prompt");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("content management policy")
    );
    gw.next_usage().await;

    let response = gw
        .chat(
            &key,
            user_message(&format!("azure-{}", fake_openai::MODEL_429), "hi"),
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "7");
    let e = assert_error(response, 429, "429").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("retry after 7 seconds")
    );
    gw.next_usage().await;

    assert_error(
        gw.chat(
            &key,
            user_message(&format!("azure-{}", fake_openai::MODEL_400_CONTEXT), "hi"),
        )
        .await,
        400,
        "context_length_exceeded",
    )
    .await;
    gw.next_usage().await;

    let e = assert_error(
        gw.chat(&key, user_message("azure-missing", "hi")).await,
        502,
        "upstream_error",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("deployment for this resource does not exist"),
        "{e}"
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn azure_wrong_key_or_missing_endpoint_is_a_502_without_secrets() {
    let fake = FakeOpenAi::start_with_key(AZURE_KEY).await.unwrap();
    let mut gw = Gateway::start().await;
    let wrong = "azure-wrong-key-987654321";
    let bad_key = gw.provider(
        ProviderKind::AzureOpenAi,
        Some(fake.azure_endpoint()),
        Some(wrong),
    );
    let no_endpoint = gw.provider(ProviderKind::AzureOpenAi, None, Some(AZURE_KEY));
    gw.set_tenant(
        vec![bad_key.clone(), no_endpoint.clone()],
        vec![
            deployment("bad-key", &bad_key, "gpt4o-prod"),
            deployment("no-endpoint", &no_endpoint, "gpt4o-prod"),
        ],
    );
    let key = gw.key();
    for body in [
        user_message("bad-key", "hi"),
        streaming(user_message("bad-key", "hi")),
    ] {
        let e = assert_error(gw.chat(&key, body).await, 502, "upstream_auth_failed").await;
        assert!(!e.to_string().contains(wrong), "{e}");
        gw.next_usage().await;
    }
    assert_eq!(
        fake.azure_requests()[0].request.header("api-key"),
        Some(wrong)
    );
    let before = fake.request_count();
    assert_error(
        gw.chat(&key, user_message("no-endpoint", "hi")).await,
        502,
        "provider_unavailable",
    )
    .await;
    assert_eq!(
        fake.request_count(),
        before,
        "nothing sent without an endpoint"
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn azure_tool_calls_stream_like_openai() {
    let (mut gw, _fake, key) = azure_setup().await;
    let model = format!("azure-{}", fake_openai::MODEL_TOOL);
    let response = gw
        .chat(&key, streaming(user_message(&model, "Weather?")))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    let arguments: String = events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(arguments, fake_openai::TOOL_ARGUMENTS);
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}
