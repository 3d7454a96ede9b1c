//! `routes`: a name clients send as `model`, resolving to a choice among the tenant's model
//! deployments (the candidates are `route_candidates` rows). `strategy` is a
//! `shared::config::RouteStrategy` wire name; `allowed_regions` and `retry_on` are JSON arrays
//! of strings; the optional settings are NULL when unset (the gateway's defaults apply).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "routes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub strategy: String,
    pub allowed_regions: Option<Json>,
    pub max_attempts: Option<i32>,
    pub retry_on: Option<Json>,
    pub connect_timeout_ms: Option<i64>,
    pub first_token_timeout_ms: Option<i64>,
    pub total_timeout_ms: Option<i64>,
    pub hedge_after_ms: Option<i64>,
    pub sticky: bool,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    /// The route's response-cache setting (migration 000060); NULL = none.
    pub cache: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The route's region policy; `None` when unset (malformed reads as empty: fail closed).
    pub fn region_policy(&self) -> Option<Vec<String>> {
        super::string_list(self.allowed_regions.as_ref())
    }

    /// The route's response-cache setting (see [`super::cache_settings`]).
    pub fn cache_settings(&self) -> Option<shared::cache::CacheSettings> {
        super::cache_settings(self.cache.as_ref())
    }
}
