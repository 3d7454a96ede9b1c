//! A fake OpenAI-compatible upstream for tests and benchmarks.
//!
//! It serves `POST /v1/chat/completions` and `GET /v1/models` on `127.0.0.1:0` and follows the
//! documented wire format, so the gateway's OpenAI adapter is exercised against what the real
//! service sends, not against what we assume it sends:
//! - request and response bodies: <https://platform.openai.com/docs/api-reference/chat/create>
//!   (`chat.completion`, ids `chatcmpl-…`, `created` in Unix seconds, `system_fingerprint`,
//!   `usage` with `prompt_tokens`/`completion_tokens`/`total_tokens`);
//! - streaming: <https://platform.openai.com/docs/api-reference/chat-streaming>
//!   (`text/event-stream`, each event framed as `data: {json}\n\n`, `chat.completion.chunk`
//!   objects, the first delta carrying the role, a final chunk with `finish_reason`, then — only
//!   when the request set `stream_options.include_usage` — a chunk with `choices: []` and the
//!   usage while every earlier chunk carries `"usage": null`, and finally `data: [DONE]`);
//! - errors: <https://platform.openai.com/docs/guides/error-codes>
//!   (`{"error":{"message","type","param","code"}}` with 401 for a bad key, 429 with
//!   `retry-after` and the `x-ratelimit-*` headers, 500 for a server error, 400 for an invalid
//!   request).
//!
//! Every response carries the headers the real API sends and clients look at: `x-request-id`,
//! `openai-processing-ms`, `openai-version`.
//!
//! Behaviour is chosen by the `model` the fake receives (see the `MODEL_*` constants), so a test
//! can make the upstream misbehave even when it drives it through separate gateway processes.
//! Every request is recorded (method, path, lowercased headers, JSON body) for assertions,
//! unless recording is turned off for load tests with [`FakeOpenAiBuilder::record_requests`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
/// 429 with `retry-after: 7`.
pub const MODEL_429: &str = "fake-429";
/// 500 server error.
pub const MODEL_500: &str = "fake-500";
/// 400 `context_length_exceeded`.
pub const MODEL_400_CONTEXT: &str = "fake-400-context";

/// Every model name `GET /v1/models` lists. Any other name behaves like a normal model.
pub const MODELS: [&str; 8] = [
    "gpt-4o-mini",
    MODEL_NO_USAGE,
    MODEL_CUT_STREAM,
    MODEL_HANG,
    MODEL_STALL_STREAM,
    MODEL_429,
    MODEL_500,
    MODEL_400_CONTEXT,
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
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The bearer token from `Authorization`, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }
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
    /// Require `Authorization: Bearer <api_key>`; anything else gets 401 `invalid_api_key`.
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(Shared {
            api_key: self.api_key,
            record: self.record,
            requests: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            shutdown: shutdown_rx,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        // Streamed events are small writes spaced apart; without TCP_NODELAY, Nagle's algorithm
        // holds each one back until the previous is acknowledged, and the client's delayed ACK
        // turns that into ~40 ms per event. Real endpoints (behind CDNs) do not do that.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            // Errors here mean the listener died; the test will notice failing requests.
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeOpenAi {
            addr,
            state,
            shutdown: shutdown_tx,
            task,
        })
    }
}

/// A running fake upstream. Dropping it stops accepting connections and releases requests that
/// are held open (`fake-hang`, `fake-stall-stream`) by dropping their connections.
pub struct FakeOpenAi {
    addr: SocketAddr,
    state: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpenAi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
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
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the form a provider's `base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order (empty if recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Requests received so far to `POST /v1/chat/completions`.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/chat/completions")
            .cloned()
            .collect()
    }

    /// How many requests arrived, recorded or not.
    pub fn request_count(&self) -> u64 {
        self.state.count.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests (the count keeps running).
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

struct Shared {
    api_key: Option<String>,
    record: bool,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicU64,
    next_id: AtomicU64,
    /// Flips to true when the [`FakeOpenAi`] is dropped; held-open requests wait on it.
    shutdown: watch::Receiver<bool>,
}

/// The lock is never held across an await, and a panicking test thread must not poison the fake
/// for the rest of the test, so a poisoned lock is simply taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The error a response body yields to make the server drop the connection mid-response.
#[derive(Debug)]
struct ConnectionCut;

impl std::fmt::Display for ConnectionCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake upstream cut the connection on purpose")
    }
}

impl std::error::Error for ConnectionCut {}

async fn handle(State(state): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let request_id = format!("req_{:032x}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let (parts, body) = req.into_parts();
    // The body limit matters only against a runaway client; 64 MiB is far above any test.
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    state.count.fetch_add(1, Ordering::Relaxed);
    if state.record {
        let mut headers = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        lock(&state.requests).push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers,
            body: json.clone(),
        });
    }

    let mut response = route(
        &state,
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        &json,
        &bytes,
    )
    .await;
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

async fn route(
    state: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    json: &Value,
    raw: &Bytes,
) -> Response {
    let path = path.trim_end_matches('/');
    let known = matches!(
        (method, path),
        (&Method::POST, "/v1/chat/completions") | (&Method::GET, "/v1/models")
    );
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            None,
            None,
        );
    }
    if let Some(resp) = check_auth(state, headers) {
        return resp;
    }
    if method == Method::GET {
        return models();
    }
    if !raw.is_empty() && json.is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
            None,
        );
    }
    let Some(model) = json.get("model").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
        );
    };
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

    match model {
        MODEL_429 => rate_limited(),
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
        MODEL_HANG => {
            wait_for_shutdown(state.shutdown.clone()).await;
            cut_response()
        }
        MODEL_CUT_STREAM if !stream => cut_response(),
        _ if stream => stream_response(state, model, include_usage),
        _ => completion(model, model != MODEL_NO_USAGE),
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

async fn wait_for_shutdown(mut rx: watch::Receiver<bool>) {
    // An Err means the sender is gone, which also means the fake was dropped.
    let _ = rx.wait_for(|stopped| *stopped).await;
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

fn usage_json() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": TOTAL_TOKENS,
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

fn rate_limited() -> Response {
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

fn models() -> Response {
    let created = now_unix();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "testkit"}))
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn completion(model: &str, with_usage: bool) -> Response {
    let mut body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": CONTENT, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT
    });
    if with_usage && let Some(obj) = body.as_object_mut() {
        obj.insert("usage".to_owned(), usage_json());
    }
    json_response(StatusCode::OK, &body)
}

/// A response whose body fails at once: the server drops the connection before the buffered
/// status line is ever flushed, so the client sees the connection close without a response.
fn cut_response() -> Response {
    let body = futures::stream::once(async { Err::<Bytes, _>(ConnectionCut) });
    Response::new(Body::from_stream(body))
}

fn sse_event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The chunks of a streamed completion, in the documented order.
fn stream_response(state: &Shared, model: &str, include_usage: bool) -> Response {
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

    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )];
    let deltas: &[&str] = match model {
        MODEL_CUT_STREAM => &STREAM_DELTAS[..2],
        MODEL_STALL_STREAM => &STREAM_DELTAS[..1],
        _ => &STREAM_DELTAS,
    };
    for d in deltas {
        events.push(chunk(json!({"content": d}), None));
    }

    // Yielding before each event makes the server flush what it has, so events leave as
    // separate writes the way a real token stream does, and the status line and the events
    // before a cut reach the client before the connection drops.
    let head = futures::stream::iter(events).then(|e| async move {
        tokio::task::yield_now().await;
        Ok::<Bytes, ConnectionCut>(e)
    });
    let body = match model {
        MODEL_CUT_STREAM => Body::from_stream(head.chain(futures::stream::once(async {
            tokio::task::yield_now().await;
            Err(ConnectionCut)
        }))),
        MODEL_STALL_STREAM => {
            let rx = state.shutdown.clone();
            Body::from_stream(head.chain(futures::stream::once(async move {
                wait_for_shutdown(rx).await;
                Err(ConnectionCut)
            })))
        }
        _ => {
            let mut tail = vec![chunk(json!({}), Some("stop"))];
            if report_usage {
                tail.push(sse_event(&json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [],
                    "usage": usage_json()
                })));
            }
            tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
            Body::from_stream(head.chain(futures::stream::iter(tail.into_iter().map(Ok))))
        }
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
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
}
