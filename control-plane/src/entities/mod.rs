//! sea-orm entities, one per table (see the `migrations` crate for the schema and why it looks
//! the way it does). They are database rows only: the HTTP layer has its own DTOs, so a column
//! such as `key_hash` or `password_hash` can never leak into a response by accident.

pub mod api_key;
pub mod config_outbox;
pub mod invitation;
pub mod membership;
pub mod model_deployment;
pub mod provider_credential;
pub mod refresh_token;
pub mod session;
pub mod team;
pub mod tenant;
pub mod tenant_catalog_entry;
pub mod usage_record;
pub mod user;
