//! `tenants`: organizations. `config_version` versions the published `TenantConfig`.
//! `allowed_regions` is the organization's region policy: a JSON array of region entries, or
//! NULL for none.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub config_version: i64,
    pub created_at: TimeDateTimeWithTimeZone,
    pub allowed_regions: Option<Json>,
    /// Where budget alerts are POSTed; NULL: nowhere.
    pub alert_webhook_url: Option<String>,
    /// The webhook signing secret, sealed with the master key (bound to the tenant id).
    pub alert_webhook_secret: Option<String>,
    // Rate limits (migration 000036); NULL = none.
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    // Usage storage (migration 000044).
    /// Days raw usage rows and payloads are kept; NULL = the server default.
    pub usage_retention_days: Option<i32>,
    /// Whether prompts and answers are stored in `usage_payloads`.
    pub store_payloads: bool,
    // Billing (migration 000050; see `crate::billing`). NULL plan = the configured default.
    pub plan: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub subscription_status: Option<String>,
    pub payment_failed_at: Option<TimeDateTimeWithTimeZone>,
    pub suspended_at: Option<TimeDateTimeWithTimeZone>,
    pub suspension_reason: Option<String>,
    pub suspension_message: Option<String>,
    /// The usage reporter's claim (Unix ms).
    pub billing_claimed_until: Option<i64>,
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

    /// The organization's rate limits (over all its keys).
    pub fn rate_limits(&self) -> shared::governance::RateLimits {
        super::rate_limits(self.rpm_limit, self.tpm_limit)
    }
}
