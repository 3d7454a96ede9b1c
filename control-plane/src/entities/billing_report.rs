//! `billing_reports`: one row per Billing Meter Event sent (or about to be sent) to Stripe for
//! an organization's hour window; unique on (tenant, window start, sequence). `reported_at` is
//! NULL until Stripe accepted it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "billing_reports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Unix seconds.
    pub window_start: i64,
    pub window_end: i64,
    /// 0: the window's first report; 1..: corrections.
    pub sequence: i32,
    /// Billed micro-dollars this event adds.
    pub quantity: i64,
    /// Provider cost (micro-dollars) this event adds.
    pub cost_micros: i64,
    pub idempotency_key: String,
    pub identifier: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub reported_at: Option<TimeDateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
