//! Stage 5, route: resolve the requested model name to a deployment of the key's tenant.
//!
//! The tenant's view comes from the [`ConfigStore`](crate::store::ConfigStore) (cached, no
//! network for a known tenant). A model the tenant has no deployment for is 404
//! `model_not_found`; a model that exists but is not in the key's allowed list is 403
//! `model_not_allowed` (existence is checked first, so an unknown model is always a 404).
//!
//! Routing policy: the first deployment with that name, in published order. Weighted, latency-
//! or cost-based choice among several deployments (and regions) comes later and belongs here.

use std::sync::Arc;

use shared::config::DeploymentRecord;

use crate::error::GatewayError;
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

/// Picks the deployment for `model`.
pub async fn resolve(
    state: &AppState,
    auth: &AuthContext,
    model: &str,
) -> Result<Backend, GatewayError> {
    let not_found = || GatewayError::ModelNotFound {
        model: model.to_owned(),
    };
    let tenant = state
        .store()
        .tenant(auth.key.tenant_id)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?
        .ok_or_else(not_found)?;
    let deployment = tenant
        .deployments_named(model)
        .first()
        .cloned()
        .ok_or_else(not_found)?;
    if !auth.key.allows_model(model) {
        return Err(GatewayError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }
    Ok(Backend { tenant, deployment })
}
