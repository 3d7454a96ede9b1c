//! The usage event: one per authenticated data-plane request, success or failure.
//!
//! Requests refused before a tenant is known (no key, unknown key) have nobody to bill and emit
//! no event; they are counted in metrics instead. `id` is the request id, which is also what the
//! control plane deduplicates on, so an event delivered twice is stored once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// How a request ended, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageOutcome {
    /// Answered completely.
    Success,
    /// Refused or failed before or at the provider; `status` and `error_code` say how.
    Error,
    /// The upstream stream ended before it finished; the client saw an error event.
    Truncated,
    /// The client went away mid-stream; what was generated until then is metered.
    ClientDisconnected,
}

impl UsageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageOutcome::Success => "success",
            UsageOutcome::Error => "error",
            UsageOutcome::Truncated => "truncated",
            UsageOutcome::ClientDisconnected => "client_disconnected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// The request id (`x-switchyard-request-id`), a UUIDv7.
    pub id: Uuid,
    pub tenant_id: Uuid,
    #[serde(default)]
    pub key_id: Option<Uuid>,
    #[serde(default)]
    pub team_id: Option<Uuid>,
    /// The model name the client asked for.
    pub model: String,
    #[serde(default)]
    pub deployment_id: Option<Uuid>,
    #[serde(default)]
    pub provider_id: Option<Uuid>,
    /// Provider kind wire name (`openai`, `mock`, …), if a deployment was chosen.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Which API the client called, e.g. `chat.completions`.
    pub endpoint: String,
    pub stream: bool,
    /// HTTP status returned to the client (200 for a stream that started, even if cut later).
    pub status: u16,
    pub outcome: UsageOutcome,
    /// OpenAI-style error code when `outcome` is not success, e.g. `upstream_timeout`.
    #[serde(default)]
    pub error_code: Option<String>,
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, how many were read from the provider's prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`, how many were written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// True when the token counts were estimated locally because the upstream reported none.
    #[serde(default)]
    pub tokens_estimated: bool,
    pub cost_micros: i64,
    pub latency_ms: u64,
    /// Time to first token (streams only).
    #[serde(default)]
    pub ttft_ms: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The route the request named (explicit or the implicit one of a shared deployment name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Upstream attempts that failed before the one that served (or before giving up), in order.
    /// The event's deployment, provider and prices are those of the attempt that served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_attempts: Vec<FailedAttempt>,
    /// Tags of the request: its key's `metadata` merged with the `x-switchyard-tags` header
    /// (metadata wins), bounded by [`MAX_TAGS`], [`MAX_TAG_KEY_LEN`] and [`MAX_TAG_VALUE_LEN`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Region of the deployment that served (or of the last one tried), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Low-cardinality class of the failure when `outcome` is not success (see
    /// [`error_class`]); `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Answered from the gateway's response cache (no provider call, zero provider cost).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    /// What the guardrail policy that applied decided (rule and action, never the matched text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<GuardrailDecision>,
    /// The prompt and completion, present only when the organization opted in
    /// (`TenantConfig::store_payloads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<UsagePayload>,
}

/// Most tags one event carries; extra ones are dropped (keys in order).
pub const MAX_TAGS: usize = 16;
/// Longest tag key, in bytes.
pub const MAX_TAG_KEY_LEN: usize = 64;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// What was sent and answered, for organizations that store payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsagePayload {
    /// The client's request body as received (JSON text), cut to [`MAX_PAYLOAD_BYTES`].
    pub request: String,
    /// The answer's text (the assembled stream for streams), cut to [`MAX_PAYLOAD_BYTES`].
    pub response: String,
    /// True when either side was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Cap for each side of a stored payload.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The error class of a gateway error code: what analytics group failures by. Wire names are a
/// contract (stored in usage rows and rollups).
pub fn error_class(status: u16, error_code: Option<&str>) -> &'static str {
    match error_code.unwrap_or_default() {
        "rate_limit_exceeded" | "budget_exceeded" | "insufficient_quota" => "limit",
        "organization_suspended" => "suspended",
        "budget_unavailable" => "unavailable",
        "upstream_timeout" => "timeout",
        "upstream_rate_limited" => "upstream_rate_limited",
        "stream_truncated" => "truncated",
        "client_disconnected" => "client_disconnected",
        // A request the node cut when its shutdown grace period ended (stream or not).
        "shutting_down" => "shutdown",
        "context_length_exceeded" => "context_length",
        "content_filter" => "content_filter",
        "guardrail_blocked" => "guardrail",
        "upstream_error" | "upstream_unavailable" | "upstream_connection" => "upstream_error",
        _ => match status {
            401 | 403 => "auth",
            404 | 400 | 413 | 415 | 422 => "invalid_request",
            429 => "limit",
            500..=599 => "upstream_error",
            _ => "other",
        },
    }
}

/// One guardrail decision of a request, as recorded in a [`UsageEvent`] and the request log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailDecision {
    /// The policy that applied.
    pub guardrail_id: Uuid,
    /// The rule: `pii.email`, `pii.custom.<name>`, `blocked_terms`, `max_prompt_tokens`,
    /// `allowed_tools`, … (see [`crate::guardrails`]).
    pub rule: String,
    pub action: GuardrailAction,
    /// How many findings (PII) the decision covers; 1 for a filter.
    pub count: u32,
}

/// What a guardrail did. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailAction {
    /// Replaced by placeholders before the prompt left.
    Redacted,
    /// The request was refused (400 `guardrail_blocked`).
    Blocked,
    /// Placeholders in the answer were replaced by the original values.
    Restored,
}

impl GuardrailAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardrailAction::Redacted => "redacted",
            GuardrailAction::Blocked => "blocked",
            GuardrailAction::Restored => "restored",
        }
    }
}

/// One upstream attempt that failed, as recorded in a [`UsageEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    pub deployment_id: Uuid,
    /// The gateway error code of the failure (`upstream_error`, `upstream_timeout`, …).
    pub error_code: String,
    /// The retry class it fell in (`server_error`, `rate_limited`, …), if retryable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::config::RetryClass>,
    pub latency_ms: u64,
    /// Region of the deployment tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Upstream HTTP status, when the provider answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}
