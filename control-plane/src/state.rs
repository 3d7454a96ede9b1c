//! `AppState`: what every handler can reach, built once at start and cloned per request
//! (every field is a cheap handle). One struct rather than many `Extension`s, so a missing piece
//! is a compile error and not a runtime 500.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use shared::crypto::MasterKey;

use crate::auth::TokenService;
use crate::catalog::Catalog;
use crate::http::security::Security;
use crate::sync::ConfigSync;
use crate::throttle::Throttle;

#[derive(Clone)]
pub struct AppState {
    /// Connection pool (PostgreSQL or SQLite).
    pub db: DatabaseConnection,
    /// Signs and checks access tokens.
    pub tokens: Arc<TokenService>,
    /// Seals provider API keys before they are stored.
    pub master_key: MasterKey,
    /// Publishes committed config changes to the data plane.
    pub sync: ConfigSync,
    /// The built-in (or operator-supplied) model catalog, validated at start.
    pub catalog: Arc<Catalog>,
    /// Login and sign-up throttles (in this process; see `crate::throttle`).
    pub throttle: Arc<Throttle>,
    /// Egress policy, CORS origins and HSTS, resolved from the configuration at start.
    pub security: Arc<Security>,
    /// The budget ledger (see `crate::ledger`): Redis in distributed mode, the embedded data
    /// plane's in-memory ledger in zero-setup mode.
    pub ledger: data_plane::governance::ledger::Ledger,
    /// Billing: plans and the Stripe client (off without `STRIPE_SECRET_KEY`).
    pub billing: Arc<crate::billing::Billing>,
    /// Deployment facts `GET /api/v1/meta` reports (public gateway URL, embedded gateway).
    pub meta: Arc<crate::http::meta::Meta>,
    /// What `/metrics` reads besides the database (see `http::metrics`).
    pub observed: crate::http::metrics::Observed,
    /// Serving or stopping (`/readyz` answers 503 while stopping); in zero-setup mode the
    /// embedded gateway's, so one stop covers both (see `data_plane::lifecycle`).
    pub lifecycle: data_plane::lifecycle::Lifecycle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.tokens)
            .field("sync", &self.sync)
            .field("throttle", &self.throttle.settings())
            .finish_non_exhaustive()
    }
}
