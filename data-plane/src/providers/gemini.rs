//! The Google Gemini adapter (`gemini` providers): chat through `generateContent` /
//! `streamGenerateContent`, embeddings through `batchEmbedContents`.
//!
//! Wire format as Google documents it:
//! - requests and responses: <https://ai.google.dev/api/generate-content>
//! - embeddings: <https://ai.google.dev/api/embeddings>
//! - tools: <https://ai.google.dev/gemini-api/docs/function-calling>
//! - thought signatures: <https://ai.google.dev/gemini-api/docs/thought-signatures>
//! - errors: <https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes>
//!
//! # Transport
//!
//! `POST {base}/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` for streams
//! (server-sent events, each `data:` a whole `GenerateContentResponse`). The base URL defaults to
//! `https://generativelanguage.googleapis.com/v1beta`. The key goes in the `x-goog-api-key`
//! header, never in the `key=` query parameter Google also accepts: URLs end up in proxy and
//! access logs. An upstream model that already names its collection (`tunedModels/x`,
//! `models/x`) is used as is.
//!
//! # Request (from [`Conversation`])
//!
//! - `system`/`developer` messages → `systemInstruction`.
//! - user → `user`, assistant → `model`, tool results → `user` contents (Google's function-calling
//!   examples send results with the user role); consecutive contents of one role are merged, and
//!   messages without any content are skipped (Gemini refuses empty `parts`).
//! - text → `{text}`; `data:` image URLs → `inlineData {mimeType, data}`; a Gemini Files API URI
//!   (`https://generativelanguage.googleapis.com/…/files/…`) → `fileData {fileUri}`. Any other
//!   http(s) image URL is refused with a 400: Gemini does not fetch arbitrary URLs, and
//!   downloading on the client's behalf would turn the gateway into an open fetcher.
//! - assistant tool calls → `functionCall {name, args}`; tool results → `functionResponse {name,
//!   response: {content}}`. Gemini matches results to calls by *name*, so the name is taken from
//!   the earlier assistant tool call with the result's `tool_call_id` (a 400 if there is none).
//! - thought signatures: Gemini 3 refuses a history whose function calls lack the
//!   `thoughtSignature` it produced. Answers carry it to the client the way Google's own
//!   OpenAI-compatible endpoint does, as `tool_calls[].extra_content.google.thought_signature`;
//!   when the client sends the tool call back with it, it is returned to Gemini. A step with no
//!   signature at all (history from another model, or a client that drops unknown fields) gets
//!   the documented placeholder `skip_thought_signature_validator` on its first call.
//! - `tools` → one `functionDeclarations` tool. Gemini's `parameters` is an OpenAPI-style subset
//!   of JSON Schema that refuses unknown keys, so schemas are rewritten: local `$ref`s
//!   (`#/$defs/…`, `#/definitions/…`) are inlined, `type: [T, "null"]` and `anyOf` with a
//!   `null` member become `nullable`, `oneOf` becomes `anyOf`, `const` becomes a one-value
//!   `enum`, a single-member `allOf` is inlined, string/number `format`s Gemini does not know are
//!   dropped, and every other key Gemini does not list (`additionalProperties`, `$schema`,
//!   `examples`, `strict`, …) is dropped. An object schema with no properties is omitted at the
//!   top (a function without parameters) and loses its `type` when nested: Gemini refuses an
//!   `OBJECT` with no properties.
//! - `tool_choice` → `toolConfig.functionCallingConfig.mode`: `auto` → `AUTO`, `none` →
//!   `NONE`, `required` → `ANY`, a named function → `ANY` with `allowedFunctionNames`.
//! - `temperature`, `top_p`, `max_completion_tokens`/`max_tokens`, `stop`, `seed` →
//!   `generationConfig`; `response_format` `json_object` → `responseMimeType:
//!   application/json`, `json_schema` → the same plus `responseSchema` (rewritten as above).
//! - `n` > 1 is refused with a 400: answers here have one choice (`candidateCount` is not used).
//!   `presence_penalty`/`frequency_penalty` are dropped: several Gemini models refuse them.
//!   Every other OpenAI field is dropped (see [`canonical`](super::canonical)).
//!
//! # Answer
//!
//! The first candidate's parts: text → content (parts flagged `thought` are skipped),
//! `functionCall` → a tool call with id `call_<request id>_<n>` (Gemini gives calls no id; ids
//! derived from the request are stable for one answer and unique across a conversation).
//! `finishReason`: `STOP` → `stop` (`tool_calls` when the answer calls tools), `MAX_TOKENS` →
//! `length`, `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII` and the image
//! variants → `content_filter`, anything else → `stop`. A prompt Gemini blocked
//! (`promptFeedback.blockReason`, no candidates) is an empty answer with `content_filter`, the
//! same for streams and whole answers, so the client learns it the way OpenAI tells it.
//! `usageMetadata`: prompt = `promptTokenCount` (cached tokens included) +
//! `toolUsePromptTokenCount`; completion = `candidatesTokenCount` + `thoughtsTokenCount`
//! (thinking is billed as output); `cachedContentTokenCount` → cache reads.
//!
//! A stream becomes: the role chunk, text deltas, each whole `functionCall` as a tool-call start
//! plus one arguments fragment (Gemini sends calls whole), the finish chunk when a
//! `finishReason` arrives, the usage chunk (from the last `usageMetadata`), and `[DONE]` only if
//! the upstream ended normally *after* a `finishReason`. A stream that ends without one was cut:
//! it ends without `[DONE]` and the meter reports it truncated.
//!
//! # Errors
//!
//! Gemini's `{"error":{"code","message","status","details"}}` is mapped through
//! [`transport::error_for_status`] with Gemini's message kept and its `status` (lowercased) as the
//! code, except: a key Gemini refuses (`API_KEY_INVALID`, which Gemini answers with a *400*;
//! `UNAUTHENTICATED`; any 401/403) → 502 `upstream_auth_failed`, never showing the key; a
//! prompt over the context window (400 "The input token count (…) exceeds the maximum number of
//! tokens allowed (…)") → 400 `context_length_exceeded`; a 429 keeps `Retry-After`, or takes it
//! from the `RetryInfo.retryDelay` detail when the header is missing.
//!
//! # Embeddings
//!
//! `POST {base}/models/{model}:batchEmbedContents` with one request per input (batches of at
//! most 100, Gemini's limit; larger inputs are sent as consecutive batches) and `dimensions` →
//! `outputDimensionality`. Token-id inputs are refused with a 400 (Gemini embeds text only).
//! `encoding_format: "base64"` is honoured as OpenAI does it: little-endian `f32`s, base64. Gemini
//! reports no token usage for embeddings, so the body's `usage` is counted locally with
//! [`crate::tokens`] and [`Embeddings::usage`] is `None`, which makes the meter mark the event
//! estimated.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::BytesMut;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::canonical::{
    ChunkWriter, CompletionOut, Conversation, FinishReason, ImageSource, Part, ResponseFormat,
    Role, ToolCallOut, ToolChoice, ToolDef, completion_id, now_unix,
};
use super::{
    Call, EmbedCall, Embeddings, Event, EventStream, Reply, StreamError, Usage, transport,
};
use crate::error::{GatewayError, ProviderError, invalid};
use crate::wire::{ChatRequest, EmbeddingInput};

/// Where Google wants the API key.
const API_KEY_HEADER: &str = "x-goog-api-key";
/// Google's documented placeholder for a function call Gemini did not produce itself.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";
/// Most requests `batchEmbedContents` takes at once.
const MAX_EMBED_BATCH: usize = 100;
/// How deep `$ref`s and nested schemas are followed; deeper parts are dropped (and a
/// self-referencing schema cannot recurse forever).
const MAX_SCHEMA_DEPTH: usize = 32;
/// How many schema nodes one rewrite may produce: inlining `$ref`s can multiply a small schema
/// (a node referring to the root twice doubles at every level), so expansion is capped.
const MAX_SCHEMA_NODES: usize = 10_000;
/// Keys of Gemini's `Schema` object (<https://ai.google.dev/api/caching#Schema>).
const SCHEMA_KEYS: &[&str] = &[
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

// ---------------------------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------------------------

pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    // Validation first: a request Gemini cannot take is refused before any network traffic.
    let body = request_body(call.request)?;
    let record = &call.provider.record;
    let base = transport::base_url(record)?;
    let model = model_resource(call.upstream_model)?;
    let api_key = transport::api_key(call.provider)?;
    let stream = call.request.is_stream();
    let url = if stream {
        format!("{base}/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{base}/{model}:generateContent")
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| GatewayError::Internal(format!("cannot serialize the upstream body: {e}")))?;

    let mut builder = transport::json_post(call, url, body);
    if let Some(key) = api_key {
        builder = builder.header(API_KEY_HEADER, key_header(key, record.id)?);
    }

    let response = transport::send(call, builder).await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = transport::read_error_body(response, call).await;
        return Err(upstream_error(status, retry_after, &body, api_key));
    }

    if stream {
        transport::require_event_stream(&response)?;
        return Ok(Reply::Stream(translate_stream(
            transport::sse_events(response),
            call.request_id,
            call.upstream_model.to_owned(),
            api_key.map(str::to_owned),
        )));
    }

    let body = transport::read_body(response, transport::MAX_COMPLETION_BYTES, call).await?;
    let answer: GenerateContentResponse = serde_json::from_slice(&body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("generateContent body is not a response: {e}"))
    })?;
    Ok(Reply::Complete(completion(
        answer,
        call.request_id,
        call.upstream_model,
    )))
}

/// The model's resource name for the URL path: `models/{id}` unless the id already names its
/// collection. Refuses ids that would change the URL's meaning (`?`, `#`, `..`, …).
fn model_resource(model: &str) -> Result<String, GatewayError> {
    let model = model.trim();
    let valid = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'/'))
        && !model
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if !valid {
        return Err(GatewayError::ProviderUnavailable(format!(
            "upstream model {model:?} is not a valid Gemini model name"
        )));
    }
    Ok(if model.contains('/') {
        model.to_owned()
    } else {
        format!("models/{model}")
    })
}

/// The key as a header value marked sensitive, so no debug output of the request shows it.
fn key_header(key: &str, provider: Uuid) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(key).map_err(|_| {
        GatewayError::ProviderUnavailable(format!(
            "provider {provider}: the API key is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Request translation
// ---------------------------------------------------------------------------------------------

/// The `generateContent` body for `request` (the same for streams: streaming is in the URL).
fn request_body(request: &ChatRequest) -> Result<Value, GatewayError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(invalid(
            "n",
            "This model's provider (gemini) returns one choice per request: 'n' must be 1.",
        ));
    }
    let conversation = Conversation::from_request(request)?;
    // Conversation keeps one turn per non-system message, in order: this maps a turn back to
    // its message index for error messages.
    let message_index: Vec<usize> = request
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !matches!(m.role.as_str(), "system" | "developer"))
        .map(|(i, _)| i)
        .collect();
    let signatures = thought_signatures(request);
    let contents = contents(&conversation, &message_index, &signatures)?;
    if contents.is_empty() {
        return Err(invalid(
            "messages",
            "Invalid value for 'messages': Gemini needs at least one user, assistant or tool message with content.",
        ));
    }

    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = &conversation.system {
        body.insert(
            "systemInstruction".into(),
            json!({ "parts": [{ "text": system }] }),
        );
    }
    if !conversation.tools.is_empty() {
        let declarations: Vec<Value> = conversation
            .tools
            .iter()
            .map(function_declaration)
            .collect();
        body.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
        if let Some(choice) = &conversation.tool_choice {
            body.insert(
                "toolConfig".into(),
                tool_config(choice, &conversation.tools)?,
            );
        }
    }
    let config = generation_config(&conversation, request);
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// Thought signatures the client sent back, by tool call id
/// (`tool_calls[].extra_content.google.thought_signature`).
fn thought_signatures(request: &ChatRequest) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    for message in request.messages.iter().filter(|m| m.role == "assistant") {
        let Some(Value::Array(calls)) = message.extra.get("tool_calls") else {
            continue;
        };
        for call in calls {
            if let (Some(id), Some(signature)) = (
                call.get("id").and_then(Value::as_str),
                call.pointer("/extra_content/google/thought_signature")
                    .and_then(Value::as_str),
            ) {
                out.insert(id, signature);
            }
        }
    }
    out
}

/// The `contents` array: roles mapped, consecutive same-role contents merged, empty ones skipped.
fn contents(
    conversation: &Conversation,
    message_index: &[usize],
    signatures: &HashMap<&str, &str>,
) -> Result<Vec<Value>, GatewayError> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool call id → function name, from the assistant turns seen so far.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (t, turn) in conversation.turns.iter().enumerate() {
        let i = message_index.get(t).copied().unwrap_or(t);
        let role = match turn.role {
            Role::Assistant => "model",
            Role::User | Role::Tool => "user",
        };
        let mut parts = Vec::with_capacity(turn.parts.len());
        let mut call_number = 0usize;
        for part in &turn.parts {
            match part {
                Part::Text(text) if text.is_empty() => {}
                Part::Text(text) => parts.push(json!({ "text": text })),
                Part::Image(source) => parts.push(image_part(source, i)?),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    let args = call_arguments(arguments, i, call_number)?;
                    let mut part = json!({ "functionCall": { "name": name, "args": args } });
                    match signatures.get(id.as_str()) {
                        Some(signature) => part["thoughtSignature"] = json!(signature),
                        None if call_number == 0 => {
                            part["thoughtSignature"] = json!(SKIP_SIGNATURE)
                        }
                        None => {}
                    }
                    parts.push(part);
                    if !id.is_empty() {
                        names.insert(id, name);
                    }
                    call_number += 1;
                }
                Part::ToolResult { call_id, content } => {
                    let name = names.get(call_id.as_str()).ok_or_else(|| {
                        invalid(
                            format!("messages[{i}].tool_call_id"),
                            format!(
                                "Invalid value for 'messages[{i}].tool_call_id': no earlier assistant tool call has the id '{call_id}'. Gemini matches tool results to calls by function name, taken from that call."
                            ),
                        )
                    })?;
                    parts.push(json!({
                        "functionResponse": { "name": name, "response": { "content": content } }
                    }));
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect())
}

fn image_part(source: &ImageSource, i: usize) -> Result<Value, GatewayError> {
    match source {
        ImageSource::Base64 { media_type, data } => Ok(json!({
            "inlineData": { "mimeType": media_type, "data": data }
        })),
        ImageSource::Url(url) if is_files_api_uri(url) => Ok(json!({
            "fileData": { "fileUri": url }
        })),
        ImageSource::Url(_) => Err(invalid(
            format!("messages[{i}].content"),
            "Image URLs are not supported for this model's provider (gemini): send the image inline as a data: URL (data:image/png;base64,…) or as a Gemini Files API URI.",
        )),
    }
}

/// A file uploaded with Gemini's Files API, the only URL `fileData` takes on this API.
fn is_files_api_uri(url: &str) -> bool {
    url.strip_prefix("https://generativelanguage.googleapis.com/")
        .is_some_and(|rest| rest.contains("files/"))
}

/// A tool call's arguments as the JSON object Gemini's `args` must be.
fn call_arguments(arguments: &str, i: usize, j: usize) -> Result<Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(args)) => Ok(Value::Object(args)),
        _ => Err(invalid(
            format!("messages[{i}].tool_calls[{j}].function.arguments"),
            format!(
                "Invalid value for 'messages[{i}].tool_calls[{j}].function.arguments': expected a JSON object."
            ),
        )),
    }
}

fn function_declaration(tool: &ToolDef) -> Value {
    let mut declaration = Map::new();
    declaration.insert("name".into(), json!(tool.name));
    if let Some(description) = &tool.description {
        declaration.insert("description".into(), json!(description));
    }
    let parameters = gemini_schema(&tool.parameters);
    if !is_empty_object_schema(&parameters) {
        declaration.insert("parameters".into(), parameters);
    }
    Value::Object(declaration)
}

fn tool_config(choice: &ToolChoice, tools: &[ToolDef]) -> Result<Value, GatewayError> {
    let config = match choice {
        ToolChoice::Auto => json!({ "mode": "AUTO" }),
        ToolChoice::None => json!({ "mode": "NONE" }),
        ToolChoice::Required => json!({ "mode": "ANY" }),
        ToolChoice::Function(name) => {
            if !tools.iter().any(|t| &t.name == name) {
                return Err(invalid(
                    "tool_choice",
                    format!(
                        "Invalid value for 'tool_choice': no tool named '{name}' is in 'tools'."
                    ),
                ));
            }
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
    };
    Ok(json!({ "functionCallingConfig": config }))
}

fn generation_config(conversation: &Conversation, request: &ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(t) = conversation.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = conversation.top_p {
        config.insert("topP".into(), json!(p));
    }
    if let Some(max) = conversation.max_tokens {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if !conversation.stop.is_empty() {
        config.insert("stopSequences".into(), json!(conversation.stop));
    }
    if let Some(seed) = request.seed {
        config.insert("seed".into(), json!(seed));
    }
    match &conversation.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            config.insert("responseMimeType".into(), json!("application/json"));
            let schema = gemini_schema(schema);
            // An object with no properties constrains nothing Gemini can express: JSON mode.
            if !is_empty_object_schema(&schema) {
                config.insert("responseSchema".into(), schema);
            }
        }
    }
    config
}

/// `{}` or an object schema with no properties (and no alternatives).
fn is_empty_object_schema(schema: &Value) -> bool {
    let Some(obj) = schema.as_object() else {
        return true;
    };
    let typ = obj.get("type").and_then(Value::as_str);
    typ.is_none_or(|t| t.eq_ignore_ascii_case("object"))
        && obj
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        && !obj.contains_key("anyOf")
        && !obj.contains_key("items")
        && !obj.contains_key("enum")
}

/// Rewrites a JSON Schema into Gemini's `Schema` subset; see the module docs for the rules.
fn gemini_schema(schema: &Value) -> Value {
    let mut rewrite = SchemaRewrite {
        root: schema,
        budget: MAX_SCHEMA_NODES,
    };
    rewrite_schema(schema, &mut rewrite, 0)
}

/// One schema rewrite: the whole schema (for `$ref`s) and the nodes it may still produce.
struct SchemaRewrite<'a> {
    root: &'a Value,
    budget: usize,
}

fn rewrite_schema(schema: &Value, cx: &mut SchemaRewrite<'_>, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else {
        // `true` (anything) and other non-object schemas carry no constraint Gemini can use.
        return json!({});
    };
    if depth > MAX_SCHEMA_DEPTH || cx.budget == 0 {
        return json!({});
    }
    cx.budget -= 1;
    let root = cx.root;
    if let Some(target) = obj
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve_ref(root, r))
    {
        let mut out = rewrite_schema(target, cx, depth + 1);
        // Siblings of `$ref` (a description, usually) refine the referenced schema.
        let mut siblings = obj.clone();
        siblings.remove("$ref");
        if let (Value::Object(out_obj), Value::Object(extra)) = (
            &mut out,
            rewrite_schema(&Value::Object(siblings), cx, depth + 1),
        ) {
            out_obj.extend(extra);
        }
        return out;
    }

    let mut out = Map::new();
    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (key, value) in obj {
        match key.as_str() {
            "type" => match value {
                Value::String(t) if t == "null" => nullable = true,
                Value::String(_) => {
                    out.insert("type".into(), value.clone());
                }
                Value::Array(types) => {
                    let concrete: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    nullable |= concrete.len() < types.len();
                    // Several concrete types have no Gemini equivalent but "any": keep none.
                    if let [only] = concrete.as_slice() {
                        out.insert("type".into(), (*only).clone());
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Some(props) = value.as_object() {
                    let props: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), nested_schema(s, cx, depth)))
                        .collect();
                    out.insert("properties".into(), Value::Object(props));
                }
            }
            "items" if value.is_object() => {
                out.insert("items".into(), nested_schema(value, cx, depth));
            }
            // Tuple forms (`items: [...]`) have no Gemini equivalent.
            "items" => {}
            "anyOf" | "oneOf" => {
                let Some(members) = value.as_array() else {
                    continue;
                };
                let mut kept = Vec::with_capacity(members.len());
                for member in members {
                    if member.get("type").and_then(Value::as_str) == Some("null") {
                        nullable = true;
                    } else {
                        kept.push(nested_schema(member, cx, depth));
                    }
                }
                match kept.len() {
                    0 => {}
                    1 => {
                        if let Some(Value::Object(only)) = kept.pop() {
                            for (k, v) in only {
                                out.entry(k).or_insert(v);
                            }
                        }
                    }
                    _ => {
                        out.insert("anyOf".into(), Value::Array(kept));
                    }
                }
            }
            "allOf" => {
                for member in value.as_array().into_iter().flatten() {
                    if let Value::Object(part) = rewrite_schema(member, cx, depth + 1) {
                        for (k, v) in part {
                            out.entry(k).or_insert(v);
                        }
                    }
                }
            }
            // Gemini's enums are string enums.
            "const" if value.is_string() => {
                out.insert("enum".into(), json!([value]));
                out.entry("type").or_insert_with(|| json!("string"));
            }
            "format" => {
                let typ = obj.get("type").and_then(Value::as_str).unwrap_or_default();
                let known = match typ {
                    "string" => matches!(value.as_str(), Some("enum" | "date-time")),
                    "number" | "integer" => {
                        matches!(value.as_str(), Some("float" | "double" | "int32" | "int64"))
                    }
                    _ => false,
                };
                if known {
                    out.insert("format".into(), value.clone());
                }
            }
            "nullable" => {}
            k if SCHEMA_KEYS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Value::Object(out)
}

/// A schema below the top: like [`rewrite_schema`], but a free-form object loses its `type`
/// (Gemini refuses an `OBJECT` with no properties).
fn nested_schema(schema: &Value, cx: &mut SchemaRewrite<'_>, depth: usize) -> Value {
    let mut out = rewrite_schema(schema, cx, depth + 1);
    if let Value::Object(obj) = &mut out {
        let is_object = obj
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("object"));
        let no_properties = obj
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if is_object && no_properties {
            obj.remove("type");
            obj.remove("properties");
            obj.remove("required");
        }
    }
    out
}

/// Resolves `#/$defs/Name` or `#/definitions/Name` (JSON pointer escapes included) in `root`.
fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        // A reference to the whole schema: recursion, cut off by the depth limit.
        return Some(root);
    }
    root.pointer(pointer)
}

// ---------------------------------------------------------------------------------------------
// Response translation
// ---------------------------------------------------------------------------------------------

/// A `GenerateContentResponse`, as far as the gateway reads it. Also each streamed chunk.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    /// Only in a stream that failed after it started.
    #[serde(default)]
    error: Option<GeminiError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    /// A thought summary (only sent when asked for with `includeThoughts`): not the answer.
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<FunctionCall>,
    #[serde(default)]
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<UsageMetadata> for Usage {
    fn from(u: UsageMetadata) -> Self {
        Usage {
            prompt_tokens: u.prompt_token_count + u.tool_use_prompt_token_count,
            completion_tokens: u.candidates_token_count + u.thoughts_token_count,
            cache_read_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
        }
    }
}

/// Gemini's `finishReason` in OpenAI's vocabulary (before the tool-call override).
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// The id of the `n`th tool call (0-based) of the answer to `request_id`.
fn tool_call_id(request_id: Uuid, n: usize) -> String {
    format!("call_{}_{n}", request_id.simple())
}

/// A call's `args` as JSON text (`{}` when Gemini sent none).
fn arguments_text(args: Option<&Value>) -> String {
    match args {
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => "{}".to_owned(),
    }
}

fn completion(
    answer: GenerateContentResponse,
    request_id: Uuid,
    upstream_model: &str,
) -> super::Completion {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut signatures: Vec<Option<String>> = Vec::new();
    let mut finish = FinishReason::Stop;
    let blocked = answer
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_ref())
        .is_some();
    if let Some(candidate) = answer.candidates.into_iter().next() {
        for part in candidate.content.into_iter().flat_map(|c| c.parts) {
            if part.thought {
                continue;
            }
            if let Some(t) = part.text {
                text.get_or_insert_with(String::new).push_str(&t);
            }
            if let Some(call) = part.function_call {
                tool_calls.push(ToolCallOut {
                    id: tool_call_id(request_id, tool_calls.len()),
                    arguments: arguments_text(call.args.as_ref()),
                    name: call.name,
                });
                signatures.push(part.thought_signature);
            }
        }
        finish = candidate
            .finish_reason
            .as_deref()
            .map_or(FinishReason::Stop, finish_reason);
    } else if blocked {
        finish = FinishReason::ContentFilter;
    }
    if !tool_calls.is_empty() && finish == FinishReason::Stop {
        finish = FinishReason::ToolCalls;
    }
    let out = CompletionOut {
        id: completion_id(request_id),
        model: answer
            .model_version
            .unwrap_or_else(|| upstream_model.to_owned()),
        created: now_unix(),
        text,
        tool_calls,
        finish_reason: finish,
        usage: answer.usage_metadata.map(Usage::from),
    };
    let mut json = out.to_json();
    if let Some(Value::Array(calls)) = json.pointer_mut("/choices/0/message/tool_calls") {
        for (call, signature) in calls.iter_mut().zip(&signatures) {
            if let Some(signature) = signature {
                call["extra_content"] = signature_json(signature);
            }
        }
    }
    super::Completion {
        body: json.to_string().into(),
        usage: out.usage,
    }
}

/// Where Google's OpenAI-compatible endpoint puts a tool call's thought signature.
fn signature_json(signature: &str) -> Value {
    json!({ "google": { "thought_signature": signature } })
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// State of one translated stream.
struct StreamState {
    upstream: EventStream,
    request_id: Uuid,
    fallback_model: String,
    api_key: Option<String>,
    /// Built at the first chunk, which names the model version.
    writer: Option<ChunkWriter>,
    tool_calls: usize,
    finished: bool,
    usage: Option<Usage>,
    over: bool,
}

type Items = Vec<Result<Event, StreamError>>;

/// Gemini's SSE chunks as OpenAI `chat.completion.chunk` events; see the module docs.
fn translate_stream(
    upstream: EventStream,
    request_id: Uuid,
    fallback_model: String,
    api_key: Option<String>,
) -> EventStream {
    let state = StreamState {
        upstream,
        request_id,
        fallback_model,
        api_key,
        writer: None,
        tool_calls: 0,
        finished: false,
        usage: None,
        over: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.over {
            return None;
        }
        let items = match state.upstream.next().await {
            None => state.end(),
            Some(Err(e)) => state.fail(e),
            Some(Ok(event)) => state.on_event(&event),
        };
        Some((items, state))
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

impl StreamState {
    fn writer(&mut self, model_version: Option<&str>, items: &mut Items) -> ChunkWriter {
        if let Some(w) = &self.writer {
            return w.clone();
        }
        let w = ChunkWriter::new(
            completion_id(self.request_id),
            model_version.unwrap_or(&self.fallback_model).to_owned(),
        );
        items.push(Ok(w.role()));
        self.writer = Some(w.clone());
        w
    }

    fn on_event(&mut self, event: &Event) -> Items {
        let mut items = Items::new();
        if event.data.trim().is_empty() {
            return items;
        }
        let chunk: GenerateContentResponse = match serde_json::from_str(&event.data) {
            Ok(chunk) => chunk,
            Err(e) => {
                return self.fail(StreamError(format!(
                    "a streamed chunk is not a GenerateContentResponse: {e}"
                )));
            }
        };
        if let Some(error) = chunk.error {
            // Passed on in OpenAI's mid-stream error shape; the meter adds no event of its own.
            self.over = true;
            let error = error.provider_error().scrub(self.api_key.as_deref());
            let body = json!({ "error": {
                "message": error.message.unwrap_or_else(|| "The upstream provider failed mid-stream.".to_owned()),
                "type": "api_error",
                "param": null,
                "code": error.code,
            }});
            items.push(Ok(Event {
                name: None,
                data: body.to_string(),
            }));
            return items;
        }
        let writer = self.writer(chunk.model_version.as_deref(), &mut items);
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Some(usage.into());
        }
        if self.finished {
            return items;
        }
        let blocked = chunk
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .is_some();
        let Some(candidate) = chunk.candidates.into_iter().next() else {
            if blocked {
                self.finished = true;
                items.push(Ok(writer.finish(FinishReason::ContentFilter)));
            }
            return items;
        };
        for part in candidate.content.into_iter().flat_map(|c| c.parts) {
            if part.thought {
                continue;
            }
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                items.push(Ok(writer.text(&text)));
            }
            if let Some(call) = part.function_call {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let id = tool_call_id(self.request_id, index);
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let mut start = writer.tool_call_start(index, &id, &call.name);
                if let Some(signature) = &part.thought_signature {
                    start = with_signature(start, signature);
                }
                items.push(Ok(start));
                items.push(Ok(
                    writer.tool_call_args(index, &arguments_text(call.args.as_ref()))
                ));
            }
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            let mut finish = finish_reason(reason);
            if self.tool_calls > 0 && finish == FinishReason::Stop {
                finish = FinishReason::ToolCalls;
            }
            self.finished = true;
            items.push(Ok(writer.finish(finish)));
        }
        items
    }

    /// The upstream ended: complete only if a `finishReason` was seen.
    fn end(&mut self) -> Items {
        self.over = true;
        let mut items = self.usage_item();
        if self.finished {
            items.push(Ok(ChunkWriter::done()));
        }
        items
    }

    /// The upstream broke: whatever usage was seen, then the error (no `[DONE]`).
    fn fail(&mut self, error: StreamError) -> Items {
        self.over = true;
        let mut items = self.usage_item();
        items.push(Err(error));
        items
    }

    fn usage_item(&self) -> Items {
        match (&self.writer, &self.usage) {
            (Some(w), Some(u)) => vec![Ok(w.usage(u))],
            _ => Vec::new(),
        }
    }
}

/// Adds `extra_content.google.thought_signature` to a tool-call start chunk.
fn with_signature(mut event: Event, signature: &str) -> Event {
    if let Ok(mut chunk) = serde_json::from_str::<Value>(&event.data)
        && let Some(call) = chunk.pointer_mut("/choices/0/delta/tool_calls/0")
    {
        call["extra_content"] = signature_json(signature);
        event.data = chunk.to_string();
    }
    event
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Gemini's error object (`google.rpc.Status` in JSON).
#[derive(Debug, Default, Deserialize)]
struct GeminiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

impl GeminiError {
    /// Parses `{"error":{…}}`, or the one-element array form some Google endpoints answer with.
    fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Body {
            One { error: GeminiError },
            Many(Vec<Body>),
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body::One { error }) => error,
            Ok(Body::Many(many)) => match many.into_iter().next() {
                Some(Body::One { error }) => error,
                _ => Self::default(),
            },
            Err(_) => Self::default(),
        }
    }

    /// The `reason` of the `ErrorInfo` detail (e.g. `API_KEY_INVALID`).
    fn reason(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.ErrorInfo"))
            })
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
    }

    /// The `RetryInfo` detail's `retryDelay` ("7s", "0.5s") in whole seconds, rounded up.
    fn retry_delay_secs(&self) -> Option<u64> {
        let delay = self
            .details
            .iter()
            .find(|d| {
                d.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })?
            .get("retryDelay")?
            .as_str()?;
        let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
    }

    fn is_context_too_long(&self) -> bool {
        self.message.as_deref().is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("input token count") && m.contains("exceeds the maximum")
        })
    }

    fn provider_error(&self) -> ProviderError {
        ProviderError {
            message: self.message.clone(),
            kind: None,
            param: None,
            code: self.status.as_deref().map(str::to_ascii_lowercase),
        }
    }
}

/// Maps a Gemini error response; see the module docs.
fn upstream_error(
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    body: &[u8],
    api_key: Option<&str>,
) -> GatewayError {
    let error = GeminiError::parse(body);
    let auth_refused = error.reason() == Some("API_KEY_INVALID")
        || error.status.as_deref() == Some("UNAUTHENTICATED");
    if auth_refused {
        return GatewayError::UpstreamAuthFailed {
            status: status.as_u16(),
        };
    }
    let mut provider_error = error.provider_error().scrub(api_key);
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        provider_error.kind = Some("invalid_request_error".to_owned());
    }
    if status == StatusCode::BAD_REQUEST && error.is_context_too_long() {
        provider_error.param = Some("messages".to_owned());
        provider_error.code = Some("context_length_exceeded".to_owned());
    }
    let retry_after = retry_after.or_else(|| {
        error
            .retry_delay_secs()
            .map(|s| HeaderValue::from(s.max(1)))
    });
    transport::error_for_status(status, retry_after, provider_error)
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    let request = call.request;
    let texts: Vec<&str> = match &request.input {
        EmbeddingInput::Text(text) => vec![text.as_str()],
        EmbeddingInput::Texts(texts) => texts.iter().map(String::as_str).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(invalid(
                "input",
                "This model's provider (gemini) embeds text only: send 'input' as a string or an array of strings, not token ids.",
            ));
        }
    };
    if texts.is_empty() {
        return Err(invalid(
            "input",
            "Invalid value for 'input': must contain at least one string.",
        ));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                format!(
                    "Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."
                ),
            ));
        }
    };
    let record = &call.provider.record;
    let base = transport::base_url(record)?;
    let model = model_resource(call.upstream_model)?;
    let api_key = transport::api_key(call.provider)?;
    // The transport helpers take a chat call for its timing; an empty request stands in.
    let placeholder = ChatRequest::default();
    let transport_call = super::openai::transport_call(call, &placeholder);

    let mut vectors: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
    let mut reported: Option<u64> = None;
    for batch in texts.chunks(MAX_EMBED_BATCH) {
        let body = embed_body(&model, batch, request.dimensions);
        // The placeholder request does not stream, so this accepts JSON.
        let mut builder = transport::json_post(
            &transport_call,
            format!("{base}/{model}:batchEmbedContents"),
            body.to_string(),
        );
        if let Some(key) = api_key {
            builder = builder.header(API_KEY_HEADER, key_header(key, record.id)?);
        }
        let response = transport::send(&transport_call, builder).await?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response.headers().get(RETRY_AFTER).cloned();
            let body = transport::read_error_body(response, &transport_call).await;
            return Err(upstream_error(status, retry_after, &body, api_key));
        }
        let body = transport::read_body(response, transport::MAX_COMPLETION_BYTES, &transport_call)
            .await?;
        let answer: BatchEmbedResponse = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::UpstreamProtocol(format!(
                "batchEmbedContents body is not a response: {e}"
            ))
        })?;
        if answer.embeddings.len() != batch.len() {
            return Err(GatewayError::UpstreamProtocol(format!(
                "batchEmbedContents returned {} embeddings for {} inputs",
                answer.embeddings.len(),
                batch.len()
            )));
        }
        if let Some(usage) = answer.usage_metadata {
            *reported.get_or_insert(0) += usage.prompt_token_count;
        }
        vectors.extend(answer.embeddings.into_iter().map(|e| e.values));
    }

    // Gemini does not report embedding tokens (today): count them locally and let the meter
    // mark the event estimated. If it ever does, its count wins.
    let (prompt_tokens, usage) = match reported {
        Some(tokens) => (tokens, Some(Usage::new(tokens, 0))),
        None => (crate::tokens::embedding_input_tokens(&request.input), None),
    };
    let body = embeddings_json(&vectors, call.upstream_model, prompt_tokens, base64);
    Ok(Embeddings {
        body: body.to_string().into(),
        usage,
    })
}

/// The `batchEmbedContents` body for `texts`.
fn embed_body(model: &str, texts: &[&str], dimensions: Option<u32>) -> Value {
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut r = json!({ "model": model, "content": { "parts": [{ "text": text }] } });
            if let Some(d) = dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    json!({ "requests": requests })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEmbedResponse {
    #[serde(default)]
    embeddings: Vec<ContentEmbedding>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

/// OpenAI's embeddings list.
fn embeddings_json(vectors: &[Vec<f32>], model: &str, prompt_tokens: u64, base64: bool) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = if base64 {
                let mut bytes = BytesMut::with_capacity(values.len() * 4);
                for v in values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
            } else {
                json!(values)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn body_for(request: Value) -> Result<Value, GatewayError> {
        request_body(&ChatRequest::parse(request.to_string().as_bytes())?)
    }

    fn event(data: Value) -> Result<Event, StreamError> {
        Ok(Event {
            name: None,
            data: data.to_string(),
        })
    }

    /// Runs `upstream` events through the translation; returns each output's data, or
    /// `ERR(...)` for a stream error.
    async fn translate(upstream: Vec<Result<Event, StreamError>>) -> Vec<String> {
        let rid = Uuid::nil();
        translate_stream(
            futures::stream::iter(upstream).boxed(),
            rid,
            "fallback-model".into(),
            Some("AIza-secret-key-123".into()),
        )
        .map(|item| match item {
            Ok(e) => e.data,
            Err(e) => format!("ERR({})", e.0),
        })
        .collect()
        .await
    }

    #[test]
    fn model_names_become_safe_resource_paths() {
        assert_eq!(
            model_resource("gemini-2.5-flash").unwrap(),
            "models/gemini-2.5-flash"
        );
        assert_eq!(
            model_resource(" models/gemini-pro ").unwrap(),
            "models/gemini-pro"
        );
        assert_eq!(
            model_resource("tunedModels/my-tune").unwrap(),
            "tunedModels/my-tune"
        );
        for bad in ["", "a?b", "a#b", "models/../x", "/x", "x/", "a b", "m%2e"] {
            assert!(model_resource(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schemas_are_rewritten_to_geminis_subset() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"], "minLength": 1, "format": "uri"},
                "b": {"$ref": "#/$defs/B", "description": "the b"},
                "c": {"type": "array", "items": [{"type": "string"}]},
                "d": {"allOf": [{"$ref": "#/definitions/D"}]},
                "e": {"type": "null"},
                "f": {"const": 3},
                "g": true,
                "n": {"type": "number", "format": "double", "exclusiveMinimum": 0}
            },
            "additionalProperties": false,
            "$defs": {"B": {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": false}},
            "definitions": {"D": {"type": "string", "enum": ["p", "q"]}}
        });
        assert_eq!(
            gemini_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "a": {"type": "string", "minLength": 1, "nullable": true},
                    "b": {"type": "object", "properties": {"x": {"type": "integer"}}, "description": "the b"},
                    "c": {"type": "array"},
                    "d": {"type": "string", "enum": ["p", "q"]},
                    "e": {"nullable": true},
                    "f": {},
                    "g": {},
                    "n": {"type": "number", "format": "double"}
                }
            })
        );
    }

    #[test]
    fn self_referencing_schemas_terminate() {
        let schema = json!({
            "type": "object",
            "properties": {"child": {"$ref": "#"}, "name": {"type": "string"}}
        });
        let out = gemini_schema(&schema);
        // Some depth of nesting, then nothing: no stack overflow, still valid JSON.
        assert!(out.to_string().len() < 100_000);
        assert_eq!(out["properties"]["name"], json!({"type": "string"}));

        // Three references to the root per level would be 3^32 nodes inlined: capped.
        let schema = json!({"type": "object", "properties": {
            "a": {"$ref": "#"}, "b": {"$ref": "#"}, "c": {"$ref": "#"}
        }});
        let out = gemini_schema(&schema);
        assert!(
            out.to_string().len() < 2_000_000,
            "{}",
            out.to_string().len()
        );
    }

    #[test]
    fn functions_without_parameters_omit_them() {
        let body = body_for(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "now"}},
                {"type": "function", "function": {"name": "empty", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}}
            ],
            "tool_choice": "required"}))
        .unwrap();
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{"name": "now"}, {"name": "empty"}]}])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let body = body_for(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "now"}}], "tool_choice": "none"}),
        )
        .unwrap();
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "NONE"}})
        );
        let err = body_for(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "now"}}],
            "tool_choice": {"type": "function", "function": {"name": "later"}}}),
        )
        .unwrap_err();
        assert!(
            matches!(err, GatewayError::InvalidRequest { param: Some(p), .. } if p == "tool_choice")
        );
    }

    #[test]
    fn malformed_tool_arguments_are_a_400_naming_the_field() {
        let err = body_for(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"}
        ]}))
        .unwrap_err();
        assert!(
            matches!(&err, GatewayError::InvalidRequest { param: Some(p), .. } if p == "messages[1].tool_calls[0].function.arguments"),
            "{err:?}"
        );
    }

    #[test]
    fn files_api_uris_are_file_data() {
        let uri = "https://generativelanguage.googleapis.com/v1beta/files/abc123";
        let body = body_for(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": uri}}
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            body["contents"][0]["parts"][0],
            json!({"fileData": {"fileUri": uri}})
        );
    }

    #[test]
    fn usage_counts_thoughts_as_output_and_cache_reads() {
        let u: UsageMetadata = serde_json::from_value(json!({
            "promptTokenCount": 100, "candidatesTokenCount": 7, "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 64, "toolUsePromptTokenCount": 5, "totalTokenCount": 142
        }))
        .unwrap();
        assert_eq!(
            Usage::from(u),
            Usage {
                prompt_tokens: 105,
                completion_tokens: 37,
                cache_read_tokens: 64,
                cache_write_tokens: 0
            }
        );
    }

    #[test]
    fn finish_reasons_map_to_openais() {
        assert_eq!(finish_reason("STOP"), FinishReason::Stop);
        assert_eq!(finish_reason("MAX_TOKENS"), FinishReason::Length);
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
        ] {
            assert_eq!(finish_reason(r), FinishReason::ContentFilter, "{r}");
        }
        assert_eq!(finish_reason("MALFORMED_FUNCTION_CALL"), FinishReason::Stop);
        assert_eq!(finish_reason("OTHER"), FinishReason::Stop);
    }

    #[test]
    fn whole_answers_skip_thoughts_and_keep_length_with_tool_calls() {
        let answer: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking…", "thought": true},
                {"text": "Partial"},
                {"functionCall": {"name": "f"}}
            ]}, "finishReason": "MAX_TOKENS"}]
        }))
        .unwrap();
        let out = completion(answer, Uuid::nil(), "gemini-x");
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["model"], "gemini-x");
        assert_eq!(body["choices"][0]["message"]["content"], "Partial");
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert!(
            body["choices"][0]["message"]["tool_calls"][0]
                .get("extra_content")
                .is_none()
        );
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert!(body.get("usage").is_none());
        assert_eq!(out.usage, None);
    }

    #[tokio::test]
    async fn a_stream_without_finish_reason_has_no_done() {
        let chunk = |text: &str| {
            event(
                json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}, "modelVersion": "gemini-z"}),
            )
        };
        let out = translate(vec![chunk("a"), chunk("b")]).await;
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out[0].contains("\"role\":\"assistant\""));
        assert!(out[0].contains("\"model\":\"gemini-z\""));
        assert!(
            out[3].contains("\"completion_tokens\":1"),
            "usage still reported"
        );
        assert!(!out.iter().any(|e| e == "[DONE]"));

        let out = translate(vec![chunk("a"), Err(StreamError("reset".into()))]).await;
        assert_eq!(out.last().map(String::as_str), Some("ERR(reset)"));
        assert!(!out.iter().any(|e| e == "[DONE]"));

        let out = translate(vec![Ok(Event {
            name: None,
            data: "not json".into(),
        })])
        .await;
        assert!(out[0].starts_with("ERR("), "{out:?}");
    }

    #[tokio::test]
    async fn stream_finish_usage_and_done_in_order() {
        let out = translate(vec![
            event(json!({"candidates": [{"content": {"parts": [{"text": "Hi", "thoughtSignature": "s"}]}}]})),
            event(json!({"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 4}})),
        ])
        .await;
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(out[0].contains("\"model\":\"fallback-model\""));
        assert!(out[1].contains("\"content\":\"Hi\""));
        assert!(out[2].contains("\"finish_reason\":\"stop\""));
        assert!(out[3].contains("\"completion_tokens\":6"));
        assert_eq!(out[4], "[DONE]");
    }

    #[tokio::test]
    async fn a_mid_stream_error_is_passed_on_without_the_key() {
        let out = translate(vec![
            event(json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})),
            event(json!({"error": {"code": 503, "message": "overloaded for AIza-secret-key-123", "status": "UNAVAILABLE"}})),
            event(json!({"candidates": [{"content": {"parts": [{"text": "never"}]}, "finishReason": "STOP"}]})),
        ])
        .await;
        assert_eq!(out.len(), 3, "{out:?}");
        let error: Value = serde_json::from_str(&out[2]).unwrap();
        assert_eq!(error["error"]["code"], "unavailable");
        assert_eq!(error["error"]["message"], "overloaded for [redacted]");
    }

    #[test]
    fn errors_map_to_gateway_errors() {
        let body = |v: Value| v.to_string().into_bytes();
        let key_invalid = body(
            json!([{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}]),
        );
        let e = upstream_error(StatusCode::BAD_REQUEST, None, &key_invalid, None);
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (502, "upstream_auth_failed")
        );

        let e = upstream_error(
            StatusCode::FORBIDDEN,
            None,
            &body(
                json!({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}),
            ),
            None,
        );
        assert_eq!(e.code(), "upstream_auth_failed");

        let context = body(
            json!({"error": {"code": 400, "message": "The input token count (5) exceeds the maximum number of tokens allowed (4).", "status": "INVALID_ARGUMENT"}}),
        );
        let e = upstream_error(StatusCode::BAD_REQUEST, None, &context, None);
        assert_eq!(
            e.body().error.code.as_deref(),
            Some("context_length_exceeded")
        );
        assert_eq!(e.body().error.param.as_deref(), Some("messages"));
        assert_eq!(e.body().error.kind, "invalid_request_error");

        let other = body(
            json!({"error": {"code": 400, "message": "bad AIza-secret-key-123", "status": "INVALID_ARGUMENT"}}),
        );
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            None,
            &other,
            Some("AIza-secret-key-123"),
        );
        assert_eq!(e.body().error.code.as_deref(), Some("invalid_argument"));
        assert_eq!(e.body().error.message, "bad [redacted]");

        let limited = body(
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.2s"}]}}),
        );
        match upstream_error(StatusCode::TOO_MANY_REQUESTS, None, &limited, None) {
            GatewayError::UpstreamRateLimited { retry_after, error } => {
                assert_eq!(retry_after, Some(HeaderValue::from_static("3")));
                assert_eq!(error.kind, None, "the gateway's rate_limit_error applies");
            }
            other => panic!("{other:?}"),
        }
        match upstream_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(HeaderValue::from_static("9")),
            &limited,
            None,
        ) {
            GatewayError::UpstreamRateLimited { retry_after, .. } => {
                assert_eq!(
                    retry_after,
                    Some(HeaderValue::from_static("9")),
                    "the header wins"
                );
            }
            other => panic!("{other:?}"),
        }

        let e = upstream_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            b"<html>oops</html>",
            None,
        );
        assert_eq!((e.status().as_u16(), e.code()), (502, "upstream_error"));
    }

    #[test]
    fn embeddings_render_as_openais_list() {
        assert_eq!(
            embed_body("models/text-embedding-004", &["a"], None),
            json!({"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}]})
        );
        let out = embeddings_json(&[vec![1.0, -0.5]], "text-embedding-004", 3, false);
        assert_eq!(
            out,
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [1.0, -0.5]}],
                "model": "text-embedding-004", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        );
        let out = embeddings_json(&[vec![1.0, -0.5]], "m", 3, true);
        // 1.0f32 = 00 00 80 3f, -0.5f32 = 00 00 00 bf (little-endian).
        assert_eq!(out["data"][0]["embedding"], "AACAPwAAAL8=");
    }
}
