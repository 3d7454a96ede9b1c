//! [`DbUsageWriter`]: the database side of usage ingest (`crate::ingest` feeds it).
//!
//! Events are inserted in multi-row statements with `ON CONFLICT (id) DO NOTHING`, so a
//! re-delivered event (same id) is skipped and ingestion is idempotent on PostgreSQL and SQLite
//! alike. A batch is written in one transaction: `write` returns `Ok` only once all of it is
//! durable, which is what lets the ingest task acknowledge the batch afterwards.
//!
//! The same transaction keeps `api_keys.last_used_at`: one `UPDATE` per distinct key of the
//! batch, raising it to the latest `started_at` of that key's events (never lowering it, so
//! late or re-delivered batches are harmless). A key is thus written at most once per batch,
//! never once per request.

use anyhow::Context;
use futures::future::BoxFuture;
use std::collections::BTreeMap;

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, TransactionTrait,
};
use shared::usage::UsageEvent;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::entities::{api_key, usage_record};
use crate::ingest::UsageWriter;

/// Rows per INSERT: 24 columns × 200 rows stays well below SQLite's (32 766) and PostgreSQL's
/// (65 535) bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 200;

/// Writes usage events into `usage_records`.
#[derive(Clone)]
pub struct DbUsageWriter {
    db: DatabaseConnection,
}

impl DbUsageWriter {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Inserts `events`, skipping ids already stored. Returns how many rows were new.
    pub async fn insert(&self, events: &[UsageEvent]) -> anyhow::Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let now = OffsetDateTime::now_utc();
        let tx = self
            .db
            .begin()
            .await
            .context("starting the usage transaction")?;
        let mut inserted = 0;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let rows = chunk.iter().map(|e| to_row(e, now));
            let result = usage_record::Entity::insert_many(rows)
                .on_conflict_do_nothing()
                .exec_without_returning(&tx)
                .await
                .context("inserting usage records")?;
            if let sea_orm::TryInsertResult::Inserted(n) = result {
                inserted += n;
            }
        }
        touch_keys(&tx, events).await?;
        tx.commit().await.context("committing usage records")?;
        Ok(inserted)
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

/// Raises `last_used_at` of each key in `events` to its latest event (one statement per key).
async fn touch_keys<C: ConnectionTrait>(conn: &C, events: &[UsageEvent]) -> anyhow::Result<()> {
    let mut latest: BTreeMap<Uuid, OffsetDateTime> = BTreeMap::new();
    for e in events {
        if let Some(key) = e.key_id {
            let t = e.started_at.to_offset(UtcOffset::UTC);
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
        started_at: Set(e.started_at.to_offset(UtcOffset::UTC)),
        created_at: Set(now),
        route: Set(e.route.clone()),
        region: Set(e.region.clone()),
        error_class: Set(e.error_class.clone()),
        cache_hit: Set(e.cache_hit),
        attempts: Set(i32::try_from(e.failed_attempts.len().saturating_add(1)).unwrap_or(i32::MAX)),
        failed_attempts: Set((!e.failed_attempts.is_empty())
            .then(|| serde_json::to_value(&e.failed_attempts).unwrap_or_default())),
        tags: Set((!e.tags.is_empty()).then(|| serde_json::to_value(&e.tags).unwrap_or_default())),
    }
}
