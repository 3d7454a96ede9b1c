//! The OpenAI adapter, for api.openai.com and every OpenAI-compatible server (the presets in
//! [`super::presets`]: Mistral, Groq, DeepSeek, Together, Fireworks, xAI, OpenRouter, vLLM,
//! Ollama, llama.cpp, and generic `openai_compatible`):
//! `POST {base_url}/chat/completions` and `POST {base_url}/embeddings` with
//! `Authorization: Bearer <provider key>`.
//!
//! The client's body is forwarded with every field we do not know preserved, `model` replaced by
//! the deployment's upstream model and, for streams, `stream_options.include_usage` forced on
//! (see [`crate::wire::UpstreamChatRequest`]); the kind's preset then renames, drops or refuses
//! the few standard parameters that provider rejects. A stream is returned as parsed SSE events
//! that the meter stage forwards one by one as they arrive; nothing is buffered.
//!
//! Azure OpenAI speaks the same format at another URL with another auth header; it reuses
//! `send_chat` and `send_embeddings` with its own `Auth` (see `providers::azure`).
//!
//! Timeouts: connecting is bounded by the shared client's connect timeout, the response headers
//! by `SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS`, each later body read by
//! `SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS`, and everything by the call's total deadline.
//!
//! # Errors
//!
//! Upstream statuses map to gateway errors as documented on [`transport::error_for_status`].
//! Error bodies are read in OpenAI's `{"error":{…}}` shape and in the other shapes compatible
//! servers use (vLLM's and Mistral's top-level `{"object":"error","message":…}`, Ollama's
//! `{"error":"…"}`), scrubbed of the provider key. A refusal because the prompt is too long is
//! normalized to 400 `context_length_exceeded` whatever the server called it (see
//! `provider_error`), so clients can rely on that one code.

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use serde_json::Value;
use shared::config::ProviderRecord;

use super::presets::{self, KeyPolicy, Preset};
use super::{Call, Completion, EmbedCall, Embeddings, Reply, Usage, completion_usage, transport};
use crate::error::{GatewayError, ProviderError};
use crate::store::ResolvedProvider;
use crate::wire::{ChatRequest, EmbeddingsRequest};

/// Largest embeddings answer we buffer: 2048 inputs × 3072 floats as JSON is ~100 MiB at worst,
/// but nobody sends that through a gateway in one request; 64 MiB stops a broken upstream.
const MAX_EMBEDDINGS_BYTES: usize = 64 * 1024 * 1024;
/// A provider's error message longer than this is cut (some echo the whole prompt back).
const MAX_ERROR_MESSAGE: usize = 2000;

/// How the provider key is presented.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <key>`: OpenAI and every compatible server.
    Bearer(&'a str),
    /// A named header carrying the bare key: Azure's `api-key`.
    Header(&'static str, &'a str),
    /// No credential: a self-hosted server without authentication.
    None,
}

impl<'a> Auth<'a> {
    /// The secret, to scrub from error messages.
    pub(crate) fn secret(&self) -> Option<&'a str> {
        match *self {
            Auth::Bearer(key) | Auth::Header(_, key) => Some(key),
            Auth::None => None,
        }
    }

    fn apply(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match *self {
            Auth::Bearer(key) => builder.bearer_auth(key),
            Auth::Header(name, key) => builder.header(name, key),
            Auth::None => builder,
        }
    }
}

/// Chat completions through the OpenAI wire format, with the kind's preset applied.
pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let record = &call.provider.record;
    let preset = preset(record);
    let base = transport::base_url(record)?;
    let auth = bearer(call.provider, preset)?;
    let body = preset.chat_body(call.request, call.upstream_model)?;
    send_chat(call, format!("{base}/chat/completions"), auth, body).await
}

/// Embeddings through the OpenAI wire format: `POST {base}/embeddings` with the client's body,
/// every field kept and `model` replaced.
pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    let record = &call.provider.record;
    let base = transport::base_url(record)?;
    let auth = bearer(call.provider, preset(record))?;
    let body = embeddings_body(call.request, call.upstream_model)?;
    send_embeddings(call, format!("{base}/embeddings"), auth, body).await
}

fn preset(record: &ProviderRecord) -> &'static Preset {
    // Only OpenAI-family kinds are dispatched here; a generic preset is the safe reading of any
    // other (it forwards verbatim and requires nothing).
    presets::for_kind(record.kind).unwrap_or(&presets::OPENAI_COMPATIBLE)
}

/// `Authorization: Bearer`, or nothing for servers that need no key; a hosted API without a
/// key is refused before any call.
fn bearer<'a>(provider: &'a ResolvedProvider, preset: &Preset) -> Result<Auth<'a>, GatewayError> {
    match (transport::api_key(provider)?, preset.key) {
        (Some(key), _) => Ok(Auth::Bearer(key)),
        (None, KeyPolicy::Optional) => Ok(Auth::None),
        (None, KeyPolicy::Required) => Err(GatewayError::ProviderUnavailable(format!(
            "provider {} ({}) has no API key",
            provider.record.id,
            provider.record.kind.as_str()
        ))),
    }
}

/// The JSON body for an OpenAI-compatible embeddings endpoint.
pub(crate) fn embeddings_body(
    request: &EmbeddingsRequest,
    upstream_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&request.to_upstream(upstream_model))
        .map_err(|e| GatewayError::Internal(format!("cannot serialize the upstream body: {e}")))
}

/// Sends a chat completions body to `url` and reads the answer: the whole `chat.completion`,
/// or the SSE stream when the request streams.
pub(crate) async fn send_chat(
    call: &Call<'_>,
    url: String,
    auth: Auth<'_>,
    body: Vec<u8>,
) -> Result<Reply, GatewayError> {
    let builder = transport::json_post(call, url, body);
    let response = transport::send(call, auth.apply(builder)).await?;
    let status = response.status();
    if !status.is_success() {
        return Err(upstream_failure(response, call, auth).await);
    }

    if call.request.is_stream() {
        transport::require_event_stream(&response)?;
        return Ok(Reply::Stream(transport::sse_events(response)));
    }

    let body = transport::read_body(response, transport::MAX_COMPLETION_BYTES, call).await?;
    let usage = completion_usage(&body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("completion body is not a JSON object: {e}"))
    })?;
    Ok(Reply::Complete(Completion { body, usage }))
}

/// Sends an embeddings body to `url` and reads the answer (OpenAI's `list` of embeddings).
pub(crate) async fn send_embeddings(
    call: &EmbedCall<'_>,
    url: String,
    auth: Auth<'_>,
    body: Vec<u8>,
) -> Result<Embeddings, GatewayError> {
    let placeholder = ChatRequest::default();
    let transport_call = transport_call(call, &placeholder);
    // The placeholder request does not stream, so this accepts JSON.
    let builder = transport::json_post(&transport_call, url, body);
    let response = transport::send(&transport_call, auth.apply(builder)).await?;
    if !response.status().is_success() {
        return Err(upstream_failure(response, &transport_call, auth).await);
    }
    let body = transport::read_body(response, MAX_EMBEDDINGS_BYTES, &transport_call).await?;
    let usage = embeddings_usage(&body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("embeddings body is not a JSON object: {e}"))
    })?;
    Ok(Embeddings { body, usage })
}

/// The transport helpers take a chat [`Call`] for its HTTP settings, provider and deadline
/// only; an embeddings call lends them its own with an empty placeholder request.
pub(crate) fn transport_call<'a>(call: &EmbedCall<'a>, placeholder: &'a ChatRequest) -> Call<'a> {
    Call {
        http: call.http,
        hops: call.hops,
        settings: call.settings,
        request: placeholder,
        upstream_model: call.upstream_model,
        provider: call.provider,
        request_id: call.request_id,
        deadline: call.deadline,
        max_output_tokens: None,
    }
}

/// Reads `usage` from an embeddings answer; `Err` when the body is not a JSON object.
pub(crate) fn embeddings_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        usage: Option<Usage>,
    }
    serde_json::from_slice::<View>(body).map(|v| v.usage)
}

/// Turns a non-2xx answer into the gateway error, keeping `Retry-After` and the provider's
/// message (scrubbed of the key).
async fn upstream_failure(
    response: reqwest::Response,
    call: &Call<'_>,
    auth: Auth<'_>,
) -> GatewayError {
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let body = transport::read_error_body(response, call).await;
    let (status, error) = provider_error(status, &body, auth.secret());
    transport::error_for_status(status, retry_after, error)
}

/// Reads a provider's error body in any of the shapes OpenAI-compatible servers use, scrubs
/// `secret` from it, and recognizes a prompt that is too long: a 400/413/422 whose code, type or
/// message says so becomes 400 `context_length_exceeded` (param `messages` unless the provider
/// named one), the code OpenAI uses and clients check for.
pub(crate) fn provider_error(
    status: StatusCode,
    body: &[u8],
    secret: Option<&str>,
) -> (StatusCode, ProviderError) {
    let mut error = ProviderError::parse(body);
    if error == ProviderError::default() {
        error = other_error_shapes(body);
    }
    if let Some(message) = &mut error.message
        && message.len() > MAX_ERROR_MESSAGE
    {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let mut error = error.scrub(secret);
    let mut status = status;
    if matches!(status.as_u16(), 400 | 413 | 422) && is_context_length(&error) {
        status = StatusCode::BAD_REQUEST;
        error.code = Some("context_length_exceeded".to_owned());
        error.kind = Some("invalid_request_error".to_owned());
        error.param.get_or_insert_with(|| "messages".to_owned());
    }
    (status, error)
}

/// `{"object":"error","message":…,"type":…,"code":…}` (vLLM, Mistral; Mistral's message is an
/// object naming the offending field), `{"error":"…"}` (Ollama), `{"detail":…}` (FastAPI
/// servers), `{"message":"…"}`.
fn other_error_shapes(body: &[u8]) -> ProviderError {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return ProviderError::default();
    };
    let text = |v: Option<&Value>| match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Bool(_) => None,
        other => Some(other.to_string()),
    };
    let message = match map.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => text(map.get("message")).or_else(|| text(map.get("detail"))),
    };
    ProviderError {
        message,
        kind: text(map.get("type")),
        param: text(map.get("param")),
        code: text(map.get("code")),
    }
}

/// Whether an error says the prompt (plus the requested output) does not fit the model.
fn is_context_length(error: &ProviderError) -> bool {
    const CODES: [&str; 2] = ["context_length_exceeded", "exceed_context_size_error"];
    const PHRASES: [&str; 6] = [
        "maximum context length",
        "context length",
        "context window",
        "context size",
        "reduce the length of the messages",
        "prompt is too long",
    ];
    let is_code = |v: &Option<String>| v.as_deref().is_some_and(|c| CODES.contains(&c));
    if is_code(&error.code) || is_code(&error.kind) {
        return true;
    }
    error.message.as_deref().is_some_and(|m| {
        let m = m.to_ascii_lowercase();
        PHRASES.iter().any(|p| m.contains(p))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn err(status: u16, body: &str) -> (u16, ProviderError) {
        let (s, e) = provider_error(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            Some("sk-secret-key-123"),
        );
        (s.as_u16(), e)
    }

    #[test]
    fn error_bodies_in_every_compatible_shape_keep_their_message() {
        let (_, e) = err(
            400,
            r#"{"error":{"message":"bad sk-secret-key-123","type":"invalid_request_error","param":"n","code":null}}"#,
        );
        assert_eq!(e.message.as_deref(), Some("bad [redacted]"));
        assert_eq!(e.param.as_deref(), Some("n"));

        let (_, e) = err(
            400,
            r#"{"object":"error","message":"top_k must be positive","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert_eq!(e.message.as_deref(), Some("top_k must be positive"));
        assert_eq!(e.code.as_deref(), Some("400"));

        let (_, e) = err(
            422,
            r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],"msg":"Extra inputs are not permitted"}]},"type":"invalid_request_error","param":null,"code":null}"#,
        );
        assert!(e.message.unwrap().contains("stream_options"));

        let (_, e) = err(404, r#"{"error":"model 'llama9' not found"}"#);
        assert_eq!(e.message.as_deref(), Some("model 'llama9' not found"));

        let (_, e) = err(502, "<html>bad gateway</html>");
        assert_eq!(e, ProviderError::default());
    }

    #[test]
    fn too_long_prompts_become_context_length_exceeded() {
        let (status, e) = err(
            400,
            r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}"#,
        );
        assert_eq!(status, 400);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.param.as_deref(), Some("messages"));

        let (status, e) = err(
            413,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#,
        );
        assert_eq!(status, 400);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));

        let (_, e) = err(
            400,
            r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#,
        );
        assert_eq!(e.code.as_deref(), Some("invalid_value"));
        // A 5xx is never a context error, whatever it says.
        let (status, e) = err(500, r#"{"error":{"message":"context window busy"}}"#);
        assert_eq!((status, e.code), (500, None));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE);
        let (_, e) = err(400, &format!(r#"{{"error":{{"message":"{long}"}}}}"#));
        let m = e.message.unwrap();
        assert!(m.len() <= MAX_ERROR_MESSAGE + '…'.len_utf8());
        assert!(m.ends_with('…'));
    }

    #[test]
    fn reads_embeddings_usage() {
        let body = br#"{"object":"list","data":[],"model":"m","usage":{"prompt_tokens":6,"total_tokens":6}}"#;
        assert_eq!(embeddings_usage(body).unwrap(), Some(Usage::new(6, 0)));
        assert_eq!(embeddings_usage(br#"{"data":[]}"#).unwrap(), None);
        assert!(embeddings_usage(b"<html>").is_err());
    }
}
