//! `api_keys`: virtual keys. Only the SHA-256 (`key_hash`) is stored; `version` versions the
//! published `KeyRecord`. `allowed_models` is a JSON array of model names, or NULL for all.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub team_id: Option<Uuid>,
    pub name: String,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub display_prefix: String,
    pub allowed_models: Option<Json>,
    pub expires_at: Option<TimeDateTimeWithTimeZone>,
    pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    pub version: i64,
    pub created_by: Uuid,
    pub created_at: TimeDateTimeWithTimeZone,
    // Governance (migration 000035).
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// JSON array of endpoint wire names (`chat`, `messages`, `embeddings`); NULL = all.
    pub endpoints: Option<Json>,
    /// JSON array of CIDRs; NULL = any client address.
    pub allowed_cidrs: Option<Json>,
    pub max_tokens_per_request: Option<i64>,
    /// JSON object of string tags; NULL = none.
    pub metadata: Option<Json>,
    pub last_used_at: Option<TimeDateTimeWithTimeZone>,
    pub rotated_at: Option<TimeDateTimeWithTimeZone>,
    /// SHA-256 of the secret before the last rotation, accepted until `previous_expires_at`.
    pub previous_key_hash: Option<String>,
    pub previous_expires_at: Option<TimeDateTimeWithTimeZone>,
    /// The key's response-cache setting (`shared::cache::CacheSettings` as JSON, migration
    /// 000060); NULL = none (the team's or route's applies).
    pub cache: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The allowed model names, or `None` when the key may call every model. A malformed value
    /// (never written by us) is read as "no model allowed" rather than "all models": fail closed.
    pub fn allowed_model_names(&self) -> Option<Vec<String>> {
        self.allowed_models
            .as_ref()
            .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
    }

    /// The key's own rate limits.
    pub fn rate_limits(&self) -> shared::governance::RateLimits {
        super::rate_limits(self.rpm_limit, self.tpm_limit)
    }

    /// The endpoints the key may call; `None` = all. A malformed value (never written by us)
    /// reads as an empty list, which allows nothing: fail closed.
    pub fn endpoint_list(&self) -> Option<Vec<shared::governance::KeyEndpoint>> {
        self.endpoints
            .as_ref()
            .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
    }

    /// The client networks the key may be used from; `None` = anywhere. Malformed: none
    /// (fail closed).
    pub fn cidr_list(&self) -> Option<Vec<ipnet::IpNet>> {
        self.allowed_cidrs
            .as_ref()
            .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
    }

    /// The key's response-cache setting (see [`super::cache_settings`]).
    pub fn cache_settings(&self) -> Option<shared::cache::CacheSettings> {
        super::cache_settings(self.cache.as_ref())
    }

    /// The key's tags (empty when none).
    pub fn metadata_map(&self) -> std::collections::BTreeMap<String, String> {
        self.metadata
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}
