//! Governance enforced by the data plane on the request path:
//! - [`limits`]: distributed rate limits (RPM and TPM of the key, its team and its organization);
//! - [`ledger`]: budgets — reservations against every applicable budget, exact across nodes
//!   through leases taken from Redis.
//!
//! The *stages* live in [`crate::pipeline::limit`] and [`crate::pipeline::budget`]; this module
//! holds what they count against. The control plane also reads the ledger
//! (`control-plane/src/ledger.rs`).

pub mod ledger;
pub mod limits;
