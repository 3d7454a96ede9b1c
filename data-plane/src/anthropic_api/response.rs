//! An OpenAI `chat.completion` → an Anthropic `Message`
//! (<https://docs.anthropic.com/en/api/messages>, "Response").
//!
//! The first choice becomes the message: its text (or refusal) a `text` block, each tool call a
//! `tool_use` block whose `input` is the parsed arguments. Finish reasons and usage are mapped
//! as the [module doc](super) lists.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::Usage;

/// What we read of a `chat.completion`.
#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// An OpenAI-format `usage` object. Besides OpenAI's fields it reads
/// `prompt_tokens_details.cache_write_tokens` (OpenRouter's name for prompt-cache writes), so
/// cache writes reach `cache_creation_input_tokens` when the answer carries them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        let details = u.prompt_tokens_details.unwrap_or_default();
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cache_read_tokens: details.cached_tokens.unwrap_or(0),
            cache_write_tokens: details.cache_write_tokens.unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<Function>,
}

#[derive(Debug, Deserialize)]
struct Function {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`. `called_tools` turns a plain `stop`
/// into `tool_use`: some OpenAI-compatible servers say `stop` after calling a tool, and an
/// Anthropic client only runs tools when the stop reason says so.
pub fn stop_reason(finish_reason: Option<&str>, called_tools: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if called_tools => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic's `usage` object. Anthropic's `input_tokens` excludes cache reads and writes,
/// which it reports apart; OpenAI's `prompt_tokens` includes them.
pub fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage
            .prompt_tokens
            .saturating_sub(usage.cache_read_tokens)
            .saturating_sub(usage.cache_write_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    })
}

/// The `input` of a `tool_use` block: the arguments parsed. Anthropic requires an object; a
/// model that produced no arguments gets `{}`, and arguments that are not a JSON object are
/// kept as text under `arguments` rather than lost.
pub fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            tracing::warn!("a tool call's arguments are not a JSON object; passed on as text");
            json!({ "arguments": arguments })
        }
    }
}

/// Converts a `chat.completion` body. `fallback_usage` is used when the body has no usage (the
/// gateway's estimate). Fails only when the body is not a JSON object.
pub fn to_message(
    body: &[u8],
    id: &str,
    model: &str,
    fallback_usage: impl FnOnce(&str) -> Usage,
) -> Result<Value, serde_json::Error> {
    let completion: Completion = serde_json::from_slice(body)?;
    let mut content: Vec<Value> = Vec::new();
    let mut finish_reason: Option<String> = None;
    let mut generated = String::new();
    if let Some(choice) = completion.choices.into_iter().next() {
        finish_reason = choice.finish_reason;
        if let Some(message) = choice.message {
            let text = message.content.map(content_text).unwrap_or_default();
            let text = if text.is_empty() {
                message.refusal.unwrap_or_default()
            } else {
                text
            };
            if !text.is_empty() {
                generated.push_str(&text);
                content.push(json!({"type": "text", "text": text}));
            }
            for (n, call) in message.tool_calls.into_iter().flatten().enumerate() {
                let function = call.function.unwrap_or(Function {
                    name: None,
                    arguments: None,
                });
                let arguments = function.arguments.unwrap_or_default();
                generated.push_str(&arguments);
                content.push(json!({
                    "type": "tool_use",
                    "id": call.id.unwrap_or_else(|| format!("toolu_{id}_{n}")),
                    "name": function.name.unwrap_or_default(),
                    "input": tool_input(&arguments),
                }));
            }
        }
    }
    let called_tools = content.iter().any(|b| b["type"] == "tool_use");
    let usage = match completion.usage {
        Some(usage) => Usage::from(usage),
        None => fallback_usage(&generated),
    };
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish_reason.as_deref(), called_tools),
        "stop_sequence": null,
        "usage": usage_json(&usage),
    }))
}

/// A message's `content`: a string, or the text of an array of parts.
fn content_text(content: Value) -> String {
    match content {
        Value::String(s) => s,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn no_fallback(_: &str) -> Usage {
        panic!("usage was reported")
    }

    #[test]
    fn text_answer() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        let m = to_message(body, "msg_1", "claude-alias", no_fallback).unwrap();
        assert_eq!(
            m,
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-alias",
                "content": [{"type": "text", "text": "Hi"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2}
            })
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks() {
        let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
            {"id":"call_2","type":"function","function":{"name":"noargs","arguments":""}},
            {"id":"call_3","type":"function","function":{"name":"bad","arguments":"[1"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":10,"total_tokens":30}}"#;
        let m = to_message(body, "msg_1", "m", no_fallback).unwrap();
        assert_eq!(
            m["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}},
                {"type": "tool_use", "id": "call_2", "name": "noargs", "input": {}},
                {"type": "tool_use", "id": "call_3", "name": "bad", "input": {"arguments": "[1"}}
            ])
        );
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"]["input_tokens"], 20);
    }

    #[test]
    fn cache_reads_and_writes_are_reported_apart() {
        let body = br#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8,"cache_write_tokens":2}}}"#;
        let m = to_message(body, "msg_1", "m", no_fallback).unwrap();
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 2, "output_tokens": 5, "cache_read_input_tokens": 8, "cache_creation_input_tokens": 2})
        );
    }

    #[test]
    fn finish_reasons_and_missing_usage() {
        assert_eq!(stop_reason(Some("stop"), false), "end_turn");
        assert_eq!(stop_reason(Some("stop"), true), "tool_use");
        assert_eq!(stop_reason(Some("length"), true), "max_tokens");
        assert_eq!(stop_reason(Some("content_filter"), false), "refusal");
        assert_eq!(stop_reason(None, false), "end_turn");

        let body = br#"{"choices":[{"message":{"content":null,"refusal":"I can't"},"finish_reason":"content_filter"}]}"#;
        let m = to_message(body, "msg_1", "m", |text| {
            assert_eq!(text, "I can't");
            Usage::new(7, 3)
        })
        .unwrap();
        assert_eq!(m["content"], json!([{"type": "text", "text": "I can't"}]));
        assert_eq!(m["stop_reason"], "refusal");
        assert_eq!(m["usage"]["input_tokens"], 7);
        assert_eq!(m["usage"]["output_tokens"], 3);
        assert!(to_message(b"\"text\"", "msg_1", "m", no_fallback).is_err());
    }
}
