//! The spans a request produces, named and attributed after the OpenTelemetry semantic
//! conventions for HTTP servers and GenAI clients
//! (<https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>):
//!
//! - the server span, `request` in logs, `{method} {route}` in traces ([`server_span`]), from
//!   the edge's request id middleware to the end of the request's task (a stream's last byte
//!   and its usage event);
//! - under it, one client span per provider attempt ([`attempt_span`]), `{operation} {model}`
//!   (e.g. `chat gpt-4o-mini`), from the call to the end of the answer (a stream's last event).
//!   Failed attempts end with `error.type`; the one that served gets the token usage and cost
//!   when the meter has them.
//!
//! Attributes other than the span's name and kind are set with
//! [`OpenTelemetrySpanExt::set_attribute`], not as `tracing` fields, so they go to the trace and
//! not into every log line. Everything here returns at once when tracing is off.
//!
//! Never recorded: keys (the key's id neither), prompts, answers, provider error messages.

use std::borrow::Cow;

use opentelemetry::trace::Status;
use opentelemetry::{Array, StringValue, Value};
use serde::Deserialize;
use shared::config::ProviderKind;
use shared::usage::{UsageEvent, UsageOutcome};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use super::enabled;
use super::propagation::Caller;
use crate::error::{GatewayError, LoggedError};
use crate::pipeline::deliver::Tally;
use crate::pipeline::route::Backend;
use crate::wire::ChatRequest;

/// How much of a request's path its log lines (and its span) carry, in characters.
const MAX_LOGGED_PATH: usize = 256;

/// The server span for a request with id `id`, and the caller's trace context (which the edge
/// keeps for the request's tasks, see [`Caller::scope`]).
///
/// With tracing on, the span's parent is the caller's `traceparent` when it sent a valid one,
/// and it carries `http.request.method`, `url.path`, `http.route` (the matched route template,
/// when one matched) and `switchyard.request_id`. Its log fields are the same either way: `id`,
/// `method`, `path`.
pub fn server_span<B>(request: &http::Request<B>, id: Uuid) -> (Span, Caller) {
    let method = request.method();
    // Bounded: the client chooses the path, and it is on every log line of the request.
    let path = crate::error::prefix(request.uri().path(), MAX_LOGGED_PATH);
    let caller = Caller::from_headers(request.headers());
    if !enabled() {
        let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
        return (span, caller);
    }
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %method,
        path = %path,
        "otel.name" = name.as_str(),
        "otel.kind" = "server",
    );
    if let Some(parent) = caller.parent() {
        // Cannot fail here: the span is new and not entered yet.
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.request.method", method.as_str().to_owned());
    span.set_attribute("url.path", path.to_owned());
    if let Some(route) = route {
        span.set_attribute("http.route", route.to_owned());
    }
    span.set_attribute("switchyard.request_id", id.to_string());
    (span, caller)
}

/// The response's status on the server span; a 5xx makes it an error, with `error.type` the
/// gateway's error code. (A 4xx is the client's error, not the server's, per the conventions.)
pub fn record_response<B>(span: &Span, response: &http::Response<B>) {
    if !enabled() {
        return;
    }
    let status = response.status();
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    let code = response
        .extensions()
        .get::<LoggedError>()
        .map(|e| e.0.code());
    if let Some(code) = code {
        span.set_attribute("switchyard.error_code", code);
    }
    if status.is_server_error() {
        let kind = code.map_or_else(|| status.as_str().to_owned(), str::to_owned);
        span.set_attribute("error.type", kind.clone());
        span.set_status(Status::error(kind));
    }
}

/// What the usage event says about the whole request, on the server span (call it in the
/// request's task, where the current span is the server span).
pub(crate) fn record_request_event(span: &Span, event: &UsageEvent) {
    if !enabled() {
        return;
    }
    span.set_attribute("switchyard.tenant_id", event.tenant_id.to_string());
    if !event.model.is_empty() {
        span.set_attribute("switchyard.model", event.model.clone());
    }
    if let Some(route) = &event.route {
        span.set_attribute("switchyard.route", route.clone());
    }
    if let Some(deployment) = event.deployment_id {
        span.set_attribute("switchyard.deployment_id", deployment.to_string());
    }
    span.set_attribute("switchyard.outcome", event.outcome.as_str());
    span.set_attribute("switchyard.cost_micros", event.cost_micros);
    span.set_attribute(
        "switchyard.attempts",
        count(event.failed_attempts.len() as u64 + u64::from(event.deployment_id.is_some())),
    );
}

/// The GenAI operation an attempt performs (`gen_ai.operation.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Chat,
    Embeddings,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// The client span of attempt number `attempt` (1-based) of a request on `route`, calling
/// `backend`; [`Span::none`] when tracing is off. The caller instruments the provider call with
/// it, so the adapter's upstream request ([`super::outgoing`]) carries its context.
pub(crate) fn attempt_span(
    operation: Operation,
    backend: &Backend,
    route: &str,
    attempt: usize,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let deployment = backend.deployment();
    let name = format!("{} {}", operation.as_str(), deployment.upstream_model);
    let span = tracing::info_span!(
        "gen_ai.attempt",
        "otel.name" = name.as_str(),
        "otel.kind" = "client",
    );
    span.set_attribute("gen_ai.operation.name", operation.as_str());
    if let Ok(provider) = backend.provider() {
        let kind = provider.record.kind;
        span.set_attribute("gen_ai.provider.name", provider_name(kind));
        // The attribute's name before semantic conventions 1.37, still read by many backends.
        span.set_attribute("gen_ai.system", provider_name(kind));
        span.set_attribute("switchyard.provider_kind", kind.as_str());
    }
    span.set_attribute("gen_ai.request.model", deployment.upstream_model.clone());
    span.set_attribute("switchyard.deployment_id", deployment.id.to_string());
    span.set_attribute("switchyard.route", route.to_owned());
    span.set_attribute("switchyard.attempt", count(attempt as u64));
    if let Some(region) = &deployment.region {
        span.set_attribute("cloud.region", region.clone());
    }
    span
}

/// A failed attempt: `error.type` is the gateway's error code (`upstream_timeout`,
/// `upstream_rate_limited`, …), with the provider's HTTP status when it answered.
pub(crate) fn attempt_failed(span: &Span, error: &GatewayError) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.set_attribute("error.type", error.code());
    if let Some(status) = crate::pipeline::meter::upstream_status(error) {
        span.set_attribute("http.response.status_code", i64::from(status));
    }
    span.set_status(Status::error(error.code()));
}

/// The chat request's sampling parameters, when set, on the attempt's span (the current span
/// inside the instrumented provider call).
pub(crate) fn record_chat_request(span: &Span, request: &ChatRequest, request_id: Uuid) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.set_attribute("switchyard.request_id", request_id.to_string());
    if let Some(max) = request.max_completion_tokens.or(request.max_tokens) {
        span.set_attribute("gen_ai.request.max_tokens", i64::from(max));
    }
    let floats = [
        ("gen_ai.request.temperature", request.temperature),
        ("gen_ai.request.top_p", request.top_p),
        (
            "gen_ai.request.frequency_penalty",
            request.frequency_penalty,
        ),
        ("gen_ai.request.presence_penalty", request.presence_penalty),
    ];
    for (key, value) in floats {
        if let Some(value) = value {
            span.set_attribute(key, value);
        }
    }
    if let Some(seed) = request.seed {
        span.set_attribute("gen_ai.request.seed", seed);
    }
}

/// `gen_ai.response.id`, `gen_ai.response.model` and `gen_ai.response.finish_reasons` from a
/// whole `chat.completion` body (parsed only when tracing is on).
pub(crate) fn record_completion(span: &Span, body: &[u8]) {
    if !enabled() || span.is_disabled() {
        return;
    }
    #[derive(Deserialize)]
    struct View<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        choices: Vec<Choice<'a>>,
    }
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default)]
        finish_reason: Option<Cow<'a, str>>,
    }
    if let Ok(view) = serde_json::from_slice::<View<'_>>(body) {
        let reasons = view
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.as_deref());
        record_response_facts(span, view.id.as_deref(), view.model.as_deref(), reasons);
    }
}

/// `gen_ai.response.model` from an embeddings body.
pub(crate) fn record_embeddings_response(span: &Span, body: &[u8]) {
    if !enabled() || span.is_disabled() {
        return;
    }
    #[derive(Deserialize)]
    struct View<'a> {
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
    }
    if let Ok(view) = serde_json::from_slice::<View<'_>>(body) {
        record_response_facts(span, None, view.model.as_deref(), std::iter::empty());
    }
}

/// What a stream's chunks said about the response (see [`Tally`]).
pub(crate) fn record_stream_response(span: &Span, tally: &Tally) {
    if !enabled() || span.is_disabled() {
        return;
    }
    record_response_facts(
        span,
        tally.response_id.as_deref(),
        tally.response_model.as_deref(),
        tally.finish_reasons.iter().map(String::as_str),
    );
}

fn record_response_facts<'a>(
    span: &Span,
    id: Option<&str>,
    model: Option<&str>,
    finish_reasons: impl Iterator<Item = &'a str>,
) {
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        span.set_attribute("gen_ai.response.id", id.to_owned());
    }
    if let Some(model) = model.filter(|m| !m.is_empty()) {
        span.set_attribute("gen_ai.response.model", model.to_owned());
    }
    let reasons: Vec<StringValue> = finish_reasons.map(|r| r.to_owned().into()).collect();
    if !reasons.is_empty() {
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(reasons)),
        );
    }
}

/// The served attempt's usage, cost and outcome, from its usage event: `gen_ai.usage.*` (cache
/// reads and writes too, when there were any), `switchyard.cost_micros`,
/// `switchyard.tokens_estimated`; a stream that broke off makes the span an error.
pub(crate) fn record_usage(span: &Span, event: &UsageEvent) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.set_attribute("gen_ai.usage.input_tokens", count(event.prompt_tokens));
    span.set_attribute("gen_ai.usage.output_tokens", count(event.completion_tokens));
    if event.cache_read_tokens > 0 {
        span.set_attribute(
            "gen_ai.usage.cache_read.input_tokens",
            count(event.cache_read_tokens),
        );
    }
    if event.cache_write_tokens > 0 {
        span.set_attribute(
            "gen_ai.usage.cache_creation.input_tokens",
            count(event.cache_write_tokens),
        );
    }
    span.set_attribute("switchyard.tokens_estimated", event.tokens_estimated);
    span.set_attribute("switchyard.cost_micros", event.cost_micros);
    span.set_attribute("switchyard.outcome", event.outcome.as_str());
    if let Some(ttft) = event.ttft_ms {
        span.set_attribute("switchyard.ttft_ms", count(ttft));
    }
    // A client that left is not the provider's failure.
    if !matches!(
        event.outcome,
        UsageOutcome::Success | UsageOutcome::ClientDisconnected
    ) {
        let kind = event
            .error_code
            .clone()
            .unwrap_or_else(|| "error".to_owned());
        span.set_attribute("error.type", kind.clone());
        span.set_status(Status::error(kind));
    }
}

/// `gen_ai.provider.name`: the conventions' well-known names where there is one, else our
/// provider kind.
fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::AzureOpenAi => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Mistral => "mistral_ai",
        ProviderKind::Groq => "groq",
        ProviderKind::DeepSeek => "deepseek",
        ProviderKind::Xai => "x_ai",
        other => other.as_str(),
    }
}

/// A count as an OpenTelemetry integer (which is signed).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Records `server.address` and `server.port` of an upstream request on `span`.
pub(super) fn record_server(span: &Span, url: &url::Url) {
    if span.is_disabled() {
        return;
    }
    if let Some(host) = url.host_str() {
        span.set_attribute("server.address", host.to_owned());
    }
    if let Some(port) = url.port_or_known_default() {
        span.set_attribute("server.port", i64::from(port));
    }
}
