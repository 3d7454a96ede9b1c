//! `model_deployments`: a model name clients send, the provider serving it, and its price in
//! micro-dollars per million tokens.

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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
