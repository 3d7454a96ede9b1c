//! What the control plane publishes and every data-plane node reads.
//!
//! The published state is a set of small, independently versioned records, never one big blob:
//! - one [`KeyRecord`] per API key, addressed by the key's hash;
//! - one [`TenantConfig`] per tenant: its model deployments and provider credentials (secrets
//!   still sealed, see [`crate::crypto`]).
//!
//! Each write carries a `version` taken from the database row in the same transaction as the
//! change, and a store only accepts a record whose version is higher than the one it holds, so
//! two racing publishers can never leave an older record on top of a newer one.
//!
//! After every write the publisher appends a [`ConfigChange`] to a change log (a Redis Stream) and
//! announces it on a pub/sub channel. Nodes refresh the named record on each announcement and,
//! after a reconnect or start, read the change log from the last entry they saw, so a node that
//! missed messages converges to the latest version. See [`RedisKeys`] for the key names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::cache::CacheSettings;
pub use crate::governance::{BudgetRecord, KeyEndpoint, RateLimits};
pub use crate::guardrails::GuardrailRecord;

/// An API key as the data plane needs it. Published at `{prefix}key:{key_hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: Uuid,
    /// Lowercase hex SHA-256 of the plaintext key (see [`crate::keys::hash_api_key`]).
    pub key_hash: String,
    pub tenant_id: Uuid,
    #[serde(default)]
    pub team_id: Option<Uuid>,
    pub name: String,
    /// Model names this key may call; `None` means every model of the tenant.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Set once the key is revoked. A revoked key stays published so nodes can say why they refuse it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub version: i64,
    /// The key's own requests- and tokens-per-minute limits.
    #[serde(default, skip_serializing_if = "RateLimits::is_empty")]
    pub limits: RateLimits,
    /// APIs this key may call; `None` = all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<KeyEndpoint>>,
    /// Client addresses (CIDRs) this key may be used from; `None` = anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<ipnet::IpNet>>,
    /// The most output tokens one request may ask for (and the default when it asks for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_request: Option<u32>,
    /// Tags attached to every usage event of this key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The key's response-cache setting (the most specific level: see [`crate::cache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSettings>,
}

impl KeyRecord {
    /// Whether the key may call `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(list) => list.iter().any(|m| m == model),
        }
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Which provider a credential is for, and so which wire protocol it speaks.
///
/// Wire names are a public contract (API, published records, usage events): add variants,
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// api.openai.com.
    #[serde(rename = "openai")]
    OpenAi,
    /// Any server speaking OpenAI's chat completions API, at a `base_url` you give.
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    /// Built in, deterministic, no network: echoes the last user message.
    Mock,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google Gemini (Generative Language API, `generateContent`).
    Gemini,
    /// Azure OpenAI: deployment URLs, `api-version`, `api-key` header.
    #[serde(rename = "azure_openai")]
    AzureOpenAi,
    /// AWS Bedrock Converse / ConverseStream, SigV4-signed.
    Bedrock,
    // The OpenAI-compatible family: the OpenAI adapter with a per-provider preset.
    Mistral,
    Groq,
    #[serde(rename = "deepseek")]
    DeepSeek,
    Together,
    Fireworks,
    Xai,
    #[serde(rename = "openrouter")]
    OpenRouter,
    Vllm,
    Ollama,
    #[serde(rename = "llamacpp")]
    LlamaCpp,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 17] = [
        ProviderKind::OpenAi,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Mock,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::AzureOpenAi,
        ProviderKind::Bedrock,
        ProviderKind::Mistral,
        ProviderKind::Groq,
        ProviderKind::DeepSeek,
        ProviderKind::Together,
        ProviderKind::Fireworks,
        ProviderKind::Xai,
        ProviderKind::OpenRouter,
        ProviderKind::Vllm,
        ProviderKind::Ollama,
        ProviderKind::LlamaCpp,
    ];

    /// The wire name, as in the API and in usage events.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Mock => "mock",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::AzureOpenAi => "azure_openai",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Mistral => "mistral",
            ProviderKind::Groq => "groq",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Together => "together",
            ProviderKind::Fireworks => "fireworks",
            ProviderKind::Xai => "xai",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::Vllm => "vllm",
            ProviderKind::Ollama => "ollama",
            ProviderKind::LlamaCpp => "llamacpp",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The base URL used when a credential gives none. `None` means a `base_url` is required
    /// (self-hosted servers, Azure's per-resource endpoint) or not used (mock, Bedrock, whose
    /// endpoint follows from its region).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com/v1"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::Mistral => Some("https://api.mistral.ai/v1"),
            ProviderKind::Groq => Some("https://api.groq.com/openai/v1"),
            ProviderKind::DeepSeek => Some("https://api.deepseek.com/v1"),
            ProviderKind::Together => Some("https://api.together.xyz/v1"),
            ProviderKind::Fireworks => Some("https://api.fireworks.ai/inference/v1"),
            ProviderKind::Xai => Some("https://api.x.ai/v1"),
            ProviderKind::OpenRouter => Some("https://openrouter.ai/api/v1"),
            ProviderKind::Vllm => Some("http://localhost:8000/v1"),
            ProviderKind::Ollama => Some("http://localhost:11434/v1"),
            ProviderKind::LlamaCpp => Some("http://localhost:8080/v1"),
            ProviderKind::OpenAiCompatible
            | ProviderKind::Mock
            | ProviderKind::AzureOpenAi
            | ProviderKind::Bedrock => None,
        }
    }

    /// Whether the provider speaks OpenAI's chat completions wire format (the OpenAI adapter,
    /// possibly with a preset), so unknown request fields can be passed through verbatim.
    pub fn is_openai_family(self) -> bool {
        !matches!(
            self,
            ProviderKind::Mock
                | ProviderKind::Anthropic
                | ProviderKind::Gemini
                | ProviderKind::Bedrock
        )
    }
}

/// A provider credential as published: the API key is sealed with the master key, with the
/// provider's id (as a string) as associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub id: Uuid,
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_sealed: Option<String>,
    /// Non-secret, kind-specific settings, e.g. Azure `api_version`; Bedrock `region` and
    /// `access_key_id` (its secret access key is the sealed `api_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A model deployment: the name clients send, and where and at what price it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: Uuid,
    /// The model name clients send (`"model": "…"`).
    pub name: String,
    pub provider_id: Uuid,
    /// The model id sent to the provider.
    pub upstream_model: String,
    /// µ$ per million prompt tokens.
    pub input_price_micros_per_mtok: i64,
    /// µ$ per million completion tokens.
    pub output_price_micros_per_mtok: i64,
    #[serde(default)]
    pub region: Option<String>,
    /// µ$ per million prompt tokens read from the provider's prompt cache; `None` = the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_price_micros_per_mtok: Option<i64>,
    /// The model's output limit, used where a provider requires `max_tokens` (Anthropic) and
    /// the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// The catalog entry this deployment was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// Which API the model serves; a chat request for an embedding model (or the reverse) is
    /// refused by the gateway instead of failing at the provider.
    #[serde(default)]
    pub mode: DeploymentMode,
    /// The model's context window in tokens (prompt plus output); `None` = unknown, never
    /// filtered on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// What the model can do (`tools`, `vision`, `json_mode`, …, see [`Capability`]); `None` =
    /// unknown, never filtered on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// The provider's requests-per-minute quota for this deployment, which nodes keep under
    /// together (quota smoothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u32>,
    /// The provider's tokens-per-minute quota for this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
}

/// A capability a request may need from a deployment's model. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Function / tool calling.
    Tools,
    /// Image input.
    Vision,
    /// `response_format` JSON mode / structured outputs.
    JsonMode,
}

/// A route: a name clients send as `model`, resolving to an ordered choice among the tenant's
/// deployments. A route shadows a deployment of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub id: Uuid,
    pub name: String,
    pub strategy: RouteStrategy,
    pub candidates: Vec<RouteCandidate>,
    /// Region entries this route may use (see [`region_allows`]); `None` = no route-level pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_regions: Option<Vec<String>>,
    /// Most attempts (first try included) across candidates; `None` = the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Error classes that move on to the next attempt; `None` = the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<RetryClass>>,
    #[serde(default)]
    pub timeouts: RouteTimeouts,
    /// Opt-in hedging: after this long without an answer, also try the next candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge_after_ms: Option<u64>,
    /// Weighted routing keeps one user (the request's `user`, or `x-switchyard-sticky-key`) on
    /// one deployment.
    #[serde(default)]
    pub sticky: bool,
    /// The route's response-cache setting (the least specific level: see [`crate::cache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSettings>,
}

/// One deployment a route may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCandidate {
    pub deployment_id: Uuid,
    /// For `weighted`: the relative share (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// For `priority`: lower goes first (default: the list order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// How a route orders its candidates; whatever the strategy, the candidates not chosen first
/// form the fallback order. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStrategy {
    /// In priority order.
    Priority,
    /// Split by weights.
    Weighted,
    /// Lowest expected cost for this request's prompt and max output.
    Cheapest,
    /// Lowest recent time to first token.
    Fastest,
    /// Highest recent success rate.
    Reliable,
    /// Fewest requests in flight.
    LeastBusy,
}

/// A class of upstream failure, for `retry_on` and the attempts recorded in usage events.
/// Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryClass {
    RateLimited,
    ServerError,
    Timeout,
    Connection,
    ContextLengthExceeded,
    ContentFilter,
}

/// Per-route timeouts, each overriding the gateway's default when set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
}

/// Whether a region-policy `entry` allows a deployment in `region`: equal, or `entry` followed
/// by `-` starts it (`eu` allows `eu-west-1`, not `europe-1`). Case-insensitive.
pub fn region_allows(entry: &str, region: &str) -> bool {
    let (entry, region) = (entry.trim(), region.trim());
    if entry.is_empty() || region.len() < entry.len() {
        return false;
    }
    let (head, rest) = region.split_at(entry.len());
    head.eq_ignore_ascii_case(entry) && (rest.is_empty() || rest.starts_with('-'))
}

/// Which API a deployment's model serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentMode {
    /// Chat completions (and Anthropic messages).
    #[default]
    Chat,
    /// Embeddings.
    Embedding,
}

impl DeploymentMode {
    /// The wire name (`chat`, `embedding`), as stored by the control plane.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentMode::Chat => "chat",
            DeploymentMode::Embedding => "embedding",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(DeploymentMode::Chat),
            "embedding" => Some(DeploymentMode::Embedding),
            _ => None,
        }
    }
}

/// Everything about one tenant that the data plane needs. Published at `{prefix}tenant:{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConfig {
    pub tenant_id: Uuid,
    pub version: i64,
    #[serde(default)]
    pub deployments: Vec<DeploymentRecord>,
    #[serde(default)]
    pub providers: Vec<ProviderRecord>,
    /// The tenant's routes (see [`RouteRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRecord>,
    /// The tenant's region policy; `None` = unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_regions: Option<Vec<String>>,
    /// Region policies of the tenant's teams that have one, by team id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub team_regions: BTreeMap<Uuid, Vec<String>>,
    /// The tenant's budgets, of every scope (see [`BudgetRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetRecord>,
    /// The tenant-wide rate limits.
    #[serde(default, skip_serializing_if = "RateLimits::is_empty")]
    pub limits: RateLimits,
    /// Rate limits of the tenant's teams that have some, by team id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub team_limits: BTreeMap<Uuid, RateLimits>,
    /// Set while the organization is suspended (billing): every request is refused with 402
    /// `organization_suspended` and this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
    /// The organization opted in to storing prompts and completions with its usage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_payloads: bool,
    /// Response-cache settings of the tenant's teams that have one, by team id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub team_cache: BTreeMap<Uuid, CacheSettings>,
    /// The tenant's guardrail policies, of every scope (see [`crate::guardrails`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<GuardrailRecord>,
}

/// Why and how an organization is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: SuspensionReason,
    /// Shown to API callers: what happened and how to fix it.
    pub message: String,
}

/// Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionReason {
    /// A payment failed and the grace period passed.
    PaymentFailed,
    /// The free plan's included credit is spent.
    CreditExhausted,
    /// An operator suspended it.
    Manual,
}

/// Which kind of record a change names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// `id` is a key hash.
    Key,
    /// `id` is a tenant id.
    Tenant,
    /// Everything may have changed (e.g. a full resync): drop all cached records.
    All,
}

/// One entry of the change log, also the payload of each pub/sub announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub kind: ChangeKind,
    pub id: String,
    pub version: i64,
    /// The change log (Redis Stream) entry id, e.g. `1732233600000-0`; empty in-process.
    #[serde(default)]
    pub seq: String,
}

/// Names of everything Switchyard keeps in Redis, under one configurable prefix so several
/// deployments (or test runs) can share a Redis without colliding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    /// Default prefix when none is configured.
    pub const DEFAULT_PREFIX: &'static str = "switchyard:";
    /// Consumer group of the control plane on the usage stream.
    pub const USAGE_GROUP: &'static str = "control-plane";
    /// Approximate length the change log is trimmed to. A node that falls further behind than
    /// this drops its whole cache instead of replaying.
    pub const CHANGES_MAXLEN: usize = 100_000;

    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// String: JSON [`KeyRecord`].
    pub fn key(&self, key_hash: &str) -> String {
        format!("{}key:{key_hash}", self.prefix)
    }

    /// String: JSON [`TenantConfig`].
    pub fn tenant(&self, tenant_id: Uuid) -> String {
        format!("{}tenant:{tenant_id}", self.prefix)
    }

    /// Stream: the change log, one entry per published record, field `change` = JSON [`ConfigChange`].
    pub fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// Pub/sub channel: JSON [`ConfigChange`] announcements (with `seq` set).
    pub fn channel(&self) -> String {
        format!("{}config", self.prefix)
    }

    /// Stream: usage events, field `event` = JSON [`crate::usage::UsageEvent`].
    pub fn usage(&self) -> String {
        format!("{}usage", self.prefix)
    }

    /// The start of every governance key of one organization: `{prefix}{<tenant_id>}:`. The
    /// braces are a Redis Cluster hash tag, so one organization's limit and budget keys share a
    /// slot and one script may touch them all.
    pub fn org(&self, tenant_id: Uuid) -> String {
        format!("{}{{{tenant_id}}}:", self.prefix)
    }

    /// Hash: the ledger of one budget window (`spent`, `held`, one `l:<node>` field per lease).
    pub fn budget(&self, tenant_id: Uuid, budget_id: Uuid, window_id: i64) -> String {
        format!("{}budget:{budget_id}:{window_id}", self.org(tenant_id))
    }

    /// Sorted set: lease holders of one budget window, scored by lease expiry (ms).
    pub fn budget_leases(&self, tenant_id: Uuid, budget_id: Uuid, window_id: i64) -> String {
        format!(
            "{}budget:{budget_id}:{window_id}:leases",
            self.org(tenant_id)
        )
    }

    /// Hash: a sliding-minute rate-limit counter of one level (`key`, `team`, `tenant`) and
    /// metric (`rpm`, `tpm`).
    pub fn rate(&self, tenant_id: Uuid, level: &str, id: Uuid, metric: &str) -> String {
        format!("{}rl:{level}:{id}:{metric}", self.org(tenant_id))
    }

    /// String: one response-cache entry of an organization, by the hex digest of its canonical
    /// request (see the data plane's `response_cache`). Under the organization's hash tag, so
    /// entries never share a name across organizations.
    pub fn response_cache(&self, tenant_id: Uuid, digest: &str) -> String {
        format!("{}cache:{digest}", self.org(tenant_id))
    }
}

impl Default for RedisKeys {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn region_entries_match_exactly_or_as_a_dash_prefix() {
        let cases = [
            ("eu", "eu", true),
            ("eu", "eu-west-1", true),
            ("EU", "eu-west-1", true),
            ("eu-west", "eu-west-1", true),
            ("eu-west-1", "eu-west-1", true),
            ("eu", "europe-1", false),
            ("eu-west-1", "eu-west", false),
            ("us", "eu-west-1", false),
            ("", "eu", false),
        ];
        for (entry, region, want) in cases {
            assert_eq!(region_allows(entry, region), want, "{entry} / {region}");
        }
    }

    #[test]
    fn tenant_configs_without_routes_or_regions_still_parse() {
        let old = r#"{"tenant_id":"00000000-0000-0000-0000-000000000001","version":3,"deployments":[],"providers":[]}"#;
        let parsed: TenantConfig = serde_json::from_str(old).expect("an older record parses");
        assert!(parsed.routes.is_empty());
        assert_eq!(parsed.allowed_regions, None);
        assert!(parsed.team_regions.is_empty());
        // And nothing new is written for a tenant that uses none of it.
        let json = serde_json::to_string(&parsed).expect("serializes");
        assert!(
            !json.contains("routes") && !json.contains("regions"),
            "{json}"
        );
    }

    #[test]
    fn every_kind_parses_back_from_its_wire_name() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(ProviderKind::parse("nope"), None);
    }

    #[test]
    fn provider_kind_wire_names() {
        for (k, s) in [
            (ProviderKind::OpenAi, "\"openai\""),
            (ProviderKind::OpenAiCompatible, "\"openai_compatible\""),
            (ProviderKind::Mock, "\"mock\""),
        ] {
            assert_eq!(serde_json::to_string(&k).ok().as_deref(), Some(s));
            assert_eq!(format!("\"{}\"", k.as_str()), s);
        }
    }

    #[test]
    fn key_record_checks() {
        let now = OffsetDateTime::now_utc();
        let mut k = KeyRecord {
            key_id: Uuid::nil(),
            key_hash: "h".into(),
            tenant_id: Uuid::nil(),
            team_id: None,
            name: "k".into(),
            allowed_models: Some(vec!["a".into()]),
            expires_at: Some(now - time::Duration::seconds(1)),
            revoked_at: None,
            version: 1,
            limits: RateLimits::default(),
            endpoints: None,
            allowed_cidrs: None,
            max_tokens_per_request: None,
            metadata: BTreeMap::new(),
            cache: None,
        };
        assert!(k.allows_model("a"));
        assert!(!k.allows_model("b"));
        assert!(k.is_expired(now));
        k.expires_at = None;
        k.allowed_models = None;
        assert!(!k.is_expired(now));
        assert!(k.allows_model("b"));
        let json = serde_json::to_string(&k).expect("serializes");
        let back: KeyRecord = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, k);
    }
}
