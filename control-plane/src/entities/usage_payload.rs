//! `usage_payloads`: the prompt and answer of a request of an organization that opted in
//! (`tenants.store_payloads`); `id` is the request id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_payloads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub started_at: TimeDateTimeWithTimeZone,
    /// The client's request body (JSON text), possibly cut.
    pub request: String,
    /// The answer's text, possibly cut.
    pub response: String,
    /// True when either side was cut.
    pub truncated: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
