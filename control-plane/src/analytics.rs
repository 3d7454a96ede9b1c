//! Analytics over the usage rollups: the query side of `GET /analytics/timeseries` and
//! `GET /analytics/breakdown` (`crate::http::analytics` holds the HTTP shapes).
//!
//! Every answer is computed from `usage_rollups` (written by `crate::usage_store` in the same
//! transaction as the raw rows), never from `usage_records`: counts and sums are added up, and
//! latency and TTFT percentiles come from merging the rows' [`Sketch`]es, so the cost of a
//! query depends on the number of rollup rows in the range, not on the number of requests.
//!
//! **Grains.** Rollups exist per minute (kept [`MINUTE_ROLLUP_RETENTION`]), hour and day. A
//! range is cut into at most five segments ([`segments`]): whole days in the middle, whole hours
//! at the edges, whole minutes at the very edges, so each part is read at the coarsest grain that
//! covers it exactly and no event is counted twice. A timeseries never uses a grain coarser
//! than its interval (a day row cannot be split into hours). Ranges are first aligned to whole
//! minutes (from rounded down, to rounded up); an edge older than the minute retention is
//! rounded out to the hour. The effective range is part of every answer.
//!
//! **Tags.** Every event is counted once in the untagged rows (`tag_key = ''`) and once per tag
//! in rows carrying that tag: totals and non-tag groupings read the untagged rows, `group_by`
//! a tag key reads that key's rows grouped by value, and a tag filter `k:v` reads the rows of
//! that key and value. So one query involves at most one tag key.
//!
//! **Error bound.** Counts, tokens and costs are exact. Percentiles are nearest-rank with a
//! relative error of at most [`crate::sketch::RELATIVE_ACCURACY`] (1%) whatever the grouping.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use sea_orm::sea_query::{
    Alias, Cond, Expr, Order, PostgresQueryBuilder, Query, SqliteQueryBuilder,
};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sketch::Sketch;

/// How long minute rollups are kept; older ranges are read at hour grain.
pub const MINUTE_ROLLUP_RETENTION: i64 = 48 * 3600;

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// A rollup grain (and a timeseries interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    pub fn parse(s: &str) -> Option<Grain> {
        match s {
            "minute" => Some(Grain::Minute),
            "hour" => Some(Grain::Hour),
            "day" => Some(Grain::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Minute => "minute",
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }

    /// Length in seconds (UTC days have no leap seconds in unix time).
    pub fn secs(self) -> i64 {
        match self {
            Grain::Minute => MINUTE,
            Grain::Hour => HOUR,
            Grain::Day => DAY,
        }
    }
}

/// What a breakdown or timeseries groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    Model,
    Provider,
    Deployment,
    Route,
    Team,
    Key,
    Region,
    Endpoint,
    /// The values of one tag key.
    Tag(String),
}

impl Dimension {
    /// `model`, `provider`, `deployment`, `route`, `team`, `key`, `region`, `endpoint` or
    /// `tag:<key>`.
    pub fn parse(s: &str) -> Option<Dimension> {
        Some(match s {
            "model" => Dimension::Model,
            "provider" => Dimension::Provider,
            "deployment" => Dimension::Deployment,
            "route" => Dimension::Route,
            "team" => Dimension::Team,
            "key" => Dimension::Key,
            "region" => Dimension::Region,
            "endpoint" => Dimension::Endpoint,
            other => {
                let key = other.strip_prefix("tag:")?;
                if key.is_empty() || key.len() > shared::usage::MAX_TAG_KEY_LEN {
                    return None;
                }
                Dimension::Tag(key.to_owned())
            }
        })
    }

    pub fn label(&self) -> String {
        match self {
            Dimension::Model => "model".to_owned(),
            Dimension::Provider => "provider".to_owned(),
            Dimension::Deployment => "deployment".to_owned(),
            Dimension::Route => "route".to_owned(),
            Dimension::Team => "team".to_owned(),
            Dimension::Key => "key".to_owned(),
            Dimension::Region => "region".to_owned(),
            Dimension::Endpoint => "endpoint".to_owned(),
            Dimension::Tag(k) => format!("tag:{k}"),
        }
    }

    /// The group value of a rollup row (null when the dimension is unset on it).
    fn value(&self, row: &RollupRow) -> Option<String> {
        match self {
            Dimension::Model => Some(row.model.clone()),
            Dimension::Provider => row.provider.clone(),
            Dimension::Deployment => row.deployment_id.map(|u| u.to_string()),
            Dimension::Route => row.route.clone(),
            Dimension::Team => row.team_id.map(|u| u.to_string()),
            Dimension::Key => row.key_id.map(|u| u.to_string()),
            Dimension::Region => row.region.clone(),
            Dimension::Endpoint => Some(row.endpoint.clone()),
            Dimension::Tag(_) => Some(row.tag_value.clone()),
        }
    }
}

/// Filters on the rollup dimensions (all must match).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub deployment_id: Option<Uuid>,
    pub route: Option<String>,
    pub team_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// `(key, value)`.
    pub tag: Option<(String, String)>,
}

/// One analytics question: a tenant, an effective range (unix seconds, `to` exclusive), the
/// grain ceiling, a grouping and filters.
#[derive(Debug, Clone)]
pub struct AnalyticsQuery {
    pub tenant_id: Uuid,
    pub from: i64,
    pub to: i64,
    /// The coarsest grain segments may use (a timeseries' interval; `Day` for breakdowns).
    pub max_grain: Grain,
    pub group_by: Option<Dimension>,
    pub filters: Filters,
}

/// Why a range or grouping cannot be answered from the rollups (a 400 for the caller).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// One part of a range read at one grain: rows with `bucket_start` in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub grain: Grain,
    pub start: i64,
    pub end: i64,
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

fn ceil_to(t: i64, step: i64) -> i64 {
    -floor_to(-t, step)
}

/// Aligns a requested range (unix seconds) to what the rollups can answer exactly: whole
/// minutes, and whole hours at an edge older than the minute retention (`now` − 48 h), or
/// whole hours everywhere when `min_grain` is `Hour` (a timeseries by hour), and so on.
/// Returns the effective `(from, to)`.
pub fn align(from: i64, to: i64, min_grain: Grain, now: i64) -> (i64, i64) {
    let minute_floor = now - MINUTE_ROLLUP_RETENTION;
    let step_at = |t: i64| {
        if min_grain == Grain::Minute && t >= minute_floor {
            MINUTE
        } else {
            min_grain.secs().max(HOUR)
        }
    };
    let from_a = floor_to(from, step_at(from));
    let to_a = ceil_to(to, step_at(floor_to(to, MINUTE)));
    (from_a, to_a.max(from_a))
}

/// Cuts an aligned range into segments of the coarsest grain (at most `max_grain`) that cover
/// it exactly: `[from, to)` must be aligned by [`align`].
pub fn segments(from: i64, to: i64, max_grain: Grain) -> Vec<Segment> {
    let mut out = Vec::new();
    cover(from, to, max_grain, &mut out);
    out.sort_by_key(|s| s.start);
    out
}

fn cover(from: i64, to: i64, grain: Grain, out: &mut Vec<Segment>) {
    if from >= to {
        return;
    }
    let step = grain.secs();
    let inner_from = ceil_to(from, step);
    let inner_to = floor_to(to, step);
    let finer = match grain {
        Grain::Day => Some(Grain::Hour),
        Grain::Hour => Some(Grain::Minute),
        Grain::Minute => None,
    };
    match finer {
        None => out.push(Segment {
            grain,
            start: from,
            end: to,
        }),
        Some(finer) if inner_from >= inner_to => cover(from, to, finer, out),
        Some(finer) => {
            cover(from, inner_from, finer, out);
            out.push(Segment {
                grain,
                start: inner_from,
                end: inner_to,
            });
            cover(inner_to, to, finer, out);
        }
    }
}

/// The columns of `usage_rollups` a query reads.
#[derive(Debug, FromQueryResult)]
struct RollupRow {
    bucket_start: i64,
    team_id: Option<Uuid>,
    key_id: Option<Uuid>,
    deployment_id: Option<Uuid>,
    model: String,
    provider: Option<String>,
    route: Option<String>,
    region: Option<String>,
    endpoint: String,
    tag_value: String,
    requests: i64,
    successes: i64,
    cache_hits: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_micros: i64,
    error_classes: Option<String>,
    latency_sketch: Option<Vec<u8>>,
    ttft_sketch: Option<Vec<u8>>,
}

/// Sums and merged sketches of a set of rollup rows.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub requests: i64,
    pub successes: i64,
    pub cache_hits: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
    pub error_classes: BTreeMap<String, i64>,
    pub latency: Sketch,
    pub ttft: Sketch,
}

impl Aggregate {
    fn add(&mut self, row: &RollupRow) -> anyhow::Result<()> {
        self.requests += row.requests;
        self.successes += row.successes;
        self.cache_hits += row.cache_hits;
        self.prompt_tokens += row.prompt_tokens;
        self.completion_tokens += row.completion_tokens;
        self.cost_micros += row.cost_micros;
        if let Some(json) = row.error_classes.as_deref().filter(|s| !s.is_empty()) {
            let classes: BTreeMap<String, i64> = serde_json::from_str(json)
                .map_err(|e| anyhow::anyhow!("malformed error_classes in a rollup row: {e}"))?;
            for (class, n) in classes {
                *self.error_classes.entry(class).or_default() += n;
            }
        }
        if let Some(bytes) = row.latency_sketch.as_deref().filter(|b| !b.is_empty()) {
            self.latency.merge(&Sketch::decode(bytes)?);
        }
        if let Some(bytes) = row.ttft_sketch.as_deref().filter(|b| !b.is_empty()) {
            self.ttft.merge(&Sketch::decode(bytes)?);
        }
        Ok(())
    }

    /// Merges another aggregate into this one.
    pub fn merge(&mut self, other: &Aggregate) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.cache_hits += other.cache_hits;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost_micros += other.cost_micros;
        for (class, n) in &other.error_classes {
            *self.error_classes.entry(class.clone()).or_default() += n;
        }
        self.latency.merge(&other.latency);
        self.ttft.merge(&other.ttft);
    }

    pub fn total_tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Cost per 1000 tokens in µ$, rounded half up to a whole µ$; `None` without tokens.
    pub fn cost_per_1k_micros(&self) -> Option<i64> {
        let tokens = i128::from(self.total_tokens());
        if tokens <= 0 {
            return None;
        }
        let scaled = i128::from(self.cost_micros) * 1000;
        let rounded = (2 * scaled + tokens).div_euclid(2 * tokens);
        Some(i64::try_from(rounded).unwrap_or(i64::MAX))
    }

    /// Successes over requests, `None` without requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.successes as f64 / self.requests as f64)
    }
}

/// The answer of [`run`]: aggregates keyed by (bucket start or `None`, group value).
pub type Groups = HashMap<(Option<i64>, Option<String>), Aggregate>;

/// Reads the rollup rows of `q` and aggregates them per group, and per bucket of
/// `bucket_secs` (aligned to the unix epoch, so to UTC days) when given. Rows are streamed, so
/// memory grows with the number of groups × buckets, not with the rows read.
pub async fn run<C: ConnectionTrait + sea_orm::StreamTrait>(
    db: &C,
    q: &AnalyticsQuery,
    bucket_secs: Option<i64>,
) -> anyhow::Result<Groups> {
    let stmt = statement(ConnectionTrait::get_database_backend(db), q)?;
    let mut groups: Groups = HashMap::new();
    let Some(stmt) = stmt else {
        return Ok(groups);
    };
    let mut rows = RollupRow::find_by_statement(stmt).stream(db).await?;
    while let Some(row) = rows.try_next().await? {
        let bucket = bucket_secs.map(|s| floor_to(row.bucket_start, s));
        let group = q.group_by.as_ref().and_then(|d| d.value(&row));
        groups.entry((bucket, group)).or_default().add(&row)?;
    }
    Ok(groups)
}

/// The SELECT of `q`; `None` when the range is empty.
fn statement(backend: DbBackend, q: &AnalyticsQuery) -> anyhow::Result<Option<Statement>> {
    use sea_orm::sea_query::ExprTrait;
    let segs = segments(q.from, q.to, q.max_grain);
    if segs.is_empty() {
        return Ok(None);
    }
    let col = |name: &str| Expr::col(Alias::new(name));
    let mut select = Query::select();
    select.from(Alias::new("usage_rollups")).columns(
        [
            "bucket_start",
            "team_id",
            "key_id",
            "deployment_id",
            "model",
            "provider",
            "route",
            "region",
            "endpoint",
            "tag_value",
            "requests",
            "successes",
            "cache_hits",
            "prompt_tokens",
            "completion_tokens",
            "cost_micros",
            "error_classes",
            "latency_sketch",
            "ttft_sketch",
        ]
        .map(Alias::new),
    );
    select.and_where(col("tenant_id").eq(q.tenant_id));
    // Which tag rows: a tag grouping and a tag filter must name the same key.
    let tag_key = match (&q.group_by, &q.filters.tag) {
        (Some(Dimension::Tag(k)), Some((fk, _))) if k != fk => {
            anyhow::bail!("a tag grouping and a tag filter on different keys")
        }
        (Some(Dimension::Tag(k)), _) => k.clone(),
        (_, Some((k, _))) => k.clone(),
        _ => String::new(),
    };
    select.and_where(col("tag_key").eq(tag_key));
    if let Some((_, v)) = &q.filters.tag {
        select.and_where(col("tag_value").eq(v.clone()));
    }
    let mut any = Cond::any();
    for s in &segs {
        any = any.add(
            Cond::all()
                .add(col("grain").eq(s.grain.as_str()))
                .add(col("bucket_start").gte(s.start))
                .add(col("bucket_start").lt(s.end)),
        );
    }
    select.cond_where(any);
    let f = &q.filters;
    for (name, value) in [
        ("model", &f.model),
        ("provider", &f.provider),
        ("route", &f.route),
        ("region", &f.region),
        ("endpoint", &f.endpoint),
    ] {
        if let Some(v) = value {
            select.and_where(col(name).eq(v.clone()));
        }
    }
    for (name, value) in [
        ("deployment_id", f.deployment_id),
        ("team_id", f.team_id),
        ("key_id", f.key_id),
    ] {
        if let Some(v) = value {
            select.and_where(col(name).eq(v));
        }
    }
    select.order_by(Alias::new("bucket_start"), Order::Asc);
    let (sql, values) = match backend {
        DbBackend::Sqlite => select.build(SqliteQueryBuilder),
        _ => select.build(PostgresQueryBuilder),
    };
    Ok(Some(Statement::from_sql_and_values(backend, sql, values)))
}

/// Unix seconds of a timestamp.
pub fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NOW: i64 = 1_800_000_000 - 1_800_000_000 % DAY + 12 * HOUR + 30 * MINUTE;

    #[test]
    fn segments_cover_the_range_once_at_the_coarsest_grain() {
        let from = NOW - 3 * DAY - 5 * HOUR - 7 * MINUTE;
        let to = NOW;
        let (f, t) = align(from, to, Grain::Minute, NOW);
        // The old edge is rounded out to the hour (minute rows are gone); the recent one is not.
        assert_eq!(f, floor_to(from, HOUR));
        assert_eq!(t, to);
        let segs = segments(f, t, Grain::Day);
        let mut at = f;
        for s in &segs {
            assert_eq!(s.start, at, "{segs:?}");
            assert_eq!(s.start % s.grain.secs(), 0);
            assert_eq!(s.end % s.grain.secs(), 0);
            at = s.end;
        }
        assert_eq!(at, t);
        assert!(segs.iter().any(|s| s.grain == Grain::Day));
        assert!(segs.len() <= 5);
        // A timeseries by hour never reads day rows.
        assert!(
            segments(f, t, Grain::Hour)
                .iter()
                .all(|s| s.grain != Grain::Day)
        );
    }

    #[test]
    fn recent_ranges_align_to_minutes() {
        let (f, t) = align(NOW - 90 * MINUTE + 10, NOW + 5, Grain::Minute, NOW);
        assert_eq!(f, NOW - 90 * MINUTE);
        assert_eq!(t, NOW + MINUTE);
        let (f, t) = align(NOW - 90 * MINUTE + 10, NOW + 5, Grain::Hour, NOW);
        assert_eq!(f % HOUR, 0);
        assert_eq!(t % HOUR, 0);
    }

    #[test]
    fn dimensions_parse() {
        assert_eq!(Dimension::parse("team"), Some(Dimension::Team));
        assert_eq!(
            Dimension::parse("tag:env"),
            Some(Dimension::Tag("env".into()))
        );
        assert_eq!(Dimension::parse("tag:"), None);
        assert_eq!(Dimension::parse("colour"), None);
    }

    #[test]
    fn cost_per_1k_rounds_half_up() {
        let a = Aggregate {
            prompt_tokens: 2000,
            completion_tokens: 1000,
            cost_micros: 1_000,
            ..Default::default()
        };
        // 1000 µ$ × 1000 / 3000 = 333.33 → 333.
        assert_eq!(a.cost_per_1k_micros(), Some(333));
        assert_eq!(Aggregate::default().cost_per_1k_micros(), None);
    }
}
