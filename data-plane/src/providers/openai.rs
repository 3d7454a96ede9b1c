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
//! Upstream statuses map to gateway errors as documented on [`transport::error_for_status`].

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};

use super::{Call, Completion, Reply, completion_usage, transport};
use crate::error::{GatewayError, ProviderError};

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

    let response = transport::send(call, builder).await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = transport::read_error_body(response, call).await;
        let error = ProviderError::parse(&body).scrub(api_key);
        return Err(transport::error_for_status(status, retry_after, error));
    }

    if stream {
        transport::require_event_stream(&response)?;
        return Ok(Reply::Stream(transport::sse_events(response)));
    }

    let body = transport::read_body(response, transport::MAX_COMPLETION_BYTES, call).await?;
    let usage = completion_usage(&body).map_err(|e| {
        GatewayError::UpstreamProtocol(format!("completion body is not a JSON object: {e}"))
    })?;
    Ok(Reply::Complete(Completion { body, usage }))
}

/// Embeddings through the OpenAI wire format (being built).
pub async fn embed(call: &super::EmbedCall<'_>) -> Result<super::Embeddings, GatewayError> {
    Err(super::unsupported(call.provider.record.kind, "embeddings"))
}
