//! Stage meter: count tokens, price them and emit exactly one [`UsageEvent`] per authenticated
//! request — successes and failures alike. Delivery to the client is [`deliver`](super::deliver)'s
//! job; the meter hands it the answer and turns what it reports into the event.
//!
//! This runs in the request's own spawned task (see the pipeline's "Cancellation"), a path the
//! client cannot cancel. For a stream the task *is* the driver (`deliver::stream`), so a client
//! that disconnects is still metered.
//!
//! The event's deployment, provider and prices are those of the attempt that served; failed
//! attempts before it are listed in `failed_attempts`. The budget reservation made before the
//! attempts is settled here, once, with the actual cost.
//!
//! # How a stream ends
//!
//! | end | the client sees | outcome | tokens |
//! | --- | --- | --- | --- |
//! | upstream sends `[DONE]` | every event, then `[DONE]` | `success` | upstream usage |
//! | upstream closes or breaks without `[DONE]` | events so far, then an `error` event with code `stream_truncated`, no `[DONE]` | `truncated` | usage if seen, else estimated |
//! | no event for `SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS` (or the total deadline passes) | same as above | `truncated` (`upstream_timeout`) | same |
//! | the client disconnects (or stops reading until the total deadline) | — | `client_disconnected` | estimated from the text received |
//! | the node's shutdown grace period ends (see [`crate::lifecycle`]) | events so far, then an `error` event with code `shutting_down`, no `[DONE]` | `truncated` (`shutting_down`) | usage if seen, else estimated |
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

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shared::config::RetryClass;
use std::sync::Arc;

use shared::guardrails::Vault;
use shared::usage::{
    FailedAttempt, GuardrailAction, GuardrailDecision, MAX_PAYLOAD_BYTES, MAX_TAG_KEY_LEN,
    MAX_TAG_VALUE_LEN, MAX_TAGS, UsageEvent, UsageOutcome, UsagePayload,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::attempt::Attempt;
use super::budget::Reservation;
use super::deliver::{self, Delivered, End, StreamReport};
use super::route::{Backend, Plan};
use super::{AuthContext, RequestId};
use crate::error::GatewayError;
use crate::providers::{self, Completion, EventStream, Reply, Usage};
use crate::state::AppState;
use crate::tokens;
use crate::wire::ChatRequest;

/// The usage event's `endpoint` for chat completions.
pub const CHAT_COMPLETIONS: &str = "chat.completions";

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
    route: Option<String>,
    failed_attempts: Vec<FailedAttempt>,
    reservation: Option<Reservation>,
    /// The rate-limit headers for the answer and the TPM estimate to correct (see `limit`).
    rate: super::limit::RateOutcome,
    /// The event's `tags`: the request's `x-switchyard-tags` and the key's `metadata` (which
    /// wins on a shared name).
    tags: std::collections::BTreeMap<String, String>,
    /// The request body, held from parsing until routing says whether the organization stores
    /// payloads (then dropped, or cut into `payload_request`). A reference-counted handle, so
    /// nothing is copied when the organization has not opted in.
    body: Option<bytes::Bytes>,
    /// The request text to store, when the organization opted in (see [`UsagePayload`]).
    payload_request: Option<(String, bool)>,
    /// Time spent in provider calls and the waits between attempts: what the gateway's
    /// overhead (`x-switchyard-overhead-ms`) excludes.
    upstream: std::time::Duration,
    /// The client span of the attempt that served (see [`crate::telemetry`]): it ends when the
    /// event is built, with the usage on it.
    attempt_span: tracing::Span,
    /// The response cache's verdict (`x-switchyard-cache`), a semantic hit's similarity, and on
    /// a miss where to store a complete answer (see [`super::cache`]).
    cache: super::cache::Status,
    cache_similarity: Option<f32>,
    cache_ticket: Option<super::cache::Ticket>,
    /// What the guardrail policy decided (see [`super::guard`]).
    guardrails: Vec<GuardrailDecision>,
    /// Placeholders to put back in the answer, the policy that made them and how many
    /// values they stand for.
    vault: Option<(Uuid, Arc<Vault>, u32)>,
}

struct BackendFacts {
    deployment_id: Uuid,
    provider_id: Uuid,
    provider: Option<&'static str>,
    upstream_model: String,
    input_price: i64,
    cached_input_price: i64,
    output_price: i64,
    region: Option<String>,
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
            route: None,
            failed_attempts: Vec::new(),
            reservation: None,
            rate: Default::default(),
            tags: request_tags(auth),
            body: None,
            payload_request: None,
            upstream: std::time::Duration::ZERO,
            attempt_span: tracing::Span::none(),
            cache: super::cache::Status::Bypass,
            cache_similarity: None,
            cache_ticket: None,
            guardrails: Vec::new(),
            vault: None,
        }
    }

    /// The cache stage's verdict and, on a miss, where to store the answer.
    pub fn set_cache(
        &mut self,
        status: super::cache::Status,
        ticket: Option<super::cache::Ticket>,
    ) {
        self.cache = status;
        self.cache_ticket = ticket;
    }

    /// A guardrail decision, for the usage event.
    pub fn add_guardrail(&mut self, decision: GuardrailDecision) {
        self.guardrails.push(decision);
    }

    /// Placeholders of `guardrail` to restore in the answer.
    pub fn set_vault(&mut self, guardrail: Uuid, vault: Arc<Vault>, values: u32) {
        self.vault = Some((guardrail, vault, values));
    }

    /// No restoring (an answer with no text, such as embeddings).
    pub fn clear_vault(&mut self) {
        self.vault = None;
    }

    /// A tag of the usage event, over any of the same name.
    pub fn add_tag(&mut self, key: &str, value: &str) {
        self.tags.insert(key.to_owned(), value.to_owned());
    }

    /// `x-switchyard-cache` (and a semantic hit's similarity) on an answer.
    fn put_cache_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            crate::http::CACHE_HEADER,
            axum::http::HeaderValue::from_static(self.cache.as_str()),
        );
        if let Some(similarity) = self.cache_similarity
            && let Ok(value) = axum::http::HeaderValue::from_str(&format!("{similarity:.4}"))
        {
            headers.insert(crate::http::CACHE_SIMILARITY_HEADER, value);
        }
    }

    /// Records that the answer's placeholders were put back (once per request).
    fn restored(&mut self) {
        if let Some((guardrail_id, _, values)) = &self.vault
            && !self
                .guardrails
                .iter()
                .any(|d| d.action == GuardrailAction::Restored)
        {
            self.guardrails.push(GuardrailDecision {
                guardrail_id: *guardrail_id,
                rule: "pii".to_owned(),
                action: GuardrailAction::Restored,
                count: *values,
            });
        }
    }

    /// The client span of the attempt that served.
    pub fn set_attempt_span(&mut self, span: tracing::Span) {
        self.attempt_span = span;
    }

    /// The raw request body, kept (without copying) until [`Meter::set_route`] knows whether
    /// the organization stores payloads.
    pub fn set_body(&mut self, body: &bytes::Bytes) {
        self.body = Some(body.clone());
    }

    /// The limit stage's outcome: headers for every answer, and the token estimate that
    /// the meter corrects with the actual total when it builds the usage event.
    pub fn set_rate_limit(&mut self, outcome: super::limit::RateOutcome) {
        self.rate = outcome;
    }

    /// The route the request resolved to.
    pub fn set_route(&mut self, plan: &Plan) {
        self.route = Some(plan.route.clone());
        let body = self.body.take();
        if let Some(body) = body
            && plan
                .candidates
                .first()
                .is_some_and(|b| b.tenant.store_payloads())
        {
            self.payload_request = Some(capped(&String::from_utf8_lossy(&body)));
        }
    }

    /// The budget reservation to settle when the event is built.
    pub fn set_reservation(&mut self, reservation: Reservation) {
        self.reservation = Some(reservation);
    }

    /// An attempt on `backend` that failed and was followed by another.
    pub fn record_failure(
        &mut self,
        backend: &Backend,
        error: &GatewayError,
        class: Option<RetryClass>,
        latency: std::time::Duration,
    ) {
        self.failed_attempts.push(FailedAttempt {
            deployment_id: backend.deployment().id,
            error_code: error.code().to_owned(),
            error_class: class,
            latency_ms: millis(latency),
            region: backend.deployment().region.clone(),
            status: upstream_status(error),
        });
    }

    /// Time the attempt stage spent waiting on providers (calls, and pauses between attempts).
    pub fn add_upstream(&mut self, spent: std::time::Duration) {
        self.upstream += spent;
    }

    /// Puts the gateway's own time so far (everything but [`Meter::add_upstream`]'s) on an
    /// answer's headers, for the edge to report (see `http::request_id`).
    fn put_overhead(&self, headers: &mut HeaderMap) {
        let own = self
            .request_id
            .started
            .elapsed()
            .saturating_sub(self.upstream);
        crate::http::put_overhead(headers, own);
    }

    /// The usage event's `endpoint` (`chat.completions` unless set).
    pub fn set_endpoint(&mut self, endpoint: &'static str) {
        self.endpoint = endpoint;
    }

    /// The usage event's `endpoint` so far.
    pub fn endpoint(&self) -> &'static str {
        self.endpoint
    }

    /// For bodies that failed validation: the model they named, if any.
    pub fn set_model(&mut self, model: String) {
        self.model = model;
    }

    pub fn set_request(&mut self, request: &ChatRequest) {
        self.model.clone_from(&request.model);
        self.stream = request.is_stream();
    }

    /// The backend being tried; the last one set is the event's (the one that served).
    pub fn set_backend(&mut self, backend: &Backend) {
        let d = backend.deployment();
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
            region: d.region.clone(),
        });
    }

    /// A request that failed before any answer: send the error, meter it with no tokens.
    pub fn error(self, error: GatewayError, respond: oneshot::Sender<Response>) -> UsageEvent {
        let status = error.status().as_u16();
        let code = error.code();
        // If the client is gone the response is simply dropped; the event is the same.
        let mut response = error.into_response();
        self.rate.headers.apply(response.headers_mut());
        self.put_overhead(response.headers_mut());
        self.put_cache_headers(response.headers_mut());
        let _ = respond.send(response);
        self.finish(
            status,
            UsageOutcome::Error,
            Some(code),
            Tokens::default(),
            None,
            None,
        )
    }

    /// Delivers a provider's reply and meters it; stores a complete answer when the cache
    /// stage left a ticket.
    pub async fn reply(
        mut self,
        state: &AppState,
        request: &ChatRequest,
        attempt: Attempt,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        let Attempt {
            reply,
            deadline,
            mut headers,
        } = attempt;
        self.rate.headers.apply(&mut headers);
        self.put_overhead(&mut headers);
        self.put_cache_headers(&mut headers);
        let ticket = self.cache_ticket.take();
        match reply {
            Reply::Complete(completion) => {
                let stored = completion.body.clone();
                let event = self.complete(request, completion, headers, respond);
                if let Some(ticket) = ticket {
                    // Boxed, like the store below: the Redis call's future is large.
                    Box::pin(ticket.store(state, stored)).await;
                }
                event
            }
            Reply::Stream(events) => {
                self.stream(state, request, events, deadline, headers, respond, ticket)
                    .await
            }
        }
    }

    /// Delivers a cached answer (see [`super::cache`]): as a stream when the request asked for
    /// one (replayed in the client's format: `/v1/messages` translates it like any stream),
    /// else the stored completion. Metered as a hit: no deployment, no tokens, no cost (the
    /// answer's own `usage` still tells the client what the original cost).
    pub fn replay(
        mut self,
        request: &ChatRequest,
        hit: super::cache::Hit,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        self.cache_similarity = hit.similarity;
        let mut headers = HeaderMap::new();
        self.rate.headers.apply(&mut headers);
        self.put_overhead(&mut headers);
        self.put_cache_headers(&mut headers);
        let body = match self.vault.as_ref().map(|(_, v, _)| Arc::clone(v)) {
            Some(vault) => match crate::response_cache::restore_completion(&hit.body, &vault) {
                Some(restored) => {
                    self.restored();
                    restored
                }
                None => hit.body,
            },
            None => hit.body,
        };
        let text = self
            .payload_request
            .is_some()
            .then(|| providers::completion_text(&body));
        let delivered = if request.is_stream() {
            match crate::response_cache::replay::stream(&body, request.wants_stream_usage()) {
                Some(events) => deliver::events(events, headers, respond),
                None => {
                    return self.error(
                        GatewayError::Internal("a cached answer does not parse".to_owned()),
                        respond,
                    );
                }
            }
        } else {
            deliver::json(body, headers, respond)
        };
        let (outcome, code) = outcome_of(delivered);
        self.finish(200, outcome, code, Tokens::default(), None, text.as_deref())
    }

    /// Delivers cached embeddings (see [`Meter::replay`]).
    pub fn replay_embeddings(
        self,
        body: bytes::Bytes,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        let mut headers = HeaderMap::new();
        self.rate.headers.apply(&mut headers);
        self.put_overhead(&mut headers);
        self.put_cache_headers(&mut headers);
        let (outcome, code) = outcome_of(deliver::json(body, headers, respond));
        self.finish(200, outcome, code, Tokens::default(), None, None)
    }

    /// A call the gateway made on the organization's behalf outside the request's own answer
    /// (the semantic cache's embedding): its own usage event, nothing delivered.
    pub fn side_call(
        self,
        input: &crate::wire::EmbeddingInput,
        usage: Option<Usage>,
        error: Option<GatewayError>,
    ) -> UsageEvent {
        if let Some(error) = error {
            let status = error.status().as_u16();
            return self.finish(
                status,
                UsageOutcome::Error,
                Some(error.code()),
                Tokens::default(),
                None,
                None,
            );
        }
        let tokens = match usage.filter(|u| u.prompt_tokens > 0) {
            Some(usage) => Tokens {
                prompt: usage.prompt_tokens,
                ..Tokens::default()
            },
            None => Tokens {
                prompt: tokens::embedding_input_tokens(input),
                estimated: true,
                ..Tokens::default()
            },
        };
        self.finish(200, UsageOutcome::Success, None, tokens, None, None)
    }

    fn complete(
        mut self,
        request: &ChatRequest,
        completion: Completion,
        headers: HeaderMap,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        // The client gets the values behind the guardrail's placeholders back (what is stored
        // and metered is the provider's answer).
        let mut answer = completion.body.clone();
        if let Some((_, vault, _)) = &self.vault
            && let Some(restored) = crate::response_cache::restore_completion(&answer, vault)
        {
            answer = restored;
            self.restored();
        }
        // A reference-counted clone: the body stays readable for the estimate below.
        let (outcome, code) = outcome_of(deliver::json(answer, headers, respond));
        // Counted after the client has its answer, so an estimate never delays it.
        let text = (completion.usage.is_none() || self.payload_request.is_some())
            .then(|| providers::completion_text(&completion.body));
        let tokens = match completion.usage {
            Some(usage) => Tokens::from(usage),
            None => Tokens {
                prompt: tokens::estimate_prompt_tokens(request),
                completion: tokens::count(text.as_deref().unwrap_or_default()),
                estimated: true,
                ..Tokens::default()
            },
        };
        self.finish(200, outcome, code, tokens, None, text.as_deref())
    }

    /// Drives a stream to its end; see the module docs for the possible ends.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        mut self,
        state: &AppState,
        request: &ChatRequest,
        events: EventStream,
        deadline: Instant,
        headers: HeaderMap,
        respond: oneshot::Sender<Response>,
        ticket: Option<super::cache::Ticket>,
    ) -> UsageEvent {
        let mut hooks = deliver::Hooks {
            assembler: ticket
                .as_ref()
                .map(|_| crate::response_cache::assemble::Assembler::default()),
            restorer: self
                .vault
                .as_ref()
                .map(|(_, v, _)| deliver::Restorers::new(Arc::clone(v))),
        };
        let StreamReport { end, tally } = deliver::stream(
            state,
            &self.request_id,
            request.wants_stream_usage(),
            events,
            deadline,
            headers,
            respond,
            &mut hooks,
        )
        .await;
        if hooks.restorer.as_ref().is_some_and(|r| r.restored_any()) {
            self.restored();
        }
        if matches!(end, End::Done)
            && let (Some(ticket), Some(assembler)) = (ticket, hooks.assembler.take())
            && let Some(answer) = assembler.finish()
        {
            // Boxed: the Redis call's future is several KiB, and a stream's whole life would
            // otherwise carry room for it (heaptrack, hop bench).
            Box::pin(ticket.store(state, answer)).await;
        }

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
            End::Shutdown => (UsageOutcome::Truncated, Some("shutting_down")),
        };
        crate::telemetry::record_stream_response(&self.attempt_span, &tally);
        let ttft = tally.ttft_ms;
        self.finish(200, outcome, code, tokens, ttft, Some(&tally.text))
    }

    fn finish(
        mut self,
        status: u16,
        outcome: UsageOutcome,
        error_code: Option<&str>,
        tokens: Tokens,
        ttft_ms: Option<u64>,
        answer: Option<&str>,
    ) -> UsageEvent {
        let payload = self.payload_request.take().map(|(request, cut)| {
            let (response, cut_answer) = capped(answer.unwrap_or_default());
            UsagePayload {
                request,
                response,
                truncated: cut || cut_answer,
            }
        });
        let region = self.backend.as_ref().and_then(|b| b.region.clone());
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
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(cost);
        }
        if let Some(take) = self.rate.tokens.take() {
            take.settle(tokens.prompt.saturating_add(tokens.completion));
        }
        let event = UsageEvent {
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
            route: self.route,
            failed_attempts: self.failed_attempts,
            tags: self.tags,
            region,
            error_class: (outcome != UsageOutcome::Success)
                .then(|| shared::usage::error_class(status, error_code).to_owned()),
            cache_hit: self.cache == super::cache::Status::Hit,
            payload,
            guardrails: std::mem::take(&mut self.guardrails),
        };
        crate::telemetry::record_usage(&self.attempt_span, &event);
        event
    }
}

/// Hands the event to the usage sink (which may wait while its queue is full) and counts it
/// in the request metrics (see [`crate::metrics_registry`] for names and labels).
pub async fn emit(state: &AppState, event: UsageEvent) {
    record_metrics(&event);
    // In the request's task: the current span is the request's server span.
    crate::telemetry::record_request_event(&tracing::Span::current(), &event);
    state.usage().emit(event).await;
}

/// The request metrics of one usage event. Labels stay bounded: the model only once it
/// resolved to a route or deployment (a client can send any string), the provider kind, the
/// deployment id, classes; never a key, a tenant or a prompt.
fn record_metrics(event: &UsageEvent) {
    // Each label value is built once and shared (an `Arc`) by every series below.
    let shared = |value: &str| metrics::SharedString::from(std::sync::Arc::<str>::from(value));
    let resolved = event.deployment_id.is_some() || event.route.is_some();
    let model = shared(if resolved && !event.model.is_empty() {
        &event.model
    } else {
        UNKNOWN
    });
    let provider = shared(event.provider.as_deref().unwrap_or(UNKNOWN));
    let deployment = match event.deployment_id {
        Some(d) => shared(
            d.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        ),
        None => metrics::SharedString::const_str(UNKNOWN),
    };
    let route = shared(event.route.as_deref().unwrap_or(UNKNOWN));
    let endpoint = endpoint_label(&event.endpoint);
    let error_class = shared(event.error_class.as_deref().unwrap_or("none"));
    metrics::counter!("switchyard_usage_events_total", "outcome" => event.outcome.as_str())
        .increment(1);
    metrics::counter!(
        "switchyard_requests_total",
        "endpoint" => endpoint,
        "model" => model.clone(),
        "route" => route,
        "provider" => provider.clone(),
        "deployment" => deployment,
        "status_class" => crate::metrics_registry::status_class(event.status),
        "error_class" => error_class,
    )
    .increment(1);
    metrics::histogram!(
        "switchyard_request_duration_seconds",
        "endpoint" => endpoint,
        "model" => model.clone(),
        "provider" => provider.clone(),
        "stream" => if event.stream { "true" } else { "false" },
    )
    .record(event.latency_ms as f64 / 1000.0);
    if let Some(ttft) = event.ttft_ms {
        metrics::histogram!(
            "switchyard_time_to_first_token_seconds",
            "endpoint" => endpoint,
            "model" => model.clone(),
            "provider" => provider.clone(),
        )
        .record(ttft as f64 / 1000.0);
    }
    if !event.failed_attempts.is_empty() && event.outcome == UsageOutcome::Success {
        metrics::counter!("switchyard_fallbacks_total", "model" => model.clone()).increment(1);
    }
    for failed in &event.failed_attempts {
        metrics::counter!(
            "switchyard_retries_total",
            "deployment" => failed.deployment_id.to_string(),
            "class" => failed.error_class.map_or("other", retry_class_label),
        )
        .increment(1);
    }
    for (kind, n) in [
        ("input", event.prompt_tokens),
        ("output", event.completion_tokens),
        ("cache_read", event.cache_read_tokens),
        ("cache_write", event.cache_write_tokens),
    ] {
        if n > 0 {
            metrics::counter!(
                "switchyard_tokens_total",
                "model" => model.clone(),
                "provider" => provider.clone(),
                "kind" => kind,
            )
            .increment(n);
        }
    }
    if let Ok(cost) = u64::try_from(event.cost_micros)
        && cost > 0
    {
        metrics::counter!(
            "switchyard_cost_microdollars_total",
            "model" => model,
            "provider" => provider,
        )
        .increment(cost);
    }
}

/// A usage event's endpoint as a label (a fixed set).
fn endpoint_label(endpoint: &str) -> &'static str {
    match endpoint {
        CHAT_COMPLETIONS => CHAT_COMPLETIONS,
        Meter::EMBEDDINGS => Meter::EMBEDDINGS,
        "messages" => "messages",
        _ => "other",
    }
}

/// The label for requests that never resolved to a model, route, provider or deployment.
const UNKNOWN: &str = "unknown";

/// A retry class as a metric label.
fn retry_class_label(class: RetryClass) -> &'static str {
    match class {
        RetryClass::RateLimited => "rate_limited",
        RetryClass::ServerError => "server_error",
        RetryClass::Timeout => "timeout",
        RetryClass::Connection => "connection",
        RetryClass::ContextLengthExceeded => "context_length_exceeded",
        RetryClass::ContentFilter => "content_filter",
    }
}

/// The usage outcome of a whole answer's delivery.
fn outcome_of(delivered: Delivered) -> (UsageOutcome, Option<&'static str>) {
    match delivered {
        Delivered::Sent => (UsageOutcome::Success, None),
        Delivered::ClientGone => (
            UsageOutcome::ClientDisconnected,
            Some("client_disconnected"),
        ),
    }
}

pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
    pub async fn embeddings(
        mut self,
        state: &AppState,
        request: &crate::wire::EmbeddingsRequest,
        answer: crate::providers::Embeddings,
        mut headers: HeaderMap,
        respond: oneshot::Sender<Response>,
    ) -> UsageEvent {
        self.rate.headers.apply(&mut headers);
        self.put_overhead(&mut headers);
        self.put_cache_headers(&mut headers);
        let ticket = self.cache_ticket.take();
        let stored = answer.body.clone();
        let (outcome, code) = outcome_of(deliver::json(answer.body, headers, respond));
        // After the client has its answer: a store never delays it.
        if let Some(ticket) = ticket {
            ticket.store(state, stored).await;
        }
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
        self.finish(200, outcome, code, tokens, None, None)
    }
}

/// The usage event's tags: the request's `x-switchyard-tags`, then the key's `metadata` over
/// them (an administrator's attribution is never overridden by a client).
fn request_tags(auth: &AuthContext) -> std::collections::BTreeMap<String, String> {
    let tags = match &auth.tags {
        None => auth.key.metadata.clone(),
        Some(header) => {
            let mut tags = (**header).clone();
            tags.extend(
                auth.key
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            tags
        }
    };
    bound_tags(tags)
}

/// The event's bounds on tags ([`MAX_TAGS`], [`MAX_TAG_KEY_LEN`], [`MAX_TAG_VALUE_LEN`]): the
/// header is checked at authentication, but a key's metadata is an administrator's free-form
/// map, and the two together can exceed the count. Over-long names are dropped, over-long
/// values cut (on a character boundary), and only the first [`MAX_TAGS`] names (in order) kept.
fn bound_tags(
    tags: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    if tags.len() <= MAX_TAGS
        && tags
            .iter()
            .all(|(k, v)| k.len() <= MAX_TAG_KEY_LEN && v.len() <= MAX_TAG_VALUE_LEN)
    {
        return tags;
    }
    tags.into_iter()
        .filter(|(k, _)| !k.is_empty() && k.len() <= MAX_TAG_KEY_LEN)
        .take(MAX_TAGS)
        .map(|(k, mut v)| {
            v.truncate(v.floor_char_boundary(MAX_TAG_VALUE_LEN));
            (k, v)
        })
        .collect()
}

/// `text` cut to [`MAX_PAYLOAD_BYTES`] (on a character boundary), and whether it was cut.
fn capped(text: &str) -> (String, bool) {
    let end = text.floor_char_boundary(MAX_PAYLOAD_BYTES);
    (text[..end].to_owned(), end < text.len())
}

/// The provider's HTTP status in an upstream failure, if it answered.
pub(crate) fn upstream_status(error: &GatewayError) -> Option<u16> {
    match error {
        GatewayError::UpstreamRateLimited { .. } => Some(429),
        GatewayError::UpstreamBadRequest { status, .. } => Some(status.as_u16()),
        GatewayError::UpstreamAuthFailed { status }
        | GatewayError::UpstreamError { status, .. } => Some(*status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_bounded_in_count_name_and_value() {
        let mut tags = std::collections::BTreeMap::new();
        for i in 0..20 {
            tags.insert(format!("t{i:02}"), "v".to_owned());
        }
        tags.insert("n".repeat(MAX_TAG_KEY_LEN + 1), "x".to_owned());
        tags.insert("a-long".to_owned(), "é".repeat(MAX_TAG_VALUE_LEN));
        let bounded = bound_tags(tags);
        assert_eq!(bounded.len(), MAX_TAGS);
        assert!(bounded.keys().all(|k| k.len() <= MAX_TAG_KEY_LEN));
        let long = &bounded["a-long"];
        assert_eq!(long.len(), MAX_TAG_VALUE_LEN);
        assert!(long.chars().all(|c| c == 'é'));
    }

    #[test]
    fn payload_sides_are_capped_on_a_character_boundary() {
        assert_eq!(capped("short"), ("short".to_owned(), false));
        let (text, cut) = capped(&"€".repeat(MAX_PAYLOAD_BYTES));
        assert!(cut);
        assert!(text.len() <= MAX_PAYLOAD_BYTES && text.len() > MAX_PAYLOAD_BYTES - 3);
    }
}
