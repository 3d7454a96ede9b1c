//! Governance enforced by the data plane: budgets (see [`ledger`]: reservations against every
//! applicable budget, exact across nodes through leases taken from Redis).
//!
//! The budget *stage* lives in [`crate::pipeline::budget`]; this module holds the ledger it
//! reserves against, which the control plane also reads (`control-plane/src/ledger.rs`).

pub mod ledger;
