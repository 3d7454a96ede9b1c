//! Stage 6, attempt: call the chosen deployment's provider.
//!
//! Sets the call's total deadline (`SWITCHYARD_UPSTREAM_TIMEOUT_MS`, streaming included) and
//! hands over to the provider adapter. Retries and fallback to another deployment will live
//! here; they must only retry before any byte reached the client, and skip bodies over the
//! replay cap.

use tokio::time::Instant;

use crate::admission::Admission;
use crate::error::GatewayError;
use crate::pipeline::route::Backend;
use crate::pipeline::{AuthContext, RequestId};
use crate::providers::{self, Call, Reply};
use crate::state::AppState;
use crate::wire::ChatRequest;

/// A provider's answer and the deadline the rest of it (a stream) must meet.
pub struct Attempt {
    pub reply: Reply,
    pub deadline: Instant,
}

/// Calls `backend` with `request`.
pub async fn run(
    state: &AppState,
    auth: &AuthContext,
    admission: &mut Admission,
    backend: &Backend,
    request: &ChatRequest,
    request_id: &RequestId,
) -> Result<Attempt, GatewayError> {
    let deployment = &backend.deployment;
    let provider = backend.provider()?;
    admission.use_provider(state.limits(), provider.record.id)?;
    let deadline = Instant::now() + state.settings().total_timeout();
    let call = Call {
        http: state.http(),
        hops: &auth.hops,
        settings: state.settings(),
        request,
        upstream_model: &deployment.upstream_model,
        provider,
        request_id: request_id.id,
        deadline,
        max_output_tokens: deployment.max_output_tokens,
    };
    let reply = providers::call(&call).await?;
    Ok(Attempt { reply, deadline })
}
