//! [`TenantView`]: a [`TenantConfig`] prepared once per version for the request path —
//! deployments indexed by name, provider secrets already opened — so routing does no crypto and
//! no scanning.

use std::collections::HashMap;

use std::collections::BTreeMap;

use std::sync::Arc;

use shared::cache::CacheSettings;
use shared::config::{DeploymentRecord, ProviderRecord, RouteRecord, TenantConfig};
use shared::crypto::MasterKey;
use shared::governance::RateLimits;
use shared::guardrails::{Guardrail, GuardrailScope};
use uuid::Uuid;

use super::StoreError;
use super::cache::Versioned;

/// One tenant's routing table, built from one version of its [`TenantConfig`].
#[derive(Debug)]
pub struct TenantView {
    tenant_id: Uuid,
    version: i64,
    deployments: Vec<DeploymentRecord>,
    /// Indices into `deployments` of each name, in published order.
    by_name: HashMap<String, Vec<usize>>,
    /// Index into `deployments` of each id.
    by_id: HashMap<Uuid, usize>,
    routes: HashMap<String, RouteRecord>,
    providers: HashMap<Uuid, ResolvedProvider>,
    allowed_regions: Option<Vec<String>>,
    team_regions: BTreeMap<Uuid, Vec<String>>,
    /// The organization's own rate limits, and each team's.
    limits: RateLimits,
    team_limits: BTreeMap<Uuid, RateLimits>,
    /// The tenant's budgets (every scope), for the budget stage.
    budgets: Vec<shared::governance::BudgetRecord>,
    /// The organization opted in to storing prompts and completions in usage events.
    store_payloads: bool,
    /// Set while the organization is suspended (billing): authentication refuses its requests.
    suspension: Option<shared::config::Suspension>,
    /// Response-cache settings of the teams that have one.
    team_cache: BTreeMap<Uuid, CacheSettings>,
    /// The guardrail policies, compiled once per version; one that does not compile here keeps
    /// its name so requests under it are refused rather than let through unchecked.
    guardrails: Vec<ScopedGuardrail>,
}

/// A guardrail policy with its scope: compiled, or the name of one that does not compile here.
type ScopedGuardrail = (GuardrailScope, Option<Uuid>, Result<Arc<Guardrail>, String>);

impl TenantView {
    /// Indexes the deployments and opens every provider secret with `master_key` (associated
    /// data: the provider id as a string). A secret that does not open does not fail the tenant:
    /// only requests routed to that provider fail, via [`ResolvedProvider::api_key`].
    pub fn build(config: &TenantConfig, master_key: &MasterKey) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_id = HashMap::new();
        for (i, d) in config.deployments.iter().enumerate() {
            by_name.entry(d.name.clone()).or_default().push(i);
            by_id.insert(d.id, i);
        }
        let routes = config
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        let providers = config
            .providers
            .iter()
            .map(|p| (p.id, ResolvedProvider::open(p.clone(), master_key)))
            .collect();
        Self {
            tenant_id: config.tenant_id,
            version: config.version,
            deployments: config.deployments.clone(),
            by_name,
            by_id,
            routes,
            providers,
            allowed_regions: config.allowed_regions.clone(),
            team_regions: config.team_regions.clone(),
            limits: config.limits,
            team_limits: config.team_limits.clone(),
            budgets: config.budgets.clone(),
            store_payloads: config.store_payloads,
            suspension: config.suspension.clone(),
            team_cache: config.team_cache.clone(),
            guardrails: config
                .guardrails
                .iter()
                .map(|g| {
                    let compiled = Guardrail::compile(g.clone()).map(Arc::new).map_err(|e| {
                        tracing::error!(tenant_id = %config.tenant_id, guardrail_id = %g.id, error = %e, "guardrail policy does not compile; requests under it are refused");
                        g.name.clone()
                    });
                    (g.scope, g.scope_id, compiled)
                })
                .collect(),
        }
    }

    /// The response-cache setting of `team`, if it has one.
    pub fn team_cache(&self, team: Uuid) -> Option<&CacheSettings> {
        self.team_cache.get(&team)
    }

    /// The guardrail policy for a request of `key` (in `team`) to `route` (an explicit route's
    /// id): the most specific one that applies — the key's, the team's, the route's, the
    /// organization's — or none. `Err` names a policy that does not compile on this node.
    pub fn guardrail_for(
        &self,
        key: Uuid,
        team: Option<Uuid>,
        route: Option<Uuid>,
    ) -> Option<Result<&Arc<Guardrail>, &str>> {
        if self.guardrails.is_empty() {
            return None;
        }
        let find = |scope: GuardrailScope, id: Option<Uuid>| {
            self.guardrails
                .iter()
                .find(|(s, sid, _)| *s == scope && *sid == id)
                .map(|(_, _, g)| g.as_ref().map_err(String::as_str))
        };
        find(GuardrailScope::Key, Some(key))
            .or_else(|| team.and_then(|t| find(GuardrailScope::Team, Some(t))))
            .or_else(|| route.and_then(|r| find(GuardrailScope::Route, Some(r))))
            .or_else(|| find(GuardrailScope::Organization, None))
    }

    /// Whether usage events carry the request and answer text (`TenantConfig::store_payloads`).
    pub fn store_payloads(&self) -> bool {
        self.store_payloads
    }

    /// Why the organization is suspended, if it is (see `pipeline::authenticate`).
    pub fn suspension(&self) -> Option<&shared::config::Suspension> {
        self.suspension.as_ref()
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// Indices (see [`TenantView::deployment`]) of the deployments whose `name` equals `model`,
    /// in published order (empty if none).
    pub fn deployments_named(&self, model: &str) -> &[usize] {
        self.by_name.get(model).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The deployment at `index` (from [`TenantView::deployments_named`] or
    /// [`TenantView::deployment_index`]).
    pub fn deployment(&self, index: usize) -> Option<&DeploymentRecord> {
        self.deployments.get(index)
    }

    /// The index of the deployment with this id.
    pub fn deployment_index(&self, id: Uuid) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The route clients call as `name`, if the tenant has one.
    pub fn route(&self, name: &str) -> Option<&RouteRecord> {
        self.routes.get(name)
    }

    /// The tenant's region policy (`None`: unrestricted).
    pub fn allowed_regions(&self) -> Option<&[String]> {
        self.allowed_regions.as_deref()
    }

    /// `team`'s region policy, if it has one.
    pub fn team_regions(&self, team: Uuid) -> Option<&[String]> {
        self.team_regions.get(&team).map(Vec::as_slice)
    }

    /// Every deployment, in published order.
    /// The organization-wide rate limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// A team's rate limits, if it has any.
    pub fn team_limits(&self, team: Uuid) -> Option<RateLimits> {
        self.team_limits.get(&team).copied()
    }

    pub fn deployments(&self) -> &[DeploymentRecord] {
        &self.deployments
    }

    /// The tenant's budgets, of every scope.
    pub fn budgets(&self) -> &[shared::governance::BudgetRecord] {
        &self.budgets
    }

    pub fn provider(&self, id: Uuid) -> Option<&ResolvedProvider> {
        self.providers.get(&id)
    }
}

impl Versioned for TenantView {
    fn version(&self) -> i64 {
        self.version
    }
}

/// A provider credential with its API key opened.
#[derive(Debug)]
pub struct ResolvedProvider {
    pub record: ProviderRecord,
    api_key: ApiKey,
}

enum ApiKey {
    None,
    Open(String),
    Undecryptable,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiKey::None => "None",
            ApiKey::Open(_) => "<redacted>",
            ApiKey::Undecryptable => "<undecryptable>",
        })
    }
}

impl ResolvedProvider {
    fn open(record: ProviderRecord, master_key: &MasterKey) -> Self {
        let api_key = match &record.api_key_sealed {
            None => ApiKey::None,
            Some(sealed) => match master_key.open(sealed, &record.id.to_string()) {
                Ok(plain) => ApiKey::Open(plain),
                Err(e) => {
                    // Logged once per tenant version, not per request. The provider id is not a
                    // secret; the error says only "malformed" or "does not decrypt".
                    tracing::error!(provider_id = %record.id, error = %e, "cannot open a provider secret; check SWITCHYARD_MASTER_KEY");
                    ApiKey::Undecryptable
                }
            },
        };
        Self { record, api_key }
    }

    /// The provider API key opened with the master key; `None` if none is set. Err if it exists
    /// but cannot be opened (wrong master key).
    pub fn api_key(&self) -> Result<Option<&str>, StoreError> {
        match &self.api_key {
            ApiKey::None => Ok(None),
            ApiKey::Open(k) => Ok(Some(k.as_str())),
            ApiKey::Undecryptable => Err(StoreError::UndecryptableSecret),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use shared::config::ProviderKind;

    fn config(key: &MasterKey) -> TenantConfig {
        let p1 = Uuid::new_v4();
        let p2 = Uuid::new_v4();
        let dep = |name: &str, provider_id| DeploymentRecord {
            id: Uuid::new_v4(),
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
            name: name.into(),
            provider_id,
            upstream_model: format!("up-{name}"),
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 2,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: Default::default(),
        };
        TenantConfig {
            tenant_id: Uuid::new_v4(),
            version: 3,
            routes: Vec::new(),
            allowed_regions: None,
            team_regions: Default::default(),
            budgets: Vec::new(),
            limits: Default::default(),
            team_limits: Default::default(),
            suspension: None,
            store_payloads: false,
            team_cache: Default::default(),
            guardrails: Vec::new(),
            deployments: vec![dep("a", p1), dep("b", p2), dep("a", p2)],
            providers: vec![
                ProviderRecord {
                    id: p1,
                    name: "one".into(),
                    kind: ProviderKind::OpenAi,
                    base_url: None,
                    api_key_sealed: Some(key.seal("sk-upstream", &p1.to_string())),
                    options: Default::default(),
                },
                ProviderRecord {
                    id: p2,
                    name: "two".into(),
                    kind: ProviderKind::Mock,
                    base_url: None,
                    api_key_sealed: None,
                    options: Default::default(),
                },
            ],
        }
    }

    #[test]
    fn indexes_deployments_and_opens_secrets() {
        let key = MasterKey::generate();
        let c = config(&key);
        let v = TenantView::build(&c, &key);
        assert_eq!(v.version(), 3);
        assert_eq!(v.deployments().len(), 3);
        let a = v.deployments_named("a");
        assert_eq!(a.len(), 2);
        assert_eq!(
            v.deployment(a[0]).unwrap().provider_id,
            c.providers[0].id,
            "published order is kept"
        );
        let id = c.deployments[1].id;
        assert_eq!(
            v.deployment(v.deployment_index(id).unwrap()).unwrap().id,
            id
        );
        assert!(v.deployments_named("zzz").is_empty());
        let p1 = v.provider(c.providers[0].id).unwrap();
        assert_eq!(p1.api_key().unwrap(), Some("sk-upstream"));
        assert_eq!(
            v.provider(c.providers[1].id).unwrap().api_key().unwrap(),
            None
        );
        assert!(
            !format!("{v:?}").contains("sk-upstream"),
            "Debug never shows the opened key"
        );
    }

    #[test]
    fn wrong_master_key_fails_only_that_provider() {
        let key = MasterKey::generate();
        let c = config(&key);
        let v = TenantView::build(&c, &MasterKey::generate());
        assert!(matches!(
            v.provider(c.providers[0].id).unwrap().api_key(),
            Err(StoreError::UndecryptableSecret)
        ));
        assert_eq!(
            v.provider(c.providers[1].id).unwrap().api_key().unwrap(),
            None
        );
    }
}
