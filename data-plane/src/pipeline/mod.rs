//! The request pipeline: what happens to a `/v1` request between the edge layers and the
//! provider, one module per named stage.
//!
//! # Order
//!
//! ```text
//! edge (crate::http): request id → Anthropic errors → log errors → catch panic → URL/header
//!                     limits → body limit → loop guard
//!   authenticate → admit → parse → [stages: limit → route → guardrails → cache → reserve budget]
//!   → attempt (Driver: candidate after candidate) → provider adapter → deliver + meter
//! ```
//!
//! 1. [`authenticate`] — axum middleware on every `/v1` route (deny by default): key from
//!    `Authorization: Bearer` or `x-api-key`, SHA-256, [`ConfigStore::key`](crate::store::ConfigStore::key);
//!    refuses missing, unknown, revoked and expired keys with 401; then the key's `endpoints`
//!    and `allowed_cidrs` scopes (403). `max_tokens_per_request` is checked after parsing.
//! 2. admit — the handler takes node and organization slots ([`crate::admission`]) before the
//!    request task starts, or refuses at once.
//! 3. parse — each endpoint parses its own body and states its [`Intent`]: the
//!    request-neutral facts (model, API, stream) every later stage reads.
//! 4. [`stages`] — the enforcement every endpoint runs, from one place so none can skip one:
//!    [`limit`] (the key's, team's and organization's RPM/TPM limits, see
//!    [`crate::governance::limits`]), [`route`] (the model name → a [`route::Plan`]: an
//!    explicit route or the implicit group of a shared deployment name, filtered by API and
//!    region policy, ordered), [`guard`] (the guardrail policy: filters, PII blocked or
//!    redacted in place), [`cache`] (a hit skips budget and attempt; the meter delivers it),
//!    [`budget`] (reserve the worst case against the plan's prices and every applicable
//!    budget; the [`budget::Reservation`] is settled by the meter).
//! 5. [`attempt`] — the shared [`attempt::Driver`] walks the plan: each candidate in order until
//!    one answers, moving on only for retryable failures (recorded for the usage event) and
//!    never after a stream's first byte; the endpoint's loop calls its provider adapter.
//! 6. provider adapter ([`crate::providers`]) — translate to the provider's wire format and back.
//! 7. [`deliver`] hands the answer to the client (JSON, or the stream pump with backpressure) and
//!    reports how it went; [`meter`] turns that into exactly one `UsageEvent` (tokens and cost of
//!    the attempt that served, failed attempts, route) and settles the reservation.
//!
//! Chat ([`chat_completions`]) and embeddings ([`embed`]) differ only in parsing, the provider
//! call and the answer's metering; `/v1/messages` is translated to a chat request at the edge
//! ([`crate::anthropic_api`]) and runs [`chat_completions`] itself (usage endpoint `messages`);
//! `/v1/messages/count_tokens` runs [`route::plan`] only (no provider call).
//!
//! The stages are plain async functions rather than tower layers: they need the parsed body,
//! and explicit calls are cheaper and easier to follow than body-aware services. Each stage is
//! its own module, so adding behaviour to one (a Redis rate limiter, a budget reservation) does
//! not touch the others.
//!
//! # Cancellation
//!
//! The handler runs stages 2–8 in a spawned task and waits for the response on a oneshot
//! channel. A client that disconnects drops only the handler's future; the task carries on,
//! finishes (or stops reading a stream and drops the upstream connection) and still meters the
//! request. See [`meter`] for the outcomes.
//!
//! A stop cuts requests still running when its grace period ends (see [`crate::lifecycle`]):
//! [`unless_cut`] ends a wait for the client's body or the provider with 503 `shutting_down`, and
//! the stream pump ends a stream with an error event; both are metered.
//!
//! # Request facts (extensions and values passed between stages)
//!
//! | fact | inserted by | read by |
//! | --- | --- | --- |
//! | [`RequestId`] (request extension: id, start instant, start time) | edge (`http::request_id`) | every stage, meter (event id, latency) |
//! | [`Hops`](crate::egress::Hops) (request extension: outgoing hop chain) | edge (`egress::loop_guard`) | authenticate (into `AuthContext`) |
//! | [`AuthContext`] (request extension: `Arc<KeyRecord>`, hop chain, sticky key, `x-switchyard-tags`) | authenticate | admit, stages (tenant/key/team), attempt (hop header), meter |
//! | [`Admission`](crate::admission::Admission) (value: node/org/provider slots) | handler | attempt (provider slot); dropped when the task ends |
//! | [`Intent`] (value: model, API, stream) | the endpoint, after parsing (rebuilt after guardrails) | limit, route, cache, budget |
//! | [`RequestMut`] (value: the parsed request) | the endpoint | guardrails (rewrites it in place) |
//! | guardrail decisions and the placeholder `Vault` (meter) | guardrails | meter (usage event; restores the answer) |
//! | [`cache::Status`] / [`cache::Ticket`] (meter) | cache | meter (`x-switchyard-cache`; stores a complete answer) |
//! | [`cache::Hit`] (value) | cache | meter (`Meter::replay`) |
//! | [`route::Plan`] (value: route name, ordered [`route::Backend`]s, attempts, retry classes, timeouts) | route | budget, attempt, meter (route) |
//! | [`limit::RateOutcome`] (value: `x-ratelimit-*` headers, TPM estimate) | limit | meter (headers on every answer; corrects the estimate with the actual tokens) |
//! | [`budget::Reservation`] (value) | budget | meter (settles it) |
//! | [`attempt::Attempt`] (value: reply, deadline, routing headers) | attempt | deliver, meter (backend that served, failed attempts) |
//! | [`LoggedError`](crate::error::LoggedError) (response extension) | `GatewayError::into_response` | edge (`http::log_errors`) |

pub mod attempt;
pub mod authenticate;
pub mod budget;
pub mod cache;
pub mod deliver;
pub mod embed;
pub mod guard;
pub mod limit;
pub mod meter;
pub mod route;

use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use authenticate::AuthContext;

use crate::admission::Admission;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::wire::ChatRequest;
use attempt::Attempt;
use meter::Meter;

/// Who a request is and when it started. Inserted by the edge for every request; its `id` is
/// the `x-switchyard-request-id` header and the usage event id.
#[derive(Debug, Clone, Copy)]
pub struct RequestId {
    pub id: Uuid,
    /// Monotonic start, for latency and time to first token.
    pub started: Instant,
    /// Wall-clock start, for the usage event.
    pub started_at: OffsetDateTime,
}

impl RequestId {
    pub fn new() -> Self {
        Self {
            id: Uuid::now_v7(),
            started: Instant::now(),
            started_at: OffsetDateTime::now_utc(),
        }
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// `POST /v1/chat/completions` (and `/v1/messages`, translated to it at the edge), stages 2–8.
/// `endpoint` labels the usage event (`chat.completions`, `messages`). Runs in its own task (see "Cancellation"); sends
/// the response on `respond` as soon as it is known and returns once the usage event is emitted.
pub(crate) async fn chat_completions(
    state: AppState,
    request_id: RequestId,
    auth: AuthContext,
    body: Body,
    respond: oneshot::Sender<Response>,
    mut admission: Admission,
    endpoint: &'static str,
) {
    let mut meter = Meter::new(&request_id, &auth);
    meter.set_endpoint(endpoint);
    // Each phase's future is boxed: the task (which lives as long as a stream) then holds only
    // the phase running now, not room for the largest of them, and is cheap to move into the
    // runtime. Without it, every open stream held the ~48 KiB a request's whole state machine
    // needs at its largest (heaptrack, hop bench).
    let prepared = Box::pin(prepare(
        &state,
        &request_id,
        &auth,
        &mut meter,
        &mut admission,
        body,
    ))
    .await;
    let event = match prepared {
        Err(error) => meter.error(error, respond),
        Ok((request, Answer::Upstream(attempt))) => {
            Box::pin(meter.reply(&state, &request, attempt, respond)).await
        }
        Ok((request, Answer::Cached(hit))) => meter.replay(&request, hit, respond),
    };
    Box::pin(meter::emit(&state, event)).await;
}

/// Everything up to the provider's answer (for a stream: its headers), or the cached answer.
async fn prepare(
    state: &AppState,
    request_id: &RequestId,
    auth: &AuthContext,
    meter: &mut Meter,
    admission: &mut Admission,
    body: Body,
) -> Result<(ChatRequest, Answer), GatewayError> {
    let (mut request, body_bytes) =
        unless_cut(state, read_request(state, meter, body, ChatRequest::parse)).await?;
    meter.set_request(&request);
    authenticate::cap_output_tokens(&auth.key, &mut request, meter.endpoint())?;
    let plan = match stages(
        state,
        auth,
        RequestMut::Chat(&mut request),
        body_bytes,
        meter,
    )
    .await?
    {
        Staged::Cached(hit) => return Ok((request, Answer::Cached(hit))),
        Staged::Planned(plan) => plan,
    };
    let attempt = unless_cut(
        state,
        attempt::chat(state, auth, admission, meter, &plan, &request, request_id),
    )
    .await?;
    Ok((request, Answer::Upstream(attempt)))
}

/// Where a chat answer comes from.
pub(crate) enum Answer {
    /// A provider, through the attempt stage.
    Upstream(Attempt),
    /// The response cache.
    Cached(cache::Hit),
}

/// Runs `wait` (reading the client's body, or waiting for the provider) unless the shutdown cut
/// comes first (see [`crate::lifecycle`]); then the wait is dropped (closing the provider's
/// connection, as a hedged call that lost is) and the request fails with 503 `shutting_down`,
/// which the meter records like any error.
pub(crate) async fn unless_cut<T>(
    state: &AppState,
    wait: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    tokio::select! {
        biased;
        result = wait => result,
        () = state.lifecycle().cut() => Err(GatewayError::ShuttingDown),
    }
}

/// Which API a request is for; routing keeps a chat request off embedding deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions` and `/v1/messages` (translated to chat at the edge).
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
}

/// The request-neutral facts every stage reads, whatever the endpoint: what the limit, cache,
/// route and budget stages need and nothing of the endpoint's own body.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    /// The `model` the client sent: a route's name or a deployment name.
    pub model: &'a str,
    pub api: Api,
    pub stream: bool,
    /// The request's output limit, if it set one.
    pub max_output_tokens: Option<u32>,
    /// What keeps a user on one deployment of a sticky weighted route: the request's `user`.
    pub sticky_key: Option<&'a str>,
    /// Capabilities the serving model must have (tools, vision, JSON mode).
    pub needs: crate::wire::Needs,
    /// The request, for token estimates, which cost CPU and are made only when a stage needs
    /// one (the `cheapest` strategy, budget reservations).
    pub body: Parsed<'a>,
    /// The request body's size in bytes: a cheap upper bound of its prompt tokens.
    pub body_bytes: usize,
    /// [`Intent::prompt_tokens`], once computed: the limit, route and budget stages all ask.
    pub prompt_estimate: PromptEstimate,
}

/// A request's prompt-token estimate, computed on first use.
#[derive(Debug, Clone, Default)]
pub struct PromptEstimate(std::sync::OnceLock<u64>);

/// The endpoint's parsed request, as far as request-neutral stages may look at it.
#[derive(Debug, Clone, Copy)]
pub enum Parsed<'a> {
    Chat(&'a ChatRequest),
    Embeddings(&'a crate::wire::EmbeddingsRequest),
    /// No request to estimate (count_tokens' routing check).
    None,
}

impl Intent<'_> {
    /// The estimated prompt tokens (tokenized on the first call only; an upper bound while the
    /// node's tokenizer is still being built, see [`crate::tokens`]).
    pub fn prompt_tokens(&self) -> u64 {
        *self.prompt_estimate.0.get_or_init(|| match self.body {
            Parsed::Chat(request) => crate::tokens::estimate_prompt_tokens_now(request),
            Parsed::Embeddings(request) => {
                crate::tokens::embedding_input_tokens_now(&request.input)
            }
            Parsed::None => 0,
        })
    }
}

/// What [`stages`] produced.
pub(crate) enum Staged {
    /// A cached answer (see [`cache`]).
    Cached(cache::Hit),
    /// The plan for the attempt stage, with its budget reserved.
    Planned(route::Plan),
}

/// The endpoint's parsed request, which the guardrails stage may rewrite.
pub(crate) enum RequestMut<'a> {
    Chat(&'a mut ChatRequest),
    Embeddings(&'a mut crate::wire::EmbeddingsRequest),
}

impl RequestMut<'_> {
    /// The request-neutral facts of the request as it now stands.
    fn intent<'s>(&'s self, auth: &'s AuthContext, body_bytes: usize) -> Intent<'s> {
        match self {
            RequestMut::Chat(request) => Intent {
                model: &request.model,
                api: Api::Chat,
                stream: request.is_stream(),
                max_output_tokens: request.max_completion_tokens.or(request.max_tokens),
                sticky_key: auth.sticky_key.as_deref().or(request.user.as_deref()),
                needs: request.needs(),
                body: Parsed::Chat(request),
                body_bytes,
                prompt_estimate: PromptEstimate::default(),
            },
            RequestMut::Embeddings(request) => Intent {
                model: &request.model,
                api: Api::Embeddings,
                stream: false,
                max_output_tokens: Some(0),
                sticky_key: auth.sticky_key.as_deref(),
                needs: Default::default(),
                body: Parsed::Embeddings(request),
                body_bytes,
                prompt_estimate: PromptEstimate::default(),
            },
        }
    }
}

/// The enforcement stages every endpoint runs, in one place so no endpoint can skip one:
/// limit → route → guardrails → cache → reserve budget. The attempt stage (endpoint-specific
/// calls, shared retry and fallback logic in [`attempt`]) runs the plan afterwards.
///
/// Guardrails need the route (a policy may be the route's) and may rewrite the request; the
/// cache comes after both so a cached answer is only served to a request the key may make and
/// the policy lets through, and is keyed by the prompt as it would leave (redacted). Budget is
/// reserved last because it needs the plan's prices, and a cache hit costs none; the
/// reservation goes to the meter, which settles it with the actual cost (or releases it).
pub(crate) async fn stages(
    state: &AppState,
    auth: &AuthContext,
    mut request: RequestMut<'_>,
    body_bytes: usize,
    meter: &mut Meter,
) -> Result<Staged, GatewayError> {
    let (plan, estimate) = {
        let intent = request.intent(auth, body_bytes);
        let rate = limit::check(state, auth, &intent).await?;
        meter.set_rate_limit(rate);
        let plan = route::plan(state, auth, &intent).await?;
        meter.set_route(&plan);
        (plan, intent.prompt_estimate.clone())
    };
    let guarded = guard::apply(auth, &plan, &mut request, body_bytes, meter)?;
    let mut intent = request.intent(auth, body_bytes);
    if !guarded {
        // The request is as it was: its prompt estimate (if a stage made one) still holds.
        intent.prompt_estimate = estimate;
    }
    if let Some(hit) = cache::lookup(state, auth, &intent, &plan, meter).await {
        return Ok(Staged::Cached(hit));
    }
    let reservation = budget::reserve(state, auth, &intent, &plan).await?;
    meter.set_reservation(reservation);
    Ok(Staged::Planned(plan))
}

/// Reads the body and parses it with `parse`. A body that does not parse still names its
/// `model` to the meter, so the refusal's usage event says what was asked for.
/// Returns the request and the body's size in bytes.
async fn read_request<T>(
    state: &AppState,
    meter: &mut Meter,
    body: Body,
    parse: impl FnOnce(&[u8]) -> Result<T, GatewayError>,
) -> Result<(T, usize), GatewayError> {
    let body = read_body(body, state.settings().max_body_bytes).await?;
    let request = parse(&body).inspect_err(|_| meter.set_model(model_hint(&body)))?;
    meter.set_body(&body);
    Ok((request, body.len()))
}

/// Reads the whole body, refusing more than `limit` bytes (a chunked body has no
/// Content-Length for the edge to check, so the limit is enforced while reading too).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return GatewayError::RequestTooLarge { limit };
            }
            source = err.source();
        }
        GatewayError::BodyRead(inner.to_string())
    })
}

/// The `model` of a body that failed validation, so its usage event says what was asked for.
fn model_hint(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Hint {
        model: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Hint>(body) {
        Ok(Hint {
            model: Some(serde_json::Value::String(m)),
        }) => m.chars().take(256).collect(),
        _ => String::new(),
    }
}
