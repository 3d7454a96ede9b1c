//! `usage_records`: one row per data-plane request; `id` is the usage event id.
//!
//! On PostgreSQL the table is partitioned by day on `started_at` and its primary key is
//! `(id, started_at)`; the entity keeps `id` alone as its key (ids are unique, and SQLite's key
//! is `id`), so `find_by_id(id)` works on both. Inserts go through `crate::usage_store`, which
//! creates the partitions first.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub key_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub model: String,
    pub deployment_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub endpoint: String,
    pub stream: bool,
    pub status: i32,
    pub outcome: String,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub tokens_estimated: bool,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub started_at: TimeDateTimeWithTimeZone,
    pub created_at: TimeDateTimeWithTimeZone,
    /// Of `prompt_tokens`, how many were read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`, how many were written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    // Issue 11 (migration 000040).
    /// The route the request named.
    pub route: Option<String>,
    /// Region of the deployment that served (or was tried last).
    pub region: Option<String>,
    /// `shared::usage::error_class` of a failure; NULL on success.
    pub error_class: Option<String>,
    /// Answered from the gateway's response cache.
    pub cache_hit: bool,
    /// 1 + the failed attempts.
    pub attempts: i32,
    /// JSON array of `shared::usage::FailedAttempt`; NULL when there were none.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub failed_attempts: Option<Json>,
    /// JSON object of the request's tags; NULL when none.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub tags: Option<Json>,
    /// JSON array of `shared::usage::GuardrailDecision` (migration 000062); NULL when the
    /// guardrail that applied decided nothing (or none applied).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub guardrails: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
