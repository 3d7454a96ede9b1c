//! `POST /v1/embeddings`: starts the embeddings pipeline in its own task and waits for its
//! response (see `pipeline::embed`).

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use crate::pipeline::{self, AuthContext, RequestId};
use crate::state::AppState;

/// Runs the pipeline in a spawned task (so a client disconnect cannot cancel metering) and
/// returns whatever response it sends first.
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(auth): Extension<AuthContext>,
    request: Request,
) -> Response {
    let (respond, response) = oneshot::channel();
    // Taken before spawning so a shutdown drain that starts right now still waits for it. A
    // refusal here is not metered: under a flood, a usage event per refusal would be the
    // amplification admission control exists to prevent (it is counted in the metrics).
    let admission = match state.admit(auth.key.tenant_id) {
        Ok(admission) => admission,
        Err(error) => return error.into_response(),
    };
    let body = request.into_body();
    let task = pipeline::embed::embeddings(state, request_id, auth, body, respond, admission);
    super::answer_from_task(task, response).await
}
