//! The gateway's own behaviour, without an upstream: authentication, request validation, error
//! shapes, request ids, model listing, health endpoints and the built-in mock provider.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Gateway, KeyOptions, REQUEST_ID, assert_error, assert_event_stream, deployment, sse_data,
    streamed_text, user_message,
};
use data_plane::config::Settings;
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use time::{Duration, OffsetDateTime};

/// A gateway whose tenant has a mock deployment "mock-model" and a second one "other-model".
async fn with_mock() -> Gateway {
    with_mock_settings(Settings::default()).await
}

async fn with_mock_settings(settings: Settings) -> Gateway {
    let gw = Gateway::start_with(settings).await;
    let mock = gw.provider(ProviderKind::Mock, None, None);
    gw.set_tenant(
        vec![mock.clone()],
        vec![
            deployment("mock-model", &mock, "mock-1"),
            deployment("other-model", &mock, "mock-2"),
        ],
    );
    gw
}

async fn post_raw(gw: &Gateway, key: Option<&str>, body: &'static str) -> reqwest::Response {
    let mut req = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("sent")
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_400s_naming_the_field() {
    let mut gw = with_mock().await;
    let key = gw.key();

    let e = assert_error(
        post_raw(&gw, Some(&key), "{not json").await,
        400,
        "invalid_json",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("JSON"), "{e}");
    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.outcome), (400, UsageOutcome::Error));
    assert_eq!(usage.error_code.as_deref(), Some("invalid_json"));

    let e = assert_error(
        post_raw(
            &gw,
            Some(&key),
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "model");
    assert!(e["message"].as_str().unwrap().contains("'model'"), "{e}");
    gw.next_usage().await;

    let e = assert_error(
        post_raw(&gw, Some(&key), r#"{"model":"mock-model"}"#).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "messages");
    assert!(e["message"].as_str().unwrap().contains("messages"), "{e}");
    let usage = gw.next_usage().await;
    assert_eq!(
        usage.model, "mock-model",
        "the model of an invalid body is still recorded"
    );

    let e = assert_error(
        post_raw(
            &gw,
            Some(&key),
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#,
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "temperature");
    assert_eq!(
        e["message"],
        "Invalid type for 'temperature': expected a number, but got a string instead."
    );
    assert_eq!(e["type"], "invalid_request_error");
    gw.next_usage().await;
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn authentication_failures_are_401s_that_say_why() {
    let mut gw = with_mock().await;
    let body = user_message("mock-model", "hi");

    let no_key = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let e = assert_error(no_key, 401, "missing_api_key").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("You didn't provide an API key"),
        "{e}"
    );

    let unknown = "sk-sy-0000000000000000000000000000000000000000000";
    let e = assert_error(gw.chat(unknown, body.clone()).await, 401, "invalid_api_key").await;
    let text = e.to_string();
    assert!(!text.contains(unknown), "never echo the key: {text}");
    assert!(
        !text.contains(&shared::keys::hash_api_key(unknown)),
        "never echo the hash: {text}"
    );

    let revoked = gw.add_key(KeyOptions {
        revoked_at: Some(OffsetDateTime::now_utc()),
        ..Default::default()
    });
    let e = assert_error(gw.chat(&revoked, body.clone()).await, 401, "key_revoked").await;
    assert!(e["message"].as_str().unwrap().contains("revoked"), "{e}");

    let expired = gw.add_key(KeyOptions {
        expires_at: Some(OffsetDateTime::now_utc() - Duration::minutes(1)),
        ..Default::default()
    });
    let e = assert_error(gw.chat(&expired, body.clone()).await, 401, "key_expired").await;
    assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");

    // x-api-key works as well as Bearer.
    let key = gw.key();
    let ok = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    // Requests refused before authentication emit no usage event.
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn model_access_is_403_and_unknown_models_404() {
    let mut gw = with_mock().await;
    let key = gw.add_key(KeyOptions {
        allowed_models: Some(vec!["mock-model".into()]),
        ..Default::default()
    });

    let e = assert_error(
        gw.chat(&key, user_message("other-model", "hi")).await,
        403,
        "model_not_allowed",
    )
    .await;
    assert_eq!(e["param"], "model");
    let usage = gw.next_usage().await;
    assert_eq!(
        (usage.status, usage.error_code.as_deref()),
        (403, Some("model_not_allowed"))
    );

    let e = assert_error(
        gw.chat(&key, user_message("no-such-model", "hi")).await,
        404,
        "model_not_found",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("no-such-model"),
        "{e}"
    );
    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.model.as_str()), (404, "no-such-model"));

    assert_eq!(
        gw.chat(&key, user_message("mock-model", "hi"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_by_length_and_while_reading() {
    let mut gw = with_mock_settings(Settings {
        max_body_bytes: 200,
        ..Settings::default()
    })
    .await;
    let key = gw.key();
    let big = user_message("mock-model", &"x".repeat(500));

    // Content-Length known: refused at the edge, before authentication.
    let e = assert_error(gw.chat(&key, big.clone()).await, 413, "request_too_large").await;
    assert!(e["message"].as_str().unwrap().contains("200"), "{e}");
    let e = assert_error(
        gw.http
            .post(gw.url("/v1/chat/completions"))
            .json(&big)
            .send()
            .await
            .unwrap(),
        413,
        "request_too_large",
    )
    .await;
    assert_eq!(e["type"], "invalid_request_error");
    gw.assert_no_usage_queued();

    // Chunked (no Content-Length): enforced while reading.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64).map(|c| Ok(c.to_vec())).collect();
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "request_too_large").await;
    let usage = gw.next_usage().await;
    assert_eq!(
        (usage.status, usage.error_code.as_deref()),
        (413, Some("request_too_large"))
    );
}

#[tokio::test]
async fn every_response_carries_a_fresh_request_id() {
    let mut gw = with_mock().await;
    let key = gw.key();
    let forged = "0190d6c1-0000-7000-8000-000000000000";

    let ok = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header(REQUEST_ID, forged)
        .header("x-request-id", "client-id")
        .json(&user_message("mock-model", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let id = ok.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    assert_ne!(id, forged, "a client cannot choose the id");
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    assert_eq!(
        gw.next_usage().await.id,
        parsed,
        "the usage event id is the request id"
    );

    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/nope"),
        ("GET", "/nope"),
        ("GET", "/v1/models"),
        ("GET", "/v1/chat/completions"),
    ] {
        let r = gw
            .http
            .request(method.parse().unwrap(), gw.url(path))
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key(REQUEST_ID), "{method} {path}");
    }

    // Unknown paths are OpenAI-format 404s, without needing a key.
    assert_error(
        gw.http.get(gw.url("/v1/nope")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        gw.http
            .post(gw.url("/v1/embeddingz"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        gw.http.get(gw.url("/elsewhere")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    // A known path with the wrong method.
    assert_error(
        gw.http
            .get(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn models_are_listed_per_key() {
    let gw = with_mock().await;
    let all = gw.key();
    let limited = gw.add_key(KeyOptions {
        allowed_models: Some(vec!["other-model".into()]),
        ..Default::default()
    });

    let list: Value = gw
        .http
        .get(gw.url("/v1/models"))
        .bearer_auth(&all)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-model", "other-model"]);
    let first = &list["data"][0];
    assert_eq!(first["object"], "model");
    assert!(first["created"].is_i64());
    assert!(first["owned_by"].is_string());

    let list: Value = gw
        .http
        .get(gw.url("/v1/models"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["other-model"]);

    let one = gw
        .http
        .get(gw.url("/v1/models/other-model"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let hidden = gw
        .http
        .get(gw.url("/v1/models/mock-model"))
        .bearer_auth(&limited)
        .send()
        .await
        .unwrap();
    assert_error(hidden, 404, "model_not_found").await;
    assert_error(
        gw.http.get(gw.url("/v1/models")).send().await.unwrap(),
        401,
        "missing_api_key",
    )
    .await;
}

#[tokio::test]
async fn mock_provider_answers_non_streaming() {
    let mut gw = with_mock().await;
    let key = gw.key();
    let body = json!({
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Echo "}, {"type": "text", "text": "me please"}]}
        ]
    });
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    let completion: Value = response.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "mock-1");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Echo me please"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let prompt =
        data_plane::tokens::count("Be brief.") + data_plane::tokens::count("Echo me please");
    let reply = data_plane::tokens::count("Echo me please");
    assert_eq!(completion["usage"]["prompt_tokens"], prompt);
    assert_eq!(completion["usage"]["completion_tokens"], reply);
    assert_eq!(completion["usage"]["total_tokens"], prompt + reply);

    let usage = gw.next_usage().await;
    assert_eq!(usage.id.to_string(), id);
    assert_eq!(usage.tenant_id, gw.tenant_id);
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (prompt, reply)
    );
    assert!(!usage.tokens_estimated);
    assert_eq!(usage.provider.as_deref(), Some("mock"));
    assert_eq!(usage.upstream_model.as_deref(), Some("mock-1"));
    assert_eq!(usage.endpoint, "chat.completions");
    assert_eq!(
        usage.cost_micros,
        shared::money::cost_micros(prompt, reply, 2_500_000, 10_000_000)
    );
    assert!(!usage.stream);
}

#[tokio::test]
async fn mock_provider_streams_word_by_word() {
    let mut gw = with_mock().await;
    let key = gw.key();
    let text = "Hello  there, streaming\nworld";

    let mut body = user_message("mock-model", text);
    body["stream"] = json!(true);
    let response = gw.chat(&key, body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), text);
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    // role + 4 words + finish + [DONE]; no usage chunk since the client did not ask.
    assert_eq!(events.len(), 1 + 4 + 1 + 1, "{events:#?}");
    let usage = gw.next_usage().await;
    assert!(usage.stream);
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!(usage.completion_tokens, data_plane::tokens::count(text));
    assert!(usage.ttft_ms.is_some());

    body["stream_options"] = json!({"include_usage": true});
    let events = sse_data(&gw.chat(&key, body).await.text().await.unwrap());
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        data_plane::tokens::count(text)
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let gw = with_mock().await;
    let r = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    assert_eq!(
        gw.http
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Make sure at least one request was counted, then scrape.
    gw.http.get(gw.url("/v1/nope")).send().await.unwrap();
    let metrics = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchyard_http_responses_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unreachable_config_store_is_503_for_uncached_keys() {
    use data_plane::AppState;
    use data_plane::store::{ConfigStore, redis_pool};
    use data_plane::usage_sink::UsageSink;

    let url = format!("redis://127.0.0.1:{}", common::closed_port());
    let pool = redis_pool(&url).expect("pool");
    let keys = shared::config::RedisKeys::new(testkit::redis_prefix::fresh_prefix());
    let store = ConfigStore::redis(pool, &url, keys, shared::crypto::MasterKey::generate())
        .await
        .expect("store starts without Redis");
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let state = AppState::new(Settings::default(), store, UsageSink::in_memory(tx)).expect("state");
    let addr = common::serve(data_plane::app(state)).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let response = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(shared::keys::generate_api_key())
        .json(&user_message("any", "hi"))
        .send()
        .await
        .unwrap();
    let e = assert_error(response, 503, "config_store_unavailable").await;
    assert_eq!(e["type"], "api_error");
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
