//! `model_deployments`: a model name clients send, the provider serving it, and its price in
//! micro-dollars per million tokens. `catalog_id` names the catalog entry the deployment was
//! created from (its values were copied at creation; later catalog edits do not change it).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "model_deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub provider_id: Uuid,
    pub upstream_model: String,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    pub region: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub catalog_id: Option<String>,
    pub cached_input_price_micros_per_mtok: Option<i64>,
    pub max_output_tokens: Option<i64>,
    /// `chat` or `embedding`.
    pub mode: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
