//! The gateway against a Gemini upstream (testkit's `FakeGemini`, Google's wire format):
//! translation both ways, streaming, tools, metering, errors, embeddings. Golden fixtures live
//! in `testkit/fixtures/gemini/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use common::{
    Gateway, REQUEST_ID, assert_error, assert_event_stream, deployment, last_event_without_done,
    same_name_deployments, sse_data, streamed_text, streaming, user_message,
};
use data_plane::config::Settings;
use serde_json::{Value, json};
use shared::config::ProviderKind;
use shared::usage::UsageOutcome;
use testkit::fake_gemini::{self, FakeGemini};

const PROVIDER_KEY: &str = "AIzaSy-provider-secret-0123456789";

/// A gateway whose tenant routes "gem" to `gemini-2.5-flash` and every fake model name to the
/// same-named upstream model, all through one Gemini provider with `key`.
async fn setup_with(fake: &FakeGemini, key: &str, settings: Settings) -> Gateway {
    let gw = Gateway::start_with(settings).await;
    let provider = gw.provider(ProviderKind::Gemini, Some(fake.base_url()), Some(key));
    let mut deployments = vec![deployment("gem", &provider, "gemini-2.5-flash")];
    deployments.extend(same_name_deployments(&provider, fake_gemini::MODELS));
    gw.set_tenant(vec![provider], deployments);
    gw
}

async fn setup() -> (Gateway, FakeGemini) {
    let fake = FakeGemini::start().await.expect("fake gemini");
    let gw = setup_with(&fake, PROVIDER_KEY, Settings::default()).await;
    (gw, fake)
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/gemini")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The request id (simple form) of a gateway response.
fn request_id(response: &reqwest::Response) -> String {
    let id = response.headers()[REQUEST_ID].to_str().unwrap();
    uuid::Uuid::parse_str(id).unwrap().simple().to_string()
}

/// `value` with the request id replaced by `{request_id}` and `created` set to 0, for golden
/// comparisons.
fn normalize(value: &Value, request_id: &str) -> Value {
    let text = value.to_string().replace(request_id, "{request_id}");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    if let Some(created) = v.get_mut("created") {
        *created = json!(0);
    }
    v
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        }, "required": ["city"], "additionalProperties": false}
    }}])
}

#[tokio::test]
async fn non_streaming_answer_matches_golden_and_is_metered() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, user_message("gem", "Say hello")).await;
    assert_eq!(response.status(), 200);
    let rid = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(normalize(&body, &rid), fixture("completion_text.json"));

    let sent = fake.generate_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(sent[0].query, None, "the key never travels in the URL");
    assert_eq!(sent[0].header("x-goog-api-key"), Some(PROVIDER_KEY));
    assert!(sent[0].header("authorization").is_none());
    assert_eq!(
        sent[0].body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]})
    );

    let usage = gw.next_usage().await;
    assert_eq!((usage.status, usage.outcome), (200, UsageOutcome::Success));
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert_eq!(usage.provider.as_deref(), Some("gemini"));
    assert_eq!(usage.upstream_model.as_deref(), Some("gemini-2.5-flash"));
    // 12 × $2.50/M + 5 × $10/M.
    assert_eq!(usage.cost_micros, 80);
}

#[tokio::test]
async fn streaming_text_ends_with_done_and_usage_is_metered() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, streaming(user_message("gem", "Say hello"), true))
        .await;
    assert_eq!(response.status(), 200);
    assert_event_stream(&response);
    let rid = request_id(&response);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), fake_gemini::CONTENT);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // role, 5 deltas, finish, usage.
    assert_eq!(chunks.len(), 8, "{events:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &chunks {
        assert_eq!(c["id"], format!("chatcmpl-{rid}"));
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gemini-2.5-flash");
    }
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );

    let sent = fake.generate_requests();
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(sent[0].query.as_deref(), Some("alt=sse"));
    assert_eq!(sent[0].header("accept"), Some("text/event-stream"));

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert!(usage.stream);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    assert!(!usage.tokens_estimated);
    assert!(usage.ttft_ms.is_some());

    // Without include_usage the client gets no usage chunk, but the event is still metered.
    let response = gw
        .chat(&key, streaming(user_message("gem", "Say hello"), false))
        .await;
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(
        events.len(),
        8,
        "role, 5 deltas, finish, [DONE]: {events:?}"
    );
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
}

#[tokio::test]
async fn tool_call_answer_matches_golden() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message(fake_gemini::MODEL_TOOL, "Weather in Paris?");
    body["tools"] = weather_tool();
    body["tool_choice"] = json!("auto");
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let rid = request_id(&response);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(normalize(&answer, &rid), fixture("completion_tool.json"));
    assert_eq!(
        answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        fake_gemini::TOOL_ARGUMENTS
    );

    let sent = &fake.generate_requests()[0];
    assert_eq!(
        sent.body["tools"],
        json!([{"functionDeclarations": [{
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            }, "required": ["city"]}
        }]}])
    );
    assert_eq!(
        sent.body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    let usage = gw.next_usage().await;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn streamed_tool_call_matches_golden_and_arguments_are_whole() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let mut body = streaming(
        user_message(fake_gemini::MODEL_TOOL, "Weather in Paris?"),
        true,
    );
    body["tools"] = weather_tool();
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let rid = request_id(&response);
    let events = sse_data(&response.text().await.unwrap());
    let got: Vec<Value> = events
        .iter()
        .map(|e| match serde_json::from_str::<Value>(e) {
            Ok(v) => normalize(&v, &rid),
            Err(_) => json!(e),
        })
        .collect();
    assert_eq!(Value::Array(got), fixture("stream_tool.json"));

    let arguments: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(arguments, fake_gemini::TOOL_ARGUMENTS);
    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 10));
}

#[tokio::test]
async fn tool_results_become_function_responses_named_after_their_calls() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, fixture("openai_tool_followup.json")).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(
        fake.generate_requests()[0].body,
        fixture("request_tool_followup.json")
    );
    gw.next_usage().await;

    // A result whose call id no earlier assistant message has: refused before any upstream call.
    fake.clear_requests();
    let mut body = fixture("openai_tool_followup.json");
    body["messages"][4]["tool_call_id"] = json!("call_unknown");
    let response = gw.chat(&key, body).await;
    let error = assert_error(response, 400, "invalid_request").await;
    assert_eq!(error["param"], "messages[4].tool_call_id");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn history_without_thought_signatures_gets_googles_placeholder() {
    let (gw, fake) = setup().await;
    let key = gw.key();
    let body = json!({"model": "gem", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "colder"}
    ], "tools": weather_tool()});
    let response = gw.chat(&key, body).await;
    assert_eq!(response.status(), 200);
    let sent = &fake.generate_requests()[0].body;
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "skip_thought_signature_validator"},
            {"functionCall": {"name": "get_weather", "args": {}}}
        ]})
    );
}

#[tokio::test]
async fn system_instruction_generation_config_and_schemas_match_golden() {
    let (gw, fake) = setup().await;
    let key = gw.key();
    let response = gw.chat(&key, fixture("openai_config.json")).await;
    // The fake refuses unknown fields like the real API, so a 200 means Gemini would accept it.
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(
        fake.generate_requests()[0].body,
        fixture("request_config.json")
    );
}

#[tokio::test]
async fn json_mode_sets_the_response_mime_type() {
    let (gw, fake) = setup().await;
    let key = gw.key();
    let mut body = user_message("gem", "Give me JSON");
    body["response_format"] = json!({"type": "json_object"});
    assert_eq!(gw.chat(&key, body).await.status(), 200);
    assert_eq!(
        fake.generate_requests()[0].body["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[tokio::test]
async fn requests_gemini_cannot_take_are_refused_before_the_upstream() {
    let (gw, fake) = setup().await;
    let key = gw.key();

    let body = json!({"model": "gem", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]}]});
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "messages[0].content");
    assert!(error["message"].as_str().unwrap().contains("data: URL"));

    let mut body = user_message("gem", "hi");
    body["n"] = json!(2);
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "n");

    let body = json!({"model": "gem", "messages": [{"role": "system", "content": "only a system prompt"}]});
    let error = assert_error(gw.chat(&key, body).await, 400, "invalid_request").await;
    assert_eq!(error["param"], "messages");

    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn a_cut_stream_is_truncated_without_done() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(
            &key,
            streaming(
                user_message(fake_gemini::MODEL_CUT_STREAM, "Say hello"),
                false,
            ),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    let last = last_event_without_done(&events);
    assert_eq!(streamed_text(&events), "Hello from");
    assert_eq!(last["error"]["code"], "stream_truncated");
    assert!(!events.iter().any(|e| e.contains("finish_reason\":\"stop")));

    let usage = gw.next_usage().await;
    assert_eq!(usage.outcome, UsageOutcome::Truncated);
    assert_eq!(usage.error_code.as_deref(), Some("stream_truncated"));
    // Gemini reports usage on every chunk: the last one seen is used, not an estimate.
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 2));
    assert!(!usage.tokens_estimated);
}

#[tokio::test]
async fn rate_limits_stay_429_with_retry_after() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, user_message(fake_gemini::MODEL_429, "hi"))
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, fixture("error_429.json"));
    let usage = gw.next_usage().await;
    assert_eq!(usage.error_code.as_deref(), Some("upstream_rate_limited"));

    // Gemini's usual form: no header, only the RetryInfo detail.
    let response = gw
        .chat(
            &key,
            streaming(user_message(fake_gemini::MODEL_429_RETRY_INFO, "hi"), false),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
}

#[tokio::test]
async fn a_key_gemini_refuses_is_502_without_leaking_it() {
    let fake = FakeGemini::start_with_key(PROVIDER_KEY).await.unwrap();
    let wrong = "AIzaSy-wrong-key-9876543210";
    let mut gw = setup_with(&fake, wrong, Settings::default()).await;
    let key = gw.key();
    for body in [
        user_message("gem", "hi"),
        streaming(user_message("gem", "hi"), true),
    ] {
        let response = gw.chat(&key, body).await;
        assert_eq!(response.status(), 502);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains(wrong) && !text.contains(PROVIDER_KEY),
            "{text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "upstream_auth_failed");
        let usage = gw.next_usage().await;
        assert_eq!(usage.error_code.as_deref(), Some("upstream_auth_failed"));
    }
    // Gemini answered a 400 API_KEY_INVALID, as the real API does.
    assert_eq!(fake.requests()[0].header("x-goog-api-key"), Some(wrong));
}

#[tokio::test]
async fn context_too_long_is_400_context_length_exceeded() {
    let (gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, user_message(fake_gemini::MODEL_400_CONTEXT, "hi"))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, fixture("error_context.json"));
}

#[tokio::test]
async fn server_errors_are_502_with_geminis_message() {
    let (gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(&key, user_message(fake_gemini::MODEL_500, "hi"))
        .await;
    let error = assert_error(response, 502, "upstream_error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("An internal error has occurred"),
        "{error}"
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_answer() {
    let (mut gw, _fake) = setup().await;
    let key = gw.key();
    let response = gw
        .chat(
            &key,
            user_message(fake_gemini::MODEL_BLOCKED, "something bad"),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["usage"]["prompt_tokens"], 12);
    gw.next_usage().await;

    let response = gw
        .chat(
            &key,
            streaming(
                user_message(fake_gemini::MODEL_BLOCKED, "something bad"),
                false,
            ),
        )
        .await;
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(gw.next_usage().await.outcome, UsageOutcome::Success);
}

#[tokio::test]
async fn a_hanging_upstream_is_504() {
    let fake = FakeGemini::start().await.unwrap();
    let gw = setup_with(
        &fake,
        PROVIDER_KEY,
        Settings {
            upstream_headers_timeout_ms: 300,
            ..Settings::default()
        },
    )
    .await;
    let key = gw.key();
    let response = gw
        .chat(&key, user_message(fake_gemini::MODEL_HANG, "hi"))
        .await;
    assert_error(response, 504, "upstream_timeout").await;
}

/// `/v1/embeddings` routed to Gemini: `batchEmbedContents`, OpenAI's list back, usage estimated.
#[tokio::test]
async fn embeddings_through_the_gateway() {
    let (mut gw, fake) = setup().await;
    let key = gw.key();
    let response = gw
        .embeddings(
            &key,
            json!({"model": "gem", "input": ["hello", "world"], "dimensions": 4}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "gemini-2.5-flash");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    for (i, text) in ["hello", "world"].iter().enumerate() {
        assert_eq!(body["data"][i]["object"], "embedding");
        assert_eq!(body["data"][i]["index"], i);
        let values: Vec<f32> =
            serde_json::from_value(body["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(values, fake_gemini::embedding_for(text)[..4]);
    }
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prompt_tokens, 2, "one token each, counted locally");
    assert_eq!(body["usage"]["total_tokens"], prompt_tokens);

    let sent = fake.embed_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].path,
        "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    );
    assert_eq!(sent[0].query, None);
    assert_eq!(sent[0].header("x-goog-api-key"), Some(PROVIDER_KEY));
    assert_eq!(
        sent[0].body,
        json!({"requests": [
            {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
            {"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 4}
        ]})
    );
    let usage = gw.next_usage().await;
    assert_eq!(usage.endpoint, "embeddings");
    assert_eq!(usage.outcome, UsageOutcome::Success);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (2, 0));
    assert!(usage.tokens_estimated, "Gemini reports no embedding usage");
    assert_eq!(usage.provider.as_deref(), Some("gemini"));

    // base64: the little-endian f32s, as OpenAI encodes them.
    let response = gw
        .embeddings(
            &key,
            json!({"model": "gem", "input": "hello", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let b64 = body["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values, fake_gemini::embedding_for("hello"));
    gw.next_usage().await;

    // More inputs than one batch takes: consecutive batches, one list back, in order.
    fake.clear_requests();
    let inputs: Vec<String> = (0..fake_gemini::MAX_EMBED_BATCH + 5)
        .map(|i| format!("text {i}"))
        .collect();
    let response = gw
        .embeddings(&key, json!({"model": "gem", "input": inputs}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), inputs.len());
    let last: Vec<f32> = serde_json::from_value(data[104]["embedding"].clone()).unwrap();
    assert_eq!(last, fake_gemini::embedding_for("text 104"));
    assert_eq!(data[104]["index"], 104);
    assert_eq!(fake.embed_requests().len(), 2);
    gw.next_usage().await;

    // Token ids: Gemini embeds text only.
    let response = gw
        .embeddings(&key, json!({"model": "gem", "input": [1, 2, 3]}))
        .await;
    let error = assert_error(response, 400, "invalid_request").await;
    assert_eq!(error["param"], "input");

    // Upstream errors map as for chat.
    let response = gw
        .embeddings(
            &key,
            json!({"model": fake_gemini::MODEL_429, "input": "hello"}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
}
