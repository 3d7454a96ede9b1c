//! `guardrails`: an organization's prompt policies (see the migration). `scope` holds the wire
//! name of `shared::guardrails::GuardrailScope`, `scope_id` the team, key or route (NULL for the
//! organization); `pii`, `blocked_terms` and `allowed_tools` are JSON as in
//! `shared::guardrails::GuardrailRecord`.

use sea_orm::entity::prelude::*;
use shared::guardrails::{GuardrailRecord, GuardrailScope, PiiPolicy};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "guardrails")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub scope: String,
    pub scope_id: Option<Uuid>,
    pub pii: Json,
    pub blocked_terms: Json,
    pub max_prompt_tokens: Option<i64>,
    pub allowed_tools: Option<Json>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The policy as the data plane sees it; `None` for a row this version cannot read (a scope
    /// it does not know, or malformed JSON: only hand-edited data, or a newer control plane's
    /// during a rolling deploy). Publishing a guessed policy would enforce something nobody
    /// configured; the caller logs and leaves it out.
    pub fn record(&self) -> Option<GuardrailRecord> {
        let scope: GuardrailScope =
            serde_json::from_value(serde_json::Value::String(self.scope.clone())).ok()?;
        let pii: PiiPolicy = serde_json::from_value(self.pii.clone()).ok()?;
        let blocked_terms: Vec<String> = serde_json::from_value(self.blocked_terms.clone()).ok()?;
        let allowed_tools = match &self.allowed_tools {
            None => None,
            Some(v) => Some(serde_json::from_value::<Vec<String>>(v.clone()).ok()?),
        };
        Some(GuardrailRecord {
            id: self.id,
            name: self.name.clone(),
            scope,
            scope_id: self.scope_id,
            pii,
            blocked_terms,
            // Stored as bigint; the API only writes values that fit.
            max_prompt_tokens: self
                .max_prompt_tokens
                .map(|n| u32::try_from(n.max(1)).unwrap_or(u32::MAX)),
            allowed_tools,
        })
    }
}
