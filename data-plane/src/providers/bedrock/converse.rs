//! Converse request and response bodies: [`Conversation`] → Bedrock's `Converse` JSON, and
//! its answer → [`CompletionOut`].
//!
//! Request (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>):
//! - `system: [{text}]` from the system/developer messages;
//! - `messages: [{role: user|assistant, content: [ContentBlock]}]`, where a block is `{text}`,
//!   `{image: {format: png|jpeg|gif|webp, source: {bytes: <base64>}}}`,
//!   `{toolUse: {toolUseId, name, input}}` or `{toolResult: {toolUseId, content: [{text}]}}`.
//!   Tool results travel in a `user` turn, and consecutive turns of one role are merged
//!   (Bedrock requires alternation). Turns left empty are dropped (Bedrock refuses empty
//!   content). Image URLs that are not `data:` URLs are refused with a 400: Bedrock takes
//!   image bytes only, and the gateway does not fetch URLs on a client's behalf.
//! - `inferenceConfig: {maxTokens, temperature, topP, stopSequences}` (omitted when empty;
//!   `maxTokens` from the request, else the deployment's `max_output_tokens`, else omitted so
//!   the model's own default applies);
//! - `toolConfig: {tools: [{toolSpec: {name, description, inputSchema: {json}}}], toolChoice}`
//!   with `tool_choice` `auto` → `{auto:{}}`, `required` → `{any:{}}`, a named function →
//!   `{tool:{name}}`. Bedrock has no "none": with `none` the tools are left out, unless the
//!   history holds tool calls or results — Bedrock then *requires* `toolConfig`, so the tools are
//!   kept without a choice (the model may still call one). For the same reason, when the history
//!   holds tool calls but the request declares no tools, each tool named in the history is
//!   declared with a permissive schema (`{"type":"object"}`).
//!
//! JSON mode: Converse has no response-format setting. `response_format: json_schema` is served
//! with a forced tool: a tool named after the schema (`inputSchema` = the schema) and
//! `toolChoice: {tool: …}`; its input comes back as the message text (finish reason `stop`).
//! It cannot be combined with the client's own tools (400). `json_object` has no schema to force
//! and is refused with a 400 that points to `json_schema`.
//!
//! Dropped: every other OpenAI field (penalties, seed, logprobs, user, metadata, …) has no
//! Converse equivalent. Refused: `n` > 1 (Converse returns one answer).
//!
//! Response: `output.message.content` text blocks are concatenated, `toolUse` blocks become
//! tool calls (input → compact JSON arguments); `stopReason` maps by [`finish_reason`]; `usage`
//! by [`usage`].

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{GatewayError, invalid};
use crate::providers::Usage;
use crate::providers::canonical::{
    CompletionOut, Conversation, FinishReason, ImageSource, Part, ResponseFormat, Role,
    ToolCallOut, ToolChoice,
};

/// A Converse request body, and how to read the answer.
#[derive(Debug)]
pub(crate) struct ConverseRequest {
    pub(crate) body: Value,
    /// In JSON-schema mode, the name of the forced tool whose input is the answer.
    pub(crate) json_tool: Option<String>,
}

/// Builds the Converse body. `n` is the request's `n`, refused above 1.
pub(crate) fn request(
    conversation: &Conversation,
    n: Option<u32>,
    default_max_tokens: Option<u32>,
) -> Result<ConverseRequest, GatewayError> {
    if n.is_some_and(|n| n > 1) {
        return Err(invalid(
            "n",
            "This model's provider (bedrock) returns one choice per request; 'n' must be 1.",
        ));
    }
    let mut body = Map::new();
    if let Some(system) = conversation.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("system".into(), json!([{ "text": system }]));
    }

    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut history_tools: Vec<&str> = Vec::new();
    for turn in &conversation.turns {
        let role = match turn.role {
            Role::Assistant => "assistant",
            Role::User | Role::Tool => "user",
        };
        let mut blocks = Vec::with_capacity(turn.parts.len());
        for part in &turn.parts {
            if let Part::ToolCall { name, .. } = part
                && !history_tools.contains(&name.as_str())
            {
                history_tools.push(name);
            }
            if let Some(block) = content_block(part)? {
                blocks.push(block);
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last_role, content)) if *last_role == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let has_tool_blocks = conversation
        .turns
        .iter()
        .flat_map(|t| &t.parts)
        .any(|p| matches!(p, Part::ToolCall { .. } | Part::ToolResult { .. }));
    body.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );

    let mut inference = Map::new();
    if let Some(max) = conversation.max_tokens.or(default_max_tokens) {
        inference.insert("maxTokens".into(), json!(max));
    }
    if let Some(t) = conversation.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = conversation.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if !conversation.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(conversation.stop));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }

    let json_tool = match &conversation.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => {
            return Err(invalid(
                "response_format",
                "This model's provider (bedrock) has no JSON mode without a schema; use response_format {\"type\": \"json_schema\", \"json_schema\": {\"name\": …, \"schema\": …}} instead.",
            ));
        }
        ResponseFormat::JsonSchema { name, schema } => {
            if !conversation.tools.is_empty() {
                return Err(invalid(
                    "response_format",
                    "For this model's provider (bedrock), response_format json_schema is served with a forced tool and cannot be combined with 'tools'.",
                ));
            }
            let tool = tool_name(name);
            body.insert(
                "toolConfig".into(),
                json!({
                    "tools": [{ "toolSpec": {
                        "name": tool,
                        "description": "Respond with a JSON value that matches this schema.",
                        "inputSchema": { "json": schema },
                    }}],
                    "toolChoice": { "tool": { "name": tool } },
                }),
            );
            Some(tool)
        }
    };

    if json_tool.is_none()
        && let Some(config) = tool_config(conversation, has_tool_blocks, &history_tools)
    {
        body.insert("toolConfig".into(), config);
    }
    Ok(ConverseRequest {
        body: Value::Object(body),
        json_tool,
    })
}

fn content_block(part: &Part) -> Result<Option<Value>, GatewayError> {
    Ok(Some(match part {
        Part::Text(text) if text.is_empty() => return Ok(None),
        Part::Text(text) => json!({ "text": text }),
        Part::Image(ImageSource::Url(_)) => {
            return Err(invalid(
                "messages",
                "This model's provider (bedrock) accepts images only as base64 data URLs (data:image/png;base64,…); image URLs are not fetched.",
            ));
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => {
            let format = match media_type.to_ascii_lowercase().as_str() {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(invalid(
                        "messages",
                        format!(
                            "Unsupported image type '{other}' for this model's provider (bedrock): use image/png, image/jpeg, image/gif or image/webp."
                        ),
                    ));
                }
            };
            json!({ "image": { "format": format, "source": { "bytes": data } } })
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => {
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|_| {
                    invalid(
                        "messages",
                        format!(
                            "The arguments of tool call '{id}' are not valid JSON; this model's provider (bedrock) needs them as a JSON object."
                        ),
                    )
                })?
            };
            json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } })
        }
        Part::ToolResult { call_id, content } => json!({
            "toolResult": { "toolUseId": call_id, "content": [{ "text": content }] }
        }),
    }))
}

fn tool_config(
    conversation: &Conversation,
    has_tool_blocks: bool,
    history_tools: &[&str],
) -> Option<Value> {
    let choice = match &conversation.tool_choice {
        None => None,
        // No "none" in Bedrock: leave the tools out, unless the history requires them.
        Some(ToolChoice::None) if !has_tool_blocks => return None,
        Some(ToolChoice::None) => None,
        Some(ToolChoice::Auto) => Some(json!({ "auto": {} })),
        Some(ToolChoice::Required) => Some(json!({ "any": {} })),
        Some(ToolChoice::Function(name)) => Some(json!({ "tool": { "name": name } })),
    };
    let mut tools: Vec<Value> = conversation
        .tools
        .iter()
        .map(|t| {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(t.name));
            if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), json!(d));
            }
            spec.insert("inputSchema".into(), json!({ "json": t.parameters }));
            json!({ "toolSpec": Value::Object(spec) })
        })
        .collect();
    if tools.is_empty() {
        if !has_tool_blocks || history_tools.is_empty() {
            return None;
        }
        tools = history_tools
            .iter()
            .map(|name| {
                json!({ "toolSpec": {
                    "name": name,
                    "inputSchema": { "json": { "type": "object" } },
                }})
            })
            .collect();
        // A choice naming tools the client never declared makes no sense here.
        return Some(json!({ "tools": tools }));
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = choice {
        config.insert("toolChoice".into(), choice);
    }
    Some(Value::Object(config))
}

/// A Bedrock tool name (`[a-zA-Z0-9_-]{1,64}`) for the JSON-schema tool.
fn tool_name(schema_name: &str) -> String {
    let name: String = schema_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .take(64)
        .collect();
    if name.is_empty() {
        "json_response".to_owned()
    } else {
        name
    }
}

/// OpenAI's finish reason for a Bedrock `stopReason`
/// (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_ResponseSyntax>).
/// `model_context_window_exceeded` is a length stop; malformed output and unknown reasons
/// count as `stop`.
pub(crate) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Bedrock's `TokenUsage`
/// (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html>).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

/// `inputTokens` counts only the input that was neither read from nor written to the prompt
/// cache (in the prompt-caching guide's examples `totalTokens` is the sum of input, output,
/// cache-read and cache-write tokens, as Anthropic's API reports them), so OpenAI's
/// `prompt_tokens`, which counts every input token, is input + cache read + cache write.
pub(crate) fn usage(u: TokenUsage) -> Usage {
    Usage {
        prompt_tokens: u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens,
        completion_tokens: u.output_tokens,
        cache_read_tokens: u.cache_read_input_tokens,
        cache_write_tokens: u.cache_write_input_tokens,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: Output,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Output {
    message: OutputMessage,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<Value>,
}

/// Translates a Converse response body.
pub(crate) fn completion(
    body: &[u8],
    json_tool: Option<&str>,
    id: String,
    model: String,
    created: i64,
) -> Result<CompletionOut, GatewayError> {
    let response: ConverseResponse = serde_json::from_slice(body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("Converse response is not the documented JSON: {e}"))
    })?;
    let mut text = String::new();
    let mut json_text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &response.output.message.content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            let arguments = tool
                .get("input")
                .map_or_else(|| "{}".to_owned(), Value::to_string);
            if json_tool == Some(name) {
                json_text = Some(arguments);
                continue;
            }
            tool_calls.push(ToolCallOut {
                id: tool
                    .get("toolUseId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: name.to_owned(),
                arguments,
            });
        }
        // reasoningContent, citations, guardContent…: not part of an OpenAI message.
    }
    let mut finish = finish_reason(response.stop_reason.as_deref().unwrap_or("end_turn"));
    let text = match json_text {
        Some(json) => {
            if finish == FinishReason::ToolCalls && tool_calls.is_empty() {
                finish = FinishReason::Stop;
            }
            Some(json)
        }
        None if text.is_empty() && !tool_calls.is_empty() => None,
        None => Some(text),
    };
    Ok(CompletionOut {
        id,
        model,
        created,
        text,
        tool_calls,
        finish_reason: finish,
        usage: response.usage.map(usage),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::wire::ChatRequest;

    fn build(body: Value) -> Result<ConverseRequest, GatewayError> {
        let request = ChatRequest::parse(body.to_string().as_bytes())?;
        let conversation = Conversation::from_request(&request)?;
        super::request(&conversation, request.n, None)
    }

    #[test]
    fn translates_a_tool_conversation() {
        let built = build(json!({
            "model": "m",
            "max_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["END"],
            "presence_penalty": 1.0,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
                ]},
                {"role": "user", "content": "In Paris."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required"
        }))
        .expect("valid");
        assert_eq!(built.json_tool, None);
        assert_eq!(
            built.body,
            json!({
                "system": [{"text": "Be brief."}],
                "messages": [
                    {"role": "user", "content": [
                        {"text": "Weather?"},
                        {"image": {"format": "jpeg", "source": {"bytes": "AAAA"}}},
                        {"text": "In Paris."}
                    ]},
                    {"role": "assistant", "content": [
                        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
                    ]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}},
                        {"text": "Thanks"}
                    ]}
                ],
                "inferenceConfig": {"maxTokens": 64, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
                "toolConfig": {
                    "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
                    "toolChoice": {"any": {}}
                }
            })
        );
    }

    #[test]
    fn tool_choice_none_keeps_tools_only_when_history_needs_them() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let plain = build(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": tools, "tool_choice": "none"}),
        )
        .unwrap();
        assert!(plain.body.get("toolConfig").is_none());
        assert!(plain.body.get("inferenceConfig").is_none());

        let history = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "ok"}
        ]);
        let kept = build(
            json!({"model": "m", "messages": history, "tools": tools, "tool_choice": "none"}),
        )
        .unwrap();
        assert_eq!(
            kept.body["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
        );
        assert_eq!(
            kept.body["messages"][1]["content"][0]["toolUse"]["input"],
            json!({})
        );

        let synthesized = build(json!({"model": "m", "messages": history})).unwrap();
        assert_eq!(
            synthesized.body["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]})
        );
        let named = build(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}}}),
        )
        .unwrap();
        assert_eq!(
            named.body["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
    }

    #[test]
    fn refuses_what_bedrock_cannot_do_clearly() {
        let cases = [
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}),
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{nope"}}]}]}),
        ];
        for body in cases {
            let err = build(body.clone()).expect_err("refused");
            assert_eq!(err.status().as_u16(), 400, "{body}");
            assert!(err.body().error.message.contains("bedrock"), "{body}");
        }
    }

    #[test]
    fn json_schema_is_a_forced_tool_answered_as_text() {
        let built = build(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "weather report", "schema": {"type": "object"}}}}))
        .unwrap();
        assert_eq!(built.json_tool.as_deref(), Some("weatherreport"));
        assert_eq!(
            built.body["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "weatherreport"}})
        );
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "tooluse_x", "name": "weatherreport", "input": {"t": 21}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}
        });
        let out = completion(
            body.to_string().as_bytes(),
            Some("weatherreport"),
            "id".into(),
            "m".into(),
            1,
        )
        .unwrap();
        assert_eq!(out.text.as_deref(), Some("{\"t\":21}"));
        assert!(out.tool_calls.is_empty());
        assert_eq!(out.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn reads_a_response_with_cache_usage() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 20, "outputTokens": 10, "totalTokens": 130, "cacheReadInputTokens": 60, "cacheWriteInputTokens": 40},
            "metrics": {"latencyMs": 100}
        });
        let out = completion(
            body.to_string().as_bytes(),
            None,
            "id".into(),
            "m".into(),
            1,
        )
        .unwrap();
        assert_eq!(out.text.as_deref(), Some("Let me check."));
        assert_eq!(
            out.tool_calls[0].arguments,
            r#"{"city":"Paris","unit":"celsius"}"#
        );
        assert_eq!(out.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            out.usage,
            Some(Usage {
                prompt_tokens: 120,
                completion_tokens: 10,
                cache_read_tokens: 60,
                cache_write_tokens: 40
            })
        );
        for (reason, want) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("guardrail_intervened", FinishReason::ContentFilter),
            ("content_filtered", FinishReason::ContentFilter),
        ] {
            assert_eq!(finish_reason(reason), want);
        }
        assert!(completion(b"{\"nope\":1}", None, "id".into(), "m".into(), 1).is_err());
    }
}
