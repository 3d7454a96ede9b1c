//! `budgets`: spending caps of an organization, a team or a key (see the migration). `scope`
//! and `period` hold the wire names of `shared::governance::{BudgetScope, BudgetPeriod}`;
//! `alert_thresholds` a JSON array of percentages.

use sea_orm::entity::prelude::*;
use shared::governance::{BudgetPeriod, BudgetRecord, BudgetScope};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budgets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub scope: String,
    pub scope_id: Uuid,
    pub limit_micros: i64,
    pub period: String,
    pub timezone: String,
    pub hard: bool,
    pub alert_thresholds: Json,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The thresholds as stored; a malformed value (never written by us) reads as none.
    pub fn thresholds(&self) -> Vec<u32> {
        serde_json::from_value(self.alert_thresholds.clone()).unwrap_or_default()
    }

    /// The budget as the data plane sees it; `None` for a scope or period this version does not
    /// know (only hand-edited data).
    pub fn record(&self) -> Option<BudgetRecord> {
        Some(BudgetRecord {
            id: self.id,
            scope: BudgetScope::parse(&self.scope)?,
            scope_id: self.scope_id,
            limit_micros: self.limit_micros,
            period: BudgetPeriod::parse(&self.period)?,
            timezone: self.timezone.clone(),
            hard: self.hard,
            alert_thresholds: self.thresholds(),
        })
    }
}
