//! Switchyard control plane (being built; see ARCHITECTURE.md).

pub mod ingest;
pub mod publish;
