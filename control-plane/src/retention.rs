//! The usage retention worker: keeps `usage_records`, `usage_payloads` and `usage_rollups`
//! from growing without bound.
//!
//! Every pass (every `SWITCHYARD_RETENTION_INTERVAL_SECS`, and once at start):
//!
//! 1. **Claim.** On PostgreSQL the pass runs only if it wins `pg_try_advisory_lock` (a session
//!    lock on one pooled connection held for the pass), so with several control planes one runs
//!    it and the others skip; a control plane that dies releases the lock with its connection.
//!    SQLite has a single control plane.
//! 2. **Partitions ahead.** The partitions of today and the next [`PARTITIONS_AHEAD`] days are
//!    created, so the writer rarely has to.
//! 3. **Whole partitions.** Each organization keeps raw rows for `tenants.usage_retention_days`
//!    (NULL: the server default, `SWITCHYARD_USAGE_RETENTION_DAYS`). A daily partition whose
//!    whole day is older than the *longest* retention of any organization holds nothing anyone
//!    keeps, and is dropped with `DROP TABLE` — the space comes back at once, with no
//!    dead-tuple bloat and no vacuum debt.
//! 4. **Shorter retentions.** Organizations that keep less than the longest retention lose
//!    their older rows by `DELETE`, in batches of [`DELETE_BATCH`] rows (short transactions, no
//!    long lock). On SQLite (no partitions) every organization is handled this way.
//! 5. **Payloads** follow their organization's retention, deleted in batches.
//! 6. **Rollups** keep minute rows 48 hours, hour rows 90 days and day rows 400 days (settings),
//!    whatever the raw retention: analytics over a year stays cheap after raw rows are gone.
//!
//! What a pass removed is logged at info level (and returned, for tests).

use std::time::Duration;

use anyhow::Context;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement,
};
use time::{Date, OffsetDateTime, UtcOffset};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::entities::{tenant, usage_rollup};
use crate::rollup::Grain;
use crate::usage_store::{ensure_partition, partition_name};

/// Days of partitions created ahead of today.
pub const PARTITIONS_AHEAD: i64 = 3;
/// Rows deleted per statement.
pub const DELETE_BATCH: u64 = 5_000;
/// The advisory lock that claims a retention pass (PostgreSQL).
pub const RETENTION_LOCK: i64 = 0x5359_5245_5445_4e54; // "SYRETENT"

/// How long each kind of usage data is kept.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Raw rows and payloads of organizations without their own setting, in days.
    pub default_days: u32,
    /// Minute rollups, in hours.
    pub minute_rollup_hours: u32,
    /// Hour rollups, in days.
    pub hour_rollup_days: u32,
    /// Day rollups, in days.
    pub day_rollup_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            default_days: 30,
            minute_rollup_hours: 48,
            hour_rollup_days: 90,
            day_rollup_days: 400,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// False when another control plane held the claim; nothing was done.
    pub claimed: bool,
    /// Partitions dropped, by name.
    pub dropped_partitions: Vec<String>,
    /// Raw rows deleted (shorter retentions; every organization on SQLite).
    pub deleted_rows: u64,
    pub deleted_payloads: u64,
    pub deleted_rollups: u64,
}

/// The worker: a pass now, then every `interval`, until `shutdown`.
pub fn spawn(
    db: DatabaseConnection,
    settings: RetentionSettings,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = run_pass(&db, &settings, OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %format!("{e:#}"), "usage retention pass failed; retrying at the next interval");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    })
}

/// One retention pass as of `now` (see the module docs).
pub async fn run_pass(
    db: &DatabaseConnection,
    settings: &RetentionSettings,
    now: OffsetDateTime,
) -> anyhow::Result<RetentionReport> {
    if db.get_database_backend() != DbBackend::Postgres {
        return pass(db, settings, now).await;
    }
    // A session lock needs one connection for the whole pass: hold one from the pool.
    let mut claim = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .context("acquiring a connection for the retention claim")?;
    let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *claim)
        .await
        .context("claiming the retention pass")?;
    if !won {
        tracing::debug!("another control plane runs the usage retention pass");
        return Ok(RetentionReport::default());
    }
    let result = pass(db, settings, now).await;
    if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RETENTION_LOCK)
        .execute(&mut *claim)
        .await
    {
        // Closing the connection releases the lock for sure.
        tracing::warn!(error = %e, "releasing the retention claim failed; closing its connection");
        claim.detach();
    }
    result
}

async fn pass(
    db: &DatabaseConnection,
    settings: &RetentionSettings,
    now: OffsetDateTime,
) -> anyhow::Result<RetentionReport> {
    let now = now.to_offset(UtcOffset::UTC);
    let pg = db.get_database_backend() == DbBackend::Postgres;
    let mut report = RetentionReport {
        claimed: true,
        ..Default::default()
    };

    if pg {
        for ahead in 0..=PARTITIONS_AHEAD {
            ensure_partition(db, now.date() + time::Duration::days(ahead)).await?;
        }
    }

    let tenants: Vec<(Uuid, Option<i32>)> = tenant::Entity::find()
        .select_only()
        .column(tenant::Column::Id)
        .column(tenant::Column::UsageRetentionDays)
        .into_tuple()
        .all(db)
        .await
        .context("reading retention settings")?;
    let days_of = |d: Option<i32>| -> i64 {
        d.map_or(i64::from(settings.default_days), |d| i64::from(d.max(1)))
    };
    // The default counts even with no organization using it: rows of organizations deleted
    // since, or not yet known, are kept that long.
    let longest = tenants
        .iter()
        .map(|(_, d)| days_of(*d))
        .chain([i64::from(settings.default_days)])
        .max()
        .unwrap_or(i64::from(settings.default_days));

    if pg {
        let cutoff = now - time::Duration::days(longest);
        for (name, day) in partitions(db).await? {
            // The partition holds [day, day + 1); drop it when all of that is before the cutoff.
            let Some(end) = day.next_day() else { continue };
            if end.midnight().assume_utc() <= cutoff {
                // `name` is from the catalogue and matched `usage_records_pYYYYMMDD` exactly.
                db.execute_unprepared(&format!("DROP TABLE IF EXISTS {name}"))
                    .await
                    .with_context(|| format!("dropping partition {name}"))?;
                report.dropped_partitions.push(name);
            }
        }
    }

    for (tenant_id, days) in &tenants {
        let days = days_of(*days);
        let cutoff = now - time::Duration::days(days);
        if !pg || days < longest {
            report.deleted_rows += delete_batched(db, "usage_records", *tenant_id, cutoff).await?;
        }
        report.deleted_payloads += delete_batched(db, "usage_payloads", *tenant_id, cutoff).await?;
    }

    for (grain, keep) in [
        (
            Grain::Minute,
            time::Duration::hours(i64::from(settings.minute_rollup_hours)),
        ),
        (
            Grain::Hour,
            time::Duration::days(i64::from(settings.hour_rollup_days)),
        ),
        (
            Grain::Day,
            time::Duration::days(i64::from(settings.day_rollup_days)),
        ),
    ] {
        let before = (now - keep).unix_timestamp();
        let deleted = usage_rollup::Entity::delete_many()
            .filter(usage_rollup::Column::Grain.eq(grain.as_str()))
            .filter(usage_rollup::Column::BucketStart.lt(before))
            .exec(db)
            .await
            .context("deleting old usage rollups")?;
        report.deleted_rollups += deleted.rows_affected;
    }

    if !report.dropped_partitions.is_empty()
        || report.deleted_rows > 0
        || report.deleted_payloads > 0
        || report.deleted_rollups > 0
    {
        tracing::info!(
            dropped_partitions = ?report.dropped_partitions,
            deleted_rows = report.deleted_rows,
            deleted_payloads = report.deleted_payloads,
            deleted_rollups = report.deleted_rollups,
            longest_retention_days = longest,
            "usage retention pass"
        );
    }
    Ok(report)
}

/// The daily partitions of `usage_records` (PostgreSQL), with their day, oldest first. Tables
/// whose name is not exactly `usage_records_pYYYYMMDD` are left alone.
pub async fn partitions<C: ConnectionTrait>(conn: &C) -> anyhow::Result<Vec<(String, Date)>> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname AS name FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'usage_records'::regclass ORDER BY c.relname",
        ))
        .await
        .context("listing usage partitions")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name")?;
        if let Some(day) = partition_day(&name) {
            out.push((name, day));
        }
    }
    Ok(out)
}

/// The day of a partition name, if it is exactly one of ours.
fn partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("usage_records_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[0..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    let date = Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    (partition_name(date) == name).then_some(date)
}

/// Deletes rows of `tenant` in `table` (`usage_records` or `usage_payloads`) started before
/// `cutoff`, [`DELETE_BATCH`] at a time. Returns how many.
async fn delete_batched(
    db: &DatabaseConnection,
    table: &'static str,
    tenant: Uuid,
    cutoff: OffsetDateTime,
) -> anyhow::Result<u64> {
    let backend = db.get_database_backend();
    // `table` is one of two constants; values are bound. SQLite keeps timestamps as text that
    // does not sort, so it compares Julian days.
    let sql = match backend {
        DbBackend::Postgres => format!(
            "DELETE FROM {table} WHERE (id, started_at) IN \
             (SELECT id, started_at FROM {table} WHERE tenant_id = $1 AND started_at < $2 LIMIT $3)"
        ),
        _ => format!(
            "DELETE FROM {table} WHERE id IN \
             (SELECT id FROM {table} WHERE tenant_id = ? AND julianday(started_at) < julianday(?) LIMIT ?)"
        ),
    };
    let mut total = 0;
    loop {
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                &sql,
                [
                    tenant.into(),
                    cutoff.into(),
                    i64::try_from(DELETE_BATCH).unwrap_or(i64::MAX).into(),
                ],
            ))
            .await
            .with_context(|| format!("deleting old rows from {table}"))?;
        total += result.rows_affected();
        if result.rows_affected() < DELETE_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn only_our_partition_names_parse() {
        assert_eq!(
            partition_day("usage_records_p20261206"),
            Some(date!(2026 - 12 - 06))
        );
        assert_eq!(partition_day("usage_records_p2026120"), None);
        assert_eq!(partition_day("usage_records_p20261332"), None);
        assert_eq!(partition_day("usage_records_old"), None);
        assert_eq!(partition_day("usage_records_p2026120x"), None);
    }
}
