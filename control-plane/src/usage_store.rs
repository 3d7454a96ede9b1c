//! [`DbUsageWriter`]: the database side of usage ingest (`crate::ingest` feeds it).
//!
//! A batch is written in one transaction: `write` returns `Ok` only once all of it is durable,
//! which is what lets the ingest task acknowledge the batch afterwards. In that transaction:
//!
//! 1. **Raw rows.** Events are inserted into `usage_records` with `ON CONFLICT DO NOTHING
//!    RETURNING id` (PostgreSQL, and SQLite ≥ 3.35), so a re-delivered event (same id, same
//!    `started_at`) is skipped, and the writer learns which events were new. Events repeated
//!    within one batch are collapsed first.
//! 2. **Rollups.** Only the new events are aggregated (`crate::rollup`) into minute/hour/day
//!    deltas, and merged into `usage_rollups`: the stored rows of the touched keys are read,
//!    merged in memory (counts add, error classes add, sketches merge) and upserted. On
//!    PostgreSQL the transaction first takes `pg_advisory_xact_lock` of every tenant of the
//!    batch (in ascending key order, so two writers cannot deadlock): two control planes
//!    ingesting the same tenant take turns, and neither overwrites the other's merge. SQLite has
//!    one writer. Because rollups are written with the raw rows and only for new rows, they are
//!    exact.
//! 3. **Payloads** (`usage_payloads`), for events that carry one (the organization opted in).
//! 4. **Keys.** `api_keys.last_used_at` of each distinct key of the batch is raised to the latest
//!    `started_at` of that key's events (never lowered, so late or re-delivered batches are
//!    harmless).
//!
//! **Statements.** On PostgreSQL (the `pg` module) the batch goes through sqlx on sea-orm's pool,
//! and each step above is **one statement of fixed text whatever the batch size**, binding whole
//! columns as arrays: `INSERT … SELECT … FROM unnest($1::uuid[], $2::uuid[], …)`, the rollup read
//! `… WHERE tenant_id = ANY($1) AND … dims_hash = ANY($4)`, `UPDATE api_keys … FROM unnest(…)`,
//! `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) … ORDER BY k`. So a batch is six
//! round trips, each statement is parsed and planned once per connection (sqlx caches prepared
//! statements), and nothing is built per row but the arrays. (Multi-row `VALUES` lists of a few
//! thousand bind parameters, of a different length each batch, cost more than the writes; that
//! path, through sea-orm, is kept for SQLite, in statements of `ROWS_PER_STATEMENT` rows.)
//!
//! **Partitions (PostgreSQL).** `usage_records` is partitioned by UTC day
//! (`usage_records_pYYYYMMDD`, migration 000041). Before the transaction, the writer makes
//! sure the partition of every day in the batch exists (`CREATE TABLE IF NOT EXISTS … PARTITION
//! OF …`, in its own statement because creating a partition locks the parent table), so an event
//! of any date (a spool replayed days later) lands. Known days are cached in memory; a failed
//! batch clears the cache (the retention worker may have dropped a partition), so the retry
//! checks again. A concurrent creator is tolerated: if the `CREATE` fails, the writer checks
//! whether the partition now exists.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::future::BoxFuture;
use sea_orm::sea_query::{Condition, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryTrait, Statement, TransactionTrait,
};
use shared::usage::UsageEvent;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::entities::{api_key, usage_payload, usage_record, usage_rollup};
use crate::ingest::UsageWriter;
use crate::rollup::{self, Aggregate, Grain, RollupKey};

/// Rows per INSERT on SQLite: 31 columns × 200 rows stays well below SQLite's (32 766) and PostgreSQL's
/// (65 535) bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 200;
/// Keys per `IN (…)` when reading stored rollup rows.
const KEYS_PER_LOOKUP: usize = 500;

/// Writes usage events into `usage_records`, `usage_rollups` and `usage_payloads`.
#[derive(Clone)]
pub struct DbUsageWriter {
    db: DatabaseConnection,
    /// Days whose partition is known to exist (PostgreSQL).
    partitions: Arc<Mutex<HashSet<Date>>>,
}

impl DbUsageWriter {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            partitions: Arc::default(),
        }
    }

    /// Inserts `events`, skipping ids already stored, and adds the new ones to the rollups.
    /// Returns how many rows were new.
    pub async fn insert(&self, events: &[UsageEvent]) -> anyhow::Result<u64> {
        let result = self.insert_inner(events).await;
        if result.is_err() {
            // A partition may have been dropped under us (retention); check again next time.
            self.partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        result
    }

    async fn insert_inner(&self, events: &[UsageEvent]) -> anyhow::Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        // The same event twice in one batch is one event.
        let mut seen = HashSet::with_capacity(events.len());
        let events: Vec<&UsageEvent> = events.iter().filter(|e| seen.insert(e.id)).collect();
        let pg = self.db.get_database_backend() == DbBackend::Postgres;
        if pg {
            let days: BTreeSet<Date> = events.iter().map(|e| utc(e.started_at).date()).collect();
            let missing: Vec<Date> = {
                let known = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
                days.into_iter().filter(|d| !known.contains(d)).collect()
            };
            for day in missing {
                ensure_partition(&self.db, day).await?;
                self.partitions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(day);
            }
            return pg::insert(self.db.get_postgres_connection_pool(), &events).await;
        }

        // SQLite (one writer, so no locking): the same steps through sea-orm.
        let now = OffsetDateTime::now_utc();
        let tx = self
            .db
            .begin()
            .await
            .context("starting the usage transaction")?;
        let mut new_ids: HashSet<Uuid> = HashSet::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut stmt = usage_record::Entity::insert_many(chunk.iter().map(|e| to_row(e, now)))
                .into_query();
            stmt.on_conflict(OnConflict::new().do_nothing().to_owned())
                .returning_col(usage_record::Column::Id);
            let rows = tx
                .query_all(&stmt)
                .await
                .context("inserting usage records")?;
            for row in rows {
                new_ids.insert(row.try_get::<Uuid>("", "id")?);
            }
        }
        let fresh: Vec<&UsageEvent> = events
            .iter()
            .copied()
            .filter(|e| new_ids.contains(&e.id))
            .collect();

        merge_rollups(&tx, &fresh, now).await?;
        insert_payloads(&tx, &fresh).await?;
        touch_keys(&tx, &events).await?;
        tx.commit().await.context("committing usage records")?;
        Ok(fresh.len() as u64)
    }
}

impl UsageWriter for DbUsageWriter {
    fn write<'a>(&'a self, events: &'a [UsageEvent]) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let inserted = self.insert(events).await?;
            tracing::debug!(received = events.len(), inserted, "stored usage events");
            Ok(())
        })
    }
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

/// The advisory-lock key of a tenant's rollups: its id folded to 64 bits, in a namespace of its
/// own (the retention worker's lock is a fixed constant that this cannot realistically hit).
fn tenant_lock_key(tenant: Uuid) -> i64 {
    let (hi, lo) = tenant.as_u64_pair();
    (hi ^ lo ^ 0x5553_4147_455f_524f) as i64
}

/// Name of the partition holding `day`: `usage_records_pYYYYMMDD`.
pub fn partition_name(day: Date) -> String {
    format!(
        "usage_records_p{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Creates the `usage_records` partition of `day` if it does not exist (PostgreSQL only; a
/// no-op on SQLite). Safe against a concurrent creator.
pub async fn ensure_partition<C: ConnectionTrait>(conn: &C, day: Date) -> anyhow::Result<()> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let next = day.next_day().context("date out of range")?;
    let name = partition_name(day);
    // The name and bounds come from a `Date`, never from input: digits and dashes only.
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF usage_records \
         FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')"
    );
    if let Err(create) = conn.execute_unprepared(&sql).await {
        // Two creators at once: one of them fails (duplicate type or relation); fine if the
        // partition is there now.
        if !partition_exists(conn, day).await? {
            return Err(create).with_context(|| format!("creating partition {name}"));
        }
    }
    Ok(())
}

/// Whether the partition of `day` exists.
pub async fn partition_exists<C: ConnectionTrait>(conn: &C, day: Date) -> anyhow::Result<bool> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT to_regclass($1) IS NOT NULL AS present",
            [partition_name(day).into()],
        ))
        .await
        .context("looking up a usage partition")?;
    Ok(match row {
        Some(row) => row.try_get::<bool>("", "present")?,
        None => false,
    })
}

/// Adds the rollup deltas of `events` (all new) to `usage_rollups`.
async fn merge_rollups<C: ConnectionTrait>(
    conn: &C,
    events: &[&UsageEvent],
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut deltas = rollup::aggregate(events.iter().copied());

    // Stored rows of the touched keys, per tenant (a superset is read: every hash × bucket of
    // the tenant, then matched by full key).
    let mut by_tenant: BTreeMap<Uuid, (BTreeSet<String>, BTreeSet<i64>)> = BTreeMap::new();
    for key in deltas.keys() {
        let entry = by_tenant.entry(key.tenant_id).or_default();
        entry.0.insert(key.dims_hash.clone());
        entry.1.insert(key.bucket_start);
    }
    let mut stored: HashMap<RollupKey, usage_rollup::Model> = HashMap::new();
    for (tenant, (hashes, buckets)) in by_tenant {
        let hashes: Vec<String> = hashes.into_iter().collect();
        for chunk in hashes.chunks(KEYS_PER_LOOKUP) {
            let rows = usage_rollup::Entity::find()
                .filter(usage_rollup::Column::TenantId.eq(tenant))
                .filter(usage_rollup::Column::DimsHash.is_in(chunk.iter().cloned()))
                .filter(usage_rollup::Column::BucketStart.is_in(buckets.iter().copied()))
                .all(conn)
                .await
                .context("reading usage rollups")?;
            for row in rows {
                let Some(grain) = Grain::parse(&row.grain) else {
                    continue;
                };
                let key = RollupKey {
                    tenant_id: row.tenant_id,
                    grain,
                    bucket_start: row.bucket_start,
                    dims_hash: row.dims_hash.clone(),
                };
                stored.insert(key, row);
            }
        }
    }

    let mut keys: Vec<RollupKey> = deltas.keys().cloned().collect();
    keys.sort();
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(delta) = deltas.remove(&key) else {
            continue;
        };
        let merged = match stored.get(&key) {
            Some(row) => {
                let mut agg = Aggregate::from_row(row);
                agg.merge(&delta.agg);
                agg
            }
            None => delta.agg,
        };
        rows.push(merged.to_row(&key, &delta.dims, now).into_active_model());
    }
    let upsert = OnConflict::columns([
        usage_rollup::Column::TenantId,
        usage_rollup::Column::Grain,
        usage_rollup::Column::BucketStart,
        usage_rollup::Column::DimsHash,
    ])
    .update_columns([
        usage_rollup::Column::Requests,
        usage_rollup::Column::Successes,
        usage_rollup::Column::CacheHits,
        usage_rollup::Column::TokensEstimated,
        usage_rollup::Column::PromptTokens,
        usage_rollup::Column::CompletionTokens,
        usage_rollup::Column::CacheReadTokens,
        usage_rollup::Column::CostMicros,
        usage_rollup::Column::ErrorClasses,
        usage_rollup::Column::LatencySketch,
        usage_rollup::Column::TtftSketch,
        usage_rollup::Column::UpdatedAt,
    ])
    .to_owned();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        usage_rollup::Entity::insert_many(chunk)
            .on_conflict(upsert.clone())
            .exec_without_returning(conn)
            .await
            .context("writing usage rollups")?;
    }
    Ok(())
}

/// Stores the payloads of `events` (all new) that carry one.
async fn insert_payloads<C: ConnectionTrait>(
    conn: &C,
    events: &[&UsageEvent],
) -> anyhow::Result<()> {
    let rows: Vec<usage_payload::ActiveModel> = events
        .iter()
        .filter_map(|e| {
            let p = e.payload.as_ref()?;
            Some(usage_payload::ActiveModel {
                id: Set(e.id),
                tenant_id: Set(e.tenant_id),
                started_at: Set(utc(e.started_at)),
                request: Set(p.request.clone()),
                response: Set(p.response.clone()),
                truncated: Set(p.truncated),
            })
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        usage_payload::Entity::insert_many(chunk.to_vec())
            .on_conflict_do_nothing()
            .exec_without_returning(conn)
            .await
            .context("inserting usage payloads")?;
    }
    Ok(())
}

/// The latest `started_at` (UTC) of each key in `events`.
fn latest_per_key(events: &[&UsageEvent]) -> BTreeMap<Uuid, OffsetDateTime> {
    let mut latest: BTreeMap<Uuid, OffsetDateTime> = BTreeMap::new();
    for e in events {
        if let Some(key) = e.key_id {
            let t = utc(e.started_at);
            latest
                .entry(key)
                .and_modify(|cur| *cur = (*cur).max(t))
                .or_insert(t);
        }
    }
    latest
}

/// Raises `last_used_at` of each key in `events` to its latest event (one statement per key;
/// SQLite only, PostgreSQL does it in one statement, see `pg::touch_keys`).
async fn touch_keys<C: ConnectionTrait>(conn: &C, events: &[&UsageEvent]) -> anyhow::Result<()> {
    let latest = latest_per_key(events);
    let sqlite = conn.get_database_backend() == DbBackend::Sqlite;
    for (key, at) in latest {
        // SQLite keeps timestamps as text that does not sort; compare Julian days there.
        let older = if sqlite {
            Expr::cust_with_values("julianday(\"last_used_at\") < julianday(?)", [at])
        } else {
            api_key::Column::LastUsedAt.lt(at)
        };
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(at))
            .filter(api_key::Column::Id.eq(key))
            .filter(
                Condition::any()
                    .add(api_key::Column::LastUsedAt.is_null())
                    .add(older),
            )
            .exec(conn)
            .await
            .context("updating api_keys.last_used_at")?;
    }
    Ok(())
}

/// Counters are `u64` in events and `bigint` in the database; values beyond `i64::MAX` cannot
/// occur in practice and are clamped rather than refused (refusing would wedge ingestion).
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_row(e: &UsageEvent, now: OffsetDateTime) -> usage_record::ActiveModel {
    usage_record::ActiveModel {
        id: Set(e.id),
        tenant_id: Set(e.tenant_id),
        key_id: Set(e.key_id),
        team_id: Set(e.team_id),
        model: Set(e.model.clone()),
        deployment_id: Set(e.deployment_id),
        provider_id: Set(e.provider_id),
        provider: Set(e.provider.clone()),
        upstream_model: Set(e.upstream_model.clone()),
        endpoint: Set(e.endpoint.clone()),
        stream: Set(e.stream),
        status: Set(i32::from(e.status)),
        outcome: Set(e.outcome.as_str().to_owned()),
        error_code: Set(e.error_code.clone()),
        prompt_tokens: Set(clamp(e.prompt_tokens)),
        completion_tokens: Set(clamp(e.completion_tokens)),
        cache_read_tokens: Set(clamp(e.cache_read_tokens)),
        cache_write_tokens: Set(clamp(e.cache_write_tokens)),
        tokens_estimated: Set(e.tokens_estimated),
        cost_micros: Set(e.cost_micros),
        latency_ms: Set(clamp(e.latency_ms)),
        ttft_ms: Set(e.ttft_ms.map(clamp)),
        // UTC everywhere: SQLite stores RFC 3339 text, and one offset keeps it comparable.
        started_at: Set(utc(e.started_at)),
        created_at: Set(now),
        route: Set(e.route.clone()),
        region: Set(e.region.clone()),
        error_class: Set(rollup::error_class_of(e)),
        cache_hit: Set(e.cache_hit),
        attempts: Set(i32::try_from(e.failed_attempts.len().saturating_add(1)).unwrap_or(i32::MAX)),
        failed_attempts: Set((!e.failed_attempts.is_empty())
            .then(|| serde_json::to_value(&e.failed_attempts).unwrap_or_default())),
        tags: Set((!e.tags.is_empty()).then(|| serde_json::to_value(&e.tags).unwrap_or_default())),
        guardrails: Set((!e.guardrails.is_empty())
            .then(|| serde_json::to_value(&e.guardrails).unwrap_or_default())),
    }
}

/// The PostgreSQL write path: one transaction through sqlx (on sea-orm's pool), every statement
/// of fixed text binding whole columns as arrays (`unnest($1::uuid[], …)`), so a batch of any
/// size is the same handful of statements, each parsed and planned once per connection
/// (sqlx caches prepared statements per connection).
mod pg {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use anyhow::Context;
    use shared::usage::UsageEvent;
    use sqlx::{PgPool, Postgres, Row, Transaction};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::{clamp, tenant_lock_key, utc};
    use crate::rollup::{self, Aggregate, Grain, RollupKey};
    use crate::sketch::Sketch;

    /// Every tenant's rollup lock, in ascending key order (so two writers cannot deadlock):
    /// `pg_advisory_xact_lock` is volatile, so it is evaluated after the sort.
    const LOCK: &str =
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS u(k) ORDER BY k";

    const INSERT_RECORDS: &str = "INSERT INTO usage_records (id, tenant_id, key_id, team_id, \
        model, deployment_id, provider_id, provider, upstream_model, endpoint, stream, status, \
        outcome, error_code, prompt_tokens, completion_tokens, cache_read_tokens, \
        cache_write_tokens, tokens_estimated, cost_micros, latency_ms, ttft_ms, started_at, \
        route, region, error_class, cache_hit, attempts, failed_attempts, tags, guardrails, \
        created_at) \
        SELECT id, tenant_id, key_id, team_id, model, deployment_id, provider_id, provider, \
        upstream_model, endpoint, stream, status, outcome, error_code, prompt_tokens, \
        completion_tokens, cache_read_tokens, cache_write_tokens, tokens_estimated, cost_micros, \
        latency_ms, ttft_ms, started_at, route, region, error_class, cache_hit, attempts, \
        failed_attempts::jsonb, tags::jsonb, guardrails::jsonb, $32::timestamptz \
        FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], \
        $7::uuid[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::int4[], $13::text[], \
        $14::text[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::bool[], \
        $20::int8[], $21::int8[], $22::int8[], $23::timestamptz[], $24::text[], $25::text[], \
        $26::text[], $27::bool[], $28::int4[], $29::text[], $30::text[], $31::text[]) \
        AS u(id, tenant_id, key_id, team_id, model, deployment_id, provider_id, provider, \
        upstream_model, endpoint, stream, status, outcome, error_code, prompt_tokens, \
        completion_tokens, cache_read_tokens, cache_write_tokens, tokens_estimated, cost_micros, \
        latency_ms, ttft_ms, started_at, route, region, error_class, cache_hit, attempts, \
        failed_attempts, tags, guardrails) \
        ON CONFLICT DO NOTHING RETURNING id";

    /// The stored rows of the touched keys: a superset (every touched hash × every touched
    /// bucket of the batch's tenants, as the primary key's index serves it), matched by full key
    /// afterwards. (A join of `unnest(keys)` with the table lets the planner pick a hashed
    /// sequential scan on stale statistics, and the table's rows are rewritten by every batch.)
    const READ_ROLLUPS: &str = "SELECT tenant_id, grain, bucket_start, dims_hash, requests, \
        successes, cache_hits, tokens_estimated, prompt_tokens, completion_tokens, \
        cache_read_tokens, cost_micros, error_classes, latency_sketch, ttft_sketch \
        FROM usage_rollups WHERE tenant_id = ANY($1::uuid[]) AND grain = ANY($2::text[]) \
        AND bucket_start = ANY($3::int8[]) AND dims_hash = ANY($4::text[])";

    const UPSERT_ROLLUPS: &str = "INSERT INTO usage_rollups (tenant_id, grain, bucket_start, \
        dims_hash, team_id, key_id, deployment_id, model, provider, route, region, endpoint, \
        tag_key, tag_value, requests, successes, cache_hits, tokens_estimated, prompt_tokens, \
        completion_tokens, cache_read_tokens, cost_micros, error_classes, latency_sketch, \
        ttft_sketch, updated_at) \
        SELECT *, $26::timestamptz FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], \
        $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], \
        $12::text[], $13::text[], $14::text[], $15::int8[], $16::int8[], $17::int8[], \
        $18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::text[], \
        $24::bytea[], $25::bytea[]) \
        ON CONFLICT (tenant_id, grain, bucket_start, dims_hash) DO UPDATE SET \
        requests = excluded.requests, successes = excluded.successes, \
        cache_hits = excluded.cache_hits, tokens_estimated = excluded.tokens_estimated, \
        prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens, \
        cache_read_tokens = excluded.cache_read_tokens, cost_micros = excluded.cost_micros, \
        error_classes = excluded.error_classes, latency_sketch = excluded.latency_sketch, \
        ttft_sketch = excluded.ttft_sketch, updated_at = excluded.updated_at";

    const INSERT_PAYLOADS: &str = "INSERT INTO usage_payloads (id, tenant_id, started_at, \
        request, response, truncated) \
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], \
        $6::bool[]) ON CONFLICT DO NOTHING";

    /// Raises `last_used_at`, never lowers it.
    const TOUCH_KEYS: &str = "UPDATE api_keys SET last_used_at = v.at \
        FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at) \
        WHERE api_keys.id = v.id \
        AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.at)";

    /// Writes `events` (distinct ids, partitions present) in one transaction; returns how many
    /// were new.
    pub(super) async fn insert(pool: &PgPool, events: &[&UsageEvent]) -> anyhow::Result<u64> {
        let now = utc(OffsetDateTime::now_utc());
        let mut tx = pool
            .begin()
            .await
            .context("starting the usage transaction")?;

        let mut locks: Vec<i64> = events
            .iter()
            .map(|e| tenant_lock_key(e.tenant_id))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        sqlx::query(LOCK)
            .bind(locks)
            .execute(&mut *tx)
            .await
            .context("locking the tenants' rollups")?;

        let new_ids = insert_records(&mut tx, events, now).await?;
        let fresh: Vec<&UsageEvent> = events
            .iter()
            .copied()
            .filter(|e| new_ids.contains(&e.id))
            .collect();
        merge_rollups(&mut tx, &fresh, now).await?;
        insert_payloads(&mut tx, &fresh).await?;
        touch_keys(&mut tx, events).await?;
        tx.commit().await.context("committing usage records")?;
        Ok(fresh.len() as u64)
    }

    async fn insert_records(
        tx: &mut Transaction<'static, Postgres>,
        events: &[&UsageEvent],
        now: OffsetDateTime,
    ) -> anyhow::Result<HashSet<Uuid>> {
        let n = events.len();
        let mut id = Vec::with_capacity(n);
        let mut tenant_id = Vec::with_capacity(n);
        let mut key_id = Vec::with_capacity(n);
        let mut team_id = Vec::with_capacity(n);
        let mut model = Vec::with_capacity(n);
        let mut deployment_id = Vec::with_capacity(n);
        let mut provider_id = Vec::with_capacity(n);
        let mut provider = Vec::with_capacity(n);
        let mut upstream_model = Vec::with_capacity(n);
        let mut endpoint = Vec::with_capacity(n);
        let mut stream = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let mut outcome = Vec::with_capacity(n);
        let mut error_code = Vec::with_capacity(n);
        let mut prompt_tokens = Vec::with_capacity(n);
        let mut completion_tokens = Vec::with_capacity(n);
        let mut cache_read_tokens = Vec::with_capacity(n);
        let mut cache_write_tokens = Vec::with_capacity(n);
        let mut tokens_estimated = Vec::with_capacity(n);
        let mut cost_micros = Vec::with_capacity(n);
        let mut latency_ms = Vec::with_capacity(n);
        let mut ttft_ms = Vec::with_capacity(n);
        let mut started_at = Vec::with_capacity(n);
        let mut route = Vec::with_capacity(n);
        let mut region = Vec::with_capacity(n);
        let mut error_class = Vec::with_capacity(n);
        let mut cache_hit = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut failed_attempts = Vec::with_capacity(n);
        let mut tags = Vec::with_capacity(n);
        let mut guardrails = Vec::with_capacity(n);
        for e in events {
            id.push(e.id);
            tenant_id.push(e.tenant_id);
            key_id.push(e.key_id);
            team_id.push(e.team_id);
            model.push(e.model.as_str());
            deployment_id.push(e.deployment_id);
            provider_id.push(e.provider_id);
            provider.push(e.provider.as_deref());
            upstream_model.push(e.upstream_model.as_deref());
            endpoint.push(e.endpoint.as_str());
            stream.push(e.stream);
            status.push(i32::from(e.status));
            outcome.push(e.outcome.as_str());
            error_code.push(e.error_code.as_deref());
            prompt_tokens.push(clamp(e.prompt_tokens));
            completion_tokens.push(clamp(e.completion_tokens));
            cache_read_tokens.push(clamp(e.cache_read_tokens));
            cache_write_tokens.push(clamp(e.cache_write_tokens));
            tokens_estimated.push(e.tokens_estimated);
            cost_micros.push(e.cost_micros);
            latency_ms.push(clamp(e.latency_ms));
            ttft_ms.push(e.ttft_ms.map(clamp));
            // UTC everywhere, as on SQLite.
            started_at.push(utc(e.started_at));
            route.push(e.route.as_deref());
            region.push(e.region.as_deref());
            error_class.push(rollup::error_class_of(e));
            cache_hit.push(e.cache_hit);
            attempts
                .push(i32::try_from(e.failed_attempts.len().saturating_add(1)).unwrap_or(i32::MAX));
            failed_attempts.push(if e.failed_attempts.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&e.failed_attempts)
                        .context("encoding failed attempts")?,
                )
            });
            tags.push(if e.tags.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&e.tags).context("encoding tags")?)
            });
            guardrails.push(if e.guardrails.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&e.guardrails).context("encoding guardrail decisions")?)
            });
        }
        let ids: Vec<Uuid> = sqlx::query_scalar(INSERT_RECORDS)
            .bind(id)
            .bind(tenant_id)
            .bind(key_id)
            .bind(team_id)
            .bind(model)
            .bind(deployment_id)
            .bind(provider_id)
            .bind(provider)
            .bind(upstream_model)
            .bind(endpoint)
            .bind(stream)
            .bind(status)
            .bind(outcome)
            .bind(error_code)
            .bind(prompt_tokens)
            .bind(completion_tokens)
            .bind(cache_read_tokens)
            .bind(cache_write_tokens)
            .bind(tokens_estimated)
            .bind(cost_micros)
            .bind(latency_ms)
            .bind(ttft_ms)
            .bind(started_at)
            .bind(route)
            .bind(region)
            .bind(error_class)
            .bind(cache_hit)
            .bind(attempts)
            .bind(failed_attempts)
            .bind(tags)
            .bind(guardrails)
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .context("inserting usage records")?;
        Ok(ids.into_iter().collect())
    }

    /// Adds the rollup deltas of `events` (all new): reads the stored rows of exactly the
    /// touched keys, merges in memory, upserts — three statements whatever the batch.
    async fn merge_rollups(
        tx: &mut Transaction<'static, Postgres>,
        events: &[&UsageEvent],
        now: OffsetDateTime,
    ) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut deltas = rollup::aggregate(events.iter().copied());
        let mut keys: Vec<RollupKey> = deltas.keys().cloned().collect();
        keys.sort();

        let tenants: BTreeSet<Uuid> = keys.iter().map(|k| k.tenant_id).collect();
        let grains: BTreeSet<&str> = keys.iter().map(|k| k.grain.as_str()).collect();
        let buckets: BTreeSet<i64> = keys.iter().map(|k| k.bucket_start).collect();
        let hashes: BTreeSet<&str> = keys.iter().map(|k| k.dims_hash.as_str()).collect();
        let rows = sqlx::query(READ_ROLLUPS)
            .bind(tenants.into_iter().collect::<Vec<_>>())
            .bind(grains.into_iter().collect::<Vec<_>>())
            .bind(buckets.into_iter().collect::<Vec<_>>())
            .bind(hashes.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await
            .context("reading usage rollups")?;
        let mut stored: HashMap<RollupKey, Aggregate> = HashMap::with_capacity(rows.len());
        for row in rows {
            let Some(grain) = Grain::parse(row.try_get::<&str, _>("grain")?) else {
                continue;
            };
            let key = RollupKey {
                tenant_id: row.try_get("tenant_id")?,
                grain,
                bucket_start: row.try_get("bucket_start")?,
                dims_hash: row.try_get("dims_hash")?,
            };
            if !deltas.contains_key(&key) {
                continue;
            }
            // Lenient like `Aggregate::from_row`: a malformed value reads as empty.
            let agg = Aggregate {
                requests: row.try_get("requests")?,
                successes: row.try_get("successes")?,
                cache_hits: row.try_get("cache_hits")?,
                tokens_estimated: row.try_get("tokens_estimated")?,
                prompt_tokens: row.try_get("prompt_tokens")?,
                completion_tokens: row.try_get("completion_tokens")?,
                cache_read_tokens: row.try_get("cache_read_tokens")?,
                cost_micros: row.try_get("cost_micros")?,
                error_classes: serde_json::from_str::<BTreeMap<String, i64>>(
                    row.try_get::<&str, _>("error_classes")?,
                )
                .unwrap_or_default(),
                latency: Sketch::decode(row.try_get::<&[u8], _>("latency_sketch")?)
                    .unwrap_or_default(),
                ttft: Sketch::decode(row.try_get::<&[u8], _>("ttft_sketch")?).unwrap_or_default(),
            };
            stored.insert(key, agg);
        }

        let n = keys.len();
        let mut tenant_id = Vec::with_capacity(n);
        let mut grain = Vec::with_capacity(n);
        let mut bucket_start = Vec::with_capacity(n);
        let mut dims_hash = Vec::with_capacity(n);
        let mut team_id = Vec::with_capacity(n);
        let mut key_id = Vec::with_capacity(n);
        let mut deployment_id = Vec::with_capacity(n);
        let mut model = Vec::with_capacity(n);
        let mut provider = Vec::with_capacity(n);
        let mut route = Vec::with_capacity(n);
        let mut region = Vec::with_capacity(n);
        let mut endpoint = Vec::with_capacity(n);
        let mut tag_key = Vec::with_capacity(n);
        let mut tag_value = Vec::with_capacity(n);
        let mut requests = Vec::with_capacity(n);
        let mut successes = Vec::with_capacity(n);
        let mut cache_hits = Vec::with_capacity(n);
        let mut tokens_estimated = Vec::with_capacity(n);
        let mut prompt_tokens = Vec::with_capacity(n);
        let mut completion_tokens = Vec::with_capacity(n);
        let mut cache_read_tokens = Vec::with_capacity(n);
        let mut cost_micros = Vec::with_capacity(n);
        let mut error_classes = Vec::with_capacity(n);
        let mut latency_sketch = Vec::with_capacity(n);
        let mut ttft_sketch = Vec::with_capacity(n);
        for key in keys {
            let Some(delta) = deltas.remove(&key) else {
                continue;
            };
            let agg = match stored.remove(&key) {
                Some(mut agg) => {
                    agg.merge(&delta.agg);
                    agg
                }
                None => delta.agg,
            };
            let dims = delta.dims;
            tenant_id.push(key.tenant_id);
            grain.push(key.grain.as_str());
            bucket_start.push(key.bucket_start);
            dims_hash.push(key.dims_hash);
            team_id.push(dims.team_id);
            key_id.push(dims.key_id);
            deployment_id.push(dims.deployment_id);
            model.push(dims.model);
            provider.push(dims.provider);
            route.push(dims.route);
            region.push(dims.region);
            endpoint.push(dims.endpoint);
            tag_key.push(dims.tag_key);
            tag_value.push(dims.tag_value);
            requests.push(agg.requests);
            successes.push(agg.successes);
            cache_hits.push(agg.cache_hits);
            tokens_estimated.push(agg.tokens_estimated);
            prompt_tokens.push(agg.prompt_tokens);
            completion_tokens.push(agg.completion_tokens);
            cache_read_tokens.push(agg.cache_read_tokens);
            cost_micros.push(agg.cost_micros);
            error_classes
                .push(serde_json::to_string(&agg.error_classes).context("encoding error classes")?);
            latency_sketch.push(agg.latency.encode());
            ttft_sketch.push(agg.ttft.encode());
        }
        sqlx::query(UPSERT_ROLLUPS)
            .bind(tenant_id)
            .bind(grain)
            .bind(bucket_start)
            .bind(dims_hash)
            .bind(team_id)
            .bind(key_id)
            .bind(deployment_id)
            .bind(model)
            .bind(provider)
            .bind(route)
            .bind(region)
            .bind(endpoint)
            .bind(tag_key)
            .bind(tag_value)
            .bind(requests)
            .bind(successes)
            .bind(cache_hits)
            .bind(tokens_estimated)
            .bind(prompt_tokens)
            .bind(completion_tokens)
            .bind(cache_read_tokens)
            .bind(cost_micros)
            .bind(error_classes)
            .bind(latency_sketch)
            .bind(ttft_sketch)
            .bind(now)
            .execute(&mut **tx)
            .await
            .context("writing usage rollups")?;
        Ok(())
    }

    /// Stores the payloads of `events` (all new) that carry one.
    async fn insert_payloads(
        tx: &mut Transaction<'static, Postgres>,
        events: &[&UsageEvent],
    ) -> anyhow::Result<()> {
        let with: Vec<(&UsageEvent, &shared::usage::UsagePayload)> = events
            .iter()
            .filter_map(|e| Some((*e, e.payload.as_ref()?)))
            .collect();
        if with.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_PAYLOADS)
            .bind(with.iter().map(|(e, _)| e.id).collect::<Vec<_>>())
            .bind(with.iter().map(|(e, _)| e.tenant_id).collect::<Vec<_>>())
            .bind(
                with.iter()
                    .map(|(e, _)| utc(e.started_at))
                    .collect::<Vec<_>>(),
            )
            .bind(
                with.iter()
                    .map(|(_, p)| p.request.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                with.iter()
                    .map(|(_, p)| p.response.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(with.iter().map(|(_, p)| p.truncated).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .context("inserting usage payloads")?;
        Ok(())
    }

    /// Raises `last_used_at` of each key in `events` to its latest event, in one statement.
    async fn touch_keys(
        tx: &mut Transaction<'static, Postgres>,
        events: &[&UsageEvent],
    ) -> anyhow::Result<()> {
        let latest = super::latest_per_key(events);
        if latest.is_empty() {
            return Ok(());
        }
        sqlx::query(TOUCH_KEYS)
            .bind(latest.keys().copied().collect::<Vec<_>>())
            .bind(latest.values().copied().collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .context("updating api_keys.last_used_at")?;
        Ok(())
    }
}
