//! The usage writer against real databases (PostgreSQL from testkit, and SQLite): new columns,
//! idempotence in raw rows and rollups, rollups equal to an independent computation, tag rows,
//! partitions created for any date, and concurrent writers that lose no rollup update.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use control_plane::entities::{usage_payload, usage_record, usage_rollup};
use control_plane::rollup::Grain;
use control_plane::sketch::Sketch;
use control_plane::usage_store::{DbUsageWriter, partition_name};
use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement,
};
use shared::usage::{FailedAttempt, UsageEvent, UsageOutcome, UsagePayload};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

mod usage_support;
use usage_support::{TestDb, postgres, sqlite};

/// A deterministic pseudo-random sequence (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

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
        upstream_model: Some("mock-1".to_owned()),
        endpoint: "chat.completions".to_owned(),
        stream: false,
        status: 200,
        outcome: UsageOutcome::Success,
        error_code: None,
        prompt_tokens: 100,
        completion_tokens: 20,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        tokens_estimated: false,
        cost_micros: 50,
        latency_ms: 200,
        ttft_ms: None,
        started_at,
        route: None,
        failed_attempts: Vec::new(),
        tags: Default::default(),
        region: None,
        error_class: None,
        cache_hit: false,
        payload: None,
        guardrails: Vec::new(),
    }
}

/// `n` varied events of `tenant` within the last three hours.
fn varied_events(tenant: Uuid, n: usize, seed: u64) -> Vec<UsageEvent> {
    let mut rng = Lcg(seed);
    let keys = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let models = ["gpt-x", "claude-y"];
    let teams = ["search", "chat", "ops"];
    let now = OffsetDateTime::now_utc();
    (0..n)
        .map(|_| {
            let mut e = event(
                tenant,
                now - Duration::seconds((rng.next() % (3 * 3600)) as i64),
            );
            e.key_id = Some(*rng.pick(&keys));
            e.model = (*rng.pick(&models)).to_owned();
            e.prompt_tokens = rng.next() % 2000;
            e.completion_tokens = rng.next() % 500;
            e.cost_micros = (rng.next() % 10_000) as i64;
            e.latency_ms = 20 + rng.next() % 3000;
            if rng.next().is_multiple_of(2) {
                e.stream = true;
                e.ttft_ms = Some(5 + rng.next() % 400);
            }
            if rng.next().is_multiple_of(5) {
                e.outcome = UsageOutcome::Error;
                e.status = 504;
                e.error_code = Some("upstream_timeout".to_owned());
                e.error_class = Some("timeout".to_owned());
            }
            e.cache_hit = rng.next().is_multiple_of(7);
            e.tags
                .insert("team".to_owned(), (*rng.pick(&teams)).to_owned());
            if rng.next().is_multiple_of(3) {
                e.tags.insert("env".to_owned(), "prod".to_owned());
            }
            e
        })
        .collect()
}

async fn rollups(db: &DatabaseConnection, tenant: Uuid) -> Vec<usage_rollup::Model> {
    usage_rollup::Entity::find()
        .filter(usage_rollup::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .expect("rollups")
}

async fn raw_count(db: &DatabaseConnection, tenant: Uuid) -> usize {
    usage_record::Entity::find()
        .filter(usage_record::Column::TenantId.eq(tenant))
        .all(db)
        .await
        .expect("usage rows")
        .len()
}

/// Sum of requests of the untagged rows of `grain`.
fn requests(rows: &[usage_rollup::Model], grain: Grain) -> i64 {
    rows.iter()
        .filter(|r| r.grain == grain.as_str() && r.tag_key.is_empty())
        .map(|r| r.requests)
        .sum()
}

// === new columns ===

async fn new_columns_are_stored(t: TestDb) {
    let tenant = Uuid::new_v4();
    let mut e = event(tenant, OffsetDateTime::now_utc());
    e.route = Some("fast".to_owned());
    e.region = Some("eu-west".to_owned());
    e.outcome = UsageOutcome::Error;
    e.status = 502;
    e.error_code = Some("upstream_error".to_owned());
    e.error_class = Some("upstream_error".to_owned());
    e.cache_hit = true;
    e.failed_attempts = vec![
        FailedAttempt {
            deployment_id: Uuid::new_v4(),
            error_code: "upstream_timeout".to_owned(),
            error_class: None,
            latency_ms: 30,
            region: Some("us-east".to_owned()),
            status: None,
        },
        FailedAttempt {
            deployment_id: Uuid::new_v4(),
            error_code: "upstream_error".to_owned(),
            error_class: None,
            latency_ms: 40,
            region: None,
            status: Some(500),
        },
    ];
    e.tags.insert("team".to_owned(), "search".to_owned());
    e.payload = Some(UsagePayload {
        request: r#"{"model":"gpt-x"}"#.to_owned(),
        response: "hello".to_owned(),
        truncated: true,
    });
    let plain = event(tenant, OffsetDateTime::now_utc());
    let writer = DbUsageWriter::new(t.db.clone());
    assert_eq!(
        writer
            .insert(&[e.clone(), plain.clone()])
            .await
            .expect("insert"),
        2
    );

    let row = usage_record::Entity::find_by_id(e.id)
        .one(&t.db)
        .await
        .expect("query")
        .expect("the row");
    assert_eq!(row.route.as_deref(), Some("fast"));
    assert_eq!(row.region.as_deref(), Some("eu-west"));
    assert_eq!(row.error_class.as_deref(), Some("upstream_error"));
    assert!(row.cache_hit);
    assert_eq!(row.attempts, 3);
    let attempts: Vec<FailedAttempt> =
        serde_json::from_value(row.failed_attempts.expect("failed attempts")).expect("json");
    assert_eq!(attempts, e.failed_attempts);
    assert_eq!(
        row.tags.expect("tags"),
        serde_json::json!({"team": "search"})
    );

    let plain_row = usage_record::Entity::find_by_id(plain.id)
        .one(&t.db)
        .await
        .expect("query")
        .expect("the row");
    assert_eq!(plain_row.attempts, 1);
    assert!(plain_row.failed_attempts.is_none());
    assert!(plain_row.tags.is_none());
    assert!(plain_row.error_class.is_none());
    assert!(!plain_row.cache_hit);

    // The payload lives in its own table; the event without one has none.
    let payloads = usage_payload::Entity::find()
        .all(&t.db)
        .await
        .expect("payloads");
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].id, e.id);
    assert_eq!(payloads[0].tenant_id, tenant);
    assert_eq!(payloads[0].response, "hello");
    assert!(payloads[0].truncated);
}

#[tokio::test]
async fn new_columns_are_stored_on_postgres() {
    new_columns_are_stored(postgres().await).await;
}

#[tokio::test]
async fn new_columns_are_stored_on_sqlite() {
    new_columns_are_stored(sqlite().await).await;
}

// === idempotence ===

async fn duplicates_count_once_in_rows_and_rollups(t: TestDb) {
    let tenant = Uuid::new_v4();
    let events = varied_events(tenant, 40, 7);
    let writer = DbUsageWriter::new(t.db.clone());
    assert_eq!(writer.insert(&events[..30]).await.expect("first"), 30);
    // The same batch again: nothing new.
    assert_eq!(writer.insert(&events[..30]).await.expect("again"), 0);
    // Overlapping, with an event repeated inside the batch.
    let mut overlap: Vec<UsageEvent> = events[20..].to_vec();
    overlap.push(events[35].clone());
    assert_eq!(writer.insert(&overlap).await.expect("overlap"), 10);

    assert_eq!(raw_count(&t.db, tenant).await, 40);
    let rows = rollups(&t.db, tenant).await;
    for grain in Grain::ALL {
        assert_eq!(requests(&rows, grain), 40, "{grain:?}");
    }
    // Every event carries a team tag: the team rows count each event once too.
    let team: i64 = rows
        .iter()
        .filter(|r| r.grain == "day" && r.tag_key == "team")
        .map(|r| r.requests)
        .sum();
    assert_eq!(team, 40);
}

#[tokio::test]
async fn duplicates_count_once_in_rows_and_rollups_on_postgres() {
    duplicates_count_once_in_rows_and_rollups(postgres().await).await;
}

#[tokio::test]
async fn duplicates_count_once_in_rows_and_rollups_on_sqlite() {
    duplicates_count_once_in_rows_and_rollups(sqlite().await).await;
}

// === rollups equal an independent computation ===

#[derive(Default, Debug, PartialEq)]
struct Expected {
    requests: i64,
    successes: i64,
    cache_hits: i64,
    prompt: i64,
    completion: i64,
    cost: i64,
    errors: BTreeMap<String, i64>,
}

fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

async fn rollups_equal_an_independent_computation(t: TestDb) {
    let tenant = Uuid::new_v4();
    let events = varied_events(tenant, 600, 42);
    let writer = DbUsageWriter::new(t.db.clone());
    // Several batches, so stored rows are merged with later deltas.
    for chunk in events.chunks(70) {
        writer.insert(chunk).await.expect("insert");
    }
    let rows = rollups(&t.db, tenant).await;

    for grain in Grain::ALL {
        // Per (bucket, key, model, tag key, tag value), computed from the events directly.
        let mut expected: HashMap<(i64, Option<Uuid>, String, String, String), Expected> =
            HashMap::new();
        for e in &events {
            let bucket = {
                let s = e.started_at.unix_timestamp();
                s - s.rem_euclid(grain.seconds())
            };
            let mut tags = vec![(String::new(), String::new())];
            tags.extend(e.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (k, v) in tags {
                let x = expected
                    .entry((bucket, e.key_id, e.model.clone(), k, v))
                    .or_default();
                x.requests += 1;
                x.successes += i64::from(e.outcome == UsageOutcome::Success);
                x.cache_hits += i64::from(e.cache_hit);
                x.prompt += e.prompt_tokens as i64;
                x.completion += e.completion_tokens as i64;
                x.cost += e.cost_micros;
                if let Some(c) = &e.error_class {
                    *x.errors.entry(c.clone()).or_default() += 1;
                }
            }
        }
        let mut actual: HashMap<(i64, Option<Uuid>, String, String, String), Expected> =
            HashMap::new();
        for r in rows.iter().filter(|r| r.grain == grain.as_str()) {
            let x = actual
                .entry((
                    r.bucket_start,
                    r.key_id,
                    r.model.clone(),
                    r.tag_key.clone(),
                    r.tag_value.clone(),
                ))
                .or_default();
            x.requests += r.requests;
            x.successes += r.successes;
            x.cache_hits += r.cache_hits;
            x.prompt += r.prompt_tokens;
            x.completion += r.completion_tokens;
            x.cost += r.cost_micros;
            let errors: BTreeMap<String, i64> =
                serde_json::from_str(&r.error_classes).expect("error classes json");
            for (c, n) in errors {
                *x.errors.entry(c).or_default() += n;
            }
        }
        assert_eq!(actual, expected, "{grain:?}");
    }

    // Percentiles: merging the day rows' sketches answers within the sketch's bound.
    let mut latency = Sketch::new();
    let mut ttft = Sketch::new();
    for r in rows
        .iter()
        .filter(|r| r.grain == "day" && r.tag_key.is_empty())
    {
        latency.merge(&Sketch::decode(&r.latency_sketch).expect("latency sketch"));
        ttft.merge(&Sketch::decode(&r.ttft_sketch).expect("ttft sketch"));
    }
    let mut lat: Vec<u64> = events.iter().map(|e| e.latency_ms).collect();
    lat.sort_unstable();
    let mut first: Vec<u64> = events.iter().filter_map(|e| e.ttft_ms).collect();
    first.sort_unstable();
    assert_eq!(latency.count(), lat.len() as u64);
    assert_eq!(ttft.count(), first.len() as u64);
    for q in [0.5, 0.95, 0.99] {
        let truth = nearest_rank(&lat, q);
        let est = latency.quantile(q).expect("a quantile");
        assert!(
            (est - truth).abs() <= truth * control_plane::sketch::RELATIVE_ACCURACY + 1e-9,
            "latency p{q}: {est} vs {truth}"
        );
        let truth = nearest_rank(&first, q);
        let est = ttft.quantile(q).expect("a quantile");
        assert!(
            (est - truth).abs() <= truth * control_plane::sketch::RELATIVE_ACCURACY + 1e-9,
            "ttft p{q}: {est} vs {truth}"
        );
    }
    // A tag filter: the env=prod rows hold exactly the events tagged so.
    let prod = events
        .iter()
        .filter(|e| e.tags.get("env").map(String::as_str) == Some("prod"))
        .count() as i64;
    let prod_rows: i64 = rows
        .iter()
        .filter(|r| r.grain == "hour" && r.tag_key == "env" && r.tag_value == "prod")
        .map(|r| r.requests)
        .sum();
    assert_eq!(prod_rows, prod);
}

#[tokio::test]
async fn rollups_equal_an_independent_computation_on_postgres() {
    rollups_equal_an_independent_computation(postgres().await).await;
}

#[tokio::test]
async fn rollups_equal_an_independent_computation_on_sqlite() {
    rollups_equal_an_independent_computation(sqlite().await).await;
}

// === partitions (PostgreSQL) ===

async fn partition_exists(db: &DatabaseConnection, name: &str) -> bool {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass AND c.relname = $1",
        [name.into()],
    ))
    .await
    .expect("catalog query")
    .expect("a row")
    .try_get::<i64>("", "n")
    .expect("count")
        == 1
}

#[tokio::test]
async fn an_event_dated_20_days_ago_creates_its_partition() {
    let t = postgres().await;
    let tenant = Uuid::new_v4();
    let old = OffsetDateTime::now_utc() - Duration::days(20);
    let name = partition_name(old.date());
    assert!(!partition_exists(&t.db, &name).await);
    let e = event(tenant, old);
    DbUsageWriter::new(t.db.clone())
        .insert(std::slice::from_ref(&e))
        .await
        .expect("a replayed old event lands");
    assert!(partition_exists(&t.db, &name).await);
    let n =
        t.db.query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM {name}"),
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(n, 1, "the row is in its day's partition");

    // A second writer (another control plane) whose cache knows nothing creates nothing twice.
    let again = event(tenant, old + Duration::seconds(1));
    DbUsageWriter::new(t.db.clone())
        .insert(&[again])
        .await
        .expect("an existing partition is fine");
}

#[tokio::test]
async fn two_writers_on_two_pools_lose_no_rollup_update() {
    let t = postgres().await;
    let other = control_plane::db::connect(&t.url)
        .await
        .expect("a second pool");
    let tenant = Uuid::new_v4();
    // Same tenant, same dimensions, same buckets: every batch touches the same rollup rows.
    let now = OffsetDateTime::now_utc();
    let make = |n: usize| -> Vec<UsageEvent> {
        (0..n)
            .map(|i| {
                let mut e = event(tenant, now);
                e.latency_ms = 10 + i as u64;
                e.tags.insert("team".to_owned(), "search".to_owned());
                e
            })
            .collect()
    };
    let a_events = make(500);
    let b_events = make(500);
    let a = DbUsageWriter::new(t.db.clone());
    let b = DbUsageWriter::new(other);
    let run = |w: DbUsageWriter, events: Vec<UsageEvent>| async move {
        for chunk in events.chunks(20) {
            w.insert(chunk).await.expect("concurrent insert");
        }
    };
    tokio::join!(run(a, a_events), run(b, b_events));

    assert_eq!(raw_count(&t.db, tenant).await, 1000);
    let rows = rollups(&t.db, tenant).await;
    for grain in Grain::ALL {
        assert_eq!(requests(&rows, grain), 1000, "{grain:?}");
        let grain_rows: Vec<_> = rows.iter().filter(|r| r.grain == grain.as_str()).collect();
        assert_eq!(grain_rows.len(), 2, "one untagged and one tag row");
        for r in grain_rows {
            let sketch = Sketch::decode(&r.latency_sketch).expect("sketch");
            assert_eq!(sketch.count(), 1000);
        }
    }
}

#[tokio::test]
async fn the_migration_moves_existing_rows_into_daily_partitions() {
    let fresh = testkit::pg::fresh_database()
        .await
        .expect("a fresh test database");
    let db = control_plane::db::connect(&fresh.url)
        .await
        .expect("connect");
    // Everything before 000041 (the partitioning).
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name().contains("000041"))
        .expect("migration 000041");
    Migrator::up(&db, Some(before as u32))
        .await
        .expect("migrate up to 000040");
    let tenant = Uuid::new_v4();
    let days = [3i64, 1, 0];
    for (i, ago) in days.iter().enumerate() {
        let at = OffsetDateTime::now_utc() - Duration::days(*ago);
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO usage_records (id, tenant_id, model, endpoint, stream, status, outcome, \
             prompt_tokens, completion_tokens, tokens_estimated, cost_micros, latency_ms, \
             started_at, created_at) \
             VALUES ($1, $2, 'm', 'chat.completions', false, 200, 'success', $3, 1, false, 5, 10, $4, $4)",
            [
                Uuid::now_v7().into(),
                tenant.into(),
                (i as i64).into(),
                at.into(),
            ],
        ))
        .await
        .expect("an old-schema row");
    }
    Migrator::up(&db, None).await.expect("the rest");
    assert_eq!(raw_count(&db, tenant).await, 3);
    for ago in days {
        let day = (OffsetDateTime::now_utc() - Duration::days(ago)).date();
        assert!(
            partition_exists(&db, &partition_name(day)).await,
            "partition of {day}"
        );
    }
    // Defaults of the new columns apply to moved rows.
    let rows = usage_record::Entity::find().all(&db).await.expect("rows");
    assert!(rows.iter().all(|r| r.attempts == 1 && !r.cache_hit));
}
