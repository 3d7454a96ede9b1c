//! `model_deployments`: a model name clients send, the provider serving it, and its price in
//! micro-dollars per million tokens. `catalog_id` names the catalog entry the deployment was
//! created from (its values were copied at creation; later catalog edits do not change it).
//! `context_window`, `capabilities`, `rpm_limit` and `tpm_limit` are what routing filters and
//! smooths on; NULL means unknown (never filtered on) or no quota.

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
    pub catalog_id: Option<String>,
    pub cached_input_price_micros_per_mtok: Option<i64>,
    pub max_output_tokens: Option<i64>,
    /// `chat` or `embedding`.
    pub mode: String,
    /// Tokens of prompt plus output the model accepts; NULL: unknown.
    pub context_window: Option<i64>,
    /// JSON array of capability wire names (`tools`, `vision`, `json_mode`); NULL: unknown.
    pub capabilities: Option<Json>,
    /// The provider's requests-per-minute quota for this deployment.
    pub rpm_limit: Option<i64>,
    /// The provider's tokens-per-minute quota for this deployment.
    pub tpm_limit: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The capabilities; `None` when unknown. Names this version does not know are skipped
    /// (a newer control plane may have written them during a rolling deploy).
    pub fn capability_list(&self) -> Option<Vec<shared::config::Capability>> {
        let names = super::string_list(self.capabilities.as_ref())?;
        Some(
            names
                .iter()
                .filter_map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).ok())
                .collect(),
        )
    }
}
