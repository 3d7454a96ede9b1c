//! Stage route: turn the model name a request asks for into a [`Plan`], the ordered candidates
//! the attempt stage tries, for every endpoint alike.
//!
//! Naming (STYLE.md): a client's `model` names a *route*; a route resolves to *backends*
//! (deployments, each with its provider).
//!
//! 1. `model` is checked (non-empty, at most 256 bytes) before it is quoted anywhere.
//! 2. The tenant's view comes from the [`ConfigStore`](crate::store::ConfigStore) (cached, no
//!    network for a known tenant).
//! 3. A route of that name wins ([`RouteRecord`]: it shadows a deployment of the same name);
//!    otherwise every deployment of that name forms an *implicit route* (a model group):
//!    fallback among them in published order. Nothing of that name is 404 `model_not_found`.
//! 4. A key limited to some models must list the name asked for (403 `model_not_allowed`;
//!    existence is checked first, so an unknown model is always a 404).
//! 5. Filters, before any ordering: the API (a chat request never goes to an `embedding`
//!    deployment; if that leaves nothing it is a 400 naming `model`), then the region policy:
//!    the tenant's, the key's team's and the route's `allowed_regions`, all of which must allow
//!    a deployment's region ([`shared::config::region_allows`]); a deployment with no region
//!    never satisfies a pinned request. If no candidate is compliant the request is refused with
//!    403 `region_not_allowed` naming the policy, before any upstream call; fallback only ever
//!    walks the compliant candidates, so it never leaves the allowed set.
//! 6. Order ([`crate::routing::order`]): by the route's strategy (`priority`, `weighted` with
//!    optional stickiness by the request's `user`, `cheapest`, `fastest`, `reliable`,
//!    `least_busy`) over this node's health numbers; an implicit route is `weighted` with equal
//!    weights. Whatever the strategy, the rest form the fallback order, and candidates whose
//!    circuit breaker is open go last (the attempt stage skips them while others remain).

use std::borrow::Cow;
use std::sync::Arc;

use shared::config::{
    Capability, DeploymentMode, DeploymentRecord, RetryClass, RouteRecord, RouteStrategy,
    RouteTimeouts, region_allows,
};

use crate::config::Settings;
use crate::error::{GatewayError, invalid};
use crate::pipeline::{Api, AuthContext, Intent};
use crate::routing::{Candidate, RequestFacts};
use crate::state::AppState;
use crate::store::{ResolvedProvider, TenantView};

/// Most attempts any plan makes, whatever a route asks.
pub const MAX_ATTEMPTS: usize = 10;
/// The retry classes of a route that names none.
pub const DEFAULT_RETRY_ON: [RetryClass; 4] = [
    RetryClass::RateLimited,
    RetryClass::ServerError,
    RetryClass::Timeout,
    RetryClass::Connection,
];

/// One candidate: a deployment of the tenant (by index into its view, so a plan clones no
/// strings) and the view it belongs to (which holds its provider, credentials opened).
#[derive(Debug, Clone)]
pub struct Backend {
    pub tenant: Arc<TenantView>,
    index: usize,
}

impl Backend {
    fn new(tenant: Arc<TenantView>, index: usize) -> Option<Self> {
        tenant.deployment(index)?;
        Some(Self { tenant, index })
    }

    /// The deployment at `index` of `tenant` outside any plan (the semantic cache's embedding
    /// call); `None` when the view has no such deployment.
    pub(crate) fn of(tenant: Arc<TenantView>, index: usize) -> Option<Self> {
        Self::new(tenant, index)
    }

    pub fn deployment(&self) -> &DeploymentRecord {
        // `new` checked the index against this very view, which is immutable.
        &self.tenant.deployments()[self.index]
    }

    /// The deployment's provider; one missing from the tenant's config is an inconsistent
    /// config, not the client's fault (502 `provider_unavailable`).
    pub fn provider(&self) -> Result<&ResolvedProvider, GatewayError> {
        let deployment = self.deployment();
        self.tenant.provider(deployment.provider_id).ok_or_else(|| {
            GatewayError::ProviderUnavailable(format!(
                "deployment {} names provider {}, which the tenant config does not contain",
                deployment.id, deployment.provider_id
            ))
        })
    }
}

/// What the attempt stage runs: the route's name, its compliant candidates in order, and how
/// hard to try.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The name the client asked for (an explicit route's or a deployment group's).
    pub route: String,
    /// Whether a [`RouteRecord`] defined it (rather than a shared deployment name).
    pub explicit: bool,
    /// Ordered: the first is the choice, the rest the fallback order.
    pub candidates: Vec<Backend>,
    /// Attempts in all, first try included (at least 1).
    pub max_attempts: usize,
    /// Failure classes that move on to the next attempt.
    pub retry_on: Cow<'static, [RetryClass]>,
    pub timeouts: RouteTimeouts,
    /// Opt-in hedging: after this long without an answer, also try the next candidate.
    pub hedge_after: Option<std::time::Duration>,
}

impl Plan {
    /// The request settings for this plan's attempts: the node's, with the route's timeouts in
    /// place of the node's (`connect_ms` bounds connecting, `first_token_ms` the wait for the
    /// response headers, i.e. the first streamed event or a whole non-streamed answer;
    /// `total_ms` the whole call).
    /// Borrowed, at no cost, when the route sets none.
    pub fn settings<'a>(&self, node: &'a Settings) -> Cow<'a, Settings> {
        let t = &self.timeouts;
        if t.first_token_ms.is_none() && t.total_ms.is_none() && t.connect_ms.is_none() {
            return Cow::Borrowed(node);
        }
        let mut settings = node.clone();
        if let Some(ms) = t.connect_ms {
            settings.upstream_connect_timeout_ms = ms;
        }
        if let Some(ms) = t.first_token_ms {
            settings.upstream_headers_timeout_ms = ms;
        }
        if let Some(ms) = t.total_ms {
            settings.upstream_timeout_ms = ms;
        }
        Cow::Owned(settings)
    }
}

/// Resolves `intent.model` for the key's tenant into a [`Plan`] (see the module docs).
pub async fn plan(
    state: &AppState,
    auth: &AuthContext,
    intent: &Intent<'_>,
) -> Result<Plan, GatewayError> {
    let model = intent.model;
    // Every model lookup passes here, so an oversized name is refused before it is quoted.
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

    let route = tenant.route(model);
    // In the route's listed (or the published) order; the strategy orders them below.
    let mut indices: Vec<usize> = match route {
        Some(route) => route
            .candidates
            .iter()
            .filter_map(|c| tenant.deployment_index(c.deployment_id))
            .collect(),
        None => tenant.deployments_named(model).to_vec(),
    };
    if indices.is_empty() {
        return Err(not_found());
    }
    if !auth.key.allows_model(model) {
        return Err(GatewayError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }

    let deployment = |index: usize| tenant.deployment(index);
    if intent.api == Api::Chat {
        indices.retain(|&i| deployment(i).is_some_and(|d| d.mode != DeploymentMode::Embedding));
        if indices.is_empty() {
            return Err(invalid(
                "model",
                format!("The model `{model}` is an embedding model: call /v1/embeddings with it."),
            ));
        }
    }

    filter_capabilities(&tenant, intent, &mut indices)?;

    let policies = region_policies(&tenant, auth.key.team_id, route);
    if !policies.is_empty() {
        indices.retain(|&i| deployment(i).is_some_and(|d| complies(&policies, d)));
        if indices.is_empty() {
            return Err(region_refusal(model, &policies));
        }
    }

    let candidates = order(state, &tenant, route, intent, indices);
    let max_attempts = route
        .and_then(|r| r.max_attempts)
        .map_or(candidates.len(), |n| n as usize)
        .clamp(1, MAX_ATTEMPTS);
    Ok(Plan {
        route: model.to_owned(),
        explicit: route.is_some(),
        candidates,
        max_attempts,
        // Borrowed (no allocation) unless the route names its own classes.
        retry_on: route
            .and_then(|r| r.retry_on.clone())
            .map_or(Cow::Borrowed(&DEFAULT_RETRY_ON[..]), Cow::Owned),
        timeouts: route.map(|r| r.timeouts).unwrap_or_default(),
        hedge_after: route
            .and_then(|r| r.hedge_after_ms)
            .map(std::time::Duration::from_millis),
    })
}

/// Keeps the candidates that can do what the request needs: tools, vision, JSON mode (a
/// deployment that states no capabilities is assumed capable), and a context window large
/// enough for the prompt plus the requested output (checked only when some candidate states
/// its window, since it costs a token count). Nothing left is a 400 naming the field.
fn filter_capabilities(
    tenant: &TenantView,
    intent: &Intent<'_>,
    indices: &mut Vec<usize>,
) -> Result<(), GatewayError> {
    let model = intent.model;
    let needs = [
        (intent.needs.tools, Capability::Tools, "tools", "tool calls"),
        (
            intent.needs.vision,
            Capability::Vision,
            "messages",
            "image input",
        ),
        (
            intent.needs.json_mode,
            Capability::JsonMode,
            "response_format",
            "JSON mode",
        ),
    ];
    for (needed, capability, param, what) in needs {
        if !needed {
            continue;
        }
        indices.retain(|&i| {
            tenant.deployment(i).is_some_and(|d| {
                d.capabilities
                    .as_ref()
                    .is_none_or(|caps| caps.contains(&capability))
            })
        });
        if indices.is_empty() {
            return Err(invalid(
                param,
                format!("No deployment of the model `{model}` supports {what}."),
            ));
        }
    }
    // The smallest stated window among the candidates. A request whose body is no larger (in
    // bytes, an upper bound of its prompt tokens: every token is at least one byte, and the
    // JSON around each message outweighs the per-message token overhead) fits them all without
    // a tokenizer pass, which is the common case.
    let smallest = indices
        .iter()
        .filter_map(|&i| tenant.deployment(i).and_then(|d| d.context_window))
        .min();
    let output = u64::from(intent.max_output_tokens.unwrap_or(0));
    let surely_fits =
        smallest.is_none_or(|window| intent.body_bytes as u64 + output <= u64::from(window));
    if !surely_fits {
        let needed = intent.prompt_tokens() + output;
        indices.retain(|&i| {
            tenant.deployment(i).is_some_and(|d| {
                d.context_window
                    .is_none_or(|window| u64::from(window) >= needed)
            })
        });
        if indices.is_empty() {
            return Err(invalid(
                "messages",
                format!(
                    "The request needs about {needed} tokens of context (prompt plus max output), \
                     more than any deployment of the model `{model}` has."
                ),
            ));
        }
    }
    Ok(())
}

/// Orders the compliant candidates by the route's strategy (an implicit route is `weighted`
/// with equal weights), using this node's health numbers; unavailable ones go last.
fn order(
    state: &AppState,
    tenant: &Arc<TenantView>,
    route: Option<&RouteRecord>,
    intent: &Intent<'_>,
    indices: Vec<usize>,
) -> Vec<Backend> {
    if indices.len() == 1 {
        // Nothing to order: no health snapshot, no estimate.
        return indices
            .into_iter()
            .filter_map(|i| Backend::new(Arc::clone(tenant), i))
            .collect();
    }
    let strategy = route.map_or(RouteStrategy::Weighted, |r| r.strategy);
    let mut candidates: Vec<Candidate<usize>> = indices
        .into_iter()
        .filter_map(|index| {
            let deployment = tenant.deployment(index)?;
            let spec = route.and_then(|r| {
                r.candidates
                    .iter()
                    .find(|c| c.deployment_id == deployment.id)
            });
            let stats = state.health().snapshot(deployment.id);
            Some(Candidate::new(index, deployment, spec, stats))
        })
        .collect();
    let facts = RequestFacts {
        // Only `cheapest` reads the estimate; it costs a tokenizer pass.
        prompt_tokens: if strategy == RouteStrategy::Cheapest {
            intent.prompt_tokens()
        } else {
            0
        },
        max_output_tokens: u64::from(intent.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE)),
        sticky_key: route
            .is_some_and(|r| r.sticky)
            .then_some(intent.sticky_key)
            .flatten(),
    };
    crate::routing::order(strategy, &mut candidates, &facts, &mut rand::rng());
    candidates
        .into_iter()
        .filter_map(|c| Backend::new(Arc::clone(tenant), c.item))
        .collect()
}

/// Output tokens assumed for cost comparisons when a request sets no limit.
const DEFAULT_OUTPUT_ESTIMATE: u32 = 1024;

/// A region policy that applies to a request: whose it is, and its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    pub owner: &'static str,
    pub entries: &'a [String],
}

/// The region policies that apply: the tenant's, the key's team's and the route's, each only
/// when set. The effective policy is their intersection: a deployment must satisfy all.
pub fn region_policies<'a>(
    tenant: &'a TenantView,
    team: Option<uuid::Uuid>,
    route: Option<&'a RouteRecord>,
) -> Vec<Policy<'a>> {
    let mut policies = Vec::new();
    if let Some(entries) = tenant.allowed_regions() {
        policies.push(Policy {
            owner: "organization",
            entries,
        });
    }
    if let Some(entries) = team.and_then(|t| tenant.team_regions(t)) {
        policies.push(Policy {
            owner: "team",
            entries,
        });
    }
    if let Some(entries) = route.and_then(|r| r.allowed_regions.as_deref()) {
        policies.push(Policy {
            owner: "route",
            entries,
        });
    }
    policies
}

/// Whether `deployment` satisfies every policy. A deployment with no region satisfies none.
pub fn complies(policies: &[Policy<'_>], deployment: &DeploymentRecord) -> bool {
    policies.iter().all(|p| {
        deployment
            .region
            .as_deref()
            .is_some_and(|region| p.entries.iter().any(|e| region_allows(e, region)))
    })
}

/// The 403 for a request no compliant deployment can serve, naming the policies.
fn region_refusal(model: &str, policies: &[Policy<'_>]) -> GatewayError {
    let described: Vec<String> = policies
        .iter()
        .map(|p| format!("the {} allows {}", p.owner, p.entries.join(", ")))
        .collect();
    GatewayError::RegionNotAllowed {
        model: model.to_owned(),
        policy: described.join("; "),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn dep(region: Option<&str>) -> DeploymentRecord {
        DeploymentRecord {
            id: uuid::Uuid::new_v4(),
            name: "m".into(),
            provider_id: uuid::Uuid::new_v4(),
            upstream_model: "m".into(),
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 1,
            region: region.map(str::to_owned),
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: DeploymentMode::Chat,
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
        }
    }

    #[test]
    fn a_deployment_must_satisfy_every_policy() {
        let eu = vec!["eu".to_owned()];
        let eu_west = vec!["eu-west".to_owned(), "us-east-1".to_owned()];
        let org = Policy {
            owner: "organization",
            entries: &eu,
        };
        let team = Policy {
            owner: "team",
            entries: &eu_west,
        };
        let check = |policies: &[Policy<'_>], region: Option<&str>, want: bool| {
            assert_eq!(
                complies(policies, &dep(region)),
                want,
                "{region:?} under {policies:?}"
            );
        };
        check(&[], None, true);
        check(&[org], Some("eu-central-1"), true);
        check(&[org], Some("us-east-1"), false);
        check(&[org], None, false);
        check(&[org, team], Some("eu-west-1"), true);
        check(&[org, team], Some("eu-central-1"), false);
        // us-east-1 passes the team's list but not the organization's: the intersection.
        check(&[org, team], Some("us-east-1"), false);
    }

    #[test]
    fn the_refusal_names_each_policy() {
        let eu = vec!["eu".to_owned()];
        let e = region_refusal(
            "gpt",
            &[Policy {
                owner: "team",
                entries: &eu,
            }],
        );
        assert_eq!(e.code(), "region_not_allowed");
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.body().error.message.contains("the team allows eu"));
    }
}
