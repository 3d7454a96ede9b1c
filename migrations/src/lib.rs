//! Database schema of the control plane, as sea-orm migrations.
//!
//! The same migrations run on PostgreSQL (production) and SQLite (the zero-setup default), so
//! they are written with the schema builder only, never raw SQL (one exception: PostgreSQL's
//! partitioning of usage_records in 000041, which the builder cannot express). One migration per file, named
//! `mYYYYMMDD_NNNNNN_what.rs` (`DeriveMigrationName` takes the name from the file name). A
//! migration that has been applied anywhere is never edited: add a new one.
//!
//! # Layout
//! - tenants, users, memberships: who may sign in and to which organization, with which role.
//! - teams, api_keys: the virtual keys the data plane authenticates.
//! - provider_credentials, model_deployments: where models run and what they cost
//!   (provider `options` hold non-secret per-kind settings; deployments remember the catalog
//!   entry they came from, and carry their context window, capabilities and provider quotas).
//! - routes, route_candidates: names clients send as `model` that choose among deployments
//!   (strategy, retries, timeouts); candidates are rows with a foreign key to the deployment.
//! - tenants.allowed_regions, teams.allowed_regions: region policies (JSON arrays, NULL = none).
//! - tenant_catalog_entries: a tenant's additions to and overrides of the built-in model
//!   catalog.
//! - usage_records: one row per data-plane request (the id is the usage event id).
//! - sessions, refresh_tokens: sign-in sessions (access tokens name their session, so logout
//!   cuts them off at once) and their rotating refresh tokens (only their SHA-256 is stored).
//! - invitations: pending offers to join an organization, accepted by the invitee (one-time
//!   token, stored as SHA-256 only).
//! - budgets, budget_alerts, alert_deliveries, tenants.alert_webhook_*: spending caps, the
//!   thresholds they crossed (once per window), and the signed webhooks queued for them.
//! - config_outbox: committed changes waiting to be published to the data plane.
//! - governance (000035–000038): key limits, scopes, metadata, rotation and `last_used_at`;
//!   team and organization rate limits; team_members; audit_events.
//! - usage storage (000040–000044): usage_records gain route, region, error class, cache hit,
//!   attempts and tags, and on PostgreSQL become partitioned by day (`usage_records_pYYYYMMDD`);
//!   usage_rollups (minute/hour/day aggregates with latency sketches); usage_payloads (opt-in
//!   prompts and answers); tenants.usage_retention_days and tenants.store_payloads.
//! - billing (000050–000059): tenants' plan, Stripe customer/subscription and suspension;
//!   stripe_events (webhook idempotency); billing_reports (metered usage sent to Stripe).
//! - caching and guardrails (000060–000069): `cache` (a response-cache setting, JSON, NULL =
//!   none) on api_keys, teams and routes; guardrails (prompt policies per organization, team,
//!   key or route; one per scope object); usage_records.guardrails (the decisions of a request).
//!
//! Timestamps are `timestamp with time zone` (stored as RFC 3339 text on SQLite). Usage records
//! carry no foreign keys on purpose: they are an append-only ledger written from events, and a
//! constraint failure there would wedge ingestion.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_tenants;
mod m20261121_000002_create_users;
mod m20261121_000003_create_memberships;
mod m20261121_000004_create_teams;
mod m20261121_000005_create_api_keys;
mod m20261121_000006_create_provider_credentials;
mod m20261121_000007_create_model_deployments;
mod m20261121_000008_create_usage_records;
mod m20261121_000009_create_refresh_tokens;
mod m20261121_000010_create_config_outbox;
mod m20261201_000011_add_provider_options;
mod m20261201_000012_add_model_deployment_catalog_fields;
mod m20261201_000013_add_usage_cache_tokens;
mod m20261201_000014_create_tenant_catalog_entries;
mod m20261206_000015_create_sessions;
mod m20261206_000016_add_refresh_token_session;
mod m20261206_000017_create_invitations;
mod m20261206_000025_add_region_policies;
mod m20261206_000026_add_model_deployment_limits;
mod m20261206_000027_create_routes;
mod m20261206_000030_create_budgets;
mod m20261206_000031_create_budget_alerts;
mod m20261206_000032_create_alert_deliveries;
mod m20261206_000033_add_tenant_alert_webhook;
mod m20261206_000035_add_api_key_governance;
mod m20261206_000036_add_team_tenant_rate_limits;
mod m20261206_000037_create_team_members;
mod m20261206_000038_create_audit_events;
mod m20261206_000040_add_usage_record_dimensions;
mod m20261206_000041_partition_usage_records;
mod m20261206_000042_create_usage_rollups;
mod m20261206_000043_create_usage_payloads;
mod m20261206_000044_add_tenant_usage_settings;
mod m20261206_000050_add_tenant_billing;
mod m20261206_000051_create_stripe_events;
mod m20261206_000052_create_billing_reports;
mod m20261206_000060_add_cache_settings;
mod m20261206_000061_create_guardrails;
mod m20261206_000062_add_usage_guardrails;

/// Every migration, in order. Run with `Migrator::up(&db, None)`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_tenants::Migration),
            Box::new(m20261121_000002_create_users::Migration),
            Box::new(m20261121_000003_create_memberships::Migration),
            Box::new(m20261121_000004_create_teams::Migration),
            Box::new(m20261121_000005_create_api_keys::Migration),
            Box::new(m20261121_000006_create_provider_credentials::Migration),
            Box::new(m20261121_000007_create_model_deployments::Migration),
            Box::new(m20261121_000008_create_usage_records::Migration),
            Box::new(m20261121_000009_create_refresh_tokens::Migration),
            Box::new(m20261121_000010_create_config_outbox::Migration),
            Box::new(m20261201_000011_add_provider_options::Migration),
            Box::new(m20261201_000012_add_model_deployment_catalog_fields::Migration),
            Box::new(m20261201_000013_add_usage_cache_tokens::Migration),
            Box::new(m20261201_000014_create_tenant_catalog_entries::Migration),
            Box::new(m20261206_000015_create_sessions::Migration),
            Box::new(m20261206_000016_add_refresh_token_session::Migration),
            Box::new(m20261206_000017_create_invitations::Migration),
            Box::new(m20261206_000025_add_region_policies::Migration),
            Box::new(m20261206_000026_add_model_deployment_limits::Migration),
            Box::new(m20261206_000027_create_routes::Migration),
            Box::new(m20261206_000030_create_budgets::Migration),
            Box::new(m20261206_000031_create_budget_alerts::Migration),
            Box::new(m20261206_000032_create_alert_deliveries::Migration),
            Box::new(m20261206_000033_add_tenant_alert_webhook::Migration),
            Box::new(m20261206_000035_add_api_key_governance::Migration),
            Box::new(m20261206_000036_add_team_tenant_rate_limits::Migration),
            Box::new(m20261206_000037_create_team_members::Migration),
            Box::new(m20261206_000038_create_audit_events::Migration),
            Box::new(m20261206_000040_add_usage_record_dimensions::Migration),
            Box::new(m20261206_000041_partition_usage_records::Migration),
            Box::new(m20261206_000042_create_usage_rollups::Migration),
            Box::new(m20261206_000043_create_usage_payloads::Migration),
            Box::new(m20261206_000044_add_tenant_usage_settings::Migration),
            Box::new(m20261206_000050_add_tenant_billing::Migration),
            Box::new(m20261206_000051_create_stripe_events::Migration),
            Box::new(m20261206_000052_create_billing_reports::Migration),
            Box::new(m20261206_000060_add_cache_settings::Migration),
            Box::new(m20261206_000061_create_guardrails::Migration),
            Box::new(m20261206_000062_add_usage_guardrails::Migration),
        ]
    }
}
