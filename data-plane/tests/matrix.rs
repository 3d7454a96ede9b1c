//! The translation matrix: the same OpenAI-format conversations sent through every adapter that
//! has a fake upstream, asserting that the answers are equivalent OpenAI-format answers.
//!
//! Rows: `mock` (built in; text and acceptance only, it has no tools), `openai_compatible`
//! (`FakeOpenAi`), `azure_openai` (`FakeOpenAi`'s Azure deployment routes), `anthropic`
//! (`FakeAnthropic`), `gemini` (`FakeGemini`) and `bedrock` (`FakeBedrock`, which verifies the
//! SigV4 signature). Each fake speaks its provider's native wire format and follows the shared
//! fake behaviour contract: the default model answers "Hello from the fake upstream" with usage
//! 12/5, `fake-tool` calls `get_weather` with `{"city":"Paris","unit":"celsius"}` and usage
//! 20/10, `fake-429` / `fake-500` / `fake-400-context` / `fake-cut-stream` misbehave. For every
//! row the test checks:
//! - plain text, non-streaming and streaming (with and without `stream_options.include_usage`):
//!   valid `chat.completion` / `chat.completion.chunk` shapes, the text, finish `stop`, usage 12/5;
//! - the tool conversation (system + user + `tools`), non-streaming and streaming: finish
//!   `tool_calls`, `get_weather`, arguments parsing to the expected object, streamed argument
//!   fragments concatenating to exactly the JSON the fake sent, one `[DONE]` at the very end,
//!   the usage chunk last when asked for;
//! - that the fake received the credentials, the tools, the system prompt and — on the second
//!   turn (assistant `tool_calls` + `tool` result) — the tool call and its result in its own
//!   native shape (a minimal check per provider);
//! - the metered usage event of every successful call (tokens and provider kind);
//! - error mapping: 429 stays 429 with `Retry-After`, a context-length refusal becomes 400
//!   `context_length_exceeded`, a provider 5xx becomes 502, a cut stream ends with the
//!   `stream_truncated` error event and without `[DONE]`.
//!
//! Rows run one after the other inside one test and every failed check is collected, so a
//! failure report lists every row and check that broke, not just the first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, REQUEST_ID, deployment, streaming};
use serde_json::{Value, json};
use shared::config::{DeploymentRecord, ProviderKind, ProviderRecord};
use shared::usage::UsageEvent;
use testkit::fake_anthropic::FakeAnthropic;
use testkit::fake_bedrock::{self, FakeBedrock};
use testkit::fake_gemini::FakeGemini;
use testkit::fake_openai::FakeOpenAi;

/// What every fake answers for the default model.
const CONTENT: &str = "Hello from the fake upstream";
/// The exact arguments JSON every fake sends for `fake-tool`.
const TOOL_ARGS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
const SYSTEM_TEXT: &str = "You are a weather assistant. Use the tools you are given.";
const TOOL_RESULT: &str = r#"{"temperature":18,"condition":"sunny"}"#;
/// The upstream key every row's provider is given (the fakes accept any key, the rows check it
/// arrived the provider's native way; Bedrock's fake verifies its own credentials).
const PROVIDER_KEY: &str = "sk-matrix-provider-key-0123456789";
const AZURE_API_VERSION: &str = "2024-10-21";

/// Which native wire format a row's fake speaks, for the per-provider shape checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Native {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    Mock,
}

/// One request as a fake recorded it, normalised across fakes.
#[derive(Debug, Clone)]
struct Seen {
    /// Path, with `?query` when the fake records it.
    path: String,
    /// Lowercased names.
    headers: BTreeMap<String, String>,
    body: Value,
}

type Recorded = Box<dyn Fn() -> Vec<Seen> + Send + Sync>;

/// One adapter under test.
struct Row {
    name: &'static str,
    native: Native,
    provider: ProviderRecord,
    /// The upstream model id of the plain-text deployment.
    text_model: &'static str,
    /// Every request the row's fake received so far (empty for the mock).
    recorded: Recorded,
}

impl Row {
    fn has_fake(&self) -> bool {
        self.native != Native::Mock
    }

    fn model(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    fn deployments(&self) -> Vec<DeploymentRecord> {
        let mut out = vec![
            deployment(&self.model("text"), &self.provider, self.text_model),
            deployment(&self.model("tool"), &self.provider, "fake-tool"),
        ];
        if self.has_fake() {
            for (what, upstream) in [
                ("429", "fake-429"),
                ("500", "fake-500"),
                ("ctx", "fake-400-context"),
                ("cut", "fake-cut-stream"),
            ] {
                out.push(deployment(&self.model(what), &self.provider, upstream));
            }
        }
        out
    }

    /// The text the row answers the plain conversation with.
    fn expected_text(&self) -> &'static str {
        match self.native {
            // The mock echoes the last user message.
            Native::Mock => "Say hello.",
            _ => CONTENT,
        }
    }
}

/// The recorded requests of a fake; the closure keeps the fake running as long as its row.
fn openai_recorded(fake: &Arc<FakeOpenAi>) -> Recorded {
    let fake = Arc::clone(fake);
    Box::new(move || {
        fake.requests()
            .into_iter()
            .map(|r| Seen {
                path: r.path,
                headers: r.headers,
                body: r.body,
            })
            .collect()
    })
}

fn azure_recorded(fake: &Arc<FakeOpenAi>) -> Recorded {
    let fake = Arc::clone(fake);
    Box::new(move || {
        fake.azure_requests()
            .into_iter()
            .map(|r| Seen {
                path: match r.api_version {
                    Some(v) => format!("{}?api-version={v}", r.request.path),
                    None => r.request.path,
                },
                headers: r.request.headers,
                body: r.request.body,
            })
            .collect()
    })
}

async fn rows(gw: &Gateway) -> Vec<Row> {
    let mut rows = Vec::new();

    let mut mock = gw.provider(ProviderKind::Mock, None, None);
    mock.name = "mock".into();
    rows.push(Row {
        name: "mock",
        native: Native::Mock,
        provider: mock,
        text_model: "mock-echo",
        recorded: Box::new(Vec::new),
    });

    let openai = Arc::new(FakeOpenAi::start().await.expect("fake openai"));
    rows.push(Row {
        name: "openai_compatible",
        native: Native::OpenAi,
        provider: gw.provider(
            ProviderKind::OpenAiCompatible,
            Some(openai.base_url()),
            Some(PROVIDER_KEY),
        ),
        text_model: "gpt-4o-mini",
        recorded: openai_recorded(&openai),
    });

    let azure = Arc::new(FakeOpenAi::start().await.expect("fake azure openai"));
    let mut provider = gw.provider(
        ProviderKind::AzureOpenAi,
        Some(azure.azure_endpoint()),
        Some(PROVIDER_KEY),
    );
    provider
        .options
        .insert("api_version".into(), AZURE_API_VERSION.into());
    rows.push(Row {
        name: "azure_openai",
        native: Native::Azure,
        provider,
        text_model: "gpt-4o-mini",
        recorded: azure_recorded(&azure),
    });

    let anthropic = Arc::new(FakeAnthropic::start().await.expect("fake anthropic"));
    rows.push(Row {
        name: "anthropic",
        native: Native::Anthropic,
        provider: gw.provider(
            ProviderKind::Anthropic,
            Some(anthropic.base_url()),
            Some(PROVIDER_KEY),
        ),
        text_model: "claude-sonnet-4-5",
        recorded: {
            let fake = Arc::clone(&anthropic);
            Box::new(move || {
                fake.requests()
                    .into_iter()
                    .map(|r| Seen {
                        path: r.path,
                        headers: r.headers,
                        body: r.body,
                    })
                    .collect()
            })
        },
    });

    let gemini = Arc::new(FakeGemini::start().await.expect("fake gemini"));
    rows.push(Row {
        name: "gemini",
        native: Native::Gemini,
        provider: gw.provider(
            ProviderKind::Gemini,
            Some(gemini.base_url()),
            Some(PROVIDER_KEY),
        ),
        text_model: "gemini-2.5-flash",
        recorded: {
            let fake = Arc::clone(&gemini);
            Box::new(move || {
                fake.requests()
                    .into_iter()
                    .map(|r| Seen {
                        path: match r.query {
                            Some(q) => format!("{}?{q}", r.path),
                            None => r.path,
                        },
                        headers: r.headers,
                        body: r.body,
                    })
                    .collect()
            })
        },
    });

    let bedrock = Arc::new(FakeBedrock::start().await.expect("fake bedrock"));
    let mut provider = gw.provider(
        ProviderKind::Bedrock,
        Some(bedrock.base_url()),
        Some(fake_bedrock::SECRET_ACCESS_KEY),
    );
    provider
        .options
        .insert("region".into(), fake_bedrock::REGION.into());
    provider
        .options
        .insert("access_key_id".into(), fake_bedrock::ACCESS_KEY_ID.into());
    rows.push(Row {
        name: "bedrock",
        native: Native::Bedrock,
        provider,
        // A real model id: the `:` must be percent-encoded in the path (and signed so).
        text_model: "anthropic.claude-3-5-sonnet-20240620-v1:0",
        recorded: {
            let fake = Arc::clone(&bedrock);
            Box::new(move || {
                fake.requests()
                    .into_iter()
                    .map(|r| Seen {
                        path: r.path,
                        headers: r.headers,
                        body: r.body,
                    })
                    .collect()
            })
        },
    });

    rows
}

// ---------------------------------------------------------------------------------------------
// Requests.

fn text_body(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello."},
        ],
        "max_tokens": 64,
    })
}

fn tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }])
}

fn tool_messages() -> Vec<Value> {
    vec![
        json!({"role": "system", "content": SYSTEM_TEXT}),
        json!({"role": "user", "content": "What is the weather in Paris, in celsius?"}),
    ]
}

fn tool_body(model: &str) -> Value {
    json!({
        "model": model,
        "messages": tool_messages(),
        "tools": tools(),
        "tool_choice": "auto",
        "max_tokens": 256,
    })
}

/// The second turn: the assistant's tool call (as the gateway returned it) and its result.
fn second_turn_body(model: &str, call_id: &str) -> Value {
    let mut messages = tool_messages();
    messages.push(json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGS},
        }],
    }));
    messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}));
    json!({
        "model": model,
        "messages": messages,
        "tools": tools(),
        "max_tokens": 256,
    })
}

// ---------------------------------------------------------------------------------------------
// Checks. Each returns `Err(description)` instead of panicking so one run reports every failure.

type Check<T = ()> = Result<T, String>;

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(what()) }
}

/// Status and body of a non-streaming call, plus the request id.
async fn call_json(gw: &Gateway, key: &str, body: Value) -> Check<(u16, Option<String>, Value)> {
    let resp = tokio::time::timeout(Duration::from_secs(20), gw.chat(key, body))
        .await
        .map_err(|_| "no response within 20 s".to_owned())?;
    let status = resp.status().as_u16();
    let rid = request_id(&resp);
    let text = resp.text().await.map_err(|e| format!("body: {e}"))?;
    let json = serde_json::from_str(&text)
        .map_err(|e| format!("HTTP {status}: body is not JSON ({e}): {text}"))?;
    Ok((status, rid, json))
}

/// Status, headers and raw body of a (streaming) call.
async fn call_raw(
    gw: &Gateway,
    key: &str,
    body: Value,
) -> Check<(u16, reqwest::header::HeaderMap, String)> {
    let resp = tokio::time::timeout(Duration::from_secs(20), gw.chat(key, body))
        .await
        .map_err(|_| "no response headers within 20 s".to_owned())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    // A cut stream ends in a body error on some paths; what arrived before is what matters.
    let mut text = Vec::new();
    let mut stream = resp;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.chunk()).await {
            Err(_) => return Err("stream stalled for 20 s".into()),
            Ok(Ok(Some(bytes))) => text.extend_from_slice(&bytes),
            Ok(Ok(None)) | Ok(Err(_)) => break,
        }
    }
    Ok((status, headers, String::from_utf8_lossy(&text).into_owned()))
}

fn request_id(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The shape every `chat.completion` must have; returns `choices[0]`.
fn completion_shape(body: &Value) -> Check<&Value> {
    ensure(body["object"] == "chat.completion", || {
        format!("object is not chat.completion: {body}")
    })?;
    ensure(body["id"].as_str().is_some_and(|s| !s.is_empty()), || {
        format!("no id: {body}")
    })?;
    ensure(body["created"].is_i64() || body["created"].is_u64(), || {
        format!("created is not an integer: {body}")
    })?;
    ensure(body["model"].is_string(), || format!("no model: {body}"))?;
    let choice = &body["choices"][0];
    ensure(choice["index"] == 0, || format!("choices[0].index: {body}"))?;
    ensure(choice["message"]["role"] == "assistant", || {
        format!("choices[0].message.role: {body}")
    })?;
    Ok(choice)
}

fn usage_is(usage: &Value, prompt: u64, completion: u64) -> Check {
    ensure(
        usage["prompt_tokens"] == prompt
            && usage["completion_tokens"] == completion
            && usage["total_tokens"] == prompt + completion,
        || format!("usage is not {prompt}/{completion}: {usage}"),
    )
}

fn usage_present(usage: &Value) -> Check {
    ensure(
        usage["prompt_tokens"].is_u64()
            && usage["completion_tokens"].is_u64()
            && usage["total_tokens"]
                == usage["prompt_tokens"].as_u64().unwrap_or(0)
                    + usage["completion_tokens"].as_u64().unwrap_or(0),
        || format!("usage missing or inconsistent: {usage}"),
    )
}

fn args_are_expected(arguments: &Value) -> Check {
    let text = arguments
        .as_str()
        .ok_or_else(|| format!("arguments is not a string: {arguments}"))?;
    let parsed: Value =
        serde_json::from_str(text).map_err(|e| format!("arguments {text:?} not JSON: {e}"))?;
    ensure(
        parsed == json!({"city": "Paris", "unit": "celsius"}),
        || format!("arguments parse to {parsed}"),
    )
}

/// A parsed stream of `chat.completion.chunk`s.
#[derive(Debug, Default)]
struct Stream {
    chunks: Vec<Value>,
    text: String,
    /// By tool-call index: (id, name, concatenated argument fragments, number of fragments).
    tool_calls: BTreeMap<u64, (String, String, String, usize)>,
    finish: Vec<String>,
    usage: Vec<Value>,
}

/// Parses and validates the framing of a complete stream: every event a chunk with the common
/// fields (one id for the stream), the role first, exactly one `[DONE]` at the very end, usage
/// chunks (`choices: []`) only right before it.
fn parse_stream(body: &str) -> Check<Stream> {
    let events = testkit::sse::data_events(body);
    let dones = events.iter().filter(|e| e.as_str() == "[DONE]").count();
    ensure(
        dones == 1 && events.last().is_some_and(|e| e == "[DONE]"),
        || format!("expected exactly one [DONE], last; got {dones} in {body}"),
    )?;
    let mut out = Stream::default();
    let mut id: Option<String> = None;
    for event in &events[..events.len() - 1] {
        let chunk: Value =
            serde_json::from_str(event).map_err(|e| format!("event not JSON ({e}): {event}"))?;
        ensure(chunk.get("error").is_none(), || {
            format!("error event in a complete stream: {event}")
        })?;
        ensure(chunk["object"] == "chat.completion.chunk", || {
            format!("object: {event}")
        })?;
        let this_id = chunk["id"].as_str().unwrap_or_default().to_owned();
        ensure(!this_id.is_empty(), || format!("no id: {event}"))?;
        if let Some(first) = &id {
            ensure(*first == this_id, || {
                format!("id changed mid-stream: {first} vs {event}")
            })?;
        } else {
            id = Some(this_id);
        }
        ensure(
            chunk["created"].is_i64() || chunk["created"].is_u64(),
            || format!("created: {event}"),
        )?;
        ensure(chunk["model"].is_string(), || format!("model: {event}"))?;
        let choices = chunk["choices"]
            .as_array()
            .ok_or_else(|| format!("choices is not an array: {event}"))?;
        if !chunk["usage"].is_null() {
            ensure(choices.is_empty(), || {
                format!("usage chunk with choices: {event}")
            })?;
            out.usage.push(chunk["usage"].clone());
        } else {
            ensure(out.usage.is_empty(), || {
                format!("chunk after the usage chunk: {event}")
            })?;
        }
        if choices.is_empty() {
            ensure(!chunk["usage"].is_null(), || {
                format!("empty choices without usage: {event}")
            })?;
        }
        for choice in choices {
            ensure(choice["index"] == 0, || format!("choice index: {event}"))?;
            let delta = &choice["delta"];
            ensure(delta.is_object(), || format!("delta: {event}"))?;
            if out.chunks.is_empty() {
                ensure(delta["role"] == "assistant", || {
                    format!("first chunk has no assistant role: {event}")
                })?;
            }
            if let Some(t) = delta["content"].as_str() {
                out.text.push_str(t);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"]
                    .as_u64()
                    .ok_or_else(|| format!("tool call delta without index: {event}"))?;
                let entry = out.tool_calls.entry(index).or_default();
                if let Some(cid) = call["id"].as_str() {
                    entry.0.push_str(cid);
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.1.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str()
                    && !args.is_empty()
                {
                    entry.2.push_str(args);
                    entry.3 += 1;
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                out.finish.push(f.to_owned());
            }
        }
        out.chunks.push(chunk);
    }
    Ok(out)
}

/// Waits for the usage event of `request_id` (events of earlier requests are skipped).
async fn usage_event(
    gw: &mut Gateway,
    request_id: Option<&str>,
    want: Option<(u64, u64)>,
    kind: ProviderKind,
) -> Check {
    let rid = request_id.ok_or("no x-switchyard-request-id header")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let event: UsageEvent = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = tokio::time::timeout(left, gw.next_usage())
            .await
            .map_err(|_| format!("no usage event for {rid} within 5 s"))?;
        if e.id.to_string() == rid {
            break e;
        }
    };
    ensure(event.provider.as_deref() == Some(kind.as_str()), || {
        format!("usage event provider: {:?}", event.provider)
    })?;
    if let Some((p, c)) = want {
        ensure(
            event.prompt_tokens == p && event.completion_tokens == c && !event.tokens_estimated,
            || {
                format!(
                    "metered {}/{} (estimated: {}), want {p}/{c}",
                    event.prompt_tokens, event.completion_tokens, event.tokens_estimated
                )
            },
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Native request shapes.

/// Every JSON object anywhere in `v` (depth first).
fn objects(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                out.push(o);
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

/// The last request the fake received whose path contains `needle`.
fn last_seen(row: &Row, needle: &str) -> Check<Seen> {
    let seen = (row.recorded)();
    seen.into_iter()
        .rev()
        .find(|s| s.path.contains(needle))
        .ok_or_else(|| format!("the fake recorded no request to a path containing {needle:?}"))
}

/// The first turn as the fake received it: system prompt and tool definition, natively.
fn check_native_first_turn(row: &Row) -> Check {
    match row.native {
        Native::Mock => Ok(()),
        Native::OpenAi | Native::Azure => {
            let seen = last_seen(row, "/chat/completions")?;
            if row.native == Native::Azure {
                ensure(
                    seen.path
                        .starts_with("/openai/deployments/fake-tool/chat/completions")
                        && seen
                            .path
                            .ends_with(&format!("?api-version={AZURE_API_VERSION}")),
                    || format!("Azure deployment URL: {}", seen.path),
                )?;
                ensure(
                    seen.headers.get("api-key").map(String::as_str) == Some(PROVIDER_KEY),
                    || format!("Azure key not in `api-key`: {:?}", seen.headers.keys()),
                )?;
            } else {
                ensure(
                    seen.headers.get("authorization") == Some(&format!("Bearer {PROVIDER_KEY}")),
                    || format!("no bearer key: {:?}", seen.headers.keys()),
                )?;
            }
            let b = &seen.body;
            ensure(
                b["messages"][0]["role"] == "system" && b["messages"][0]["content"] == SYSTEM_TEXT,
                || format!("system message not passed on: {b}"),
            )?;
            ensure(
                b["tools"][0]["function"]["name"] == "get_weather"
                    && b["tools"][0]["function"]["parameters"]["properties"]["city"].is_object(),
                || format!("tools not passed on: {b}"),
            )
        }
        Native::Anthropic => {
            let seen = last_seen(row, "/v1/messages")?;
            let b = &seen.body;
            ensure(
                seen.headers.get("x-api-key").map(String::as_str) == Some(PROVIDER_KEY)
                    && seen.headers.contains_key("anthropic-version"),
                || format!("x-api-key / anthropic-version: {:?}", seen.headers.keys()),
            )?;
            ensure(
                b["system"].to_string().contains("weather assistant"),
                || format!("system prompt not hoisted to `system`: {b}"),
            )?;
            ensure(
                b["messages"].as_array().is_some_and(|m| {
                    m.iter()
                        .all(|m| m["role"] == "user" || m["role"] == "assistant")
                }),
                || format!("roles other than user/assistant: {b}"),
            )?;
            ensure(b["max_tokens"].is_u64(), || format!("no max_tokens: {b}"))?;
            ensure(
                b["tools"][0]["name"] == "get_weather"
                    && b["tools"][0]["input_schema"]["properties"]["city"].is_object(),
                || format!("tools not in Anthropic's shape: {b}"),
            )
        }
        Native::Gemini => {
            let seen = last_seen(row, ":")?;
            let b = &seen.body;
            ensure(seen.path.contains("/models/fake-tool:"), || {
                format!("Gemini model path: {}", seen.path)
            })?;
            ensure(
                seen.headers.get("x-goog-api-key").map(String::as_str) == Some(PROVIDER_KEY)
                    || seen.path.contains(&format!("key={PROVIDER_KEY}")),
                || format!("Gemini key not sent: {:?}", seen.headers.keys()),
            )?;
            ensure(
                b["systemInstruction"]["parts"]
                    .to_string()
                    .contains("weather assistant"),
                || format!("system prompt not in systemInstruction: {b}"),
            )?;
            ensure(
                b["tools"][0]["functionDeclarations"][0]["name"] == "get_weather",
                || format!("tools not in functionDeclarations: {b}"),
            )
        }
        Native::Bedrock => {
            let seen = last_seen(row, "/model/fake-tool/")?;
            let b = &seen.body;
            ensure(
                seen.headers
                    .get("authorization")
                    .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=")),
                || format!("not SigV4-signed: {:?}", seen.headers.keys()),
            )?;
            ensure(
                b["system"].to_string().contains("weather assistant"),
                || format!("system prompt not in `system`: {b}"),
            )?;
            let spec = &b["toolConfig"]["tools"][0]["toolSpec"];
            ensure(
                spec["name"] == "get_weather"
                    && spec["inputSchema"]["json"]["properties"]["city"].is_object(),
                || format!("tools not in toolConfig.tools[].toolSpec: {b}"),
            )
        }
    }
}

/// The second turn as the fake received it: the assistant's tool call and the tool result, in
/// the provider's native shape.
fn check_native_second_turn(row: &Row, call_id: &str) -> Check {
    match row.native {
        Native::Mock => Ok(()),
        Native::OpenAi | Native::Azure => {
            let seen = last_seen(row, "/chat/completions")?;
            let msgs = seen.body["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ensure(
                msgs.iter().any(|m| {
                    m["role"] == "assistant"
                        && m["tool_calls"][0]["id"] == call_id
                        && m["tool_calls"][0]["function"]["name"] == "get_weather"
                }),
                || format!("assistant tool_calls not passed on: {}", seen.body),
            )?;
            ensure(
                msgs.iter().any(|m| {
                    m["role"] == "tool"
                        && m["tool_call_id"] == call_id
                        && m["content"] == TOOL_RESULT
                }),
                || format!("tool result not passed on: {}", seen.body),
            )
        }
        Native::Anthropic => {
            let seen = last_seen(row, "/v1/messages")?;
            let b = &seen.body;
            let blocks = objects(b);
            ensure(
                blocks.iter().any(|o| {
                    o.get("type") == Some(&json!("tool_use"))
                        && o.get("id") == Some(&json!(call_id))
                        && o.get("name") == Some(&json!("get_weather"))
                        && o.get("input") == Some(&json!({"city": "Paris", "unit": "celsius"}))
                }),
                || format!("no tool_use block for {call_id}: {b}"),
            )?;
            ensure(
                blocks.iter().any(|o| {
                    o.get("type") == Some(&json!("tool_result"))
                        && o.get("tool_use_id") == Some(&json!(call_id))
                        && o.get("content")
                            .is_some_and(|c| c.to_string().contains("sunny"))
                }),
                || format!("no tool_result block for {call_id}: {b}"),
            )
        }
        Native::Gemini => {
            let seen = last_seen(row, ":")?;
            let b = &seen.body;
            let parts = objects(&b["contents"]);
            ensure(
                parts.iter().any(|o| {
                    o.get("functionCall").is_some_and(|c| {
                        c["name"] == "get_weather"
                            && c["args"] == json!({"city": "Paris", "unit": "celsius"})
                    })
                }),
                || format!("no functionCall part: {b}"),
            )?;
            ensure(
                parts.iter().any(|o| {
                    o.get("functionResponse").is_some_and(|r| {
                        r["name"] == "get_weather" && r["response"].to_string().contains("sunny")
                    })
                }),
                || format!("no functionResponse part for get_weather: {b}"),
            )
        }
        Native::Bedrock => {
            let seen = last_seen(row, "/converse")?;
            let b = &seen.body;
            let blocks = objects(&b["messages"]);
            ensure(
                blocks.iter().any(|o| {
                    o.get("toolUse").is_some_and(|u| {
                        u["toolUseId"] == call_id
                            && u["name"] == "get_weather"
                            && u["input"] == json!({"city": "Paris", "unit": "celsius"})
                    })
                }),
                || format!("no toolUse block for {call_id}: {b}"),
            )?;
            ensure(
                blocks.iter().any(|o| {
                    o.get("toolResult").is_some_and(|r| {
                        r["toolUseId"] == call_id && r["content"].to_string().contains("sunny")
                    })
                }),
                || format!("no toolResult block for {call_id}: {b}"),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

async fn plain_text(gw: &mut Gateway, key: &str, row: &Row) -> Check {
    let (status, rid, body) = call_json(gw, key, text_body(&row.model("text"))).await?;
    ensure(status == 200, || format!("HTTP {status}: {body}"))?;
    let choice = completion_shape(&body)?;
    ensure(choice["message"]["content"] == row.expected_text(), || {
        format!("content: {body}")
    })?;
    ensure(choice["finish_reason"] == "stop", || {
        format!("finish_reason: {body}")
    })?;
    if row.has_fake() {
        usage_is(&body["usage"], 12, 5)?;
    } else {
        usage_present(&body["usage"])?;
    }
    let want = row.has_fake().then_some((12, 5));
    usage_event(gw, rid.as_deref(), want, row.provider.kind).await
}

async fn plain_text_stream(gw: &mut Gateway, key: &str, row: &Row, include_usage: bool) -> Check {
    let (status, headers, body) = call_raw(
        gw,
        key,
        streaming(text_body(&row.model("text")), include_usage),
    )
    .await?;
    ensure(status == 200, || format!("HTTP {status}: {body}"))?;
    ensure(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")),
        || format!("content-type: {headers:?}"),
    )?;
    let s = parse_stream(&body)?;
    ensure(s.text == row.expected_text(), || {
        format!("streamed text {:?}: {body}", s.text)
    })?;
    if row.has_fake() {
        ensure(
            s.chunks
                .iter()
                .filter(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty())
                })
                .count()
                >= 5,
            || format!("text did not arrive in deltas: {body}"),
        )?;
    }
    ensure(s.finish == ["stop"], || {
        format!("finish reasons {:?}: {body}", s.finish)
    })?;
    ensure(s.tool_calls.is_empty(), || format!("tool calls: {body}"))?;
    if include_usage {
        ensure(s.usage.len() == 1, || {
            format!("{} usage chunks: {body}", s.usage.len())
        })?;
        if row.has_fake() {
            usage_is(&s.usage[0], 12, 5)?;
        } else {
            usage_present(&s.usage[0])?;
        }
    } else {
        ensure(s.usage.is_empty(), || {
            format!("usage chunk although not asked for: {body}")
        })?;
    }
    let rid = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let want = row.has_fake().then_some((12, 5));
    usage_event(gw, rid.as_deref(), want, row.provider.kind).await
}

/// Returns the tool call id the gateway answered with.
async fn tool_call(gw: &mut Gateway, key: &str, row: &Row) -> Check<String> {
    let (status, rid, body) = call_json(gw, key, tool_body(&row.model("tool"))).await?;
    ensure(status == 200, || format!("HTTP {status}: {body}"))?;
    let choice = completion_shape(&body)?;
    ensure(choice["finish_reason"] == "tool_calls", || {
        format!("finish_reason: {body}")
    })?;
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .ok_or_else(|| format!("no tool_calls: {body}"))?;
    ensure(calls.len() == 1, || {
        format!("{} tool calls: {body}", calls.len())
    })?;
    let call = &calls[0];
    ensure(call["type"] == "function", || format!("type: {body}"))?;
    ensure(call["function"]["name"] == "get_weather", || {
        format!("name: {body}")
    })?;
    let id = call["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("tool call without id: {body}"))?
        .to_owned();
    args_are_expected(&call["function"]["arguments"])?;
    usage_is(&body["usage"], 20, 10)?;
    check_native_first_turn(row)?;
    usage_event(gw, rid.as_deref(), Some((20, 10)), row.provider.kind).await?;
    Ok(id)
}

async fn tool_call_stream(gw: &mut Gateway, key: &str, row: &Row) -> Check {
    let (status, headers, body) =
        call_raw(gw, key, streaming(tool_body(&row.model("tool")), true)).await?;
    ensure(status == 200, || format!("HTTP {status}: {body}"))?;
    let s = parse_stream(&body)?;
    ensure(s.finish == ["tool_calls"], || {
        format!("finish reasons {:?}: {body}", s.finish)
    })?;
    ensure(s.tool_calls.len() == 1, || {
        format!("{} tool calls: {body}", s.tool_calls.len())
    })?;
    let (id, name, args, fragments) = s.tool_calls.get(&0).ok_or("no tool call at index 0")?;
    ensure(!id.is_empty(), || format!("tool call without id: {body}"))?;
    ensure(name == "get_weather", || format!("name {name:?}: {body}"))?;
    ensure(args == TOOL_ARGS, || {
        format!("argument fragments concatenate to {args:?}, want {TOOL_ARGS:?}: {body}")
    })?;
    // Gemini sends the whole call in one chunk (documented); the others stream fragments.
    ensure(*fragments >= 1, || format!("no argument fragments: {body}"))?;
    ensure(s.usage.len() == 1, || {
        format!("{} usage chunks: {body}", s.usage.len())
    })?;
    usage_is(&s.usage[0], 20, 10)?;
    let rid = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    usage_event(gw, rid.as_deref(), Some((20, 10)), row.provider.kind).await
}

async fn second_turn(gw: &mut Gateway, key: &str, row: &Row, call_id: &str) -> Check {
    let (status, rid, body) =
        call_json(gw, key, second_turn_body(&row.model("text"), call_id)).await?;
    ensure(status == 200, || format!("HTTP {status}: {body}"))?;
    let choice = completion_shape(&body)?;
    if row.has_fake() {
        ensure(choice["message"]["content"] == CONTENT, || {
            format!("content: {body}")
        })?;
    }
    check_native_second_turn(row, call_id)?;
    let want = row.has_fake().then_some((12, 5));
    usage_event(gw, rid.as_deref(), want, row.provider.kind).await
}

async fn errors(gw: &Gateway, key: &str, row: &Row) -> Check {
    // 429 stays 429, Retry-After kept.
    let resp = gw.chat(key, text_body(&row.model("429"))).await;
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").cloned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    ensure(status == 429, || format!("fake-429: HTTP {status}: {body}"))?;
    ensure(retry_after.as_ref().is_some_and(|v| v == "7"), || {
        format!("fake-429: retry-after {retry_after:?}")
    })?;
    ensure(body["error"]["message"].is_string(), || {
        format!("fake-429: error body {body}")
    })?;

    // Context too long → 400 context_length_exceeded.
    let (status, _, body) = call_json(gw, key, text_body(&row.model("ctx"))).await?;
    ensure(
        status == 400 && body["error"]["code"] == "context_length_exceeded",
        || format!("fake-400-context: HTTP {status}: {body}"),
    )?;

    // Provider 5xx → 502 in OpenAI's error shape.
    let (status, _, body) = call_json(gw, key, text_body(&row.model("500"))).await?;
    ensure(
        status == 502 && body["error"]["message"].is_string(),
        || format!("fake-500: HTTP {status}: {body}"),
    )?;

    // A cut stream: what arrived, then an error event, never [DONE].
    let (status, _, body) =
        call_raw(gw, key, streaming(text_body(&row.model("cut")), true)).await?;
    ensure(status == 200, || {
        format!("fake-cut-stream: HTTP {status}: {body}")
    })?;
    let events = testkit::sse::data_events(&body);
    ensure(!events.iter().any(|e| e == "[DONE]"), || {
        format!("fake-cut-stream ended with [DONE]: {body}")
    })?;
    ensure(
        events.last().is_some_and(|e| {
            serde_json::from_str::<Value>(e).is_ok_and(|v| v["error"]["code"] == "stream_truncated")
        }),
        || format!("fake-cut-stream: no stream_truncated error event at the end: {body}"),
    )?;
    Ok(())
}

async fn run_row(gw: &mut Gateway, key: &str, row: &Row) -> Vec<(&'static str, Check)> {
    let mut results = vec![
        ("text", plain_text(gw, key, row).await),
        (
            "text stream + usage",
            plain_text_stream(gw, key, row, true).await,
        ),
        (
            "text stream, no usage",
            plain_text_stream(gw, key, row, false).await,
        ),
    ];
    if !row.has_fake() {
        // The mock has no tools: the tool conversation must still be accepted and answered.
        let r = async {
            let (status, _, body) = call_json(gw, key, tool_body(&row.model("tool"))).await?;
            ensure(status == 200, || format!("HTTP {status}: {body}"))?;
            completion_shape(&body).map(drop)
        }
        .await;
        results.push(("tools accepted", r));
        let r = async {
            let (status, _, body) =
                call_json(gw, key, second_turn_body(&row.model("text"), "call_1")).await?;
            ensure(status == 200, || format!("HTTP {status}: {body}"))?;
            completion_shape(&body).map(drop)
        }
        .await;
        results.push(("second turn accepted", r));
        return results;
    }
    let call_id = tool_call(gw, key, row).await;
    let id_for_second = call_id.as_ref().ok().cloned();
    results.push(("tool call", call_id.map(drop)));
    results.push(("tool call stream", tool_call_stream(gw, key, row).await));
    let second = match id_for_second {
        Some(id) => second_turn(gw, key, row, &id).await,
        // Still exercise the second turn with an id of our own.
        None => second_turn(gw, key, row, "call_matrix0001").await,
    };
    results.push(("second turn", second));
    results.push(("errors", errors(gw, key, row).await));
    results
}

/// Long bodies in failure messages are cut to keep the report readable.
fn clip(text: &str) -> String {
    const MAX: usize = 2500;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … [{} more bytes]", &text[..end], text.len() - end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adapter_answers_the_same_conversation_equivalently() {
    let mut gw = Gateway::start().await;
    let rows = rows(&gw).await;
    gw.set_tenant(
        rows.iter().map(|r| r.provider.clone()).collect(),
        rows.iter().flat_map(Row::deployments).collect(),
    );
    let key = gw.key();

    let mut report = String::new();
    let mut failed = 0;
    for row in &rows {
        for (case, result) in run_row(&mut gw, &key, row).await {
            match result {
                Ok(()) => {
                    let _ = writeln!(report, "ok    {:<20} {case}", row.name);
                }
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(report, "FAIL  {:<20} {case}: {}", row.name, clip(&e));
                }
            }
        }
    }
    eprintln!("translation matrix:\n{report}");
    assert_eq!(failed, 0, "{failed} matrix checks failed:\n{report}");
}
