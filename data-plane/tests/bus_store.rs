//! `ConfigStore` against a real Redis (fresh key prefix per test): lazy loading, refresh on
//! announcements, catch-up from the change log, cache resets, outages, secrets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;

use std::sync::Arc;
use std::time::Duration;

use bus_support::*;
use data_plane::store::{ConfigStore, StoreError, StoreOptions, redis_pool};
use shared::bus::MemoryBus;
use shared::config::{
    ChangeKind, DeploymentRecord, ProviderKind, ProviderRecord, RedisKeys, TenantConfig,
};
use shared::crypto::MasterKey;
use time::OffsetDateTime;
use uuid::Uuid;

fn fast_options() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(200),
        ..StoreOptions::default()
    }
}

async fn store_at(
    url: &str,
    keys: &RedisKeys,
    master_key: MasterKey,
    options: StoreOptions,
) -> ConfigStore {
    ConfigStore::redis_with_options(
        redis_pool(url).unwrap(),
        url,
        keys.clone(),
        master_key,
        options,
    )
    .await
    .unwrap()
}

async fn store(keys: &RedisKeys) -> ConfigStore {
    store_at(&redis_url(), keys, MasterKey::generate(), fast_options()).await
}

async fn version_of(store: &ConfigStore, hash: &str) -> Option<i64> {
    store.key(hash).await.unwrap().map(|r| r.version)
}

#[tokio::test]
async fn loads_lazily_and_caches() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;

    let s = store(&p.keys).await;
    assert!(s.is_ready(), "ready once subscribed and caught up");
    let first = s.key(&hash).await.unwrap().expect("published key is found");
    assert_eq!(first.key_hash, hash);
    let again = s.key(&hash).await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "second lookup is served from the cache"
    );
    assert!(s.key(&random_hash()).await.unwrap().is_none());
    assert!(s.tenant(Uuid::new_v4()).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    let s = store(&p.keys).await;
    let lookups = (0..50).map(|_| {
        let s = s.clone();
        let hash = hash.clone();
        tokio::spawn(async move { s.key(&hash).await.unwrap().unwrap() })
    });
    let results: Vec<_> = futures::future::join_all(lookups)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        results.iter().all(|r| Arc::ptr_eq(r, &results[0])),
        "every caller got the one fetched record"
    );
}

#[tokio::test]
async fn announcement_refreshes_a_cached_record() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    let mut record = key_record(&hash, 1);
    write_key(&mut c, &p.keys, &record, true).await;
    // Default options: the 5 s poll cannot be what makes this pass within the deadline quickly.
    let s = store_at(
        &redis_url(),
        &p.keys,
        MasterKey::generate(),
        StoreOptions::default(),
    )
    .await;
    assert_eq!(version_of(&s, &hash).await, Some(1));

    record.version = 2;
    record.revoked_at = Some(OffsetDateTime::now_utc());
    write_key(&mut c, &p.keys, &record, true).await;
    let started = std::time::Instant::now();
    eventually("the revoked version is served", || async {
        s.key(&hash)
            .await
            .unwrap()
            .is_some_and(|r| r.version == 2 && r.revoked_at.is_some())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "announcements apply well within a second, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn announcement_clears_a_negative_entry() {
    let p = Prefix::new();
    let mut c = conn().await;
    let s = store_at(
        &redis_url(),
        &p.keys,
        MasterKey::generate(),
        StoreOptions::default(),
    )
    .await;
    let hash = random_hash();
    assert!(
        s.key(&hash).await.unwrap().is_none(),
        "unknown, now negatively cached"
    );
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    eventually(
        "a newly published key is usable well before the negative TTL",
        || async { s.key(&hash).await.unwrap().is_some() },
    )
    .await;
}

#[tokio::test]
async fn unannounced_changes_are_found_by_the_change_log_poll() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    let s = store(&p.keys).await;
    assert_eq!(version_of(&s, &hash).await, Some(1));
    // SET + XADD without PUBLISH: only the change log knows.
    write_key(&mut c, &p.keys, &key_record(&hash, 2), false).await;
    eventually("the poll catches up", || async {
        version_of(&s, &hash).await == Some(2)
    })
    .await;
}

#[tokio::test]
async fn a_store_started_late_converges() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    for v in 1..=5 {
        write_key(&mut c, &p.keys, &key_record(&hash, v), true).await;
    }
    let s = store(&p.keys).await;
    assert_eq!(version_of(&s, &hash).await, Some(5));
}

#[tokio::test]
async fn a_trimmed_change_log_drops_the_cache() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    let s = store(&p.keys).await;
    assert_eq!(version_of(&s, &hash).await, Some(1));

    // Version 2 lands without its change log entry surviving: the log is trimmed past the last
    // entry this store saw, so replaying what is left cannot tell it about version 2.
    let _: () = redis::cmd("SET")
        .arg(p.keys.key(&hash))
        .arg(serde_json::to_string(&key_record(&hash, 2)).unwrap())
        .query_async(&mut c)
        .await
        .unwrap();
    append_change(&mut c, &p.keys, ChangeKind::Key, &random_hash(), 1).await;
    let last = append_change(&mut c, &p.keys, ChangeKind::Key, &random_hash(), 1).await;
    let _: i64 = redis::cmd("XTRIM")
        .arg(p.keys.changes())
        .arg("MINID")
        .arg(&last)
        .query_async(&mut c)
        .await
        .unwrap();
    eventually("the cache is dropped and refilled", || async {
        version_of(&s, &hash).await == Some(2)
    })
    .await;
}

#[tokio::test]
async fn a_vanished_change_log_drops_the_cache() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    let s = store(&p.keys).await;
    assert_eq!(version_of(&s, &hash).await, Some(1));
    // As after FLUSHALL and a republish that has not reached this record's announcement yet.
    let _: () = redis::cmd("SET")
        .arg(p.keys.key(&hash))
        .arg(serde_json::to_string(&key_record(&hash, 2)).unwrap())
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(p.keys.changes())
        .query_async(&mut c)
        .await
        .unwrap();
    eventually("the cache is dropped", || async {
        version_of(&s, &hash).await == Some(2)
    })
    .await;
}

#[tokio::test]
async fn a_change_of_kind_all_drops_the_cache() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    write_key(&mut c, &p.keys, &key_record(&hash, 1), true).await;
    let s = store(&p.keys).await;
    assert_eq!(version_of(&s, &hash).await, Some(1));
    let _: () = redis::cmd("SET")
        .arg(p.keys.key(&hash))
        .arg(serde_json::to_string(&key_record(&hash, 2)).unwrap())
        .query_async(&mut c)
        .await
        .unwrap();
    let seq = append_change(&mut c, &p.keys, ChangeKind::All, "", 0).await;
    announce(&mut c, &p.keys, ChangeKind::All, "", 0, &seq).await;
    eventually("the cache is dropped", || async {
        version_of(&s, &hash).await == Some(2)
    })
    .await;
}

#[tokio::test]
async fn an_outage_keeps_cached_records_and_recovers() {
    let p = Prefix::new();
    let mut c = conn().await;
    let mut proxy = Proxy::start(redis_target()).await.unwrap();
    let cached = random_hash();
    let uncached = random_hash();
    write_key(&mut c, &p.keys, &key_record(&cached, 1), true).await;
    write_key(&mut c, &p.keys, &key_record(&uncached, 1), true).await;
    let s = store_at(&proxy.url(), &p.keys, MasterKey::generate(), fast_options()).await;
    assert!(s.is_ready());
    assert_eq!(version_of(&s, &cached).await, Some(1));

    proxy.stop().await;
    eventually("the store notices the outage", || async {
        !s.is_connected()
    })
    .await;
    assert_eq!(
        version_of(&s, &cached).await,
        Some(1),
        "cached records are served during the outage"
    );
    assert!(
        matches!(s.key(&uncached).await, Err(StoreError::Unavailable(_))),
        "never-seen records fail"
    );
    assert!(s.is_ready(), "readiness survives an outage");

    // Changed while this node could not hear it.
    write_key(&mut c, &p.keys, &key_record(&cached, 2), true).await;

    let _proxy = Proxy::start_on(proxy.addr, redis_target()).await.unwrap();
    eventually("reconnects and catches up", || async {
        s.is_connected() && version_of(&s, &cached).await == Some(2)
    })
    .await;
    eventually("misses are fetched again", || async {
        matches!(s.key(&uncached).await, Ok(Some(_)))
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_from_the_start() {
    let keys = RedisKeys::new(testkit::redis_prefix::fresh_prefix());
    let url = "redis://127.0.0.1:1";
    let options = StoreOptions {
        startup_wait: Duration::from_millis(300),
        ..fast_options()
    };
    let s = store_at(url, &keys, MasterKey::generate(), options).await;
    assert!(!s.is_ready());
    assert!(matches!(
        s.key(&random_hash()).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.tenant(Uuid::new_v4()).await,
        Err(StoreError::Unavailable(_))
    ));
    let err = ConfigStore::redis(
        redis_pool(&redis_url()).unwrap(),
        "not a url",
        keys,
        MasterKey::generate(),
    )
    .await;
    assert!(matches!(err, Err(StoreError::InvalidRedisUrl)));
}

fn tenant_config(master_key: &MasterKey, version: i64) -> (TenantConfig, Uuid) {
    let provider_id = Uuid::new_v4();
    let config = TenantConfig {
        tenant_id: Uuid::new_v4(),
        version,
        routes: Vec::new(),
        allowed_regions: None,
        team_regions: Default::default(),
        budgets: Vec::new(),
        limits: Default::default(),
        team_limits: Default::default(),
        suspension: None,
        store_payloads: false,
        team_cache: Default::default(),
        guardrails: Vec::new(),
        deployments: vec![DeploymentRecord {
            id: Uuid::new_v4(),
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
            name: "gpt-test".into(),
            provider_id,
            upstream_model: "gpt-4o-mini".into(),
            input_price_micros_per_mtok: 150_000,
            output_price_micros_per_mtok: 600_000,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: Default::default(),
        }],
        providers: vec![ProviderRecord {
            id: provider_id,
            name: "openai".into(),
            kind: ProviderKind::OpenAi,
            base_url: None,
            api_key_sealed: Some(master_key.seal("sk-upstream-secret", &provider_id.to_string())),
            options: Default::default(),
        }],
    };
    (config, provider_id)
}

#[tokio::test]
async fn tenant_views_open_secrets_with_the_right_master_key_only() {
    let p = Prefix::new();
    let mut c = conn().await;
    let master_key = MasterKey::generate();
    let (mut config, provider_id) = tenant_config(&master_key, 1);
    write_tenant(&mut c, &p.keys, &config, true).await;

    let good = store_at(&redis_url(), &p.keys, master_key.clone(), fast_options()).await;
    let view = good.tenant(config.tenant_id).await.unwrap().unwrap();
    assert_eq!(view.version(), 1);
    assert_eq!(view.deployments_named("gpt-test").len(), 1);
    assert_eq!(
        view.provider(provider_id).unwrap().api_key().unwrap(),
        Some("sk-upstream-secret")
    );

    let wrong = store_at(&redis_url(), &p.keys, MasterKey::generate(), fast_options()).await;
    let view = wrong.tenant(config.tenant_id).await.unwrap().unwrap();
    assert!(matches!(
        view.provider(provider_id).unwrap().api_key(),
        Err(StoreError::UndecryptableSecret)
    ));

    // A new version replaces the view.
    config.version = 2;
    config.deployments[0].name = "renamed".into();
    write_tenant(&mut c, &p.keys, &config, true).await;
    eventually("the new tenant version is served", || async {
        good.tenant(config.tenant_id)
            .await
            .unwrap()
            .is_some_and(|v| v.version() == 2 && v.deployments_named("renamed").len() == 1)
    })
    .await;
}

#[tokio::test]
async fn in_memory_store_reads_the_bus() {
    let bus = MemoryBus::new();
    let master_key = MasterKey::generate();
    let s = ConfigStore::in_memory(Arc::clone(&bus), master_key.clone());
    assert!(s.is_ready());
    let hash = random_hash();
    assert!(s.key(&hash).await.unwrap().is_none());
    assert!(bus.put_key(key_record(&hash, 1)));
    assert_eq!(
        version_of(&s, &hash).await,
        Some(1),
        "visible at once, no negative caching in-process"
    );
    let mut revoked = key_record(&hash, 2);
    revoked.revoked_at = Some(OffsetDateTime::now_utc());
    assert!(bus.put_key(revoked));
    assert!(
        s.key(&hash).await.unwrap().unwrap().revoked_at.is_some(),
        "revocation is visible at once"
    );

    let (mut config, provider_id) = tenant_config(&master_key, 1);
    assert!(s.tenant(config.tenant_id).await.unwrap().is_none());
    bus.put_tenant(config.clone());
    let v1 = s.tenant(config.tenant_id).await.unwrap().unwrap();
    assert_eq!(
        v1.provider(provider_id).unwrap().api_key().unwrap(),
        Some("sk-upstream-secret")
    );
    let again = s.tenant(config.tenant_id).await.unwrap().unwrap();
    assert!(
        Arc::ptr_eq(&v1, &again),
        "the view is built once per version"
    );
    config.version = 2;
    bus.put_tenant(config.clone());
    assert_eq!(
        s.tenant(config.tenant_id).await.unwrap().unwrap().version(),
        2
    );
}
