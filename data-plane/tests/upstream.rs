//! The gateway against an OpenAI-compatible upstream (testkit's `FakeOpenAi`): forwarding,
//! streaming, metering, and every way an upstream can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Gateway, REQUEST_ID, WAIT, assert_error, assert_event_stream, deployment,
    last_event_without_done, same_name_deployments, sse_data, streamed_text, user_message,
};
use data_plane::config::Settings;
use futures::StreamExt;
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use testkit::fake_openai::{self, FakeOpenAi};

const PROVIDER_KEY: &str = "sk-provider-secret-0123456789";

/// A gateway whose tenant routes "gpt" to the fake's default model and every `fake-*` model
/// name to the same-named upstream model.
async fn setup(settings: Settings) -> (Gateway, FakeOpenAi) {
    let fake = FakeOpenAi::start().await.expect("fake upstream");
    let gw = Gateway::start_with(settings).await;
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("{}/", fake.base_url())),
        Some(PROVIDER_KEY),
    );
    let mut deployments = vec![deployment("gpt", &provider, "gpt-4o-mini")];
    deployments.extend(same_name_deployments(&provider, fake_openai::MODELS));
    gw.set_tenant(vec![provider], deployments);
    (gw, fake)
}

fn streaming(model: &str) -> Value {
    let mut body = user_message(model, "Say hello");
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn non_streaming_success_is_forwarded_and_metered_with_cost() {
    let (mut gw, fake) = setup(Settings::default()).await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("gpt", "Say hello")).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        fake_openai::CONTENT
    );

    let sent = fake.chat_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].bearer(), Some(PROVIDER_KEY));
    assert_eq!(sent[0].body["model"], "gpt-4o-mini");
    assert!(
        sent[0].body.get("stream_options").is_none(),
        "non-streaming requests carry no stream_options"
    );

    let usage = gw.next_usage().await;
    assert_eq!(usage.id.to_string(), id);
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    // 12 × $2.50/M + 5 × $10/M = 30 µ$ + 50 µ$.
    assert_eq!(usage.cost_micros, 80);
    assert_eq!(usage.model, "gpt");
    assert_eq!(usage.upstream_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(usage.provider.as_deref(), Some("openai_compatible"));
    assert!(usage.deployment_id.is_some() && usage.provider_id.is_some());
    assert_eq!(usage.ttft_ms, None);
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn unknown_fields_are_forwarded_upstream() {
    let (mut gw, fake) = setup(Settings::default()).await;
    let key = gw.key();
    let body = json!({
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi", "name": "alice"}],
        "temperature": 0.25,
        "response_format": {"type": "json_object"},
        "metadata": {"trace": "abc"},
        "x_vendor_extension": [1, {"deep": true}],
        "stream": true,
        "stream_options": {"include_usage": false, "include_obfuscation": false},
    });
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    let sent = &fake.chat_requests()[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent["metadata"], json!({"trace": "abc"}));
    assert_eq!(sent["x_vendor_extension"], json!([1, {"deep": true}]));
    assert_eq!(sent["messages"][0]["name"], "alice");
    assert_eq!(
        sent["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn streaming_passes_chunks_through_and_meters_usage() {
    let (mut gw, fake) = setup(Settings::default()).await;
    let key = gw.key();
    let response = gw.chat(&key, streaming("gpt")).await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_ne!(
            chunk["choices"],
            json!([]),
            "the usage chunk is not shown to a client that did not ask"
        );
    }
    // role + 5 deltas + finish + [DONE]
    assert_eq!(events.len(), 8, "{events:#?}");
    assert_eq!(
        fake.chat_requests()[0].body["stream_options"]["include_usage"],
        true,
        "usage is always requested upstream"
    );

    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert!(usage.stream);
    assert_eq!(usage.cost_micros, 80);
    let ttft = usage.ttft_ms.expect("ttft for streams");
    assert!(ttft <= usage.latency_ms);

    // A client that asks for usage gets the usage chunk.
    let mut body = streaming("gpt");
    body["stream_options"] = json!({"include_usage": true});
    let events = sse_data(&gw.chat(&key, body).await.text().await.unwrap());
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["total_tokens"], 17);
    gw.next_usage().await;
}

#[tokio::test]
async fn streams_without_upstream_usage_are_estimated() {
    let (mut gw, _fake) = setup(Settings::default()).await;
    let key = gw.key();
    let events = sse_data(
        &gw.chat(&key, streaming(fake_openai::MODEL_NO_USAGE))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert!(usage.tokens_estimated);
    assert_eq!(
        usage.completion_tokens,
        data_plane::tokens::count(fake_openai::CONTENT)
    );
    assert!(usage.prompt_tokens > 0);

    let response = gw
        .chat(&key, user_message(fake_openai::MODEL_NO_USAGE, "hi"))
        .await;
    assert_eq!(response.status(), 200);
    let usage = gw.next_usage().await;
    assert!(usage.tokens_estimated);
    assert_eq!(
        usage.completion_tokens,
        data_plane::tokens::count(fake_openai::CONTENT)
    );
}

/// The last event of a cut stream is our error event, and `[DONE]` never comes.
fn assert_truncated(events: &[String]) {
    let last = last_event_without_done(events);
    assert_eq!(last["error"]["code"], "stream_truncated", "{last}");
    assert_eq!(last["error"]["type"], "api_error");
    assert_eq!(
        last["error"]["message"],
        "The upstream provider ended the stream before it completed"
    );
    assert!(last["error"].get("param").is_some());
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_and_is_metered_as_truncated() {
    let (mut gw, _fake) = setup(Settings::default()).await;
    let key = gw.key();
    let events = sse_data(
        &gw.chat(&key, streaming(fake_openai::MODEL_CUT_STREAM))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_truncated(&events);
    assert_eq!(streamed_text(&events), "Hello from");
    let usage = gw.next_usage().await;
    assert_eq!(
        (usage.status, usage.outcome),
        (200, UsageOutcome::Truncated)
    );
    assert_eq!(usage.error_code.as_deref(), Some("stream_truncated"));
    assert!(usage.tokens_estimated);
    assert_eq!(
        usage.completion_tokens,
        data_plane::tokens::count("Hello from")
    );
}

#[tokio::test]
async fn a_stalled_stream_is_cut_after_the_idle_timeout() {
    let settings = Settings {
        upstream_idle_timeout_ms: 1_000,
        ..Settings::default()
    };
    let (mut gw, _fake) = setup(settings).await;
    let key = gw.key();
    let events = sse_data(
        &gw.chat(&key, streaming(fake_openai::MODEL_STALL_STREAM))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_truncated(&events);
    assert_eq!(streamed_text(&events), "Hello");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("upstream_timeout"));
    assert!(usage.tokens_estimated);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_is_still_metered() {
    let (mut gw, _fake) = setup(Settings::default()).await;
    let key = gw.key();
    let response = gw
        .chat(&key, streaming(fake_openai::MODEL_STALL_STREAM))
        .await;
    assert_eq!(response.status(), 200);
    let id = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    // Read until "Hello" has arrived, then hang up while the upstream is stalled.
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("Hello") {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("chunk in time")
            .expect("open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(stream);

    let usage = gw.next_usage().await;
    assert_eq!(usage.id.to_string(), id);
    assert_eq!(usage.outcome, UsageOutcome::ClientDisconnected);
    assert!(usage.tokens_estimated);
    assert_eq!(usage.completion_tokens, data_plane::tokens::count("Hello"));
    assert!(usage.prompt_tokens > 0);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let gw = Gateway::start().await;
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let provider = gw.provider(
        ProviderKind::OpenAi,
        Some(format!("http://127.0.0.1:{port}/v1")),
        Some(PROVIDER_KEY),
    );
    gw.set_tenant(
        vec![provider.clone()],
        vec![deployment("gpt", &provider, "gpt-4o")],
    );
    let mut gw = gw;
    let key = gw.key();
    let e = assert_error(
        gw.chat(&key, user_message("gpt", "hi")).await,
        502,
        "upstream_unreachable",
    )
    .await;
    assert_eq!(e["type"], "api_error");
    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.outcome), (502, UsageOutcome::Error));
    assert_eq!(usage.error_code.as_deref(), Some("upstream_unreachable"));
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cost_micros
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_hanging_upstream_is_504() {
    let settings = Settings {
        upstream_headers_timeout_ms: 300,
        ..Settings::default()
    };
    let (mut gw, _fake) = setup(settings).await;
    let key = gw.key();
    assert_error(
        gw.chat(&key, user_message(fake_openai::MODEL_HANG, "hi"))
            .await,
        504,
        "upstream_timeout",
    )
    .await;
    assert_error(
        gw.chat(&key, streaming(fake_openai::MODEL_HANG)).await,
        504,
        "upstream_timeout",
    )
    .await;
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("upstream_timeout")
    );
    assert_eq!(gw.next_usage().await.status, 504);
}

#[tokio::test]
async fn upstream_refusals_map_to_openai_errors() {
    let (mut gw, _fake) = setup(Settings::default()).await;
    let key = gw.key();

    let response = gw
        .chat(&key, user_message(fake_openai::MODEL_429, "hi"))
        .await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let e = assert_error(response, 429, "rate_limit_exceeded").await;
    assert_eq!(e["message"], "Rate limit reached for requests");
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("upstream_rate_limited")
    );

    let e = assert_error(
        gw.chat(&key, user_message(fake_openai::MODEL_500, "hi"))
            .await,
        502,
        "upstream_error",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("The server had an error while processing your request."),
        "{e}"
    );
    assert_eq!(gw.next_usage().await.status, 502);

    let e = assert_error(
        gw.chat(&key, user_message(fake_openai::MODEL_400_CONTEXT, "hi"))
            .await,
        400,
        "context_length_exceeded",
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 8192 tokens"),
        "{e}"
    );
    assert_eq!(e["param"], "messages");
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("upstream_bad_request")
    );

    // A connection closed without any response.
    assert_error(
        gw.chat(&key, user_message(fake_openai::MODEL_CUT_STREAM, "hi"))
            .await,
        502,
        "upstream_error",
    )
    .await;
    assert_eq!(gw.next_usage().await.status, 502);

    // Streaming requests get the same JSON errors (nothing was streamed yet).
    assert_error(
        gw.chat(&key, streaming(fake_openai::MODEL_500)).await,
        502,
        "upstream_error",
    )
    .await;
    gw.next_usage().await;
}

#[tokio::test]
async fn a_rejected_provider_key_is_502_without_leaking_it() {
    let fake = FakeOpenAi::start_with_key("sk-the-right-key")
        .await
        .unwrap();
    let mut gw = Gateway::start().await;
    let wrong = "sk-provider-wrong-secret-987";
    let provider = gw.provider(ProviderKind::OpenAi, Some(fake.base_url()), Some(wrong));
    gw.set_tenant(
        vec![provider.clone()],
        vec![deployment("gpt", &provider, "gpt-4o")],
    );
    let key = gw.key();
    for body in [user_message("gpt", "hi"), streaming("gpt")] {
        let response = gw.chat(&key, body).await;
        let e = assert_error(response, 502, "upstream_auth_failed").await;
        assert!(!e.to_string().contains(wrong), "{e}");
        assert!(!e.to_string().contains("987"), "{e}");
        assert_eq!(
            gw.next_usage().await.error_code.as_deref(),
            Some("upstream_auth_failed")
        );
    }
    assert_eq!(fake.chat_requests()[0].bearer(), Some(wrong));
}

/// With tracing off (no OTLP endpoint in this test binary), the caller's W3C trace context is
/// forwarded to the provider unchanged, and a malformed one is not forwarded at all.
#[tokio::test]
async fn the_callers_trace_context_passes_through_unchanged_when_tracing_is_off() {
    let (mut gw, fake) = setup(Settings::default()).await;
    let key = gw.key();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (sent, forwarded) in [
        (traceparent, Some(traceparent)),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-zzzz-01", None),
    ] {
        fake.clear_requests();
        let response = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("traceparent", sent)
            .header("tracestate", "caller=1")
            .json(&user_message("gpt", "Say hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        gw.next_usage().await;
        let upstream = &fake.chat_requests()[0];
        assert_eq!(upstream.header("traceparent"), forwarded);
        assert_eq!(upstream.header("tracestate"), forwarded.map(|_| "caller=1"));
    }
    // Anthropic's Messages API too (its own task).
    fake.clear_requests();
    let response = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("traceparent", traceparent)
        .json(&json!({"model": "gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gw.next_usage().await;
    assert_eq!(
        fake.chat_requests()[0].header("traceparent"),
        Some(traceparent)
    );
    // Streams too (the pipeline's task keeps the caller's context).
    fake.clear_requests();
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("traceparent", traceparent)
        .json(&streaming("gpt"))
        .send()
        .await
        .unwrap();
    response.text().await.unwrap();
    gw.next_usage().await;
    assert_eq!(
        fake.chat_requests()[0].header("traceparent"),
        Some(traceparent)
    );
}
