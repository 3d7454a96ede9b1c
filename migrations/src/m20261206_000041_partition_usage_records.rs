//! PostgreSQL: `usage_records` becomes a table partitioned by `RANGE (started_at)` with one
//! partition per UTC day, named `usage_records_pYYYYMMDD`, so retention drops whole partitions
//! instead of deleting rows (a `DELETE` of millions of rows bloats the table and its indexes;
//! a `DROP TABLE` of a partition returns the space at once). The primary key becomes
//! `(id, started_at)`: a partitioned table's unique keys must contain the partition key, and a
//! re-delivered event carries the same id and `started_at`, so ingestion stays idempotent.
//!
//! Existing rows move over: the old table is renamed, the new one created like it, a partition
//! is created for every day present, the rows are copied and the old table dropped. Partitions
//! for new days are created by the usage writer (before it inserts a batch) and the retention
//! worker (a few days ahead); there is no default partition, because a default partition
//! holding rows of a day would forbid creating that day's partition later.
//!
//! Indexes (on the parent, so every partition gets them): the request log's
//! `(tenant_id, started_at DESC, id DESC)`, per-key `(tenant_id, key_id, started_at)`, lookup by
//! `id` alone (the primary key leads with id too, but a plain index keeps `WHERE id = $1` cheap on
//! every partition), and a GIN index on `tags` for tag search.
//!
//! This is raw SQL on purpose: the schema builder knows neither partitioning nor GIN indexes.
//! The statements are constants, and the partition names come from dates computed in the
//! database (`format('%I', …)`), never from input.
//!
//! SQLite keeps a plain table and only gets the request-log indexes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    TenantId,
    KeyId,
    StartedAt,
}

const PG_UP: &str = r#"
ALTER TABLE usage_records RENAME TO usage_records_old;
ALTER TABLE usage_records_old RENAME CONSTRAINT usage_records_pkey TO usage_records_old_pkey;
DROP INDEX IF EXISTS idx_usage_records_tenant_started;
CREATE TABLE usage_records (LIKE usage_records_old INCLUDING DEFAULTS)
    PARTITION BY RANGE (started_at);
ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY (id, started_at);
DO $$
DECLARE d date;
BEGIN
    FOR d IN SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM usage_records_old LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF usage_records FOR VALUES FROM (%L) TO (%L)',
            'usage_records_p' || to_char(d, 'YYYYMMDD'),
            to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
    END LOOP;
END $$;
INSERT INTO usage_records SELECT * FROM usage_records_old;
DROP TABLE usage_records_old;
CREATE INDEX idx_usage_records_log ON usage_records (tenant_id, started_at DESC, id DESC);
CREATE INDEX idx_usage_records_key ON usage_records (tenant_id, key_id, started_at);
CREATE INDEX idx_usage_records_id ON usage_records (id);
CREATE INDEX idx_usage_records_tags ON usage_records USING GIN (tags);
"#;

const PG_DOWN: &str = r#"
CREATE TABLE usage_records_plain (LIKE usage_records INCLUDING DEFAULTS);
INSERT INTO usage_records_plain SELECT * FROM usage_records ON CONFLICT DO NOTHING;
DROP TABLE usage_records CASCADE;
ALTER TABLE usage_records_plain RENAME TO usage_records;
ALTER TABLE usage_records ADD CONSTRAINT usage_records_pkey PRIMARY KEY (id);
CREATE INDEX idx_usage_records_tenant_started ON usage_records (tenant_id, started_at);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(PG_UP).await?;
            return Ok(());
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_usage_records_tenant_started")
                    .table(UsageRecords::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_log")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::TenantId)
                    .col((UsageRecords::StartedAt, IndexOrder::Desc))
                    .col((UsageRecords::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_key")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::TenantId)
                    .col(UsageRecords::KeyId)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(PG_DOWN).await?;
            return Ok(());
        }
        for name in ["idx_usage_records_key", "idx_usage_records_log"] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(UsageRecords::Table)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_usage_records_tenant_started")
                    .table(UsageRecords::Table)
                    .col(UsageRecords::TenantId)
                    .col(UsageRecords::StartedAt)
                    .to_owned(),
            )
            .await
    }
}
