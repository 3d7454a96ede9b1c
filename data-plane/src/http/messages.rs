//! `POST /v1/messages`: the Anthropic-compatible endpoint (being built).

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::error::GatewayError;
use crate::state::AppState;

/// The `/v1/messages` routes, with their own authentication and error format.
pub fn routes(_state: &AppState) -> Router<AppState> {
    Router::new().route("/v1/messages", post(messages))
}

async fn messages() -> Response {
    GatewayError::RouteNotFound.into_response()
}
