//! The gateway against Anthropic's Messages API (testkit's `FakeAnthropic`): OpenAI-format
//! requests translated to Anthropic's wire format and the answers back, streaming, tool calls,
//! metering (cache tokens included) and Anthropic's errors.
//!
//! Expected translations are golden files under `testkit/fixtures/anthropic/`; rerun with
//! `SWITCHYARD_UPDATE_GOLDEN=1` to rewrite them after a deliberate change (and review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Gateway, REQUEST_ID, assert_error, assert_event_stream, deployment, last_event_without_done,
    same_name_deployments, sse_data, streamed_text, streaming, user_message,
};
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use testkit::fake_anthropic::{self, FakeAnthropic};
use testkit::logs::CapturedLogs;

const PROVIDER_KEY: &str = "sk-ant-api03-provider-secret-0123456789";

/// A gateway whose tenant routes "claude" to `claude-sonnet-4-5`, "claude-capped" to a
/// deployment with `max_output_tokens` 777, and every fake model name to itself, all on one
/// Anthropic provider pointing at the fake.
async fn setup_with_key(provider_key: &str) -> (Gateway, FakeAnthropic) {
    let fake = FakeAnthropic::start_with_key(PROVIDER_KEY)
        .await
        .expect("fake Anthropic");
    let gw = Gateway::start().await;
    let provider = gw.provider(
        ProviderKind::Anthropic,
        Some(fake.base_url()),
        Some(provider_key),
    );
    let mut deployments = vec![deployment("claude", &provider, "claude-sonnet-4-5")];
    let mut capped = deployment("claude-capped", &provider, "claude-haiku-4-5");
    capped.max_output_tokens = Some(777);
    deployments.push(capped);
    deployments.extend(same_name_deployments(&provider, fake_anthropic::MODELS));
    gw.set_tenant(vec![provider], deployments);
    (gw, fake)
}

async fn setup() -> (Gateway, FakeAnthropic) {
    setup_with_key(PROVIDER_KEY).await
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            },
            "required": ["city"]
        }
    }})
}

/// Compares `actual` with the golden file `name` (or rewrites it under
/// `SWITCHYARD_UPDATE_GOLDEN`).
fn assert_golden(name: &str, actual: &Value) {
    if std::env::var_os("SWITCHYARD_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        std::fs::write(fake_anthropic::fixture_path(name), text).unwrap();
        return;
    }
    let expected = fake_anthropic::fixture(name).expect("golden fixture");
    assert_eq!(
        actual,
        &expected,
        "golden {name} differs; actual:\n{}",
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// Replaces what differs per run (ids, timestamps) so bodies can be compared with goldens.
fn normalize(mut v: Value) -> Value {
    if v.get("id").is_some_and(Value::is_string) {
        v["id"] = json!("<id>");
    }
    if v.get("created").is_some() {
        v["created"] = json!(0);
    }
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            for key in ["message", "delta"] {
                if let Some(calls) = choice
                    .get_mut(key)
                    .and_then(|m| m.get_mut("tool_calls"))
                    .and_then(Value::as_array_mut)
                {
                    for call in calls {
                        if call.get("id").is_some() {
                            call["id"] = json!("<tool_call_id>");
                        }
                    }
                }
            }
        }
    }
    v
}

/// A stream's events as one JSON array for a golden file: chunks normalized, `[DONE]` kept.
fn golden_stream(events: &[String]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| match serde_json::from_str::<Value>(e) {
                Ok(chunk) => normalize(chunk),
                Err(_) => json!(e),
            })
            .collect(),
    )
}

/// Chunks of a finished stream (everything before `[DONE]`), parsed.
fn parse_chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("chunk is JSON"))
        .collect()
}

/// Captures the log lines written while the guard lives (thread-local: `#[tokio::test]` runs
/// the gateway's tasks on the test's thread).
fn capture_logs() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn non_streaming_text_is_translated_both_ways_and_metered() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("claude", "Say hello")).await;
    assert_eq!(response.status(), 200);
    let request_id: uuid::Uuid = response.headers()[REQUEST_ID]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], format!("chatcmpl-{}", request_id.simple()));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        fake_anthropic::CONTENT
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );

    let sent = fake.message_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(sent[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].header("authorization"), None);
    assert_eq!(
        sent[0].body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]
        })
    );

    let usage = gw.next_usage().await;
    assert_eq!(usage.id, request_id);
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert_eq!(usage.provider.as_deref(), Some("anthropic"));
    assert_eq!(usage.upstream_model.as_deref(), Some("claude-sonnet-4-5"));
    // 12 × $2.50/M + 5 × $10/M.
    assert_eq!(usage.cost_micros, 80);
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn streaming_text_arrives_as_openai_chunks_ending_in_done() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, streaming(user_message("claude", "Say hello"), true))
        .await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let request_id: uuid::Uuid = response.headers()[REQUEST_ID]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.iter().filter(|e| e.as_str() == "[DONE]").count(), 1);
    assert_eq!(streamed_text(&events), fake_anthropic::CONTENT);
    let chunks = parse_chunks(&events);
    // role, 5 deltas, finish, usage.
    assert_eq!(chunks.len(), 8, "{events:#?}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], format!("chatcmpl-{}", request_id.simple()));
        assert_eq!(c["model"], "claude-sonnet-4-5");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );
    assert_eq!(fake.message_requests()[0].body["stream"], true);
    assert_golden("response_stream_text.json", &golden_stream(&events));

    let usage = gw.next_usage().await;
    assert!(usage.stream);
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert!(usage.ttft_ms.is_some());

    // Without include_usage the client gets no usage chunk, and the stream is still metered.
    let response = gw
        .chat(&key, streaming(user_message("claude", "Say hello"), false))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        parse_chunks(&events)
            .iter()
            .all(|c| c.get("usage").is_none())
    );
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
}

#[tokio::test]
async fn a_tool_call_is_translated_both_ways() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let request = json!({
        "model": "fake-tool",
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [weather_tool()],
        "tool_choice": "auto"
    });
    let response = gw.chat(&key, request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(
        call["function"]["arguments"],
        fake_anthropic::TOOL_ARGUMENTS
    );
    assert!(call["id"].as_str().unwrap().starts_with("toolu_01"));
    assert_golden("response_tool_call.json", &normalize(body));
    assert_golden("request_tools.json", &fake.message_requests()[0].body);

    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_argument_fragments() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let request = streaming(
        json!({
            "model": "fake-tool",
            "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
            "tools": [weather_tool()]
        }),
        true,
    );
    let response = gw.chat(&key, request).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = parse_chunks(&events);

    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    let start = calls[0];
    assert_eq!(start["index"], 0);
    assert_eq!(start["type"], "function");
    assert_eq!(start["function"]["name"], fake_anthropic::TOOL_NAME);
    assert!(start["id"].as_str().unwrap().starts_with("toolu_01"));
    assert!(calls.iter().all(|c| c["index"] == 0));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, fake_anthropic::TOOL_ARGUMENTS);
    let fragments: Vec<&str> = calls[1..]
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(fragments, fake_anthropic::TOOL_FRAGMENTS);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    assert_golden("response_stream_tool_call.json", &golden_stream(&events));

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn a_tool_result_follow_up_becomes_tool_use_and_tool_result_blocks() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let request = streaming(
        json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Use the tools."},
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [{
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}
                }]},
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "18°C, sunny"},
                {"role": "user", "content": "Should I take an umbrella?"}
            ],
            "tools": [weather_tool()]
        }),
        false,
    );
    let response = gw.chat(&key, request).await;
    assert_eq!(response.status(), 200, "the fake validated the tool_result");
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(streamed_text(&events), fake_anthropic::CONTENT);
    assert_golden(
        "request_tool_followup.json",
        &fake.message_requests()[0].body,
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn system_messages_are_hoisted_and_same_role_turns_merged() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let request = json!({
        "model": "claude",
        "max_tokens": 300,
        "temperature": 0.2,
        "stop": ["\n\nHuman:"],
        "seed": 42,
        "presence_penalty": 0.5,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}
            ]},
            {"role": "developer", "content": "Answer in French."},
            {"role": "assistant", "content": "Un chat."},
            {"role": "assistant", "content": "Noir."},
            {"role": "user", "content": "Merci"}
        ]
    });
    let response = gw.chat(&key, request).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    assert_golden(
        "request_system_merge.json",
        &fake.message_requests()[0].body,
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn max_tokens_defaults_to_the_deployment_cap() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("claude-capped", "Hi")).await;
    assert_eq!(response.status(), 200);
    gw.next_usage().await;
    let mut with_max = user_message("claude-capped", "Hi");
    with_max["max_tokens"] = json!(50);
    let response = gw.chat(&key, with_max).await;
    assert_eq!(response.status(), 200);
    gw.next_usage().await;

    let sent = fake.message_requests();
    assert_eq!(sent[0].body["model"], "claude-haiku-4-5");
    assert_eq!(sent[0].body["max_tokens"], 777);
    assert_eq!(sent[1].body["max_tokens"], 50);
}

#[tokio::test]
async fn a_cut_stream_ends_with_a_truncation_error_and_no_done() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, streaming(user_message("fake-cut-stream", "Hi"), true))
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    let last = last_event_without_done(&events);
    assert_eq!(streamed_text(&events), "Hello from");
    assert_eq!(last["error"]["code"], "stream_truncated");

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("stream_truncated"));
    assert!(usage.tokens_estimated);
}

#[tokio::test]
async fn an_error_event_mid_stream_is_passed_on_logged_and_metered_as_truncated() {
    let (logs, _guard) = capture_logs();
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(
            &key,
            streaming(user_message("fake-stream-error", "Hi"), false),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    let last = last_event_without_done(&events);
    assert_eq!(streamed_text(&events), "Hello");
    assert_eq!(last["error"]["message"], "Overloaded");
    assert_eq!(last["error"]["type"], "overloaded_error");

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("upstream_error"));
    let logs = logs.text();
    assert!(
        logs.contains("WARN")
            && logs.contains("Anthropic ended the stream with an error event")
            && logs.contains("overloaded_error"),
        "{logs}"
    );
}

#[tokio::test]
async fn rate_limits_stay_429_with_retry_after() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("fake-429", "Hi")).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let error = assert_error(response, 429, "upstream_rate_limited").await;
    assert_eq!(error["message"], fake_anthropic::RATE_LIMIT_MESSAGE);
    assert_eq!(error["type"], "rate_limit_error");
    let usage = gw.next_usage().await;
    assert_eq!(usage.status, 429);
}

#[tokio::test]
async fn a_prompt_too_long_is_400_context_length_exceeded() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("fake-400-context", "Hi")).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().contains_key(REQUEST_ID));
    let body: Value = response.json().await.unwrap();
    assert_golden("error_context_length.json", &body);
    gw.next_usage().await;
}

#[tokio::test]
async fn overloaded_and_server_errors_are_502_with_anthropic_message() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("fake-overloaded", "Hi")).await;
    let error = assert_error(response, 502, "upstream_error").await;
    assert!(
        error["message"].as_str().unwrap().contains("HTTP 529")
            && error["message"].as_str().unwrap().contains("Overloaded"),
        "{error}"
    );
    gw.next_usage().await;
    let response = gw
        .chat(&key, streaming(user_message("fake-500", "Hi"), false))
        .await;
    let error = assert_error(response, 502, "upstream_error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Internal server error")
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn a_wrong_provider_key_is_502_without_leaking_it() {
    let (logs, _guard) = capture_logs();
    let wrong = "sk-ant-api03-wrong-key-9876543210";
    let (mut gw, fake) = setup_with_key(wrong).await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("claude", "Hi")).await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(wrong) && !text.contains(PROVIDER_KEY),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
    assert_eq!(fake.message_requests()[0].header("x-api-key"), Some(wrong));
    let usage = gw.next_usage().await;
    assert_eq!(usage.status, 502);
    let logs = logs.text();
    assert!(logs.contains("upstream_auth_failed"), "{logs}");
    assert!(!logs.contains(wrong), "{logs}");
}

#[tokio::test]
async fn cache_reads_and_writes_are_counted_into_usage() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("fake-cache", "Hi")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // prompt = input 2 + cache read 8 + cache write 2.
    assert_eq!(body["usage"]["prompt_tokens"], 12);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert_eq!(
        (usage.cache_read_tokens, usage.cache_write_tokens),
        (
            fake_anthropic::CACHE_READ_TOKENS,
            fake_anthropic::CACHE_WRITE_TOKENS
        )
    );

    let response = gw
        .chat(&key, streaming(user_message("fake-cache", "Hi"), true))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    let chunks = parse_chunks(&events);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 12);
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        8
    );
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert_eq!(usage.cache_read_tokens, fake_anthropic::CACHE_READ_TOKENS);
    // Cache writes of a stream do not reach the usage event yet: the OpenAI usage chunk the
    // meter reads has no field for them (see the report to the lead).
}

#[tokio::test]
async fn what_anthropic_cannot_do_is_refused_before_any_upstream_call() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message("claude", "Hi");
    body["n"] = json!(3);
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "n");

    let body = json!({"model": "claude", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": "}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]});
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(
        error["param"],
        "messages[1].tool_calls[0].function.arguments"
    );
    assert!(fake.message_requests().is_empty());
    gw.next_usage().await;
    gw.next_usage().await;
}

#[tokio::test]
async fn json_mode_is_emulated_with_a_forced_tool() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message("claude", "Give me a JSON weather report");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {
        "name": "weather_report",
        "schema": {"type": "object", "properties": {"temp_c": {"type": "number"}}, "required": ["temp_c"]}
    }});
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    gw.next_usage().await;
    let sent = &fake.message_requests()[0].body;
    assert_eq!(sent["tools"][0]["name"], "weather_report");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["temp_c"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "weather_report"})
    );
    assert!(sent.get("response_format").is_none());
}
