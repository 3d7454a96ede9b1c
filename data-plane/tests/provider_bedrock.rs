//! The gateway against AWS Bedrock (testkit's `FakeBedrock`, which verifies every SigV4
//! signature): OpenAI-format requests translated to Converse and back, ConverseStream's binary
//! event stream turned into OpenAI chunks, tool calls both ways, metering, Bedrock's errors, and
//! embeddings through InvokeModel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{
    Gateway, assert_error, assert_event_stream, deployment, last_event_without_done, sse_data,
    streamed_text, streaming, user_message,
};
use data_plane::config::Settings;
use serde_json::{Value, json};
use shared::config::{ProviderKind, ProviderRecord};
use shared::usage::UsageOutcome;
use testkit::fake_bedrock::{self, FakeBedrock};

/// A model id with the `:` that must be percent-encoded in the path and double-encoded when
/// signed.
const CLAUDE_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// An inference-profile ARN: `:` and `/` in one path segment.
const PROFILE_ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
const TITAN: &str = "amazon.titan-embed-text-v2:0";
const COHERE: &str = "cohere.embed-english-v3";

fn bedrock_provider(gw: &Gateway, fake: &FakeBedrock, secret: &str) -> ProviderRecord {
    let mut provider = gw.provider(ProviderKind::Bedrock, Some(fake.base_url()), Some(secret));
    provider
        .options
        .insert("region".into(), fake_bedrock::REGION.into());
    provider
        .options
        .insert("access_key_id".into(), fake_bedrock::ACCESS_KEY_ID.into());
    provider
}

/// A gateway whose tenant routes "claude" to [`CLAUDE_ID`], "profile" to [`PROFILE_ARN`],
/// "titan"/"cohere" to the embedding models, and every fake model name to itself.
async fn setup_with(secret: &str, settings: Settings) -> (Gateway, FakeBedrock) {
    let fake = FakeBedrock::start().await.expect("fake Bedrock");
    let gw = Gateway::start_with(settings).await;
    let provider = bedrock_provider(&gw, &fake, secret);
    let mut deployments = vec![
        deployment("claude", &provider, CLAUDE_ID),
        deployment("profile", &provider, PROFILE_ARN),
        deployment("titan", &provider, TITAN),
        deployment("cohere", &provider, COHERE),
    ];
    for model in [
        fake_bedrock::MODEL_TOOL,
        fake_bedrock::MODEL_CUT_STREAM,
        fake_bedrock::MODEL_BAD_CRC,
        fake_bedrock::MODEL_STREAM_EXCEPTION,
        fake_bedrock::MODEL_429,
        fake_bedrock::MODEL_500,
        fake_bedrock::MODEL_400_CONTEXT,
        fake_bedrock::MODEL_STALL_STREAM,
        fake_bedrock::MODEL_HANG,
    ] {
        deployments.push(deployment(model, &provider, model));
    }
    gw.set_tenant(vec![provider], deployments);
    (gw, fake)
}

async fn setup_with_secret(secret: &str) -> (Gateway, FakeBedrock) {
    setup_with(secret, Settings::default()).await
}

async fn setup() -> (Gateway, FakeBedrock) {
    setup_with_secret(fake_bedrock::SECRET_ACCESS_KEY).await
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        }, "required": ["city"]}
    }})
}

fn parsed(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("chunk JSON"))
        .collect()
}

#[tokio::test]
async fn non_streaming_text_is_translated_signed_and_metered() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message("claude", "Say hello");
    body["messages"] = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"}
    ]);
    body["max_tokens"] = json!(100);
    body["temperature"] = json!(0.2);
    body["stop"] = json!(["\n\n"]);
    body["seed"] = json!(7);
    body["x_unknown_field"] = json!(true);
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], CLAUDE_ID);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        fake_bedrock::CONTENT
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );

    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(r.model_id, CLAUDE_ID);
    // Golden: the Converse body, unknown OpenAI fields dropped.
    assert_eq!(
        r.body,
        json!({
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "stopSequences": ["\n\n"]}
        })
    );
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={}/",
            fake_bedrock::ACCESS_KEY_ID
        )),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(r.header("x-amz-date").is_some());
    assert!(
        !format!("{:?}", r.headers).contains(fake_bedrock::SECRET_ACCESS_KEY),
        "the secret never travels"
    );

    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert_eq!(usage.provider.as_deref(), Some("bedrock"));
    assert_eq!(usage.upstream_model.as_deref(), Some(CLAUDE_ID));
}

#[tokio::test]
async fn streaming_text_becomes_openai_chunks_with_usage() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, streaming(user_message("claude", "Say hello"), true))
        .await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert_eq!(streamed_text(&events), fake_bedrock::CONTENT);
    let chunks = parsed(&events);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"], "one id per stream");
    }
    let deltas: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(deltas, fake_bedrock::STREAM_DELTAS);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );
    assert_eq!(fake.requests()[0].operation, "converse-stream");

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert!(usage.stream);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert!(usage.ttft_ms.is_some());

    // Without include_usage the client gets no usage chunk, and the request is metered anyway.
    let response = gw
        .chat(&key, streaming(user_message("claude", "Say hello"), false))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(parsed(&events).iter().all(|c| c.get("usage").is_none()));
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
}

#[tokio::test]
async fn tool_calls_are_translated_both_ways() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message("fake-tool", "Weather in Paris?");
    body["tools"] = json!([weather_tool()]);
    body["tool_choice"] = json!("auto");
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("tooluse_"));
    assert_eq!(call["function"]["name"], fake_bedrock::TOOL_NAME);
    assert_eq!(call["function"]["arguments"], fake_bedrock::TOOL_ARGUMENTS);
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(answer["usage"]["prompt_tokens"], 20);
    assert_eq!(answer["usage"]["completion_tokens"], 10);

    assert_eq!(
        fake.requests()[0].body["toolConfig"],
        json!({
            "tools": [{"toolSpec": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "inputSchema": {"json": {"type": "object", "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                }, "required": ["city"]}}
            }}],
            "toolChoice": {"auto": {}}
        })
    );
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn streamed_tool_call_arguments_concatenate_to_the_json_sent() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let mut body = streaming(user_message("fake-tool", "Weather in Paris?"), true);
    body["tools"] = json!([weather_tool()]);
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = parsed(&events);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("tooluse_"));
    assert_eq!(calls[0]["function"]["name"], fake_bedrock::TOOL_NAME);
    let fragments: Vec<&str> = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(fragments, fake_bedrock::TOOL_ARGUMENT_FRAGMENTS);
    assert_eq!(fragments.concat(), fake_bedrock::TOOL_ARGUMENTS);
    assert!(calls.iter().all(|c| c["index"] == 0));
    let finish = chunks
        .iter()
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn a_tool_result_follow_up_is_sent_as_a_tool_result_block() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let body = json!({
        "model": "fake-tool",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "tooluse_abc123", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}
            }]},
            {"role": "tool", "tool_call_id": "tooluse_abc123", "content": "18°C and sunny"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
        ],
        "tools": [weather_tool()],
        "tool_choice": "required",
        "max_completion_tokens": 256
    });
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    // Golden: the whole Converse body. The tool result and the next user text share one user
    // turn (Bedrock requires alternating roles).
    assert_eq!(
        fake.requests()[0].body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Paris?"}]},
                {"role": "assistant", "content": [{"toolUse": {
                    "toolUseId": "tooluse_abc123",
                    "name": "get_weather",
                    "input": {"city": "Paris", "unit": "celsius"}
                }}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_abc123", "content": [{"text": "18°C and sunny"}]}},
                    {"text": "And tomorrow?"}
                ]}
            ],
            "inferenceConfig": {"maxTokens": 256},
            "toolConfig": {
                "tools": [{"toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "inputSchema": {"json": {"type": "object", "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                    }, "required": ["city"]}}
                }}],
                "toolChoice": {"any": {}}
            }
        })
    );
    gw.next_usage().await;
}

#[tokio::test]
async fn a_wrong_secret_is_a_502_that_leaks_nothing() {
    const WRONG: &str = "wrongSecretKey/0123456789abcdefghijklmnopqr";
    let (mut gw, fake) = setup_with_secret(WRONG).await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("claude", "hi")).await;
    let error = assert_error(response, 502, "upstream_auth_failed").await;
    let text = error.to_string();
    assert!(!text.contains(WRONG) && !text.contains(fake_bedrock::SECRET_ACCESS_KEY));
    assert!(!text.contains("Signature"), "{text}");
    assert_eq!(fake.requests().len(), 1, "the fake saw (and refused) it");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Error);
    assert_eq!(usage.error_code.as_deref(), Some("upstream_auth_failed"));
}

#[tokio::test]
async fn a_provider_without_region_is_unavailable() {
    let fake = FakeBedrock::start().await.unwrap();
    let mut gw = Gateway::start().await;
    let mut provider = bedrock_provider(&gw, &fake, fake_bedrock::SECRET_ACCESS_KEY);
    provider.options.remove("region");
    gw.set_tenant(
        vec![provider.clone()],
        vec![deployment("claude", &provider, CLAUDE_ID)],
    );
    let key = gw.key();
    let response = gw.chat(&key, user_message("claude", "hi")).await;
    assert_error(response, 502, "provider_unavailable").await;
    assert!(fake.requests().is_empty());
    gw.next_usage().await;
}

#[tokio::test]
async fn bedrock_errors_map_to_openai_errors() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();

    let response = gw.chat(&key, user_message("fake-429", "hi")).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let error = assert_error(response, 429, "upstream_rate_limited").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Too many requests")
    );
    gw.next_usage().await;

    let response = gw
        .chat(
            &key,
            streaming(user_message("fake-400-context", "hi"), false),
        )
        .await;
    let error = assert_error(response, 400, "context_length_exceeded").await;
    assert_eq!(error["message"], "Input is too long for requested model.");
    assert_eq!(error["type"], "invalid_request_error");
    gw.next_usage().await;

    let response = gw.chat(&key, user_message("fake-500", "hi")).await;
    let error = assert_error(response, 502, "upstream_error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("internal error")
    );
    gw.next_usage().await;

    // Refused before any upstream call, naming the rule.
    let mut body = user_message("claude", "hi");
    body["response_format"] = json!({"type": "json_object"});
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "response_format");
    gw.next_usage().await;
}

/// Sends a streaming request to `model`; returns the SSE payloads.
async fn stream_events(gw: &Gateway, key: &str, model: &str) -> Vec<String> {
    let response = gw
        .chat(key, streaming(user_message(model, "Say hello"), true))
        .await;
    assert_eq!(response.status(), 200);
    sse_data(&response.text().await.unwrap())
}

#[tokio::test]
async fn a_cut_stream_ends_with_a_truncation_error_and_no_done() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let events = stream_events(&gw, &key, "fake-cut-stream").await;
    let last = last_event_without_done(&events);
    assert_eq!(streamed_text(&events), "Hello from");
    assert_eq!(last["error"]["code"], "stream_truncated");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("stream_truncated"));
    assert!(usage.tokens_estimated);
}

#[tokio::test]
async fn a_frame_with_a_bad_crc_truncates_the_stream() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let events = stream_events(&gw, &key, "fake-bad-crc").await;
    let last = last_event_without_done(&events);
    // The frame before the corrupted one arrived; nothing after it did.
    assert_eq!(streamed_text(&events), "Hello");
    assert_eq!(last["error"]["code"], "stream_truncated");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
}

#[tokio::test]
async fn a_stream_exception_is_passed_on_without_done() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let events = stream_events(&gw, &key, "fake-stream-exception").await;
    let last = last_event_without_done(&events);
    assert_eq!(last["error"]["code"], "upstream_error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("modelStreamErrorException")
    );
    let truncations = events
        .iter()
        .filter(|e| e.contains("stream_truncated"))
        .count();
    assert_eq!(truncations, 0, "one error event, the provider's");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("upstream_error"));
}

#[tokio::test]
async fn a_stalled_stream_is_cut_at_the_idle_timeout_and_a_hang_at_the_headers_timeout() {
    let settings = Settings {
        upstream_idle_timeout_ms: 300,
        upstream_headers_timeout_ms: 300,
        ..Settings::default()
    };
    let (mut gw, _fake) = setup_with(fake_bedrock::SECRET_ACCESS_KEY, settings).await;
    let key = gw.key();
    let events = stream_events(&gw, &key, "fake-stall-stream").await;
    assert_eq!(streamed_text(&events), "Hello");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_truncated");
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("upstream_timeout"));

    let response = gw.chat(&key, user_message("fake-hang", "hi")).await;
    assert_error(response, 504, "upstream_timeout").await;
    gw.next_usage().await;
}

#[tokio::test]
async fn model_ids_with_colons_and_slashes_are_encoded_and_signed() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    for stream in [false, true] {
        let mut body = user_message("profile", "hi");
        if stream {
            body = streaming(body, false);
        }
        let response = gw.chat(&key, body).await;
        assert_eq!(
            response.status(),
            200,
            "signature accepted (stream: {stream})"
        );
        let _ = response.text().await.unwrap();
        gw.next_usage().await;
    }
    let sent = fake.requests();
    assert_eq!(
        sent[0].path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_eq!(sent[0].model_id, PROFILE_ARN);
    assert_eq!(sent[1].operation, "converse-stream");
    assert_eq!(sent[1].model_id, PROFILE_ARN);
}

fn as_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn expected(text: &str) -> Vec<f64> {
    fake_bedrock::embedding(text)
        .into_iter()
        .map(f64::from)
        .collect()
}

#[tokio::test]
async fn titan_embeddings_go_through_invoke_one_input_per_request() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.embeddings(&key,
        json!({"model": "titan", "input": ["first text", "second text", "third"], "dimensions": 256}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, text) in ["first text", "second text", "third"].iter().enumerate() {
        assert_eq!(data[i]["object"], "embedding");
        assert_eq!(data[i]["index"], i);
        assert_eq!(as_f64s(&data[i]["embedding"]), expected(text), "input {i}");
    }
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 9, "total_tokens": 9})
    );
    let sent = fake.requests();
    assert_eq!(sent.len(), 3);
    let mut texts: Vec<&str> = sent
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
            assert_eq!(r.body["dimensions"], 256);
            r.body["inputText"].as_str().unwrap()
        })
        .collect();
    texts.sort_unstable();
    assert_eq!(texts, ["first text", "second text", "third"]);
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 0));
}

#[tokio::test]
async fn cohere_embeddings_batch_and_base64_encoding() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.embeddings(&key,
        json!({"model": "cohere", "input": ["a", "b"], "encoding_format": "base64", "input_type": "search_query"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    use base64::Engine;
    for (i, text) in ["a", "b"].iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, fake_bedrock::embedding(text));
    }
    let sent = fake.requests();
    assert_eq!(sent.len(), 1, "one batch");
    assert_eq!(
        sent[0].body,
        json!({"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"]})
    );
    gw.next_usage().await;
}
