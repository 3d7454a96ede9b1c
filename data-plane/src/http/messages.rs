//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, served
//! for every deployment whatever its provider (the translations are in [`crate::anthropic_api`]).
//!
//! A `/v1/messages` request is validated and translated into an OpenAI chat request, which runs
//! through the same pipeline as `/v1/chat/completions` (in its own task, metered with
//! `endpoint = "messages"`); the OpenAI answer is translated back, a stream event by event.
//!
//! Both routes sit behind the one authenticate layer of every `/v1` route (a key in `x-api-key`,
//! as Anthropic SDKs send it, or `Authorization: Bearer`). The `anthropic-version` and
//! `anthropic-beta` headers are accepted whatever their value (or absence) and otherwise
//! ignored: the translation does not depend on them.
//!
//! Errors are rendered in OpenAI's format by [`GatewayError`] everywhere; [`anthropic_errors`],
//! an edge layer (see [`super::with_edge`]), rewrites them into Anthropic's format for the
//! requests [`wants_anthropic_format`] picks: every `/v1/messages` path, and `/v1/models` paths
//! called with an `anthropic-version` header (the Anthropic SDK's `models.list()`). Because it
//! sits at the edge, just inside the request id, it also covers the errors produced outside the
//! routes: authentication refusals, the 413 for a declared `Content-Length` over the body limit,
//! the 405 / 404 answers, and the 500 of a caught panic.
//!
//! `count_tokens` answers `{"input_tokens": n}` with the gateway's estimate
//! ([`anthropic_api::request::estimate_input_tokens`]), after checking that the key may use the
//! model (404 / 403 as for `/v1/messages`). It calls no provider, costs nothing and emits no
//! usage event.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::admission::Admission;
use crate::anthropic_api::{self, request, response, stream};
use crate::error::GatewayError;
use crate::pipeline::{self, AuthContext, RequestId, meter, route};
use crate::providers::Usage;
use crate::state::AppState;
use crate::tokens;

/// Anthropic's request id header, which its SDKs expose as `_request_id`.
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
/// Error bodies are small; anything longer than this is not an error body we can rewrite.
const MAX_ERROR_BODY: usize = 1 << 20;

/// The `/v1/messages` routes, with their own authentication and error format.
/// Anthropic's routes; [`crate::v1_routes`] puts them behind the one authentication layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/messages",
            post(messages).fallback(super::method_not_allowed),
        )
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens).fallback(super::method_not_allowed),
        )
}

/// Whether a request's answers, errors included, take Anthropic's format: every path under
/// `/v1/messages`, and `/v1/models` paths when the client sent `anthropic-version` (the
/// Anthropic SDKs always do; OpenAI's never). Everything else keeps OpenAI's format.
pub fn wants_anthropic_format(path: &str, headers: &HeaderMap) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/v1/messages") || (under("/v1/models") && anthropic_api::is_anthropic_client(headers))
}

/// An edge layer (inside [`super::request_id`], whose id it reads): for the requests
/// [`wants_anthropic_format`] picks, rewrites error responses (rendered in OpenAI's format by
/// [`GatewayError`]) into Anthropic's, keeping status, headers (`Retry-After`, the request id)
/// and extensions (the logged error), and adds Anthropic's `request-id` header to every
/// response. Other requests pass through untouched.
pub async fn anthropic_errors(request: Request, next: Next) -> Response {
    if !wants_anthropic_format(request.uri().path(), request.headers()) {
        return next.run(request).await;
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|rid| rid.id.hyphenated().to_string());
    let mut response = next.run(request).await;
    if let Some(value) = request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        response.headers_mut().insert(ANTHROPIC_REQUEST_ID, value);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let raw = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let body = anthropic_api::error::from_openai(status, &raw, request_id.as_deref());
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// `POST /v1/messages`.
async fn messages(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Extension(auth): Extension<AuthContext>,
    request: Request,
) -> Response {
    // Taken before spawning so a shutdown drain that starts right now still waits for it. A
    // refusal here is not metered: under a flood, a usage event per refusal would be the
    // amplification admission control exists to prevent (it is counted in the metrics).
    let admission = match state.admit(auth.key.tenant_id) {
        Ok(admission) => admission,
        Err(error) => return error.into_response(),
    };
    let body = match pipeline::read_body(request.into_body(), state.settings().max_body_bytes).await
    {
        Ok(body) => body,
        Err(error) => return refuse(&state, &request_id, &auth, String::new(), error, admission),
    };
    let translated = match request::translate_messages(&body) {
        Ok(translated) => translated,
        Err(error) => {
            let model = request::model_hint(&body);
            return refuse(&state, &request_id, &auth, model, error, admission);
        }
    };
    drop(body);
    let request::Translated {
        model,
        stream,
        body: chat,
    } = translated;
    let chat_bytes = Bytes::from(chat.to_string());

    let (respond, answer) = oneshot::channel();
    let task = pipeline::chat_completions(
        state,
        request_id,
        auth,
        Body::from(chat_bytes),
        respond,
        admission,
        anthropic_api::ENDPOINT,
    );
    tokio::spawn(crate::telemetry::carry(task).instrument(tracing::Span::current()));
    // A stream's `message_start` carries an input estimate. Tokenizing a long prompt takes a
    // while, so it runs off the async workers while the upstream is being called. A whole
    // completion needs an estimate only when the provider reported no usage.
    let (estimate, chat) = if stream {
        let estimate = tokio::task::spawn_blocking(move || request::estimate_input_tokens(&chat));
        (Some(estimate), None)
    } else {
        (None, Some(chat))
    };

    let answer = match answer.await {
        Ok(answer) => answer,
        // The task ended without answering: it panicked (the panic is in the log).
        Err(_) => {
            return GatewayError::Internal("the request task ended without a response".to_owned())
                .into_response();
        }
    };
    if answer.status() != StatusCode::OK {
        // Rewritten into Anthropic's format by `anthropic_errors`.
        return answer;
    }
    let id = anthropic_api::message_id(request_id.id);
    let (mut parts, body) = answer.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    if let Some(estimate) = estimate {
        let input_estimate = estimate.await.unwrap_or(0);
        let translator = stream::StreamTranslator::new(id, model, input_estimate);
        return Response::from_parts(parts, stream::translate_body(body, translator));
    }
    // A whole completion: the meter already holds it in memory.
    let Ok(raw) = axum::body::to_bytes(body, usize::MAX).await else {
        return GatewayError::Internal("could not read the completion".to_owned()).into_response();
    };
    let fallback = |generated: &str| {
        let input = chat.as_ref().map_or(0, request::estimate_input_tokens);
        Usage::new(input, tokens::count(generated))
    };
    match response::to_message(&raw, &id, &model, fallback) {
        Ok(message) => {
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Response::from_parts(parts, Body::from(message.to_string()))
        }
        Err(e) => GatewayError::UpstreamProtocol(format!("the completion is not an object: {e}"))
            .into_response(),
    }
}

/// `POST /v1/messages/count_tokens`.
async fn count_tokens(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
    request: Request,
) -> Result<Response, GatewayError> {
    let body = pipeline::read_body(request.into_body(), state.settings().max_body_bytes).await?;
    let translated = request::translate_count_tokens(&body)?;
    drop(body);
    // The same route as a message to this model would take: its checks (existence, the key's
    // models, region policy, embedding models refused) apply, without calling a provider.
    route::plan(
        &state,
        &auth,
        &pipeline::Intent {
            model: &translated.model,
            api: pipeline::Api::Chat,
            stream: false,
            max_output_tokens: None,
            sticky_key: None,
            needs: Default::default(),
            body: pipeline::Parsed::None,
            body_bytes: 0,
            prompt_estimate: Default::default(),
        },
    )
    .await?;
    let input_tokens =
        tokio::task::spawn_blocking(move || request::estimate_input_tokens(&translated.body))
            .await
            .map_err(|e| GatewayError::Internal(format!("token estimate failed: {e}")))?;
    Ok(Json(json!({ "input_tokens": input_tokens })).into_response())
}

/// A request refused before the pipeline (unreadable or invalid body): answered and metered
/// like the pipeline does for a chat completion, with an error usage event.
fn refuse(
    state: &AppState,
    request_id: &RequestId,
    auth: &AuthContext,
    model: String,
    error: GatewayError,
    admission: Admission,
) -> Response {
    let mut meter = meter::Meter::new(request_id, auth);
    meter.set_endpoint(anthropic_api::ENDPOINT);
    meter.set_model(model);
    let (respond, mut answer) = oneshot::channel();
    let event = meter.error(error, respond);
    let state = state.clone();
    tokio::spawn(
        async move {
            meter::emit(&state, event).await;
            drop(admission);
        }
        .instrument(tracing::Span::current()),
    );
    answer.try_recv().unwrap_or_else(|_| {
        GatewayError::Internal("the refusal was not rendered".to_owned()).into_response()
    })
}
