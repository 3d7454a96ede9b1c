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

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

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

/// Which wire protocol a provider credential speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// api.openai.com.
    #[serde(rename = "openai")]
    OpenAi,
    /// Any server speaking OpenAI's chat completions API: vLLM, Ollama, llama.cpp, Groq, …
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    /// Built in, deterministic, no network: echoes the last user message.
    Mock,
}

impl ProviderKind {
    /// The wire name, as in the API and in usage events.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Mock => "mock",
        }
    }

    /// The base URL used when a credential gives none.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::OpenAiCompatible | ProviderKind::Mock => None,
        }
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
