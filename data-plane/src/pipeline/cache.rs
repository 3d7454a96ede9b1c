//! Stage cache: answer a repeated request from the response cache (see
//! [`crate::response_cache`] for storage, keys and formats).
//!
//! It runs after route and guardrails and before the budget: a cached answer is only ever
//! served to a request the key may make (model scope, region policy, guardrails all passed) and
//! costs no budget; a miss goes on to reserve as usual.
//!
//! - The setting ([`CacheSettings`]) is the most specific of the key's, its team's and the
//!   route's (the model name asked for, when it is a route); none, or `off`, is a *bypass*.
//! - `Cache-Control: no-store` bypasses the cache entirely; `no-cache` skips the lookup but
//!   stores the fresh answer (a refresh). Both answer `x-switchyard-cache: bypass`.
//! - Exact mode looks the digest of the canonical request up. Semantic mode (chat only) does
//!   that first, then embeds the conversation through one of the organization's own embedding
//!   deployments (the setting's `embedding_model`, else the first by name), and asks the
//!   node's vector index for the closest stored prompt in the same bucket (organization, model,
//!   system prompt, tools, parameters) at `min_similarity` or more. The embedding call is the
//!   organization's own usage: it gets its own usage event (endpoint `embeddings`, tag
//!   `switchyard.purpose=semantic_cache`).
//! - A miss leaves a [`Ticket`] with the meter, which stores the answer when it is complete
//!   (a whole 200 answer, or a stream that ended with `[DONE]`; never an error or a cut stream).
//! - Fails open: a cache that errs or does not answer within
//!   `SWITCHYARD_GOVERNANCE_REDIS_TIMEOUT_MS` is a miss (nothing is stored then), counted in
//!   `switchyard_cache_errors_total`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shared::cache::{CacheMode, CacheSettings};
use shared::config::DeploymentMode;
use tokio::time::Instant;
use uuid::Uuid;

use super::meter::Meter;
use super::route::{Backend, Plan};
use super::{AuthContext, Intent, Parsed, RequestId};
use crate::providers::{self, EmbedCall};
use crate::response_cache::{CacheError, CacheKey, key};
use crate::state::AppState;
use crate::store::TenantView;
use crate::wire::{EmbeddingInput, EmbeddingsRequest};

/// Longest conversation text embedded for a semantic lookup, in bytes (its end is kept: the
/// latest turns matter most).
const MAX_EMBED_TEXT: usize = 16 * 1024;
/// Longest wait for the embedding call of a semantic lookup.
const EMBED_TIMEOUT: Duration = Duration::from_secs(10);

/// A cached answer: the stored body (a `chat.completion` or an embeddings list) and, for a
/// semantic hit, how similar the stored prompt was.
pub struct Hit {
    pub body: Bytes,
    pub similarity: Option<f32>,
}

/// What the answer's `x-switchyard-cache` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Bypass,
    Miss,
    Hit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Bypass => "bypass",
            Status::Miss => "miss",
            Status::Hit => "hit",
        }
    }
}

/// Where and for how long a miss's answer is stored.
pub struct Ticket {
    pub tenant: Uuid,
    pub key: CacheKey,
    pub ttl: Duration,
    /// Semantic mode: the prompt's embedding, indexed when the answer is stored.
    pub vector: Option<Vec<f32>>,
}

impl Ticket {
    /// Stores a complete answer (see the module docs); failures are counted, never raised.
    pub async fn store(self, state: &AppState, answer: Bytes) {
        let cache = state.response_cache();
        match cache
            .put(self.tenant, &self.key.digest, answer, self.ttl)
            .await
        {
            Ok(true) => {
                if let (Some(vector), Some(semantic)) = (&self.vector, &self.key.semantic) {
                    cache.semantic().insert(
                        self.tenant,
                        semantic.bucket,
                        vector,
                        self.key.digest,
                        self.ttl,
                    );
                }
                metrics::counter!("switchyard_cache_stores_total").increment(1);
            }
            Ok(false) => {}
            Err(e) => failed("store", &e),
        }
    }
}

/// The setting that applies to this request, if any (see the module docs).
fn settings_for<'a>(
    auth: &'a AuthContext,
    tenant: &'a TenantView,
    plan: &Plan,
) -> Option<&'a CacheSettings> {
    if let Some(s) = &auth.key.cache {
        return Some(s);
    }
    if let Some(s) = auth.key.team_id.and_then(|t| tenant.team_cache(t)) {
        return Some(s);
    }
    if plan.explicit {
        return tenant.route(&plan.route).and_then(|r| r.cache.as_ref());
    }
    None
}

/// Looks the request up; a hit ends the stages. Records the status (and on a miss the ticket)
/// with the meter.
pub(crate) async fn lookup(
    state: &AppState,
    auth: &AuthContext,
    intent: &Intent<'_>,
    plan: &Plan,
    meter: &mut Meter,
) -> Option<Hit> {
    let tenant = &plan.candidates.first()?.tenant;
    let settings = settings_for(auth, tenant, plan).filter(|s| s.mode != CacheMode::Off);
    let Some(settings) = settings.filter(|_| !auth.cache_control.no_store) else {
        counted("bypass", "none");
        return None;
    };
    let tenant_id = auth.key.tenant_id;
    let semantic = settings.mode == CacheMode::Semantic;
    let key = match intent.body {
        Parsed::Chat(request) => key::chat(tenant_id, request, semantic),
        Parsed::Embeddings(request) => key::embeddings(tenant_id, request),
        Parsed::None => {
            counted("bypass", "none");
            return None;
        }
    };
    let ttl = Duration::from_secs(u64::from(settings.ttl_seconds));
    let mode = settings.mode.as_str();
    if auth.cache_control.no_cache {
        // A refresh: go upstream and replace the entry (semantic lookups embed nothing here;
        // the refreshed entry is found by exact lookups).
        counted("bypass", mode);
        meter.set_cache(
            Status::Bypass,
            Some(Ticket {
                tenant: tenant_id,
                key: CacheKey {
                    digest: key.digest,
                    semantic: None,
                },
                ttl,
                vector: None,
            }),
        );
        return None;
    }
    let cache = state.response_cache();
    match cache.get(tenant_id, &key.digest).await {
        Ok(Some(body)) => {
            counted("hit", "exact");
            meter.set_cache(Status::Hit, None);
            return Some(Hit {
                body,
                similarity: None,
            });
        }
        Ok(None) => {}
        Err(e) => {
            // Fail open: upstream, and no store into a cache that is not answering.
            failed("lookup", &e);
            counted("miss", mode);
            meter.set_cache(Status::Miss, None);
            return None;
        }
    }
    let mut vector = None;
    if let Some(semantic_key) = &key.semantic {
        match embed(state, auth, tenant, settings, &semantic_key.text).await {
            Ok(v) => {
                let nearest = cache.semantic().nearest(
                    tenant_id,
                    &semantic_key.bucket,
                    &v,
                    settings.min_similarity as f32,
                );
                if let Some(nearest) = nearest {
                    match cache.get(tenant_id, &nearest.digest).await {
                        Ok(Some(body)) => {
                            counted("hit", "semantic");
                            meter.set_cache(Status::Hit, None);
                            return Some(Hit {
                                body,
                                similarity: Some(nearest.similarity),
                            });
                        }
                        Ok(None) => {}
                        Err(e) => failed("lookup", &e),
                    }
                }
                vector = Some(v);
            }
            Err(e) => failed("embed", &e),
        }
    }
    counted("miss", mode);
    meter.set_cache(
        Status::Miss,
        Some(Ticket {
            tenant: tenant_id,
            key,
            ttl,
            vector,
        }),
    );
    None
}

fn counted(result: &'static str, mode: &'static str) {
    metrics::counter!("switchyard_cache_lookups_total", "result" => result, "mode" => mode)
        .increment(1);
}

fn failed(operation: &'static str, error: &CacheError) {
    metrics::counter!("switchyard_cache_errors_total", "operation" => operation).increment(1);
    tracing::warn!(operation, error = %error, "response cache unavailable; failing open");
}

/// The embedding of `text` through the organization's embedding deployment (see the module
/// docs), metered as its own usage event.
async fn embed(
    state: &AppState,
    auth: &AuthContext,
    tenant: &Arc<TenantView>,
    settings: &CacheSettings,
    text: &str,
) -> Result<Vec<f32>, CacheError> {
    let index =
        embedding_deployment(tenant, settings.embedding_model.as_deref()).ok_or_else(|| {
            CacheError::Embedding(
                "semantic cache: the organization has no embedding deployment".to_owned(),
            )
        })?;
    let backend = Backend::of(Arc::clone(tenant), index)
        .ok_or_else(|| CacheError::Embedding("semantic cache: stale deployment".to_owned()))?;
    let deployment = backend.deployment();
    let provider = backend
        .provider()
        .map_err(|e| CacheError::Embedding(e.to_string()))?;
    let mut start = text.len().saturating_sub(MAX_EMBED_TEXT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let request = EmbeddingsRequest {
        model: deployment.name.clone(),
        input: EmbeddingInput::Text(text[start..].to_owned()),
        encoding_format: None,
        dimensions: None,
        user: None,
        extra: Default::default(),
    };
    let request_id = RequestId::new();
    let settings_node = state.settings();
    let call = EmbedCall {
        http: state.http(),
        hops: &auth.hops,
        settings: settings_node,
        request: &request,
        upstream_model: &deployment.upstream_model,
        provider,
        request_id: request_id.id,
        deadline: Instant::now() + EMBED_TIMEOUT.min(settings_node.total_timeout()),
    };
    let mut meter = Meter::new(&request_id, auth);
    meter.set_endpoint(Meter::EMBEDDINGS);
    meter.set_model(deployment.name.clone());
    meter.set_backend(&backend);
    meter.add_tag("switchyard.purpose", "semantic_cache");
    let answer = providers::embed(&call).await;
    let (event, vector) = match answer {
        Ok(answer) => {
            let vector = first_vector(&answer.body);
            (meter.side_call(&request.input, answer.usage, None), vector)
        }
        Err(e) => {
            let message = e.to_string();
            (meter.side_call(&request.input, None, Some(e)), Err(message))
        }
    };
    super::meter::emit(state, event).await;
    vector.map_err(CacheError::Embedding)
}

/// The deployment `name` (embedding mode) or, without a name, the first embedding deployment
/// by name.
fn embedding_deployment(tenant: &TenantView, name: Option<&str>) -> Option<usize> {
    let deployments = tenant.deployments();
    let embedding = |i: &usize| deployments[*i].mode == DeploymentMode::Embedding;
    match name {
        Some(name) => tenant
            .deployments_named(name)
            .iter()
            .copied()
            .find(embedding),
        None => (0..deployments.len())
            .filter(embedding)
            .min_by(|a, b| deployments[*a].name.cmp(&deployments[*b].name)),
    }
}

/// The first vector of an OpenAI-format embeddings body (floats; base64 is never asked for).
fn first_vector(body: &[u8]) -> Result<Vec<f32>, String> {
    #[derive(serde::Deserialize)]
    struct List {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    let list: List = serde_json::from_slice(body)
        .map_err(|e| format!("semantic cache: unreadable embeddings answer: {e}"))?;
    list.data
        .into_iter()
        .next()
        .map(|i| i.embedding)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "semantic cache: the embeddings answer holds no vector".to_owned())
}
