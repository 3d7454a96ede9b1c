//! HTTP transport shared by the provider adapters: sending with the headers timeout, reading
//! bodies with the idle timeout and the call's deadline, parsing SSE, and mapping upstream
//! statuses and transport failures to [`GatewayError`]s.
//!
//! Timeouts: connecting is bounded by the shared client's connect timeout, the response headers
//! by `SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS`, each later body read by
//! `SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS`, and everything by the call's total deadline.

use bytes::{Bytes, BytesMut};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use std::borrow::Cow;

use shared::config::{ProviderKind, ProviderRecord};
use tokio::time::{Instant, timeout_at};

use super::{Call, Event, EventStream, StreamError};
use crate::config::Settings;
use crate::egress::UpstreamClient;
use crate::error::{GatewayError, ProviderError};
use crate::store::ResolvedProvider;
use http::HeaderValue;

/// Largest non-streaming completion we buffer. Far above any real completion; it only stops a
/// broken upstream from exhausting memory.
pub(crate) const MAX_COMPLETION_BYTES: usize = 32 * 1024 * 1024;
/// Largest error body we read; a provider's error JSON is a few hundred bytes.
pub(crate) const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The provider's base URL, trimmed and without a trailing slash: its own, else its kind's
/// default; a provider with neither cannot be called (502 `provider_unavailable`).
///
/// Anthropic and Gemini accept the form their own SDKs document (`ANTHROPIC_BASE_URL` is
/// `https://api.anthropic.com`, Gemini's is the bare host) as well as the form with the API
/// version: a base URL that is only scheme and host gets `/v1` (Anthropic) or `/v1beta`
/// (Gemini) appended.
pub(crate) fn base_url(record: &ProviderRecord) -> Result<Cow<'_, str>, GatewayError> {
    let base = record
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .or(record.kind.default_base_url())
        .map(|b| b.trim_end_matches('/'))
        .ok_or_else(|| {
            GatewayError::ProviderUnavailable(format!("provider {} has no base URL", record.id))
        })?;
    let host_only = base
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.contains('/'));
    Ok(match record.kind {
        ProviderKind::Anthropic if host_only => Cow::Owned(format!("{base}/v1")),
        ProviderKind::Gemini if host_only => Cow::Owned(format!("{base}/v1beta")),
        _ => Cow::Borrowed(base),
    })
}

/// The provider's API key, opened; an unopenable secret is a configuration problem (502).
pub(crate) fn api_key(provider: &ResolvedProvider) -> Result<Option<&str>, GatewayError> {
    provider.api_key().map_err(|e| {
        GatewayError::ProviderUnavailable(format!("provider {}: {e}", provider.record.id))
    })
}

/// `POST url` with a JSON `body`, accepting an event stream when the call streams and JSON
/// otherwise. Adapters add their auth headers.
pub(crate) fn json_post(
    call: &Call<'_>,
    url: impl reqwest::IntoUrl,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let accept = if call.request.is_stream() {
        "text/event-stream"
    } else {
        "application/json"
    };
    call.http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, accept)
        .body(body)
}

/// Sends `builder`, waiting for the response headers at most
/// `SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS` (and never past the call's deadline).
pub(crate) async fn send(
    call: &Call<'_>,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::Response, GatewayError> {
    send_within(call.http, call.hops, call.settings, call.deadline, builder).await
}

/// [`send`] for callers without a [`Call`]: the headers timeout from `settings`, never past
/// `deadline`. Every upstream request leaves through here, so every one carries the hop header
/// and passes the egress check (see [`crate::egress`]).
pub(crate) async fn send_within(
    http: &UpstreamClient,
    hops: &HeaderValue,
    settings: &Settings,
    deadline: Instant,
    builder: reqwest::RequestBuilder,
) -> Result<reqwest::Response, GatewayError> {
    let headers_deadline = (Instant::now() + settings.headers_timeout()).min(deadline);
    http.send(
        builder,
        hops,
        settings.upstream_connect_timeout_ms,
        headers_deadline,
    )
    .await
}

/// Reads an error response's body (bounded); empty if it cannot be read.
pub(crate) async fn read_error_body(response: reqwest::Response, call: &Call<'_>) -> Bytes {
    read_body(response, MAX_ERROR_BYTES, call)
        .await
        .unwrap_or_default()
}

/// Refuses a streaming answer that is not `text/event-stream` (an error page from a proxy, say).
pub(crate) fn require_event_stream(response: &reqwest::Response) -> Result<(), GatewayError> {
    let is_event_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if is_event_stream {
        Ok(())
    } else {
        Err(GatewayError::UpstreamProtocol(
            "asked for a stream but the upstream did not answer text/event-stream".to_owned(),
        ))
    }
}

/// How an upstream refusal reaches the client:
/// - 429 → 429 with the provider's body and `Retry-After` (SDKs back off on it);
/// - 400, 413, 422 → the same status with the provider's body (the client can fix the request);
/// - 401, 403 → 502 `upstream_auth_failed`: the provider refused *our* credentials, which the
///   client cannot fix, and the provider's message may quote the key;
/// - 508 → 508 `loop_detected`: the provider is this gateway (or one that chains back to it),
///   whose loop guard refused the request;
/// - anything else (5xx, 404 for an unknown upstream model, …) → 502 `upstream_error` with the
///   provider's message.
pub fn error_for_status(
    status: StatusCode,
    retry_after: Option<reqwest::header::HeaderValue>,
    error: ProviderError,
) -> GatewayError {
    // Every adapter's refusal passes here: what reaches the client is the parsed message, cut
    // to a bounded length, never raw body bytes.
    let error = Box::new(error.bounded());
    match status.as_u16() {
        429 => GatewayError::UpstreamRateLimited { retry_after, error },
        400 | 413 | 422 => GatewayError::UpstreamBadRequest { status, error },
        401 | 403 => GatewayError::UpstreamAuthFailed {
            status: status.as_u16(),
        },
        508 => GatewayError::LoopDetected { hops: 0 },
        code => GatewayError::UpstreamError {
            status: code,
            error,
        },
    }
}

/// `e` and its sources, for a log line that says *why* (hyper's "connection closed before
/// message completed" sits a few levels down).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Reads a whole body, at most `limit` bytes, with the idle timeout between reads and the
/// call's total deadline.
pub(crate) async fn read_body(
    response: reqwest::Response,
    limit: usize,
    call: &Call<'_>,
) -> Result<Bytes, GatewayError> {
    read_body_within(response, limit, call.settings, call.deadline).await
}

/// [`read_body`] for callers without a [`Call`]: the idle timeout from `settings`, never past
/// `deadline`.
pub(crate) async fn read_body_within(
    mut response: reqwest::Response,
    limit: usize,
    settings: &Settings,
    deadline: Instant,
) -> Result<Bytes, GatewayError> {
    let idle = settings.idle_timeout();
    let mut buf = BytesMut::new();
    loop {
        let read_deadline = (Instant::now() + idle).min(deadline);
        match timeout_at(read_deadline, response.chunk()).await {
            Err(_) => return Err(GatewayError::UpstreamTimeout("response body stalled")),
            Ok(Err(e)) => {
                return Err(GatewayError::UpstreamProtocol(format!(
                    "response body ended early: {}",
                    error_chain(&e.without_url())
                )));
            }
            Ok(Ok(None)) => return Ok(buf.freeze()),
            Ok(Ok(Some(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(GatewayError::UpstreamProtocol(format!(
                        "response body larger than {limit} bytes"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// The response body as parsed SSE events.
pub(crate) fn sse_events(response: reqwest::Response) -> EventStream {
    response
        .bytes_stream()
        .eventsource()
        .map(|item| match item {
            Ok(ev) => Ok(Event {
                name: if ev.event.is_empty() || ev.event == "message" {
                    None
                } else {
                    Some(ev.event)
                },
                data: ev.data,
            }),
            Err(e) => Err(StreamError(e.to_string())),
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn anthropic_and_gemini_take_the_host_only_form_too() {
        let record = |kind: ProviderKind, base: &str| ProviderRecord {
            id: uuid::Uuid::nil(),
            name: "p".into(),
            kind,
            base_url: Some(base.to_owned()),
            api_key_sealed: None,
            options: Default::default(),
        };
        let check = |kind, base: &str, want: &str| {
            assert_eq!(
                base_url(&record(kind, base)).expect("a base URL"),
                want,
                "{base}"
            );
        };
        check(
            ProviderKind::Anthropic,
            "https://api.anthropic.com",
            "https://api.anthropic.com/v1",
        );
        check(
            ProviderKind::Anthropic,
            "https://api.anthropic.com/",
            "https://api.anthropic.com/v1",
        );
        check(
            ProviderKind::Anthropic,
            "https://api.anthropic.com/v1/",
            "https://api.anthropic.com/v1",
        );
        check(
            ProviderKind::Anthropic,
            "http://127.0.0.1:9/proxy",
            "http://127.0.0.1:9/proxy",
        );
        check(
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com",
            "https://generativelanguage.googleapis.com/v1beta",
        );
        check(ProviderKind::Gemini, "http://h/v1beta", "http://h/v1beta");
        check(ProviderKind::OpenAi, "http://h", "http://h");
    }

    #[test]
    fn statuses_map_as_documented() {
        let code = |s: u16| {
            error_for_status(
                StatusCode::from_u16(s).unwrap_or(StatusCode::IM_A_TEAPOT),
                None,
                ProviderError::default(),
            )
        };
        assert_eq!(code(429).status().as_u16(), 429);
        assert_eq!(code(400).status().as_u16(), 400);
        assert_eq!(code(422).status().as_u16(), 422);
        assert_eq!(code(401).code(), "upstream_auth_failed");
        assert_eq!(code(403).status().as_u16(), 502);
        assert_eq!(code(500).code(), "upstream_error");
        assert_eq!(code(503).status().as_u16(), 502);
        assert_eq!(code(404).status().as_u16(), 502);
    }
}
