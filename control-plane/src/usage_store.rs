//! [`DbUsageWriter`]: the database side of usage ingest (`crate::ingest` feeds it).
//!
//! A batch is written in one transaction: `write` returns `Ok` only once all of it is durable,
//! which is what lets the ingest task acknowledge the batch afterwards. In that transaction:
//!
//! 1. **Raw rows.** Events are inserted into `usage_records` in multi-row statements with
//!    `ON CONFLICT DO NOTHING RETURNING id` (PostgreSQL, and SQLite ≥ 3.35), so a re-delivered
//!    event (same id, same `started_at`) is skipped, and the writer learns which events were new.
//!    Events repeated within one batch are collapsed first.
//! 2. **Rollups.** Only the new events are aggregated (`crate::rollup`) into minute/hour/day
//!    deltas, and merged into `usage_rollups`: the stored rows of the touched keys are read,
//!    merged in memory (counts add, error classes add, sketches merge) and upserted. On
//!    PostgreSQL the transaction first takes `pg_advisory_xact_lock` per tenant of the batch (in
//!    a fixed order, so two writers cannot deadlock): two control planes ingesting the same
//!    tenant take turns, and neither overwrites the other's merge. SQLite has one writer.
//!    Because rollups are written with the raw rows and only for new rows, they are exact.
//! 3. **Payloads** (`usage_payloads`), for events that carry one (the organization opted in).
//! 4. **Keys.** `api_keys.last_used_at`: one `UPDATE` per distinct key of the batch, raising
//!    it to the latest `started_at` of that key's events (never lowering it, so late or
//!    re-delivered batches are harmless). A key is thus written at most once per batch.
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

/// Rows per INSERT: 31 columns × 200 rows stays well below SQLite's (32 766) and PostgreSQL's
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
        }

        let now = OffsetDateTime::now_utc();
        let tx = self
            .db
            .begin()
            .await
            .context("starting the usage transaction")?;
        if pg {
            let tenants: BTreeSet<Uuid> = events.iter().map(|e| e.tenant_id).collect();
            for tenant in tenants {
                tx.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock($1)",
                    [tenant_lock_key(tenant).into()],
                ))
                .await
                .context("locking the tenant's rollups")?;
            }
        }

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

/// Raises `last_used_at` of each key in `events` to its latest event (one statement per key).
async fn touch_keys<C: ConnectionTrait>(conn: &C, events: &[&UsageEvent]) -> anyhow::Result<()> {
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
    }
}
