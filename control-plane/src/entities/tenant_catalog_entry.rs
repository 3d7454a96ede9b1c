//! `tenant_catalog_entries`: a tenant's own model catalog entries, keyed by `(tenant_id, id)`.
//! An entry whose id equals a built-in one replaces it for that tenant only.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_catalog_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// A provider kind wire name.
    pub provider: String,
    pub upstream_model: String,
    pub display_name: String,
    /// `chat` or `embedding`.
    pub mode: String,
    pub context_window: i64,
    pub max_output_tokens: Option<i64>,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    pub cached_input_price_micros_per_mtok: Option<i64>,
    pub supports_tools: bool,
    pub supports_vision: bool,
    pub supports_json_mode: bool,
    pub supports_embeddings: bool,
    pub supports_streaming: bool,
    pub source: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
