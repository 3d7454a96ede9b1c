//! Response-cache settings: the `cache` object of a key, a team and a route
//! (`{"mode": "exact" | "semantic" | "off", "ttl_seconds": 3600, "min_similarity": 0.95}`).
//!
//! The data plane picks the most specific setting that applies to a request: the key's, else
//! its team's, else the route's (the model name the request asked for); none means no caching.
//! `off` on a more specific level switches caching off for it whatever a broader level says.

use serde::{Deserialize, Serialize};

/// How long an entry lives unless a setting says otherwise.
pub const DEFAULT_TTL_SECONDS: u32 = 3600;
/// The longest TTL a setting may ask for (30 days).
pub const MAX_TTL_SECONDS: u32 = 30 * 24 * 3600;
/// The cosine similarity a semantic hit needs unless a setting says otherwise.
pub const DEFAULT_MIN_SIMILARITY: f64 = 0.95;

/// The response-cache setting of a key, team or route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSettings {
    pub mode: CacheMode,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u32,
    /// Semantic mode only: the least cosine similarity (0 < s ≤ 1) between the prompt's
    /// embedding and a stored one for a hit.
    #[serde(default = "default_similarity")]
    pub min_similarity: f64,
    /// Semantic mode only: which of the organization's embedding deployments embeds prompts;
    /// `None` = the first one by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
}

// `min_similarity` is validated finite on write (see [`CacheSettings::validate`]), so equality is
// total in practice; the published records that embed this type derive `Eq`.
impl Eq for CacheSettings {}

fn default_ttl() -> u32 {
    DEFAULT_TTL_SECONDS
}

fn default_similarity() -> f64 {
    DEFAULT_MIN_SIMILARITY
}

/// Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    Off,
    /// Identical requests (same organization, model, messages, tools and answer-changing
    /// parameters) share an answer.
    Exact,
    /// Exact, and besides a prompt whose embedding is close enough to a stored one (same
    /// organization, model, system prompt and tools) gets that one's answer.
    Semantic,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Off => "off",
            CacheMode::Exact => "exact",
            CacheMode::Semantic => "semantic",
        }
    }
}

impl CacheSettings {
    /// Checks a setting as the control plane accepts it; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_seconds == 0 || self.ttl_seconds > MAX_TTL_SECONDS {
            return Err(format!(
                "cache.ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"
            ));
        }
        if !(self.min_similarity.is_finite()
            && self.min_similarity > 0.0
            && self.min_similarity <= 1.0)
        {
            return Err("cache.min_similarity must be greater than 0 and at most 1".to_owned());
        }
        if let Some(model) = &self.embedding_model
            && (model.trim().is_empty() || model.len() > 256)
        {
            return Err("cache.embedding_model must be a model name (1-256 bytes)".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_fill_a_bare_mode() {
        let s: CacheSettings = serde_json::from_str(r#"{"mode":"exact"}"#).unwrap();
        assert_eq!(s.mode, CacheMode::Exact);
        assert_eq!(s.ttl_seconds, DEFAULT_TTL_SECONDS);
        assert_eq!(s.min_similarity, DEFAULT_MIN_SIMILARITY);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let mut s: CacheSettings = serde_json::from_str(r#"{"mode":"semantic"}"#).unwrap();
        s.ttl_seconds = 0;
        assert!(s.validate().unwrap_err().contains("ttl_seconds"));
        s.ttl_seconds = 60;
        s.min_similarity = 1.5;
        assert!(s.validate().unwrap_err().contains("min_similarity"));
        s.min_similarity = f64::NAN;
        assert!(s.validate().unwrap_err().contains("min_similarity"));
    }
}
