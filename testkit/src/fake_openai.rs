//! A fake OpenAI-compatible upstream (and Azure OpenAI) for tests and benchmarks.
//!
//! It serves `POST /v1/chat/completions`, `POST /v1/embeddings` and `GET /v1/models` on
//! `127.0.0.1:0`, plus Azure OpenAI's deployment routes, and follows the documented wire
//! formats, so the gateway's adapters are exercised against what the real services send, not
//! against what we assume they send:
//! - request and response bodies: <https://platform.openai.com/docs/api-reference/chat/create>
//!   (`chat.completion`, ids `chatcmpl-…`, `created` in Unix seconds, `system_fingerprint`,
//!   `usage` with `prompt_tokens`/`completion_tokens`/`total_tokens`; tool calls as
//!   `message.tool_calls[]` of `{"id":"call_…","type":"function","function":{"name","arguments"}}`
//!   with `finish_reason: "tool_calls"` and `content: null`);
//! - streaming: <https://platform.openai.com/docs/api-reference/chat-streaming>
//!   (`text/event-stream`, each event framed as `data: {json}\n\n`, `chat.completion.chunk`
//!   objects, the first delta carrying the role, a final chunk with `finish_reason`, then — only
//!   when the request set `stream_options.include_usage` — a chunk with `choices: []` and the
//!   usage while every earlier chunk carries `"usage": null`, and finally `data: [DONE]`).
//!   Streamed tool calls arrive as `delta.tool_calls[]` entries keyed by `index`: the first
//!   carries `id`, `type`, `function.name` and `arguments: ""`, the next ones only argument
//!   fragments (<https://platform.openai.com/docs/guides/function-calling#streaming>);
//! - embeddings: <https://platform.openai.com/docs/api-reference/embeddings/create>
//!   (`input` a string, strings, token ids or arrays of token ids; answer
//!   `{"object":"list","data":[{"object":"embedding","index","embedding"}],"model","usage":{"prompt_tokens","total_tokens"}}`,
//!   `encoding_format: "base64"` giving little-endian f32s in base64, which the official SDKs
//!   ask for by default);
//! - errors: <https://platform.openai.com/docs/guides/error-codes>
//!   (`{"error":{"message","type","param","code"}}` with 401 for a bad key, 429 with
//!   `retry-after` and the `x-ratelimit-*` headers, 500 for a server error, 400 for an invalid
//!   request);
//! - Azure OpenAI: <https://learn.microsoft.com/en-us/azure/ai-services/openai/reference>
//!   (`POST /openai/deployments/{deployment}/chat/completions?api-version=…` and
//!   `…/embeddings?api-version=…`, key in the `api-key` header; the deployment name picks the
//!   behaviour as the model does on the OpenAI routes; answers carry Azure's
//!   `prompt_filter_results` / `content_filter_results`, and a stream starts with Azure's
//!   `choices: []` prompt-filter chunk; errors in Azure's shapes: 401
//!   `{"error":{"code":"401","message":…}}`, 404 `Resource not found` without `api-version`,
//!   404 `DeploymentNotFound`, 429 with `retry-after`, 400 `content_filter` with `innererror`,
//!   <https://learn.microsoft.com/en-us/azure/ai-services/openai/concepts/content-filter>).
//!
//! Every response carries the headers the real API sends and clients look at: `x-request-id`,
//! `openai-processing-ms`, `openai-version`.
//!
//! Behaviour is chosen by the `model` the fake receives (see the `MODEL_*` constants), so a test
//! can make the upstream misbehave even when it drives it through separate gateway processes.
//! Every request is recorded (method, path, lowercased headers, JSON body; the query string
//! separately, see [`FakeOpenAi::azure_requests`]) for assertions, unless recording is turned
//! off for load tests with [`FakeOpenAiBuilder::record_requests`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::fake_server::{
    self, FakeServer, Received, StreamEnd, cut_response, lock, stream_body, wait_for_shutdown,
};

/// The content every successful completion returns.
pub const CONTENT: &str = "Hello from the fake upstream";
/// The streamed content deltas; they concatenate to [`CONTENT`].
pub const STREAM_DELTAS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];
/// Usage reported for every successful completion (unless the model says otherwise).
pub const PROMPT_TOKENS: u64 = 12;
pub const COMPLETION_TOKENS: u64 = 5;
pub const TOTAL_TOKENS: u64 = PROMPT_TOKENS + COMPLETION_TOKENS;

/// Behaves normally but never reports usage, streaming or not.
pub const MODEL_NO_USAGE: &str = "fake-no-usage";
/// Streaming: the role chunk, "Hello", " from", then the connection drops (no finish, no
/// `[DONE]`). Non-streaming: the connection closes without a response.
pub const MODEL_CUT_STREAM: &str = "fake-cut-stream";
/// Accepts the request and never answers (until the fake is dropped).
pub const MODEL_HANG: &str = "fake-hang";
/// Streaming: the role chunk and "Hello", then nothing more while the connection stays open.
pub const MODEL_STALL_STREAM: &str = "fake-stall-stream";
/// Answers like a normal model, after [`SLOW_DELAY`] (a provider's generation time, for load
/// and fairness tests).
pub const MODEL_SLOW: &str = "fake-slow";
/// How long [`MODEL_SLOW`] takes to answer.
pub const SLOW_DELAY: std::time::Duration = std::time::Duration::from_millis(250);
/// Held at the fake's gate until [`FakeOpenAi::open_gate`]: a non-streaming request is answered
/// (normally) once the gate opens; a stream sends the role chunk and the first delta at once and
/// the rest (finish, usage when asked, `[DONE]`) once the gate opens. Each arrival is counted
/// ([`FakeOpenAi::wait_gated`]), so a test knows its requests are in flight without sleeping.
/// Dropping the fake cuts requests still held.
pub const MODEL_GATED: &str = "fake-gated";
/// 429 with `retry-after: 7`.
pub const MODEL_429: &str = "fake-429";
/// 500 server error.
pub const MODEL_500: &str = "fake-500";
/// 400 `context_length_exceeded`.
pub const MODEL_400_CONTEXT: &str = "fake-400-context";

/// Calls the tool [`TOOL_NAME`] with [`TOOL_ARGUMENTS`] (finish `tool_calls`, usage
/// [`TOOL_PROMPT_TOKENS`]/[`TOOL_COMPLETION_TOKENS`]); streamed in [`TOOL_ARGUMENT_FRAGMENTS`].
pub const MODEL_TOOL: &str = "fake-tool";
/// Azure routes only: 400 `content_filter` with Azure's `innererror`.
pub const MODEL_CONTENT_FILTER: &str = "fake-content-filter";
/// Azure routes only: this deployment does not exist (404 `DeploymentNotFound`).
pub const AZURE_MISSING_DEPLOYMENT: &str = "fake-no-deployment";

/// The tool [`MODEL_TOOL`] calls.
pub const TOOL_NAME: &str = "get_weather";
/// Its arguments, exactly as sent (the JSON text).
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
/// The streamed argument fragments; they concatenate to [`TOOL_ARGUMENTS`].
pub const TOOL_ARGUMENT_FRAGMENTS: [&str; 3] =
    [r#"{"city":"#, r#""Paris","#, r#""unit":"celsius"}"#];
pub const TOOL_PROMPT_TOKENS: u64 = 20;
pub const TOOL_COMPLETION_TOKENS: u64 = 10;

/// An embeddings model whose vectors reflect the words of the input (bag of words, hashed
/// into [`WORD_EMBEDDING_DIMENSIONS`] buckets), so texts sharing most words are close in cosine
/// similarity, as real embedding models make paraphrases close. For the semantic cache's tests.
pub const MODEL_EMBED_WORDS: &str = "fake-embed-words";
/// Length of a [`MODEL_EMBED_WORDS`] vector.
pub const WORD_EMBEDDING_DIMENSIONS: usize = 64;

/// Length of every embedding vector.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// Prompt tokens reported per embeddings input.
pub const EMBEDDING_TOKENS_PER_INPUT: u64 = 3;

/// Every model name `GET /v1/models` lists. Any other name behaves like a normal model.
pub const MODELS: [&str; 9] = [
    "gpt-4o-mini",
    MODEL_NO_USAGE,
    MODEL_CUT_STREAM,
    MODEL_HANG,
    MODEL_STALL_STREAM,
    MODEL_429,
    MODEL_500,
    MODEL_400_CONTEXT,
    MODEL_TOOL,
];

/// What the fake puts in `system_fingerprint`, a constant like a real backend configuration.
pub const SYSTEM_FINGERPRINT: &str = "fp_fake0001";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names lowercased (as HTTP/1.1 and HTTP/2 treat them); repeated headers are joined
    /// with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        fake_server::header(&self.headers, name)
    }

    /// The bearer token from `Authorization`, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }
}

/// A request to one of the Azure routes, with what the URL said.
#[derive(Debug, Clone)]
pub struct AzureRequest {
    /// The `{deployment}` path segment.
    pub deployment: String,
    /// `chat/completions` or `embeddings`.
    pub operation: String,
    /// The `api-version` query parameter, if any.
    pub api_version: Option<String>,
    pub request: RecordedRequest,
}

/// Configures a [`FakeOpenAi`] before starting it.
#[derive(Debug, Clone)]
pub struct FakeOpenAiBuilder {
    api_key: Option<String>,
    record: bool,
}

impl Default for FakeOpenAiBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            record: true,
        }
    }
}

impl FakeOpenAiBuilder {
    /// Require `Authorization: Bearer <api_key>` (on the Azure routes: `api-key: <api_key>`);
    /// anything else gets 401.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Whether to keep every request for [`FakeOpenAi::requests`] (default true). Turn it off for
    /// load tests so memory stays flat; [`FakeOpenAi::request_count`] still counts.
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Binds `127.0.0.1:0` and serves in a background task of the current tokio runtime.
    pub async fn start(self) -> anyhow::Result<FakeOpenAi> {
        let server = FakeServer::start(
            |shutdown| Shared {
                api_key: self.api_key,
                record: self.record,
                requests: Mutex::new(Vec::new()),
                count: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                shutdown,
                gate: watch::Sender::new(false),
                gated: watch::Sender::new(0),
            },
            handle,
        )
        .await?;
        Ok(FakeOpenAi { server })
    }
}

/// A running fake upstream. Dropping it stops accepting connections and releases requests that
/// are held open (`fake-hang`, `fake-stall-stream`) by dropping their connections.
pub struct FakeOpenAi {
    server: FakeServer<Shared>,
}

impl std::fmt::Debug for FakeOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug("FakeOpenAi", f)
    }
}

impl FakeOpenAi {
    /// A fake that accepts any bearer key (or none).
    pub async fn start() -> anyhow::Result<FakeOpenAi> {
        FakeOpenAiBuilder::default().start().await
    }

    /// A fake that answers 401 `invalid_api_key` unless `Authorization: Bearer <api_key>`.
    pub async fn start_with_key(api_key: &str) -> anyhow::Result<FakeOpenAi> {
        FakeOpenAiBuilder::default().api_key(api_key).start().await
    }

    pub fn builder() -> FakeOpenAiBuilder {
        FakeOpenAiBuilder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/v1`, the form a provider's `base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr())
    }

    /// Every request received so far, in arrival order (empty if recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests)
            .iter()
            .map(|r| r.request.clone())
            .collect()
    }

    /// Requests received so far to `POST /v1/chat/completions`.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests_to("/v1/chat/completions")
    }

    /// Requests received so far to `POST /v1/embeddings`.
    pub fn embedding_requests(&self) -> Vec<RecordedRequest> {
        self.requests_to("/v1/embeddings")
    }

    fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests)
            .iter()
            .filter(|r| r.request.method == "POST" && r.request.path == path)
            .map(|r| r.request.clone())
            .collect()
    }

    /// Requests received so far to the Azure deployment routes (whatever their outcome).
    pub fn azure_requests(&self) -> Vec<AzureRequest> {
        lock(&self.server.state().requests)
            .iter()
            .filter_map(|r| {
                let rest = r.request.path.strip_prefix("/openai/deployments/")?;
                let (deployment, operation) = rest.split_once('/')?;
                Some(AzureRequest {
                    deployment: deployment.to_owned(),
                    operation: operation.to_owned(),
                    api_version: r
                        .query
                        .as_deref()
                        .and_then(|q| query_param(q, "api-version")),
                    request: r.request.clone(),
                })
            })
            .collect()
    }

    /// `http://127.0.0.1:PORT`, the form an Azure OpenAI provider's endpoint (`base_url`) takes.
    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// How many requests arrived, recorded or not.
    pub fn request_count(&self) -> u64 {
        self.server.state().count.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests (the count keeps running).
    pub fn clear_requests(&self) {
        lock(&self.server.state().requests).clear();
    }

    /// How many [`MODEL_GATED`] requests arrived so far (held or released).
    pub fn gated_arrivals(&self) -> usize {
        *self.server.state().gated.borrow()
    }

    /// Waits until at least `n` [`MODEL_GATED`] requests arrived, or fails after `timeout`.
    pub async fn wait_gated(&self, n: usize, timeout: std::time::Duration) -> anyhow::Result<()> {
        let mut rx = self.server.state().gated.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|arrived| *arrived >= n)).await {
            Ok(Ok(_)) => Ok(()),
            _ => anyhow::bail!(
                "{} of {n} gated requests arrived within {timeout:?}",
                self.gated_arrivals()
            ),
        }
    }

    /// Opens [`MODEL_GATED`]'s gate: held requests finish, later ones pass at once.
    pub fn open_gate(&self) {
        self.server.state().gate.send_replace(true);
    }
}

/// Waits until `gate` opens; false when the fake is dropped first (the request is then cut).
async fn pass_gate(gate: watch::Receiver<bool>, shutdown: watch::Receiver<bool>) -> bool {
    let mut gate = gate;
    tokio::select! {
        opened = gate.wait_for(|open| *open) => opened.is_ok(),
        () = wait_for_shutdown(shutdown) => false,
    }
}

struct Shared {
    api_key: Option<String>,
    record: bool,
    requests: Mutex<Vec<Recorded>>,
    count: AtomicU64,
    next_id: AtomicU64,
    /// Flips to true when the [`FakeOpenAi`] is dropped; held-open requests wait on it.
    shutdown: watch::Receiver<bool>,
    /// [`MODEL_GATED`]'s gate: true once open.
    gate: watch::Sender<bool>,
    /// How many [`MODEL_GATED`] requests arrived so far.
    gated: watch::Sender<usize>,
}

/// A recorded request and its query string (kept apart so [`RecordedRequest`] stays as other
/// fakes build it).
struct Recorded {
    request: RecordedRequest,
    query: Option<String>,
}

async fn handle(State(state): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let request_id = format!("req_{:032x}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let Received { parts, bytes, json } = fake_server::receive(req).await;
    state.count.fetch_add(1, Ordering::Relaxed);
    if state.record {
        lock(&state.requests).push(Recorded {
            request: RecordedRequest {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                headers: fake_server::header_map(&parts.headers),
                body: json.clone(),
            },
            query: parts.uri.query().map(str::to_owned),
        });
    }

    let incoming = Incoming {
        method: &parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        json: &json,
        raw: &bytes,
    };
    let mut response = route(&state, &incoming).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    headers.insert(
        "openai-processing-ms",
        HeaderValue::from(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
    );
    headers.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    response
}

/// One request, as `route` reads it.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    json: &'a Value,
    raw: &'a Bytes,
}

/// Which API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api<'a> {
    Models,
    Chat,
    Embeddings,
    AzureChat { deployment: &'a str },
    AzureEmbeddings { deployment: &'a str },
}

impl<'a> Api<'a> {
    fn of(method: &Method, path: &'a str) -> Option<Self> {
        match (method, path) {
            (&Method::GET, "/v1/models") => Some(Api::Models),
            (&Method::POST, "/v1/chat/completions") => Some(Api::Chat),
            (&Method::POST, "/v1/embeddings") => Some(Api::Embeddings),
            (&Method::POST, _) => {
                let (deployment, operation) =
                    path.strip_prefix("/openai/deployments/")?.split_once('/')?;
                if deployment.is_empty() {
                    return None;
                }
                match operation {
                    "chat/completions" => Some(Api::AzureChat { deployment }),
                    "embeddings" => Some(Api::AzureEmbeddings { deployment }),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn is_azure(self) -> bool {
        matches!(self, Api::AzureChat { .. } | Api::AzureEmbeddings { .. })
    }
}

/// Which service's response shapes to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Azure,
}

async fn route(state: &Shared, req: &Incoming<'_>) -> Response {
    let path = req.path.trim_end_matches('/');
    let Some(api) = Api::of(req.method, path) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({} {path})", req.method),
            "invalid_request_error",
            None,
            None,
        );
    };
    let flavor = if api.is_azure() {
        Flavor::Azure
    } else {
        Flavor::OpenAi
    };
    if api.is_azure() {
        // Azure answers a missing api-version as an unknown resource.
        if req
            .query
            .and_then(|q| query_param(q, "api-version"))
            .is_none()
        {
            return azure_error(StatusCode::NOT_FOUND, "404", "Resource not found");
        }
        if let Some(resp) = check_azure_auth(state, req.headers) {
            return resp;
        }
    } else if let Some(resp) = check_auth(state, req.headers) {
        return resp;
    }
    if api == Api::Models {
        return models();
    }
    if !req.raw.is_empty() && req.json.is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
            None,
        );
    }
    // On Azure the deployment in the URL picks the model; the body's `model` is ignored.
    let model = match api {
        Api::AzureChat { deployment } | Api::AzureEmbeddings { deployment } => {
            if deployment == AZURE_MISSING_DEPLOYMENT {
                return azure_error(
                    StatusCode::NOT_FOUND,
                    "DeploymentNotFound",
                    "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
                );
            }
            deployment
        }
        _ => match req.json.get("model").and_then(Value::as_str) {
            Some(model) => model,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "you must provide a model parameter",
                    "invalid_request_error",
                    None,
                    None,
                );
            }
        },
    };
    match api {
        Api::Embeddings | Api::AzureEmbeddings { .. } => {
            embeddings(state, model, req.json, flavor).await
        }
        _ => chat(state, model, req.json, flavor).await,
    }
}

/// The behaviours every endpoint shares, chosen by model: errors and misbehaviour.
async fn misbehave(state: &Shared, model: &str, flavor: Flavor) -> Option<Response> {
    Some(match model {
        MODEL_429 => rate_limited(flavor),
        MODEL_500 => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        MODEL_400_CONTEXT => error(
            StatusCode::BAD_REQUEST,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        MODEL_CONTENT_FILTER if flavor == Flavor::Azure => content_filtered(),
        MODEL_HANG => {
            wait_for_shutdown(state.shutdown.clone()).await;
            cut_response()
        }
        _ => return None,
    })
}

async fn chat(state: &Shared, model: &str, json: &Value, flavor: Flavor) -> Response {
    if !json.get("messages").is_some_and(Value::is_array) {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    }
    let stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(response) = misbehave(state, model, flavor).await {
        return response;
    }
    if model == MODEL_SLOW {
        tokio::time::sleep(SLOW_DELAY).await;
    }
    if model == MODEL_GATED {
        state.gated.send_modify(|arrived| *arrived += 1);
        if !stream && !pass_gate(state.gate.subscribe(), state.shutdown.clone()).await {
            return cut_response();
        }
    }
    match model {
        MODEL_CUT_STREAM if !stream => cut_response(),
        _ if stream => stream_response(state, model, include_usage, flavor),
        _ => completion(model, model != MODEL_NO_USAGE, flavor),
    }
}

/// 401 unless the fake was started without a key or the bearer matches. The message never
/// echoes the presented key (the real API shows a masked form; we show none, so a test scanning
/// logs for secrets cannot trip over the fake's own output).
fn check_auth(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let want = state.api_key.as_deref()?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(k) if k == want => None,
        Some(_) => Some(error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
    }
}

/// Azure's key check: the `api-key` header must match (when the fake has a key).
fn check_azure_auth(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let want = state.api_key.as_deref()?;
    let presented = headers.get("api-key").and_then(|v| v.to_str().ok());
    if presented == Some(want) {
        return None;
    }
    Some(azure_error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
    ))
}

/// The value of `name` in a query string (no percent-decoding: the values we read have none).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn completion_id() -> String {
    // Real ids are `chatcmpl-` followed by 29 alphanumerics; the simple form of a UUID is close.
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn tool_call_id() -> String {
    // Real ids are `call_` followed by 24 alphanumerics.
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// Token counts a model reports.
fn usage_of(model: &str) -> (u64, u64) {
    if model == MODEL_TOOL {
        (TOOL_PROMPT_TOKENS, TOOL_COMPLETION_TOKENS)
    } else {
        (PROMPT_TOKENS, COMPLETION_TOKENS)
    }
}

fn usage_json(model: &str) -> Value {
    let (prompt, completion) = usage_of(model);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

/// Azure's own errors (auth, routing, quota): `{"error":{"code","message"}}`.
fn azure_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn rate_limited(flavor: Flavor) -> Response {
    if flavor == Flavor::Azure {
        let mut resp = azure_error(
            StatusCode::TOO_MANY_REQUESTS,
            "429",
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 7 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        return resp;
    }
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit reached for requests",
        "requests",
        None,
        Some("rate_limit_exceeded"),
    );
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
    h.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("0"),
    );
    h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("7s"));
    h.insert(
        "x-ratelimit-limit-tokens",
        HeaderValue::from_static("150000"),
    );
    h.insert(
        "x-ratelimit-remaining-tokens",
        HeaderValue::from_static("149984"),
    );
    h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6ms"));
    resp
}

/// Azure's content filter refusing the prompt: 400, code `content_filter`, with `innererror`.
fn content_filtered() -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": null,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "self_harm": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"},
                    "violence": {"filtered": true, "severity": "high"}
                }
            }
        }}),
    )
}

/// Azure's content-filter annotations: nothing filtered.
fn content_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": content_filter_results()}])
}

fn models() -> Response {
    let created = now_unix();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "testkit"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn completion(model: &str, with_usage: bool, flavor: Flavor) -> Response {
    let (message, finish) = if model == MODEL_TOOL {
        (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": tool_call_id(),
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}
                }],
                "refusal": null,
                "annotations": []
            }),
            "tool_calls",
        )
    } else {
        (
            json!({"role": "assistant", "content": CONTENT, "refusal": null, "annotations": []}),
            "stop",
        )
    };
    let mut body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish
        }],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT
    });
    if with_usage && let Some(obj) = body.as_object_mut() {
        obj.insert("usage".to_owned(), usage_json(model));
    }
    if flavor == Flavor::Azure {
        body["prompt_filter_results"] = prompt_filter_results();
        body["choices"][0]["content_filter_results"] = content_filter_results();
    }
    json_response(StatusCode::OK, &body)
}

/// A response whose body fails at once: the server drops the connection before the buffered
/// status line is ever flushed, so the client sees the connection close without a response.
fn sse_event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The chunks of a streamed completion, in the documented order.
fn stream_response(state: &Shared, model: &str, include_usage: bool, flavor: Flavor) -> Response {
    let id = completion_id();
    let created = now_unix();
    let report_usage = include_usage && model != MODEL_NO_USAGE;
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        // Documented: with include_usage every chunk but the last carries `"usage": null`.
        if report_usage && let Some(obj) = c.as_object_mut() {
            obj.insert("usage".to_owned(), Value::Null);
        }
        sse_event(&c)
    };

    let mut events = Vec::new();
    if flavor == Flavor::Azure {
        // Azure opens every stream with the prompt's filter results and no choices.
        events.push(sse_event(&json!({
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": prompt_filter_results()
        })));
    }
    let finish = if model == MODEL_TOOL {
        events.push(chunk(
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "index": 0,
                    "id": tool_call_id(),
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": ""}
                }],
                "refusal": null
            }),
            None,
        ));
        for fragment in TOOL_ARGUMENT_FRAGMENTS {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                None,
            ));
        }
        "tool_calls"
    } else {
        events.push(chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ));
        let deltas: &[&str] = match model {
            MODEL_CUT_STREAM => &STREAM_DELTAS[..2],
            MODEL_STALL_STREAM | MODEL_GATED => &STREAM_DELTAS[..1],
            _ => &STREAM_DELTAS,
        };
        for d in deltas {
            events.push(chunk(json!({"content": d}), None));
        }
        "stop"
    };

    let end = match model {
        MODEL_CUT_STREAM => StreamEnd::Cut,
        MODEL_STALL_STREAM => StreamEnd::Stall(state.shutdown.clone()),
        _ => {
            let mut tail = Vec::new();
            if model == MODEL_GATED {
                for d in &STREAM_DELTAS[1..] {
                    tail.push(chunk(json!({"content": d}), None));
                }
            }
            tail.push(chunk(json!({}), Some(finish)));
            if report_usage {
                tail.push(sse_event(&json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [],
                    "usage": usage_json(model)
                })));
            }
            tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
            if model == MODEL_GATED {
                StreamEnd::Gated {
                    gate: pass_gate(state.gate.subscribe(), state.shutdown.clone()).boxed(),
                    tail,
                }
            } else {
                StreamEnd::Then(tail)
            }
        }
    };
    let mut resp = Response::new(stream_body(events, end));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `POST /v1/embeddings` (and Azure's): one deterministic vector per input, usage
/// [`EMBEDDING_TOKENS_PER_INPUT`] per input (none for [`MODEL_NO_USAGE`]).
async fn embeddings(state: &Shared, model: &str, json: &Value, flavor: Flavor) -> Response {
    let Some(inputs) = json.get("input").and_then(embedding_inputs) else {
        return error(
            StatusCode::BAD_REQUEST,
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            "invalid_request_error",
            None,
            None,
        );
    };
    let base64 = match json.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."
                ),
                "invalid_request_error",
                Some("encoding_format"),
                Some("invalid_value"),
            );
        }
    };
    if let Some(response) = misbehave(state, model, flavor).await {
        return response;
    }
    if model == MODEL_CUT_STREAM {
        return cut_response();
    }
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let vector = if model == MODEL_EMBED_WORDS {
                word_embedding(key)
            } else {
                fake_embedding(key).to_vec()
            };
            let embedding = if base64 {
                Value::String(base64_f32(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut body = json!({"object": "list", "data": data, "model": model});
    if model != MODEL_NO_USAGE {
        let tokens = EMBEDDING_TOKENS_PER_INPUT * inputs.len() as u64;
        body["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    json_response(StatusCode::OK, &body)
}

/// The inputs of an embeddings request as the keys their vectors derive from: each string, or
/// each token array as its ids joined by commas. `None` for an empty or ill-typed `input`.
fn embedding_inputs(input: &Value) -> Option<Vec<String>> {
    let token_key = |ids: &[Value]| -> Option<String> {
        let ids: Option<Vec<String>> = ids
            .iter()
            .map(|v| v.as_u64().map(|n| n.to_string()))
            .collect();
        ids.filter(|ids| !ids.is_empty()).map(|ids| ids.join(","))
    };
    let keys = match input {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        Value::Array(items) if items.iter().all(Value::is_number) => vec![token_key(items)?],
        Value::Array(items) => items
            .iter()
            .map(|v| token_key(v.as_array()?))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    (!keys.is_empty()).then_some(keys)
}

/// The deterministic vector of one input: each component a multiple of 1/256 in [-1, 1] (so it
/// is exact as an f32 and prints the same everywhere), derived from an FNV-1a hash of the input.
/// Token-id inputs are keyed by their ids joined with commas (`[1,2]` → `"1,2"`).
pub fn fake_embedding(input: &str) -> [f32; EMBEDDING_DIMENSIONS] {
    let mut out = [0.0_f32; EMBEDDING_DIMENSIONS];
    for (j, slot) in out.iter_mut().enumerate() {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in input.bytes().chain([0xff, j as u8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let step = (hash % 513) as i16 - 256;
        *slot = f32::from(step) / 256.0;
    }
    out
}

/// The [`MODEL_EMBED_WORDS`] vector of `input`: one count per hashed lowercase word.
pub fn word_embedding(input: &str) -> Vec<f32> {
    let mut out = vec![0.0_f32; WORD_EMBEDDING_DIMENSIONS];
    for word in input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out[(hash % WORD_EMBEDDING_DIMENSIONS as u64) as usize] += 1.0;
    }
    out
}

/// OpenAI's `base64` encoding of a vector: the little-endian f32 bytes, standard base64.
pub fn base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

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

    fn chat(model: &str, stream: bool, include_usage: bool) -> Value {
        let mut body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello"}],
        });
        if stream {
            body["stream"] = json!(true);
        }
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    async fn post(fake: &FakeOpenAi, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = client()
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.expect("request")
    }

    fn assert_openai_headers(resp: &reqwest::Response) {
        let h = resp.headers();
        assert!(
            h["x-request-id"].to_str().unwrap().starts_with("req_"),
            "{h:?}"
        );
        h["openai-processing-ms"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .expect("processing ms is an integer");
    }

    #[tokio::test]
    async fn non_streaming_completion_follows_the_documented_shape() {
        let fake = FakeOpenAi::start().await.unwrap();
        assert!(fake.base_url().starts_with("http://127.0.0.1:"));
        assert!(fake.base_url().ends_with("/v1"));
        let resp = post(
            &fake,
            Some("sk-anything"),
            &chat("gpt-4o-mini", false, false),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_openai_headers(&resp);
        let body: Value = resp.json().await.unwrap();
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(body["object"], "chat.completion");
        assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["system_fingerprint"], SYSTEM_FINGERPRINT);
        assert_eq!(body["choices"][0]["index"], 0);
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["message"]["content"], CONTENT);
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], 12);
        assert_eq!(body["usage"]["completion_tokens"], 5);
        assert_eq!(body["usage"]["total_tokens"], 17);

        let reqs = fake.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/v1/chat/completions");
        assert_eq!(reqs[0].bearer(), Some("sk-anything"));
        assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));
        assert_eq!(reqs[0].body["model"], "gpt-4o-mini");
        assert_eq!(fake.request_count(), 1);
    }

    #[tokio::test]
    async fn no_usage_model_omits_usage() {
        let fake = FakeOpenAi::start().await.unwrap();
        let body: Value = post(&fake, None, &chat(MODEL_NO_USAGE, false, false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], CONTENT);
        assert!(body.get("usage").is_none());

        let resp = post(&fake, None, &chat(MODEL_NO_USAGE, true, true)).await;
        let events = crate::sse::data_events(&resp.text().await.unwrap());
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        for e in &events[..events.len() - 1] {
            let v: Value = serde_json::from_str(e).unwrap();
            assert!(v.get("usage").is_none(), "{e}");
            assert_eq!(v["choices"].as_array().unwrap().len(), 1);
        }
    }

    fn parse_chunks(events: &[String]) -> Vec<Value> {
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).expect("chunk is JSON"))
            .collect()
    }

    fn content_of(chunks: &[Value]) -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn streaming_without_usage() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat("my-model", true, false)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        assert_openai_headers(&resp);
        let text = resp.text().await.unwrap();
        // Framing: every event is exactly `data: …` followed by a blank line.
        assert!(text.starts_with("data: {"));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let chunks = parse_chunks(&crate::sse::data_events(&text));
        assert_eq!(chunks.len(), 7, "role + 5 deltas + finish");
        let id = chunks[0]["id"].as_str().unwrap();
        assert!(id.starts_with("chatcmpl-"));
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], id, "one id for the whole stream");
            assert_eq!(c["model"], "my-model");
            assert!(c.get("usage").is_none());
            assert!(c["created"].is_u64());
            assert_eq!(c["system_fingerprint"], SYSTEM_FINGERPRINT);
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
        assert_eq!(content_of(&chunks), CONTENT);
        assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
        assert!(
            chunks[..6]
                .iter()
                .all(|c| c["choices"][0]["finish_reason"].is_null())
        );
    }

    #[tokio::test]
    async fn streaming_with_include_usage() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat("my-model", true, true)).await;
        let chunks = parse_chunks(&crate::sse::data_events(&resp.text().await.unwrap()));
        assert_eq!(chunks.len(), 8, "role + 5 deltas + finish + usage");
        for c in &chunks[..7] {
            assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
        }
        let last = &chunks[7];
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 12);
        assert_eq!(last["usage"]["completion_tokens"], 5);
        assert_eq!(last["usage"]["total_tokens"], 17);
        assert_eq!(content_of(&chunks), CONTENT);
        assert_eq!(
            fake.chat_requests()[0].body["stream_options"]["include_usage"],
            true
        );
    }

    #[tokio::test]
    async fn cut_stream_drops_the_connection_mid_stream() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat(MODEL_CUT_STREAM, true, true)).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let mut seen = Vec::new();
        let mut failed = false;
        while let Some(item) = body.next().await {
            match item {
                Ok(b) => seen.extend_from_slice(&b),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the body must end in an error, not a clean end");
        let text = String::from_utf8(seen).unwrap();
        let events = crate::sse::data_events(&text);
        assert_eq!(events.len(), 3, "{text}");
        assert!(!text.contains("[DONE]"));
        assert!(!text.contains("finish_reason\":\"stop"));
        let chunks: Vec<Value> = events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(content_of(&chunks), "Hello from");

        // Non-streaming: the connection closes without any response.
        let err = client()
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(&chat(MODEL_CUT_STREAM, false, false))
            .send()
            .await
            .expect_err("no response");
        assert!(!err.is_timeout(), "{err}");
    }

    #[tokio::test]
    async fn stall_stream_and_hang_hold_the_connection_open() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat(MODEL_STALL_STREAM, true, false)).await;
        let mut body = resp.bytes_stream();
        let mut seen = Vec::new();
        while crate::sse::data_events(&String::from_utf8_lossy(&seen)).len() < 2 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("first chunks arrive")
                .expect("not ended")
                .expect("no error");
            seen.extend_from_slice(&chunk);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), body.next())
                .await
                .is_err(),
            "nothing more is sent"
        );

        let hang = client()
            .post(format!("{}/chat/completions", fake.base_url()))
            .timeout(Duration::from_millis(300))
            .json(&chat(MODEL_HANG, false, false))
            .send()
            .await
            .expect_err("never answers");
        assert!(hang.is_timeout(), "{hang}");

        // Dropping the fake releases the stalled stream.
        drop(fake);
        let end = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("released on drop");
        assert!(matches!(end, Some(Err(_)) | None), "{end:?}");
    }

    #[tokio::test]
    async fn rate_limit_carries_retry_after_and_ratelimit_headers() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat(MODEL_429, false, false)).await;
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_openai_headers(&resp);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        );
    }

    #[tokio::test]
    async fn server_and_context_errors() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = post(&fake, None, &chat(MODEL_500, true, false)).await;
        assert_eq!(resp.status(), 500);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert!(body["error"]["code"].is_null());
        assert!(body["error"]["param"].is_null());

        let resp = post(&fake, None, &chat(MODEL_400_CONTEXT, false, false)).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["code"], "context_length_exceeded");

        let resp = post(&fake, None, &json!({"model": "x"})).await;
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn wrong_or_missing_key_is_refused_with_401() {
        let fake = FakeOpenAi::start_with_key("sk-upstream-secret")
            .await
            .unwrap();
        let resp = post(&fake, Some("sk-wrong"), &chat("gpt-4o-mini", false, false)).await;
        assert_eq!(resp.status(), 401);
        assert_openai_headers(&resp);
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("sk-wrong"),
            "the presented key is not echoed"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let resp = post(&fake, None, &chat("gpt-4o-mini", false, false)).await;
        assert_eq!(resp.status(), 401);

        let resp = post(
            &fake,
            Some("sk-upstream-secret"),
            &chat("gpt-4o-mini", false, false),
        )
        .await;
        assert_eq!(resp.status(), 200);
        // Refused requests are recorded too.
        assert_eq!(fake.requests().len(), 3);
    }

    #[tokio::test]
    async fn models_and_unknown_routes() {
        let fake = FakeOpenAi::start().await.unwrap();
        let body: Value = client()
            .get(format!("{}/models", fake.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["object"], "list");
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&MODEL_429) && ids.contains(&MODEL_CUT_STREAM));

        let resp = client()
            .post(format!("{}/nope", fake.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn recording_can_be_turned_off() {
        let fake = FakeOpenAi::builder()
            .record_requests(false)
            .start()
            .await
            .unwrap();
        post(&fake, None, &chat("m", false, false)).await;
        assert!(fake.requests().is_empty());
        assert_eq!(fake.request_count(), 1);
    }

    #[tokio::test]
    async fn tool_model_calls_get_weather_whole_and_streamed() {
        let fake = FakeOpenAi::start().await.unwrap();
        let body: Value = post(&fake, None, &chat(MODEL_TOOL, false, false))
            .await
            .json()
            .await
            .unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        let call = &choice["message"]["tool_calls"][0];
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], TOOL_NAME);
        assert_eq!(call["function"]["arguments"], TOOL_ARGUMENTS);
        assert_eq!(body["usage"]["prompt_tokens"], TOOL_PROMPT_TOKENS);
        assert_eq!(body["usage"]["completion_tokens"], TOOL_COMPLETION_TOKENS);
        assert_eq!(body["usage"]["total_tokens"], 30);

        let resp = post(&fake, None, &chat(MODEL_TOOL, true, true)).await;
        let chunks = parse_chunks(&crate::sse::data_events(&resp.text().await.unwrap()));
        // start + 3 fragments + finish + usage
        assert_eq!(chunks.len(), 6, "{chunks:#?}");
        let first = &chunks[0]["choices"][0]["delta"];
        assert_eq!(first["role"], "assistant");
        let start = &first["tool_calls"][0];
        assert_eq!(start["index"], 0);
        assert!(start["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(start["type"], "function");
        assert_eq!(start["function"]["name"], TOOL_NAME);
        assert_eq!(start["function"]["arguments"], "");
        let args: String = chunks[1..4]
            .iter()
            .map(|c| {
                let call = &c["choices"][0]["delta"]["tool_calls"][0];
                assert_eq!(call["index"], 0);
                assert!(call.get("id").is_none());
                call["function"]["arguments"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(args, TOOL_ARGUMENTS);
        assert_eq!(TOOL_ARGUMENT_FRAGMENTS.concat(), TOOL_ARGUMENTS);
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["total_tokens"], 30);
    }

    async fn embed(fake: &FakeOpenAi, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}/embeddings", fake.base_url()))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    #[tokio::test]
    async fn embeddings_are_deterministic_with_usage_per_input() {
        let fake = FakeOpenAi::start().await.unwrap();
        let resp = embed(
            &fake,
            &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_openai_headers(&resp);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], "text-embedding-3-small");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 6, "total_tokens": 6})
        );
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, (item, text)) in data.iter().zip(["a", "b"]).enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            let v: Vec<f32> = item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(v, fake_embedding(text));
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        }
        assert_ne!(fake_embedding("a"), fake_embedding("b"));

        // Token ids and base64.
        let body: Value = embed(
            &fake,
            &json!({"model": "m", "input": [[1, 2], [3]], "encoding_format": "base64"}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            body["data"][0]["embedding"],
            base64_f32(&fake_embedding("1,2"))
        );
        assert_eq!(body["usage"]["prompt_tokens"], 6);
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 1.0]), "AACAPwAAgD8=");

        let body: Value = embed(&fake, &json!({"model": MODEL_NO_USAGE, "input": "x"}))
            .await
            .json()
            .await
            .unwrap();
        assert!(body.get("usage").is_none());
        assert_eq!(body["data"].as_array().unwrap().len(), 1);

        for bad in [json!(""), json!([]), json!(5), json!([1, "a"]), json!([[]])] {
            let resp = embed(&fake, &json!({"model": "m", "input": bad})).await;
            assert_eq!(resp.status(), 400, "{bad}");
        }
        assert_eq!(
            embed(&fake, &json!({"model": MODEL_429, "input": "x"}))
                .await
                .status(),
            429
        );
        assert_eq!(fake.embedding_requests().len(), 9);
    }

    fn azure_url(fake: &FakeOpenAi, deployment: &str, op: &str, version: Option<&str>) -> String {
        let mut url = format!(
            "{}/openai/deployments/{deployment}/{op}",
            fake.azure_endpoint()
        );
        if let Some(v) = version {
            url.push_str(&format!("?api-version={v}"));
        }
        url
    }

    #[tokio::test]
    async fn azure_routes_check_version_key_and_deployment() {
        let fake = FakeOpenAi::start_with_key("azure-key-123").await.unwrap();
        let send = |url: String, key: Option<&'static str>, body: Value| {
            let mut req = client().post(url).json(&body);
            if let Some(k) = key {
                req = req.header("api-key", k);
            }
            req.send()
        };
        let ok = send(
            azure_url(&fake, "gpt4o-prod", "chat/completions", Some("2024-10-21")),
            Some("azure-key-123"),
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
        assert_eq!(ok.status(), 200);
        let body: Value = ok.json().await.unwrap();
        assert_eq!(body["model"], "gpt4o-prod");
        assert_eq!(body["choices"][0]["message"]["content"], CONTENT);
        assert!(body["prompt_filter_results"].is_array());

        let no_version = send(
            azure_url(&fake, "gpt4o-prod", "chat/completions", None),
            Some("azure-key-123"),
            json!({"messages": []}),
        )
        .await
        .unwrap();
        assert_eq!(no_version.status(), 404);

        let bearer = client()
            .post(azure_url(
                &fake,
                "d",
                "chat/completions",
                Some("2024-10-21"),
            ))
            .bearer_auth("azure-key-123")
            .json(&json!({"messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 401, "Azure wants api-key, not Bearer");
        let body: Value = bearer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "401");

        let missing = send(
            azure_url(
                &fake,
                AZURE_MISSING_DEPLOYMENT,
                "embeddings",
                Some("2024-10-21"),
            ),
            Some("azure-key-123"),
            json!({"input": "x"}),
        )
        .await
        .unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"]["code"], "DeploymentNotFound");

        let filtered = send(
            azure_url(
                &fake,
                MODEL_CONTENT_FILTER,
                "chat/completions",
                Some("2024-10-21"),
            ),
            Some("azure-key-123"),
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
        assert_eq!(filtered.status(), 400);
        let body: Value = filtered.json().await.unwrap();
        assert_eq!(body["error"]["code"], "content_filter");
        assert_eq!(
            body["error"]["innererror"]["code"],
            "ResponsibleAIPolicyViolation"
        );

        let stream = send(
            azure_url(&fake, "gpt4o-prod", "chat/completions", Some("2024-10-21")),
            Some("azure-key-123"),
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
        .await
        .unwrap();
        let events = crate::sse::data_events(&stream.text().await.unwrap());
        let first: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(first["choices"], json!([]));
        assert!(first["prompt_filter_results"].is_array());
        assert_eq!(content_of(&parse_chunks(&events)), CONTENT);

        let recorded = fake.azure_requests();
        assert_eq!(recorded.len(), 6);
        assert_eq!(recorded[0].deployment, "gpt4o-prod");
        assert_eq!(recorded[0].operation, "chat/completions");
        assert_eq!(recorded[0].api_version.as_deref(), Some("2024-10-21"));
        assert_eq!(recorded[1].api_version, None);
        assert_eq!(recorded[0].request.header("api-key"), Some("azure-key-123"));
    }
}
