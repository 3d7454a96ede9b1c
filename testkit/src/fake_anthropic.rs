//! A fake Anthropic Messages API for tests.
//!
//! It serves `POST /v1/messages` and `GET /v1/models` on `127.0.0.1:0` in Anthropic's native
//! wire format, so the gateway's Anthropic adapter is exercised against what the real service
//! sends:
//! - request and response: <https://docs.anthropic.com/en/api/messages> (`x-api-key` and
//!   `anthropic-version` headers required; `max_tokens` required; no `system` role inside
//!   `messages`; non-empty content; `tool_result` blocks first in their user turn and answering a
//!   `tool_use` of the previous assistant turn; a `message` with `msg_…` id, `content` blocks,
//!   `stop_reason`, `usage` with `input_tokens` / `output_tokens` and the cache counts);
//! - streaming: <https://docs.anthropic.com/en/api/messages-streaming> (`text/event-stream` with
//!   an `event:` line naming each event: `message_start` carrying the input usage,
//!   `content_block_start`, `ping`, `content_block_delta` with `text_delta` or
//!   `input_json_delta`, `content_block_stop`, `message_delta` with `stop_reason` and the
//!   cumulative `output_tokens`, `message_stop`; or an `error` event mid-stream);
//! - errors: <https://docs.anthropic.com/en/api/errors> (`{"type":"error","error":{"type",
//!   "message"},"request_id"}`; 400 `invalid_request_error`, 401 `authentication_error`, 404
//!   `not_found_error`, 429 `rate_limit_error` with `retry-after`, 500 `api_error`, 529
//!   `overloaded_error`).
//!
//! Every response carries a `request-id` header (`req_…`); successful ones carry the
//! `anthropic-ratelimit-*` headers.
//!
//! Behaviour is chosen by the `model` the fake receives (the `MODEL_*` constants; the ISSUE 3
//! fake contract): any other model answers [`CONTENT`] with usage 12/5. Every request is recorded
//! (method, path, lowercased headers, JSON body), refused ones included.
//!
//! Golden fixtures for the adapter's tests live in `testkit/fixtures/anthropic/` ([`fixture`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::fake_server::{
    self, FakeServer, Received, StreamEnd, cut_response, lock, stream_body, wait_for_shutdown,
};

pub use crate::fake_openai::RecordedRequest;

/// The text every successful answer returns.
pub const CONTENT: &str = "Hello from the fake upstream";
/// The streamed `text_delta`s; they concatenate to [`CONTENT`].
pub const STREAM_DELTAS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];
/// Usage of a default answer.
pub const INPUT_TOKENS: u64 = 12;
pub const OUTPUT_TOKENS: u64 = 5;

/// Calls [`TOOL_NAME`] with [`TOOL_ARGUMENTS`], `stop_reason` `tool_use`, usage 20/10.
pub const MODEL_TOOL: &str = "fake-tool";
pub const TOOL_NAME: &str = "get_weather";
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
/// How a streamed tool call's input arrives (after one empty `partial_json`, as the API often
/// sends first).
pub const TOOL_FRAGMENTS: [&str; 3] = [r#"{"city":"#, r#""Paris","#, r#""unit":"celsius"}"#];
pub const TOOL_INPUT_TOKENS: u64 = 20;
pub const TOOL_OUTPUT_TOKENS: u64 = 10;

/// A default answer whose prompt was partly read from and written to the prompt cache:
/// `input_tokens` [`CACHE_UNCACHED_TOKENS`], `cache_read_input_tokens` [`CACHE_READ_TOKENS`],
/// `cache_creation_input_tokens` [`CACHE_WRITE_TOKENS`] (12 prompt tokens in all), output 5.
pub const MODEL_CACHE: &str = "fake-cache";
pub const CACHE_UNCACHED_TOKENS: u64 = 2;
pub const CACHE_READ_TOKENS: u64 = 8;
pub const CACHE_WRITE_TOKENS: u64 = 2;

/// Streaming: `message_start`, the text block's start, "Hello", " from", then the connection
/// drops (no `message_stop`). Non-streaming: the connection closes without a response.
pub const MODEL_CUT_STREAM: &str = "fake-cut-stream";
/// Streaming: "Hello", then nothing more while the connection stays open.
pub const MODEL_STALL_STREAM: &str = "fake-stall-stream";
/// Streaming: "Hello", then an `error` event (`overloaded_error`) and the end of the body.
pub const MODEL_STREAM_ERROR: &str = "fake-stream-error";
/// Accepts the request and never answers (until the fake is dropped).
pub const MODEL_HANG: &str = "fake-hang";
/// 429 `rate_limit_error` with `retry-after: 7`.
pub const MODEL_429: &str = "fake-429";
/// 500 `api_error`.
pub const MODEL_500: &str = "fake-500";
/// 529 `overloaded_error`.
pub const MODEL_OVERLOADED: &str = "fake-overloaded";
/// 400 `invalid_request_error` with [`CONTEXT_ERROR_MESSAGE`].
pub const MODEL_400_CONTEXT: &str = "fake-400-context";
/// Anthropic's wording for a prompt over the context window.
pub const CONTEXT_ERROR_MESSAGE: &str = "prompt is too long: 208310 tokens > 200000 maximum";
/// The message of the 429.
pub const RATE_LIMIT_MESSAGE: &str = "Number of request tokens has exceeded your per-minute rate limit (https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.";

/// Every model `GET /v1/models` lists. Any other name behaves like a normal model.
pub const MODELS: [&str; 12] = [
    "claude-sonnet-4-5",
    MODEL_TOOL,
    MODEL_CACHE,
    MODEL_CUT_STREAM,
    MODEL_STALL_STREAM,
    MODEL_STREAM_ERROR,
    MODEL_HANG,
    MODEL_429,
    MODEL_500,
    MODEL_OVERLOADED,
    MODEL_400_CONTEXT,
    "claude-haiku-4-5",
];

/// The path of a golden fixture under `testkit/fixtures/anthropic/`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/anthropic")).join(name)
}

/// A golden fixture under `testkit/fixtures/anthropic/`, parsed.
pub fn fixture(name: &str) -> anyhow::Result<Value> {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Configures a [`FakeAnthropic`] before starting it.
#[derive(Debug, Clone)]
pub struct FakeAnthropicBuilder {
    api_key: Option<String>,
    record: bool,
}

impl Default for FakeAnthropicBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            record: true,
        }
    }
}

impl FakeAnthropicBuilder {
    /// Require `x-api-key: <api_key>`; anything else gets 401 `authentication_error`.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Whether to keep every request for [`FakeAnthropic::requests`] (default true).
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Binds `127.0.0.1:0` and serves in a background task of the current tokio runtime.
    pub async fn start(self) -> anyhow::Result<FakeAnthropic> {
        let server = FakeServer::start(
            |shutdown| Shared {
                api_key: self.api_key,
                record: self.record,
                requests: Mutex::new(Vec::new()),
                count: AtomicU64::new(0),
                shutdown,
            },
            handle,
        )
        .await?;
        Ok(FakeAnthropic { server })
    }
}

/// A running fake. Dropping it stops accepting connections and releases held-open requests.
pub struct FakeAnthropic {
    server: FakeServer<Shared>,
}

impl std::fmt::Debug for FakeAnthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug("FakeAnthropic", f)
    }
}

impl FakeAnthropic {
    /// A fake that accepts any `x-api-key` (one must still be present, as with the real API).
    pub async fn start() -> anyhow::Result<FakeAnthropic> {
        FakeAnthropicBuilder::default().start().await
    }

    /// A fake that answers 401 `authentication_error` unless `x-api-key: <api_key>`.
    pub async fn start_with_key(api_key: &str) -> anyhow::Result<FakeAnthropic> {
        FakeAnthropicBuilder::default()
            .api_key(api_key)
            .start()
            .await
    }

    pub fn builder() -> FakeAnthropicBuilder {
        FakeAnthropicBuilder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the form a provider's `base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests).clone()
    }

    /// Requests received so far to `POST /v1/messages`.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests)
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/messages")
            .cloned()
            .collect()
    }

    /// How many requests arrived, recorded or not.
    pub fn request_count(&self) -> u64 {
        self.server.state().count.load(Ordering::Relaxed)
    }

    pub fn clear_requests(&self) {
        lock(&self.server.state().requests).clear();
    }
}

struct Shared {
    api_key: Option<String>,
    record: bool,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` + 22 base-62 characters, the shape of Anthropic's ids (`msg_01…`, `toolu_01…`).
fn new_id(prefix: &str) -> String {
    let mut n = uuid::Uuid::new_v4().as_u128();
    let mut out = String::from(prefix);
    for _ in 0..22 {
        out.push(char::from(BASE62[(n % 62) as usize]));
        n /= 62;
    }
    out
}

async fn handle(State(state): State<Arc<Shared>>, req: Request) -> Response {
    let request_id = new_id("req_011C");
    let Received { parts, bytes, json } = fake_server::receive(req).await;
    state.count.fetch_add(1, Ordering::Relaxed);
    if state.record {
        lock(&state.requests).push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: fake_server::header_map(&parts.headers),
            body: json.clone(),
        });
    }
    let mut response = route(
        &state,
        &request_id,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        &json,
        &bytes,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", v);
    }
    response
}

async fn route(
    state: &Shared,
    request_id: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    json: &Value,
    raw: &Bytes,
) -> Response {
    let err =
        |status: StatusCode, kind: &str, message: &str| error(status, kind, message, request_id);
    let path = path.trim_end_matches('/');
    let known = matches!(
        (method, path),
        (&Method::POST, "/v1/messages") | (&Method::GET, "/v1/models")
    );
    if !known {
        return err(StatusCode::NOT_FOUND, "not_found_error", "Not found");
    }
    if let Some(resp) = check_auth(state, headers, request_id) {
        return resp;
    }
    if !headers.contains_key("anthropic-version") {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if method == Method::GET {
        return models();
    }
    if raw.is_empty() || json.is_null() {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "There was an issue with the format of your request: the body is not valid JSON",
        );
    }
    if let Err(message) = validate(json) {
        return err(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }
    let model = json["model"].as_str().unwrap_or_default();
    let stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match model {
        MODEL_429 => rate_limited(request_id),
        MODEL_500 => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
        ),
        MODEL_OVERLOADED => err(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        ),
        MODEL_400_CONTEXT => err(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            CONTEXT_ERROR_MESSAGE,
        ),
        MODEL_HANG => {
            wait_for_shutdown(state.shutdown.clone()).await;
            cut_response()
        }
        MODEL_CUT_STREAM if !stream => cut_response(),
        _ if stream => stream_response(state, model),
        _ => message_response(model),
    }
}

/// 401 unless a key is presented and (when the fake has one) matches. Never echoes the key.
fn check_auth(state: &Shared, headers: &HeaderMap, request_id: &str) -> Option<Response> {
    let presented = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let message = match (presented, state.api_key.as_deref()) {
        (None, _) => "x-api-key header is required",
        (Some(k), Some(want)) if k != want => "invalid x-api-key",
        _ => return None,
    };
    Some(error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message,
        request_id,
    ))
}

/// The request checks the real API makes that an adapter could get wrong; the messages are
/// the API's own wording.
fn validate(body: &Value) -> Result<(), String> {
    if !body.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required".to_owned());
    }
    match body.get("max_tokens").and_then(Value::as_u64) {
        None => return Err("max_tokens: Field required".to_owned()),
        Some(0) => return Err("max_tokens: Input should be greater than or equal to 1".to_owned()),
        Some(_) => {}
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err("messages: Field required".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    let mut previous_tool_uses: HashSet<String> = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "user" | "assistant" => {}
            "system" => {
                return Err(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            other => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant' (got {other:?})"
                ));
            }
        }
        let blocks: Vec<Value> = match message.get("content") {
            Some(Value::String(s)) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(items)) if !items.is_empty() => items.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                ));
            }
        };
        let mut tool_uses = HashSet::new();
        let mut seen_other = false;
        for (j, block) in blocks.iter().enumerate() {
            match block.get("type").and_then(Value::as_str).unwrap_or("") {
                "text" => {
                    if block["text"].as_str().unwrap_or("").is_empty() {
                        return Err(format!(
                            "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                        ));
                    }
                    seen_other = true;
                }
                "tool_use" => {
                    if role != "assistant" {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_use blocks are only allowed in assistant messages"
                        ));
                    }
                    if !block.get("input").is_some_and(Value::is_object) {
                        return Err(format!(
                            "messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                        ));
                    }
                    tool_uses.insert(block["id"].as_str().unwrap_or("").to_owned());
                    seen_other = true;
                }
                "tool_result" => {
                    let id = block["tool_use_id"].as_str().unwrap_or("");
                    if role != "user" || !previous_tool_uses.contains(id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    if seen_other {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_result blocks must come first in the user message, before any other content"
                        ));
                    }
                }
                _ => seen_other = true,
            }
        }
        previous_tool_uses = tool_uses;
    }
    Ok(())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, kind: &str, message: &str, request_id: &str) -> Response {
    json_response(
        status,
        &json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }),
    )
}

fn rate_limited(request_id: &str) -> Response {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        RATE_LIMIT_MESSAGE,
        request_id,
    );
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    h.insert(
        "anthropic-ratelimit-requests-limit",
        HeaderValue::from_static("50"),
    );
    h.insert(
        "anthropic-ratelimit-requests-remaining",
        HeaderValue::from_static("0"),
    );
    h.insert(
        "anthropic-ratelimit-requests-reset",
        HeaderValue::from_static("2030-01-01T00:00:07Z"),
    );
    resp
}

fn with_rate_limit_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:01Z"),
        ("anthropic-ratelimit-tokens-limit", "40000"),
        ("anthropic-ratelimit-tokens-remaining", "39000"),
        ("anthropic-ratelimit-tokens-reset", "2030-01-01T00:00:01Z"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

fn models() -> Response {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "data": data,
            "has_more": false,
            "first_id": MODELS.first(),
            "last_id": MODELS.last(),
        }),
    )
}

/// `usage` as the API reports it: the three input counts apart, plus the output.
fn usage(input: u64, cache_write: u64, cache_read: u64, output: u64) -> Value {
    json!({
        "input_tokens": input,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
        "service_tier": "standard",
    })
}

/// The final usage of `model`'s answer.
fn final_usage(model: &str) -> Value {
    match model {
        MODEL_TOOL => usage(TOOL_INPUT_TOKENS, 0, 0, TOOL_OUTPUT_TOKENS),
        MODEL_CACHE => usage(
            CACHE_UNCACHED_TOKENS,
            CACHE_WRITE_TOKENS,
            CACHE_READ_TOKENS,
            OUTPUT_TOKENS,
        ),
        _ => usage(INPUT_TOKENS, 0, 0, OUTPUT_TOKENS),
    }
}

fn message_response(model: &str) -> Response {
    let (content, stop_reason) = if model == MODEL_TOOL {
        let input: Value = serde_json::from_str(TOOL_ARGUMENTS).unwrap_or(Value::Null);
        (
            json!([{"type": "tool_use", "id": new_id("toolu_01"), "name": TOOL_NAME, "input": input}]),
            "tool_use",
        )
    } else {
        (json!([{"type": "text", "text": CONTENT}]), "end_turn")
    };
    with_rate_limit_headers(json_response(
        StatusCode::OK,
        &json!({
            "id": new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": final_usage(model),
        }),
    ))
}

/// One SSE event as the API frames it: an `event:` line naming it, then its JSON.
fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn block_delta(index: u32, delta: Value) -> Bytes {
    sse(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

/// The events of a streamed answer, in the documented order.
fn stream_response(state: &Shared, model: &str) -> Response {
    let full = final_usage(model);
    // message_start carries the input counts and an initial output count; message_delta the
    // cumulative output.
    let mut start_usage = full.clone();
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![sse(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": start_usage,
        }}),
    )];
    let stop_reason = if model == MODEL_TOOL {
        events.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": new_id("toolu_01"), "name": TOOL_NAME, "input": {}
            }}),
        ));
        events.push(sse("ping", &json!({"type": "ping"})));
        events.push(block_delta(
            0,
            json!({"type": "input_json_delta", "partial_json": ""}),
        ));
        for fragment in TOOL_FRAGMENTS {
            events.push(block_delta(
                0,
                json!({"type": "input_json_delta", "partial_json": fragment}),
            ));
        }
        "tool_use"
    } else {
        events.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(sse("ping", &json!({"type": "ping"})));
        let deltas: &[&str] = match model {
            MODEL_CUT_STREAM => &STREAM_DELTAS[..2],
            MODEL_STALL_STREAM | MODEL_STREAM_ERROR => &STREAM_DELTAS[..1],
            _ => &STREAM_DELTAS,
        };
        for d in deltas {
            events.push(block_delta(0, json!({"type": "text_delta", "text": d})));
        }
        "end_turn"
    };

    let end = match model {
        MODEL_CUT_STREAM => StreamEnd::Cut,
        MODEL_STALL_STREAM => StreamEnd::Stall(state.shutdown.clone()),
        MODEL_STREAM_ERROR => {
            let error = sse(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            );
            StreamEnd::Then(vec![error])
        }
        _ => {
            let tail = vec![
                sse(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ),
                sse(
                    "message_delta",
                    &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                        "usage": {"output_tokens": full["output_tokens"]}}),
                ),
                sse("message_stop", &json!({"type": "message_stop"})),
            ];
            StreamEnd::Then(tail)
        }
    };
    let mut resp = Response::new(stream_body(events, end));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_rate_limit_headers(resp)
}

/// A response whose body fails at once: the connection closes without a response.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    fn body(model: &str, stream: bool) -> Value {
        json!({
            "model": model,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": stream,
        })
    }

    async fn post(fake: &FakeAnthropic, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = client()
            .post(format!("{}/messages", fake.base_url()))
            .header("anthropic-version", "2023-06-01")
            .json(body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        req.send().await.expect("request")
    }

    /// (event name, data) of every complete event.
    fn events(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| {
                let name = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .expect("event line")
                    .to_owned();
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("data line");
                (name, serde_json::from_str(data).expect("json data"))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_message_follows_the_documented_shape() {
        let fake = FakeAnthropic::start().await.unwrap();
        assert!(fake.base_url().starts_with("http://127.0.0.1:"));
        let resp = post(&fake, Some("sk-ant-x"), &body("claude-sonnet-4-5", false)).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["request-id"]
                .to_str()
                .unwrap()
                .starts_with("req_")
        );
        assert!(
            resp.headers()
                .contains_key("anthropic-ratelimit-requests-remaining")
        );
        let b: Value = resp.json().await.unwrap();
        assert!(b["id"].as_str().unwrap().starts_with("msg_01"));
        assert_eq!(b["type"], "message");
        assert_eq!(b["role"], "assistant");
        assert_eq!(b["model"], "claude-sonnet-4-5");
        assert_eq!(b["content"], json!([{"type": "text", "text": CONTENT}]));
        assert_eq!(b["stop_reason"], "end_turn");
        assert_eq!(b["usage"]["input_tokens"], 12);
        assert_eq!(b["usage"]["output_tokens"], 5);

        let b: Value = post(&fake, Some("k"), &body(MODEL_TOOL, false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(b["stop_reason"], "tool_use");
        assert!(
            b["content"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("toolu_01")
        );
        assert_eq!(b["content"][0]["input"].to_string(), TOOL_ARGUMENTS);
        let reqs = fake.message_requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].header("x-api-key"), Some("sk-ant-x"));
        assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
    }

    #[tokio::test]
    async fn streams_have_the_full_event_sequence() {
        let fake = FakeAnthropic::start().await.unwrap();
        let resp = post(&fake, Some("k"), &body("m", true)).await;
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let evs = events(&resp.text().await.unwrap());
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &evs {
            assert_eq!(data["type"], name.as_str(), "data.type names the event");
        }
        assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 12);
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, CONTENT);
        assert_eq!(evs[9].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(evs[9].1["usage"]["output_tokens"], 5);

        let evs = events(
            &post(&fake, Some("k"), &body(MODEL_TOOL, true))
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(evs[1].1["content_block"]["type"], "tool_use");
        let args: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(args, TOOL_ARGUMENTS);
        let last_delta = &evs[evs.len() - 2].1;
        assert_eq!(last_delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(last_delta["usage"]["output_tokens"], 10);

        let evs = events(
            &post(&fake, Some("k"), &body(MODEL_STREAM_ERROR, true))
                .await
                .text()
                .await
                .unwrap(),
        );
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "overloaded_error");
    }

    #[tokio::test]
    async fn cut_stream_drops_the_connection() {
        let fake = FakeAnthropic::start().await.unwrap();
        let resp = post(&fake, Some("k"), &body(MODEL_CUT_STREAM, true)).await;
        let mut stream = resp.bytes_stream();
        let mut seen = Vec::new();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(b) => seen.extend_from_slice(&b),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
        let text = String::from_utf8(seen).unwrap();
        assert!(text.contains("\"Hello\"") && text.contains("\" from\""));
        assert!(!text.contains("message_stop"));
    }

    #[tokio::test]
    async fn auth_version_and_validation_errors_are_native() {
        let fake = FakeAnthropic::start_with_key("sk-ant-right").await.unwrap();
        let resp = post(&fake, Some("sk-ant-wrong"), &body("m", false)).await;
        assert_eq!(resp.status(), 401);
        let text = resp.text().await.unwrap();
        assert!(!text.contains("sk-ant-wrong"));
        let b: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(b["type"], "error");
        assert_eq!(b["error"]["type"], "authentication_error");
        assert!(b["request_id"].as_str().unwrap().starts_with("req_"));
        assert_eq!(post(&fake, None, &body("m", false)).await.status(), 401);

        let resp = client()
            .post(format!("{}/messages", fake.base_url()))
            .header("x-api-key", "sk-ant-right")
            .json(&body("m", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);

        let bad = |b: Value| {
            let fake = &fake;
            async move {
                let resp = post(fake, Some("sk-ant-right"), &b).await;
                assert_eq!(resp.status(), 400, "{b}");
                let v: Value = resp.json().await.unwrap();
                v["error"]["message"].as_str().unwrap().to_owned()
            }
        };
        let mut b = body("m", false);
        b.as_object_mut().unwrap().remove("max_tokens");
        assert!(bad(b).await.contains("max_tokens"));
        let mut b = body("m", false);
        b["messages"] = json!([{"role": "system", "content": "x"}]);
        assert!(bad(b).await.contains("top-level `system`"));
        let mut b = body("m", false);
        b["messages"] = json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "r"}, {"type": "tool_result", "tool_use_id": "t1"}]}
        ]);
        assert!(bad(b.clone()).await.contains("must come first"));
        b["messages"][2]["content"] = json!([{"type": "tool_result", "tool_use_id": "t2"}]);
        assert!(bad(b.clone()).await.contains("corresponding `tool_use`"));
        b["messages"][2]["content"] = json!([{"type": "tool_result", "tool_use_id": "t1"}]);
        assert_eq!(post(&fake, Some("sk-ant-right"), &b).await.status(), 200);
        assert_eq!(
            fake.requests().len(),
            8,
            "refused requests are recorded too"
        );
    }

    #[tokio::test]
    async fn error_models_answer_native_errors() {
        let fake = FakeAnthropic::start().await.unwrap();
        let resp = post(&fake, Some("k"), &body(MODEL_429, false)).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["error"]["type"], "rate_limit_error");

        let resp = post(&fake, Some("k"), &body(MODEL_OVERLOADED, true)).await;
        assert_eq!(resp.status().as_u16(), 529);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["error"]["type"], "overloaded_error");

        let resp = post(&fake, Some("k"), &body(MODEL_400_CONTEXT, false)).await;
        assert_eq!(resp.status(), 400);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["error"]["message"], CONTEXT_ERROR_MESSAGE);

        let resp = post(&fake, Some("k"), &body(MODEL_500, false)).await;
        assert_eq!(resp.status(), 500);

        let models: Value = client()
            .get(format!("{}/models", fake.base_url()))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(models["data"].as_array().unwrap().len(), MODELS.len());
    }
}
