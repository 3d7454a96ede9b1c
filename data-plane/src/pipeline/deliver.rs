//! Response delivery: how an answer reaches the client, separate from what it costs
//! ([`meter`](super::meter) turns what delivery reports into the usage event).
//!
//! - [`json`]: a whole JSON answer, handed over in one piece.
//! - [`stream`]: the stream pump. It reads upstream events and forwards each one, as it
//!   arrives, into a bounded channel that feeds the client's response body, so nothing is
//!   buffered and a slow client slows the upstream read (backpressure) instead of growing
//!   memory. It reports how the stream ended and what it saw ([`StreamReport`]); it never
//!   meters.
//!
//! See the meter's module docs for the table of how a stream can end and what the client sees.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::RequestId;
use shared::guardrails::{StreamRestorer, Vault};

use crate::providers::{Event, EventStream, Usage};
use crate::state::AppState;

/// Events buffered between the stream driver and the client's connection. Small: it only
/// smooths scheduling; a slow client should push back on the upstream, not fill memory.
const STREAM_BUFFER: usize = 16;
/// How long the final error event may wait for a client that is not reading.
const FINAL_EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// At most this many `finish_reason`s are kept from a stream (one per choice).
const MAX_FINISH_REASONS: usize = 16;
/// The last event of a stream that ended before `[DONE]`.
pub(crate) const TRUNCATED_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream provider ended the stream before it completed\",\"type\":\"api_error\",\"param\":null,\"code\":\"stream_truncated\"}}\n\n";

/// The last event of a stream cut by a shutdown (see [`crate::lifecycle`]).
pub(crate) const SHUTDOWN_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The gateway node is shutting down; the stream was cut before it completed\",\"type\":\"api_error\",\"param\":null,\"code\":\"shutting_down\"}}\n\n";

/// Whether a whole answer reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Handed to the connection.
    Sent,
    /// The client had already gone.
    ClientGone,
}

/// Sends a whole JSON answer to the client, with `headers` added. The provider has already done
/// (and billed) the work, so a client that left still costs the full answer: the meter only
/// records that it left.
pub fn json(body: Bytes, headers: HeaderMap, respond: oneshot::Sender<Response>) -> Delivered {
    let mut response = (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Body::from(body),
    )
        .into_response();
    response.headers_mut().extend(headers);
    match respond.send(response) {
        Ok(()) => Delivered::Sent,
        Err(_) => Delivered::ClientGone,
    }
}

/// Sends a whole stream that is already known (a cached answer replayed, see
/// [`crate::response_cache::replay`]) as a `text/event-stream` response with `headers` added.
pub fn events(
    events: Vec<Bytes>,
    headers: HeaderMap,
    respond: oneshot::Sender<Response>,
) -> Delivered {
    let body = Body::from_stream(futures::stream::iter(
        events.into_iter().map(Ok::<_, Infallible>),
    ));
    match respond.send(event_stream_response(body, headers)) {
        Ok(()) => Delivered::Sent,
        Err(_) => Delivered::ClientGone,
    }
}

/// A `200 text/event-stream` response of `body`, with `headers` added.
fn event_stream_response(body: Body, headers: HeaderMap) -> Response {
    let mut response = (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response();
    response.headers_mut().extend(headers);
    response
}

/// What else the stream pump does with each event, for requests that need it.
#[derive(Default)]
pub struct Hooks {
    /// Puts the answer together for the response cache (it sees every upstream event,
    /// unchanged).
    pub assembler: Option<crate::response_cache::assemble::Assembler>,
    /// Puts guardrail placeholders back into the text the client receives.
    pub restorer: Option<Restorers>,
}

/// Restores placeholders in a streamed answer, one [`StreamRestorer`] per choice (see
/// [`shared::guardrails`]): a placeholder split across chunks is held back until it is whole,
/// and whatever is held is released with the choice's finish chunk.
pub struct Restorers {
    vault: std::sync::Arc<Vault>,
    choices: Vec<(u64, StreamRestorer)>,
    received: usize,
    sent: usize,
}

impl Restorers {
    pub fn new(vault: std::sync::Arc<Vault>) -> Self {
        Self {
            vault,
            choices: Vec::new(),
            received: 0,
            sent: 0,
        }
    }

    /// Whether the text sent differs from the text received (a placeholder was put back).
    pub fn restored_any(&self) -> bool {
        self.received != self.sent
    }

    fn restorer(&mut self, index: u64) -> &mut StreamRestorer {
        let at = match self.choices.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                let vault = std::sync::Arc::clone(&self.vault);
                self.choices.push((index, StreamRestorer::new(vault)));
                self.choices.len() - 1
            }
        };
        &mut self.choices[at].1
    }

    /// The chunk `data` with its content deltas restored; `None` when it is unchanged.
    fn rewrite(&mut self, data: &str) -> Option<String> {
        if data.trim() == "[DONE]" {
            return None;
        }
        let mut chunk: serde_json::Value = serde_json::from_str(data).ok()?;
        let choices = chunk.get_mut("choices")?.as_array_mut()?;
        let mut changed = false;
        for choice in choices.iter_mut() {
            let index = choice
                .get("index")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let content = choice
                .pointer("/delta/content")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            let restorer = self.restorer(index);
            let mut out = match &content {
                Some(text) => restorer.push(text),
                None => String::new(),
            };
            if finished {
                out.push_str(&restorer.finish());
            }
            self.received += content.as_ref().map_or(0, String::len);
            self.sent += out.len();
            if content.as_deref() == Some(out.as_str()) || (content.is_none() && out.is_empty()) {
                continue;
            }
            changed = true;
            match choice
                .get_mut("delta")
                .and_then(serde_json::Value::as_object_mut)
            {
                Some(delta) => {
                    delta.insert("content".into(), serde_json::Value::String(out));
                }
                None => {
                    if let Some(map) = choice.as_object_mut() {
                        map.insert("delta".into(), serde_json::json!({ "content": out }));
                    }
                }
            }
        }
        changed.then(|| chunk.to_string())
    }
}

/// How a stream ended and what the pump saw on the way.
pub struct StreamReport {
    pub end: End,
    pub tally: Tally,
}

/// Pumps `events` to the client until the stream ends (see the meter's table of ends): sends the
/// `text/event-stream` response (with `headers` added) at once, forwards events as they
/// arrive, drops the usage-only chunk unless `wants_usage`, and closes the upstream connection
/// as soon as the stream ends for any reason. `hooks` see every event on the way.
#[allow(clippy::too_many_arguments)]
pub async fn stream(
    state: &AppState,
    request_id: &RequestId,
    wants_usage: bool,
    mut events: EventStream,
    deadline: Instant,
    headers: HeaderMap,
    respond: oneshot::Sender<Response>,
    hooks: &mut Hooks,
) -> StreamReport {
    let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    if respond.send(event_stream_response(body, headers)).is_err() {
        return StreamReport {
            end: End::ClientGone,
            tally: Tally::default(),
        };
    }

    let idle = state.settings().idle_timeout();
    let mut tally = Tally::default();
    let stall = tokio::time::sleep_until((Instant::now() + idle).min(deadline));
    tokio::pin!(stall);
    let cut = state.lifecycle().cut();
    tokio::pin!(cut);

    let end = loop {
        tokio::select! {
            biased;
            () = tx.closed() => break End::ClientGone,
            () = &mut cut => break End::Shutdown,
            next = events.next() => match next {
                None if tally.saw_done => break End::Done,
                None => break End::Cut("the upstream closed the stream without [DONE]".to_owned()),
                Some(Err(e)) => break End::Cut(e.0),
                Some(Ok(event)) => {
                    stall.as_mut().reset((Instant::now() + idle).min(deadline));
                    if let Some(assembler) = hooks.assembler.as_mut() {
                        assembler.observe(&event.data);
                    }
                    if tally.observe(&event, wants_usage, request_id) {
                        let framed = match hooks.restorer.as_mut().and_then(|r| r.rewrite(&event.data)) {
                            Some(data) => encode(&Event { name: event.name.clone(), data }),
                            None => encode(&event),
                        };
                        // A client that stops reading but keeps the connection open
                        // blocks this send (backpressure); the total deadline and a
                        // shutdown's cut still hold.
                        let sent = tokio::select! {
                            sent = tokio::time::timeout_at(deadline, tx.send(framed)) => sent,
                            () = &mut cut => break End::Shutdown,
                        };
                        if !matches!(sent, Ok(Ok(()))) {
                            break End::ClientGone;
                        }
                    }
                    if tally.saw_done {
                        break End::Done;
                    }
                }
            },
            () = &mut stall => break End::Stalled,
        }
    };
    // Closes the upstream connection now, so the provider stops generating.
    drop(events);

    if matches!(end, End::Shutdown) {
        // No waiting: the process is about to exit. A client that is not reading (its buffer
        // full) misses the event but still sees the stream end without `[DONE]`.
        let _ = tx.try_send(Bytes::from_static(SHUTDOWN_EVENT));
    } else if matches!(end, End::Cut(_) | End::Stalled) && !tally.upstream_error {
        let _ = tokio::time::timeout(
            FINAL_EVENT_WAIT,
            tx.send(Bytes::from_static(TRUNCATED_EVENT)),
        )
        .await;
    }
    drop(tx);
    StreamReport { end, tally }
}

/// How a stream ended.
#[derive(Debug)]
pub enum End {
    Done,
    Cut(String),
    Stalled,
    ClientGone,
    /// Cut by a shutdown whose grace period ended (see [`crate::lifecycle`]).
    Shutdown,
}

/// What the driver learned from the events so far.
#[derive(Default)]
pub struct Tally {
    pub saw_done: bool,
    /// The upstream sent an `error` event itself; we pass it on and add none of our own.
    pub upstream_error: bool,
    pub usage: Option<Usage>,
    /// Generated text received (content and tool-call arguments), for estimates.
    pub text: String,
    pub ttft_ms: Option<u64>,
    /// The chunks' `id` and `model` (the first seen) and every choice's `finish_reason`, for
    /// the attempt's span (kept only when tracing is on).
    pub response_id: Option<String>,
    pub response_model: Option<String>,
    pub finish_reasons: Vec<String>,
}

/// The parts of a `chat.completion.chunk` we read, borrowed from the event's data.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallView<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallView<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionView<'a>>,
}

#[derive(Deserialize)]
struct FunctionView<'a> {
    #[serde(default, borrow)]
    arguments: Option<std::borrow::Cow<'a, str>>,
}

impl Tally {
    /// Records what `event` says; returns whether the client should receive it.
    fn observe(&mut self, event: &Event, wants_usage: bool, request_id: &RequestId) -> bool {
        if event.data.trim() == "[DONE]" {
            self.saw_done = true;
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<ChunkView<'_>>(&event.data) else {
            // Not ours to judge: forward what we do not understand.
            return true;
        };
        if chunk.error.is_some() {
            self.upstream_error = true;
            return true;
        }
        // Only traces read these: with tracing off, nothing is copied.
        let traced = crate::telemetry::enabled();
        if traced && self.response_id.is_none() {
            self.response_id = chunk.id.as_deref().map(str::to_owned);
        }
        if traced && self.response_model.is_none() {
            self.response_model = chunk.model.as_deref().map(str::to_owned);
        }
        let before = self.text.len();
        for choice in chunk.choices.iter().flatten() {
            // One per choice; bounded whatever the upstream repeats.
            if let Some(reason) = &choice.finish_reason
                && traced
                && self.finish_reasons.len() < MAX_FINISH_REASONS
            {
                self.finish_reasons.push(reason.as_ref().to_owned());
            }
            let Some(delta) = &choice.delta else { continue };
            if let Some(content) = &delta.content {
                self.text.push_str(content);
            }
            for call in delta.tool_calls.iter().flatten() {
                if let Some(args) = call.function.as_ref().and_then(|f| f.arguments.as_ref()) {
                    self.text.push_str(args);
                }
            }
        }
        if self.ttft_ms.is_none() && self.text.len() > before {
            self.ttft_ms = Some(super::meter::millis(request_id.started.elapsed()));
        }
        let usage_only = chunk.usage.is_some() && chunk.choices.as_ref().is_some_and(Vec::is_empty);
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        !usage_only || wants_usage
    }
}

/// Frames `event` as SSE: the data verbatim (one `data:` line per line of it), in a buffer of
/// its own size. (A shared block would be one allocation per many events, but a stream would
/// then hold a block between events: with thousands of slow streams open, that is most of the
/// node's memory.)
fn encode(event: &Event) -> Bytes {
    let lines = event.data.bytes().filter(|&b| b == b'\n').count() + 1;
    let needed = event.data.len()
        + lines * "data: \n".len()
        + event
            .name
            .as_ref()
            .map_or(0, |n| n.len() + "event: \n".len())
        + 1;
    let mut buf = BytesMut::with_capacity(needed);
    if let Some(name) = &event.name {
        buf.put_slice(b"event: ");
        buf.put_slice(name.as_bytes());
        buf.put_u8(b'\n');
    }
    for line in event.data.split('\n') {
        buf.put_slice(b"data: ");
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ev(data: &str) -> Event {
        Event {
            name: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn tally_reads_text_usage_and_drops_the_usage_chunk_unless_asked() {
        let rid = RequestId::new();
        let mut t = Tally::default();
        assert!(t.observe(&ev(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#), false, &rid));
        assert_eq!(t.ttft_ms, None);
        assert!(t.observe(
            &ev(r#"{"choices":[{"index":0,"delta":{"content":"Hel\"lo"}}]}"#),
            false,
            &rid
        ));
        assert!(t.ttft_ms.is_some());
        assert!(t.observe(&ev(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"{}"}}]}}]}"#), false, &rid));
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        assert!(
            !t.observe(&ev(usage), false, &rid),
            "usage chunk dropped when not asked for"
        );
        assert!(t.observe(&ev(usage), true, &rid), "kept when asked for");
        assert_eq!(t.usage, Some(Usage::new(12, 5)));
        assert_eq!(t.text, "Hel\"lo{}");
        assert!(t.observe(&ev("[DONE]"), false, &rid));
        assert!(t.saw_done);
    }

    #[test]
    fn tally_copies_response_facts_only_for_traces() {
        // This test binary never installs tracing (tests/otel.rs covers the traced case).
        assert!(!crate::telemetry::enabled());
        let mut t = Tally::default();
        t.observe(&ev(r#"{"id":"chatcmpl-1","model":"gpt-4o-mini-2024","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#), false, &RequestId::new());
        assert_eq!((t.response_id, t.response_model), (None, None));
        assert!(t.finish_reasons.is_empty());
    }

    #[test]
    fn upstream_error_events_are_forwarded_and_remembered() {
        let mut t = Tally::default();
        assert!(t.observe(
            &ev(r#"{"error":{"message":"boom"}}"#),
            false,
            &RequestId::new()
        ));
        assert!(t.upstream_error);
    }

    #[test]
    fn encoding_keeps_data_verbatim() {
        let one = encode(&ev(r#"{"a":1}"#));
        assert_eq!(&one[..], b"data: {\"a\":1}\n\n");
        let two = encode(&Event {
            name: Some("ping".into()),
            data: "a\nb".into(),
        });
        assert_eq!(&two[..], b"event: ping\ndata: a\ndata: b\n\n");
        // Nothing but the frame: no slack from a shared block.
        assert_eq!(two.len(), "event: ping\ndata: a\ndata: b\n\n".len());
    }

    #[test]
    fn truncated_event_is_the_documented_json() {
        for (event, code) in [
            (TRUNCATED_EVENT, "stream_truncated"),
            (SHUTDOWN_EVENT, "shutting_down"),
        ] {
            let text = std::str::from_utf8(event).unwrap();
            let json: serde_json::Value =
                serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
            assert_eq!(json["error"]["code"], code);
            assert_eq!(json["error"]["type"], "api_error");
            assert_eq!(json["error"]["param"], serde_json::Value::Null);
        }
    }
}
