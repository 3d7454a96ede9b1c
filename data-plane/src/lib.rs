//! Switchyard data plane (being built; see ARCHITECTURE.md).

pub mod store;
pub mod usage_sink;
