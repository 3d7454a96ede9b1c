//! `POST /v1/embeddings`: the pipeline for embeddings, stage for stage the chat pipeline's
//! (see the parent module): authenticate (the route layer) → limit → reserve budget → cache →
//! route → attempt → meter, in its own spawned task so a client that disconnects cannot cancel
//! metering.
//!
//! - The body is parsed as [`EmbeddingsRequest`]; a bad body is a 400 naming the field (and is
//!   metered, with the model it named, like any refused request).
//! - Route resolves `model` exactly as for chat (404 `model_not_found`, 403 `model_not_allowed`).
//! - Attempt calls [`providers::embed`] for the deployment's provider within
//!   `SWITCHYARD_UPSTREAM_TIMEOUT_MS`. Providers without embeddings (Anthropic, the mock) answer
//!   400 naming `model`.
//! - Meter ([`Meter::embeddings`]) forwards the provider's body as is and emits one usage event
//!   with endpoint `embeddings`: the provider's prompt tokens, else an estimate of the input's
//!   tokens marked estimated; cost = prompt tokens × the deployment's input price.
//!
//! Limit, budget and cache are pass-through stages whose signatures take a [`ChatRequest`]
//! today; until they take a request-neutral view (model and estimated tokens), embeddings pass
//! them by not calling them, which is what the pass-through stages do anyway. This is the one
//! place to add those calls.
//!
//! [`ChatRequest`]: crate::wire::ChatRequest

use axum::body::Body;
use axum::response::Response;
use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::meter::{self, Meter};
use super::route::{self, Backend};
use super::{AuthContext, RequestId};
use crate::admission::Admission;
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
        Ok((request, answer)) => meter.embeddings(&request, answer, respond),
    };
    meter::emit(&state, event).await;
}

/// Everything up to the provider's answer.
async fn prepare(
    state: &AppState,
    request_id: &RequestId,
    auth: &AuthContext,
    meter: &mut Meter,
    admission: &mut Admission,
    body: Body,
) -> Result<(EmbeddingsRequest, Embeddings), GatewayError> {
    let request = super::read_request(state, meter, body, EmbeddingsRequest::parse).await?;
    meter.set_embeddings_request(&request);

    let backend = route::resolve(state, auth, &request.model).await?;
    meter.set_backend(&backend);
    let answer = attempt(state, auth, admission, &backend, &request, request_id).await?;
    Ok((request, answer))
}

/// Calls `backend`'s provider for the embeddings.
async fn attempt(
    state: &AppState,
    auth: &AuthContext,
    admission: &mut Admission,
    backend: &Backend,
    request: &EmbeddingsRequest,
    request_id: &RequestId,
) -> Result<Embeddings, GatewayError> {
    let deployment = &backend.deployment;
    let provider = backend.provider()?;
    admission.use_provider(state.limits(), provider.record.id)?;
    let call = EmbedCall {
        http: state.http(),
        hops: &auth.hops,
        settings: state.settings(),
        request,
        upstream_model: &deployment.upstream_model,
        provider,
        request_id: request_id.id,
        deadline: Instant::now() + state.settings().total_timeout(),
    };
    // Boxed here, where every lifetime is concrete: proving `Send` for the spawned task
    // otherwise trips over higher-ranked lifetimes inside adapters' futures (rust-lang/rust#102211).
    providers::embed(&call).boxed().await
}
