//! `api_keys`: virtual keys. Only the SHA-256 (`key_hash`) is stored; `version` versions the
//! published `KeyRecord`. `allowed_models` is a JSON array of model names, or NULL for all.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub team_id: Option<Uuid>,
    pub name: String,
    #[sea_orm(unique)]
    pub key_hash: String,
    pub display_prefix: String,
    pub allowed_models: Option<Json>,
    pub expires_at: Option<TimeDateTimeWithTimeZone>,
    pub revoked_at: Option<TimeDateTimeWithTimeZone>,
    pub version: i64,
    pub created_by: Uuid,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The allowed model names, or `None` when the key may call every model. A malformed value
    /// (never written by us) is read as "no model allowed" rather than "all models": fail closed.
    pub fn allowed_model_names(&self) -> Option<Vec<String>> {
        self.allowed_models
            .as_ref()
            .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
    }
}
