//! A fake AWS Bedrock runtime for tests: `POST /model/{modelId}/converse`,
//! `/model/{modelId}/converse-stream` and `/model/{modelId}/invoke` on `127.0.0.1:0`, in
//! Bedrock's native wire format, with every request's SigV4 signature verified.
//!
//! Documentation followed:
//! - Converse: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//!   (`output.message.content` blocks, `stopReason`, `usage` with `inputTokens` / `outputTokens`
//!   / `totalTokens`, `metrics.latencyMs`);
//! - ConverseStream: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>
//!   (`application/vnd.amazon.eventstream`; events `messageStart`, `contentBlockStart`,
//!   `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`, each a message with the
//!   headers `:event-type`, `:content-type: application/json`, `:message-type: event` and a JSON
//!   payload carrying the `p` padding field; exceptions as `:message-type: exception` with
//!   `:exception-type`);
//! - event-stream framing: <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream>
//!   (frames encoded with `aws-smithy-eventstream`: prelude, headers, payload, CRC32s);
//! - InvokeModel: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html>
//!   with the Titan Text Embeddings body
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>)
//!   and the Cohere Embed body
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>), and
//!   the `X-Amzn-Bedrock-Input-Token-Count` header;
//! - errors: <https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html>
//!   (`x-amzn-ErrorType` header, body `{"message": …}`);
//! - SigV4: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>. The fake
//!   recomputes the signature from the request as received (method, raw path, the headers named
//!   in `SignedHeaders`, body bytes, `x-amz-date`) with `aws-sigv4` and the configured secret,
//!   as Bedrock does: an unknown access key id → 403 `UnrecognizedClientException`, a wrong
//!   scope or signature → 403 `InvalidSignatureException`, no `Authorization` → 403
//!   `MissingAuthenticationTokenException`.
//!
//! Behaviour follows the shared fake contract, chosen by the decoded `{modelId}` (see the
//! `MODEL_*` constants). Every request is recorded: method, raw path, decoded model id,
//! operation, lowercased headers, JSON body.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::{Header, HeaderValue as EsHeaderValue, Message};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::fake_server::{
    self, FakeServer, Received, StreamEnd, cut_response, lock, stream_body, wait_for_shutdown,
};

/// The access key id [`FakeBedrock::start`] accepts.
pub const ACCESS_KEY_ID: &str = "AKIAFAKEBEDROCK00001";
/// The secret access key [`FakeBedrock::start`] verifies signatures with.
pub const SECRET_ACCESS_KEY: &str = "fAkEbEdRoCkSeCrEt/K7MDENG+bPxRfiCYEXAMPLE";
/// The region [`FakeBedrock::start`] expects in the credential scope.
pub const REGION: &str = "us-east-1";

/// The answer of the default model.
pub const CONTENT: &str = "Hello from the fake upstream";
/// The streamed text deltas; they concatenate to [`CONTENT`].
pub const STREAM_DELTAS: [&str; 5] = ["Hello", " from", " the", " fake", " upstream"];
pub const INPUT_TOKENS: u64 = 12;
pub const OUTPUT_TOKENS: u64 = 5;

/// Calls [`TOOL_NAME`] with [`TOOL_ARGUMENTS`] (`stopReason: tool_use`, usage 20/10).
pub const MODEL_TOOL: &str = "fake-tool";
pub const TOOL_NAME: &str = "get_weather";
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris","unit":"celsius"}"#;
/// How the arguments arrive in `contentBlockDelta` `toolUse.input` fragments.
pub const TOOL_ARGUMENT_FRAGMENTS: [&str; 3] =
    [r#"{"city":"#, r#""Paris","#, r#""unit":"celsius"}"#];
pub const TOOL_INPUT_TOKENS: u64 = 20;
pub const TOOL_OUTPUT_TOKENS: u64 = 10;
/// Streaming: `messageStart`, "Hello", " from", then the connection drops. Non-streaming: the
/// connection closes without a response.
pub const MODEL_CUT_STREAM: &str = "fake-cut-stream";
/// Streaming: `messageStart`, "Hello", then a frame whose message CRC is wrong, then the rest
/// of a normal answer (which a correct client never reads).
pub const MODEL_BAD_CRC: &str = "fake-bad-crc";
/// Streaming: `messageStart`, "Hello", then a `modelStreamErrorException` and the end.
pub const MODEL_STREAM_EXCEPTION: &str = "fake-stream-exception";
/// Streaming: `messageStart`, "Hello", then nothing while the connection stays open.
pub const MODEL_STALL_STREAM: &str = "fake-stall-stream";
/// Accepts the request and never answers (until the fake is dropped).
pub const MODEL_HANG: &str = "fake-hang";
/// 429 `ThrottlingException` with `retry-after: 7`.
pub const MODEL_429: &str = "fake-429";
/// 500 `InternalServerException`.
pub const MODEL_500: &str = "fake-500";
/// 400 `ValidationException` "Input is too long for requested model."
pub const MODEL_400_CONTEXT: &str = "fake-400-context";

/// Size of the fake embeddings.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// Input tokens reported per embedded text.
pub const EMBEDDING_TOKENS_PER_INPUT: u64 = 3;

/// The deterministic embedding of `text`: 8 values in [-0.5, 0.5), each a multiple of 1/256 so
/// it survives any float round trip exactly.
pub fn embedding(text: &str) -> Vec<f32> {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.to_le_bytes()
        .iter()
        .map(|b| f32::from(*b) / 256.0 - 0.5)
        .collect()
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path exactly as sent, e.g. `/model/anthropic.claude-v2%3A1/converse`.
    pub path: String,
    /// The `{modelId}` segment, percent-decoded; empty when the path is not a model path.
    pub model_id: String,
    /// `converse`, `converse-stream` or `invoke`; empty when the path is not a model path.
    pub operation: String,
    /// Header names lowercased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        fake_server::header(&self.headers, name)
    }
}

/// A running fake Bedrock runtime. Dropping it stops it and releases held requests.
pub struct FakeBedrock {
    server: FakeServer<Shared>,
}

impl std::fmt::Debug for FakeBedrock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.server.debug("FakeBedrock", f)
    }
}

struct Shared {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    requests: Mutex<Vec<RecordedRequest>>,
    shutdown: watch::Receiver<bool>,
}

impl FakeBedrock {
    /// A fake that accepts requests signed with [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`] for
    /// [`REGION`].
    pub async fn start() -> anyhow::Result<FakeBedrock> {
        Self::start_with_credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION).await
    }

    /// A fake that accepts only requests signed with these credentials for `region`.
    pub async fn start_with_credentials(
        access_key_id: &str,
        secret_access_key: &str,
        region: &str,
    ) -> anyhow::Result<FakeBedrock> {
        let server = FakeServer::start(
            |shutdown| Shared {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.to_owned(),
                region: region.to_owned(),
                requests: Mutex::new(Vec::new()),
                shutdown,
            },
            handle,
        )
        .await?;
        Ok(FakeBedrock { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, the provider's `base_url` (paths start with `/model/`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.server.state().requests).clone()
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `/model/{id}/{operation}` → (decoded id, operation).
fn model_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/model/")?;
    let (id, operation) = rest.split_once('/')?;
    if operation.contains('/') || id.is_empty() {
        return None;
    }
    Some((percent_decode(id)?, operation.to_owned()))
}

async fn handle(State(state): State<Arc<Shared>>, req: Request) -> Response {
    let Received { parts, bytes, json } = fake_server::receive(req).await;
    let path = parts.uri.path().to_owned();
    let (model_id, operation) = model_path(&path).unwrap_or_default();
    lock(&state.requests).push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        model_id: model_id.clone(),
        operation: operation.clone(),
        headers: fake_server::header_map(&parts.headers),
        body: json.clone(),
    });

    let mut response = route(&state, &parts, &bytes, &json, &model_id, &operation).await;
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

async fn route(
    state: &Shared,
    parts: &axum::http::request::Parts,
    raw: &Bytes,
    json: &Value,
    model: &str,
    operation: &str,
) -> Response {
    let known = matches!(operation, "converse" | "converse-stream" | "invoke");
    if parts.method != Method::POST || model.is_empty() || !known {
        return aws_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        );
    }
    if let Err(resp) = verify_signature(state, parts, raw) {
        return *resp;
    }
    if json.is_null() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    }
    match model {
        MODEL_429 => {
            let mut resp = aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
            return resp;
        }
        MODEL_500 => {
            return aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                "The server encountered an internal error while processing the request.",
            );
        }
        MODEL_400_CONTEXT => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Input is too long for requested model.",
            );
        }
        MODEL_HANG => {
            wait_for_shutdown(state.shutdown.clone()).await;
            return cut_response();
        }
        _ => {}
    }
    match operation {
        "invoke" => invoke(model, json),
        _ => {
            if let Err(message) = validate_converse(json) {
                return aws_error(StatusCode::BAD_REQUEST, "ValidationException", &message);
            }
            if operation == "converse" {
                converse(model)
            } else {
                converse_stream(state, model)
            }
        }
    }
}

/// A Bedrock error: status, `x-amzn-ErrorType`, `{"message"}`.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

fn forbidden(kind: &str, message: &str) -> Box<Response> {
    Box::new(aws_error(StatusCode::FORBIDDEN, kind, message))
}

/// `YYYYMMDD'T'HHMMSS'Z'` → time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.is_ascii() || &s[8..9] != "T" || &s[15..] != "Z" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Checks the SigV4 `Authorization` header the way Bedrock does.
fn verify_signature(
    state: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let Some(auth) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let invalid = || {
        forbidden(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    };
    let fields = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(invalid)?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(invalid());
    };
    if access_key_id != state.access_key_id {
        return Err(forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if region != state.region {
        return Err(forbidden(
            "InvalidSignatureException",
            &format!("Credential should be scoped to a valid region, not '{region}'."),
        ));
    }
    if service != "bedrock" {
        return Err(forbidden(
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: 'bedrock'. Not '{service}'."),
        ));
    }
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(time) = parse_amz_date(amz_date).filter(|_| amz_date.starts_with(date)) else {
        return Err(forbidden(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("http://{host}{path_and_query}");
    let names: Vec<&str> = signed_headers.split(';').collect();
    let values: Vec<(&str, &str)> = names
        .iter()
        .filter(|n| **n != "x-amz-date")
        .filter_map(|n| {
            parts
                .headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(|v| (*n, v))
        })
        .collect();
    let identity: Identity = Credentials::new(
        access_key_id,
        state.secret_access_key.clone(),
        None,
        None,
        "fake-bedrock",
    )
    .into();
    let expected = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()
        .map(aws_sigv4::http_request::SigningParams::from)
        .and_then(|params| {
            let request = SignableRequest::new(
                parts.method.as_str(),
                uri,
                values.into_iter(),
                SignableBody::Bytes(body),
            )
            .ok()?;
            let (instructions, signature) = sign(request, &params).ok()?.into_parts();
            // The headers the client signed must be exactly the ones we recomputed over.
            let recomputed_names = instructions
                .headers()
                .find(|(n, _)| *n == "authorization")
                .and_then(|(_, v)| {
                    v.split("SignedHeaders=")
                        .nth(1)
                        .and_then(|r| r.split(',').next())
                        .map(str::to_owned)
                })?;
            Some((recomputed_names, signature))
        });
    match expected {
        Some((names, expected)) if names == signed_headers && expected == signature => Ok(()),
        _ => Err(forbidden(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )),
    }
}

/// The checks Bedrock makes that an adapter could get wrong.
fn validate_converse(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(
            "The model returned the following errors: messages: at least one message is required",
        )?;
    let mut previous = "";
    let mut tool_blocks = false;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: expected 'user' or 'assistant'"));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned());
        }
        if role == previous {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".to_owned());
        }
        previous = role;
        let content = message
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                format!("messages.{i}.content: at least one content block is required")
            })?;
        for block in content {
            if block.get("toolUse").is_some() || block.get("toolResult").is_some() {
                tool_blocks = true;
            }
            if block
                .get("text")
                .is_some_and(|t| t.as_str().is_none_or(str::is_empty))
            {
                return Err(format!(
                    "messages.{i}.content: text content blocks must be non-empty"
                ));
            }
        }
    }
    if tool_blocks && body.get("toolConfig").is_none() {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".to_owned());
    }
    Ok(())
}

fn tool_use_id() -> String {
    format!(
        "tooluse_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..22]
    )
}

fn usage(input: u64, output: u64) -> Value {
    json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output})
}

fn converse(model: &str) -> Response {
    let body = match model {
        MODEL_CUT_STREAM => return cut_response(),
        MODEL_TOOL => json!({
            "output": {"message": {"role": "assistant", "content": [
                {"toolUse": {
                    "toolUseId": tool_use_id(),
                    "name": TOOL_NAME,
                    "input": serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap_or(Value::Null),
                }}
            ]}},
            "stopReason": "tool_use",
            "usage": usage(TOOL_INPUT_TOKENS, TOOL_OUTPUT_TOKENS),
            "metrics": {"latencyMs": 412},
        }),
        _ => json!({
            "output": {"message": {"role": "assistant", "content": [{"text": CONTENT}]}},
            "stopReason": "end_turn",
            "usage": usage(INPUT_TOKENS, OUTPUT_TOKENS),
            "metrics": {"latencyMs": 318},
        }),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One event-stream frame.
fn frame(message: &Message) -> Bytes {
    let mut out = Vec::new();
    // Writing to a Vec only fails for oversized headers or payloads, which we never build.
    let _ = write_message_to(message, &mut out);
    Bytes::from(out)
}

fn event(event_type: &str, mut payload: Value) -> Bytes {
    // Bedrock pads payloads with a `p` field of varying length (against traffic analysis).
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("p".into(), json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"));
    }
    frame(
        &Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":event-type",
                EsHeaderValue::String(event_type.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                EsHeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                EsHeaderValue::String("event".into()),
            )),
    )
}

fn exception(exception_type: &str, payload: Value) -> Bytes {
    frame(
        &Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":exception-type",
                EsHeaderValue::String(exception_type.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                EsHeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                EsHeaderValue::String("exception".into()),
            )),
    )
}

fn text_delta(text: &str) -> Bytes {
    event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": text}}),
    )
}

fn converse_stream(state: &Shared, model: &str) -> Response {
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    let mut end = StreamEnd::Then(Vec::new());
    match model {
        MODEL_TOOL => {
            frames.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": tool_use_id(), "name": TOOL_NAME}}}),
            ));
            for fragment in TOOL_ARGUMENT_FRAGMENTS {
                frames.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": fragment}}}),
                ));
            }
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            frames.push(event("messageStop", json!({"stopReason": "tool_use"})));
            frames.push(event(
                "metadata",
                json!({"usage": usage(TOOL_INPUT_TOKENS, TOOL_OUTPUT_TOKENS), "metrics": {"latencyMs": 512}}),
            ));
        }
        MODEL_CUT_STREAM => {
            frames.extend(STREAM_DELTAS[..2].iter().map(|d| text_delta(d)));
            end = StreamEnd::Cut;
        }
        MODEL_STALL_STREAM => {
            frames.push(text_delta(STREAM_DELTAS[0]));
            end = StreamEnd::Stall(state.shutdown.clone());
        }
        MODEL_STREAM_EXCEPTION => {
            frames.push(text_delta(STREAM_DELTAS[0]));
            frames.push(exception(
                "modelStreamErrorException",
                json!({"message": "Received an error from the model while streaming the response.", "originalStatusCode": 500, "originalMessage": "upstream model failure"}),
            ));
        }
        _ => {
            for (i, d) in STREAM_DELTAS.iter().enumerate() {
                let mut f = text_delta(d);
                if model == MODEL_BAD_CRC && i == 1 {
                    let mut bad = f.to_vec();
                    if let Some(last) = bad.last_mut() {
                        *last ^= 0xff;
                    }
                    f = Bytes::from(bad);
                }
                frames.push(f);
            }
            frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            frames.push(event("messageStop", json!({"stopReason": "end_turn"})));
            frames.push(event(
                "metadata",
                json!({"usage": usage(INPUT_TOKENS, OUTPUT_TOKENS), "metrics": {"latencyMs": 318}}),
            ));
        }
    }
    // Each frame leaves in two writes split mid-frame, so clients must reassemble frames across
    // network chunks as they must with the real service.
    let mut chunks = Vec::with_capacity(frames.len() * 2);
    for f in frames {
        let cut = f.len() / 2 + 1;
        chunks.push(f.slice(..cut));
        chunks.push(f.slice(cut..));
    }
    let mut resp = Response::new(stream_body(chunks, end));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp
}

/// A response that fails at once: the connection closes without a status line.
fn embedding_json(text: &str) -> Value {
    json!(embedding(text))
}

/// InvokeModel for the embeddings models: Titan Text Embeddings and Cohere Embed.
fn invoke(model: &str, body: &Value) -> Response {
    let (answer, tokens) = if model.contains("titan-embed") {
        let Some(text) = body.get("inputText").and_then(Value::as_str) else {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Malformed input request: #: required key [inputText] not found, please reformat your input and try again.",
            );
        };
        let vector = embedding_json(text);
        (
            json!({
                "embedding": vector,
                "embeddingsByType": {"float": vector},
                "inputTextTokenCount": EMBEDDING_TOKENS_PER_INPUT,
            }),
            EMBEDDING_TOKENS_PER_INPUT,
        )
    } else if model.contains("cohere.embed") {
        let texts: Option<Vec<&str>> = body
            .get("texts")
            .and_then(Value::as_array)
            .filter(|t| (1..=96).contains(&t.len()))
            .and_then(|t| t.iter().map(Value::as_str).collect());
        let Some(texts) = texts else {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Malformed input request: #/texts: expected 1 to 96 strings, please reformat your input and try again.",
            );
        };
        if body.get("input_type").and_then(Value::as_str).is_none() {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Malformed input request: #: required key [input_type] not found, please reformat your input and try again.",
            );
        }
        let vectors: Vec<Value> = texts.iter().map(|t| embedding_json(t)).collect();
        let by_type = body.get("embedding_types").is_some();
        let n = u64::try_from(texts.len()).unwrap_or(u64::MAX);
        (
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "texts": texts,
                "embeddings": if by_type { json!({"float": vectors}) } else { json!(vectors) },
                "response_type": if by_type { "embeddings_by_type" } else { "embeddings_floats" },
            }),
            n * EMBEDDING_TOKENS_PER_INPUT,
        )
    } else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "The provided model doesn't support this request body (the fake serves Titan and Cohere embeddings only).",
        );
    };
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response();
    let h: &mut HeaderMap = resp.headers_mut();
    h.insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(tokens),
    );
    h.insert(
        "x-amzn-bedrock-invocation-latency",
        HeaderValue::from(23u64),
    );
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn dates_and_paths_parse() {
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        assert_eq!(parse_amz_date("2015-08-30"), None);
        assert_eq!(
            model_path("/model/anthropic.claude-v2%3A1/converse"),
            Some(("anthropic.claude-v2:1".to_owned(), "converse".to_owned()))
        );
        assert_eq!(model_path("/model/arn:aws:x/y/converse"), None);
        assert_eq!(embedding("a"), embedding("a"));
        assert_ne!(embedding("a"), embedding("b"));
        assert_eq!(embedding("a").len(), EMBEDDING_DIMENSIONS);
    }

    /// POSTs `body` to `sent_path`, signed as if it went to `signed_path`.
    async fn signed_post(
        fake: &FakeBedrock,
        secret: &str,
        signed_path: &str,
        sent_path: &str,
        body: &str,
    ) -> reqwest::Response {
        let identity: Identity = Credentials::new(ACCESS_KEY_ID, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("bedrock")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new(
            "POST",
            format!("{}{signed_path}", fake.base_url()),
            std::iter::empty(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut req = reqwest::Client::new()
            .post(format!("{}{sent_path}", fake.base_url()))
            .body(body.to_owned());
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        req.send().await.unwrap()
    }

    #[tokio::test]
    async fn the_signature_covers_the_encoded_path_the_body_and_the_secret() {
        let fake = FakeBedrock::start().await.unwrap();
        let body = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let ok = "/model/m%3A0/converse";
        let resp = signed_post(&fake, SECRET_ACCESS_KEY, ok, ok, body).await;
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["output"]["message"]["content"][0]["text"], CONTENT);
        assert_eq!(fake.requests()[0].model_id, "m:0");

        let refused = [
            // Signed over the unencoded id but sent encoded: what a client that signs a
            // different URL than it sends does.
            signed_post(&fake, SECRET_ACCESS_KEY, "/model/m:0/converse", ok, body).await,
            signed_post(&fake, "not-the-secret-0123456789", ok, ok, body).await,
        ];
        for resp in refused {
            assert_eq!(resp.status(), 403);
            assert!(
                resp.headers()["x-amzn-errortype"]
                    .to_str()
                    .unwrap()
                    .starts_with("InvalidSignatureException")
            );
            let text = resp.text().await.unwrap();
            assert!(
                text.contains("signature we calculated does not match"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn unsigned_requests_are_refused() {
        let fake = FakeBedrock::start().await.unwrap();
        let resp = reqwest::Client::new()
            .post(format!("{}/model/m/converse", fake.base_url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(
            resp.headers()["x-amzn-errortype"].to_str().unwrap(),
            "MissingAuthenticationTokenException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
        assert_eq!(fake.requests()[0].model_id, "m");
    }
}
