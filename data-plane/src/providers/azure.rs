//! Azure OpenAI: OpenAI's wire format behind deployment URLs, an `api-version` query parameter
//! and an `api-key` header (reference:
//! <https://learn.microsoft.com/en-us/azure/ai-services/openai/reference>).
//!
//! - `base_url` is the resource endpoint, `https://{resource}.openai.azure.com` (required: there
//!   is no default; a provider without one answers 502 `provider_unavailable`). A trailing `/`
//!   or `/openai` is tolerated.
//! - The deployment's `upstream_model` is the Azure **deployment name**:
//!   `POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={v}` and
//!   `…/{deployment}/embeddings?api-version={v}`.
//! - `options.api_version` picks the API version; default [`DEFAULT_API_VERSION`], the current
//!   GA release of the data-plane inference API. `stream_options` (stream usage) exists from
//!   `2024-09-01-preview` on; with an older version it is not sent and stream usage is estimated.
//! - The provider key goes in `api-key: <key>` (no `Bearer`). Microsoft Entra ID tokens are not
//!   supported.
//!
//! Bodies are handled exactly as for OpenAI (unknown fields forwarded, `model` replaced by the
//! deployment name, which Azure ignores), through the OpenAI adapter's `openai::send_chat` and
//! `openai::send_embeddings`. Errors too: Azure answers in OpenAI's `{"error":{…}}` shape, so a
//! content-filter refusal stays a 400 with code `content_filter` and Azure's message, a 429 keeps
//! its `Retry-After`, a wrong key (401) is a 502 that never shows the key, and an unknown
//! deployment (404 `DeploymentNotFound`) is a 502 naming Azure's reason.
//!
//! One difference in streams: Azure sends chunks that carry only its content-filter annotations
//! (the first chunk of every stream is `{"choices":[],"prompt_filter_results":[…],"object":""}`,
//! and asynchronous filtering adds annotation-only chunks). They are not valid
//! `chat.completion.chunk`s and mean nothing to an OpenAI client, so they are dropped; every
//! other chunk is forwarded as Azure sent it (its extra `content_filter_results` fields do no
//! harm).

use std::fmt::Write as _;

use futures::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use shared::config::ProviderRecord;

use super::openai::{self, Auth, send_chat, send_embeddings};
use super::presets::{self, Preset, StreamUsage};
use super::{Call, EmbedCall, Embeddings, Event, EventStream, Reply, StreamError, transport};
use crate::error::GatewayError;
use crate::store::ResolvedProvider;

/// The `api-version` used when the provider sets none: the latest GA data-plane inference
/// version when this adapter was written.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";
/// The provider option naming the API version.
pub const API_VERSION_OPTION: &str = "api_version";
/// API versions from this date on accept `stream_options` (first in `2024-09-01-preview`).
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let record = &call.provider.record;
    let version = api_version(record)?;
    let url = deployment_url(
        endpoint(record)?,
        call.upstream_model,
        "chat/completions",
        version,
    );
    let auth = auth(call.provider)?;
    let preset = Preset {
        stream_usage: if supports_stream_options(version) {
            StreamUsage::Ask
        } else {
            StreamUsage::Omit
        },
        ..presets::AZURE_OPENAI
    };
    let body = preset.chat_body(call.request, call.upstream_model)?;
    Ok(match send_chat(call, url, auth, body).await? {
        Reply::Stream(events) => Reply::Stream(without_annotation_chunks(events)),
        complete => complete,
    })
}

/// The stream without Azure's annotation-only chunks (see the module docs).
fn without_annotation_chunks(events: EventStream) -> EventStream {
    events
        .filter(|item| std::future::ready(!is_annotation_only(item)))
        .boxed()
}

/// A chunk with no choices and no usage: Azure's content-filter annotations and nothing else.
fn is_annotation_only(item: &Result<Event, StreamError>) -> bool {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        #[serde(default)]
        usage: Option<IgnoredAny>,
    }
    let Ok(event) = item else {
        return false;
    };
    // Cheap test first: every annotation-only chunk names a filter result.
    if !event.data.contains("filter_result") {
        return false;
    }
    matches!(
        serde_json::from_str::<View>(&event.data),
        Ok(View { choices: Some(choices), usage: None }) if choices.is_empty()
    )
}

pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    let record = &call.provider.record;
    let version = api_version(record)?;
    let url = deployment_url(
        endpoint(record)?,
        call.upstream_model,
        "embeddings",
        version,
    );
    let auth = auth(call.provider)?;
    let body = openai::embeddings_body(call.request, call.upstream_model)?;
    send_embeddings(call, url, auth, body).await
}

/// The resource endpoint, without a trailing `/` or `/openai`.
fn endpoint(record: &ProviderRecord) -> Result<&str, GatewayError> {
    let base = record
        .base_url
        .as_deref()
        .map(|b| b.trim().trim_end_matches('/'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            GatewayError::ProviderUnavailable(format!(
                "Azure OpenAI provider {} has no endpoint (base_url https://{{resource}}.openai.azure.com)",
                record.id
            ))
        })?;
    Ok(base.strip_suffix("/openai").unwrap_or(base))
}

/// The configured API version, else [`DEFAULT_API_VERSION`]. Only the characters API versions
/// use are accepted, so the option cannot smuggle other query parameters.
fn api_version(record: &ProviderRecord) -> Result<&str, GatewayError> {
    let version = record
        .options
        .get(API_VERSION_OPTION)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_API_VERSION);
    if version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(version)
    } else {
        Err(GatewayError::ProviderUnavailable(format!(
            "Azure OpenAI provider {} has an invalid api_version",
            record.id
        )))
    }
}

/// Versions are dates (`2024-10-21`, `2025-01-01-preview`), so they compare as strings.
fn supports_stream_options(version: &str) -> bool {
    version >= STREAM_OPTIONS_SINCE
}

/// `api-key: <key>`; Azure has no unauthenticated mode.
fn auth(provider: &ResolvedProvider) -> Result<Auth<'_>, GatewayError> {
    match transport::api_key(provider)? {
        Some(key) => Ok(Auth::Header("api-key", key)),
        None => Err(GatewayError::ProviderUnavailable(format!(
            "Azure OpenAI provider {} has no API key",
            provider.record.id
        ))),
    }
}

fn deployment_url(endpoint: &str, deployment: &str, operation: &str, version: &str) -> String {
    format!(
        "{endpoint}/openai/deployments/{}/{operation}?api-version={version}",
        path_segment(deployment)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a deployment name cannot
/// change the path (Azure's names use only letters, digits, `-`, `_` and `.` anyway).
fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use shared::config::ProviderKind;
    use uuid::Uuid;

    use super::*;

    fn record(base_url: Option<&str>, version: Option<&str>) -> ProviderRecord {
        let mut options = BTreeMap::new();
        if let Some(v) = version {
            options.insert(API_VERSION_OPTION.to_owned(), v.to_owned());
        }
        ProviderRecord {
            id: Uuid::nil(),
            name: "azure".into(),
            kind: ProviderKind::AzureOpenAi,
            base_url: base_url.map(str::to_owned),
            api_key_sealed: None,
            options,
        }
    }

    #[test]
    fn urls_name_the_deployment_and_the_api_version() {
        let r = record(Some("https://res.openai.azure.com/openai/"), None);
        let url = deployment_url(
            endpoint(&r).unwrap(),
            "gpt-4o-prod",
            "chat/completions",
            api_version(&r).unwrap(),
        );
        assert_eq!(
            url,
            "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn endpoint_is_required_and_versions_are_checked() {
        assert!(matches!(
            endpoint(&record(None, None)),
            Err(GatewayError::ProviderUnavailable(_))
        ));
        assert!(matches!(
            endpoint(&record(Some("  "), None)),
            Err(GatewayError::ProviderUnavailable(_))
        ));
        let r = record(Some("https://x"), Some("2024-10-21&x=1"));
        assert!(api_version(&r).is_err());
        let r = record(Some("https://x"), Some("2025-04-01-preview"));
        assert_eq!(api_version(&r).unwrap(), "2025-04-01-preview");
        assert!(supports_stream_options("2025-04-01-preview"));
        assert!(supports_stream_options("2024-10-21"));
        assert!(!supports_stream_options("2024-06-01"));
    }

    #[test]
    fn annotation_only_chunks_are_recognized() {
        let ev = |data: &str| {
            Ok(Event {
                name: None,
                data: data.to_owned(),
            })
        };
        assert!(is_annotation_only(&ev(
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#
        )));
        // Usage chunks and chunks with choices are kept, annotations or not.
        assert!(!is_annotation_only(&ev(
            r#"{"choices":[],"usage":{"prompt_tokens":1},"prompt_filter_results":[]}"#
        )));
        assert!(!is_annotation_only(&ev(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"content_filter_results":{}}]}"#
        )));
        assert!(!is_annotation_only(&ev("[DONE]")));
        assert!(!is_annotation_only(&Err(StreamError("cut".into()))));
    }
}
