//! `teams`: groups of keys inside a tenant. `allowed_regions` is the team's region policy (a
//! JSON array of region entries, or NULL for none); it applies to requests with the team's keys.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "teams")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at: TimeDateTimeWithTimeZone,
    pub allowed_regions: Option<Json>,
    // Rate limits (migration 000036); NULL = none.
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// The team's response-cache setting (migration 000060); NULL = none.
    pub cache: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The region policy; `None` when unset. A malformed value (never written by us) reads as
    /// an empty list, which allows no region: fail closed.
    pub fn region_policy(&self) -> Option<Vec<String>> {
        super::string_list(self.allowed_regions.as_ref())
    }

    /// The team's response-cache setting (see [`super::cache_settings`]).
    pub fn cache_settings(&self) -> Option<shared::cache::CacheSettings> {
        super::cache_settings(self.cache.as_ref())
    }

    /// The team's rate limits (over all its keys).
    pub fn rate_limits(&self) -> shared::governance::RateLimits {
        super::rate_limits(self.rpm_limit, self.tpm_limit)
    }
}
