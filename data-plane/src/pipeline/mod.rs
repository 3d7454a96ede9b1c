//! The request pipeline: what happens to a `/v1` request between the edge layers and the
//! provider, one module per named stage.
//!
//! # Order
//!
//! ```text
//! edge (crate::http): request id → log errors → catch panic → body limit
//!   authenticate → limit → reserve budget → cache → route → attempt → provider adapter → meter
//! ```
//!
//! 1. [`authenticate`] — axum middleware on every `/v1` route (deny by default): key from
//!    `Authorization: Bearer` or `x-api-key`, SHA-256, [`ConfigStore::key`](crate::store::ConfigStore::key);
//!    refuses missing, unknown, revoked and expired keys with 401.
//! 2. [`limit`] — tenant/key rate limits. Pass-through for now.
//! 3. [`budget`] — reserve the request's estimated cost against budgets. Pass-through for now;
//!    settling the reservation will happen in [`meter`].
//! 4. [`cache`] — response cache lookup. Pass-through for now (always a miss).
//! 5. [`route`] — resolve the model name to the tenant's deployments (404 if none), check the
//!    key may use it (403), pick one.
//! 6. [`attempt`] — call the chosen deployment's provider within the total deadline; retries
//!    and fallback to another deployment slot in here.
//! 7. provider adapter ([`crate::providers`]) — translate to the provider's wire format and back.
//! 8. [`meter`] — answer the client, then compute tokens and cost and emit exactly one
//!    `UsageEvent`. For streams it drives the upstream to its end.
//!
//! `/v1/embeddings` runs the same stages in [`embed`] (its own composition, since its request
//! and answer differ); `/v1/messages` is translated to a chat request at the edge
//! ([`crate::anthropic_api`]) and runs [`chat_completions`] itself, with the usage event's
//! endpoint set to `messages`.
//!
//! Stages 2–8 are plain async functions composed in `chat_completions` rather than tower
//! layers: they need the parsed body, and explicit calls are cheaper and easier to follow than
//! body-aware services. Each stage is still its own module, so adding behaviour to one
//! (a Redis rate limiter, a budget reservation) does not touch the others.
//!
//! # Cancellation
//!
//! The handler runs stages 2–8 in a spawned task and waits for the response on a oneshot
//! channel. A client that disconnects drops only the handler's future; the task carries on,
//! finishes (or stops reading a stream and drops the upstream connection) and still meters the
//! request. See [`meter`] for the outcomes.
//!
//! # Request facts (extensions and values passed between stages)
//!
//! | fact | inserted by | read by |
//! | --- | --- | --- |
//! | [`RequestId`] (request extension: id, start instant, start time) | edge (`http::request_id`) | every stage, meter (event id, latency) |
//! | [`AuthContext`] (request extension: `Arc<KeyRecord>`) | authenticate | limit, budget, cache, route, meter (tenant/key/team ids) |
//! | [`ChatRequest`] (value) | `chat_completions` (parsed body) | limit, budget, cache, route (model), attempt, meter (estimates) |
//! | [`route::Backend`] (value: tenant view + deployment) | route | attempt, meter (deployment, provider, prices) |
//! | [`attempt::Attempt`] (value: provider reply + deadline) | attempt | meter |
//! | [`LoggedError`](crate::error::LoggedError) (response extension) | `GatewayError::into_response` | edge (`http::log_errors`) |

pub mod attempt;
pub mod authenticate;
pub mod budget;
pub mod cache;
pub mod embed;
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
    let event = match prepare(&state, &request_id, &auth, &mut meter, &mut admission, body).await {
        Err(error) => meter.error(error, respond),
        Ok((request, attempt)) => meter.reply(&state, &request, attempt, respond).await,
    };
    meter::emit(&state, event).await;
}

/// Stages 2–7: everything up to the provider's answer (for a stream: its headers).
async fn prepare(
    state: &AppState,
    request_id: &RequestId,
    auth: &AuthContext,
    meter: &mut Meter,
    admission: &mut Admission,
    body: Body,
) -> Result<(ChatRequest, Attempt), GatewayError> {
    let request = read_request(state, meter, body, ChatRequest::parse).await?;
    meter.set_request(&request);

    limit::check(auth, &request).await?;
    budget::reserve(auth, &request).await?;
    if let Some(reply) = cache::lookup(auth, &request).await {
        return Ok((request, reply));
    }
    let backend = route::resolve_chat(state, auth, &request.model).await?;
    meter.set_backend(&backend);
    let attempt = attempt::run(state, auth, admission, &backend, &request, request_id).await?;
    Ok((request, attempt))
}

/// Reads the body and parses it with `parse`. A body that does not parse still names its
/// `model` to the meter, so the refusal's usage event says what was asked for.
async fn read_request<T>(
    state: &AppState,
    meter: &mut Meter,
    body: Body,
    parse: impl FnOnce(&[u8]) -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    let body = read_body(body, state.settings().max_body_bytes).await?;
    parse(&body).inspect_err(|_| meter.set_model(model_hint(&body)))
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
