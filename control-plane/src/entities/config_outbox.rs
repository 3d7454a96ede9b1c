//! `config_outbox`: committed changes waiting to be published (see `crate::sync`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "config_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `key` or `tenant`.
    pub kind: String,
    /// The api key id (kind `key`) or the tenant id (kind `tenant`), as text.
    pub ref_id: String,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
