//! `POST /v1/chat/completions`: starts the pipeline in its own task and waits for its response.

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use crate::pipeline::{self, AuthContext, RequestId};
use crate::state::AppState;

/// Runs the pipeline in a spawned task (so a client disconnect cannot cancel metering, see
/// [`pipeline`]) and returns whatever response it sends first.
pub async fn chat_completions(
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
    let task = pipeline::chat_completions(
        state,
        request_id,
        auth,
        body,
        respond,
        admission,
        pipeline::meter::CHAT_COMPLETIONS,
    );
    super::answer_from_task(task, response).await
}
