//! `invitations`: offers to join an organization with a role. Only the SHA-256 of the one-time
//! token is stored. Pending while not accepted, not revoked and not expired.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Lowercased, like `users.email`.
    pub email: String,
    pub role: String,
    pub team_id: Option<Uuid>,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub invited_by: Uuid,
    pub expires_at: TimeDateTimeWithTimeZone,
    pub accepted_at: Option<TimeDateTimeWithTimeZone>,
    pub accepted_by: Option<Uuid>,
    pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
