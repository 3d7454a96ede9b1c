//! The `cache` field of keys, teams and routes: their response-cache setting
//! (`shared::cache::CacheSettings`), one DTO pair shared by the three resources.
//!
//! - Request ([`CacheRequest`]): `{"mode": "off" | "exact" | "semantic", "ttl_seconds": 3600,
//!   "min_similarity": 0.95, "embedding_model": "…"}`; `ttl_seconds` and `min_similarity` take
//!   their defaults when left out, unknown fields are refused, and the whole setting is checked
//!   with `CacheSettings::validate` (a refusal names the field: `cache.ttl_seconds: …`). In a
//!   `PATCH`, `cache` replaces the whole setting and `null` clears it.
//! - Response ([`CacheDto`]): the stored setting with its defaults filled in; `cache` is null
//!   when the object has none.
//!
//! Stored as the JSON of `CacheSettings` in the object's nullable `cache` column, and published
//! as `KeyRecord.cache`, `TenantConfig.team_cache` and `RouteRecord.cache`.

use serde::{Deserialize, Serialize};
use shared::cache::{CacheMode, CacheSettings, DEFAULT_MIN_SIMILARITY, DEFAULT_TTL_SECONDS};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Every mode's wire name.
const MODES: [&str; 3] = ["off", "exact", "semantic"];

fn mode_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(MODES))
        .description(Some(
            "off (no caching at this level, whatever a broader level says), exact (identical requests share an answer) or semantic (exact, and prompts whose embedding is at least min_similarity close to a stored one)",
        ))
        .examples([serde_json::json!("exact")])
        .build()
}

/// A response-cache setting as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheRequest {
    #[schema(schema_with = mode_schema)]
    pub mode: CacheMode,
    /// How long an answer is kept, 1 to 2592000 seconds (30 days); default 3600.
    #[serde(default)]
    #[schema(example = 3600)]
    pub ttl_seconds: Option<u32>,
    /// Semantic mode: the least cosine similarity for a hit, more than 0 and at most 1;
    /// default 0.95.
    #[serde(default)]
    #[schema(example = 0.95)]
    pub min_similarity: Option<f64>,
    /// Semantic mode: the organization's embedding deployment that embeds prompts; default the
    /// first one by name.
    #[serde(default)]
    #[schema(example = "text-embedding-3-small")]
    pub embedding_model: Option<String>,
}

/// A response-cache setting as stored, defaults filled in.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CacheDto {
    #[schema(schema_with = mode_schema)]
    pub mode: CacheMode,
    pub ttl_seconds: u32,
    pub min_similarity: f64,
    /// Semantic mode: the embedding deployment; null: the first one by name.
    pub embedding_model: Option<String>,
}

impl From<CacheSettings> for CacheDto {
    fn from(s: CacheSettings) -> Self {
        Self {
            mode: s.mode,
            ttl_seconds: s.ttl_seconds,
            min_similarity: s.min_similarity,
            embedding_model: s.embedding_model,
        }
    }
}

/// The validated setting of `req`, defaults filled in; the refusal names the field.
pub(crate) fn settings(req: &CacheRequest) -> Result<CacheSettings, ApiError> {
    let s = CacheSettings {
        mode: req.mode,
        ttl_seconds: req.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS),
        min_similarity: req.min_similarity.unwrap_or(DEFAULT_MIN_SIMILARITY),
        embedding_model: req.embedding_model.as_ref().map(|m| m.trim().to_owned()),
    };
    s.validate().map_err(|message| {
        // `validate` says "cache.<field> must …"; our messages are "<field>: <problem>".
        ApiError::Validation(match message.split_once(' ') {
            Some((field, problem)) if field.starts_with("cache.") => {
                format!("{field}: {problem}")
            }
            _ => message,
        })
    })?;
    Ok(s)
}

/// The JSON stored for `req` (`None` clears the column).
pub(crate) fn stored(req: Option<&CacheRequest>) -> Result<Option<serde_json::Value>, ApiError> {
    req.map(|r| {
        let s = settings(r)?;
        serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.into()))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn req(v: serde_json::Value) -> CacheRequest {
        serde_json::from_value(v).expect("deserializes")
    }

    #[test]
    fn defaults_fill_in_and_refusals_name_the_field() {
        let s = settings(&req(serde_json::json!({"mode": "exact"}))).unwrap();
        assert_eq!(s.ttl_seconds, DEFAULT_TTL_SECONDS);
        assert_eq!(s.min_similarity, DEFAULT_MIN_SIMILARITY);
        let e = settings(&req(serde_json::json!({"mode": "exact", "ttl_seconds": 0})))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cache.ttl_seconds: must be"), "{e}");
        let e = settings(&req(
            serde_json::json!({"mode": "semantic", "min_similarity": 1.5}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("cache.min_similarity: "), "{e}");
        let e = settings(&req(
            serde_json::json!({"mode": "semantic", "embedding_model": "  "}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("cache.embedding_model: "), "{e}");
        assert!(
            serde_json::from_value::<CacheRequest>(serde_json::json!({"mode": "exact", "ttl": 5}))
                .is_err()
        );
    }
}
