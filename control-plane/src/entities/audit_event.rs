//! `audit_events`: the audit log (see `crate::audit`). `before`/`after` are JSON snapshots of
//! the object's API representation, secrets never included.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: Uuid,
    pub actor_user_id: Uuid,
    pub actor_session_id: Uuid,
    pub actor_role: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub before: Option<Json>,
    pub after: Option<Json>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
