//! A streamed chat answer put back together as the `chat.completion` object it stands for, so
//! the cache stores one form whatever the request's `stream` (see [`super::replay`] for the way
//! back). Fed each event's data as the stream pump forwards it; runs only for requests whose
//! answer will be stored.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Default)]
pub struct Assembler {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    system_fingerprint: Option<String>,
    choices: BTreeMap<u32, Choice>,
    usage: Option<Value>,
    /// Something arrived that is not a chunk we understand: the answer is not stored.
    unusable: bool,
}

#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: BTreeMap<u32, ToolCall>,
    finish_reason: Option<String>,
}

#[derive(Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default)]
    system_fingerprint: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<DeltaToolCall>,
}

#[derive(Deserialize)]
struct DeltaToolCall {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Bound on the choices and tool calls an assembled answer may hold.
const MAX_PARTS: u32 = 64;

impl Assembler {
    /// Takes one event's data (`[DONE]` included).
    pub fn observe(&mut self, data: &str) {
        if self.unusable || data.trim() == "[DONE]" {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            self.unusable = true;
            return;
        };
        if chunk.error.is_some() {
            self.unusable = true;
            return;
        }
        self.id = self.id.take().or(chunk.id);
        self.model = self.model.take().or(chunk.model);
        self.created = self.created.or(chunk.created);
        self.system_fingerprint = self.system_fingerprint.take().or(chunk.system_fingerprint);
        if chunk.usage.as_ref().is_some_and(|u| !u.is_null()) {
            self.usage = chunk.usage;
        }
        for c in chunk.choices {
            if c.index >= MAX_PARTS {
                self.unusable = true;
                return;
            }
            let choice = self.choices.entry(c.index).or_default();
            if let Some(reason) = c.finish_reason {
                choice.finish_reason = Some(reason);
            }
            let Some(delta) = c.delta else { continue };
            if let Some(role) = delta.role {
                choice.role = Some(role);
            }
            if let Some(text) = delta.content {
                choice
                    .content
                    .get_or_insert_with(String::new)
                    .push_str(&text);
            }
            if let Some(text) = delta.refusal {
                choice
                    .refusal
                    .get_or_insert_with(String::new)
                    .push_str(&text);
            }
            for call in delta.tool_calls {
                if call.index >= MAX_PARTS {
                    self.unusable = true;
                    return;
                }
                let acc = choice.tool_calls.entry(call.index).or_default();
                if call.id.is_some() {
                    acc.id = call.id;
                }
                if call.kind.is_some() {
                    acc.kind = call.kind;
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name {
                        acc.name.push_str(&name);
                    }
                    if let Some(args) = f.arguments {
                        acc.arguments.push_str(&args);
                    }
                }
            }
        }
    }

    /// The `chat.completion` body, when the stream made a complete answer: every choice
    /// finished, nothing unusable.
    pub fn finish(self) -> Option<Bytes> {
        if self.unusable
            || self.choices.is_empty()
            || self.choices.values().any(|c| c.finish_reason.is_none())
        {
            return None;
        }
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, c)| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    Value::String(c.role.unwrap_or_else(|| "assistant".into())),
                );
                message.insert(
                    "content".into(),
                    c.content.map(Value::String).unwrap_or(Value::Null),
                );
                if let Some(refusal) = c.refusal {
                    message.insert("refusal".into(), Value::String(refusal));
                }
                if !c.tool_calls.is_empty() {
                    let calls = c
                        .tool_calls
                        .into_values()
                        .map(|t| {
                            json!({
                                "id": t.id.unwrap_or_default(),
                                "type": t.kind.unwrap_or_else(|| "function".into()),
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": c.finish_reason,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("id".into(), json!(self.id.unwrap_or_default()));
        body.insert("object".into(), json!("chat.completion"));
        body.insert("created".into(), json!(self.created.unwrap_or_default()));
        body.insert("model".into(), json!(self.model.unwrap_or_default()));
        body.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            body.insert("usage".into(), usage);
        }
        if let Some(fp) = self.system_fingerprint {
            body.insert("system_fingerprint".into(), json!(fp));
        }
        serde_json::to_vec(&Value::Object(body))
            .ok()
            .map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_and_tool_calls_come_back_as_one_completion() {
        let mut a = Assembler::default();
        for data in [
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":1}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            "[DONE]",
        ] {
            a.observe(data);
        }
        let body: Value = serde_json::from_slice(&a.finish().unwrap()).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "m");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":1}"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["usage"]["total_tokens"], 7);
    }

    #[test]
    fn an_unfinished_or_failed_stream_makes_nothing() {
        let mut a = Assembler::default();
        a.observe(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#);
        assert!(a.finish().is_none(), "no finish_reason");
        let mut b = Assembler::default();
        b.observe(r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":"stop"}]}"#);
        b.observe(r#"{"error":{"message":"boom"}}"#);
        assert!(b.finish().is_none(), "an error event");
    }
}
