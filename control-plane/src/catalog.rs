//! The model catalog: what Switchyard knows about popular models (provider, upstream model id,
//! context window, output limit, list prices, capabilities), so a deployment can name a
//! catalog entry instead of typing prices.
//!
//! The built-in catalog is the repository's `catalog/models.json`, compiled into the binary
//! (`include_str!`), so a release is self-contained. An operator may replace it as a whole with
//! their own file in the same format through `SWITCHYARD_CATALOG_PATH`. Either way it is parsed
//! and validated once at start ([`Catalog::load`]); a bad catalog stops the start with a message
//! naming the entry and the problem, rather than surfacing later as a wrong price.
//!
//! File format: `{"as_of": "…", "note": "…", "models": [entry, …]}`; each entry has `id`,
//! `provider` (a provider kind wire name), `upstream_model`, `display_name`, `mode` (`chat` |
//! `embedding`), `context_window`, `max_output_tokens` (null for embeddings), the prices
//! `input_price_per_mtok`, `output_price_per_mtok`, `cached_input_price_per_mtok` (null when the
//! provider has no cache pricing) as decimal **strings** in USD per million tokens (parsed
//! exactly with `shared::money::parse_usd`), `capabilities` {`tools`, `vision`, `json_mode`,
//! `embeddings`, `streaming`} and `source` (the pricing page the numbers come from). Unknown
//! fields are refused, so a typo cannot silently drop a value.
//!
//! Tenants add to or override entries through the API (`crate::http::catalog`); those rows use
//! the same [`CatalogEntry`] type and the same [`CatalogEntry::validate`] rules.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shared::config::ProviderKind;
use shared::money::parse_usd;
use utoipa::ToSchema;

/// The shipped catalog file.
pub const BUILTIN_JSON: &str = include_str!("../../catalog/models.json");

/// Longest accepted catalog id.
pub const MAX_ID_LEN: usize = 200;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelMode {
    /// Chat completions (`/v1/chat/completions`, `/v1/messages`).
    Chat,
    /// Embeddings (`/v1/embeddings`).
    Embedding,
}

impl ModelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelMode::Chat => "chat",
            ModelMode::Embedding => "embedding",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(ModelMode::Chat),
            "embedding" => Some(ModelMode::Embedding),
            _ => None,
        }
    }
}

/// What a model supports, as its provider documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Tool (function) calling.
    #[serde(default)]
    pub tools: bool,
    /// Image input.
    #[serde(default)]
    pub vision: bool,
    /// A JSON output mode (`response_format`).
    #[serde(default)]
    pub json_mode: bool,
    /// Produces embeddings.
    #[serde(default)]
    pub embeddings: bool,
    /// Streams its answer.
    #[serde(default)]
    pub streaming: bool,
}

/// One validated catalog entry, prices in micro-dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Stable id, e.g. `openai/gpt-4o-mini`.
    pub id: String,
    /// The provider kind whose credentials can serve it.
    pub provider: ProviderKind,
    /// The model id sent to the provider.
    pub upstream_model: String,
    pub display_name: String,
    pub mode: ModelMode,
    /// Tokens of prompt plus answer the model accepts.
    pub context_window: u64,
    /// The model's output limit; `None` for embeddings and where none is documented.
    pub max_output_tokens: Option<u32>,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    /// Price of prompt tokens read from the provider's prompt cache; `None`: no cache pricing.
    pub cached_input_price_micros_per_mtok: Option<i64>,
    pub capabilities: Capabilities,
    /// Where the numbers come from (a pricing page URL); required in catalog files.
    pub source: Option<String>,
}

/// Checks a catalog id: 1 to [`MAX_ID_LEN`] ASCII characters from `A-Z a-z 0-9 - _ . : / @ +`,
/// not starting or ending with `/`, without `//`. The rules keep ids usable in a URL path.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@+".contains(&b))
    {
        return Err(
            "may only contain letters, digits and - _ . : / @ + (e.g. openai/gpt-4o-mini)"
                .to_owned(),
        );
    }
    if id.starts_with('/') || id.ends_with('/') || id.contains("//") {
        return Err("must not start or end with / or contain //".to_owned());
    }
    Ok(())
}

/// Whether a provider credential of kind `provider` can serve a catalog entry made for
/// `entry_provider`: the same kind, or Azure OpenAI serving an OpenAI model (Azure hosts
/// OpenAI's models under the same names and prices).
pub fn provider_serves(provider: ProviderKind, entry_provider: ProviderKind) -> bool {
    provider == entry_provider
        || (provider == ProviderKind::AzureOpenAi && entry_provider == ProviderKind::OpenAi)
}

/// The provider kind wire names, comma-separated, for error messages.
pub fn provider_kind_names() -> String {
    ProviderKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CatalogEntry {
    /// The rules every entry follows, built-in or a tenant's. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        validate_id(&self.id).map_err(|e| format!("id: {e}"))?;
        for (field, value) in [
            ("upstream_model", &self.upstream_model),
            ("display_name", &self.display_name),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{field}: must not be empty"));
            }
            if value.chars().count() > MAX_ID_LEN {
                return Err(format!("{field}: must be at most {MAX_ID_LEN} characters"));
            }
            if value.chars().any(char::is_control) {
                return Err(format!("{field}: must not contain control characters"));
            }
        }
        if self.context_window == 0 {
            return Err("context_window: must be greater than 0".to_owned());
        }
        match (self.mode, self.max_output_tokens) {
            (_, Some(0)) => return Err("max_output_tokens: must be greater than 0".to_owned()),
            (ModelMode::Embedding, Some(_)) => {
                return Err("max_output_tokens: must be null for embedding models".to_owned());
            }
            (_, Some(n)) if u64::from(n) > self.context_window => {
                return Err("max_output_tokens: must not exceed context_window".to_owned());
            }
            _ => {}
        }
        if self.mode == ModelMode::Embedding && !self.capabilities.embeddings {
            return Err("capabilities.embeddings: must be true for embedding models".to_owned());
        }
        if self.mode == ModelMode::Chat && self.capabilities.embeddings {
            return Err("capabilities.embeddings: must be false for chat models".to_owned());
        }
        if let Some(source) = &self.source
            && !(source.starts_with("https://") || source.starts_with("http://"))
        {
            return Err("source: must be an http(s) URL".to_owned());
        }
        Ok(())
    }
}

/// Why a catalog file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not a valid catalog file: {0}")]
    Format(#[from] serde_json::Error),
    #[error("models[{index}] ({id}): {problem}")]
    Entry {
        index: usize,
        id: String,
        problem: String,
    },
    #[error("models[{index}]: id {id} appears more than once")]
    DuplicateId { index: usize, id: String },
    #[error("it lists no models")]
    Empty,
}

/// The catalog file as written; see the module docs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    as_of: String,
    /// Free text for people reading the file (caveats about the prices); not used.
    #[serde(default, rename = "note")]
    _note: Option<serde::de::IgnoredAny>,
    models: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    id: String,
    provider: String,
    upstream_model: String,
    display_name: String,
    mode: String,
    context_window: u64,
    max_output_tokens: Option<u32>,
    input_price_per_mtok: String,
    output_price_per_mtok: String,
    cached_input_price_per_mtok: Option<String>,
    capabilities: Capabilities,
    source: String,
}

impl FileEntry {
    fn into_entry(self) -> Result<CatalogEntry, String> {
        let provider = ProviderKind::parse(&self.provider).ok_or_else(|| {
            format!(
                "provider: unknown provider kind {:?}; valid kinds: {}",
                self.provider,
                provider_kind_names()
            )
        })?;
        let mode = ModelMode::parse(&self.mode)
            .ok_or_else(|| "mode: must be chat or embedding".to_owned())?;
        let price = |field: &str, v: &str| {
            parse_usd(v)
                .map_err(|e| format!("{field}: {v:?} {e} (a decimal string such as \"2.5\")"))
        };
        let entry = CatalogEntry {
            input_price_micros_per_mtok: price("input_price_per_mtok", &self.input_price_per_mtok)?,
            output_price_micros_per_mtok: price(
                "output_price_per_mtok",
                &self.output_price_per_mtok,
            )?,
            cached_input_price_micros_per_mtok: self
                .cached_input_price_per_mtok
                .as_deref()
                .map(|v| price("cached_input_price_per_mtok", v))
                .transpose()?,
            id: self.id,
            provider,
            upstream_model: self.upstream_model,
            display_name: self.display_name,
            mode,
            context_window: self.context_window,
            max_output_tokens: self.max_output_tokens,
            capabilities: self.capabilities,
            source: Some(self.source),
        };
        entry.validate()?;
        Ok(entry)
    }
}

/// A validated catalog, entries sorted by id.
#[derive(Debug, Clone)]
pub struct Catalog {
    as_of: String,
    entries: Vec<CatalogEntry>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::parse(BUILTIN_JSON)
    }

    /// The catalog to run with: the file at `override_path` (`SWITCHYARD_CATALOG_PATH`) if
    /// given, which replaces the built-in one entirely; else the built-in one. The error says
    /// which catalog is wrong and why.
    pub fn load(override_path: Option<&Path>) -> anyhow::Result<Self> {
        match override_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the model catalog SWITCHYARD_CATALOG_PATH={}",
                        path.display()
                    )
                })?;
                Self::parse(&text).with_context(|| {
                    format!(
                        "the model catalog SWITCHYARD_CATALOG_PATH={} is invalid",
                        path.display()
                    )
                })
            }
            None => Self::builtin().context("the built-in model catalog is invalid"),
        }
    }

    /// Parses and validates a catalog file.
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(json)?;
        if file.models.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut entries = Vec::with_capacity(file.models.len());
        let mut seen = HashMap::new();
        for (index, raw) in file.models.into_iter().enumerate() {
            let id = raw.id.clone();
            if seen.insert(id.clone(), index).is_some() {
                return Err(CatalogError::DuplicateId { index, id });
            }
            let entry =
                raw.into_entry()
                    .map_err(|problem| CatalogError::Entry { index, id, problem })?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let by_id = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Ok(Self {
            as_of: file.as_of,
            entries,
            by_id,
        })
    }

    /// When the prices were taken, as the file says.
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// Every entry, sorted by id.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    pub fn get(&self, id: &str) -> Option<&CatalogEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_shipped_catalog_is_valid_and_covers_every_cloud_provider() {
        let catalog = Catalog::builtin().expect("catalog/models.json is valid");
        assert!(catalog.len() >= 60, "only {} entries", catalog.len());
        assert!(
            catalog.as_of().starts_with("2026-11"),
            "{}",
            catalog.as_of()
        );
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::AzureOpenAi,
            ProviderKind::Bedrock,
            ProviderKind::Mistral,
            ProviderKind::Groq,
            ProviderKind::DeepSeek,
            ProviderKind::Together,
            ProviderKind::Fireworks,
            ProviderKind::Xai,
            ProviderKind::OpenRouter,
        ] {
            assert!(
                catalog.entries().iter().any(|e| e.provider == kind),
                "no entry for {}",
                kind.as_str()
            );
        }
        for id in [
            "openai/text-embedding-3-small",
            "openai/text-embedding-3-large",
            "gemini/gemini-embedding-001",
            "gemini/text-embedding-004",
            "bedrock/amazon.titan-embed-text-v2",
            "bedrock/cohere.embed-english-v3",
            "mistral/mistral-embed",
        ] {
            let e = catalog.get(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(e.mode, ModelMode::Embedding, "{id}");
            assert!(e.max_output_tokens.is_none(), "{id}");
        }
        let mini = catalog.get("openai/gpt-4o-mini").expect("gpt-4o-mini");
        assert_eq!(mini.input_price_micros_per_mtok, 150_000);
        assert_eq!(mini.output_price_micros_per_mtok, 600_000);
        assert_eq!(mini.cached_input_price_micros_per_mtok, Some(75_000));
        assert_eq!(mini.max_output_tokens, Some(16_384));
        // Every entry names where its prices come from, and ids are sorted and unique.
        assert!(catalog.entries().iter().all(|e| e.source.is_some()));
        assert!(catalog.entries().windows(2).all(|w| w[0].id < w[1].id));
    }

    fn file(entry: serde_json::Value) -> String {
        serde_json::json!({"as_of": "2026-11", "models": [entry]}).to_string()
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "id": "openai/x", "provider": "openai", "upstream_model": "x", "display_name": "X",
            "mode": "chat", "context_window": 1000, "max_output_tokens": 100,
            "input_price_per_mtok": "1", "output_price_per_mtok": "2",
            "cached_input_price_per_mtok": null,
            "capabilities": {"tools": true, "vision": false, "json_mode": true, "embeddings": false, "streaming": true},
            "source": "https://example.com/pricing"
        })
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_entry_and_field_named() {
        assert!(Catalog::parse(&file(good())).is_ok());
        let check = |patch: serde_json::Value, want: &str| {
            let mut e = good();
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            let err = Catalog::parse(&file(e)).expect_err("refused").to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        };
        check(serde_json::json!({"provider": "nope"}), "provider: unknown");
        check(
            serde_json::json!({"input_price_per_mtok": "1.1234567"}),
            "input_price_per_mtok",
        );
        check(
            serde_json::json!({"output_price_per_mtok": "-1"}),
            "output_price_per_mtok",
        );
        check(
            serde_json::json!({"cached_input_price_per_mtok": "abc"}),
            "cached_input_price_per_mtok",
        );
        check(serde_json::json!({"context_window": 0}), "context_window");
        check(serde_json::json!({"mode": "image"}), "mode");
        check(serde_json::json!({"id": "bad id"}), "id:");
        check(
            serde_json::json!({"max_output_tokens": 5000}),
            "max_output_tokens",
        );
        check(
            serde_json::json!({"mode": "embedding"}),
            "max_output_tokens",
        );
        check(serde_json::json!({"extra": 1}), "unknown field");
        check(
            serde_json::json!({"input_price_per_mtok": 1.5}),
            "invalid type",
        );
        let dup = serde_json::json!({"as_of": "x", "models": [good(), good()]}).to_string();
        assert!(matches!(
            Catalog::parse(&dup),
            Err(CatalogError::DuplicateId { index: 1, .. })
        ));
        assert!(matches!(
            Catalog::parse(r#"{"as_of":"x","models":[]}"#),
            Err(CatalogError::Empty)
        ));
    }

    #[test]
    fn an_override_file_replaces_the_builtin_and_a_bad_one_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        std::fs::write(&path, file(good())).unwrap();
        let c = Catalog::load(Some(&path)).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c.get("openai/x").is_some());
        std::fs::write(&path, "{").unwrap();
        let err = format!("{:#}", Catalog::load(Some(&path)).unwrap_err());
        assert!(err.contains("SWITCHYARD_CATALOG_PATH"), "{err}");
        let missing = dir.path().join("missing.json");
        let err = format!("{:#}", Catalog::load(Some(&missing)).unwrap_err());
        assert!(err.contains("cannot read"), "{err}");
        assert!(Catalog::load(None).unwrap().len() >= 60);
    }

    #[test]
    fn ids_and_provider_compatibility() {
        for ok in [
            "openai/gpt-4o",
            "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
            "x",
        ] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a b", "a?b", "a%2Fb"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(provider_serves(
            ProviderKind::AzureOpenAi,
            ProviderKind::OpenAi
        ));
        assert!(provider_serves(
            ProviderKind::Bedrock,
            ProviderKind::Bedrock
        ));
        assert!(!provider_serves(
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi
        ));
        assert!(!provider_serves(
            ProviderKind::OpenAi,
            ProviderKind::Bedrock
        ));
        assert!(!provider_serves(
            ProviderKind::Anthropic,
            ProviderKind::Bedrock
        ));
    }
}
