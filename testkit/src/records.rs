//! Published records and usage events with plausible values, for tests of the Redis bus and
//! the stores that read it.

use shared::config::KeyRecord;
use shared::usage::{UsageEvent, UsageOutcome};
use time::OffsetDateTime;
use uuid::Uuid;

/// The SHA-256 of a random key: a key hash nothing else uses.
pub fn random_hash() -> String {
    shared::keys::hash_api_key(&Uuid::new_v4().to_string())
}

/// An active key of a fresh tenant, with this hash and version.
pub fn key_record(hash: &str, version: i64) -> KeyRecord {
    KeyRecord {
        key_id: Uuid::new_v4(),
        key_hash: hash.to_owned(),
        tenant_id: Uuid::new_v4(),
        team_id: None,
        name: "test key".into(),
        allowed_models: None,
        expires_at: None,
        revoked_at: None,
        version,
        limits: Default::default(),
        endpoints: None,
        allowed_cidrs: None,
        max_tokens_per_request: None,
        metadata: Default::default(),
        cache: None,
    }
}

/// A successful streamed chat completion of a fresh tenant (12 + 5 tokens, 7 µ$), with a fresh
/// UUIDv7 id.
pub fn usage_event() -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        tenant_id: Uuid::new_v4(),
        key_id: Some(Uuid::new_v4()),
        team_id: None,
        model: "gpt-test".into(),
        deployment_id: None,
        provider_id: None,
        provider: Some("mock".into()),
        upstream_model: None,
        endpoint: "chat.completions".into(),
        stream: true,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: 12,
        completion_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: 7,
        latency_ms: 3,
        ttft_ms: Some(1),
        started_at: OffsetDateTime::now_utc(),
        route: None,
        failed_attempts: Vec::new(),
        tags: Default::default(),
        region: None,
        error_class: None,
        cache_hit: false,
        payload: None,
        guardrails: Vec::new(),
    }
}
