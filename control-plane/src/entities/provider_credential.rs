//! `provider_credentials`: where a tenant's models run. `api_key_sealed` is sealed with the
//! master key (`shared::crypto`), never plaintext (for Bedrock it is the secret access key).
//! `options` is a JSON object of non-secret, kind-specific strings (Azure `api_version`,
//! Bedrock `region` and `access_key_id`), or NULL.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provider_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key_sealed: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub options: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The non-secret options. A malformed value (never written by us) reads as none.
    pub fn option_map(&self) -> std::collections::BTreeMap<String, String> {
        self.options
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}
