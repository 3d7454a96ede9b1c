//! `GET /v1/models` and `GET /v1/models/{model}`: the models the presented key may use.
//!
//! Both APIs the gateway serves use these paths, with different shapes. A request with an
//! `anthropic-version` header (what the Anthropic SDKs' `models.list()` / `models.retrieve()`
//! send) gets Anthropic's shape (`{"data":[{"type":"model","id","display_name","created_at"}],
//! "has_more":false,"first_id","last_id"}`) and Anthropic-format errors (the edge layer
//! [`super::messages::anthropic_errors`]); any other request gets OpenAI's
//! (`{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`).
//!
//! The Anthropic list is one page: a key's model list is short, so `limit`, `before_id` and
//! `after_id` are ignored and `has_more` is always `false` (an SDK paginating on `has_more`
//! stops after the first page). The gateway knows no creation date for a model; both shapes
//! report the Unix epoch (`created: 0`, `created_at: "1970-01-01T00:00:00Z"`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use crate::anthropic_api;
use crate::error::GatewayError;
use crate::pipeline::AuthContext;
use crate::state::AppState;
use crate::store::TenantView;

#[derive(Debug, Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// Anthropic's `ModelInfo`.
#[derive(Debug, Serialize)]
struct AnthropicModel {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    /// The deployment name: the gateway has no other human-readable name for a model.
    display_name: String,
    /// RFC 3339; the epoch, as for OpenAI's `created` (we have no creation time).
    created_at: &'static str,
}

/// Anthropic's model list page.
#[derive(Debug, Serialize)]
struct AnthropicModelList {
    data: Vec<AnthropicModel>,
    has_more: bool,
    first_id: Option<String>,
    last_id: Option<String>,
}

impl From<Model> for AnthropicModel {
    fn from(m: Model) -> Self {
        Self {
            kind: "model",
            display_name: m.id.clone(),
            id: m.id,
            created_at: "1970-01-01T00:00:00Z",
        }
    }
}

#[derive(Debug, Serialize)]
struct Model {
    id: String,
    object: &'static str,
    /// OpenAI's creation time of the model; we have none, and SDKs only need an integer.
    created: i64,
    /// The name of the provider serving the model's first deployment.
    owned_by: String,
}

/// Lists the distinct model names of the key's tenant that the key may use, in published order.
pub async fn list(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let data = match tenant(&state, &auth).await? {
        Some(view) => allowed_models(&view, &auth),
        None => Vec::new(),
    };
    if anthropic_api::is_anthropic_client(&headers) {
        let data: Vec<AnthropicModel> = data.into_iter().map(AnthropicModel::from).collect();
        return Ok(Json(AnthropicModelList {
            first_id: data.first().map(|m| m.id.clone()),
            last_id: data.last().map(|m| m.id.clone()),
            has_more: false,
            data,
        })
        .into_response());
    }
    Ok(Json(ModelList {
        object: "list",
        data,
    })
    .into_response())
}

/// One model, or 404 `model_not_found` if the key may not use it or it does not exist.
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(auth): Extension<AuthContext>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Result<Response, GatewayError> {
    crate::wire::check_model(&model)?;
    let found = tenant(&state, &auth).await?.and_then(|view| {
        allowed_models(&view, &auth)
            .into_iter()
            .find(|m| m.id == model)
    });
    match found {
        Some(m) if anthropic_api::is_anthropic_client(&headers) => {
            Ok(Json(AnthropicModel::from(m)).into_response())
        }
        Some(m) => Ok(Json(m).into_response()),
        None => Err(GatewayError::ModelNotFound { model }),
    }
}

async fn tenant(
    state: &AppState,
    auth: &AuthContext,
) -> Result<Option<std::sync::Arc<TenantView>>, GatewayError> {
    state
        .store()
        .tenant(auth.key.tenant_id)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))
}

fn allowed_models(view: &TenantView, auth: &AuthContext) -> Vec<Model> {
    let mut out: Vec<Model> = Vec::new();
    for d in view.deployments() {
        if !auth.key.allows_model(&d.name) || out.iter().any(|m| m.id == d.name) {
            continue;
        }
        let owned_by = view
            .provider(d.provider_id)
            .map_or_else(|| "switchyard".to_owned(), |p| p.record.name.clone());
        out.push(Model {
            id: d.name.clone(),
            object: "model",
            created: 0,
            owned_by,
        });
    }
    out
}
