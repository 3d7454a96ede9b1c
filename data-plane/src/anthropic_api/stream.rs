//! OpenAI `chat.completion.chunk` events → Anthropic's Messages event stream
//! (<https://docs.anthropic.com/en/api/messages-streaming>).
//!
//! ```text
//! message_start
//! content_block_start (index 0) · ping · content_block_delta… · content_block_stop
//! content_block_start (index 1, tool_use) · content_block_delta (input_json_delta)… · content_block_stop
//! …
//! message_delta {stop_reason, usage} · message_stop
//! ```
//!
//! [`translate_body`] transforms the SSE body the meter produces, event by event as it is
//! polled: nothing is buffered beyond the event being translated, a slow client still slows the
//! upstream read, and a client that goes away drops the meter's body (which meters the
//! disconnect). `message_start` is sent at once, before the first upstream event.
//!
//! Blocks: text deltas go to a `text` block; each new OpenAI tool call (a new `index`, or a new
//! `id` on the same index, as some servers send) closes the open block and starts a `tool_use`
//! block; argument fragments become `input_json_delta`s of that call's block. The finish reason
//! closes the open block; `[DONE]` emits `message_delta` (with the usage of the upstream's usage
//! chunk, or the gateway's estimate when there was none) and `message_stop`.
//!
//! Ends: an OpenAI error event (the upstream's, or the meter's `stream_truncated` when the
//! upstream stream ended before `[DONE]`) becomes `event: error` with an `api_error`, and no
//! `message_stop` follows; a stream that ends without `[DONE]` also ends without `message_stop`,
//! so a client never takes a cut answer for a whole one. After the end the rest of the upstream
//! stream is still read (and discarded), so the meter sees how it really ended.

use std::convert::Infallible;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error;
use super::response::{WireUsage, stop_reason, usage_json};
use crate::providers::Usage;
use crate::tokens;

/// The parts of a `chat.completion.chunk` we read.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The block currently open (started, not stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(usize),
    Tool(usize),
}

/// A tool call seen in this answer.
#[derive(Debug)]
struct ToolBlock {
    openai_index: u64,
    id: String,
    block: usize,
}

/// The translation state of one stream.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    input_estimate: u64,
    next_block: usize,
    open: Option<Open>,
    tools: Vec<ToolBlock>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Generated text and arguments, to estimate output tokens when no usage arrives.
    generated: String,
    pinged: bool,
    ended: bool,
}

impl StreamTranslator {
    /// `id` and `model` go into `message_start`; `input_estimate` is its `input_tokens` (and the
    /// final one too if the upstream reports no usage).
    pub fn new(id: String, model: String, input_estimate: u64) -> Self {
        Self {
            id,
            model,
            input_estimate,
            next_block: 0,
            open: None,
            tools: Vec::new(),
            finish_reason: None,
            usage: None,
            generated: String::new(),
            pinged: false,
            ended: false,
        }
    }

    /// Whether `message_stop` or an error has been sent: nothing more is emitted.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// `message_start`.
    pub fn start(&mut self, out: &mut BytesMut) {
        let message = json!({
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": self.input_estimate,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        });
        write_event(out, "message_start", &message);
    }

    /// Translates one upstream event's `data` into `out` (possibly nothing).
    pub fn on_data(&mut self, data: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data.trim() == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            // Not a chunk (a provider's keep-alive or extension): nothing to say about it.
            return;
        };
        if let Some(err) = chunk.error {
            self.fail(out, &json!({ "error": err }));
            return;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices.into_iter().flatten() {
            // `n` > 1 has no Anthropic equivalent; the first choice is the message.
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                for text in [delta.content, delta.refusal].into_iter().flatten() {
                    if !text.is_empty() {
                        self.text(out, &text);
                    }
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    self.tool_call(out, call);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
                self.close(out);
            }
        }
    }

    /// The body broke (not a clean end): an error event unless the stream already ended.
    pub fn on_broken(&mut self, out: &mut BytesMut) {
        if !self.ended {
            self.fail(
                out,
                &json!({"error": {"message": "The stream from the gateway was interrupted."}}),
            );
        }
    }

    fn fail(&mut self, out: &mut BytesMut, openai_error: &Value) {
        write_event(out, "error", &error::stream_error(openai_error));
        self.ended = true;
    }

    fn text(&mut self, out: &mut BytesMut, text: &str) {
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                self.close(out);
                let index = self.start_block(out, &json!({"type": "text", "text": ""}));
                self.open = Some(Open::Text(index));
                index
            }
        };
        write_event(
            out,
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            }),
        );
        self.generated.push_str(text);
    }

    fn tool_call(&mut self, out: &mut BytesMut, call: ToolCallDelta) {
        let openai_index = call.index.unwrap_or(0);
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let known = self
            .tools
            .iter()
            .rposition(|t| t.openai_index == openai_index);
        let is_new = match (known, &call.id) {
            (None, _) => true,
            (Some(k), Some(id)) => self.tools[k].id != *id,
            (Some(_), None) => false,
        };
        let block = match known {
            Some(k) if !is_new => self.tools[k].block,
            _ => {
                self.close(out);
                let id = call
                    .id
                    .unwrap_or_else(|| format!("toolu_{}_{}", self.id, self.tools.len()));
                let block = self.start_block(
                    out,
                    &json!({
                        "type": "tool_use",
                        "id": id,
                        "name": name.unwrap_or_default(),
                        "input": {},
                    }),
                );
                self.open = Some(Open::Tool(block));
                self.tools.push(ToolBlock {
                    openai_index,
                    id,
                    block,
                });
                block
            }
        };
        if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
            write_event(
                out,
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }),
            );
            self.generated.push_str(&fragment);
        }
    }

    fn start_block(&mut self, out: &mut BytesMut, block: &Value) -> usize {
        let index = self.next_block;
        self.next_block += 1;
        write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        // Anthropic sends its first ping right after the first block starts.
        if !self.pinged {
            self.pinged = true;
            write_event(out, "ping", &json!({"type": "ping"}));
        }
        index
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some(Open::Text(index) | Open::Tool(index)) = self.open.take() {
            write_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.close(out);
        let usage = self
            .usage
            .unwrap_or_else(|| Usage::new(self.input_estimate, tokens::count(&self.generated)));
        write_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(self.finish_reason.as_deref(), !self.tools.is_empty()),
                    "stop_sequence": null,
                },
                "usage": usage_json(&usage),
            }),
        );
        write_event(out, "message_stop", &json!({"type": "message_stop"}));
        self.ended = true;
    }
}

fn write_event(out: &mut BytesMut, name: &str, data: &Value) {
    let data = data.to_string();
    out.reserve(name.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

/// Transforms an OpenAI SSE body into an Anthropic one, lazily (see the module doc).
pub fn translate_body(body: Body, translator: StreamTranslator) -> Body {
    let events = body.into_data_stream().eventsource().boxed();
    let stream = futures::stream::unfold(Some((events, translator, false)), |state| async move {
        let (mut events, mut translator, started) = state?;
        let mut out = BytesMut::new();
        if !started {
            translator.start(&mut out);
            return Some((out.freeze(), Some((events, translator, true))));
        }
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    translator.on_data(&event.data, &mut out);
                    if !out.is_empty() {
                        return Some((out.freeze(), Some((events, translator, true))));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the gateway's own event stream broke");
                    translator.on_broken(&mut out);
                    return (!out.is_empty()).then(|| (out.freeze(), None));
                }
                None => return None,
            }
        }
    });
    Body::from_stream(stream.map(Ok::<Bytes, Infallible>))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// (event name, data JSON) of every event in `bytes`.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|block| {
                let mut lines = block.lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn names(evs: &[(String, Value)]) -> Vec<&str> {
        evs.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn run(chunks: &[&str]) -> Vec<(String, Value)> {
        let mut t = StreamTranslator::new("msg_1".into(), "alias".into(), 9);
        let mut out = BytesMut::new();
        t.start(&mut out);
        for c in chunks {
            t.on_data(c, &mut out);
        }
        let evs = events(&out);
        for (name, data) in &evs {
            assert_eq!(
                data["type"],
                name.as_str(),
                "type field matches the event name"
            );
        }
        evs
    }

    #[test]
    fn text_stream() {
        let evs = run(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 9);
        assert_eq!(evs[0].1["message"]["model"], "alias");
        assert_eq!(
            evs[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(
            evs[3].1["delta"],
            json!({"type": "text_delta", "text": "Hel"})
        );
        assert_eq!(
            evs[6].1,
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 12, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
        );
    }

    #[test]
    fn text_then_tool_calls() {
        let tc = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut call = json!({"index": index, "function": {"arguments": args}});
            if let Some(id) = id {
                call["id"] = json!(id);
                call["type"] = json!("function");
            }
            if let Some(name) = name {
                call["function"]["name"] = json!(name);
            }
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
                .to_string()
        };
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"content":"Checking."}}]}"#.to_owned(),
            tc(0, Some("call_a"), Some("get_weather"), ""),
            tc(0, None, None, "{\"city\":"),
            tc(0, None, None, "\"Paris\"}"),
            tc(1, Some("call_b"), Some("get_time"), "{}"),
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#.to_owned(),
            "[DONE]".to_owned(),
        ];
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let evs = run(&refs);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            evs[5].1,
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            evs[6].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"city\":"})
        );
        assert_eq!(evs[7].1["index"], 1);
        assert_eq!(evs[9].1["index"], 2);
        assert_eq!(evs[9].1["content_block"]["id"], "call_b");
        assert_eq!(evs[10].1["delta"]["partial_json"], "{}");
        assert_eq!(evs[12].1["delta"]["stop_reason"], "tool_use");
        // No usage chunk: the estimate (input as given, output counted).
        assert_eq!(evs[12].1["usage"]["input_tokens"], 9);
        assert!(evs[12].1["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn servers_that_reuse_index_zero_get_one_block_per_call() {
        let evs = run(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"x","function":{"name":"a","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"y","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        let starts: Vec<&Value> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"]["id"])
            .collect();
        assert_eq!(starts, [&json!("x"), &json!("y")]);
        let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            delta.1["delta"]["stop_reason"], "tool_use",
            "stop with tools"
        );
    }

    #[test]
    fn errors_end_the_stream_without_message_stop() {
        let evs = run(&[
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"error":{"message":"The upstream provider ended the stream before it completed","type":"api_error","param":null,"code":"stream_truncated"}}"#,
            "[DONE]",
        ]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            evs[4].1,
            json!({"type": "error", "error": {"type": "api_error", "message": "The upstream provider ended the stream before it completed"}})
        );

        // Ends without [DONE]: no message_delta, no message_stop.
        let evs = run(&[r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#]);
        assert!(!names(&evs).contains(&"message_stop"), "{:?}", names(&evs));
    }

    #[tokio::test]
    async fn bodies_are_translated_incrementally() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let inner = Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>),
        );
        let body = translate_body(inner, StreamTranslator::new("msg_1".into(), "m".into(), 0));
        let mut data = body.into_data_stream();
        // message_start comes before any upstream event.
        let first = data.next().await.unwrap().unwrap();
        assert_eq!(events(&first)[0].0, "message_start");
        // An event split across two writes is translated once complete.
        tx.send(Bytes::from_static(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"con",
        ))
        .await
        .unwrap();
        tx.send(Bytes::from_static(b"tent\":\"Hi\"}}]}\n\n"))
            .await
            .unwrap();
        let next = data.next().await.unwrap().unwrap();
        assert_eq!(
            names(&events(&next)),
            ["content_block_start", "ping", "content_block_delta"]
        );
        tx.send(Bytes::from_static(b"data: [DONE]\n\n"))
            .await
            .unwrap();
        let last = data.next().await.unwrap().unwrap();
        assert_eq!(
            names(&events(&last)),
            ["content_block_stop", "message_delta", "message_stop"]
        );
        drop(tx);
        assert!(data.next().await.is_none());
    }
}
