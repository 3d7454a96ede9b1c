//! Stage 8, meter: answer the client, then count tokens, price them and emit exactly one
//! [`UsageEvent`] per authenticated request — successes and failures alike.
//!
//! This runs in the request's own spawned task (see the pipeline's "Cancellation"), a path the
//! client cannot cancel. For a stream the task *is* the driver: it reads upstream events and
//! forwards each one, as it arrives, into a bounded channel that feeds the client's response
//! body, so nothing is buffered and a slow client slows the upstream read (backpressure) instead
//! of growing memory.
//!
//! # How a stream ends
//!
//! | end | the client sees | outcome | tokens |
//! | --- | --- | --- | --- |
//! | upstream sends `[DONE]` | every event, then `[DONE]` | `success` | upstream usage |
//! | upstream closes or breaks without `[DONE]` | events so far, then an `error` event with code `stream_truncated`, no `[DONE]` | `truncated` | usage if seen, else estimated |
//! | no event for `SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS` (or the total deadline passes) | same as above | `truncated` (`upstream_timeout`) | same |
//! | the client disconnects (or stops reading until the total deadline) | — | `client_disconnected` | estimated from the text received |
//!
//! The `error` event is what OpenAI itself sends mid-stream, and the official SDKs raise an
//! `APIError` on it, so a cut stream is never mistaken for a complete answer. When the stream
//! ends for any reason other than `[DONE]`, the upstream response is dropped at once, closing
//! the connection so the provider stops generating.
//!
//! We always ask providers for usage (`stream_options.include_usage`); the usage-only chunk is
//! dropped from what the client receives unless the client asked for it. When no usage arrives,
//! prompt tokens are estimated from the request and completion tokens from the text received,
//! and the event says `tokens_estimated = true`.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use shared::usage::{UsageEvent, UsageOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::attempt::Attempt;
use super::route::Backend;
use super::{AuthContext, RequestId};
use crate::error::GatewayError;
use crate::providers::{self, Completion, Event, EventStream, Reply, Usage};
use crate::state::AppState;
use crate::tokens;
use crate::wire::ChatRequest;

/// The usage event's `endpoint` for chat completions.
pub const CHAT_COMPLETIONS: &str = "chat.completions";
/// Events buffered between the stream driver and the client's connection. Small: it only
/// smooths scheduling; a slow client should push back on the upstream, not fill memory.
const STREAM_BUFFER: usize = 16;
/// How long the final error event may wait for a client that is not reading.
const FINAL_EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Allocation unit of the buffer events are framed into.
const ENCODE_BLOCK: usize = 8 * 1024;
/// The last event of a stream that ended before `[DONE]`.
const TRUNCATED_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream provider ended the stream before it completed\",\"type\":\"api_error\",\"param\":null,\"code\":\"stream_truncated\"}}\n\n";

/// The facts a usage event is built from, gathered as the stages run.
pub struct Meter {
    request_id: RequestId,
    /// Which API the client called; see [`Meter::set_endpoint`].
    endpoint: &'static str,
    tenant_id: Uuid,
    key_id: Uuid,
    team_id: Option<Uuid>,
    model: String,
    stream: bool,
    backend: Option<BackendFacts>,
}

struct BackendFacts {
    deployment_id: Uuid,
    provider_id: Uuid,
    provider: Option<&'static str>,
    upstream_model: String,
    input_price: i64,
    cached_input_price: i64,
    output_price: i64,
}

/// Token counts for the event.
#[derive(Debug, Clone, Copy, Default)]
struct Tokens {
    prompt: u64,
    completion: u64,
    cache_read: u64,
    cache_write: u64,
    estimated: bool,
}

impl From<Usage> for Tokens {
    fn from(u: Usage) -> Self {
        Self {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
            cache_read: u.cache_read_tokens,
            cache_write: u.cache_write_tokens,
            estimated: false,
        }
    }
}

impl Meter {
    pub fn new(request_id: &RequestId, auth: &AuthContext) -> Self {
        Self {
            request_id: *request_id,
            endpoint: CHAT_COMPLETIONS,
            tenant_id: auth.key.tenant_id,
            key_id: auth.key.key_id,
            team_id: auth.key.team_id,
            model: String::new(),
            stream: false,
            backend: None,
        }
    }

    /// The usage event's `endpoint` (`chat.completions` unless set).
    pub fn set_endpoint(&mut self, endpoint: &'static str) {
        self.endpoint = endpoint;
    }

    /// For bodies that failed validation: the model they named, if any.
    pub fn set_model(&mut self, model: String) {
        self.model = model;
    }

    pub fn set_request(&mut self, request: &ChatRequest) {
        self.model.clone_from(&request.model);
        self.stream = request.is_stream();
    }

    pub fn set_backend(&mut self, backend: &Backend) {
        let d = &backend.deployment;
        self.backend = Some(BackendFacts {
            deployment_id: d.id,
            provider_id: d.provider_id,
            provider: backend
                .tenant
                .provider(d.provider_id)
                .map(|p| p.record.kind.as_str()),
            upstream_model: d.upstream_model.clone(),
            input_price: d.input_price_micros_per_mtok,
            cached_input_price: d
                .cached_input_price_micros_per_mtok
                .unwrap_or(d.input_price_micros_per_mtok),
            output_price: d.output_price_micros_per_mtok,
        });
    }

    /// A request that failed before any answer: send the error, meter it with no tokens.
    pub fn error(self, error: GatewayError, respond: oneshot::Sender<Response>) -> UsageEvent {
        let status = error.status().as_u16();
        let code = error.code();
        // If the client is gone the response is simply dropped; the event is the same.
        let _ = respond.send(error.into_response());
        self.finish(
            status,
            UsageOutcome::Error,
            Some(code),
            Tokens::default(),
            None,
        )
    }

    /// Delivers a provider's reply and meters it.
    pub async fn reply(
        self,
        state: &AppState,
        request: &ChatRequest,
        attempt: Attempt,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        match attempt.reply {
            Reply::Complete(completion) => self.complete(request, completion, respond),
            Reply::Stream(events) => {
                self.stream(state, request, events, attempt.deadline, respond)
                    .await
            }
        }
    }

    fn complete(
        self,
        request: &ChatRequest,
        completion: Completion,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        // A reference-counted clone: the body stays readable for the estimate below.
        let (outcome, code) = deliver_json(completion.body.clone(), respond);
        // Counted after the client has its answer, so an estimate never delays it.
        let tokens = match completion.usage {
            Some(usage) => Tokens::from(usage),
            None => Tokens {
                prompt: tokens::estimate_prompt_tokens(request),
                completion: tokens::count(&providers::completion_text(&completion.body)),
                estimated: true,
                ..Tokens::default()
            },
        };
        self.finish(200, outcome, code, tokens, None)
    }

    /// Drives a stream to its end; see the module docs for the possible ends.
    async fn stream(
        self,
        state: &AppState,
        request: &ChatRequest,
        mut events: EventStream,
        deadline: Instant,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        let (tx, rx) = mpsc::channel::<Bytes>(STREAM_BUFFER);
        let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
        let response = (
            StatusCode::OK,
            [
                (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response();
        if respond.send(response).is_err() {
            drop(events);
            let tokens = Tokens {
                prompt: tokens::estimate_prompt_tokens(request),
                completion: 0,
                estimated: true,
                ..Tokens::default()
            };
            return self.finish(
                200,
                UsageOutcome::ClientDisconnected,
                Some("client_disconnected"),
                tokens,
                None,
            );
        }

        let wants_usage = request.wants_stream_usage();
        let idle = state.settings().idle_timeout();
        let mut tally = Tally::default();
        let mut buf = BytesMut::new();
        let stall = tokio::time::sleep_until((Instant::now() + idle).min(deadline));
        tokio::pin!(stall);

        let end = loop {
            tokio::select! {
                biased;
                () = tx.closed() => break End::ClientGone,
                next = events.next() => match next {
                    None if tally.saw_done => break End::Done,
                    None => break End::Cut("the upstream closed the stream without [DONE]".to_owned()),
                    Some(Err(e)) => break End::Cut(e.0),
                    Some(Ok(event)) => {
                        stall.as_mut().reset((Instant::now() + idle).min(deadline));
                        if tally.observe(&event, wants_usage, &self.request_id) {
                            encode(&mut buf, &event);
                            // A client that stops reading but keeps the connection open
                            // blocks this send (backpressure); the total deadline still holds.
                            let sent = tokio::time::timeout_at(deadline, tx.send(buf.split().freeze())).await;
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

        if matches!(end, End::Cut(_) | End::Stalled) && !tally.upstream_error {
            let _ = tokio::time::timeout(
                FINAL_EVENT_WAIT,
                tx.send(Bytes::from_static(TRUNCATED_EVENT)),
            )
            .await;
        }
        drop(tx);

        let tokens = match tally.usage {
            Some(usage) => Tokens::from(usage),
            None => Tokens {
                prompt: tokens::estimate_prompt_tokens(request),
                completion: tokens::count(&tally.text),
                estimated: true,
                ..Tokens::default()
            },
        };
        let (outcome, code) = match &end {
            End::Done => (UsageOutcome::Success, None),
            End::ClientGone => (
                UsageOutcome::ClientDisconnected,
                Some("client_disconnected"),
            ),
            End::Cut(_) if tally.upstream_error => {
                (UsageOutcome::Truncated, Some("upstream_error"))
            }
            End::Cut(reason) => {
                tracing::warn!(request_id = %self.request_id.id, reason = %reason, "upstream stream truncated");
                (UsageOutcome::Truncated, Some("stream_truncated"))
            }
            End::Stalled => {
                tracing::warn!(request_id = %self.request_id.id, "upstream stream stalled past the idle timeout or deadline");
                (UsageOutcome::Truncated, Some("upstream_timeout"))
            }
        };
        let ttft = tally.ttft_ms;
        self.finish(200, outcome, code, tokens, ttft)
    }

    fn finish(
        self,
        status: u16,
        outcome: UsageOutcome,
        error_code: Option<&str>,
        tokens: Tokens,
        ttft_ms: Option<u64>,
    ) -> UsageEvent {
        let (cost, deployment_id, provider_id, provider, upstream_model) = match self.backend {
            Some(b) => (
                shared::money::cost_micros_with_cache(
                    tokens.prompt,
                    tokens.cache_read,
                    tokens.completion,
                    b.input_price,
                    b.cached_input_price,
                    b.output_price,
                ),
                Some(b.deployment_id),
                Some(b.provider_id),
                b.provider.map(str::to_owned),
                Some(b.upstream_model),
            ),
            None => (0, None, None, None, None),
        };
        UsageEvent {
            id: self.request_id.id,
            tenant_id: self.tenant_id,
            key_id: Some(self.key_id),
            team_id: self.team_id,
            model: self.model,
            deployment_id,
            provider_id,
            provider,
            upstream_model,
            endpoint: self.endpoint.to_owned(),
            stream: self.stream,
            status,
            outcome,
            error_code: error_code.map(str::to_owned),
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cache_read_tokens: tokens.cache_read,
            cache_write_tokens: tokens.cache_write,
            tokens_estimated: tokens.estimated,
            cost_micros: cost,
            latency_ms: millis(self.request_id.started.elapsed()),
            ttft_ms,
            started_at: self.request_id.started_at,
        }
    }
}

/// Hands the event to the usage sink (which may wait while its queue is full) and counts it.
pub async fn emit(state: &AppState, event: UsageEvent) {
    metrics::counter!("switchyard_usage_events_total", "outcome" => event.outcome.as_str())
        .increment(1);
    metrics::histogram!(
        "switchyard_request_duration_seconds",
        "stream" => if event.stream { "true" } else { "false" },
        "outcome" => event.outcome.as_str(),
    )
    .record(event.latency_ms as f64 / 1000.0);
    if let Some(ttft) = event.ttft_ms {
        metrics::histogram!("switchyard_time_to_first_token_seconds").record(ttft as f64 / 1000.0);
    }
    metrics::counter!("switchyard_tokens_total", "kind" => "prompt").increment(event.prompt_tokens);
    metrics::counter!("switchyard_tokens_total", "kind" => "completion")
        .increment(event.completion_tokens);
    state.usage().emit(event).await;
}

/// Sends a whole JSON answer to the client. The provider has already done (and billed) the
/// work, so a client that left still costs the full answer: the outcome only records that it
/// left (`client_disconnected`).
fn deliver_json(
    body: Bytes,
    respond: oneshot::Sender<Response>,
) -> (UsageOutcome, Option<&'static str>) {
    let response = (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Body::from(body),
    )
        .into_response();
    match respond.send(response) {
        Ok(()) => (UsageOutcome::Success, None),
        Err(_) => (
            UsageOutcome::ClientDisconnected,
            Some("client_disconnected"),
        ),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
enum End {
    Done,
    Cut(String),
    Stalled,
    ClientGone,
}

/// What the driver learned from the events so far.
#[derive(Default)]
struct Tally {
    saw_done: bool,
    /// The upstream sent an `error` event itself; we pass it on and add none of our own.
    upstream_error: bool,
    usage: Option<Usage>,
    /// Generated text received (content and tool-call arguments), for estimates.
    text: String,
    ttft_ms: Option<u64>,
}

/// The parts of a `chat.completion.chunk` we read, borrowed from the event's data.
#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
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
        let before = self.text.len();
        for choice in chunk.choices.iter().flatten() {
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
            self.ttft_ms = Some(millis(request_id.started.elapsed()));
        }
        let usage_only = chunk.usage.is_some() && chunk.choices.as_ref().is_some_and(Vec::is_empty);
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        !usage_only || wants_usage
    }
}

/// Frames `event` as SSE into `buf`: the data verbatim (one `data:` line per line of it).
fn encode(buf: &mut BytesMut, event: &Event) {
    // Reserve in blocks: the frozen chunks still share the previous block, so each reserve that
    // runs out allocates afresh; blocks make that one allocation per many events.
    let needed = event.data.len() + event.name.as_ref().map_or(0, String::len) + 64;
    if buf.capacity() - buf.len() < needed {
        buf.reserve(needed.max(ENCODE_BLOCK));
    }
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
}

/// Embeddings metering (`POST /v1/embeddings`, see `pipeline::embed`).
impl Meter {
    /// The usage event's `endpoint` for embeddings.
    pub const EMBEDDINGS: &'static str = "embeddings";

    /// Records the parsed embeddings request's model (embeddings never stream).
    pub fn set_embeddings_request(&mut self, request: &crate::wire::EmbeddingsRequest) {
        self.model.clone_from(&request.model);
        self.stream = false;
    }

    /// Delivers an embeddings answer (the provider's body, as is) and meters it. Tokens are the
    /// provider's prompt tokens; when it reports none (or zero, which no non-empty input can
    /// be), the input's tokens are counted locally and the event is marked estimated. There are
    /// no output tokens, so the cost is prompt tokens × the input price.
    pub fn embeddings(
        self,
        request: &crate::wire::EmbeddingsRequest,
        answer: crate::providers::Embeddings,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        let (outcome, code) = deliver_json(answer.body, respond);
        let tokens = match answer.usage.filter(|u| u.prompt_tokens > 0) {
            Some(usage) => Tokens {
                prompt: usage.prompt_tokens,
                cache_read: usage.cache_read_tokens,
                ..Tokens::default()
            },
            None => Tokens {
                prompt: tokens::embedding_input_tokens(&request.input),
                estimated: true,
                ..Tokens::default()
            },
        };
        self.finish(200, outcome, code, tokens, None)
    }
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
        let mut buf = BytesMut::new();
        encode(&mut buf, &ev(r#"{"a":1}"#));
        assert_eq!(&buf[..], b"data: {\"a\":1}\n\n");
        buf.clear();
        encode(
            &mut buf,
            &Event {
                name: Some("ping".into()),
                data: "a\nb".into(),
            },
        );
        assert_eq!(&buf[..], b"event: ping\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn truncated_event_is_the_documented_json() {
        let text = std::str::from_utf8(TRUNCATED_EVENT).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(json["error"]["code"], "stream_truncated");
        assert_eq!(json["error"]["type"], "api_error");
        assert_eq!(json["error"]["param"], serde_json::Value::Null);
    }
}
