//! `GET /api/v1/meta`: what a client (the web console) needs to know about this deployment
//! before anyone signs in. Public: it names nothing secret, only the version, where the gateway
//! is reached and which optional parts are on.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// What the deployment settled at start (the answer adds `billing_enabled` from the state).
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// `SWITCHYARD_PUBLIC_GATEWAY_URL`, as configured (no trailing slash).
    pub gateway_base_url: Option<String>,
    /// Whether this process serves the gateway's `/v1` itself (zero-setup, no Redis).
    pub embedded_gateway: bool,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/meta", get(meta))
}

/// The deployment as the console sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetaResponse {
    /// The control plane's version.
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// Where clients call the gateway, without `/v1` (`SWITCHYARD_PUBLIC_GATEWAY_URL`); null
    /// when not configured: then the gateway is reached at the console's own origin (zero-setup)
    /// or wherever the operator put it.
    #[schema(example = "https://gateway.example.com")]
    pub gateway_base_url: Option<String>,
    /// Whether billing (Stripe) is configured.
    pub billing_enabled: bool,
    /// Whether this process serves the gateway (`/v1`) too: the zero-setup default.
    pub embedded_gateway: bool,
}

/// Deployment facts for the console: version, gateway URL, optional features.
///
/// Public (no credentials): the console reads it before sign-in. It builds gateway snippets
/// and playground calls from `gateway_base_url ?? <its own origin>` + `/v1`.
#[utoipa::path(
    get,
    path = "/api/v1/meta",
    tag = "meta",
    responses((status = 200, body = MetaResponse))
)]
pub async fn meta(State(state): State<AppState>) -> Json<MetaResponse> {
    Json(MetaResponse {
        version: env!("CARGO_PKG_VERSION"),
        gateway_base_url: state.meta.gateway_base_url.clone(),
        billing_enabled: state.billing.enabled(),
        embedded_gateway: state.meta.embedded_gateway,
    })
}
