//! sea-orm entities, one per table (see the `migrations` crate for the schema and why it looks
//! the way it does). They are database rows only: the HTTP layer has its own DTOs, so a column
//! such as `key_hash` or `password_hash` can never leak into a response by accident.

pub mod alert_delivery;
pub mod api_key;
pub mod audit_event;
pub mod billing_report;
pub mod budget;
pub mod budget_alert;
pub mod config_outbox;
pub mod guardrail;
pub mod invitation;
pub mod membership;
pub mod model_deployment;
pub mod provider_credential;
pub mod refresh_token;
pub mod route;
pub mod route_candidate;
pub mod session;
pub mod stripe_event;
pub mod team;
pub mod team_member;
pub mod tenant;
pub mod tenant_catalog_entry;
pub mod usage_payload;
pub mod usage_record;
pub mod usage_rollup;
pub mod user;

/// A JSON array of strings as stored in a nullable JSON column: `None` for NULL, and an empty
/// list for a malformed value (never written by this code), so a policy column fails closed.
pub(crate) fn string_list(value: Option<&sea_orm::prelude::Json>) -> Option<Vec<String>> {
    value.map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
}

/// A response-cache setting as stored in a nullable JSON column (`cache` of keys, teams and
/// routes): `None` for NULL. A malformed value (never written by this code) reads as mode
/// `off`, which switches caching off at that level rather than letting a broader setting, or
/// a guessed one, answer from the cache.
pub(crate) fn cache_settings(
    value: Option<&sea_orm::prelude::Json>,
) -> Option<shared::cache::CacheSettings> {
    value.map(|v| {
        serde_json::from_value(v.clone()).unwrap_or(shared::cache::CacheSettings {
            mode: shared::cache::CacheMode::Off,
            ttl_seconds: shared::cache::DEFAULT_TTL_SECONDS,
            min_similarity: shared::cache::DEFAULT_MIN_SIMILARITY,
            embedding_model: None,
        })
    })
}

/// Stored rate limits (bigint columns) as published. The API only writes values that fit; a
/// value that does not (hand-edited) reads as the tightest limit rather than none.
pub(crate) fn rate_limits(rpm: Option<i64>, tpm: Option<i64>) -> shared::governance::RateLimits {
    shared::governance::RateLimits {
        rpm_limit: rpm.map(|n| u32::try_from(n).unwrap_or(0)),
        tpm_limit: tpm.map(|n| u64::try_from(n).unwrap_or(0)),
    }
}
