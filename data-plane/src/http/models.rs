//! `GET /v1/models` and `GET /v1/models/{model}`: the models the presented key may use, in
//! OpenAI's list format.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use crate::error::GatewayError;
use crate::pipeline::AuthContext;
use crate::state::AppState;
use crate::store::TenantView;

#[derive(Debug, Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
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
) -> Result<Response, GatewayError> {
    let data = match tenant(&state, &auth).await? {
        Some(view) => allowed_models(&view, &auth),
        None => Vec::new(),
    };
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
    Path(model): Path<String>,
) -> Result<Response, GatewayError> {
    let found = tenant(&state, &auth).await?.and_then(|view| {
        allowed_models(&view, &auth)
            .into_iter()
            .find(|m| m.id == model)
    });
    match found {
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
