//! The provider-neutral view of a chat request, and builders for the OpenAI-format output every
//! adapter must produce.
//!
//! OpenAI's chat format is the gateway's hub: clients speak it (or Anthropic's, translated to it
//! at the edge), and adapters for providers with another wire format translate
//! [`Conversation`] → their request, and their answer → a `chat.completion` body
//! ([`CompletionOut`]) or a stream of `chat.completion.chunk` events ([`ChunkWriter`]). Doing the
//! OpenAI side once here keeps every adapter's output identical in shape (ids, `created`,
//! `object`, tool-call deltas with stable indexes, the usage chunk, `[DONE]`), which is what the
//! translation matrix tests check.
//!
//! What is read from the request: `system`/`developer` messages (joined, in order), user /
//! assistant / tool turns with text, image (URL or `data:` URL), tool-call and tool-result parts,
//! `tools` (function tools), `tool_choice`, `max_completion_tokens` / `max_tokens`,
//! `temperature`, `top_p`, `stop`, `response_format` (JSON mode / JSON schema). Other OpenAI
//! fields have no equivalent in these providers and are dropped (see `wire.rs` for the rule).

use serde_json::{Map, Value, json};

use super::{Completion, Event, Usage};
use crate::error::{GatewayError, invalid};
use crate::wire::{ChatRequest, Message};

/// A chat request, provider-neutral.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// Every `system` and `developer` message's text, joined with a blank line, in order.
    pub system: Option<String>,
    /// The other messages, in order. Consecutive turns of one role are *not* merged here:
    /// providers that require alternation merge them in their adapter.
    pub turns: Vec<Turn>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub response_format: ResponseFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// A tool result (OpenAI `role: "tool"`); its parts are [`Part::ToolResult`]s.
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(ImageSource),
    /// An assistant's call of a tool; `arguments` is the JSON text as the model produced it.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// The result of a tool call, sent back by the client.
    ToolResult {
        call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Url(String),
    /// From a `data:<media type>;base64,<data>` URL.
    Base64 {
        media_type: String,
        data: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments (`{"type":"object"}` when the client gave none).
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResponseFormat {
    #[default]
    Text,
    /// `{"type":"json_object"}`.
    JsonObject,
    /// `{"type":"json_schema","json_schema":{"name":…,"schema":…}}`.
    JsonSchema { name: String, schema: Value },
}

/// The 400 for a required field that is absent, worded as OpenAI words it.
fn missing(param: &str) -> GatewayError {
    invalid(param, format!("Missing required parameter: '{param}'."))
}

impl Conversation {
    /// Reads a chat request. Fails with a 400 naming the field when a message or tool has a
    /// shape no provider could accept.
    pub fn from_request(request: &ChatRequest) -> Result<Self, GatewayError> {
        let mut out = Conversation {
            max_tokens: request.max_completion_tokens.or(request.max_tokens),
            temperature: request.temperature,
            top_p: request.top_p,
            ..Conversation::default()
        };
        let mut system: Vec<String> = Vec::new();
        for (i, message) in request.messages.iter().enumerate() {
            match message.role.as_str() {
                "system" | "developer" => {
                    let text = message.text();
                    if !text.is_empty() {
                        system.push(text);
                    }
                }
                "user" => out.turns.push(Turn {
                    role: Role::User,
                    parts: content_parts(message, i)?,
                }),
                "assistant" => {
                    let mut parts = content_parts(message, i)?;
                    parts.extend(tool_calls(message, i)?);
                    out.turns.push(Turn {
                        role: Role::Assistant,
                        parts,
                    });
                }
                "tool" | "function" => {
                    let call_id = message
                        .extra
                        .get("tool_call_id")
                        .and_then(Value::as_str)
                        .or_else(|| message.extra.get("name").and_then(Value::as_str))
                        .ok_or_else(|| missing(&format!("messages[{i}].tool_call_id")))?
                        .to_owned();
                    out.turns.push(Turn {
                        role: Role::Tool,
                        parts: vec![Part::ToolResult {
                            call_id,
                            content: message.text(),
                        }],
                    });
                }
                other => {
                    return Err(invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'."
                        ),
                    ));
                }
            }
        }
        if !system.is_empty() {
            out.system = Some(system.join("\n\n"));
        }
        out.tools = tools(request.extra.get("tools"))?;
        out.tool_choice = tool_choice(request.extra.get("tool_choice"))?;
        out.stop = match request.extra.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        invalid(
                            "stop",
                            "Invalid type for 'stop': expected a string or an array of strings.",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    "stop",
                    "Invalid type for 'stop': expected a string or an array of strings.",
                ));
            }
        };
        out.response_format = response_format(request.extra.get("response_format"))?;
        Ok(out)
    }
}

fn content_parts(message: &Message, i: usize) -> Result<Vec<Part>, GatewayError> {
    match &message.content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(if s.is_empty() {
            Vec::new()
        } else {
            vec![Part::Text(s.clone())]
        }),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                match item.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = item
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| missing(&format!("{param}.text")))?;
                        parts.push(Part::Text(text.to_owned()));
                    }
                    Some("image_url") => {
                        let url = item
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| missing(&format!("{param}.image_url.url")))?;
                        parts.push(Part::Image(image_source(url)));
                    }
                    // Audio, files and refusals have no equivalent across providers.
                    Some(other) => {
                        return Err(invalid(
                            format!("{param}.type"),
                            format!(
                                "Content parts of type '{other}' are not supported for this model's provider."
                            ),
                        ));
                    }
                    None => {
                        return Err(missing(&format!("{param}.type")));
                    }
                }
            }
            Ok(parts)
        }
        Some(_) => Err(invalid(
            format!("messages[{i}].content"),
            format!(
                "Invalid type for 'messages[{i}].content': expected a string or an array of content parts."
            ),
        )),
    }
}

/// Splits a `data:` URL into media type and base64 data; anything else stays a URL.
pub fn image_source(url: &str) -> ImageSource {
    let data_url = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)));
    match data_url {
        Some((media_type, data)) => ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None => ImageSource::Url(url.to_owned()),
    }
}

fn tool_calls(message: &Message, i: usize) -> Result<Vec<Part>, GatewayError> {
    let Some(calls) = message.extra.get("tool_calls") else {
        return Ok(Vec::new());
    };
    let Some(calls) = calls.as_array() else {
        return Err(invalid(
            format!("messages[{i}].tool_calls"),
            format!("Invalid type for 'messages[{i}].tool_calls': expected an array."),
        ));
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let param = format!("messages[{i}].tool_calls[{j}]");
            let function = call
                .get("function")
                .ok_or_else(|| missing(&format!("{param}.function")))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| missing(&format!("{param}.function.name")))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "{}".to_owned(),
                Some(other) => other.to_string(),
            };
            Ok(Part::ToolCall {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: name.to_owned(),
                arguments,
            })
        })
        .collect()
}

fn tools(value: Option<&Value>) -> Result<Vec<ToolDef>, GatewayError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = value.as_array() else {
        return Err(invalid(
            "tools",
            "Invalid type for 'tools': expected an array.",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let kind = tool
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("function");
            if kind != "function" {
                return Err(invalid(
                    format!("tools[{i}].type"),
                    format!("Tools of type '{kind}' are not supported for this model's provider."),
                ));
            }
            let function = tool
                .get("function")
                .ok_or_else(|| missing(&format!("tools[{i}].function")))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| missing(&format!("tools[{i}].function.name")))?;
            Ok(ToolDef {
                name: name.to_owned(),
                description: function
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: function
                    .get("parameters")
                    .filter(|p| !p.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice>, GatewayError> {
    let bad = || {
        invalid(
            "tool_choice",
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": …}}.",
        )
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            _ => Err(bad()),
        },
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| Some(ToolChoice::Function(n.to_owned())))
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn response_format(value: Option<&Value>) -> Result<ResponseFormat, GatewayError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = value.get("json_schema");
            Ok(ResponseFormat::JsonSchema {
                name: spec
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_owned(),
                schema: spec
                    .and_then(|s| s.get("schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        }
        _ => Err(invalid(
            "response_format.type",
            "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
        )),
    }
}

/// Why generation stopped, in OpenAI's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// A tool call in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments.
    pub arguments: String,
}

/// A whole answer, to be rendered as an OpenAI `chat.completion`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionOut {
    /// `chatcmpl-…`; see [`completion_id`].
    pub id: String,
    /// The model as the provider named it.
    pub model: String,
    /// Unix seconds.
    pub created: i64,
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCallOut>,
    pub finish_reason: FinishReason,
    pub usage: Option<Usage>,
}

/// An OpenAI-style completion id derived from the request id (stable for one request).
pub fn completion_id(request_id: uuid::Uuid) -> String {
    format!("chatcmpl-{}", request_id.simple())
}

/// Current Unix time in seconds, for `created`.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn usage_json(u: &Usage) -> Value {
    let mut usage = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    });
    // `cached_tokens` is OpenAI's field; `cache_write_tokens` is ours (Anthropic and Bedrock
    // report prompt-cache writes, which OpenAI has no field for). Clients ignore unknown fields,
    // and the meter reads both back from a stream's usage chunk.
    if u.cache_read_tokens > 0 || u.cache_write_tokens > 0 {
        let mut details = json!({ "cached_tokens": u.cache_read_tokens });
        if u.cache_write_tokens > 0 {
            details["cache_write_tokens"] = json!(u.cache_write_tokens);
        }
        usage["prompt_tokens_details"] = details;
    }
    usage
}

fn tool_calls_json(calls: &[ToolCallOut]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })
            })
            .collect(),
    )
}

impl CompletionOut {
    /// The `chat.completion` JSON.
    pub fn to_json(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            self.text.clone().map_or(Value::Null, Value::String),
        );
        message.insert("refusal".into(), Value::Null);
        if !self.tool_calls.is_empty() {
            message.insert("tool_calls".into(), tool_calls_json(&self.tool_calls));
        }
        let mut body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": Value::Object(message),
                "logprobs": null,
                "finish_reason": self.finish_reason.as_str(),
            }],
        });
        if let Some(u) = &self.usage {
            body["usage"] = usage_json(u);
        }
        body
    }

    /// The adapter's [`Completion`].
    pub fn into_completion(self) -> Completion {
        let body = self.to_json().to_string().into();
        Completion {
            body,
            usage: self.usage,
        }
    }
}

/// Renders a provider's stream as OpenAI `chat.completion.chunk` events.
///
/// Call [`ChunkWriter::role`] first, then any number of text / tool-call events, then
/// [`ChunkWriter::finish`], [`ChunkWriter::usage`] (always: the meter reads it and drops it
/// for clients that did not ask for usage) and [`ChunkWriter::done`]. Emit `done` **only** when
/// the provider signalled a complete answer: a stream that ends without it is reported to the
/// client as truncated.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: i64,
}

impl ChunkWriter {
    pub fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            created: now_unix(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<FinishReason>) -> Event {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason.map(FinishReason::as_str),
            }],
        });
        Event {
            name: None,
            data: body.to_string(),
        }
    }

    /// The first chunk: `{"role":"assistant","content":""}`.
    pub fn role(&self) -> Event {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    pub fn text(&self, delta: &str) -> Event {
        self.chunk(json!({ "content": delta }), None)
    }

    /// Starts tool call number `index` (0-based, in order of appearance in this answer).
    pub fn tool_call_start(&self, index: u32, id: &str, name: &str) -> Event {
        self.chunk(
            json!({"tool_calls": [{
                "index": index,
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": "" },
            }]}),
            None,
        )
    }

    /// A fragment of tool call `index`'s arguments; fragments concatenate to the JSON text.
    pub fn tool_call_args(&self, index: u32, fragment: &str) -> Event {
        self.chunk(
            json!({"tool_calls": [{ "index": index, "function": { "arguments": fragment } }]}),
            None,
        )
    }

    pub fn finish(&self, reason: FinishReason) -> Event {
        self.chunk(json!({}), Some(reason))
    }

    /// The usage-only chunk (`choices: []`).
    pub fn usage(&self, usage: &Usage) -> Event {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        });
        Event {
            name: None,
            data: body.to_string(),
        }
    }

    pub fn done() -> Event {
        Event {
            name: None,
            data: "[DONE]".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(body: Value) -> Result<Conversation, GatewayError> {
        let request = ChatRequest::parse(body.to_string().as_bytes())?;
        Conversation::from_request(&request)
    }

    #[test]
    fn reads_a_tool_conversation() {
        let c = parse(json!({
            "model": "m",
            "max_tokens": 100,
            "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_object"}
        }))
        .expect("valid");
        assert_eq!(c.system.as_deref(), Some("Be brief.\n\nUse tools."));
        assert_eq!(c.max_tokens, Some(100));
        assert_eq!(c.stop, vec!["END".to_owned()]);
        assert_eq!(c.turns.len(), 3);
        assert_eq!(
            c.turns[0].parts[1],
            Part::Image(ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            })
        );
        assert_eq!(
            c.turns[1].parts,
            vec![Part::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            }]
        );
        assert_eq!(
            c.turns[2].parts,
            vec![Part::ToolResult {
                call_id: "call_1".into(),
                content: "sunny".into()
            }]
        );
        assert_eq!(
            c.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(c.response_format, ResponseFormat::JsonObject);
        assert_eq!(c.tools[0].name, "get_weather");
    }

    #[test]
    fn refuses_shapes_no_provider_accepts_naming_the_field() {
        let err = parse(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}))
            .expect_err("no tool_call_id");
        assert!(
            matches!(err, GatewayError::InvalidRequest { param: Some(p), .. } if p == "messages[0].tool_call_id")
        );
        let err = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}))
            .expect_err("bad tool_choice");
        assert!(
            matches!(err, GatewayError::InvalidRequest { param: Some(p), .. } if p == "tool_choice")
        );
    }

    #[test]
    fn cache_counts_survive_the_usage_chunk() {
        let w = ChunkWriter::new("chatcmpl-1".into(), "m".into());
        let usage = Usage {
            prompt_tokens: 100,
            completion_tokens: 7,
            cache_read_tokens: 60,
            cache_write_tokens: 30,
        };
        let chunk: Value = serde_json::from_str(&w.usage(&usage).data).unwrap();
        let back: Usage = serde_json::from_value(chunk["usage"].clone()).unwrap();
        assert_eq!(back, usage);
        assert_eq!(chunk["usage"]["prompt_tokens_details"]["cached_tokens"], 60);
    }

    #[test]
    fn writes_openai_chunks_and_completions() {
        let w = ChunkWriter::new("chatcmpl-1".into(), "m".into());
        let start: Value = serde_json::from_str(&w.tool_call_start(0, "call_1", "f").data).unwrap();
        assert_eq!(
            start["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        let args: Value = serde_json::from_str(&w.tool_call_args(0, "{\"a\"").data).unwrap();
        assert_eq!(
            args["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\""
        );
        let fin: Value = serde_json::from_str(&w.finish(FinishReason::ToolCalls).data).unwrap();
        assert_eq!(fin["choices"][0]["finish_reason"], "tool_calls");
        let usage: Value = serde_json::from_str(&w.usage(&Usage::new(3, 4)).data).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 7);
        assert_eq!(ChunkWriter::done().data, "[DONE]");

        let c = CompletionOut {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            created: 1,
            text: None,
            tool_calls: vec![ToolCallOut {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
            usage: Some(Usage::new(1, 2)),
        };
        let json = c.to_json();
        assert_eq!(
            json["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(json["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(json["usage"]["total_tokens"], 3);
    }
}
