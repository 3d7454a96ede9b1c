//! Guardrails: what the gateway checks and rewrites in a prompt before it leaves for a provider.
//!
//! A [`GuardrailRecord`] is an organization's policy, managed at `/api/v1/guardrails` and
//! published in its [`TenantConfig`](crate::config::TenantConfig). It applies to a scope (the
//! organization, a team, a key or a route); a request gets the most specific policy that applies
//! to it (key, then team, then route, then organization), and only that one.
//!
//! A policy has:
//! - PII handling ([`PiiPolicy`]): detectors for emails, phone numbers, payment cards (Luhn
//!   checked), IBANs (mod-97 checked), IP addresses and the organization's own regexes, in one
//!   of three modes: `off`, `redact` (each finding is replaced by a placeholder such as
//!   `[EMAIL_1]` before the prompt leaves; with `restore`, placeholders in the answer are put
//!   back, streamed answers too) or `block` (the request is refused);
//! - policy filters: blocked terms (case-insensitive, whole words), a maximum of prompt tokens,
//!   and the tools a request may define.
//!
//! A refusal names the rule ([`Rule`] names such as `pii.email`, `blocked_terms`), never the
//! matched text. Custom patterns use the `regex` crate, whose matching time is linear in the
//! input: patterns that would need backtracking (back-references, look-around) do not compile
//! and are refused on write, as are patterns whose compiled form exceeds a size bound.
//!
//! [`Guardrail::compile`] is the one validation both planes use: the control plane on write, the
//! data plane once per published tenant version.

mod detect;
mod restore;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use detect::{Finding, find_pii, iban_valid, luhn_valid};
pub use restore::{StreamRestorer, Vault};

/// Most custom patterns one policy may have.
pub const MAX_CUSTOM_PATTERNS: usize = 32;
/// Longest custom pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Bound on a compiled custom pattern (the `regex` crate's size limit), in bytes.
pub const MAX_COMPILED_PATTERN_BYTES: usize = 1 << 20;
/// Most blocked terms one policy may have.
pub const MAX_BLOCKED_TERMS: usize = 1000;
/// Longest blocked term, in bytes.
pub const MAX_TERM_LEN: usize = 64;
/// Most tools one policy may allow.
pub const MAX_ALLOWED_TOOLS: usize = 256;

/// An organization's guardrail policy, as published to the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardrailRecord {
    pub id: Uuid,
    pub name: String,
    pub scope: GuardrailScope,
    /// The team, key or route (its id) the policy applies to; `None` for the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<Uuid>,
    #[serde(default)]
    pub pii: PiiPolicy,
    /// Terms a prompt may not contain (case-insensitive, whole words).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_terms: Vec<String>,
    /// The most prompt tokens (the gateway's estimate) a request may send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u32>,
    /// Tool (function) names a request may define; `None` = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
}

/// What a policy applies to. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailScope {
    Organization,
    Team,
    Key,
    Route,
}

impl GuardrailScope {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardrailScope::Organization => "organization",
            GuardrailScope::Team => "team",
            GuardrailScope::Key => "key",
            GuardrailScope::Route => "route",
        }
    }
}

/// PII handling of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiPolicy {
    #[serde(default)]
    pub mode: PiiMode,
    /// Which built-in detectors run (default: all of them).
    #[serde(default = "PiiDetector::all")]
    pub detectors: Vec<PiiDetector>,
    /// The organization's own patterns, each a rule `pii.custom.<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomPattern>,
    /// In `redact` mode, put the original values back where the answer repeats a placeholder.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore: bool,
}

impl Default for PiiPolicy {
    fn default() -> Self {
        Self {
            mode: PiiMode::Off,
            detectors: PiiDetector::all(),
            custom: Vec::new(),
            restore: false,
        }
    }
}

/// Wire names are a contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    #[default]
    Off,
    Redact,
    Block,
}

impl PiiMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiMode::Off => "off",
            PiiMode::Redact => "redact",
            PiiMode::Block => "block",
        }
    }
}

/// A built-in PII detector. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiDetector {
    Email,
    Phone,
    /// Payment card numbers (13–19 digits, Luhn checked).
    Card,
    /// International bank account numbers (ISO 13616, mod-97 checked).
    Iban,
    /// IPv4 and IPv6 addresses.
    Ip,
}

impl PiiDetector {
    pub fn all() -> Vec<PiiDetector> {
        vec![
            PiiDetector::Email,
            PiiDetector::Phone,
            PiiDetector::Card,
            PiiDetector::Iban,
            PiiDetector::Ip,
        ]
    }

    /// The rule name (`pii.email`, …) used in refusals, usage events and logs.
    pub fn rule(self) -> &'static str {
        match self {
            PiiDetector::Email => "pii.email",
            PiiDetector::Phone => "pii.phone",
            PiiDetector::Card => "pii.card",
            PiiDetector::Iban => "pii.iban",
            PiiDetector::Ip => "pii.ip",
        }
    }

    /// The placeholder label: `[EMAIL_1]`, `[PHONE_2]`, …
    pub fn label(self) -> &'static str {
        match self {
            PiiDetector::Email => "EMAIL",
            PiiDetector::Phone => "PHONE",
            PiiDetector::Card => "CARD",
            PiiDetector::Iban => "IBAN",
            PiiDetector::Ip => "IP",
        }
    }
}

/// An organization's own PII pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomPattern {
    /// Lowercase letters, digits and `_` (1–64): the rule is `pii.custom.<name>` and the
    /// placeholder `[<NAME>_n]`.
    pub name: String,
    /// A `regex` crate pattern (linear-time: no back-references or look-around).
    pub pattern: String,
}

/// Names of the non-PII rules.
pub struct Rule;

impl Rule {
    pub const BLOCKED_TERMS: &'static str = "blocked_terms";
    pub const MAX_PROMPT_TOKENS: &'static str = "max_prompt_tokens";
    pub const ALLOWED_TOOLS: &'static str = "allowed_tools";
}

/// Why a policy does not compile. The message names the field and never echoes a secret
/// (patterns are the organization's own config, so naming the pattern is fine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A [`GuardrailRecord`] compiled for use: regexes built once per published version.
#[derive(Debug)]
pub struct Guardrail {
    record: GuardrailRecord,
    /// (rule `pii.custom.<name>`, placeholder label `<NAME>`, compiled pattern).
    custom: Vec<(String, String, regex::Regex)>,
    /// All blocked terms in one case-insensitive, whole-word alternation.
    blocked: Option<regex::Regex>,
}

impl Guardrail {
    /// Validates and compiles `record`; the error says which field is wrong.
    pub fn compile(record: GuardrailRecord) -> Result<Self, PolicyError> {
        if record.name.trim().is_empty() || record.name.len() > 128 {
            return Err(PolicyError("name must be 1-128 bytes".to_owned()));
        }
        match (record.scope, record.scope_id) {
            (GuardrailScope::Organization, Some(_)) => {
                return Err(PolicyError(
                    "scope_id must be absent for scope organization".to_owned(),
                ));
            }
            (GuardrailScope::Team | GuardrailScope::Key | GuardrailScope::Route, None) => {
                return Err(PolicyError(format!(
                    "scope_id is required for scope {}",
                    record.scope.as_str()
                )));
            }
            _ => {}
        }
        if record.pii.custom.len() > MAX_CUSTOM_PATTERNS {
            return Err(PolicyError(format!(
                "pii.custom has more than {MAX_CUSTOM_PATTERNS} patterns"
            )));
        }
        let mut custom = Vec::with_capacity(record.pii.custom.len());
        for p in &record.pii.custom {
            let valid_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_name {
                return Err(PolicyError(format!(
                    "pii.custom name `{}` must be 1-64 lowercase letters, digits or _",
                    p.name
                )));
            }
            if custom
                .iter()
                .any(|(rule, _, _)| rule == &format!("pii.custom.{}", p.name))
            {
                return Err(PolicyError(format!(
                    "pii.custom name `{}` is used twice",
                    p.name
                )));
            }
            if p.pattern.is_empty() || p.pattern.len() > MAX_PATTERN_LEN {
                return Err(PolicyError(format!(
                    "pii.custom `{}`: the pattern must be 1-{MAX_PATTERN_LEN} bytes",
                    p.name
                )));
            }
            let regex = regex::RegexBuilder::new(&p.pattern)
                .size_limit(MAX_COMPILED_PATTERN_BYTES)
                .dfa_size_limit(MAX_COMPILED_PATTERN_BYTES)
                .build()
                .map_err(|e| PolicyError(pattern_error(&p.name, &e)))?;
            if regex.is_match("") {
                return Err(PolicyError(format!(
                    "pii.custom `{}`: the pattern matches the empty string",
                    p.name
                )));
            }
            custom.push((
                format!("pii.custom.{}", p.name),
                p.name.to_ascii_uppercase(),
                regex,
            ));
        }
        if record.blocked_terms.len() > MAX_BLOCKED_TERMS {
            return Err(PolicyError(format!(
                "blocked_terms has more than {MAX_BLOCKED_TERMS} terms"
            )));
        }
        if record
            .blocked_terms
            .iter()
            .any(|t| t.trim().is_empty() || t.len() > MAX_TERM_LEN)
        {
            return Err(PolicyError(format!(
                "blocked_terms entries must be 1-{MAX_TERM_LEN} bytes and not blank"
            )));
        }
        let blocked = if record.blocked_terms.is_empty() {
            None
        } else {
            let pattern = blocked_terms_pattern(&record.blocked_terms);
            Some(
                regex::RegexBuilder::new(&pattern)
                    .size_limit(8 * MAX_COMPILED_PATTERN_BYTES)
                    .dfa_size_limit(8 * MAX_COMPILED_PATTERN_BYTES)
                    .build()
                    .map_err(|_| PolicyError("blocked_terms are too large".to_owned()))?,
            )
        };
        if let Some(tools) = &record.allowed_tools
            && (tools.len() > MAX_ALLOWED_TOOLS
                || tools.iter().any(|t| t.is_empty() || t.len() > 64))
        {
            return Err(PolicyError(format!(
                "allowed_tools must hold at most {MAX_ALLOWED_TOOLS} names of 1-64 bytes"
            )));
        }
        if record.max_prompt_tokens == Some(0) {
            return Err(PolicyError(
                "max_prompt_tokens must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            record,
            custom,
            blocked,
        })
    }

    pub fn record(&self) -> &GuardrailRecord {
        &self.record
    }

    pub fn id(&self) -> Uuid {
        self.record.id
    }

    pub fn pii_mode(&self) -> PiiMode {
        self.record.pii.mode
    }

    /// Whether placeholders in the answer are put back (redact mode with `restore`).
    pub fn restores(&self) -> bool {
        self.record.pii.mode == PiiMode::Redact && self.record.pii.restore
    }

    /// Whether `text` contains one of the blocked terms.
    pub fn has_blocked_term(&self, text: &str) -> bool {
        self.blocked.as_ref().is_some_and(|re| re.is_match(text))
    }

    /// Whether a request may define the tool `name`.
    pub fn allows_tool(&self, name: &str) -> bool {
        self.record
            .allowed_tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == name))
    }

    /// A redactor for one request: scans each text of it in turn, numbering placeholders across
    /// all of them (the same value gets the same placeholder everywhere).
    pub fn redactor(&self) -> Redactor<'_> {
        Redactor {
            guardrail: self,
            vault: Vault::default(),
            counts: BTreeMap::new(),
        }
    }
}

/// Whether the engine's `\w` holds `c` (it differs from `char::is_alphanumeric` on marks,
/// connectors and some numerals).
fn is_word_char(c: char) -> bool {
    static WORD_CHAR: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"^\w$").ok());
    match &*WORD_CHAR {
        Some(re) => re.is_match(c.encode_utf8(&mut [0; 4])),
        None => c.is_alphanumeric() || c == '_',
    }
}

/// One case-insensitive alternation of `terms`, each a whole word: a term that begins (ends)
/// with a word character must not have one before (after) it, so "falcon" is not found in
/// "falconry"; a term that begins (ends) with another character ("c++", ".net") has no such
/// condition on that side, since a word boundary after "+" would demand a word character next
/// and miss "c++ is". Whitespace inside a term matches any run of whitespace, so a line break or
/// a double space does not slip by.
///
/// The condition is written as `(?:^|\W)` and `(?:\W|$)` rather than `\b`: the crate's fast
/// engines cannot evaluate a Unicode `\b` on non-ASCII text and fall back to one whose time
/// grows with the size of the pattern, hundreds of times slower for a long list of terms. The
/// match then takes a neighbouring character along, which does not matter for a yes/no check.
fn blocked_terms_pattern(terms: &[String]) -> String {
    // Terms by their edges: index 2 * (begins with a word character) + (ends with one).
    let mut by_edges: [Vec<String>; 4] = Default::default();
    for term in terms {
        let term = term.trim();
        let starts = term.chars().next().is_some_and(is_word_char);
        let ends = term.chars().next_back().is_some_and(is_word_char);
        let body = term
            .split_whitespace()
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(r"\s+");
        by_edges[usize::from(starts) * 2 + usize::from(ends)].push(body);
    }
    let edges = [
        ("", ""),
        ("", r"(?:\W|$)"),
        (r"(?:^|\W)", ""),
        (r"(?:^|\W)", r"(?:\W|$)"),
    ];
    let alternatives: Vec<String> = by_edges
        .iter()
        .zip(edges)
        .filter(|(bodies, _)| !bodies.is_empty())
        .map(|(bodies, (before, after))| format!("{before}(?:{}){after}", bodies.join("|")))
        .collect();
    format!("(?i)(?:{})", alternatives.join("|"))
}

/// Describes a pattern that does not compile, in one line and without the crate's caret
/// diagram.
fn pattern_error(name: &str, error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(_) => format!(
            "pii.custom `{name}`: the pattern is too large (its compiled form exceeds {MAX_COMPILED_PATTERN_BYTES} bytes)"
        ),
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .map(|l| l.trim_start_matches("error:").trim().to_owned())
                .unwrap_or_else(|| "invalid syntax".to_owned());
            let hint = if reason.contains("look-around") || reason.contains("backreference") {
                " (only linear-time patterns are accepted: no back-references or look-around)"
            } else {
                ""
            };
            format!("pii.custom `{name}`: the pattern does not compile: {reason}{hint}")
        }
        _ => format!("pii.custom `{name}`: the pattern does not compile"),
    }
}

/// Scans one request's texts for PII (see [`Guardrail::redactor`]).
pub struct Redactor<'g> {
    guardrail: &'g Guardrail,
    vault: Vault,
    /// Findings per rule.
    counts: BTreeMap<String, u32>,
}

impl Redactor<'_> {
    /// Scans `text`. Findings are counted whatever the mode; in `redact` mode the text with
    /// every finding replaced by its placeholder is returned (`None` when nothing was found or
    /// the mode does not rewrite).
    pub fn scan(&mut self, text: &str) -> Option<String> {
        let policy = &self.guardrail.record.pii;
        if policy.mode == PiiMode::Off {
            return None;
        }
        let findings = find_pii(text, &policy.detectors, &self.guardrail.custom);
        if findings.is_empty() {
            return None;
        }
        for f in &findings {
            *self.counts.entry(f.rule.clone()).or_default() += 1;
        }
        if policy.mode != PiiMode::Redact {
            return None;
        }
        let mut out = String::with_capacity(text.len() + findings.len() * 8);
        let mut at = 0;
        for f in &findings {
            out.push_str(&text[at..f.start]);
            out.push_str(&self.vault.placeholder(&f.label, &text[f.start..f.end]));
            at = f.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Rules that matched and how often, by rule name.
    pub fn findings(&self) -> &BTreeMap<String, u32> {
        &self.counts
    }

    /// The placeholders handed out, for restoring the answer.
    pub fn into_vault(self) -> Arc<Vault> {
        Arc::new(self.vault)
    }
}

#[cfg(test)]
mod tests;
