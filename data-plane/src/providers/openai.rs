//! The OpenAI adapter, for `openai` and `openai_compatible` providers:
//! `POST {base_url}/chat/completions` with `Authorization: Bearer <provider key>`.
//!
//! The client's body is forwarded with every field we do not know preserved, `model` replaced by
//! the deployment's upstream model and, for streams, `stream_options.include_usage` forced on
//! (see [`crate::wire::UpstreamChatRequest`]). A stream is returned as parsed SSE events that
//! the meter stage forwards one by one as they arrive; nothing is buffered.
//!
//! Timeouts: connecting is bounded by the shared client's connect timeout, the response headers
//! by `SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS`, each later body read by
//! `SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS`, and everything by the call's total deadline.
//!
//! Upstream statuses map to gateway errors as documented on [`error_for_status`].

use bytes::{Bytes, BytesMut};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use tokio::time::{Instant, timeout_at};

use super::{Call, Completion, Event, EventStream, Reply, StreamError, completion_usage};
use crate::error::{GatewayError, ProviderError};

/// Largest non-streaming completion we buffer. Far above any real completion; it only stops a
/// broken upstream from exhausting memory.
const MAX_COMPLETION_BYTES: usize = 32 * 1024 * 1024;
/// Largest error body we read; a provider's error JSON is a few hundred bytes.
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let record = &call.provider.record;
    let base = record
        .base_url
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .or(record.kind.default_base_url())
        .ok_or_else(|| {
            GatewayError::ProviderUnavailable(format!("provider {} has no base URL", record.id))
        })?;
    let url = format!("{}/chat/completions", base.trim().trim_end_matches('/'));
    let api_key = call
        .provider
        .api_key()
        .map_err(|e| GatewayError::ProviderUnavailable(format!("provider {}: {e}", record.id)))?;
    let stream = call.request.is_stream();
    let body = serde_json::to_vec(&call.request.to_upstream(call.upstream_model))
        .map_err(|e| GatewayError::Internal(format!("cannot serialize the upstream body: {e}")))?;

    let mut builder = call
        .http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(
            ACCEPT,
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        )
        .body(body);
    if let Some(key) = api_key {
        builder = builder.bearer_auth(key);
    }

    let now = Instant::now();
    let headers_deadline = (now + call.settings.headers_timeout()).min(call.deadline);
    let response = match timeout_at(headers_deadline, builder.send()).await {
        Err(_) => return Err(GatewayError::UpstreamTimeout("no response headers in time")),
        Ok(Err(e)) => return Err(transport_error(e)),
        Ok(Ok(response)) => response,
    };

    let status = response.status();
    if !status.is_success() {
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = read_body(response, MAX_ERROR_BYTES, call)
            .await
            .unwrap_or_default();
        let error = ProviderError::parse(&body).scrub(api_key);
        return Err(error_for_status(status, retry_after, error));
    }

    if stream {
        let is_event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_event_stream {
            return Err(GatewayError::UpstreamProtocol(
                "asked for a stream but the upstream did not answer text/event-stream".to_owned(),
            ));
        }
        return Ok(Reply::Stream(events(response)));
    }

    let body = read_body(response, MAX_COMPLETION_BYTES, call).await?;
    let usage = completion_usage(&body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("completion body is not a JSON object: {e}"))
    })?;
    Ok(Reply::Complete(Completion { body, usage }))
}

/// The response body as parsed SSE events.
fn events(response: reqwest::Response) -> EventStream {
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

/// How an upstream refusal reaches the client:
/// - 429 → 429 with the provider's body and `Retry-After` (SDKs back off on it);
/// - 400, 413, 422 → the same status with the provider's body (the client can fix the request);
/// - 401, 403 → 502 `upstream_auth_failed`: the provider refused *our* credentials, which the
///   client cannot fix, and the provider's message may quote the key;
/// - anything else (5xx, 404 for an unknown upstream model, …) → 502 `upstream_error` with the
///   provider's message.
pub fn error_for_status(
    status: StatusCode,
    retry_after: Option<reqwest::header::HeaderValue>,
    error: ProviderError,
) -> GatewayError {
    let error = Box::new(error);
    match status.as_u16() {
        429 => GatewayError::UpstreamRateLimited { retry_after, error },
        400 | 413 | 422 => GatewayError::UpstreamBadRequest { status, error },
        401 | 403 => GatewayError::UpstreamAuthFailed {
            status: status.as_u16(),
        },
        code => GatewayError::UpstreamError {
            status: code,
            error,
        },
    }
}

/// A failed send: could not connect (502 unreachable), or the connection broke before a
/// response (502). The URL is dropped from the message: a base URL may carry credentials.
fn transport_error(e: reqwest::Error) -> GatewayError {
    if e.is_connect() {
        GatewayError::UpstreamUnreachable(e.without_url().to_string())
    } else if e.is_timeout() {
        GatewayError::UpstreamTimeout("request timed out")
    } else {
        GatewayError::UpstreamProtocol(format!(
            "no response from the upstream: {}",
            error_chain(&e.without_url())
        ))
    }
}

/// `e` and its sources, for a log line that says *why* (hyper's "connection closed before
/// message completed" sits a few levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
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
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    call: &Call<'_>,
) -> Result<Bytes, GatewayError> {
    let idle = call.settings.idle_timeout();
    let mut buf = BytesMut::new();
    loop {
        let deadline = (Instant::now() + idle).min(call.deadline);
        match timeout_at(deadline, response.chunk()).await {
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

#[cfg(test)]
mod tests {
    use super::*;

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
