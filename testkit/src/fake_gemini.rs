//! A fake Google Gemini API (`generativelanguage.googleapis.com/v1beta`) for tests.
//!
//! It serves, on `127.0.0.1:0`, what the real service documents, so the gateway's Gemini adapter
//! is exercised against Google's wire format rather than against our assumptions:
//! - `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`
//!   (<https://ai.google.dev/api/generate-content>): `GenerateContentResponse` bodies with
//!   `candidates[].content.parts`, `finishReason`, `usageMetadata`, `modelVersion` and
//!   `responseId`. With `?alt=sse` the stream is server-sent events, each `data:` line a whole
//!   `GenerateContentResponse`, events separated by `\r\n\r\n` as the real endpoint sends them,
//!   usage on every chunk (the last one complete) and `finishReason` on the last; without
//!   `alt=sse` the chunks come as one JSON array, the API's default.
//! - function calling (<https://ai.google.dev/gemini-api/docs/function-calling>): a whole
//!   `functionCall {name, args}` part in one chunk, carrying a `thoughtSignature` as Gemini 3
//!   models do (<https://ai.google.dev/gemini-api/docs/thought-signatures>).
//! - `POST /v1beta/models/{model}:batchEmbedContents` and `:embedContent`
//!   (<https://ai.google.dev/api/embeddings>): `{"embeddings":[{"values":[…]}]}`, no token
//!   usage (the real API reports none), at most 100 requests per batch.
//! - errors (<https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes>):
//!   `{"error":{"code","message","status","details"}}`. A wrong key is a **400**
//!   `INVALID_ARGUMENT` with an `ErrorInfo` detail of reason `API_KEY_INVALID`, a missing key a
//!   403 `PERMISSION_DENIED`, exactly as the real API answers.
//!
//! Like the real API, request bodies are validated: an unknown field (say `additionalProperties`
//! in a function's parameter schema, or a snake_case OpenAI field at the top level) is a 400
//! "Invalid JSON payload received. Unknown name …", empty `contents`/`parts`, a role other
//! than `user`/`model`, an `OBJECT` schema without properties, non-object function args or
//! responses are 400s too. The real API also accepts snake_case names (`system_instruction`);
//! the fake accepts only the camelCase JSON names the documentation uses.
//!
//! Behaviour is chosen by the model in the URL (see the `MODEL_*` constants); any other model
//! answers [`CONTENT`] with 12 prompt / 5 candidate tokens. The key is read from
//! `x-goog-api-key` or the `key` query parameter. Every request is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::fake_server::{
    self, FakeServer, Received, StreamEnd, cut_response, lock, stream_body, wait_for_shutdown,
};

/// The text every successful answer returns.
pub const CONTENT: &str = "Hello from the fake upstream";
/// The streamed text, one per chunk; they concatenate to [`CONTENT`].
pub const STREAM_DELTAS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];
pub const PROMPT_TOKENS: u64 = 12;
pub const CANDIDATES_TOKENS: u64 = 5;
/// Usage of a [`MODEL_TOOL`] answer.
pub const TOOL_PROMPT_TOKENS: u64 = 20;
pub const TOOL_CANDIDATES_TOKENS: u64 = 10;

/// The function [`MODEL_TOOL`] calls, and its arguments as JSON text.
pub const TOOL_NAME: &str = "get_weather";
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
/// The `thoughtSignature` on [`MODEL_TOOL`]'s function call (opaque base64, as Gemini sends).
pub const THOUGHT_SIGNATURE: &str = "Q2lRQjBlMmtmYWtlLXNpZ25hdHVyZS0wMDE=";

/// Calls [`TOOL_NAME`] with [`TOOL_ARGUMENTS`] (finish `STOP`, usage 20/10).
pub const MODEL_TOOL: &str = "fake-tool";
/// Answers normally but never reports `usageMetadata`.
pub const MODEL_NO_USAGE: &str = "fake-no-usage";
/// The prompt is blocked: `promptFeedback.blockReason = SAFETY`, no candidates.
pub const MODEL_BLOCKED: &str = "fake-blocked";
/// Streaming: "Hello", " from", then the connection drops (no `finishReason`). Non-streaming:
/// the connection closes without a response.
pub const MODEL_CUT_STREAM: &str = "fake-cut-stream";
/// Accepts the request and never answers (until the fake is dropped).
pub const MODEL_HANG: &str = "fake-hang";
/// Streaming: "Hello", then nothing while the connection stays open.
pub const MODEL_STALL_STREAM: &str = "fake-stall-stream";
/// 429 `RESOURCE_EXHAUSTED` with `retry-after: 7` and a `RetryInfo` of 7s.
pub const MODEL_429: &str = "fake-429";
/// 429 `RESOURCE_EXHAUSTED` with only the `RetryInfo` detail (`retryDelay: "7s"`), no header.
pub const MODEL_429_RETRY_INFO: &str = "fake-429-retry-info";
/// 500 `INTERNAL`.
pub const MODEL_500: &str = "fake-500";
/// 400 `INVALID_ARGUMENT`: "The input token count (…) exceeds the maximum number of tokens
/// allowed (…)."
pub const MODEL_400_CONTEXT: &str = "fake-400-context";

/// Every model `GET /v1beta/models` lists. Any other name behaves like a normal model.
pub const MODELS: [&str; 11] = [
    "gemini-2.5-flash",
    MODEL_TOOL,
    MODEL_NO_USAGE,
    MODEL_BLOCKED,
    MODEL_CUT_STREAM,
    MODEL_HANG,
    MODEL_STALL_STREAM,
    MODEL_429,
    MODEL_429_RETRY_INFO,
    MODEL_500,
    MODEL_400_CONTEXT,
];

/// Dimensions of the fake's embeddings (fewer with `outputDimensionality`).
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// Most requests one `batchEmbedContents` call takes.
pub const MAX_EMBED_BATCH: usize = 100;

/// The deterministic embedding of `text`: [`EMBEDDING_DIMENSIONS`] values in [-1, 1) derived
/// from an FNV-1a hash, so tests can predict what the gateway returns.
pub fn embedding_for(text: &str) -> Vec<f32> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..EMBEDDING_DIMENSIONS)
        .map(|i| {
            let byte = (hash >> ((i % 8) * 8)) & 0xff;
            // Multiples of 1/128: exact in f32 and f64, so comparisons after JSON round trips
            // need no tolerance.
            (byte as f32 - 128.0) / 128.0
        })
        .collect()
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query, e.g. `/v1beta/models/gemini-2.5-flash:generateContent`.
    pub path: String,
    /// The query string, if any (`alt=sse`).
    pub query: Option<String>,
    /// Header names lowercased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        fake_server::header(&self.headers, name)
    }

    /// The `{model}:{method}` target of a model call, e.g. `("fake-tool", "generateContent")`.
    pub fn model_and_method(&self) -> Option<(&str, &str)> {
        self.path.strip_prefix("/v1beta/models/")?.rsplit_once(':')
    }
}

/// A running fake. Dropping it stops the server and releases held-open requests.
pub struct FakeGemini {
    server: FakeServer<Shared>,
}

impl std::fmt::Debug for FakeGemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug("FakeGemini", f)
    }
}

struct Shared {
    api_key: Option<String>,
    requests: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl FakeGemini {
    /// A fake that accepts any key (or none).
    pub async fn start() -> anyhow::Result<FakeGemini> {
        Self::start_inner(None).await
    }

    /// A fake that refuses every request not carrying `api_key` (400 `API_KEY_INVALID` for a
    /// wrong key, 403 `PERMISSION_DENIED` for none).
    pub async fn start_with_key(api_key: &str) -> anyhow::Result<FakeGemini> {
        Self::start_inner(Some(api_key.to_owned())).await
    }

    async fn start_inner(api_key: Option<String>) -> anyhow::Result<FakeGemini> {
        let server = FakeServer::start(
            |shutdown| Shared {
                api_key,
                requests: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                shutdown,
            },
            handle,
        )
        .await?;
        Ok(FakeGemini { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1beta`, the form a provider's `base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr())
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests).clone()
    }

    /// Requests to `generateContent` / `streamGenerateContent`.
    pub fn generate_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.model_and_method()
                    .is_some_and(|(_, m)| m.ends_with("enerateContent"))
            })
            .collect()
    }

    /// Requests to `batchEmbedContents` / `embedContent`.
    pub fn embed_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.model_and_method()
                    .is_some_and(|(_, m)| m.contains("mbedContent"))
            })
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.server.state().requests).clear();
    }
}

async fn handle(State(state): State<Arc<Shared>>, req: Request) -> Response {
    let Received { parts, bytes, json } = fake_server::receive(req).await;
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    lock(&state.requests).push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: fake_server::header_map(&parts.headers),
        body: json.clone(),
    });
    let response_id = format!("fake{:020}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let request = Incoming {
        method: &parts.method,
        path: &path,
        query: query.as_deref(),
        headers: &parts.headers,
        json: &json,
        raw: &bytes,
        response_id: &response_id,
    };
    route(&state, &request).await
}

struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    json: &'a Value,
    raw: &'a Bytes,
    response_id: &'a str,
}

impl Incoming<'_> {
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

async fn route(state: &Shared, req: &Incoming<'_>) -> Response {
    let Some(rest) = req.path.strip_prefix("/v1beta/") else {
        return not_found_page();
    };
    if rest == "models" && req.method == Method::GET {
        if let Some(refused) = check_auth(state, req) {
            return refused;
        }
        return models();
    }
    let Some((model, method)) = rest
        .strip_prefix("models/")
        .and_then(|m| m.rsplit_once(':'))
    else {
        return not_found_page();
    };
    if req.method != Method::POST {
        return not_found_page();
    }
    let known = matches!(
        method,
        "generateContent" | "streamGenerateContent" | "batchEmbedContents" | "embedContent"
    );
    if !known || model.is_empty() {
        return not_found_page();
    }
    if let Some(refused) = check_auth(state, req) {
        return refused;
    }
    if !req.raw.is_empty() && req.json.is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received. Unexpected token.",
            "INVALID_ARGUMENT",
            vec![],
        );
    }
    match model {
        MODEL_429 => return rate_limited(model, true),
        MODEL_429_RETRY_INFO => return rate_limited(model, false),
        MODEL_500 => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
                "INTERNAL",
                vec![],
            );
        }
        MODEL_400_CONTEXT => {
            return error(
                StatusCode::BAD_REQUEST,
                "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
                "INVALID_ARGUMENT",
                vec![],
            );
        }
        MODEL_HANG => {
            wait_for_shutdown(state.shutdown.clone()).await;
            return cut_response();
        }
        _ => {}
    }
    match method {
        "batchEmbedContents" => batch_embed(model, req.json),
        "embedContent" => embed_one(req.json),
        _ => {
            if let Err(message) = validate_generate(req.json) {
                return invalid_argument(&message);
            }
            let stream = method == "streamGenerateContent";
            if model == MODEL_CUT_STREAM && !stream {
                return cut_response();
            }
            if stream {
                let sse = req.query_param("alt") == Some("sse");
                stream_response(state, model, req.response_id, sse)
            } else {
                json_response(StatusCode::OK, &answer(model, req.response_id))
            }
        }
    }
}

/// The real API answers unknown paths with an HTML 404 page, not JSON.
fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        "<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title><p><b>404.</b> That’s an error.</p></html>",
    )
        .into_response()
}

fn check_auth(state: &Shared, req: &Incoming<'_>) -> Option<Response> {
    let want = state.api_key.as_deref()?;
    let presented = req
        .headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.query_param("key"));
    match presented {
        Some(k) if k == want => None,
        Some(_) => Some(error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
            "INVALID_ARGUMENT",
            vec![
                json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": { "service": "generativelanguage.googleapis.com" }
                }),
                json!({
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key."
                }),
            ],
        )),
        None => Some(error(
            StatusCode::FORBIDDEN,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
            vec![],
        )),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// Google's error envelope (`google.rpc.Status` as JSON).
fn error(status: StatusCode, message: &str, code_name: &str, details: Vec<Value>) -> Response {
    let mut error = json!({ "code": status.as_u16(), "message": message, "status": code_name });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json_response(status, &json!({ "error": error }))
}

/// A 400 for an invalid request body, with the `BadRequest` detail the real API adds.
fn invalid_argument(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "INVALID_ARGUMENT",
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "description": message }]
        })],
    )
}

fn rate_limited(model: &str, with_header: bool) -> Response {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        "RESOURCE_EXHAUSTED",
        vec![
            json!({
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": { "location": "global", "model": model },
                    "quotaValue": "10"
                }]
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"
                }]
            }),
            json!({ "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s" }),
        ],
    );
    if with_header {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    }
    resp
}

fn models() -> Response {
    let models: Vec<Value> = MODELS
        .iter()
        .map(|m| {
            json!({
                "name": format!("models/{m}"),
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "countTokens", "batchEmbedContents"]
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

// ---------------------------------------------------------------------------------------------
// Request validation (what the real API refuses)
// ---------------------------------------------------------------------------------------------

const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];
const PART_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
];
const GENERATION_CONFIG_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
];
const SCHEMA_FIELDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

fn unknown_name(name: &str, at: Option<&str>) -> String {
    match at {
        Some(at) => format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ),
        None => {
            format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
        }
    }
}

fn check_fields(
    obj: &Map<String, Value>,
    allowed: &[&str],
    at: Option<&str>,
) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(unknown_name(k, at)),
        None => Ok(()),
    }
}

fn validate_generate(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("Invalid JSON payload received. Expected an object.".to_owned());
    };
    check_fields(obj, REQUEST_FIELDS, None)?;
    let contents = obj
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified\n")?;
    for (i, content) in contents.iter().enumerate() {
        validate_content(content, &format!("contents[{i}]"), true)?;
    }
    if let Some(system) = obj.get("systemInstruction") {
        validate_content(system, "system_instruction", false)?;
    }
    if let Some(config) = obj.get("generationConfig") {
        let config = config
            .as_object()
            .ok_or("Invalid JSON payload received. 'generation_config' must be an object.")?;
        check_fields(config, GENERATION_CONFIG_FIELDS, Some("generation_config"))?;
        if let Some(schema) = config.get("responseSchema") {
            validate_schema(schema, "generation_config.response_schema")?;
        }
    }
    for (t, tool) in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let declarations = tool
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (d, declaration) in declarations.enumerate() {
            let at = format!("tools[{t}].function_declarations[{d}]");
            let declaration = declaration
                .as_object()
                .ok_or_else(|| format!("Invalid JSON payload received at '{at}'."))?;
            check_fields(
                declaration,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "behavior",
                    "response",
                ],
                Some(&at),
            )?;
            if declaration
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!(
                    "* GenerateContentRequest.{at}.name: Name cannot be empty.\n"
                ));
            }
            if let Some(parameters) = declaration.get("parameters") {
                validate_schema(parameters, &format!("{at}.parameters"))?;
            }
        }
    }
    if let Some(mode) = body.pointer("/toolConfig/functionCallingConfig/mode")
        && !matches!(mode.as_str(), Some("AUTO" | "ANY" | "NONE" | "VALIDATED"))
    {
        return Err(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' ({mode})"
        ));
    }
    Ok(())
}

fn validate_content(content: &Value, at: &str, needs_role: bool) -> Result<(), String> {
    let obj = content
        .as_object()
        .ok_or_else(|| format!("Invalid JSON payload received at '{at}'."))?;
    check_fields(obj, &["role", "parts"], Some(at))?;
    match obj.get("role").and_then(Value::as_str) {
        Some("user" | "model") => {}
        None if !needs_role => {}
        _ => return Err("Please use a valid role: user, model.".to_owned()),
    }
    let parts = obj
        .get("parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            format!("* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n")
        })?;
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{j}]");
        let part = part
            .as_object()
            .ok_or_else(|| format!("Invalid JSON payload received at '{at}'."))?;
        check_fields(part, PART_FIELDS, Some(&at))?;
        if let Some(call) = part.get("functionCall")
            && !call.get("args").is_none_or(Value::is_object)
        {
            return Err(format!(
                "Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"
            ));
        }
        if let Some(response) = part.get("functionResponse")
            && !response.get("response").is_some_and(Value::is_object)
        {
            return Err(format!(
                "Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct)"
            ));
        }
    }
    Ok(())
}

fn validate_schema(schema: &Value, at: &str) -> Result<(), String> {
    let obj = schema
        .as_object()
        .ok_or_else(|| format!("Invalid JSON payload received at '{at}'."))?;
    check_fields(obj, SCHEMA_FIELDS, Some(at))?;
    let is_object = obj
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("object"));
    let properties = obj.get("properties").and_then(Value::as_object);
    if is_object && properties.is_none_or(Map::is_empty) {
        return Err(format!(
            "* GenerateContentRequest.{at}.properties: should be non-empty for OBJECT type\n"
        ));
    }
    for (name, property) in properties.into_iter().flatten() {
        validate_schema(property, &format!("{at}.properties[{name}]"))?;
    }
    if let Some(items) = obj.get("items") {
        validate_schema(items, &format!("{at}.items"))?;
    }
    for (i, member) in obj
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_schema(member, &format!("{at}.any_of[{i}]"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

fn usage(prompt: u64, candidates: Option<u64>) -> Value {
    let mut u = json!({
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + candidates.unwrap_or(0),
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": prompt }],
    });
    if let Some(c) = candidates {
        u["candidatesTokenCount"] = json!(c);
    }
    u
}

fn candidate(parts: Value, finish: Option<&str>) -> Value {
    let mut c = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
    if let Some(f) = finish {
        c["finishReason"] = json!(f);
    }
    c
}

fn response(candidates: Value, usage: Option<Value>, model: &str, response_id: &str) -> Value {
    let mut r =
        json!({ "candidates": candidates, "modelVersion": model, "responseId": response_id });
    if let Some(u) = usage {
        r["usageMetadata"] = u;
    }
    r
}

fn tool_part() -> Value {
    let args: Value = serde_json::from_str(TOOL_ARGUMENTS).unwrap_or(Value::Null);
    json!({
        "functionCall": { "name": TOOL_NAME, "args": args },
        "thoughtSignature": THOUGHT_SIGNATURE,
    })
}

fn blocked(model: &str, response_id: &str) -> Value {
    json!({
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [
                { "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE" },
                { "category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE" },
                { "category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE" },
                { "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH" }
            ]
        },
        "usageMetadata": usage(PROMPT_TOKENS, None),
        "modelVersion": model,
        "responseId": response_id,
    })
}

/// A whole `generateContent` answer.
fn answer(model: &str, response_id: &str) -> Value {
    match model {
        MODEL_TOOL => response(
            json!([candidate(json!([tool_part()]), Some("STOP"))]),
            Some(usage(TOOL_PROMPT_TOKENS, Some(TOOL_CANDIDATES_TOKENS))),
            model,
            response_id,
        ),
        MODEL_BLOCKED => blocked(model, response_id),
        _ => {
            let mut c = candidate(json!([{ "text": CONTENT }]), Some("STOP"));
            c["avgLogprobs"] = json!(-0.0841);
            response(
                json!([c]),
                (model != MODEL_NO_USAGE).then(|| usage(PROMPT_TOKENS, Some(CANDIDATES_TOKENS))),
                model,
                response_id,
            )
        }
    }
}

/// The chunks of a streamed answer, in order.
fn chunks(model: &str, response_id: &str) -> Vec<Value> {
    match model {
        MODEL_TOOL => vec![answer(model, response_id)],
        MODEL_BLOCKED => vec![blocked(model, response_id)],
        _ => {
            let deltas: &[&str] = match model {
                MODEL_CUT_STREAM => &STREAM_DELTAS[..2],
                MODEL_STALL_STREAM => &STREAM_DELTAS[..1],
                _ => &STREAM_DELTAS,
            };
            let last = STREAM_DELTAS.len() - 1;
            deltas
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let finish = (i == last).then_some("STOP");
                    // Usage on every chunk, the candidate count growing; the last one is final.
                    let running = (i as u64 + 1).min(CANDIDATES_TOKENS);
                    let u = (model != MODEL_NO_USAGE).then(|| usage(PROMPT_TOKENS, Some(running)));
                    response(
                        json!([candidate(json!([{ "text": d }]), finish)]),
                        u,
                        model,
                        response_id,
                    )
                })
                .collect()
        }
    }
}

fn stream_response(state: &Shared, model: &str, response_id: &str, sse: bool) -> Response {
    let chunks = chunks(model, response_id);
    if !sse {
        // Without `alt=sse` the API streams one JSON array of responses.
        return json_response(StatusCode::OK, &Value::Array(chunks));
    }
    let events: Vec<Bytes> = chunks
        .iter()
        .map(|c| Bytes::from(format!("data: {c}\r\n\r\n")))
        .collect();
    let end = match model {
        MODEL_CUT_STREAM => StreamEnd::Cut,
        MODEL_STALL_STREAM => StreamEnd::Stall(state.shutdown.clone()),
        _ => StreamEnd::Then(Vec::new()),
    };
    let mut resp = Response::new(stream_body(events, end));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

/// The text of an embed request's `content`, or the 400 message.
fn embed_text(request: &Value, at: &str) -> Result<String, String> {
    let parts = request
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("* {at}.content.parts: contents.parts must not be empty.\n"))?;
    Ok(parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect())
}

fn dimensions(request: &Value) -> usize {
    request
        .get("outputDimensionality")
        .and_then(Value::as_u64)
        .map_or(EMBEDDING_DIMENSIONS, |d| {
            usize::try_from(d)
                .unwrap_or(EMBEDDING_DIMENSIONS)
                .min(EMBEDDING_DIMENSIONS)
        })
}

fn embedding(text: &str, dims: usize) -> Value {
    let mut values = embedding_for(text);
    values.truncate(dims);
    json!({ "values": values })
}

fn batch_embed(model: &str, body: &Value) -> Response {
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return invalid_argument(
            "* BatchEmbedContentsRequest.requests: requests is not specified\n",
        );
    };
    if requests.len() > MAX_EMBED_BATCH {
        return invalid_argument(
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
        );
    }
    let want = format!("models/{model}");
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let at = format!("BatchEmbedContentsRequest.requests[{i}]");
        if request.get("model").and_then(Value::as_str) != Some(want.as_str()) {
            return invalid_argument(&format!(
                "* {at}.model: model in the request does not match the model in the URL ({want})\n"
            ));
        }
        match embed_text(request, &at) {
            Ok(text) => embeddings.push(embedding(&text, dimensions(request))),
            Err(message) => return invalid_argument(&message),
        }
    }
    json_response(StatusCode::OK, &json!({ "embeddings": embeddings }))
}

fn embed_one(body: &Value) -> Response {
    match embed_text(body, "EmbedContentRequest") {
        Ok(text) => json_response(
            StatusCode::OK,
            &json!({ "embedding": embedding(&text, dimensions(body)) }),
        ),
        Err(message) => invalid_argument(&message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::Duration;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    fn hello() -> Value {
        json!({ "contents": [{ "role": "user", "parts": [{ "text": "Say hello" }] }] })
    }

    async fn post(
        fake: &FakeGemini,
        target: &str,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = client()
            .post(format!("{}/models/{target}", fake.base_url()))
            .json(body);
        if let Some(k) = key {
            req = req.header("x-goog-api-key", k);
        }
        req.send().await.expect("request")
    }

    #[tokio::test]
    async fn generate_content_follows_the_documented_shape() {
        let fake = FakeGemini::start().await.unwrap();
        assert!(fake.base_url().ends_with("/v1beta"));
        let resp = post(
            &fake,
            "gemini-2.5-flash:generateContent",
            Some("k"),
            &hello(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["candidates"][0]["content"]["parts"][0]["text"],
            CONTENT
        );
        assert_eq!(body["candidates"][0]["content"]["role"], "model");
        assert_eq!(body["candidates"][0]["finishReason"], "STOP");
        assert_eq!(body["usageMetadata"]["promptTokenCount"], 12);
        assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 5);
        assert_eq!(body["usageMetadata"]["totalTokenCount"], 17);
        assert_eq!(body["modelVersion"], "gemini-2.5-flash");
        assert!(body["responseId"].is_string());
        let reqs = fake.requests();
        assert_eq!(
            reqs[0].model_and_method(),
            Some(("gemini-2.5-flash", "generateContent"))
        );
        assert_eq!(reqs[0].header("x-goog-api-key"), Some("k"));
    }

    #[tokio::test]
    async fn streams_sse_with_crlf_framing_and_finish_on_the_last_chunk() {
        let fake = FakeGemini::start().await.unwrap();
        let resp = client()
            .post(format!(
                "{}/models/m:streamGenerateContent?alt=sse",
                fake.base_url()
            ))
            .json(&hello())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        assert!(
            text.starts_with("data: {") && text.ends_with("}\r\n\r\n"),
            "{text}"
        );
        let events = crate::sse::data_events(&text);
        assert_eq!(events.len(), 5);
        let chunks: Vec<Value> = events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let joined: String = chunks
            .iter()
            .map(|c| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(joined, CONTENT);
        assert!(
            chunks[..4]
                .iter()
                .all(|c| c["candidates"][0].get("finishReason").is_none())
        );
        assert_eq!(chunks[4]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[4]["usageMetadata"]["candidatesTokenCount"], 5);
        assert_eq!(fake.requests()[0].query.as_deref(), Some("alt=sse"));

        // Without alt=sse: one JSON array.
        let body: Value = post(&fake, "m:streamGenerateContent", None, &hello())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body.as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn tool_model_calls_the_function_whole() {
        let fake = FakeGemini::start().await.unwrap();
        let body: Value = post(
            &fake,
            &format!("{MODEL_TOOL}:generateContent"),
            None,
            &hello(),
        )
        .await
        .json()
        .await
        .unwrap();
        let part = &body["candidates"][0]["content"]["parts"][0];
        assert_eq!(part["functionCall"]["name"], TOOL_NAME);
        assert_eq!(part["functionCall"]["args"].to_string(), TOOL_ARGUMENTS);
        assert_eq!(part["thoughtSignature"], THOUGHT_SIGNATURE);
        assert_eq!(body["usageMetadata"]["promptTokenCount"], 20);
        assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 10);
    }

    #[tokio::test]
    async fn refuses_what_the_real_api_refuses() {
        let fake = FakeGemini::start().await.unwrap();
        let check = |body: Value, needle: &'static str| {
            let fake = &fake;
            async move {
                let resp = post(fake, "m:generateContent", None, &body).await;
                assert_eq!(resp.status(), 400, "{body}");
                let err: Value = resp.json().await.unwrap();
                assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
                let message = err["error"]["message"].as_str().unwrap();
                assert!(message.contains(needle), "{message}");
            }
        };
        check(json!({"contents": []}), "contents is not specified").await;
        check(
            json!({"contents": [{"role": "user", "parts": []}]}),
            "must not be empty",
        )
        .await;
        check(
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            "valid role",
        )
        .await;
        check(
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "max_tokens": 5}),
            "Unknown name \"max_tokens\"",
        )
        .await;
        check(
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                   "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}]}]}),
            "Unknown name \"additionalProperties\"",
        )
        .await;
        check(
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                   "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {}}}]}]}),
            "should be non-empty for OBJECT type",
        )
        .await;
        check(
            json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "x"}}]}]}),
            "function_response.response",
        )
        .await;
    }

    #[tokio::test]
    async fn keys_are_checked_like_the_real_api() {
        let fake = FakeGemini::start_with_key("AIza-upstream-secret")
            .await
            .unwrap();
        let resp = post(&fake, "m:generateContent", Some("AIza-wrong"), &hello()).await;
        assert_eq!(resp.status(), 400);
        let text = resp.text().await.unwrap();
        assert!(!text.contains("AIza-wrong"));
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["details"][0]["reason"], "API_KEY_INVALID");
        let resp = post(&fake, "m:generateContent", None, &hello()).await;
        assert_eq!(resp.status(), 403);
        let resp = post(
            &fake,
            "m:generateContent",
            Some("AIza-upstream-secret"),
            &hello(),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let resp = client()
            .post(format!(
                "{}/models/m:generateContent?key=AIza-upstream-secret",
                fake.base_url()
            ))
            .json(&hello())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test]
    async fn errors_by_model() {
        let fake = FakeGemini::start().await.unwrap();
        let resp = post(
            &fake,
            &format!("{MODEL_429}:generateContent"),
            None,
            &hello(),
        )
        .await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(err["error"]["details"][2]["retryDelay"], "7s");
        let resp = post(
            &fake,
            &format!("{MODEL_429_RETRY_INFO}:generateContent"),
            None,
            &hello(),
        )
        .await;
        assert!(resp.headers().get("retry-after").is_none());
        let resp = post(
            &fake,
            &format!("{MODEL_500}:generateContent"),
            None,
            &hello(),
        )
        .await;
        assert_eq!(resp.status(), 500);
        let resp = post(
            &fake,
            &format!("{MODEL_400_CONTEXT}:generateContent"),
            None,
            &hello(),
        )
        .await;
        assert_eq!(resp.status(), 400);
        let err: Value = resp.json().await.unwrap();
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("input token count")
        );
        let resp = post(&fake, "m:nope", None, &hello()).await;
        assert_eq!(resp.status(), 404);
    }

    #[tokio::test]
    async fn embeddings_are_deterministic() {
        let fake = FakeGemini::start().await.unwrap();
        let body = json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 4}
        ]});
        let out: Value = post(&fake, "text-embedding-004:batchEmbedContents", None, &body)
            .await
            .json()
            .await
            .unwrap();
        let a: Vec<f32> = serde_json::from_value(out["embeddings"][0]["values"].clone()).unwrap();
        assert_eq!(a, embedding_for("a"));
        assert_eq!(out["embeddings"][1]["values"].as_array().unwrap().len(), 4);
        assert_ne!(embedding_for("a"), embedding_for("b"));
        assert!(out.get("usageMetadata").is_none());

        let wrong =
            json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]});
        let resp = post(&fake, "text-embedding-004:batchEmbedContents", None, &wrong).await;
        assert_eq!(resp.status(), 400);
    }
}
