//! `POST /v1/embeddings` (being built).

use axum::response::{IntoResponse, Response};

use crate::error::GatewayError;

pub async fn embeddings() -> Response {
    GatewayError::RouteNotFound.into_response()
}
