//! Provider adapters: one per wire protocol, each turning a [`ChatRequest`] for a chosen
//! deployment into a [`Reply`].
//!
//! - [`openai`]: api.openai.com and every OpenAI-compatible server (vLLM, Ollama, Groq, …).
//! - [`azure`]: Azure OpenAI (deployment URLs, `api-version`, `api-key`).
//! - [`anthropic`]: Anthropic's Messages API.
//! - [`gemini`]: Google Gemini `generateContent` / `streamGenerateContent`.
//! - [`bedrock`]: AWS Bedrock Converse / ConverseStream, SigV4-signed.
//! - [`mock`]: built in, deterministic, no network; echoes the last user message.
//!
//! Adapters for providers with their own wire format translate through [`canonical`]: the
//! provider-neutral [`canonical::Conversation`] in, OpenAI-format output out (the gateway's hub
//! format). [`transport`] holds the HTTP plumbing every adapter shares.
//!
//! Adapters only translate and transport. They do not meter, retry or log: a [`Reply::Stream`]
//! is a lazy stream of SSE events that the meter stage drives (see `pipeline::meter`), and
//! failures are returned as [`GatewayError`]s that the edge renders and logs once.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod canonical;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod presets;
pub mod transport;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Deserialize;
use shared::config::ProviderKind;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::Settings;
use crate::egress::UpstreamClient;
use crate::error::GatewayError;
use crate::store::ResolvedProvider;
use crate::wire::{ChatRequest, EmbeddingsRequest};
use http::HeaderValue;

/// Everything an adapter needs for one upstream call.
pub struct Call<'a> {
    pub http: &'a UpstreamClient,
    /// The `x-switchyard-hop` value for this request (see [`crate::egress`]).
    pub hops: &'a HeaderValue,
    pub settings: &'a Settings,
    pub request: &'a ChatRequest,
    /// The model id sent to the provider (the deployment's `upstream_model`).
    pub upstream_model: &'a str,
    pub provider: &'a ResolvedProvider,
    pub request_id: Uuid,
    /// When the whole call (stream included) must be over: start + `SWITCHYARD_UPSTREAM_TIMEOUT_MS`.
    pub deadline: Instant,
    /// The deployment's default output cap (`DeploymentRecord::max_output_tokens`), for
    /// providers that require one when the request sets none (Anthropic).
    pub max_output_tokens: Option<u32>,
}

/// What a provider answered.
pub enum Reply {
    /// A whole `chat.completion` JSON body, forwarded to the client as is.
    Complete(Completion),
    /// A stream of server-sent events (`chat.completion.chunk`s, then `[DONE]`).
    Stream(EventStream),
}

pub struct Completion {
    pub body: Bytes,
    /// Token counts as the provider reported them, if it did.
    pub usage: Option<Usage>,
}

/// Token counts as reported by a provider. `prompt_tokens` counts every input token, cached ones
/// included (OpenAI's convention; adapters for providers that report cache reads and writes
/// separately, like Anthropic, add them in). Deserializes from OpenAI's `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "OpenAiUsage")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, written to the provider's prompt cache.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Plain counts with no cache information.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            ..Self::default()
        }
    }
}

/// OpenAI's `usage` object, as far as metering needs it.
#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<OpenAiPromptDetails>,
}

#[derive(Deserialize)]
struct OpenAiPromptDetails {
    #[serde(default)]
    cached_tokens: u64,
    /// Not OpenAI's: written by [`canonical`] for providers that report cache writes.
    #[serde(default)]
    cache_write_tokens: u64,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cache_read_tokens: u
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
            cache_write_tokens: u.prompt_tokens_details.map_or(0, |d| d.cache_write_tokens),
        }
    }
}

/// One server-sent event, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field when it is not the default `message`.
    pub name: Option<String>,
    /// The `data:` field(s), joined with `\n` as the SSE spec says.
    pub data: String,
}

/// Why a stream ended early (connection cut, malformed framing). Only logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError(pub String);

/// Events in arrival order; ends when the upstream closes the stream.
pub type EventStream = BoxStream<'static, Result<Event, StreamError>>;

/// Dispatches to the adapter for the provider's kind.
///
/// For providers outside the OpenAI family (the built-in mock included: it stands in for a real
/// provider, so it must not accept what a real one would refuse), request fields that would
/// change the answer's meaning and have no equivalent there (`n` > 1, `logprobs`, …) are
/// refused here, once, before any adapter runs (the rule is documented in [`crate::wire`]).
pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let kind = call.provider.record.kind;
    if !kind.is_openai_family() {
        call.request.refuse_unsupported_for_non_openai()?;
    }
    match Adapter::for_kind(kind) {
        Adapter::Mock => Ok(mock::call(call)),
        Adapter::Anthropic => anthropic::call(call).await,
        Adapter::Gemini => gemini::call(call).await,
        Adapter::Bedrock => bedrock::call(call).await,
        Adapter::Azure => azure::call(call).await,
        Adapter::OpenAi => openai::call(call).await,
    }
}

/// The adapter serving a provider kind: one wire protocol each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Mock,
    Anthropic,
    Gemini,
    Bedrock,
    Azure,
    /// OpenAI and the OpenAI-compatible family (each with its preset).
    OpenAi,
}

impl Adapter {
    /// Exhaustive on purpose: a new kind must be given an adapter here, once, for chat and
    /// embeddings alike.
    fn for_kind(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Mock => Adapter::Mock,
            ProviderKind::Anthropic => Adapter::Anthropic,
            ProviderKind::Gemini => Adapter::Gemini,
            ProviderKind::Bedrock => Adapter::Bedrock,
            ProviderKind::AzureOpenAi => Adapter::Azure,
            ProviderKind::OpenAi
            | ProviderKind::OpenAiCompatible
            | ProviderKind::Mistral
            | ProviderKind::Groq
            | ProviderKind::DeepSeek
            | ProviderKind::Together
            | ProviderKind::Fireworks
            | ProviderKind::Xai
            | ProviderKind::OpenRouter
            | ProviderKind::Vllm
            | ProviderKind::Ollama
            | ProviderKind::LlamaCpp => Adapter::OpenAi,
        }
    }
}

/// Everything an adapter needs for one embeddings call.
pub struct EmbedCall<'a> {
    pub http: &'a UpstreamClient,
    /// The `x-switchyard-hop` value for this request (see [`crate::egress`]).
    pub hops: &'a HeaderValue,
    pub settings: &'a Settings,
    pub request: &'a EmbeddingsRequest,
    /// The model id sent to the provider (the deployment's `upstream_model`).
    pub upstream_model: &'a str,
    pub provider: &'a ResolvedProvider,
    pub request_id: Uuid,
    pub deadline: Instant,
}

/// An embeddings answer in OpenAI's format:
/// `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[…]}],"model":…,"usage":{"prompt_tokens":…,"total_tokens":…}}`.
pub struct Embeddings {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// Dispatches an embeddings call to the adapter for the provider's kind.
pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    match Adapter::for_kind(call.provider.record.kind) {
        Adapter::Gemini => gemini::embed(call).await,
        Adapter::Bedrock => bedrock::embed(call).await,
        Adapter::Azure => azure::embed(call).await,
        Adapter::Anthropic => anthropic::embed(call).await,
        Adapter::Mock => Err(unsupported(ProviderKind::Mock, "embeddings")),
        Adapter::OpenAi => openai::embed(call).await,
    }
}

/// The error for an operation a provider kind does not offer (e.g. embeddings on Anthropic).
pub(crate) fn unsupported(kind: ProviderKind, what: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "This model's provider ({}) does not support {what}.",
            kind.as_str()
        ),
        param: Some("model".to_owned()),
    }
}

/// The pieces of a `chat.completion` body the meter reads.
#[derive(Deserialize)]
struct CompletionView {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Reads `usage` from a `chat.completion` body; `Err` when the body is not a JSON object.
pub(crate) fn completion_usage(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    serde_json::from_slice::<CompletionView>(body).map(|v| v.usage)
}

/// The generated text of a `chat.completion` body (every choice's content and tool-call
/// arguments), for estimating completion tokens when the provider reported none.
pub(crate) fn completion_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(Deserialize)]
    struct Choice {
        #[serde(default)]
        message: Option<serde_json::Value>,
    }
    let mut out = String::new();
    if let Ok(view) = serde_json::from_slice::<View>(body) {
        for message in view.choices.into_iter().filter_map(|c| c.message) {
            if let Some(serde_json::Value::String(s)) = message.get("content") {
                out.push_str(s);
            }
            if let Some(serde_json::Value::Array(calls)) = message.get("tool_calls") {
                for call in calls {
                    if let Some(serde_json::Value::String(args)) =
                        call.get("function").and_then(|f| f.get("arguments"))
                    {
                        out.push_str(args);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reads_usage_and_text_from_a_completion() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert_eq!(
            completion_usage(body).expect("json"),
            Some(Usage::new(12, 5))
        );
        assert_eq!(completion_text(body), "Hi there{}");
        assert_eq!(completion_usage(br#"{"choices":[]}"#).expect("json"), None);
        assert!(completion_usage(b"nope").is_err());
    }
}
