//! `POST /v1/messages` (Anthropic's Messages API) end to end: the gateway in-process, routed to
//! an OpenAI-compatible upstream (testkit's `FakeOpenAi`) and to the built-in mock provider.
//! Answers must be valid Anthropic messages and event streams, errors Anthropic-format, and
//! every request metered like a chat completion with `endpoint = "messages"`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Gateway, KeyOptions, REQUEST_ID, assert_event_stream, deployment, same_name_deployments,
};
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use testkit::fake_anthropic::{self, FakeAnthropic};
use testkit::fake_gemini::{self, FakeGemini};
use testkit::fake_openai::{self, FakeOpenAi};
use time::OffsetDateTime;

/// The upstream tool-calling model (its behaviour is the fake providers' shared contract).
const FAKE_TOOL: &str = fake_openai::MODEL_TOOL;
const WEATHER_ARGS: &str = fake_openai::TOOL_ARGUMENTS;

/// A gateway whose tenant routes `claude-fake` to the fake upstream's default model, every
/// `fake-*` name (`fake-tool` included) to the same-named upstream model, and `claude-mock` to the mock provider.
async fn setup() -> (Gateway, FakeOpenAi) {
    let fake = FakeOpenAi::start().await.expect("fake upstream");
    let gw = Gateway::start().await;
    let provider = gw.provider(
        ProviderKind::OpenAiCompatible,
        Some(format!("{}/", fake.base_url())),
        Some("sk-provider-secret-0123456789"),
    );
    let mock = gw.provider(ProviderKind::Mock, None, None);
    let mut deployments = vec![
        deployment("claude-fake", &provider, "gpt-4o-mini"),
        deployment("claude-mock", &mock, "mock-1"),
    ];
    deployments.extend(same_name_deployments(&provider, fake_openai::MODELS));
    gw.set_tenant(vec![provider, mock], deployments);
    (gw, fake)
}

/// POSTs `body` (raw text) to `path` the way the Anthropic SDK does: `x-api-key` and
/// `anthropic-version`.
async fn post_raw(gw: &Gateway, path: &str, key: Option<&str>, body: String) -> reqwest::Response {
    let mut request = gw
        .http
        .post(gw.url(path))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "some-future-feature-2099-01-01")
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.expect("request sent")
}

async fn post(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    post_raw(gw, "/v1/messages", Some(key), body.to_string()).await
}

fn hello(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

fn streaming(model: &str) -> Value {
    let mut body = hello(model);
    body["stream"] = json!(true);
    body
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    })
}

/// (event name, data JSON) of every complete event of an SSE body.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    let mut blocks: Vec<&str> = body.split("\n\n").collect();
    blocks.pop(); // what follows the last blank line is incomplete by definition
    blocks
        .into_iter()
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            let name = name.unwrap_or_else(|| panic!("every event is named: {block:?}"));
            let data: Value = serde_json::from_str(&data.join("\n"))
                .unwrap_or_else(|e| panic!("JSON data ({e}): {block:?}"));
            // Anthropic's invariant: the data's `type` repeats the event name.
            assert_eq!(data["type"], name.as_str(), "{block}");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Concatenated `text_delta`s.
fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The `input_json_delta` fragments.
fn json_fragments(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts an Anthropic-format error; returns its message.
async fn assert_anthropic_error(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let headers = response.headers().clone();
    let rid = headers[REQUEST_ID].to_str().unwrap().to_owned();
    assert_eq!(
        headers["request-id"].to_str().unwrap(),
        rid,
        "Anthropic's request-id header carries the request id"
    );
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["request_id"], rid.as_str(), "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.is_empty());
    assert!(
        body["error"].get("code").is_none(),
        "no OpenAI fields: {body}"
    );
    message
}

#[tokio::test]
async fn non_streaming_text_is_an_anthropic_message_metered_as_messages() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = hello("claude-fake");
    body["system"] = json!("Be brief.");
    body["metadata"] = json!({"user_id": "user-42"});
    body["top_k"] = json!(5);
    let response = post(&gw, &key, &body).await;
    assert_eq!(response.status(), 200);
    let rid = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["request-id"].to_str().unwrap(), rid);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let message: Value = response.json().await.unwrap();
    let event = gw.next_usage().await;
    assert_eq!(
        message,
        json!({
            "id": format!("msg_{}", event.id.simple()),
            "type": "message",
            "role": "assistant",
            "model": "claude-fake",
            "content": [{"type": "text", "text": fake_openai::CONTENT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": fake_openai::PROMPT_TOKENS,
                "output_tokens": fake_openai::COMPLETION_TOKENS,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        })
    );

    // Metered exactly like a chat completion, labelled `messages`.
    assert_eq!(event.id.hyphenated().to_string(), rid);
    assert_eq!(event.endpoint, "messages");
    assert_eq!(event.model, "claude-fake");
    assert_eq!(event.upstream_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(event.outcome, UsageOutcome::Success);
    assert!(!event.stream);
    assert_eq!(event.status, 200);
    assert_eq!(
        event.prompt_tokens,
        message["usage"]["input_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        event.completion_tokens,
        message["usage"]["output_tokens"].as_u64().unwrap()
    );
    assert!(!event.tokens_estimated);

    // What the upstream received: an OpenAI chat request.
    let sent = fake.chat_requests();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["max_completion_tokens"], 100);
    assert_eq!(sent["user"], "user-42");
    assert!(sent.get("top_k").is_none(), "top_k is dropped: {sent}");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"}
        ])
    );
}

#[tokio::test]
async fn streaming_text_is_the_anthropic_event_sequence() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = post(&gw, &key, &streaming("claude-fake")).await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    assert!(response.headers().contains_key("request-id"));
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    let deltas = fake_openai::STREAM_DELTAS.len();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", deltas));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), want, "{text}");
    assert_eq!(streamed_text(&events), fake_openai::CONTENT);

    let event = gw.next_usage().await;
    let start = &events[0].1["message"];
    assert_eq!(start["id"], format!("msg_{}", event.id.simple()));
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-fake");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        events[3].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})
    );
    assert_eq!(
        events[3 + deltas].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[4 + deltas].1,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 12, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })
    );

    assert_eq!(event.endpoint, "messages");
    assert!(event.stream);
    assert_eq!(event.outcome, UsageOutcome::Success);
    assert_eq!(event.prompt_tokens, fake_openai::PROMPT_TOKENS);
    assert_eq!(event.completion_tokens, fake_openai::COMPLETION_TOKENS);
    // The gateway asked the upstream for a stream with usage.
    let sent = &fake.chat_requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn the_mock_provider_serves_messages_too() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "echo me back"}]}],
    });
    let response = post(&gw, &key, &body).await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "echo me back"}])
    );
    let event = gw.next_usage().await;
    assert_eq!(event.provider.as_deref(), Some("mock"));
    assert_eq!(
        message["usage"]["input_tokens"].as_u64().unwrap(),
        event.prompt_tokens
    );
    assert_eq!(
        message["usage"]["output_tokens"].as_u64().unwrap(),
        event.completion_tokens
    );

    let mut body = body;
    body["stream"] = json!(true);
    let text = post(&gw, &key, &body).await.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(streamed_text(&events), "echo me back");
    assert_eq!(names(&events).last(), Some(&"message_stop"));
    assert_eq!(gw.next_usage().await.outcome, UsageOutcome::Success);
}

#[tokio::test]
async fn system_blocks_and_bearer_auth_without_version_header() {
    let (_gw, fake) = setup().await;
    let key = _gw.key();
    let body = json!({
        "model": "claude-fake",
        "max_tokens": 10,
        "system": [
            {"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer in one word."}
        ],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
        ],
        "stop_sequences": ["\n\n"],
        "temperature": 0.2,
    });
    // `Authorization: Bearer`, no anthropic-version header: both accepted.
    let response = _gw
        .http
        .post(_gw.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = &fake.chat_requests()[0].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are a weather bot.\n\nAnswer in one word."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And tomorrow?"}
        ])
    );
    assert_eq!(sent["stop"], json!(["\n\n"]));
    assert_eq!(sent["temperature"], 0.2);
}

#[tokio::test]
async fn tool_use_non_streaming() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let body = json!({
        "model": FAKE_TOOL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()],
        "tool_choice": {"type": "auto"},
    });
    let response = post(&gw, &key, &body).await;
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["stop_reason"], "tool_use", "{message}");
    let calls: Vec<&Value> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(calls.len(), 1, "{message}");
    assert_eq!(calls[0]["name"], fake_openai::TOOL_NAME);
    assert_eq!(
        calls[0]["input"],
        serde_json::from_str::<Value>(WEATHER_ARGS).unwrap()
    );
    assert!(calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        message["usage"]["input_tokens"],
        fake_openai::TOOL_PROMPT_TOKENS
    );
    assert_eq!(
        message["usage"]["output_tokens"],
        fake_openai::TOOL_COMPLETION_TOKENS
    );
    let event = gw.next_usage().await;
    assert_eq!(
        (event.prompt_tokens, event.completion_tokens),
        (
            fake_openai::TOOL_PROMPT_TOKENS,
            fake_openai::TOOL_COMPLETION_TOKENS
        )
    );

    let sent = &fake.chat_requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": weather_tool()["input_schema"],
        }}])
    );
    assert_eq!(sent["tool_choice"], "auto");
}

#[tokio::test]
async fn tool_use_streaming() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let body = json!({
        "model": FAKE_TOOL,
        "max_tokens": 200,
        "stream": true,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()],
    });
    let response = post(&gw, &key, &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    let n = names(&events);
    assert_eq!(n.first(), Some(&"message_start"), "{text}");
    assert_eq!(
        &n[n.len() - 2..],
        ["message_delta", "message_stop"],
        "{text}"
    );

    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d)
        .collect();
    let tool_start = starts
        .iter()
        .find(|d| d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("a tool_use block: {text}"));
    assert_eq!(tool_start["content_block"]["name"], "get_weather");
    assert_eq!(tool_start["content_block"]["input"], json!({}));
    let index = tool_start["index"].clone();
    // Every fragment belongs to the tool block, and they concatenate to the JSON sent.
    let fragments = json_fragments(&events);
    assert_eq!(fragments, fake_openai::TOOL_ARGUMENT_FRAGMENTS, "{text}");
    assert_eq!(fragments.concat(), WEATHER_ARGS);
    for (name, data) in &events {
        if name == "content_block_delta" && data["delta"]["type"] == "input_json_delta" {
            assert_eq!(data["index"], index);
        }
    }
    // Blocks are started and stopped in order, never overlapping.
    let mut open: Option<Value> = None;
    for (name, data) in &events {
        match name.as_str() {
            "content_block_start" => {
                assert!(
                    open.is_none(),
                    "a block starts while another is open: {text}"
                );
                open = Some(data["index"].clone());
            }
            "content_block_stop" => {
                assert_eq!(open.take(), Some(data["index"].clone()), "{text}");
            }
            _ => {}
        }
    }
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"]["output_tokens"],
        fake_openai::TOOL_COMPLETION_TOKENS
    );
    assert_eq!(gw.next_usage().await.outcome, UsageOutcome::Success);
}

#[tokio::test]
async fn a_tool_result_follow_up_reaches_the_upstream_as_openai_tool_messages() {
    let (_gw, fake) = setup().await;
    let key = _gw.key();
    let body = json!({
        "model": "claude-fake",
        "max_tokens": 200,
        "tools": [weather_tool()],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_abc", "content": [{"type": "text", "text": "18C and sunny"}]},
                {"type": "text", "text": "Thanks, summarise."}
            ]}
        ],
    });
    let response = post(&_gw, &key, &body).await;
    assert_eq!(response.status(), 200);
    let sent = &fake.chat_requests()[0].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": WEATHER_ARGS}}
            ]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "18C and sunny"},
            {"role": "user", "content": "Thanks, summarise."}
        ])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(sent["parallel_tool_calls"], false);
}

#[tokio::test]
async fn invalid_requests_are_anthropic_400s_and_metered() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();

    let response = post_raw(&gw, "/v1/messages", Some(&key), "{\"model\":".to_owned()).await;
    assert_anthropic_error(response, 400, "invalid_request_error").await;
    let event = gw.next_usage().await;
    assert_eq!(event.endpoint, "messages");
    assert_eq!(event.outcome, UsageOutcome::Error);
    assert_eq!(event.error_code.as_deref(), Some("invalid_json"));

    let mut body = hello("claude-fake");
    body.as_object_mut().unwrap().remove("max_tokens");
    let message =
        assert_anthropic_error(post(&gw, &key, &body).await, 400, "invalid_request_error").await;
    assert_eq!(message, "max_tokens: Field required");
    let event = gw.next_usage().await;
    assert_eq!(event.model, "claude-fake", "the model of a refused body");
    assert_eq!(event.status, 400);

    let body = json!({"model": "claude-fake", "max_tokens": 10});
    let message =
        assert_anthropic_error(post(&gw, &key, &body).await, 400, "invalid_request_error").await;
    assert_eq!(message, "messages: Field required");
    gw.next_usage().await;

    let body = json!({"model": "claude-fake", "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x", "media_type": "text/plain"}}]}]});
    let message =
        assert_anthropic_error(post(&gw, &key, &body).await, 400, "invalid_request_error").await;
    assert!(message.starts_with("messages.0.content.0.type: document blocks are not supported"));
    gw.next_usage().await;

    assert!(
        fake.chat_requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn authentication_errors_are_anthropic_401s() {
    let (mut gw, _fake) = setup().await;
    let body = hello("claude-fake").to_string();

    let response = post_raw(&gw, "/v1/messages", None, body.clone()).await;
    assert_anthropic_error(response, 401, "authentication_error").await;

    let unknown = shared::keys::generate_api_key();
    let response = post_raw(&gw, "/v1/messages", Some(&unknown), body.clone()).await;
    assert_anthropic_error(response, 401, "authentication_error").await;

    let revoked = gw.add_key(KeyOptions {
        revoked_at: Some(OffsetDateTime::now_utc()),
        ..KeyOptions::default()
    });
    let response = post_raw(&gw, "/v1/messages", Some(&revoked), body.clone()).await;
    let message = assert_anthropic_error(response, 401, "authentication_error").await;
    assert!(message.contains("revoked"), "{message}");

    let response = post_raw(&gw, "/v1/messages/count_tokens", None, body).await;
    assert_anthropic_error(response, 401, "authentication_error").await;

    // Unauthenticated requests are not metered.
    gw.assert_no_usage_queued();
}

#[tokio::test]
async fn routing_and_upstream_errors_are_anthropic_errors() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();

    let message = assert_anthropic_error(
        post(&gw, &key, &hello("no-such-model")).await,
        404,
        "not_found_error",
    )
    .await;
    assert!(message.contains("no-such-model"), "{message}");
    assert_eq!(
        gw.next_usage().await.error_code.as_deref(),
        Some("model_not_found")
    );

    let limited = gw.add_key(KeyOptions {
        allowed_models: Some(vec!["claude-mock".into()]),
        ..KeyOptions::default()
    });
    assert_anthropic_error(
        post(&gw, &limited, &hello("claude-fake")).await,
        403,
        "permission_error",
    )
    .await;
    gw.next_usage().await;

    let response = post(&gw, &key, &hello(fake_openai::MODEL_429)).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let message = assert_anthropic_error(response, 429, "rate_limit_error").await;
    assert_eq!(message, "Rate limit reached for requests");
    gw.next_usage().await;

    assert_anthropic_error(
        post(&gw, &key, &hello(fake_openai::MODEL_500)).await,
        502,
        "api_error",
    )
    .await;
    gw.next_usage().await;

    let message = assert_anthropic_error(
        post(&gw, &key, &hello(fake_openai::MODEL_400_CONTEXT)).await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(message.contains("maximum context length"), "{message}");
    gw.next_usage().await;

    // A streamed request refused before the stream starts is a plain error response too.
    assert_anthropic_error(
        post(&gw, &key, &streaming(fake_openai::MODEL_429)).await,
        429,
        "rate_limit_error",
    )
    .await;
    gw.next_usage().await;

    // Wrong method on a known path.
    let response = gw
        .http
        .get(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_anthropic_error(response, 405, "invalid_request_error").await;
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_and_no_message_stop() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = post(&gw, &key, &streaming(fake_openai::MODEL_CUT_STREAM)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    let n = names(&events);
    assert_eq!(n.first(), Some(&"message_start"));
    assert_eq!(n.last(), Some(&"error"), "{text}");
    assert!(!n.contains(&"message_stop"), "{text}");
    assert!(!n.contains(&"message_delta"), "{text}");
    assert_eq!(streamed_text(&events), "Hello from");
    let error = &events.last().unwrap().1;
    assert_eq!(error["error"]["type"], "api_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended the stream")
    );

    let event = gw.next_usage().await;
    assert_eq!(event.outcome, UsageOutcome::Truncated);
    assert_eq!(event.endpoint, "messages");
}

#[tokio::test]
async fn count_tokens_estimates_without_metering() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let body = json!({
        "model": "claude-fake",
        "messages": [{"role": "user", "content": "Hello"}],
    });
    let response = post_raw(
        &gw,
        "/v1/messages/count_tokens",
        Some(&key),
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let counted: Value = response.json().await.unwrap();
    // "Hello" is one token; plus the chat format's overhead of one message and the reply.
    assert_eq!(counted, json!({"input_tokens": 7}));

    let mut with_tools = body.clone();
    with_tools["tools"] = json!([weather_tool()]);
    let counted: Value = post_raw(
        &gw,
        "/v1/messages/count_tokens",
        Some(&key),
        with_tools.to_string(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(counted["input_tokens"].as_u64().unwrap() > 7, "{counted}");

    let response = post_raw(
        &gw,
        "/v1/messages/count_tokens",
        Some(&key),
        json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string(),
    )
    .await;
    assert_anthropic_error(response, 404, "not_found_error").await;
    let response = post_raw(
        &gw,
        "/v1/messages/count_tokens",
        Some(&key),
        json!({"model": "claude-fake"}).to_string(),
    )
    .await;
    assert_anthropic_error(response, 400, "invalid_request_error").await;

    // No provider call and no usage event: the next event is this request's.
    assert!(fake.chat_requests().is_empty());
    let response = post(&gw, &key, &hello("claude-mock")).await;
    let rid = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    assert_eq!(gw.next_usage().await.id.hyphenated().to_string(), rid);
}

#[tokio::test]
async fn a_stalled_stream_is_delivered_incrementally_and_a_disconnect_is_metered() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    // The upstream sends "Hello" and then nothing: what arrives must arrive without waiting
    // for the end of the stream.
    let mut response = post(&gw, &key, &streaming(fake_openai::MODEL_STALL_STREAM)).await;
    assert_eq!(response.status(), 200);
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !received.contains("text_delta") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the first text delta in time")
            .unwrap()
            .expect("the stream is open");
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(received.starts_with("event: message_start\n"), "{received}");
    assert!(received.contains(r#""text":"Hello""#), "{received}");
    drop(response);

    let event = gw.next_usage().await;
    assert_eq!(event.outcome, UsageOutcome::ClientDisconnected);
    assert_eq!(event.endpoint, "messages");
}

/// `/v1/messages` routed to deployments on other wire formats: the same Anthropic answers
/// whatever the provider (here Anthropic itself and Gemini, through their fakes).
#[tokio::test]
async fn anthropic_and_gemini_deployments_answer_in_anthropic_format() {
    let anthropic = FakeAnthropic::start().await.expect("fake anthropic");
    let gemini = FakeGemini::start().await.expect("fake gemini");
    let mut gw = Gateway::start().await;
    let on_anthropic = gw.provider(
        ProviderKind::Anthropic,
        Some(anthropic.base_url()),
        Some("sk-ant-provider-secret-0123456789"),
    );
    let on_gemini = gw.provider(
        ProviderKind::Gemini,
        Some(gemini.base_url()),
        Some("AIzaSy-provider-secret-0123456789"),
    );
    gw.set_tenant(
        vec![on_anthropic.clone(), on_gemini.clone()],
        vec![
            deployment("a-text", &on_anthropic, "claude-sonnet-4-5"),
            deployment("a-tool", &on_anthropic, fake_anthropic::MODEL_TOOL),
            deployment("a-cache", &on_anthropic, fake_anthropic::MODEL_CACHE),
            deployment("g-text", &on_gemini, "gemini-2.5-flash"),
            deployment("g-tool", &on_gemini, fake_gemini::MODEL_TOOL),
        ],
    );
    let key = gw.key();

    for model in ["a-text", "g-text"] {
        let mut body = hello(model);
        body["system"] = json!("Be brief.");
        let response = post(&gw, &key, &body).await;
        assert_eq!(response.status(), 200, "{model}");
        let message: Value = response.json().await.unwrap();
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": fake_openai::CONTENT}]),
            "{model}"
        );
        assert_eq!(message["stop_reason"], "end_turn", "{model}");
        assert_eq!(message["usage"]["input_tokens"], 12, "{model}");
        assert_eq!(message["usage"]["output_tokens"], 5, "{model}");
        assert_eq!(gw.next_usage().await.endpoint, "messages");

        let text = post(&gw, &key, &streaming(model))
            .await
            .text()
            .await
            .unwrap();
        let events = sse_events(&text);
        assert_eq!(streamed_text(&events), fake_openai::CONTENT, "{model}");
        assert_eq!(names(&events).last(), Some(&"message_stop"), "{model}");
        gw.next_usage().await;
    }
    // The system prompt reached Anthropic as `system`.
    assert_eq!(anthropic.message_requests()[0].body["system"], "Be brief.");

    for (model, fragments) in [
        ("a-tool", fake_anthropic::TOOL_FRAGMENTS.len()),
        // Gemini sends a whole functionCall at once: one fragment.
        ("g-tool", 1),
    ] {
        let body = json!({
            "model": model,
            "max_tokens": 100,
            "stream": true,
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [weather_tool()],
        });
        let text = post(&gw, &key, &body).await.text().await.unwrap();
        let events = sse_events(&text);
        let got = json_fragments(&events);
        assert_eq!(got.len(), fragments, "{model}: {text}");
        assert_eq!(got.concat(), WEATHER_ARGS, "{model}");
        let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use", "{model}");
        gw.next_usage().await;
    }

    // Prompt-cache reads are reported apart from the uncached input, as Anthropic does.
    let message: Value = post(&gw, &key, &hello("a-cache"))
        .await
        .json()
        .await
        .unwrap();
    let usage = &message["usage"];
    assert_eq!(
        usage["cache_read_input_tokens"],
        fake_anthropic::CACHE_READ_TOKENS
    );
    let input = [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ]
    .iter()
    .map(|k| usage[k].as_u64().unwrap())
    .sum::<u64>();
    let event = gw.next_usage().await;
    assert_eq!(input, event.prompt_tokens, "{usage}");
    assert_eq!(event.cache_read_tokens, fake_anthropic::CACHE_READ_TOKENS);
}

#[tokio::test]
async fn the_edge_413_for_a_declared_length_is_anthropic_format() {
    let mut gw = Gateway::start_with(data_plane::config::Settings {
        max_body_bytes: 200,
        ..data_plane::config::Settings::default()
    })
    .await;
    let key = gw.key();
    let mut big = hello("claude-mock");
    big["messages"][0]["content"] = json!("x".repeat(500));
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        // Refused at the edge on the declared Content-Length, before authentication.
        let message = assert_anthropic_error(
            post_raw(&gw, path, Some(&key), big.to_string()).await,
            413,
            "request_too_large",
        )
        .await;
        assert!(message.contains("200"), "{message}");
        assert_anthropic_error(
            post_raw(&gw, path, None, big.to_string()).await,
            413,
            "request_too_large",
        )
        .await;
    }
    gw.assert_no_usage_queued();
    // Other paths keep OpenAI's format.
    let response = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("anthropic-version", "2023-06-01")
        .bearer_auth(&key)
        .json(&big)
        .send()
        .await
        .unwrap();
    common::assert_error(response, 413, "request_too_large").await;
}

/// GETs `path` with `key`, as the Anthropic SDK (`anthropic-version`, `x-api-key`) or as the
/// OpenAI SDK (bearer token, no Anthropic header).
async fn get(gw: &Gateway, path: &str, key: &str, anthropic: bool) -> reqwest::Response {
    let request = gw.http.get(gw.url(path));
    let request = if anthropic {
        request
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", key)
    } else {
        request.bearer_auth(key)
    };
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn models_answer_in_anthropic_shape_to_anthropic_clients() {
    let (gw, _fake) = setup().await;
    let key = gw.add_key(KeyOptions {
        allowed_models: Some(vec!["claude-fake".into(), "claude-mock".into()]),
        ..KeyOptions::default()
    });

    let response = get(&gw, "/v1/models", &key, true).await;
    assert_eq!(response.status(), 200);
    let rid = response.headers()[REQUEST_ID].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["request-id"].to_str().unwrap(), rid);
    let list: Value = response.json().await.unwrap();
    let model = |id: &str| json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"});
    assert_eq!(
        list,
        json!({
            "data": [model("claude-fake"), model("claude-mock")],
            "has_more": false,
            "first_id": "claude-fake",
            "last_id": "claude-mock",
        })
    );
    OffsetDateTime::parse(
        list["data"][0]["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");

    let response = get(&gw, "/v1/models/claude-mock", &key, true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        model("claude-mock")
    );

    // Errors on these paths, with the header, are Anthropic's.
    assert_anthropic_error(
        get(&gw, "/v1/models/fake-tool", &key, true).await,
        404,
        "not_found_error",
    )
    .await;
    assert_anthropic_error(
        get(&gw, "/v1/models", "sy-not-a-key", true).await,
        401,
        "authentication_error",
    )
    .await;
    let response = gw
        .http
        .delete(gw.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_anthropic_error(response, 405, "invalid_request_error").await;

    // An empty list has null first / last ids.
    let none = gw.add_key(KeyOptions {
        allowed_models: Some(vec![]),
        ..KeyOptions::default()
    });
    let list: Value = get(&gw, "/v1/models", &none, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
    );
}

#[tokio::test]
async fn models_keep_openai_shape_without_the_anthropic_header() {
    let (gw, _fake) = setup().await;
    let key = gw.add_key(KeyOptions {
        allowed_models: Some(vec!["claude-fake".into(), "claude-mock".into()]),
        ..KeyOptions::default()
    });
    let response = get(&gw, "/v1/models", &key, false).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("request-id").is_none());
    let list: Value = response.json().await.unwrap();
    assert_eq!(
        list,
        json!({
            "object": "list",
            "data": [
                {"id": "claude-fake", "object": "model", "created": 0, "owned_by": "openai_compatible provider"},
                {"id": "claude-mock", "object": "model", "created": 0, "owned_by": "mock provider"},
            ],
        })
    );
    let model: Value = get(&gw, "/v1/models/claude-fake", &key, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(model["object"], "model");
    assert_eq!(model["created"], 0);
    assert!(model.get("type").is_none(), "{model}");
    common::assert_error(
        get(&gw, "/v1/models/fake-tool", &key, false).await,
        404,
        "model_not_found",
    )
    .await;
    common::assert_error(
        get(&gw, "/v1/models", "sy-not-a-key", false).await,
        401,
        "invalid_api_key",
    )
    .await;
}
