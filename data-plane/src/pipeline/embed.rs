//! `POST /v1/embeddings`: the pipeline for embeddings, stage for stage the chat pipeline's
//! (see the parent module): authenticate (the route layer) → limit → route → guardrails →
//! cache → reserve budget → attempt → meter, in its own spawned task so a client that
//! disconnects cannot cancel metering. The exact cache applies (an identical request of the
//! organization gets the stored vectors); semantic mode acts as exact here.
//!
//! - The body is parsed as [`EmbeddingsRequest`]; a bad body is a 400 naming the field (and is
//!   metered, with the model it named, like any refused request).
//! - Route resolves `model` exactly as for chat (routes, region policy, 404 `model_not_found`,
//!   403 `model_not_allowed` / `region_not_allowed`).
//! - Attempt calls [`providers::embed`] for the deployment's provider within
//!   `SWITCHYARD_UPSTREAM_TIMEOUT_MS`. Providers without embeddings (Anthropic, the mock) answer
//!   400 naming `model`.
//! - Meter ([`Meter::embeddings`]) forwards the provider's body as is and emits one usage event
//!   with endpoint `embeddings`: the provider's prompt tokens, else an estimate of the input's
//!   tokens marked estimated; cost = prompt tokens × the deployment's input price.
//!
//! Limit, route, guardrails, cache and budget are the shared [`stages`](super::stages), fed
//! the same request-neutral [`Intent`](super::Intent) as chat; the attempt loop is the shared
//! [`Driver`](super::attempt::Driver) (fallback across a route's candidates, failures recorded).

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::meter::{self, Meter};
use super::route::Backend;
use super::{AuthContext, RequestId, RequestMut, Staged};
use uuid::Uuid;

use crate::admission::{Admission, Slot};
use crate::error::GatewayError;
use crate::providers::{self, EmbedCall, Embeddings};
use crate::state::AppState;
use crate::wire::EmbeddingsRequest;

/// `POST /v1/embeddings`, every stage after authentication. Sends the response on `respond` as
/// soon as it is known and returns once the usage event is emitted.
pub(crate) async fn embeddings(
    state: AppState,
    request_id: RequestId,
    auth: AuthContext,
    body: Body,
    respond: oneshot::Sender<Response>,
    mut admission: Admission,
) {
    let mut meter = Meter::new(&request_id, &auth);
    meter.set_endpoint(Meter::EMBEDDINGS);
    let event = match prepare(&state, &request_id, &auth, &mut meter, &mut admission, body).await {
        Err(error) => meter.error(error, respond),
        Ok((request, Answer::Upstream(answer), headers)) => {
            meter
                .embeddings(&state, &request, answer, headers, respond)
                .await
        }
        Ok((_, Answer::Cached(body), _)) => meter.replay_embeddings(body, respond),
    };
    meter::emit(&state, event).await;
}

/// Everything up to the provider's answer: the shared stages, then the plan's candidates.
async fn prepare(
    state: &AppState,
    request_id: &RequestId,
    auth: &AuthContext,
    meter: &mut Meter,
    admission: &mut Admission,
    body: Body,
) -> Result<(EmbeddingsRequest, Answer, HeaderMap), GatewayError> {
    let (mut request, body_bytes) = super::unless_cut(
        state,
        super::read_request(state, meter, body, EmbeddingsRequest::parse),
    )
    .await?;
    meter.set_embeddings_request(&request);
    let staged = super::stages(
        state,
        auth,
        RequestMut::Embeddings(&mut request),
        body_bytes,
        meter,
    )
    .await?;
    let plan = match staged {
        Staged::Cached(hit) => return Ok((request, Answer::Cached(hit.body), HeaderMap::new())),
        Staged::Planned(plan) => plan,
    };
    let input_tokens = || crate::tokens::embedding_input_tokens_now(&request.input);
    let call = |backend| attempt(state, auth, &plan, backend, &request, request_id);
    let (answer, headers) = super::unless_cut(
        state,
        super::attempt::run(
            state,
            admission,
            meter,
            &plan,
            crate::telemetry::Operation::Embeddings,
            input_tokens,
            call,
        ),
    )
    .await?;
    Ok((request, Answer::Upstream(answer), headers))
}

/// Where an embeddings answer comes from.
pub(crate) enum Answer {
    Upstream(Embeddings),
    /// The stored body of an earlier identical request.
    Cached(bytes::Bytes),
}

/// Calls `backend`'s provider for the embeddings.
async fn attempt(
    state: &AppState,
    auth: &AuthContext,
    plan: &super::route::Plan,
    backend: &Backend,
    request: &EmbeddingsRequest,
    request_id: &RequestId,
) -> Result<(Embeddings, Slot<Uuid>), GatewayError> {
    let deployment = backend.deployment();
    let provider = backend.provider()?;
    let slot = state.limits().provider_slot(provider.record.id)?;
    let settings = plan.settings(state.settings());
    let call = EmbedCall {
        http: state.http(),
        hops: &auth.hops,
        settings: &settings,
        request,
        upstream_model: &deployment.upstream_model,
        provider,
        request_id: request_id.id,
        deadline: Instant::now() + settings.total_timeout(),
    };
    // Boxed here, where every lifetime is concrete: proving `Send` for the spawned task
    // otherwise trips over higher-ranked lifetimes inside adapters' futures (rust-lang/rust#102211).
    let answer = providers::embed(&call).boxed().await?;
    // The attempt's span (this call is instrumented with it).
    crate::telemetry::record_embeddings_response(&tracing::Span::current(), &answer.body);
    Ok((answer, slot))
}
