//! Rollup keys and aggregation: how usage events become the rows of `usage_rollups`.
//!
//! Pure code, no IO: [`aggregate`] turns a batch of (new) events into one [`Aggregate`] per
//! rollup key, and [`Aggregate::merge`] adds one aggregate into another (counts and sums add,
//! error classes add per class, sketches merge). `crate::usage_store` reads the stored rows of
//! those keys, merges and writes them back in the transaction that inserts the raw rows.
//!
//! A rollup key is `(tenant, grain, bucket_start, dims_hash)`. Each event contributes to, for
//! each grain (minute, hour, day), the untagged row of its dimensions (`tag_key = ''`) and one
//! row per tag it carries (the same dimensions plus that tag). `dims_hash` is the first 128 bits
//! of a SHA-256 over every dimension (length-prefixed, with a marker for NULL, so no two
//! different combinations can collide by concatenation), in hex.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use shared::usage::{UsageEvent, UsageOutcome};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::entities::usage_rollup;
use crate::sketch::Sketch;

/// A rollup bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Hour, Grain::Day];

    /// Wire name, stored in `usage_rollups.grain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// Bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Grain::Minute => 60,
            Grain::Hour => 3_600,
            Grain::Day => 86_400,
        }
    }

    /// Unix seconds of the start of the bucket holding `t` (UTC buckets).
    pub fn bucket_start(self, t: OffsetDateTime) -> i64 {
        let s = t.unix_timestamp();
        s - s.rem_euclid(self.seconds())
    }
}

/// Every dimension of a rollup row (the tag included; `''`/`''` = untagged).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dims {
    pub team_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
    pub model: String,
    pub provider: Option<String>,
    pub route: Option<String>,
    pub region: Option<String>,
    pub endpoint: String,
    pub tag_key: String,
    pub tag_value: String,
}

impl Dims {
    /// The untagged dimensions of `e`.
    pub fn of(e: &UsageEvent) -> Dims {
        Dims {
            team_id: e.team_id,
            key_id: e.key_id,
            deployment_id: e.deployment_id,
            model: e.model.clone(),
            provider: e.provider.clone(),
            route: e.route.clone(),
            region: e.region.clone(),
            endpoint: e.endpoint.clone(),
            tag_key: String::new(),
            tag_value: String::new(),
        }
    }

    /// These dimensions with a tag.
    pub fn with_tag(&self, key: &str, value: &str) -> Dims {
        Dims {
            tag_key: key.to_owned(),
            tag_value: value.to_owned(),
            ..self.clone()
        }
    }

    /// Hex hash of every dimension (see the module docs).
    pub fn hash(&self) -> String {
        fn put(h: &mut Sha256, v: Option<&[u8]>) {
            match v {
                None => h.update([0u8]),
                Some(b) => {
                    h.update([1u8]);
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
            }
        }
        let mut h = Sha256::new();
        put(
            &mut h,
            self.team_id.as_ref().map(|u| u.as_bytes().as_slice()),
        );
        put(
            &mut h,
            self.key_id.as_ref().map(|u| u.as_bytes().as_slice()),
        );
        put(
            &mut h,
            self.deployment_id.as_ref().map(|u| u.as_bytes().as_slice()),
        );
        put(&mut h, Some(self.model.as_bytes()));
        put(&mut h, self.provider.as_deref().map(str::as_bytes));
        put(&mut h, self.route.as_deref().map(str::as_bytes));
        put(&mut h, self.region.as_deref().map(str::as_bytes));
        put(&mut h, Some(self.endpoint.as_bytes()));
        put(&mut h, Some(self.tag_key.as_bytes()));
        put(&mut h, Some(self.tag_value.as_bytes()));
        hex::encode(&h.finalize()[..16])
    }
}

/// The unique key of a rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub tenant_id: Uuid,
    pub grain: Grain,
    pub bucket_start: i64,
    pub dims_hash: String,
}

/// The measures of a rollup row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub requests: i64,
    pub successes: i64,
    pub cache_hits: i64,
    pub tokens_estimated: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    pub error_classes: BTreeMap<String, i64>,
    pub latency: Sketch,
    pub ttft: Sketch,
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The error class an event is counted under, if it failed: the event's own, else derived from
/// its status and code (older data planes sent none).
pub fn error_class_of(e: &UsageEvent) -> Option<String> {
    if e.outcome == UsageOutcome::Success {
        return None;
    }
    Some(e.error_class.clone().unwrap_or_else(|| {
        shared::usage::error_class(e.status, e.error_code.as_deref()).to_owned()
    }))
}

impl Aggregate {
    /// Adds one event.
    pub fn add(&mut self, e: &UsageEvent) {
        self.requests += 1;
        self.successes += i64::from(e.outcome == UsageOutcome::Success);
        self.cache_hits += i64::from(e.cache_hit);
        self.tokens_estimated += i64::from(e.tokens_estimated);
        self.prompt_tokens = self.prompt_tokens.saturating_add(clamp(e.prompt_tokens));
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(clamp(e.completion_tokens));
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(clamp(e.cache_read_tokens));
        self.cost_micros = self.cost_micros.saturating_add(e.cost_micros);
        if let Some(class) = error_class_of(e) {
            *self.error_classes.entry(class).or_default() += 1;
        }
        self.latency.insert(e.latency_ms);
        if let Some(ttft) = e.ttft_ms {
            self.ttft.insert(ttft);
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Aggregate) {
        self.requests = self.requests.saturating_add(other.requests);
        self.successes = self.successes.saturating_add(other.successes);
        self.cache_hits = self.cache_hits.saturating_add(other.cache_hits);
        self.tokens_estimated = self.tokens_estimated.saturating_add(other.tokens_estimated);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
        for (class, n) in &other.error_classes {
            let cur = self.error_classes.entry(class.clone()).or_default();
            *cur = cur.saturating_add(*n);
        }
        self.latency.merge(&other.latency);
        self.ttft.merge(&other.ttft);
    }

    /// The measures of a stored row. A malformed sketch or error-class JSON (never written by
    /// this code) reads as empty rather than wedging ingestion.
    pub fn from_row(row: &usage_rollup::Model) -> Aggregate {
        Aggregate {
            requests: row.requests,
            successes: row.successes,
            cache_hits: row.cache_hits,
            tokens_estimated: row.tokens_estimated,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            cache_read_tokens: row.cache_read_tokens,
            cost_micros: row.cost_micros,
            error_classes: serde_json::from_str(&row.error_classes).unwrap_or_default(),
            latency: Sketch::decode(&row.latency_sketch).unwrap_or_default(),
            ttft: Sketch::decode(&row.ttft_sketch).unwrap_or_default(),
        }
    }

    /// The stored row of `key`/`dims` holding these measures.
    pub fn to_row(&self, key: &RollupKey, dims: &Dims, now: OffsetDateTime) -> usage_rollup::Model {
        usage_rollup::Model {
            tenant_id: key.tenant_id,
            grain: key.grain.as_str().to_owned(),
            bucket_start: key.bucket_start,
            dims_hash: key.dims_hash.clone(),
            team_id: dims.team_id,
            key_id: dims.key_id,
            deployment_id: dims.deployment_id,
            model: dims.model.clone(),
            provider: dims.provider.clone(),
            route: dims.route.clone(),
            region: dims.region.clone(),
            endpoint: dims.endpoint.clone(),
            tag_key: dims.tag_key.clone(),
            tag_value: dims.tag_value.clone(),
            requests: self.requests,
            successes: self.successes,
            cache_hits: self.cache_hits,
            tokens_estimated: self.tokens_estimated,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cost_micros: self.cost_micros,
            error_classes: serde_json::to_string(&self.error_classes)
                .unwrap_or_else(|_| "{}".to_owned()),
            latency_sketch: self.latency.encode(),
            ttft_sketch: self.ttft.encode(),
            updated_at: now.to_offset(UtcOffset::UTC),
        }
    }
}

/// One rollup row's worth of a batch: its dimensions and measures.
#[derive(Debug, Clone)]
pub struct Delta {
    pub dims: Dims,
    pub agg: Aggregate,
}

/// The rollup deltas of `events` (each counted once per grain in its untagged row and once per
/// tag). The caller passes only events not stored before.
pub fn aggregate<'a>(
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> HashMap<RollupKey, Delta> {
    let mut out: HashMap<RollupKey, Delta> = HashMap::new();
    for e in events {
        let started = e.started_at.to_offset(UtcOffset::UTC);
        let base = Dims::of(e);
        let mut all = Vec::with_capacity(1 + e.tags.len());
        all.push(base.clone());
        for (k, v) in &e.tags {
            all.push(base.with_tag(k, v));
        }
        for dims in all {
            let hash = dims.hash();
            for grain in Grain::ALL {
                let key = RollupKey {
                    tenant_id: e.tenant_id,
                    grain,
                    bucket_start: grain.bucket_start(started),
                    dims_hash: hash.clone(),
                };
                out.entry(key)
                    .or_insert_with(|| Delta {
                        dims: dims.clone(),
                        agg: Aggregate::default(),
                    })
                    .agg
                    .add(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(tags: &[(&str, &str)]) -> UsageEvent {
        UsageEvent {
            id: Uuid::now_v7(),
            tenant_id: Uuid::nil(),
            key_id: None,
            team_id: None,
            model: "gpt".into(),
            deployment_id: None,
            provider_id: None,
            provider: Some("mock".into()),
            upstream_model: None,
            endpoint: "chat.completions".into(),
            stream: false,
            status: 502,
            outcome: UsageOutcome::Error,
            error_code: Some("upstream_timeout".into()),
            prompt_tokens: 10,
            completion_tokens: 5,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            tokens_estimated: false,
            cost_micros: 7,
            latency_ms: 120,
            ttft_ms: None,
            started_at: datetime!(2026-12-06 10:59:59 UTC),
            route: None,
            failed_attempts: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            region: None,
            error_class: None,
            cache_hit: false,
            payload: None,
            guardrails: Vec::new(),
        }
    }

    #[test]
    fn buckets_are_utc_aligned() {
        let t = datetime!(2026-12-06 10:59:59 UTC);
        assert_eq!(Grain::Minute.bucket_start(t), t.unix_timestamp() - 59);
        assert_eq!(Grain::Hour.bucket_start(t), t.unix_timestamp() - 3599);
        assert_eq!(
            Grain::Day.bucket_start(t),
            datetime!(2026-12-06 00:00 UTC).unix_timestamp()
        );
    }

    #[test]
    fn each_event_counts_once_untagged_and_once_per_tag_in_every_grain() {
        let events = [
            event(&[("team", "a"), ("env", "prod")]),
            event(&[("team", "a")]),
        ];
        let deltas = aggregate(&events);
        // Untagged + team=a + env=prod, three grains each.
        assert_eq!(deltas.len(), 9);
        let untagged: Vec<_> = deltas
            .values()
            .filter(|d| d.dims.tag_key.is_empty())
            .collect();
        assert_eq!(untagged.len(), 3);
        assert!(untagged.iter().all(|d| d.agg.requests == 2
            && d.agg.cost_micros == 14
            && d.agg.error_classes.get("timeout") == Some(&2)
            && d.agg.latency.count() == 2));
        let env: Vec<_> = deltas
            .values()
            .filter(|d| d.dims.tag_key == "env")
            .collect();
        assert!(env.iter().all(|d| d.agg.requests == 1));
    }

    #[test]
    fn the_hash_separates_every_dimension() {
        let base = Dims::of(&event(&[]));
        let tagged = base.with_tag("a", "bc");
        let shifted = base.with_tag("ab", "c");
        assert_ne!(base.hash(), tagged.hash());
        assert_ne!(tagged.hash(), shifted.hash());
        assert_eq!(tagged.hash(), base.with_tag("a", "bc").hash());
        assert_eq!(base.hash().len(), 32);
    }

    #[test]
    fn merging_a_stored_row_adds_up() {
        let e = event(&[]);
        let mut a = Aggregate::default();
        a.add(&e);
        let key = RollupKey {
            tenant_id: e.tenant_id,
            grain: Grain::Hour,
            bucket_start: 0,
            dims_hash: "x".into(),
        };
        let row = a.to_row(&key, &Dims::of(&e), OffsetDateTime::now_utc());
        let mut b = Aggregate::from_row(&row);
        b.merge(&a);
        assert_eq!(b.requests, 2);
        assert_eq!(b.latency.count(), 2);
        assert_eq!(b.error_classes.get("timeout"), Some(&2));
    }
}
