//! An Anthropic Messages request (`MessageCreateParams`,
//! <https://docs.anthropic.com/en/api/messages>) → an OpenAI chat request JSON.
//!
//! Parsing is typed (serde, through `serde_path_to_error`), so a body of the wrong shape is a
//! 400 `invalid_request_error` that names the field in Anthropic's path style, e.g.
//! `messages.0.content.1.text: Field required`. Unknown fields are ignored rather than refused:
//! Anthropic adds request fields often (`service_tier`, `container`, `context_management`, …)
//! and clients send them, while none of them changes what an OpenAI-format model can do.
//! The mapping rules are the table in the [module doc](super).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::tokens;
use crate::wire::ChatRequest;

/// Flat per-image estimate for [`estimate_input_tokens`]: about what Anthropic charges for a
/// typical image (≈1.15 megapixels at 750 pixels per token). Image sizes are not decoded.
pub const IMAGE_TOKENS: u64 = 1_600;

/// A `POST /v1/messages` (or `/v1/messages/count_tokens`) body, as far as the gateway reads it.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages` (checked there), absent from `count_tokens` bodies.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub system: Option<TextOr<SystemBlock>>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Typed so a wrong type is refused; dropped when translated (see the module doc).
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Deserialize)]
pub struct InputMessage {
    /// Checked by hand (`user` or `assistant`) so the error names `messages.N.role`.
    pub role: String,
    pub content: TextOr<Block>,
}

/// A string, or an array of blocks: the shape of `system`, `content` and `tool_result.content`.
#[derive(Debug)]
pub enum TextOr<T> {
    Text(String),
    Blocks(Vec<T>),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum reports "did not match any variant"
// and loses the path of the block that was wrong; this visitor keeps both.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = TextOr<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(TextOr::Blocks(blocks))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A content block of a message. Block types with no equivalent are refused when translated
/// (`document`) or dropped (`thinking`); any other type is refused while parsing.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextOr<ToolResultBlock>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Document {},
    Thinking {},
    RedactedThinking {},
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// A Files API reference: there is no file store behind the gateway.
    File {},
}

/// What a `tool_result` may contain.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolResultBlock {
    Text { text: String },
    Image { source: ImageSource },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemBlock {
    Text { text: String },
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Absent or `custom` for client tools; server tools (`web_search_20250305`, `bash_…`) carry
    /// their versioned type and are refused.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

/// A translated request.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The model name the client asked for (answers echo it).
    pub model: String,
    pub stream: bool,
    /// The OpenAI chat request.
    pub body: Value,
}

/// Parses and translates a `/v1/messages` body (`max_tokens` required).
pub fn translate_messages(body: &[u8]) -> Result<Translated, GatewayError> {
    let request = parse(body)?;
    if request.max_tokens.is_none() {
        return Err(invalid("max_tokens", "Field required"));
    }
    translate(request)
}

/// Parses and translates a `/v1/messages/count_tokens` body (`max_tokens` not needed).
pub fn translate_count_tokens(body: &[u8]) -> Result<Translated, GatewayError> {
    translate(parse(body)?)
}

/// The typed request, or a 400 naming the field.
pub fn parse(body: &[u8]) -> Result<MessagesRequest, GatewayError> {
    // serde reads a struct from an array too (`[…]` fills the fields in order): refuse any
    // other top-level JSON value first.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => GatewayError::InvalidRequest {
                    message: "The request body must be a JSON object.".to_owned(),
                    param: None,
                },
                Err(e) => GatewayError::InvalidJson(e.to_string()),
            },
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let request: MessagesRequest = serde_path_to_error::deserialize(de).map_err(field_error)?;
    if request.model.is_empty() {
        return Err(invalid("model", "String should have at least 1 character"));
    }
    if request.messages.is_empty() {
        return Err(invalid("messages", "List should have at least 1 item"));
    }
    Ok(request)
}

/// The model name of a body that failed to parse, for its usage event (at most 256 chars).
pub fn model_hint(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Hint {
        model: Option<Value>,
    }
    match serde_json::from_slice::<Hint>(body) {
        Ok(Hint {
            model: Some(Value::String(m)),
        }) => m.chars().take(256).collect(),
        _ => String::new(),
    }
}

/// Estimated input tokens of a translated request, for `count_tokens` and the `input_tokens` of
/// `message_start`: the gateway's prompt estimate ([`tokens::estimate_prompt_tokens`]: message
/// texts plus per-message overhead), plus the tool definitions' JSON text, plus
/// [`IMAGE_TOKENS`] per image. An estimate: the deployment's real tokenizer may differ.
pub fn estimate_input_tokens(body: &Value) -> u64 {
    let Ok(request) = ChatRequest::deserialize(body) else {
        return 0;
    };
    let tools = body
        .get("tools")
        .map_or(0, |tools| tokens::count(&tools.to_string()));
    let images = request
        .messages
        .iter()
        .filter_map(|m| m.content.as_ref()?.as_array())
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("image_url"))
        .count() as u64;
    tokens::estimate_prompt_tokens(&request) + tools + images * IMAGE_TOKENS
}

fn invalid(param: impl Into<String>, what: &str) -> GatewayError {
    let param = param.into();
    GatewayError::InvalidRequest {
        message: format!("{param}: {what}"),
        param: Some(param),
    }
}

fn translate(request: MessagesRequest) -> Result<Translated, GatewayError> {
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        let text = match system {
            TextOr::Text(text) => text,
            TextOr::Blocks(blocks) => blocks
                .into_iter()
                .map(|SystemBlock::Text { text }| text)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, message) in request.messages.into_iter().enumerate() {
        match message.role.as_str() {
            "user" => user_message(i, message.content, &mut messages)?,
            "assistant" => assistant_message(i, message.content, &mut messages)?,
            _ => {
                return Err(invalid(
                    format!("messages.{i}.role"),
                    "Input should be 'user' or 'assistant'",
                ));
            }
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(request.model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max_tokens) = request.max_tokens {
        out.insert("max_completion_tokens".into(), json!(max_tokens));
    }
    if let Some(stop) = request.stop_sequences.filter(|s| !s.is_empty()) {
        out.insert("stop".into(), json!(stop));
    }
    if let Some(t) = request.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = request.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(user) = request.metadata.and_then(|m| m.user_id) {
        out.insert("user".into(), json!(user));
    }
    let stream = request.stream == Some(true);
    if stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let tools = translate_tools(request.tools.unwrap_or_default())?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = request.tool_choice {
            let (choice, disable_parallel) = match choice {
                ToolChoice::Auto {
                    disable_parallel_tool_use,
                } => (json!("auto"), disable_parallel_tool_use),
                ToolChoice::Any {
                    disable_parallel_tool_use,
                } => (json!("required"), disable_parallel_tool_use),
                ToolChoice::Tool {
                    name,
                    disable_parallel_tool_use,
                } => (
                    json!({"type": "function", "function": {"name": name}}),
                    disable_parallel_tool_use,
                ),
                ToolChoice::None {} => (json!("none"), None),
            };
            out.insert("tool_choice".into(), choice);
            if disable_parallel == Some(true) {
                out.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    Ok(Translated {
        model: request.model,
        stream,
        body: Value::Object(out),
    })
}

fn translate_tools(tools: Vec<Tool>) -> Result<Vec<Value>, GatewayError> {
    tools
        .into_iter()
        .enumerate()
        .map(|(k, tool)| {
            if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
                return Err(invalid(
                    format!("tools.{k}.type"),
                    &format!(
                        "server tools ('{kind}') are not supported by this gateway; \
                         only custom tools with an input_schema are"
                    ),
                ));
            }
            let schema = tool
                .input_schema
                .ok_or_else(|| invalid(format!("tools.{k}.input_schema"), "Field required"))?;
            let mut function = json!({"name": tool.name, "parameters": schema});
            if let Some(description) = tool.description {
                function["description"] = json!(description);
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

fn user_message(
    i: usize,
    content: TextOr<Block>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let blocks = match content {
        TextOr::Text(text) => {
            out.push(json!({"role": "user", "content": text}));
            return Ok(());
        }
        TextOr::Blocks(blocks) => blocks,
    };
    // Images returned by tools: OpenAI tool messages hold text only, so they follow the tool
    // messages in a user message of their own, before the user's own content.
    let mut tool_images: Vec<Value> = Vec::new();
    let mut parts: Vec<Value> = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        let at = || format!("messages.{i}.content.{j}");
        match block {
            Block::Text { text } => parts.push(json!({"type": "text", "text": text})),
            Block::Image { source } => parts.push(image_part(source, &at())?),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let (text, images) = tool_result(content, &format!("{}.content", at()))?;
                let text = if is_error == Some(true) {
                    format!("[tool error] {text}")
                } else {
                    text
                };
                if !images.is_empty() {
                    tool_images.push(json!({
                        "type": "text",
                        "text": format!("Images returned by tool call {tool_use_id}:"),
                    }));
                    tool_images.extend(images);
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            Block::ToolUse { .. } => {
                return Err(invalid(
                    format!("{}.type", at()),
                    "tool_use blocks are only allowed in assistant messages",
                ));
            }
            Block::Document {} => return Err(unsupported_document(&at())),
            Block::Thinking {} | Block::RedactedThinking {} => {}
        }
    }
    tool_images.extend(parts);
    let parts = tool_images;
    if parts.is_empty() {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [only] if only["type"] == "text" => only["text"].clone(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn assistant_message(
    i: usize,
    content: TextOr<Block>,
    out: &mut Vec<Value>,
) -> Result<(), GatewayError> {
    let blocks = match content {
        TextOr::Text(text) => {
            out.push(json!({"role": "assistant", "content": text}));
            return Ok(());
        }
        TextOr::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let at = || format!("messages.{i}.content.{j}");
        match block {
            // Anthropic splits one answer into several text blocks (citations, interleaved
            // tool calls); read back, they are one text.
            Block::Text { text: t } => text.push_str(&t),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::Image { .. } => {
                return Err(invalid(
                    format!("{}.type", at()),
                    "image blocks are only allowed in user messages",
                ));
            }
            Block::ToolResult { .. } => {
                return Err(invalid(
                    format!("{}.type", at()),
                    "tool_result blocks are only allowed in user messages",
                ));
            }
            Block::Document {} => return Err(unsupported_document(&at())),
            Block::Thinking {} | Block::RedactedThinking {} => {}
        }
    }
    if text.is_empty() && calls.is_empty() {
        // Only thinking blocks: nothing an OpenAI-format model can read.
        return Ok(());
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
    Ok(())
}

/// A tool result's text (text blocks joined with a newline) and its images.
fn tool_result(
    content: Option<TextOr<ToolResultBlock>>,
    at: &str,
) -> Result<(String, Vec<Value>), GatewayError> {
    match content {
        None => Ok((String::new(), Vec::new())),
        Some(TextOr::Text(text)) => Ok((text, Vec::new())),
        Some(TextOr::Blocks(blocks)) => {
            let mut texts: Vec<String> = Vec::new();
            let mut images = Vec::new();
            for (k, block) in blocks.into_iter().enumerate() {
                match block {
                    ToolResultBlock::Text { text } => texts.push(text),
                    ToolResultBlock::Image { source } => {
                        images.push(image_part(source, &format!("{at}.{k}"))?);
                    }
                }
            }
            Ok((texts.join("\n"), images))
        }
    }
}

fn image_part(source: ImageSource, at: &str) -> Result<Value, GatewayError> {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
        ImageSource::File {} => {
            return Err(invalid(
                format!("{at}.source.type"),
                "image sources of type 'file' (Files API) are not supported by this gateway; \
                 send the image as 'base64' or 'url'",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn unsupported_document(at: &str) -> GatewayError {
    invalid(
        format!("{at}.type"),
        "document blocks are not supported by this gateway; send the document's text as a \
         text block",
    )
}

/// Turns a deserialization failure into a 400 naming the field, in Anthropic's wording
/// (`max_tokens: Field required`, `messages.0.content: Input should be …`).
fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = anthropic_path(err.path());
    let inner = err.into_inner();
    if !inner.is_data() {
        // Syntax errors and truncated bodies: there is no field to name.
        return GatewayError::InvalidJson(inner.to_string());
    }
    let full = inner.to_string();
    let text = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let join = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return invalid(join(field), "Field required");
    }
    if path.is_empty() {
        return GatewayError::InvalidRequest {
            message: "The request body must be a JSON object.".to_owned(),
            param: None,
        };
    }
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        return invalid(path, &format!("Input should be {}", describe(expected)));
    }
    if let Some(rest) = text.strip_prefix("invalid value: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        return invalid(path, &format!("Input should be {}", describe(expected)));
    }
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        // Only the internally tagged block / source / tool_choice enums report this: the
        // offending value is their `type`.
        let (tag, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
        let expected = expected
            .trim_start_matches("one of ")
            .replace('`', "'")
            .replace(" or ", ", ");
        let param = if path == "type" || path.ends_with(".type") {
            path
        } else {
            join("type")
        };
        return invalid(
            param,
            &format!("Input tag '{tag}' does not match any of the expected tags: {expected}"),
        );
    }
    invalid(path, text)
}

/// serde_path_to_error's path in Anthropic's style: `messages.0.content.1`.
fn anthropic_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        let piece = match segment {
            serde_path_to_error::Segment::Seq { index } => index.to_string(),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                continue;
            }
        };
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&piece);
    }
    out
}

/// serde's "expected" wording in Anthropic's (pydantic's) terms.
fn describe(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a valid number".to_owned(),
        "u8" | "u16" | "u32" | "u64" => "a valid non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" => "a valid integer".to_owned(),
        "a boolean" => "a valid boolean".to_owned(),
        "a string" => "a valid string".to_owned(),
        "a sequence" => "a valid list".to_owned(),
        e if e.starts_with("struct ") || e.starts_with("a map") || e.starts_with("internally") => {
            "a valid object".to_owned()
        }
        "" => "of another type".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn ok(body: Value) -> Value {
        translate_messages(body.to_string().as_bytes())
            .expect("translates")
            .body
    }

    /// Asserts a 400 with exactly this message (and the path before the colon as `param`).
    fn refused(body: &str, want: &str) {
        match translate_messages(body.as_bytes()) {
            Err(GatewayError::InvalidRequest { message, param }) => {
                assert_eq!(message, want, "{body}");
                if let Some((path, _)) = want.split_once(": ") {
                    assert_eq!(param.as_deref(), Some(path), "{body}");
                }
            }
            Err(GatewayError::InvalidJson(_)) => assert_eq!("invalid json", want, "{body}"),
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    const MSG: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn bad_bodies_name_the_field_in_anthropic_style() {
        refused("{", "invalid json");
        refused(
            &format!(r#"{{"model":"m",{MSG}}}"#),
            "max_tokens: Field required",
        );
        refused(
            r#"{"model":"m","max_tokens":5}"#,
            "messages: Field required",
        );
        refused(
            &format!(r#"{{"max_tokens":5,{MSG}}}"#),
            "model: Field required",
        );
        refused(
            &format!(r#"{{"model":"m","max_tokens":"5",{MSG}}}"#),
            "max_tokens: Input should be a valid non-negative integer",
        );
        refused(
            &format!(r#"{{"model":"m","max_tokens":-1,{MSG}}}"#),
            "max_tokens: Input should be a valid non-negative integer",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[]}"#,
            "messages: List should have at least 1 item",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
            "messages.0.role: Input should be 'user' or 'assistant'",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#,
            "messages.0.content: Input should be a string or an array of content blocks",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text"}]}]}"#,
            "messages.0.content.1.text: Field required",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"video"}]}]}"#,
            "messages.0.content.0.type: Input tag 'video' does not match any of the expected tags: 'text', 'image', 'tool_use', 'tool_result', 'document', 'thinking', 'redacted_thinking'",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#,
            "messages.0.content.0.type: document blocks are not supported by this gateway; send the document's text as a text block",
        );
        refused(
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#,
            "messages.0.content.0.source.type: image sources of type 'file' (Files API) are not supported by this gateway; send the image as 'base64' or 'url'",
        );
        refused(
            &format!(
                r#"{{"model":"m","max_tokens":5,{MSG},"tools":[{{"type":"web_search_20250305","name":"web_search"}}]}}"#
            ),
            "tools.0.type: server tools ('web_search_20250305') are not supported by this gateway; only custom tools with an input_schema are",
        );
        refused(
            &format!(r#"{{"model":"m","max_tokens":5,{MSG},"tools":[{{"name":"f"}}]}}"#),
            "tools.0.input_schema: Field required",
        );
        refused(
            &format!(r#"{{"model":"m","max_tokens":5,{MSG},"temperature":"hot"}}"#),
            "temperature: Input should be a valid number",
        );
        refused(
            &format!(r#"{{"model":"m","max_tokens":5,{MSG},"system":[{{"text":"x"}}]}}"#),
            "system.0.type: Field required",
        );
        refused("[1]", "The request body must be a JSON object.");
    }

    #[test]
    fn a_full_request_translates_to_openai() {
        let out = ok(json!({
            "model": "claude-x",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Use tools."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "20C"}]},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": {"user_id": "u-1"},
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "service_tier": "auto",
            "tools": [{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "max_completion_tokens": 1024,
                "messages": [
                    {"role": "system", "content": "You are terse.\n\nUse tools."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "Weather in Paris?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ]},
                    {"role": "assistant", "content": "Let me check.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny\n20C"},
                    {"role": "user", "content": "Thanks"}
                ],
                "stop": ["END"],
                "temperature": 0.5,
                "top_p": 0.9,
                "user": "u-1",
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": "required",
                "parallel_tool_calls": false
            })
        );
        // The pipeline accepts what we produce.
        ChatRequest::parse(out.to_string().as_bytes()).expect("a valid chat request");
    }

    #[test]
    fn tool_results_errors_images_and_choices() {
        let out = ok(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "a", "is_error": true, "content": "boom"},
                    {"type": "tool_result", "tool_use_id": "b", "content": [
                        {"type": "image", "source": {"type": "url", "url": "http://x/i.png"}}
                    ]},
                    {"type": "tool_result", "tool_use_id": "c"}
                ]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"}
        }));
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages[0]["content"], Value::Null);
        assert_eq!(messages[0]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(
            messages[1],
            json!({"role": "tool", "tool_call_id": "a", "content": "[tool error] boom"})
        );
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "b", "content": ""})
        );
        assert_eq!(messages[3]["content"], "");
        assert_eq!(
            messages[4],
            json!({"role": "user", "content": [
                {"type": "text", "text": "Images returned by tool call b:"},
                {"type": "image_url", "image_url": {"url": "http://x/i.png"}}
            ]})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert!(out.get("parallel_tool_calls").is_none());
        assert!(out.get("stream").is_none());

        let choice = |c: Value| {
            ok(json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {}}], "tool_choice": c}))["tool_choice"]
                .clone()
        };
        assert_eq!(choice(json!({"type": "auto"})), "auto");
        assert_eq!(choice(json!({"type": "none"})), "none");
        // No tools: no tool_choice (OpenAI refuses one without tools).
        let out = ok(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "auto"}}),
        );
        assert!(out.get("tool_choice").is_none());
    }

    #[test]
    fn count_tokens_needs_no_max_tokens_and_estimates() {
        let t = translate_count_tokens(
            br#"{"model":"m","messages":[{"role":"user","content":"Hello"}],"system":"Hello"}"#,
        )
        .expect("translates");
        assert!(t.body.get("max_completion_tokens").is_none());
        // 2 messages of 1 token, 3 tokens overhead each, 3 for the reply.
        assert_eq!(estimate_input_tokens(&t.body), 2 + 2 * 3 + 3);
        let with_image = translate_count_tokens(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"image","source":{"type":"url","url":"u"}}]}],
                "tools":[{"name":"f","input_schema":{"type":"object"}}]}"#,
        )
        .expect("translates");
        let tools = tokens::count(&with_image.body["tools"].to_string());
        assert_eq!(
            estimate_input_tokens(&with_image.body),
            1 + 3 + 3 + tools + IMAGE_TOKENS
        );
    }

    #[test]
    fn model_hint_reads_the_model_of_a_bad_body() {
        assert_eq!(model_hint(br#"{"model":"m","max_tokens":"x"}"#), "m");
        assert_eq!(model_hint(b"nope"), "");
    }
}
