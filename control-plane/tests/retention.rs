//! The usage retention worker against real databases: old partitions dropped (checked in
//! `pg_inherits`/`pg_class`) and recent ones kept, per-organization retention, payloads,
//! rollup retention per grain, the claim, and the organization settings that drive it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use control_plane::entities::{tenant, usage_payload, usage_record, usage_rollup};
use control_plane::retention::{RETENTION_LOCK, RetentionSettings, run_pass};
use control_plane::usage_store::{DbUsageWriter, partition_name};
use cp_support::Cp;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, Statement,
};
use serde_json::json;
use shared::usage::{UsageEvent, UsageOutcome, UsagePayload};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

mod usage_support;
use usage_support::{TestDb, postgres, sqlite};

fn event(tenant: Uuid, started_at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        id: Uuid::now_v7(),
        tenant_id: tenant,
        key_id: None,
        team_id: None,
        model: "gpt-x".to_owned(),
        deployment_id: None,
        provider_id: None,
        provider: Some("mock".to_owned()),
        upstream_model: None,
        endpoint: "chat.completions".to_owned(),
        stream: false,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: 10,
        completion_tokens: 2,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: 5,
        latency_ms: 100,
        ttft_ms: None,
        started_at,
        route: None,
        failed_attempts: Vec::new(),
        tags: [("team".to_owned(), "a".to_owned())].into(),
        region: None,
        error_class: None,
        cache_hit: false,
        payload: Some(UsagePayload {
            request: "{}".to_owned(),
            response: "ok".to_owned(),
            truncated: false,
        }),
        guardrails: Vec::new(),
    }
}

async fn add_tenant(db: &DatabaseConnection, retention_days: Option<i32>) -> Uuid {
    let id = Uuid::new_v4();
    tenant::Entity::insert(tenant::ActiveModel {
        id: Set(id),
        name: Set(format!("org {id}")),
        config_version: Set(0),
        created_at: Set(OffsetDateTime::now_utc()),
        usage_retention_days: Set(retention_days),
        store_payloads: Set(true),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await
    .expect("a tenant");
    id
}

async fn partitions(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1",
    ))
    .await
    .expect("catalog")
    .into_iter()
    .map(|r| r.try_get::<String>("", "name").expect("name"))
    .collect()
}

async fn table_exists(db: &DatabaseConnection, name: &str) -> bool {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) AS n FROM pg_class WHERE relname = $1",
        [name.into()],
    ))
    .await
    .expect("catalog")
    .expect("row")
    .try_get::<i64>("", "n")
    .expect("n")
        == 1
}

async fn started(db: &DatabaseConnection, tenant: Uuid) -> Vec<OffsetDateTime> {
    let mut v: Vec<_> = usage_record::Entity::find()
        .filter(usage_record::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .expect("rows")
        .into_iter()
        .map(|r| r.started_at)
        .collect();
    v.sort();
    v
}

async fn payload_count(db: &DatabaseConnection, tenant: Uuid) -> usize {
    usage_payload::Entity::find()
        .filter(usage_payload::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .expect("payloads")
        .len()
}

#[tokio::test]
async fn a_pass_drops_old_partitions_and_keeps_recent_ones() {
    let t = postgres().await;
    let tenant = add_tenant(&t.db, None).await;
    let now = OffsetDateTime::now_utc();
    let ages = [45i64, 35, 5, 0];
    let events: Vec<UsageEvent> = ages
        .iter()
        .map(|d| event(tenant, now - Duration::days(*d)))
        .collect();
    DbUsageWriter::new(t.db.clone())
        .insert(&events)
        .await
        .expect("seeded");
    let name = |ago: i64| partition_name((now - Duration::days(ago)).date());
    for ago in ages {
        assert!(table_exists(&t.db, &name(ago)).await);
    }

    let report = run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a pass");
    assert!(report.claimed);
    let mut dropped = report.dropped_partitions.clone();
    dropped.sort();
    assert_eq!(dropped, vec![name(45), name(35)]);
    // Gone from the catalogue, not merely detached.
    assert!(!table_exists(&t.db, &name(45)).await);
    assert!(!table_exists(&t.db, &name(35)).await);
    let left = partitions(&t.db).await;
    assert!(left.contains(&name(5)) && left.contains(&name(0)));
    // Partitions ahead exist.
    for ahead in 1..=3 {
        assert!(left.contains(&name(-ahead)), "partition {ahead} days ahead");
    }
    assert_eq!(started(&t.db, tenant).await.len(), 2);
    // Payloads follow the organization's (default) retention.
    assert_eq!(payload_count(&t.db, tenant).await, 2);

    // The writer still lands an old event after its partition was dropped (a late replay).
    let late = event(tenant, now - Duration::days(35));
    DbUsageWriter::new(t.db.clone())
        .insert(&[late])
        .await
        .expect("recreated on demand");
}

async fn a_shorter_retention_deletes_only_that_organizations_rows(t: TestDb) {
    let short = add_tenant(&t.db, Some(7)).await;
    let default = add_tenant(&t.db, None).await;
    let now = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for tenant in [short, default] {
        for ago in [10i64, 8, 1] {
            events.push(event(tenant, now - Duration::days(ago)));
        }
    }
    DbUsageWriter::new(t.db.clone())
        .insert(&events)
        .await
        .expect("seeded");

    let report = run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a pass");
    assert!(
        report.dropped_partitions.is_empty(),
        "30 days is the longest"
    );
    assert_eq!(report.deleted_rows, 2);
    assert_eq!(report.deleted_payloads, 2);
    let kept = started(&t.db, short).await;
    assert_eq!(kept.len(), 1);
    assert!(kept[0] > now - Duration::days(7));
    assert_eq!(started(&t.db, default).await.len(), 3);
    assert_eq!(payload_count(&t.db, short).await, 1);
    assert_eq!(payload_count(&t.db, default).await, 3);

    // A second pass finds nothing more to do.
    let again = run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a second pass");
    assert_eq!(again.deleted_rows, 0);
}

#[tokio::test]
async fn a_shorter_retention_deletes_only_that_organizations_rows_on_postgres() {
    a_shorter_retention_deletes_only_that_organizations_rows(postgres().await).await;
}

#[tokio::test]
async fn a_shorter_retention_deletes_only_that_organizations_rows_on_sqlite() {
    a_shorter_retention_deletes_only_that_organizations_rows(sqlite().await).await;
}

async fn rollups_are_kept_per_grain(t: TestDb) {
    let tenant = add_tenant(&t.db, Some(3650)).await;
    let now = OffsetDateTime::now_utc();
    // 3 days: minute rows go (48 h), hour and day rows stay. 100 days: hour rows go too.
    // 500 days: everything goes.
    let events = [3i64, 100, 500].map(|ago| event(tenant, now - Duration::days(ago)));
    DbUsageWriter::new(t.db.clone())
        .insert(&events)
        .await
        .expect("seeded");
    let recent = event(tenant, now);
    DbUsageWriter::new(t.db.clone())
        .insert(&[recent])
        .await
        .expect("seeded");

    run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a pass");
    let rows = usage_rollup::Entity::find()
        .filter(usage_rollup::Column::TenantId.eq(tenant))
        .filter(usage_rollup::Column::TagKey.eq(""))
        .all(&t.db)
        .await
        .expect("rollups");
    let count = |grain: &str| rows.iter().filter(|r| r.grain == grain).count();
    assert_eq!(count("minute"), 1, "only the recent minute");
    assert_eq!(count("hour"), 2, "recent and 3 days");
    assert_eq!(count("day"), 3, "recent, 3 and 100 days");
    // The 10-year organization keeps its raw rows.
    assert_eq!(started(&t.db, tenant).await.len(), 4);
}

#[tokio::test]
async fn rollups_are_kept_per_grain_on_postgres() {
    rollups_are_kept_per_grain(postgres().await).await;
}

#[tokio::test]
async fn rollups_are_kept_per_grain_on_sqlite() {
    rollups_are_kept_per_grain(sqlite().await).await;
}

#[tokio::test]
async fn a_pass_is_skipped_while_another_control_plane_holds_the_claim() {
    let t = postgres().await;
    let tenant = add_tenant(&t.db, None).await;
    let now = OffsetDateTime::now_utc();
    DbUsageWriter::new(t.db.clone())
        .insert(&[event(tenant, now - Duration::days(60))])
        .await
        .expect("seeded");
    // Another control plane: its own pool, holding the lock on one connection.
    let other = control_plane::db::connect(&t.url).await.expect("pool");
    let mut held = other
        .get_postgres_connection_pool()
        .acquire()
        .await
        .expect("connection");
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *held)
        .await
        .expect("lock");
    assert!(got);
    let skipped = run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a pass");
    assert!(!skipped.claimed);
    assert!(skipped.dropped_partitions.is_empty());
    drop(held);
    other.close().await.expect("close");
    let ran = run_pass(&t.db, &RetentionSettings::default(), now)
        .await
        .expect("a pass");
    assert!(ran.claimed);
    assert_eq!(ran.dropped_partitions.len(), 1);
}

#[tokio::test]
async fn organization_usage_settings_are_validated_and_shown() {
    let cp = Cp::start_sqlite().await;
    let s = cp.signup().await;
    let org = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert_eq!(org["usage_retention_days"], json!(null));
    assert_eq!(org["store_payloads"], json!(false));

    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"usage_retention_days": 7, "store_payloads": true}),
        )
        .await
        .expect(200);
    assert_eq!(org["usage_retention_days"], 7);
    assert_eq!(org["store_payloads"], true);
    let org = cp.get("/api/v1/organization", &s.token).await.expect(200);
    assert_eq!(org["usage_retention_days"], 7);
    assert_eq!(org["store_payloads"], true);

    for bad in [json!(0), json!(3651), json!("x")] {
        cp.patch(
            "/api/v1/organization",
            &s.token,
            json!({ "usage_retention_days": bad }),
        )
        .await
        .expect(400);
    }
    let org = cp
        .patch(
            "/api/v1/organization",
            &s.token,
            json!({"usage_retention_days": null}),
        )
        .await
        .expect(200);
    assert_eq!(org["usage_retention_days"], json!(null));
    assert_eq!(org["store_payloads"], true);
    cp.stop().await;
}

/// Turning `store_payloads` on republishes the organization's `TenantConfig` with it, before the
/// call returns (distributed mode: the record in Redis is what every data-plane node reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_payloads_is_published_in_the_tenant_config() {
    use control_plane::config::{Config, Secret};
    use redis::AsyncCommands;

    let fresh = testkit::pg::fresh_database()
        .await
        .expect("a fresh test database");
    let guard = testkit::redis_prefix::PrefixGuard::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = Config::embedded(dir.path(), Some(fresh.url.clone()));
    config.redis_url = Some(Secret::new(testkit::redis_prefix::redis_url()));
    config.redis_prefix = guard.keys.prefix().to_owned();
    config.master_key = Some(Secret::new(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ));
    config.jwt_secret = Some(Secret::new("a-jwt-secret-for-the-retention-tests-0123"));
    config.node_id = Some("cp-retention-test".to_owned());
    let running = control_plane::start(config)
        .await
        .expect("control plane starts");
    let cp = Cp {
        base: running.base_url(),
        running,
        client: reqwest::Client::new(),
        dir,
    };
    let mut redis = testkit::redis_prefix::connect()
        .await
        .expect("Redis is running");
    let s = cp.signup().await;
    let tenant: Uuid = s.tenant_id.parse().expect("tenant id");
    let record = |raw: Option<String>| -> shared::config::TenantConfig {
        serde_json::from_str(&raw.expect("a tenant record")).expect("tenant config json")
    };

    cp.patch(
        "/api/v1/organization",
        &s.token,
        json!({"store_payloads": true}),
    )
    .await
    .expect(200);
    let raw: Option<String> = redis
        .get(guard.keys.tenant(tenant))
        .await
        .expect("GET tenant record");
    assert!(record(raw).store_payloads);

    cp.patch(
        "/api/v1/organization",
        &s.token,
        json!({"store_payloads": false}),
    )
    .await
    .expect(200);
    let raw: Option<String> = redis
        .get(guard.keys.tenant(tenant))
        .await
        .expect("GET tenant record");
    assert!(!record(raw).store_payloads);
    cp.stop().await;
}
