//! The Anthropic Messages adapter: an OpenAI-format chat request in, Anthropic's Messages API
//! called, an OpenAI-format answer (`chat.completion` or `chat.completion.chunk` stream) out.
//!
//! Wire format as Anthropic documents it:
//! - request and response: <https://docs.anthropic.com/en/api/messages>
//! - streaming (SSE event sequence): <https://docs.anthropic.com/en/api/messages-streaming>
//! - errors (statuses, `{"type":"error","error":{"type","message"}}`): <https://docs.anthropic.com/en/api/errors>
//!
//! `POST {base_url}/messages` (base URL default `https://api.anthropic.com/v1`) with the provider
//! key in `x-api-key`, `anthropic-version: 2023-06-01` and a JSON body.
//!
//! # Request translation (through [`Conversation`])
//!
//! | OpenAI | Anthropic |
//! | --- | --- |
//! | `system` / `developer` messages | top-level `system` (joined with a blank line) |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens`, which Anthropic requires: the request's, else the deployment's `max_output_tokens`, else [`DEFAULT_MAX_TOKENS`] |
//! | user / assistant / tool messages | `messages`, consecutive turns of one role merged (Anthropic wants alternation); tool results are `user` turns of `tool_result` blocks, placed before any other content of that turn as Anthropic requires |
//! | text and `image_url` parts | `text` blocks (empty ones dropped: Anthropic refuses them) and `image` blocks with a `base64` source (`data:` URLs) or a `url` source |
//! | assistant `tool_calls` | `tool_use` blocks; `arguments` parsed into `input` (not a JSON object → 400 naming the field) |
//! | `tools` | `tools: [{name, description, input_schema}]` |
//! | `tool_choice` auto / none / required / function | `{"type":"auto"}` / `{"type":"none"}` / `{"type":"any"}` / `{"type":"tool","name":…}` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `stop` | `stop_sequences` |
//! | `temperature`, `top_p` | the same (Anthropic's temperature range is 0–1; a larger value is Anthropic's 400 to show, not ours to rescale) |
//! | `user` | `metadata.user_id` |
//! | `stream` | `stream` |
//!
//! Tool-call ids are kept, with any character outside `[A-Za-z0-9_-]` (Anthropic's id alphabet)
//! replaced by `_` in both the `tool_use` and the `tool_result`, so a conversation started on
//! another provider can continue here. A final assistant turn (a prefill) loses its trailing
//! whitespace, which Anthropic refuses.
//!
//! ## What Anthropic cannot do (the rule)
//!
//! The gateway-wide rule (see `crate::wire`) applies: fields that would change the answer's
//! meaning (`n` > 1, `logprobs`, `top_logprobs`, `logit_bias`, audio, …) are refused with a 400
//! naming them before this adapter runs (`providers::call`). OpenAI fields with no Anthropic
//! equivalent that only tune sampling or add bookkeeping (`presence_penalty`,
//! `frequency_penalty`, `seed`, `service_tier`, `store`, `metadata`, …) are dropped: the answer
//! is still a correct answer.
//!
//! `response_format`: Anthropic has no JSON mode. We emulate it the way Anthropic's tool-use
//! guide recommends for structured JSON output: a tool whose `input_schema` is the requested
//! schema (`json_schema`) or `{"type":"object"}` (`json_object`), named after the schema
//! (`json_response` for `json_object`), which the model is made to call. Its input comes back
//! as the message **content** (compact JSON text; streamed as content deltas) with
//! `finish_reason` `stop`, exactly as OpenAI answers. With client tools present the model may
//! call either a client tool or the JSON tool (`tool_choice: any`); a `tool_choice` that forces
//! a client tool (`required`, a named function) wins and the JSON tool is not offered. A client
//! tool with the JSON tool's name is refused (400 `response_format`).
//!
//! # Answers
//!
//! `text` blocks are joined into `content`; `tool_use` blocks become `tool_calls` (`arguments`
//! the compact JSON of `input`; object keys come out sorted, which JSON does not order); other
//! blocks (thinking, server tools) are dropped. `stop_reason` maps `end_turn`, `stop_sequence`,
//! `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use`
//! → `tool_calls`; `refusal` → `content_filter`. Usage: `prompt_tokens` = `input_tokens` +
//! `cache_read_input_tokens` + `cache_creation_input_tokens` (Anthropic counts the three apart;
//! OpenAI's prompt count includes cached tokens), `completion_tokens` = `output_tokens`, and the
//! cache counts kept as [`Usage::cache_read_tokens`] / [`Usage::cache_write_tokens`]. The id is
//! [`canonical::completion_id`] of the request id; `model` is the model Anthropic names.
//!
//! # Streams
//!
//! A small state machine (`StreamTranslator`) reads Anthropic's events one at a time, lazily
//! (nothing is buffered beyond the chunks one event produces), and writes OpenAI chunks with
//! [`ChunkWriter`]:
//!
//! | Anthropic event | OpenAI chunks |
//! | --- | --- |
//! | `message_start` | the role chunk (model and input/cache usage remembered) |
//! | `content_block_start` `text` / `tool_use` | — / `tool_call_start` (index = order among the answer's tool calls) |
//! | `content_block_delta` `text_delta` / `input_json_delta` | content delta / `tool_call_args` with the fragment as sent |
//! | `content_block_stop` | `tool_call_args` `{}` if a tool call got no argument fragment at all |
//! | `message_delta` | the finish chunk (first `stop_reason`); usage remembered (`output_tokens` is cumulative) |
//! | `message_stop` | the usage chunk, then `[DONE]` — the only way a stream gets `[DONE]` |
//! | `ping`, unknown events, thinking / signature / citation deltas | nothing (forward compatible) |
//! | `error` (e.g. `overloaded_error` mid-stream) | an OpenAI-style `error` event with Anthropic's message, then the stream ends **without** `[DONE]`; logged as a warning |
//!
//! A stream that ends any other way (connection cut, malformed event) ends without `[DONE]`, and
//! the meter reports it as truncated.
//!
//! # Errors
//!
//! Anthropic's error body is read into a [`ProviderError`] (`message`, `kind` = `error.type`),
//! with the provider key scrubbed from the message, and mapped by
//! [`transport::error_for_status`]: 429 `rate_limit_error` stays 429 with `Retry-After`;
//! 400/413 keep their status and message, a 400 saying the prompt is too long for the context
//! window gets `code: context_length_exceeded` (`param: messages`), as OpenAI reports it;
//! 401/403 become 502 `upstream_auth_failed` (our credentials, not the client's fault; nothing of
//! Anthropic's message is shown); 500 `api_error` and 529 `overloaded_error` become 502
//! `upstream_error` with Anthropic's message. 529 is deliberately not a 503: the gateway itself is
//! available, a retry may succeed, and OpenAI's SDKs retry every 5xx alike.

use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::canonical::{
    self, ChunkWriter, CompletionOut, Conversation, FinishReason, ImageSource, Part,
    ResponseFormat, Role, ToolCallOut, ToolChoice, Turn,
};
use super::{
    Call, EmbedCall, Embeddings, Event, EventStream, Reply, StreamError, Usage, transport,
};
use crate::error::{GatewayError, ProviderError, invalid};
use crate::wire::ChatRequest;

/// The `anthropic-version` header we speak (the current and only stable version).
pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when neither the request nor the deployment sets one. Anthropic requires the
/// field; 4096 is what every current Claude model accepts and covers ordinary answers.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The emulation tool's name for `response_format: {"type":"json_object"}`.
const JSON_OBJECT_TOOL: &str = "json_response";
/// Anthropic's limit on tool names.
const MAX_TOOL_NAME: usize = 64;

pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let record = &call.provider.record;
    let url = format!("{}/messages", transport::base_url(record)?);
    let api_key = transport::api_key(call.provider)?;
    let outbound = translate_request(call.request, call.upstream_model, call.max_output_tokens)?;
    let stream = call.request.is_stream();
    let body = serde_json::to_vec(&outbound.body)
        .map_err(|e| GatewayError::Internal(format!("cannot serialize the upstream body: {e}")))?;

    let mut builder =
        transport::json_post(call, url, body).header("anthropic-version", API_VERSION);
    if let Some(key) = api_key {
        let mut value = HeaderValue::from_str(key).map_err(|_| {
            GatewayError::ProviderUnavailable(format!(
                "provider {}: the API key is not a valid header value",
                record.id
            ))
        })?;
        // Keeps the key out of any debug output of the request.
        value.set_sensitive(true);
        builder = builder.header("x-api-key", value);
    }

    let response = transport::send(call, builder).await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = transport::read_error_body(response, call).await;
        let error = provider_error(status, &body).scrub(api_key);
        return Err(transport::error_for_status(status, retry_after, error));
    }

    let id = canonical::completion_id(call.request_id);
    if stream {
        transport::require_event_stream(&response)?;
        let translator = StreamTranslator::new(
            id,
            call.upstream_model.to_owned(),
            outbound.json_tool,
            call.request_id,
            api_key.map(str::to_owned),
        );
        return Ok(Reply::Stream(translate_stream(
            transport::sse_events(response),
            translator,
        )));
    }

    let body = transport::read_body(response, transport::MAX_COMPLETION_BYTES, call).await?;
    let out = completion(
        &body,
        id,
        call.upstream_model,
        outbound.json_tool.as_deref(),
    )?;
    Ok(Reply::Complete(out.into_completion()))
}

/// Anthropic has no embeddings API (it recommends Voyage AI).
pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    Err(super::unsupported(call.provider.record.kind, "embeddings"))
}

// === request ===

/// The Messages API body, and the name of the JSON-emulation tool if `response_format` asked
/// for JSON (its call is turned back into content).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outbound {
    pub(crate) body: Value,
    pub(crate) json_tool: Option<String>,
}

/// Translates `request` into a Messages API body for `model`; `default_max_tokens` is the
/// deployment's output cap.
pub(crate) fn translate_request(
    request: &ChatRequest,
    model: &str,
    default_max_tokens: Option<u32>,
) -> Result<Outbound, GatewayError> {
    if let Some(n) = request.n
        && n > 1
    {
        return Err(invalid(
            "n",
            format!(
                "Invalid value for 'n': this model's provider (anthropic) returns one choice per request, so n must be 1 (got {n})."
            ),
        ));
    }
    let conversation = Conversation::from_request(request)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(
            conversation
                .max_tokens
                .or(default_max_tokens)
                .unwrap_or(DEFAULT_MAX_TOKENS)
        ),
    );
    if let Some(system) = conversation.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("system".into(), json!(system));
    }
    body.insert(
        "messages".into(),
        Value::Array(messages(request, &conversation.turns)?),
    );
    if let Some(t) = conversation.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = conversation.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !conversation.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(conversation.stop));
    }
    if let Some(user) = request.user.as_deref().filter(|u| !u.is_empty()) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    if request.is_stream() {
        body.insert("stream".into(), json!(true));
    }
    let json_tool = tools(&mut body, &conversation, request.parallel_tool_calls)?;
    Ok(Outbound {
        body: Value::Object(body),
        json_tool,
    })
}

/// The turns as Anthropic messages: consecutive turns of one role merged, empty turns dropped,
/// tool results first in their user turn, a final assistant prefill without trailing whitespace.
fn messages(request: &ChatRequest, turns: &[Turn]) -> Result<Vec<Value>, GatewayError> {
    // `Conversation` has one turn per non-system message, in order: this recovers each turn's
    // index in `messages` so errors name the client's field.
    let indexes: Vec<usize> = request
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !matches!(m.role.as_str(), "system" | "developer"))
        .map(|(i, _)| i)
        .collect();
    let mut merged: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (k, turn) in turns.iter().enumerate() {
        let index = indexes.get(k).copied().unwrap_or(k);
        let role = match turn.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        let blocks = blocks(turn, index)?;
        if blocks.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some((last_role, content)) if *last_role == role => content.extend(blocks),
            _ => merged.push((role, blocks)),
        }
    }
    for (role, content) in &mut merged {
        if *role == "user" {
            // Anthropic: "tool_result blocks must come first in the user message".
            let (mut results, others): (Vec<Value>, Vec<Value>) = std::mem::take(content)
                .into_iter()
                .partition(|b| b["type"] == "tool_result");
            results.extend(others);
            *content = results;
        }
    }
    if let Some(("assistant", content)) = merged.last_mut() {
        trim_prefill(content);
        if content.is_empty() {
            merged.pop();
        }
    }
    Ok(merged
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect())
}

/// Anthropic refuses a final assistant turn ending in whitespace.
fn trim_prefill(content: &mut Vec<Value>) {
    let Some(last) = content.last_mut() else {
        return;
    };
    if last["type"] != "text" {
        return;
    }
    let trimmed = last["text"]
        .as_str()
        .unwrap_or_default()
        .trim_end()
        .to_owned();
    if trimmed.is_empty() {
        content.pop();
    } else {
        last["text"] = Value::String(trimmed);
    }
}

fn blocks(turn: &Turn, index: usize) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(turn.parts.len());
    let mut call_no = 0;
    for part in &turn.parts {
        match part {
            Part::Text(text) => {
                if !text.is_empty() {
                    out.push(json!({ "type": "text", "text": text }));
                }
            }
            Part::Image(ImageSource::Url(url)) => out.push(json!({
                "type": "image",
                "source": { "type": "url", "url": url },
            })),
            Part::Image(ImageSource::Base64 { media_type, data }) => out.push(json!({
                "type": "image",
                "source": { "type": "base64", "media_type": media_type, "data": data },
            })),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let input = tool_input(arguments, index, call_no)?;
                call_no += 1;
                out.push(json!({
                    "type": "tool_use",
                    "id": tool_id(id),
                    "name": name,
                    "input": input,
                }));
            }
            Part::ToolResult { call_id, content } => {
                let mut block = json!({ "type": "tool_result", "tool_use_id": tool_id(call_id) });
                // An empty string is not valid content; an absent one is.
                if !content.is_empty() {
                    block["content"] = json!(content);
                }
                out.push(block);
            }
        }
    }
    Ok(out)
}

/// Parses an assistant tool call's `arguments` into Anthropic's `input` object.
fn tool_input(arguments: &str, message: usize, call: usize) -> Result<Value, GatewayError> {
    let param = format!("messages[{message}].tool_calls[{call}].function.arguments");
    if arguments.trim().is_empty() {
        // Some clients send "" for a call without arguments.
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => Ok(input),
        Ok(_) => Err(invalid(
            &param,
            format!(
                "Invalid value for '{param}': expected a JSON object (this model's provider requires tool arguments to be an object)."
            ),
        )),
        Err(e) => Err(invalid(
            &param,
            format!("Invalid value for '{param}': not valid JSON ({e})."),
        )),
    }
}

/// A tool-call id in Anthropic's alphabet (`[A-Za-z0-9_-]`).
fn tool_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `tools` and `tool_choice`, including the JSON-mode emulation (see the module doc); returns
/// the emulation tool's name when it is offered.
fn tools(
    body: &mut Map<String, Value>,
    conversation: &Conversation,
    parallel_tool_calls: Option<bool>,
) -> Result<Option<String>, GatewayError> {
    let mut tools: Vec<Value> = conversation
        .tools
        .iter()
        .map(|t| {
            let mut tool = json!({ "name": t.name, "input_schema": t.parameters });
            if let Some(d) = &t.description {
                tool["description"] = json!(d);
            }
            tool
        })
        .collect();
    let json_mode = match &conversation.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some((
            JSON_OBJECT_TOOL.to_owned(),
            "Give your whole answer by calling this tool: its input is the answer, a JSON object.",
            json!({ "type": "object" }),
        )),
        ResponseFormat::JsonSchema { name, schema } => Some((
            json_tool_name(name),
            "Give your whole answer by calling this tool: its input is the answer, a JSON value that follows the schema.",
            schema.clone(),
        )),
    };
    let choice = conversation.tool_choice.as_ref();
    let named = |name: &str| json!({ "type": "tool", "name": name });
    let (mut choice, json_tool) = match (json_mode, choice) {
        (_, Some(ToolChoice::Function(name))) => (Some(named(name)), None),
        (_, Some(ToolChoice::Required)) => (Some(json!({ "type": "any" })), None),
        (None, Some(ToolChoice::Auto)) => (Some(json!({ "type": "auto" })), None),
        (None, Some(ToolChoice::None)) => (Some(json!({ "type": "none" })), None),
        (None, None) => (None, None),
        (Some((name, description, schema)), choice) => {
            if conversation.tools.iter().any(|t| t.name == name) {
                return Err(invalid(
                    "response_format",
                    format!(
                        "A tool named '{name}' cannot be combined with this response_format for this model's provider: the name is used to produce the JSON answer. Rename the tool."
                    ),
                ));
            }
            // With client tools the model may call one of them or answer in JSON, as with
            // OpenAI; without (or with tool_choice none) it must answer in JSON.
            let either = !conversation.tools.is_empty() && choice != Some(&ToolChoice::None);
            let c = if either {
                json!({ "type": "any" })
            } else {
                named(&name)
            };
            tools.push(json!({
                "name": name,
                "description": description,
                "input_schema": schema,
            }));
            (Some(c), Some(name))
        }
    };
    if tools.is_empty() {
        // Anthropic refuses a tool_choice without tools.
        return Ok(None);
    }
    if parallel_tool_calls == Some(false) {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    body.insert("tools".into(), Value::Array(tools));
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    Ok(json_tool)
}

/// The JSON-emulation tool's name for a `json_schema` named `name` (in Anthropic's tool-name
/// alphabet and length).
fn json_tool_name(name: &str) -> String {
    let name: String = tool_id(name).chars().take(MAX_TOOL_NAME).collect();
    if name.is_empty() {
        JSON_OBJECT_TOOL.to_owned()
    } else {
        name
    }
}

// === answers ===

/// Token counts as Anthropic reports them (message `usage`, `message_start`, `message_delta`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every count `later` reports (they are cumulative).
    fn merge(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    fn is_empty(&self) -> bool {
        self.input_tokens.is_none() && self.output_tokens.is_none()
    }

    fn to_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + read + write,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }
}

/// A Messages API response, as far as we read it.
#[derive(Deserialize)]
struct MessageBody {
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tools and whatever comes next: not part of an OpenAI answer.
    #[serde(other)]
    Other,
}

/// `stop_reason` in OpenAI's vocabulary. `tool_use` is `tool_calls` only when the answer has
/// client tool calls (a JSON-emulation call is content).
fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if has_tool_calls => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn, tool_use of the JSON tool, and anything new.
        _ if has_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A non-streaming Messages API body as an OpenAI completion.
fn completion(
    body: &[u8],
    id: String,
    fallback_model: &str,
    json_tool: Option<&str>,
) -> Result<CompletionOut, GatewayError> {
    let message: MessageBody = serde_json::from_slice(body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("Anthropic message body is not as documented: {e}"))
    })?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ContentBlock::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            ContentBlock::ToolUse { name, input, .. } if json_tool == Some(name.as_str()) => {
                text.get_or_insert_with(String::new)
                    .push_str(&compact_input(&input));
            }
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCallOut {
                id,
                name,
                arguments: compact_input(&input),
            }),
            ContentBlock::Other => {}
        }
    }
    Ok(CompletionOut {
        id,
        model: message.model.unwrap_or_else(|| fallback_model.to_owned()),
        created: canonical::now_unix(),
        text,
        finish_reason: finish_reason(message.stop_reason.as_deref(), !tool_calls.is_empty()),
        tool_calls,
        usage: message.usage.map(WireUsage::to_usage),
    })
}

fn compact_input(input: &Value) -> String {
    match input {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

// === errors ===

/// Anthropic's error body as a [`ProviderError`]. `{"type":"error","error":{"type","message"}}`
/// reads like OpenAI's envelope (`error.type`, `error.message`), so the shared parser does; a
/// 400 about the context window gets OpenAI's `context_length_exceeded` code.
fn provider_error(status: StatusCode, body: &[u8]) -> ProviderError {
    let mut error = ProviderError::parse(body);
    if status == StatusCode::BAD_REQUEST
        && error.message.as_deref().is_some_and(is_context_overflow)
    {
        error.code = Some("context_length_exceeded".to_owned());
        error.param = Some("messages".to_owned());
    }
    error
}

/// Anthropic's wording for a prompt that does not fit: "prompt is too long: 208310 tokens >
/// 200000 maximum", and "input length and `max_tokens` exceed context limit: …".
fn is_context_overflow(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("prompt is too long") || message.contains("exceed context limit")
}

// === streams ===

/// Event types whose body we must understand; a malformed one ends the stream as broken.
/// Anything else that does not parse is an event type we do not know yet, and is skipped.
const KNOWN_EVENTS: [&str; 7] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: DeltaBody,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DeltaBody {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// thinking_delta, signature_delta, citations_delta, …
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// What an open content block turns into.
#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Text,
    /// The JSON-emulation tool: its argument fragments are content. `any`: one was sent.
    Json {
        any: bool,
    },
    /// OpenAI tool call number `index`; `args`: an argument fragment was sent.
    Tool {
        index: u32,
        args: bool,
    },
    Ignored,
}

type Item = Result<Event, StreamError>;

/// The Anthropic → OpenAI stream state machine (see the module doc for the event table).
pub(crate) struct StreamTranslator {
    id: String,
    /// The deployment's upstream model, until `message_start` names the real one.
    fallback_model: String,
    writer: Option<ChunkWriter>,
    json_tool: Option<String>,
    request_id: Uuid,
    /// To scrub from error messages.
    api_key: Option<String>,
    blocks: HashMap<u64, BlockKind>,
    next_tool: u32,
    finish_sent: bool,
    usage: WireUsage,
    /// No more events: `message_stop`, an error, or a broken stream.
    finished: bool,
}

impl StreamTranslator {
    pub(crate) fn new(
        id: String,
        fallback_model: String,
        json_tool: Option<String>,
        request_id: Uuid,
        api_key: Option<String>,
    ) -> Self {
        Self {
            id,
            fallback_model,
            writer: None,
            json_tool,
            request_id,
            api_key,
            blocks: HashMap::new(),
            next_tool: 0,
            finish_sent: false,
            usage: WireUsage::default(),
            finished: false,
        }
    }

    /// Starts the OpenAI stream (the role chunk) with `model` if it has not started yet.
    fn start(&mut self, model: Option<&str>, out: &mut VecDeque<Item>) {
        if self.writer.is_none() {
            let model = model.unwrap_or(&self.fallback_model).to_owned();
            let writer = ChunkWriter::new(self.id.clone(), model);
            out.push_back(Ok(writer.role()));
            self.writer = Some(writer);
        }
    }

    /// Pushes the chunk `make` builds, starting the stream first if needed.
    fn emit(&mut self, out: &mut VecDeque<Item>, make: impl FnOnce(&ChunkWriter) -> Event) {
        self.start(None, out);
        if let Some(writer) = &self.writer {
            out.push_back(Ok(make(writer)));
        }
    }

    fn fail(&mut self, out: &mut VecDeque<Item>, reason: String) {
        self.finished = true;
        out.push_back(Err(StreamError(reason)));
    }

    /// Translates one upstream event into zero or more OpenAI events.
    pub(crate) fn on_event(&mut self, event: &Event, out: &mut VecDeque<Item>) {
        if self.finished {
            return;
        }
        let parsed = match serde_json::from_str::<WireEvent>(&event.data) {
            Ok(parsed) => parsed,
            Err(e) => {
                let name = event.name.as_deref().unwrap_or("unnamed");
                if KNOWN_EVENTS.contains(&name) {
                    self.fail(out, format!("malformed Anthropic `{name}` event: {e}"));
                }
                return;
            }
        };
        match parsed {
            WireEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.usage.merge(usage);
                }
                self.start(message.model.as_deref(), out);
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block, out),
            WireEvent::ContentBlockDelta { index, delta } => self.block_delta(index, delta, out),
            WireEvent::ContentBlockStop { index } => match self.blocks.get(&index).copied() {
                Some(BlockKind::Tool { index, args: false }) => {
                    // A call without arguments: OpenAI clients parse the arguments as JSON.
                    self.emit(out, |w| w.tool_call_args(index, "{}"));
                }
                Some(BlockKind::Json { any: false }) => self.emit(out, |w| w.text("{}")),
                _ => {}
            },
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.usage.merge(usage);
                }
                if let Some(reason) = delta.stop_reason
                    && !self.finish_sent
                {
                    self.finish_sent = true;
                    let reason = finish_reason(Some(&reason), self.next_tool > 0);
                    self.emit(out, |w| w.finish(reason));
                }
            }
            WireEvent::MessageStop => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    let reason = finish_reason(None, self.next_tool > 0);
                    self.emit(out, |w| w.finish(reason));
                }
                if !self.usage.is_empty() {
                    let usage = self.usage.to_usage();
                    self.emit(out, |w| w.usage(&usage));
                }
                out.push_back(Ok(ChunkWriter::done()));
                self.finished = true;
            }
            WireEvent::Error { error } => self.upstream_error(error, out),
            WireEvent::Ping | WireEvent::Unknown => {}
        }
    }

    fn block_start(&mut self, index: u64, block: StartBlock, out: &mut VecDeque<Item>) {
        let kind = match block {
            StartBlock::Text { text } => {
                if !text.is_empty() {
                    self.emit(out, |w| w.text(&text));
                }
                BlockKind::Text
            }
            StartBlock::ToolUse { name, .. } if self.json_tool.as_deref() == Some(&name) => {
                BlockKind::Json { any: false }
            }
            StartBlock::ToolUse { id, name } => {
                let call = self.next_tool;
                self.next_tool += 1;
                self.emit(out, |w| w.tool_call_start(call, &id, &name));
                BlockKind::Tool {
                    index: call,
                    args: false,
                }
            }
            StartBlock::Other => BlockKind::Ignored,
        };
        self.blocks.insert(index, kind);
    }

    fn block_delta(&mut self, index: u64, delta: DeltaBody, out: &mut VecDeque<Item>) {
        let Some(kind) = self.blocks.get_mut(&index) else {
            return;
        };
        match (kind, delta) {
            (BlockKind::Text, DeltaBody::TextDelta { text }) if !text.is_empty() => {
                self.emit(out, |w| w.text(&text));
            }
            (BlockKind::Json { any }, DeltaBody::InputJsonDelta { partial_json })
                if !partial_json.is_empty() =>
            {
                *any = true;
                self.emit(out, |w| w.text(&partial_json));
            }
            (BlockKind::Tool { index, args }, DeltaBody::InputJsonDelta { partial_json })
                if !partial_json.is_empty() =>
            {
                *args = true;
                let call = *index;
                self.emit(out, |w| w.tool_call_args(call, &partial_json));
            }
            _ => {}
        }
    }

    /// An `error` event: Anthropic gave up mid-stream (e.g. `overloaded_error`). The client
    /// gets an OpenAI-style error event (SDKs raise on it) and no `[DONE]`; the meter, seeing an
    /// upstream error, records the stream as truncated. Logged here, since this is the only
    /// place that knows Anthropic's reason.
    fn upstream_error(&mut self, error: WireError, out: &mut VecDeque<Item>) {
        let kind = error.kind.unwrap_or_else(|| "api_error".to_owned());
        let message = ProviderError {
            message: Some(
                error
                    .message
                    .unwrap_or_else(|| "The upstream provider failed mid-stream.".to_owned()),
            ),
            ..ProviderError::default()
        }
        .scrub(self.api_key.as_deref())
        .message
        .unwrap_or_default();
        tracing::warn!(
            request_id = %self.request_id,
            error_type = %kind,
            error = %message,
            "Anthropic ended the stream with an error event"
        );
        let data = json!({
            "error": { "message": message, "type": kind, "param": null, "code": "upstream_error" },
        });
        out.push_back(Ok(Event {
            name: None,
            data: data.to_string(),
        }));
        self.finished = true;
    }
}

/// Drives `translator` over `upstream`, one upstream event per poll that needs one.
fn translate_stream(upstream: EventStream, translator: StreamTranslator) -> EventStream {
    futures::stream::unfold(
        (upstream, translator, VecDeque::new()),
        |(mut upstream, mut translator, mut queue)| async move {
            loop {
                if let Some(item) = queue.pop_front() {
                    return Some((item, (upstream, translator, queue)));
                }
                if translator.finished {
                    // Drops the upstream response, closing the connection.
                    return None;
                }
                match upstream.next().await {
                    // Closed without `message_stop`: end without `[DONE]` (truncated).
                    None => return None,
                    Some(Err(e)) => {
                        translator.finished = true;
                        return Some((Err(e), (upstream, translator, queue)));
                    }
                    Some(Ok(event)) => translator.on_event(&event, &mut queue),
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn request(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).expect("valid request")
    }

    fn translate(body: Value) -> Result<Outbound, GatewayError> {
        translate_request(&request(body), "claude-x", None)
    }

    fn param_of(err: GatewayError) -> String {
        match err {
            GatewayError::InvalidRequest { param, .. } => param.unwrap_or_default(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn hoists_system_merges_roles_and_orders_tool_results_first() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "there"}]},
                {"role": "developer", "content": "Use tools."},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call.1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call.1", "content": "one"},
                {"role": "user", "content": "and?"},
                {"role": "tool", "tool_call_id": "call_2", "content": ""},
                {"role": "assistant", "content": "Well "}
            ],
            "stop": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "u-1",
            "seed": 7,
            "presence_penalty": 1.0
        }))
        .unwrap();
        assert_eq!(out.json_tool, None);
        assert_eq!(
            out.body,
            json!({
                "model": "claude-x",
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "Be brief.\n\nUse tools.",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "text", "text": "there"}
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
                        {"type": "tool_result", "tool_use_id": "call_2"},
                        {"type": "text", "text": "and?"}
                    ]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Well"}]}
                ],
                "stop_sequences": ["END"],
                "temperature": 0.5,
                "top_p": 0.9,
                "metadata": {"user_id": "u-1"}
            })
        );
    }

    #[test]
    fn max_tokens_comes_from_the_request_then_the_deployment_then_the_default() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let r = request(body.clone());
        assert_eq!(
            translate_request(&r, "c", Some(321)).unwrap().body["max_tokens"],
            321
        );
        assert_eq!(
            translate_request(&r, "c", None).unwrap().body["max_tokens"],
            4096
        );
        let mut with = body;
        with["max_tokens"] = json!(50);
        with["max_completion_tokens"] = json!(60);
        assert_eq!(
            translate_request(&request(with), "c", Some(321))
                .unwrap()
                .body["max_tokens"],
            60
        );
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let out = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            out.body["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn tools_and_tool_choice() {
        let base = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        });
        let out = translate(base.clone()).unwrap();
        assert_eq!(
            out.body["tools"],
            json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
        );
        assert!(out.body.get("tool_choice").is_none());
        let choice = |c: Value, parallel: Option<bool>| {
            let mut b = base.clone();
            b["tool_choice"] = c;
            if let Some(p) = parallel {
                b["parallel_tool_calls"] = json!(p);
            }
            translate(b).unwrap().body["tool_choice"].clone()
        };
        assert_eq!(choice(json!("auto"), None), json!({"type": "auto"}));
        assert_eq!(choice(json!("none"), None), json!({"type": "none"}));
        assert_eq!(choice(json!("required"), None), json!({"type": "any"}));
        assert_eq!(
            choice(
                json!({"type": "function", "function": {"name": "get_weather"}}),
                Some(false)
            ),
            json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            choice(Value::Null, Some(false)),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        // No tools: no tool_choice either (Anthropic refuses one alone).
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "none"})).unwrap();
        assert!(out.body.get("tool_choice").is_none() && out.body.get("tools").is_none());
    }

    #[test]
    fn json_modes_are_emulated_with_a_forced_tool() {
        let out = translate(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather report", "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}}
        }))
        .unwrap();
        assert_eq!(out.json_tool.as_deref(), Some("weather_report"));
        assert_eq!(out.body["tools"][0]["name"], "weather_report");
        assert_eq!(
            out.body["tools"][0]["input_schema"]["properties"]["t"]["type"],
            "number"
        );
        assert_eq!(
            out.body["tool_choice"],
            json!({"type": "tool", "name": "weather_report"})
        );

        let out = translate(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f"}}]
        }))
        .unwrap();
        assert_eq!(out.json_tool.as_deref(), Some(JSON_OBJECT_TOOL));
        assert_eq!(out.body["tools"].as_array().unwrap().len(), 2);
        assert_eq!(out.body["tool_choice"], json!({"type": "any"}));

        // A forced client tool wins: no JSON tool.
        let out = translate(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required"
        }))
        .unwrap();
        assert_eq!(out.json_tool, None);
        assert_eq!(out.body["tools"].as_array().unwrap().len(), 1);

        let err = translate(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "json_response"}}]
        }))
        .unwrap_err();
        assert_eq!(param_of(err), "response_format");
    }

    #[test]
    fn refuses_what_anthropic_cannot_answer_naming_the_field() {
        let err = translate(
            json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(param_of(err), "n");
        let err = translate(json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
            ]}
        ]}))
        .unwrap_err();
        assert_eq!(
            param_of(err),
            "messages[2].tool_calls[1].function.arguments"
        );
        let err = translate(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
        ]}))
        .unwrap_err();
        assert_eq!(
            param_of(err),
            "messages[0].tool_calls[0].function.arguments"
        );
    }

    #[test]
    fn completions_translate_blocks_usage_and_stop_reasons() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-real",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check. "},
                {"type": "text", "text": "One moment.", "citations": null},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"unit": "celsius", "city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 9, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
        });
        let out = completion(
            body.to_string().as_bytes(),
            "chatcmpl-x".into(),
            "fallback",
            None,
        )
        .unwrap();
        assert_eq!(out.model, "claude-real");
        assert_eq!(out.text.as_deref(), Some("Let me check. One moment."));
        assert_eq!(
            out.tool_calls,
            vec![ToolCallOut {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris","unit":"celsius"}"#.into()
            }]
        );
        assert_eq!(out.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            out.usage,
            Some(Usage {
                prompt_tokens: 123,
                completion_tokens: 9,
                cache_read_tokens: 100,
                cache_write_tokens: 20
            })
        );
        let json = out.to_json();
        assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 100);

        for (reason, want) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("pause_turn", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("something_new", FinishReason::Stop),
        ] {
            let body = json!({"model": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": reason});
            let out = completion(body.to_string().as_bytes(), "i".into(), "f", None).unwrap();
            assert_eq!(out.finish_reason, want, "{reason}");
        }
        assert!(matches!(
            completion(b"<html>", "i".into(), "f", None),
            Err(GatewayError::UpstreamProtocol(_))
        ));
    }

    #[test]
    fn the_json_tool_call_comes_back_as_content() {
        let body = json!({
            "model": "m", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "json_response", "input": {"a": [1, 2]}}],
            "usage": {"input_tokens": 1, "output_tokens": 2}
        });
        let out = completion(
            body.to_string().as_bytes(),
            "i".into(),
            "f",
            Some("json_response"),
        )
        .unwrap();
        assert_eq!(out.text.as_deref(), Some(r#"{"a":[1,2]}"#));
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn errors_keep_anthropic_message_and_flag_context_overflow() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_1"}"#;
        let e = provider_error(StatusCode::BAD_REQUEST, body);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.kind.as_deref(), Some("invalid_request_error"));
        let mapped = transport::error_for_status(StatusCode::BAD_REQUEST, None, e);
        assert_eq!(mapped.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            mapped.body().error.code.as_deref(),
            Some("context_length_exceeded")
        );

        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = provider_error(StatusCode::from_u16(529).unwrap(), body);
        assert_eq!(e.code, None);
        let mapped = transport::error_for_status(StatusCode::from_u16(529).unwrap(), None, e);
        assert_eq!(mapped.status(), StatusCode::BAD_GATEWAY);
        assert!(mapped.body().error.message.contains("Overloaded"));

        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 10000 > 4096"}}"#;
        assert_eq!(provider_error(StatusCode::BAD_REQUEST, body).code, None);
    }

    // --- streams ---

    fn ev(name: &str, data: Value) -> Event {
        Event {
            name: Some(name.to_owned()),
            data: data.to_string(),
        }
    }

    /// Runs the translator over `events`; returns the OpenAI events' data (errors as "ERR …").
    fn run(events: &[Event], json_tool: Option<&str>) -> Vec<String> {
        let mut t = StreamTranslator::new(
            "chatcmpl-t".into(),
            "fallback".into(),
            json_tool.map(str::to_owned),
            Uuid::nil(),
            Some("sk-ant-secret-123456".into()),
        );
        let mut out = VecDeque::new();
        for e in events {
            t.on_event(e, &mut out);
        }
        out.into_iter()
            .map(|i| match i {
                Ok(e) => e.data,
                Err(e) => format!("ERR {}", e.0),
            })
            .collect()
    }

    fn delta(data: &str) -> Value {
        let v: Value = serde_json::from_str(data).unwrap();
        v["choices"][0]["delta"].clone()
    }

    fn message_start(input: u64) -> Event {
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-real", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}}}),
        )
    }

    #[test]
    fn a_text_stream_becomes_openai_chunks_ending_in_done() {
        let events = vec![
            message_start(8),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x"}}),
            ),
            ev(
                "brand_new_event",
                json!({"type": "brand_new_event", "stuff": 1}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ];
        let out = run(&events, None);
        assert_eq!(out.len(), 6, "{out:#?}");
        let first: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(first["model"], "claude-real");
        assert_eq!(first["id"], "chatcmpl-t");
        assert_eq!(delta(&out[0])["role"], "assistant");
        assert_eq!(delta(&out[1])["content"], "Hello");
        assert_eq!(delta(&out[2])["content"], " world");
        let finish: Value = serde_json::from_str(&out[3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        let usage: Value = serde_json::from_str(&out[4]).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 12);
        assert_eq!(usage["usage"]["completion_tokens"], 5);
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(out[5], "[DONE]");
    }

    #[test]
    fn tool_use_streams_as_tool_call_deltas() {
        let events = vec![
            message_start(20),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure."}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 2}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 10}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ];
        let out = run(&events, None);
        let deltas: Vec<Value> = out[..out.len() - 2].iter().map(|d| delta(d)).collect();
        assert_eq!(deltas[1]["content"], "Sure.");
        assert_eq!(
            deltas[2]["tool_calls"][0],
            json!({"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}})
        );
        assert_eq!(
            deltas[3]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":"
        );
        assert_eq!(
            deltas[4]["tool_calls"][0]["function"]["arguments"],
            "\"Paris\"}"
        );
        assert_eq!(deltas[5]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[5]["tool_calls"][0]["id"], "toolu_B");
        assert_eq!(
            deltas[6]["tool_calls"][0],
            json!({"index": 1, "function": {"arguments": "{}"}})
        );
        let finish: Value = serde_json::from_str(&out[7]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out.last().unwrap(), "[DONE]");
    }

    #[test]
    fn the_json_tool_streams_as_content() {
        let events = vec![
            message_start(1),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_J", "name": "json_response", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ];
        let out = run(&events, Some("json_response"));
        assert_eq!(delta(&out[1])["content"], "{\"a\":");
        assert_eq!(delta(&out[2])["content"], "1}");
        let finish: Value = serde_json::from_str(&out[3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn an_error_event_ends_the_stream_without_done() {
        let events = vec![
            message_start(1),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            ),
            ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (key sk-ant-secret-123456)"}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ];
        let out = run(&events, None);
        assert_eq!(out.len(), 3, "{out:#?}");
        let err: Value = serde_json::from_str(&out[2]).unwrap();
        assert_eq!(err["error"]["type"], "overloaded_error");
        assert_eq!(err["error"]["code"], "upstream_error");
        assert_eq!(err["error"]["message"], "Overloaded (key [redacted])");
        assert!(!out.iter().any(|d| d == "[DONE]"));
    }

    #[test]
    fn a_malformed_known_event_breaks_the_stream_and_unknown_ones_are_skipped() {
        let out = run(
            &[
                Event {
                    name: Some("future_thing".into()),
                    data: "not json".into(),
                },
                message_start(1),
                Event {
                    name: Some("content_block_delta".into()),
                    data: "{\"type\":\"content_block_delta\"}".into(),
                },
                ev("message_stop", json!({"type": "message_stop"})),
            ],
            None,
        );
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out[1].starts_with("ERR malformed Anthropic `content_block_delta` event"));
    }

    #[tokio::test]
    async fn translate_stream_is_lazy_and_ends_without_done_when_cut() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        let upstream = futures::stream::iter(vec![
            Ok(message_start(1)),
            Ok(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))),
            Ok(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}))),
            Err(StreamError("connection reset".into())),
            Ok(ev("message_stop", json!({"type": "message_stop"}))),
        ])
        .inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .boxed();
        let translator = StreamTranslator::new("i".into(), "m".into(), None, Uuid::nil(), None);
        let mut stream = translate_stream(upstream, translator);
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(delta(&first.data)["role"], "assistant");
        assert_eq!(
            pulled.load(Ordering::SeqCst),
            1,
            "one upstream event per output"
        );
        let rest: Vec<Item> = stream.collect().await;
        assert_eq!(rest.len(), 2, "text, then the error; nothing after it");
        assert_eq!(rest[1], Err(StreamError("connection reset".into())));
        assert_eq!(pulled.load(Ordering::SeqCst), 4);
    }
}
