//! Test and benchmark support for Switchyard. Never shipped.
//!
//! # Layout
//! - [`fake_openai`]: an OpenAI-compatible upstream on `127.0.0.1:0` that follows the documented
//!   wire format (SSE included) and misbehaves on request, chosen by model name; also Azure
//!   OpenAI's routes and embeddings.
//! - [`fake_anthropic`], [`fake_gemini`], [`fake_bedrock`]: the same for Anthropic's Messages
//!   API, Google's Gemini API and AWS Bedrock's runtime (SigV4 verified, binary event streams),
//!   each in its provider's native wire format and following one behaviour contract (the model
//!   name picks text, a tool call, an error, a cut stream, …). They share one server skeleton
//!   (`fake_server`: bind, serve, shutdown, request recording).
//! - [`fake_stripe`]: a fake Stripe API (customers, Checkout, portal, meter events, invoices,
//!   `Idempotency-Key` replay) and signed webhook delivery, for the billing tests.
//! - [`pg`]: a fresh PostgreSQL database per test run, and a dump of its text for secret scans.
//! - [`redis_prefix`]: a fresh Redis key prefix per test run (deleted by [`redis_prefix::PrefixGuard`]),
//!   a connection, and a dump of its keys.
//! - [`redis_server`]: a plain `redis-server` of a test's own, stopped and restarted to play an
//!   outage.
//! - [`redis_tls`]: a TLS-only `redis-server` of a test's own, with a throwaway CA, for
//!   `rediss://` URLs.
//! - [`records`]: key records and usage events for the Redis bus tests.
//! - [`tcp_proxy`]: a TCP proxy in front of Redis that a test cuts and restores to play an outage.
//! - [`logs`]: an in-memory `tracing-subscriber` writer for tests that check log output.
//! - [`poll`]: poll-with-deadline for "eventually visible" assertions.
//! - [`proc`]: launching the `control-plane` / `data-plane` binaries as child processes that are
//!   killed on drop, with their logs captured and their bound address read from the log.
//! - [`e2e`]: a distributed deployment under test (database, Redis prefix, secrets, processes)
//!   and poll-with-deadline.
//! - [`sse`]: splitting a Server-Sent Events body into its `data` payloads.
//! - [`api`]: a small client for the control API (signup, providers, models, keys, usage) shared
//!   by the end-to-end tests and the benchmark.

pub mod api;
pub mod e2e;
pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_gemini;
pub mod fake_openai;
mod fake_server;
pub mod fake_stripe;
pub mod logs;
pub mod pg;
pub mod poll;
pub mod proc;
pub mod records;
pub mod redis_prefix;
pub mod redis_server;
pub mod redis_tls;
pub mod sse;
pub mod tcp_proxy;
