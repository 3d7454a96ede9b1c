//! Stage attempt: run a [`Plan`]: call its candidates in order until one answers, within the
//! plan's attempt budget, and say which one served.
//!
//! [`Driver`] holds the logic every endpoint shares (which candidate is next, whether a failure
//! moves on, what the served answer's headers say) and [`run`] is the one loop over it that
//! every endpoint uses, given its own provider call ([`chat`]'s, `embed::attempt`).
//!
//! - A failure moves on only when its class ([`crate::routing::classify`]) is in the plan's
//!   `retry_on` and
//!   attempts remain; anything else (a 400 the client must fix, an auth failure, a loop) is the
//!   answer at once. The client's error is the last real one.
//! - Each failed attempt is recorded in the meter (deployment, error code and class, latency);
//!   the usage event's deployment and prices are those of the attempt that served.
//! - A stream is only ever retried before its first byte: an attempt ends when the provider's
//!   response headers arrive, and a [`Reply::Stream`] is never retried afterwards.
//! - Each candidate's provider takes a per-node concurrency slot for the rest of the request
//!   (see [`crate::admission`]); moving on releases the previous one.
//! - Hedging (a route's `hedge_after_ms`): an attempt still waiting after that long is raced
//!   against the next available candidate ([`race`]); the first success is kept, the other
//!   call dropped (cancelled).
//! - The served answer carries `x-switchyard-route`, `x-switchyard-deployment`,
//!   `x-switchyard-provider`, `x-switchyard-region` (when the deployment has one) and
//!   `x-switchyard-attempts`.
//! - Each attempt (hedged ones included) runs in its own GenAI client span
//!   ([`crate::telemetry`]): a failure ends it with `error.type`; the one that served goes to
//!   the meter, which records usage and cost on it and ends it with the answer.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use tracing::Instrument as _;

use uuid::Uuid;

use crate::admission::{Admission, Slot};
use crate::error::GatewayError;
use crate::pipeline::meter::Meter;
use crate::pipeline::route::{Backend, Plan};
use crate::pipeline::{AuthContext, RequestId};
use crate::providers::{self, Call, Reply};
use shared::config::RetryClass;

use crate::config::Settings;
use crate::routing::{AttemptGuard, Backoff, Health};
use crate::state::AppState;
use crate::telemetry::{self, Operation};
use crate::wire::ChatRequest;

pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-route");
pub const DEPLOYMENT_HEADER: HeaderName = HeaderName::from_static("x-switchyard-deployment");
pub const PROVIDER_HEADER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub const REGION_HEADER: HeaderName = HeaderName::from_static("x-switchyard-region");
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// A provider's answer, the deadline the rest of it (a stream) must meet, and the routing
/// headers for the client.
pub struct Attempt {
    pub reply: Reply,
    pub deadline: Instant,
    pub headers: HeaderMap,
}

/// Walks a plan's candidates (see the module docs).
pub struct Driver<'p> {
    plan: &'p Plan,
    health: &'p Health,
    /// Attempts started so far.
    made: usize,
    /// Candidates looked at so far (attempted or skipped as unavailable).
    looked: usize,
    /// When the current attempt started, for the failure's latency.
    started: Instant,
    /// The last failure that moved on, in case no candidate is left to move on to.
    last: Option<GatewayError>,
    /// When the whole request must be over (the plan's total timeout).
    deadline: Instant,
    /// Waits between attempts on deployments already tried.
    backoff: Backoff,
    /// After a `context_length_exceeded`: the failed deployment's context window; candidates
    /// with a window no larger are passed over.
    min_window: Option<u32>,
    /// The candidate returned last (an index into the plan's candidates).
    current: usize,
    /// Candidates passed over because their provider quota is spent for now.
    over_quota: Vec<usize>,
}

impl<'p> Driver<'p> {
    pub fn new(plan: &'p Plan, health: &'p Health, node: &Settings) -> Self {
        Self {
            plan,
            health,
            made: 0,
            looked: 0,
            started: Instant::now(),
            last: None,
            deadline: Instant::now() + plan.settings(node).total_timeout(),
            backoff: Backoff::default(),
            min_window: None,
            current: 0,
            over_quota: Vec::new(),
        }
    }

    /// The candidate just returned is at its provider quota: it does not count as an attempt
    /// and is passed over for the rest of this request.
    pub fn over_quota(&mut self, guard: Option<AttemptGuard>) {
        if let Some(guard) = guard {
            guard.cancel();
        }
        self.made -= 1;
        self.over_quota.push(self.current);
    }

    /// The next candidate to try, with its health guard (the outcome is reported on it);
    /// `None` once the attempt budget is spent. A candidate whose circuit breaker is open (or
    /// cooling down after a 429, or whose half-open probe is taken) is skipped; if every
    /// candidate is unavailable before any attempt, the first is tried anyway rather than
    /// failing without a single upstream call. Past the end of the list it starts over (a
    /// route that allows more attempts than it has candidates retries them in order).
    pub fn next_candidate(&mut self) -> Option<(&'p Backend, Option<AttemptGuard>)> {
        let candidates = &self.plan.candidates;
        if self.made >= self.plan.max_attempts || candidates.is_empty() {
            return None;
        }
        for _ in 0..candidates.len() {
            let index = self.looked % candidates.len();
            let backend = &candidates[index];
            self.looked += 1;
            if self.over_quota.contains(&index) {
                continue;
            }
            let too_small = match (self.min_window, backend.deployment().context_window) {
                (Some(failed), Some(window)) => window <= failed,
                _ => false,
            };
            if too_small {
                continue;
            }
            if let Some(guard) = self.health.try_acquire(backend.deployment().id) {
                self.made += 1;
                self.current = index;
                self.started = Instant::now();
                return Some((backend, Some(guard)));
            }
        }
        if self.made > 0 || !self.over_quota.is_empty() {
            return None;
        }
        self.made += 1;
        self.current = 0;
        self.started = Instant::now();
        Some((&candidates[0], None))
    }

    /// The error when the loop ends without an answer because every remaining candidate was
    /// unavailable: the last real failure, as the client should see it.
    pub fn exhausted(self) -> GatewayError {
        if let Some(last) = self.last {
            return last;
        }
        if !self.over_quota.is_empty() {
            // Quotas count by the minute: the next one starts within this many seconds.
            let into = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() % 60);
            return GatewayError::QuotaExhausted {
                retry_after_secs: (60 - into).max(1),
            };
        }
        GatewayError::Internal("the plan ended without an attempt".to_owned())
    }

    /// Reports the current attempt's answer as a success to the deployment's health.
    pub fn succeeded(&self, guard: Option<AttemptGuard>) {
        if let Some(guard) = guard {
            guard.success(self.started.elapsed(), None);
        }
    }

    /// Decides what a failed attempt means: `Ok(wait)` to move on (after recording it in the
    /// meter; `wait` is how long to pause first, when the next attempt goes to a deployment
    /// already tried: the failure's `Retry-After`, else exponential backoff with full jitter,
    /// never past the deadline), or `Err(error)` when it is the answer.
    pub fn failed(
        &mut self,
        meter: &mut Meter,
        backend: &Backend,
        guard: Option<AttemptGuard>,
        error: GatewayError,
    ) -> Result<Option<std::time::Duration>, GatewayError> {
        if let Some(guard) = guard {
            guard.report_error(&error);
        }
        let class = crate::routing::classify(&error);
        let retryable = class.is_some_and(|c| self.plan.retry_on.contains(&c));
        if !retryable || self.made >= self.plan.max_attempts {
            return Err(error);
        }
        tracing::info!(
            deployment = %backend.deployment().id,
            code = error.code(),
            error = %error,
            "attempt failed; trying the next candidate"
        );
        meter.record_failure(backend, &error, class, self.started.elapsed());
        if class == Some(RetryClass::ContextLengthExceeded) {
            // Only a larger window can help; unknown windows are given the chance.
            self.min_window = backend.deployment().context_window.or(self.min_window);
        }
        let wait = if self.made >= self.plan.candidates.len() {
            // The next attempt repeats a deployment: wait, or give up when waiting would not
            // fit before the deadline.
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            let retry_after = crate::routing::retry_after(&error, std::time::SystemTime::now());
            match self
                .backoff
                .next_delay(retry_after, remaining, &mut rand::rng())
            {
                Some(wait) => Some(wait),
                None => return Err(error),
            }
        } else {
            None
        };
        self.last = Some(error);
        Ok(wait)
    }

    /// The routing headers for an answer `backend` served.
    pub fn headers(&self, backend: &Backend) -> HeaderMap {
        let deployment = backend.deployment();
        let mut headers = HeaderMap::with_capacity(5);
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        put(ROUTE_HEADER, &self.plan.route);
        put(DEPLOYMENT_HEADER, &deployment.id.to_string());
        if let Ok(provider) = backend.provider() {
            put(PROVIDER_HEADER, provider.record.kind.as_str());
        }
        if let Some(region) = &deployment.region {
            put(REGION_HEADER, region);
        }
        headers.insert(ATTEMPTS_HEADER, HeaderValue::from(self.made));
        headers
    }
}

/// Runs `plan` for a chat request: each candidate in turn, until one answers or a failure is
/// final.
pub async fn chat(
    state: &AppState,
    auth: &AuthContext,
    admission: &mut Admission,
    meter: &mut Meter,
    plan: &Plan,
    request: &ChatRequest,
    request_id: &RequestId,
) -> Result<Attempt, GatewayError> {
    let prompt_tokens = || crate::tokens::estimate_prompt_tokens_now(request);
    let call = |backend| call_chat(state, auth, plan, backend, request, request_id);
    let ((reply, deadline), headers) = run(
        state,
        admission,
        meter,
        plan,
        Operation::Chat,
        prompt_tokens,
        call,
    )
    .await?;
    Ok(Attempt {
        reply,
        deadline,
        headers,
    })
}

/// Runs `plan` with `call` (one endpoint's provider call, holding a concurrency slot on the
/// provider): candidate after candidate until one answers or a failure is final, hedging when
/// the route asks for it. Returns the answer and the routing headers. Every endpoint's attempt
/// stage is this loop. Each call runs in its attempt's client span for `operation`.
pub(crate) async fn run<'p, T, C, F>(
    state: &'p AppState,
    admission: &mut Admission,
    meter: &mut Meter,
    plan: &'p Plan,
    operation: Operation,
    prompt_tokens: impl Fn() -> u64,
    call: C,
) -> Result<(T, HeaderMap), GatewayError>
where
    C: Fn(&'p Backend) -> F,
    F: Future<Output = Result<(T, Slot<Uuid>), GatewayError>>,
{
    // Every call, hedges included, in its own span, numbered in the order they start.
    let started = AtomicUsize::new(0);
    let traced = |backend: &'p Backend| {
        let attempt = started.fetch_add(1, Ordering::Relaxed) + 1;
        let span = telemetry::attempt_span(operation, backend, &plan.route, attempt);
        let call = call(backend).instrument(span.clone());
        // Boxed: the retry loop and the hedging race then hold a pointer per call in flight,
        // not room for two calls inline (that made a request's state machine ~45 KiB, copied
        // whenever it moved).
        Box::pin(async move {
            match call.await {
                Ok(answer) => Ok((answer, span)),
                Err(error) => {
                    telemetry::attempt_failed(&span, &error);
                    Err(error)
                }
            }
        })
    };
    let mut driver = Driver::new(plan, state.health(), state.settings());
    while let Some((backend, guard)) = next_available(state, &mut driver, &prompt_tokens).await {
        meter.set_backend(backend);
        let first = traced(backend);
        let waiting = Instant::now();
        let outcome = match plan.hedge_after {
            None => Outcome::of(backend, guard, first.await),
            Some(after) => {
                race(
                    state,
                    &mut driver,
                    (backend, guard, first),
                    &traced,
                    &prompt_tokens,
                    after,
                )
                .await
            }
        };
        for (failed, guard, error) in outcome.failed {
            // Returns the error when it is final or the attempts are spent.
            let wait = driver
                .failed(meter, failed, guard, error)
                .inspect_err(|_| meter.add_upstream(waiting.elapsed()))?;
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
        }
        meter.add_upstream(waiting.elapsed());
        if let Some((backend, guard, ((answer, slot), span))) = outcome.served {
            admission.hold_provider(slot);
            meter.set_backend(backend);
            meter.set_attempt_span(span);
            driver.succeeded(guard);
            return Ok((answer, driver.headers(backend)));
        }
    }
    // The candidates that remain are all unavailable (open breakers, spent quotas): the last
    // failure stands.
    Err(driver.exhausted())
}

/// The next candidate that is available and within its provider quota (see
/// [`crate::routing::quota`]); one at its quota does not count as an attempt.
pub(crate) async fn next_available<'p>(
    state: &AppState,
    driver: &mut Driver<'p>,
    prompt_tokens: impl Fn() -> u64,
) -> Option<(&'p Backend, Option<AttemptGuard>)> {
    loop {
        let (backend, guard) = driver.next_candidate()?;
        if state
            .quotas()
            .try_take(backend.deployment(), &prompt_tokens)
            .await
        {
            return Some((backend, guard));
        }
        driver.over_quota(guard);
    }
}

/// What one attempt (or a hedged pair) came to: the answer that won, if any, and every failure.
pub(crate) struct Outcome<'p, T> {
    pub served: Option<(&'p Backend, Option<AttemptGuard>, T)>,
    pub failed: Vec<(&'p Backend, Option<AttemptGuard>, GatewayError)>,
}

impl<'p, T> Outcome<'p, T> {
    pub(crate) fn of(
        backend: &'p Backend,
        guard: Option<AttemptGuard>,
        result: Result<T, GatewayError>,
    ) -> Self {
        match result {
            Ok(answer) => Self {
                served: Some((backend, guard, answer)),
                failed: Vec::new(),
            },
            Err(error) => Self {
                served: None,
                failed: vec![(backend, guard, error)],
            },
        }
    }
}

/// Hedging: waits up to `after` for `primary`; past that, also calls the next available
/// candidate and keeps the first answer that succeeds. The other call is dropped, which closes
/// its connection (the provider stops); its health guard is cancelled, neither success nor
/// failure. A failure of either is kept, so the loop records it and moves on as usual.
async fn race<'p, T, F>(
    state: &'p AppState,
    driver: &mut Driver<'p>,
    primary: (&'p Backend, Option<AttemptGuard>, F),
    hedge: impl Fn(&'p Backend) -> F,
    prompt_tokens: impl Fn() -> u64,
    after: std::time::Duration,
) -> Outcome<'p, T>
where
    F: Future<Output = Result<T, GatewayError>>,
{
    let (first, first_guard, call) = primary;
    tokio::pin!(call);
    tokio::select! {
        result = &mut call => return Outcome::of(first, first_guard, result),
        () = tokio::time::sleep(after) => {}
    }
    let Some((second, second_guard)) = next_available(state, driver, prompt_tokens).await else {
        return Outcome::of(first, first_guard, call.await);
    };
    metrics::counter!("switchyard_hedges_total").increment(1);
    let other = hedge(second);
    tokio::pin!(other);
    let (winner, winner_guard, result, loser, loser_guard, rest) = tokio::select! {
        result = &mut call => (first, first_guard, result, second, second_guard, other),
        result = &mut other => (second, second_guard, result, first, first_guard, call),
    };
    match result {
        Ok(answer) => {
            // The slower call (pinned in this frame) is dropped when this returns, which
            // cancels it; its health guard is dropped too, counting neither way.
            let _ = (loser, loser_guard, rest);
            Outcome {
                served: Some((winner, winner_guard, answer)),
                failed: Vec::new(),
            }
        }
        Err(error) => {
            let later = rest.await;
            let mut outcome = Outcome::of(loser, loser_guard, later);
            outcome.failed.insert(0, (winner, winner_guard, error));
            outcome
        }
    }
}

/// One call to `backend` with the request, holding a concurrency slot on its provider.
async fn call_chat(
    state: &AppState,
    auth: &AuthContext,
    plan: &Plan,
    backend: &Backend,
    request: &ChatRequest,
    request_id: &RequestId,
) -> Result<((Reply, Instant), Slot<Uuid>), GatewayError> {
    let deployment = backend.deployment();
    let provider = backend.provider()?;
    let slot = state.limits().provider_slot(provider.record.id)?;
    let settings = plan.settings(state.settings());
    let deadline = Instant::now() + settings.total_timeout();
    let call = Call {
        http: state.http(),
        hops: &auth.hops,
        settings: &settings,
        request,
        upstream_model: &deployment.upstream_model,
        provider,
        request_id: request_id.id,
        deadline,
        max_output_tokens: deployment.max_output_tokens,
    };
    // The attempt's span (this call is instrumented with it).
    let span = tracing::Span::current();
    telemetry::record_chat_request(&span, request, request_id.id);
    let reply = providers::call(&call).await?;
    if let Reply::Complete(completion) = &reply {
        telemetry::record_completion(&span, &completion.body);
    }
    Ok(((reply, deadline), slot))
}
