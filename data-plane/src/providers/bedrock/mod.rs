//! The AWS Bedrock adapter: chat through the Converse / ConverseStream APIs, embeddings through
//! InvokeModel (Amazon Titan Text Embeddings, Cohere Embed), every request SigV4-signed.
//!
//! Documentation followed:
//! - Converse: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>
//! - ConverseStream: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>
//! - InvokeModel: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html>
//! - SigV4: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html>
//! - event-stream framing: <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream>
//! - errors: <https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html> and
//!   each operation's "Errors" section.
//!
//! Provider record: kind `bedrock`; `options.region` (required), `options.access_key_id`
//! (required), the sealed `api_key` is the secret access key. Session tokens (temporary
//! credentials) are not supported. The endpoint is `https://bedrock-runtime.{region}.amazonaws.com`
//! unless `base_url` is set (a VPC endpoint, a proxy, or a test fake). A record missing any of
//! these answers 502 `provider_unavailable`, and the log line says which field is missing.
//!
//! Paths: `POST /model/{modelId}/converse`, `/model/{modelId}/converse-stream`,
//! `/model/{modelId}/invoke`, with the deployment's upstream model as `{modelId}` (a model id,
//! an inference-profile id or an ARN), percent-encoded as one segment (see [`sign`]).
//!
//! Submodules: [`converse`] (request and response bodies), [`eventstream`] (the streamed
//! answer), [`embed`] (embeddings), [`sign`] (SigV4), [`error`] (error mapping).

mod converse;
mod embed;
mod error;
mod eventstream;
mod sign;

use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::time::Instant;

use super::canonical::{ChunkWriter, Conversation, completion_id, now_unix};
use super::{Call, EmbedCall, Embeddings, Reply, transport};
use crate::config::Settings;
use crate::egress::UpstreamClient;
use crate::error::GatewayError;
use crate::store::ResolvedProvider;
use http::HeaderValue;
use sign::AwsCredentials;

/// The content type of a ConverseStream answer.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Chat completions through Converse (or ConverseStream when the client streams).
pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    let conversation = Conversation::from_request(call.request)?;
    let built = converse::request(&conversation, call.request.n, call.max_output_tokens)?;
    let upstream = Upstream::new(
        call.provider,
        call.http,
        call.hops,
        call.settings,
        call.deadline,
    )?;
    let stream = call.request.is_stream();
    let body = serde_json::to_vec(&built.body)
        .map_err(|e| GatewayError::Internal(format!("cannot serialize the Converse body: {e}")))?;
    let (operation, accept) = if stream {
        ("converse-stream", EVENT_STREAM)
    } else {
        ("converse", "application/json")
    };
    let response = upstream
        .post(call.upstream_model, operation, body, accept)
        .await?;
    if !response.status().is_success() {
        return Err(upstream.error(response).await);
    }

    if stream {
        let is_event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM));
        if !is_event_stream {
            return Err(GatewayError::UpstreamProtocol(format!(
                "asked for a stream but the upstream did not answer {EVENT_STREAM}"
            )));
        }
        let writer = ChunkWriter::new(
            completion_id(call.request_id),
            call.upstream_model.to_owned(),
        );
        let translator = eventstream::Translator::new(writer, built.json_tool);
        return Ok(Reply::Stream(eventstream::events(
            response.bytes_stream(),
            translator,
        )));
    }

    let body = upstream
        .read_body(response, transport::MAX_COMPLETION_BYTES)
        .await?;
    let out = converse::completion(
        &body,
        built.json_tool.as_deref(),
        completion_id(call.request_id),
        call.upstream_model.to_owned(),
        now_unix(),
    )?;
    Ok(Reply::Complete(out.into_completion()))
}

/// Embeddings through InvokeModel; see [`embed`].
pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    embed::embed(call).await
}

/// One provider's endpoint and credentials, with the HTTP plumbing both APIs share.
pub(crate) struct Upstream<'a> {
    http: &'a UpstreamClient,
    hops: &'a HeaderValue,
    settings: &'a Settings,
    deadline: Instant,
    /// Scheme and authority (and any path prefix), without a trailing slash.
    endpoint: String,
    credentials: AwsCredentials<'a>,
}

impl<'a> Upstream<'a> {
    pub(crate) fn new(
        provider: &'a ResolvedProvider,
        http: &'a UpstreamClient,
        hops: &'a HeaderValue,
        settings: &'a Settings,
        deadline: Instant,
    ) -> Result<Self, GatewayError> {
        let record = &provider.record;
        let unusable = |what: &str| {
            GatewayError::ProviderUnavailable(format!("bedrock provider {}: {what}", record.id))
        };
        let option = |name: &str| {
            record
                .options
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let region = option("region").ok_or_else(|| {
            unusable("options.region is not set (e.g. \"us-east-1\"); it names the endpoint and the signing scope")
        })?;
        // The region becomes part of a host name: refuse anything that could change the URL.
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(unusable(&format!(
                "options.region {region:?} is not an AWS region name"
            )));
        }
        let access_key_id =
            option("access_key_id").ok_or_else(|| unusable("options.access_key_id is not set"))?;
        let secret_access_key = provider
            .api_key()
            .map_err(|e| unusable(&e.to_string()))?
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unusable("no secret access key is set (the provider's api_key)"))?;
        let endpoint = match record
            .base_url
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
        };
        Ok(Self {
            http,
            hops,
            settings,
            deadline,
            endpoint,
            credentials: AwsCredentials {
                access_key_id,
                secret_access_key,
                region,
            },
        })
    }

    /// Signs and sends `POST {endpoint}/model/{model}/{operation}`, waiting for the response
    /// headers at most `SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS` (and never past the deadline).
    pub(crate) async fn post(
        &self,
        model: &str,
        operation: &str,
        body: Vec<u8>,
        accept: &'static str,
    ) -> Result<reqwest::Response, GatewayError> {
        let url = format!(
            "{}/model/{}/{operation}",
            self.endpoint,
            sign::encode_label(model)
        );
        // Parsed once, and the parsed form is both signed and sent, so the signature covers
        // exactly the URL on the wire.
        let url = reqwest::Url::parse(&url).map_err(|e| {
            GatewayError::ProviderUnavailable(format!("bedrock endpoint {url:?} is not a URL: {e}"))
        })?;
        let signed = sign::sign_post(&self.credentials, url.as_str(), &body, SystemTime::now())
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let mut builder = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept);
        for (name, value) in signed {
            builder = builder.header(name, value);
        }
        transport::send_within(
            self.http,
            self.hops,
            self.settings,
            self.deadline,
            builder.body(body),
        )
        .await
    }

    /// Reads a whole body, at most `limit` bytes, with the idle timeout between reads and the
    /// call's deadline.
    pub(crate) async fn read_body(
        &self,
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Bytes, GatewayError> {
        transport::read_body_within(response, limit, self.settings, self.deadline).await
    }

    /// The gateway error for a non-2xx response (see [`error`]).
    pub(crate) async fn error(&self, response: reqwest::Response) -> GatewayError {
        let status = response.status();
        let headers = response.headers().clone();
        let body = self
            .read_body(response, transport::MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        error::from_response(status, &headers, &body, self.credentials.secret_access_key)
    }
}
