//! Stage 5, route: resolve the requested model name to a deployment of the key's tenant.
//!
//! The tenant's view comes from the [`ConfigStore`](crate::store::ConfigStore) (cached, no
//! network for a known tenant). A model the tenant has no deployment for is 404
//! `model_not_found`; a model that exists but is not in the key's allowed list is 403
//! `model_not_allowed` (existence is checked first, so an unknown model is always a 404). A chat
//! request for a model deployed only in `embedding` mode is a 400 naming `model`.
//!
//! Routing policy: the first deployment with that name, in published order. Weighted, latency-
//! or cost-based choice among several deployments (and regions) comes later and belongs here.

use std::sync::Arc;

use shared::config::{DeploymentMode, DeploymentRecord};

use crate::error::{GatewayError, invalid};
use crate::pipeline::AuthContext;
use crate::state::AppState;
use crate::store::{ResolvedProvider, TenantView};

/// The chosen backend: the deployment and the tenant view it belongs to (which holds its
/// provider, credentials opened).
#[derive(Debug, Clone)]
pub struct Backend {
    pub tenant: Arc<TenantView>,
    pub deployment: DeploymentRecord,
}

impl Backend {
    /// The deployment's provider; one missing from the tenant's config is an inconsistent
    /// config, not the client's fault (502 `provider_unavailable`).
    pub fn provider(&self) -> Result<&ResolvedProvider, GatewayError> {
        let deployment = &self.deployment;
        self.tenant.provider(deployment.provider_id).ok_or_else(|| {
            GatewayError::ProviderUnavailable(format!(
                "deployment {} names provider {}, which the tenant config does not contain",
                deployment.id, deployment.provider_id
            ))
        })
    }
}

/// Picks the deployment for a chat request (`/v1/chat/completions`, `/v1/messages`). A model the
/// tenant has only as embedding deployments is a 400 naming `model`, not a provider error.
///
/// The guard is one-way on purpose: `chat` is the default mode, so a deployment created without
/// one may well be an embedding model, and `/v1/embeddings` accepts every deployment ([`resolve`]);
/// `embedding` is only ever set deliberately (by the catalog or the API).
pub async fn resolve_chat(
    state: &AppState,
    auth: &AuthContext,
    model: &str,
) -> Result<Backend, GatewayError> {
    let backend =
        resolve_named(state, auth, model, |d| d.mode != DeploymentMode::Embedding).await?;
    backend.ok_or_else(|| {
        invalid(
            "model",
            format!("The model `{model}` is an embedding model: call /v1/embeddings with it."),
        )
    })
}

/// Picks the deployment for `model`, whatever API it serves (`/v1/embeddings`).
pub async fn resolve(
    state: &AppState,
    auth: &AuthContext,
    model: &str,
) -> Result<Backend, GatewayError> {
    match resolve_named(state, auth, model, |_| true).await? {
        Some(backend) => Ok(backend),
        None => Err(GatewayError::ModelNotFound {
            model: model.to_owned(),
        }),
    }
}

/// 404 if the tenant has no deployment named `model`, 403 if the key may not use it;
/// otherwise the first deployment with that name that `accept`s, or `None` if none does.
async fn resolve_named(
    state: &AppState,
    auth: &AuthContext,
    model: &str,
    accept: impl Fn(&DeploymentRecord) -> bool,
) -> Result<Option<Backend>, GatewayError> {
    // Every model lookup passes here (count_tokens and /v1/models/{model} included), so an
    // oversized name is refused before it is quoted in any answer.
    crate::wire::check_model(model)?;
    let not_found = || GatewayError::ModelNotFound {
        model: model.to_owned(),
    };
    let tenant = state
        .store()
        .tenant(auth.key.tenant_id)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?
        .ok_or_else(not_found)?;
    let candidates = tenant.deployments_named(model);
    if candidates.is_empty() {
        return Err(not_found());
    }
    if !auth.key.allows_model(model) {
        return Err(GatewayError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }
    let deployment = candidates.iter().find(|d| accept(d)).cloned();
    Ok(deployment.map(|deployment| Backend { tenant, deployment }))
}
