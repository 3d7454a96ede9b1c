//! `budget_alerts`: one row per threshold a budget crossed in one window (unique on budget,
//! window start, threshold). Ids are UUIDv7, so id order is creation order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub budget_id: Uuid,
    /// The window's start, Unix seconds.
    pub window_start: i64,
    pub threshold: i32,
    pub spent_micros: i64,
    pub limit_micros: i64,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
