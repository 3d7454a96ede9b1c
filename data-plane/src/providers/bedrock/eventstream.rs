//! ConverseStream: the `application/vnd.amazon.eventstream` body, decoded frame by frame as bytes
//! arrive, translated into OpenAI `chat.completion.chunk` events.
//!
//! Framing (<https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream>):
//! each message is a 12-byte prelude (total length, headers length, prelude CRC32), headers,
//! payload, and a CRC32 of everything before it. Decoding and both CRC checks are done by
//! `aws-smithy-eventstream` ([`read_message_from`]); this module only cuts the byte stream into
//! whole frames, which may arrive split across (or packed into) any number of network chunks.
//! A frame that claims more than 16 MiB (the limit of AWS's own event-stream implementation,
//! `aws-c-event-stream`) is refused rather than buffered.
//!
//! Events (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>):
//! a message with `:message-type: event` carries `:event-type` and a JSON payload:
//!
//! | Bedrock event | OpenAI chunk(s) |
//! | --- | --- |
//! | `messageStart {role}` | the role chunk |
//! | `contentBlockStart {start: {toolUse: {toolUseId, name}}}` | a tool call start (next tool index) |
//! | `contentBlockDelta {delta: {text}}` | a content delta |
//! | `contentBlockDelta {delta: {toolUse: {input}}}` | an arguments fragment of that block's tool call |
//! | `contentBlockStop` | — |
//! | `messageStop {stopReason}` | the finish chunk |
//! | `metadata {usage, metrics}` | the usage chunk, then `[DONE]` |
//!
//! `[DONE]` follows the usage after `metadata`, or — if the stream then ends cleanly without
//! `metadata` — the finish; a stream that ends before `messageStop`, breaks mid-frame or fails
//! a CRC check ends without it, and the meter reports it truncated. A message with
//! `:message-type: exception` (`:exception-type` `throttlingException`,
//! `modelStreamErrorException`, `validationException`, `internalServerException`,
//! `serviceUnavailableException`) or `error` (`:error-code`, `:error-message`) is passed on as
//! an OpenAI `error` event and ends the stream, also without `[DONE]`.
//!
//! In JSON-schema mode (see [`super::converse`]) the forced tool's input fragments are sent as
//! content deltas and its `tool_use` stop as `stop`.
//!
//! The stream is lazy: one upstream chunk is read only when the consumer (the meter, which
//! applies the idle timeout between events) asks for the next event.

use std::collections::{HashMap, VecDeque};

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::converse::{TokenUsage, finish_reason, usage};
use super::error::{CONTEXT_LENGTH_EXCEEDED, is_context_length};
use crate::providers::canonical::{ChunkWriter, FinishReason};
use crate::providers::transport::error_chain;
use crate::providers::{Event, EventStream, StreamError, Usage};

/// Prelude (12 bytes) + message CRC (4 bytes): the smallest valid frame.
const MIN_FRAME: usize = 16;
/// `AWS_EVENT_STREAM_MAX_MESSAGE_SIZE` in aws-c-event-stream.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Cuts a byte stream into event-stream messages.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Whether bytes of an unfinished frame are buffered.
    pub(crate) fn has_partial_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, StreamError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let total = usize::try_from((&self.buf[..4]).get_u32()).unwrap_or(usize::MAX);
        if !(MIN_FRAME..=MAX_FRAME).contains(&total) {
            return Err(StreamError(format!(
                "event-stream frame claims {total} bytes (allowed {MIN_FRAME}..={MAX_FRAME})"
            )));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        read_message_from(frame)
            .map(Some)
            .map_err(|e| StreamError(format!("bad event-stream frame: {}", error_chain(&e))))
    }
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What a content block of the answer turned into.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// OpenAI tool call number `n`.
    Tool(u32),
    /// The JSON-schema tool: its input is the answer text.
    JsonText,
}

/// Whether the stream goes on after a message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    End,
}

/// Turns ConverseStream messages into OpenAI chunk events.
#[derive(Debug)]
pub(crate) struct Translator {
    writer: ChunkWriter,
    json_tool: Option<String>,
    role_sent: bool,
    blocks: HashMap<u64, Block>,
    next_tool: u32,
    real_tool_calls: bool,
    /// Set by `messageStop`.
    stopped: bool,
    usage: Option<Usage>,
    usage_sent: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

impl Translator {
    pub(crate) fn new(writer: ChunkWriter, json_tool: Option<String>) -> Self {
        Self {
            writer,
            json_tool,
            role_sent: false,
            blocks: HashMap::new(),
            next_tool: 0,
            real_tool_calls: false,
            stopped: false,
            usage: None,
            usage_sent: false,
        }
    }

    fn ensure_role(&mut self, out: &mut VecDeque<Event>) {
        if !self.role_sent {
            self.role_sent = true;
            out.push_back(self.writer.role());
        }
    }

    fn parse<T: for<'de> Deserialize<'de>>(event: &str, payload: &[u8]) -> Result<T, StreamError> {
        serde_json::from_slice(payload).map_err(|e| {
            StreamError(format!(
                "{event} event payload is not the documented JSON: {e}"
            ))
        })
    }

    /// Translates one message, appending events to `out`.
    fn on_message(
        &mut self,
        message: &Message,
        out: &mut VecDeque<Event>,
    ) -> Result<Flow, StreamError> {
        match header(message, ":message-type") {
            Some("exception") => {
                let kind = header(message, ":exception-type").unwrap_or("exception");
                let text = serde_json::from_slice::<Value>(message.payload())
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("Message"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                out.push_back(error_event(kind, &text));
                return Ok(Flow::End);
            }
            Some("error") => {
                let kind = header(message, ":error-code").unwrap_or("error");
                let text = header(message, ":error-message").unwrap_or_default();
                out.push_back(error_event(kind, text));
                return Ok(Flow::End);
            }
            Some("event") | None => {}
            Some(other) => {
                return Err(StreamError(format!(
                    "unknown event-stream message type {other:?}"
                )));
            }
        }
        let payload = message.payload();
        match header(message, ":event-type").unwrap_or_default() {
            "messageStart" => self.ensure_role(out),
            "contentBlockStart" => {
                let start: BlockStart = Self::parse("contentBlockStart", payload)?;
                let Some(tool) = start.start.as_ref().and_then(|s| s.get("toolUse")) else {
                    return Ok(Flow::Continue);
                };
                self.ensure_role(out);
                let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                if self.json_tool.as_deref() == Some(name) {
                    self.blocks
                        .insert(start.content_block_index, Block::JsonText);
                } else {
                    let index = self.next_tool;
                    self.next_tool += 1;
                    self.real_tool_calls = true;
                    self.blocks
                        .insert(start.content_block_index, Block::Tool(index));
                    let id = tool
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push_back(self.writer.tool_call_start(index, id, name));
                }
            }
            "contentBlockDelta" => {
                let BlockDelta {
                    content_block_index: index,
                    delta,
                } = Self::parse("contentBlockDelta", payload)?;
                let Some(delta) = delta else {
                    return Ok(Flow::Continue);
                };
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    self.ensure_role(out);
                    out.push_back(self.writer.text(text));
                } else if let Some(input) = delta
                    .get("toolUse")
                    .and_then(|t| t.get("input"))
                    .and_then(Value::as_str)
                {
                    self.ensure_role(out);
                    match self.blocks.get(&index) {
                        Some(Block::Tool(n)) => {
                            out.push_back(self.writer.tool_call_args(*n, input))
                        }
                        Some(Block::JsonText) => out.push_back(self.writer.text(input)),
                        None => {
                            return Err(StreamError(format!(
                                "toolUse delta for content block {index} that never started"
                            )));
                        }
                    }
                }
                // reasoningContent and citation deltas have no OpenAI chunk equivalent.
            }
            "messageStop" => {
                let stop: MessageStop = Self::parse("messageStop", payload)?;
                self.ensure_role(out);
                let mut reason = finish_reason(stop.stop_reason.as_deref().unwrap_or("end_turn"));
                if reason == FinishReason::ToolCalls
                    && !self.real_tool_calls
                    && self.json_tool.is_some()
                {
                    reason = FinishReason::Stop;
                }
                out.push_back(self.writer.finish(reason));
                self.stopped = true;
                if self.usage.is_some() {
                    // `metadata` came first (not the documented order): we are complete.
                    self.push_usage(out);
                    out.push_back(ChunkWriter::done());
                    return Ok(Flow::End);
                }
            }
            "metadata" => {
                let meta: Metadata = Self::parse("metadata", payload)?;
                self.usage = meta.usage.map(usage);
                if self.stopped {
                    self.push_usage(out);
                    out.push_back(ChunkWriter::done());
                    return Ok(Flow::End);
                }
            }
            // contentBlockStop, and event types added after this was written.
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn push_usage(&mut self, out: &mut VecDeque<Event>) {
        if let Some(u) = self.usage.filter(|_| !self.usage_sent) {
            self.usage_sent = true;
            out.push_back(self.writer.usage(&u));
        }
    }

    /// The upstream closed the stream cleanly (between frames).
    fn on_end(&mut self, out: &mut VecDeque<Event>) {
        if self.stopped {
            self.push_usage(out);
            out.push_back(ChunkWriter::done());
        }
    }
}

/// An OpenAI-format error event for an exception Bedrock sent mid-stream, with the provider's
/// message kept (it says what happened; it never contains our credentials).
fn error_event(kind: &str, message: &str) -> Event {
    let (kind_name, code, error_type) = match kind {
        "throttlingException" | "ThrottlingException" => (
            "throttlingException",
            "rate_limit_exceeded",
            "rate_limit_error",
        ),
        "validationException" | "ValidationException" if is_context_length(message) => (
            "validationException",
            CONTEXT_LENGTH_EXCEEDED,
            "invalid_request_error",
        ),
        "validationException" | "ValidationException" => (
            "validationException",
            "upstream_bad_request",
            "invalid_request_error",
        ),
        other => (other, "upstream_error", "api_error"),
    };
    let message = if message.is_empty() {
        format!("The upstream provider failed mid-stream ({kind_name}).")
    } else {
        format!("The upstream provider failed mid-stream ({kind_name}): {message}")
    };
    Event {
        name: None,
        data: json!({"error": {
            "message": message,
            "type": error_type,
            "param": null,
            "code": code,
        }})
        .to_string(),
    }
}

struct State<S> {
    body: S,
    decoder: FrameDecoder,
    translator: Translator,
    pending: VecDeque<Event>,
    finished: bool,
}

/// The lazy event stream over an event-stream body.
pub(crate) fn events<S, E>(body: S, translator: Translator) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + 'static,
{
    let state = State {
        body,
        decoder: FrameDecoder::default(),
        translator,
        pending: VecDeque::new(),
        finished: false,
    };
    let stream: BoxStream<'static, Result<Event, StreamError>> =
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(event) = st.pending.pop_front() {
                    return Some((Ok(event), st));
                }
                if st.finished {
                    return None;
                }
                match st.decoder.next_message() {
                    Err(e) => {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                    Ok(Some(message)) => {
                        match st.translator.on_message(&message, &mut st.pending) {
                            Ok(Flow::Continue) => {}
                            Ok(Flow::End) => st.finished = true,
                            Err(e) => {
                                st.finished = true;
                                return Some((Err(e), st));
                            }
                        }
                        continue;
                    }
                    Ok(None) => {}
                }
                match st.body.next().await {
                    Some(Ok(chunk)) => st.decoder.push(&chunk),
                    Some(Err(e)) => {
                        st.finished = true;
                        return Some((
                            Err(StreamError(format!(
                                "event stream broke: {}",
                                error_chain(&e)
                            ))),
                            st,
                        ));
                    }
                    None if st.decoder.has_partial_frame() => {
                        st.finished = true;
                        return Some((
                            Err(StreamError(
                                "event stream ended in the middle of a frame".to_owned(),
                            )),
                            st,
                        ));
                    }
                    None => {
                        st.finished = true;
                        st.translator.on_end(&mut st.pending);
                    }
                }
            }
        })
        .boxed();
    stream
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    use super::*;

    fn frame(event_type: &str, payload: Value) -> Vec<u8> {
        let message = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String(event_type.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ));
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    fn exception(kind: &str, message: &str) -> Vec<u8> {
        let message = Message::new(json!({"message": message}).to_string().into_bytes())
            .add_header(Header::new(
                ":exception-type",
                HeaderValue::String(kind.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("exception".into()),
            ));
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    fn tool_stream() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(frame(
            "messageStart",
            json!({"role": "assistant", "p": "abc"}),
        ));
        bytes.extend(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        ));
        bytes.extend(frame("contentBlockStop", json!({"contentBlockIndex": 0})));
        bytes.extend(frame("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}})));
        for part in [r#"{"city":"#, r#""Paris","#, r#""unit":"celsius"}"#] {
            bytes.extend(frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": part}}}),
            ));
        }
        bytes.extend(frame("contentBlockStop", json!({"contentBlockIndex": 1})));
        bytes.extend(frame("messageStop", json!({"stopReason": "tool_use"})));
        bytes.extend(frame("metadata", json!({"usage": {"inputTokens": 20, "outputTokens": 10, "totalTokens": 30}, "metrics": {"latencyMs": 5}})));
        bytes
    }

    /// Runs `bytes` through the stream in chunks of `chunk` bytes.
    async fn run(
        bytes: Vec<u8>,
        chunk: usize,
        json_tool: Option<&str>,
    ) -> Vec<Result<Value, String>> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let writer = ChunkWriter::new("chatcmpl-1".into(), "m".into());
        events(
            futures::stream::iter(chunks),
            Translator::new(writer, json_tool.map(str::to_owned)),
        )
        .map(|r| match r {
            Ok(e) if e.data == "[DONE]" => Ok(json!("[DONE]")),
            Ok(e) => Ok(serde_json::from_str(&e.data).unwrap()),
            Err(e) => Err(e.0),
        })
        .collect()
        .await
    }

    #[tokio::test]
    async fn frames_split_anywhere_translate_to_openai_chunks() {
        for chunk in [1, 7, 64, usize::MAX] {
            let out = run(tool_stream(), chunk.min(tool_stream().len()), None).await;
            let out: Vec<Value> = out.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                out[0]["choices"][0]["delta"],
                json!({"role": "assistant", "content": ""})
            );
            assert_eq!(out[1]["choices"][0]["delta"]["content"], "Checking.");
            let start = &out[2]["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(
                (start["index"].as_u64(), start["id"].as_str()),
                (Some(0), Some("tooluse_a"))
            );
            assert_eq!(start["function"]["name"], "get_weather");
            let args: String = out[3..6]
                .iter()
                .map(|c| {
                    c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .unwrap()
                })
                .collect();
            assert_eq!(args, r#"{"city":"Paris","unit":"celsius"}"#);
            assert_eq!(out[6]["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(out[7]["usage"]["prompt_tokens"], 20);
            assert_eq!(out[7]["usage"]["completion_tokens"], 10);
            assert_eq!(out[8], json!("[DONE]"));
            assert_eq!(out.len(), 9, "chunk size {chunk}");
        }
    }

    #[tokio::test]
    async fn done_only_when_the_message_stopped() {
        // Ends cleanly after messageStop without metadata: complete.
        let mut bytes = frame("messageStart", json!({"role": "assistant"}));
        bytes.extend(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ));
        let before_stop = bytes.clone();
        bytes.extend(frame("messageStop", json!({"stopReason": "end_turn"})));
        let out = run(bytes, 5, None).await;
        assert_eq!(out.last().unwrap().as_ref().unwrap(), &json!("[DONE]"));

        // Ends before messageStop: no [DONE], no error (the meter reports the truncation).
        let out = run(before_stop.clone(), 5, None).await;
        assert!(
            out.iter()
                .all(|e| e.as_ref().is_ok_and(|v| v != &json!("[DONE]")))
        );
        assert_eq!(out.len(), 2);

        // Ends mid-frame: an error.
        let mut cut = before_stop.clone();
        cut.extend(&frame("messageStop", json!({"stopReason": "end_turn"}))[..10]);
        let out = run(cut, 3, None).await;
        assert!(
            out.last()
                .unwrap()
                .as_ref()
                .is_err_and(|e| e.contains("middle of a frame"))
        );
    }

    #[tokio::test]
    async fn a_corrupted_frame_is_a_stream_error() {
        let mut bytes = frame("messageStart", json!({"role": "assistant"}));
        let mut bad = frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        );
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bytes.extend(bad);
        bytes.extend(frame("messageStop", json!({"stopReason": "end_turn"})));
        let out = run(bytes, 1000, None).await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[1]
                .as_ref()
                .is_err_and(|e| e.contains("bad event-stream frame")),
            "{out:?}"
        );

        // A prelude claiming an absurd length is refused at once, not buffered.
        let mut huge = frame("messageStart", json!({"role": "assistant"}));
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let out = run(huge, 1000, None).await;
        assert!(out[0].as_ref().is_err_and(|e| e.contains("claims")));
    }

    #[tokio::test]
    async fn exceptions_become_error_events_without_done() {
        let mut bytes = frame("messageStart", json!({"role": "assistant"}));
        bytes.extend(exception(
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ));
        bytes.extend(frame("messageStop", json!({"stopReason": "end_turn"})));
        let out = run(bytes, 1000, None).await;
        assert_eq!(out.len(), 2);
        let err = out[1].as_ref().unwrap();
        assert_eq!(err["error"]["code"], "rate_limit_exceeded");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Too many tokens")
        );

        let out = run(
            exception(
                "validationException",
                "Input is too long for requested model.",
            ),
            1000,
            None,
        )
        .await;
        assert_eq!(
            out[0].as_ref().unwrap()["error"]["code"],
            "context_length_exceeded"
        );
        let out = run(exception("modelStreamErrorException", "boom"), 1000, None).await;
        assert_eq!(out[0].as_ref().unwrap()["error"]["code"], "upstream_error");
    }

    #[tokio::test]
    async fn json_tool_input_streams_as_text() {
        let mut bytes = frame("messageStart", json!({"role": "assistant"}));
        bytes.extend(frame("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "report"}}})));
        bytes.extend(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"a\":"}}}),
        ));
        bytes.extend(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
        ));
        bytes.extend(frame("messageStop", json!({"stopReason": "tool_use"})));
        bytes.extend(frame(
            "metadata",
            json!({"usage": {"inputTokens": 1, "outputTokens": 2}}),
        ));
        let out: Vec<Value> = run(bytes, 1000, Some("report"))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "{\"a\":");
        assert_eq!(out[2]["choices"][0]["delta"]["content"], "1}");
        assert_eq!(out[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[5], json!("[DONE]"));
    }
}
