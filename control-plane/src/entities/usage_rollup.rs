//! `usage_rollups`: minute/hour/day aggregates of usage per organization and dimensions (see
//! migration 000042 and `crate::rollup`). The key is `(tenant_id, grain, bucket_start,
//! dims_hash)`. Rows with `tag_key = ''` are the untagged totals; each tag of an event adds to
//! one more row with that tag.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    /// `minute`, `hour` or `day`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub grain: String,
    /// Unix seconds (UTC) of the bucket start.
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: i64,
    /// Hex hash of all dimension columns (tag included).
    #[sea_orm(primary_key, auto_increment = false)]
    pub dims_hash: String,
    pub team_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
    /// The requested model.
    pub model: String,
    pub provider: Option<String>,
    pub route: Option<String>,
    pub region: Option<String>,
    pub endpoint: String,
    /// `''` for the untagged total row.
    pub tag_key: String,
    pub tag_value: String,
    pub requests: i64,
    pub successes: i64,
    pub cache_hits: i64,
    /// Requests whose token counts were estimated.
    pub tokens_estimated: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    /// JSON object `{error_class: count}`.
    pub error_classes: String,
    /// `crate::sketch::Sketch::encode()` of latencies (ms).
    pub latency_sketch: Vec<u8>,
    /// `crate::sketch::Sketch::encode()` of times to first token (ms; streams only).
    pub ttft_sketch: Vec<u8>,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
