//! Types and pure helpers that the control plane and the data plane agree on.
//!
//! # Layout
//! - [`keys`]: the virtual API key format (`sk-sy-…`), how keys are hashed and shown.
//! - [`money`]: integer micro-dollar arithmetic: parsing prices, cost of a request.
//! - [`crypto`]: AES-256-GCM sealing of provider secrets with the master key.
//! - [`config`]: the records the control plane publishes and the data plane reads, and the Redis key scheme.
//! - [`usage`]: the usage event each data-plane request emits.
//! - [`egress`]: the egress (SSRF) policy: which upstream addresses the gateway may connect to.
//! - [`cache`]: the response-cache settings of keys, teams and routes.
//! - [`guardrails`]: guardrail policies (PII detection and redaction, policy filters), compiled once.
//! - [`bus`]: the in-process stand-in for Redis used by the zero-setup default.
//!
//! Nothing here does IO. Deriving `Serialize` on these types makes them a wire contract between
//! planes that may run different versions during a rolling deploy: add optional fields, never
//! rename or remove one.

pub mod bus;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod egress;
pub mod governance;
pub mod guardrails;
pub mod keys;
pub mod money;
pub mod usage;
