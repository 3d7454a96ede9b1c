//! `Publisher` against a real Redis, read back raw and through the data plane's `ConfigStore`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_support;

use std::sync::Arc;
use std::time::Duration;

use bus_support::*;
use control_plane::publish::{PublishError, PublishOutcome, Publisher};
use data_plane::store::ConfigStore;
use data_plane::store::stream::parse_entries;
use futures::StreamExt;
use shared::bus::MemoryBus;
use shared::config::{ChangeKind, ConfigChange, KeyRecord, TenantConfig};
use shared::crypto::MasterKey;
use time::OffsetDateTime;
use uuid::Uuid;

async fn get_key(p: &Prefix, hash: &str) -> Option<KeyRecord> {
    let mut c = conn().await;
    let json: Option<String> = redis::cmd("GET")
        .arg(p.keys.key(hash))
        .query_async(&mut c)
        .await
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

async fn change_log(p: &Prefix) -> Vec<(String, ConfigChange)> {
    let mut c = conn().await;
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(p.keys.changes())
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    parse_entries(reply)
        .unwrap()
        .into_iter()
        .map(|e| {
            let change = serde_json::from_slice(e.field("change").unwrap()).unwrap();
            (e.id, change)
        })
        .collect()
}

#[tokio::test]
async fn a_publish_writes_the_record_logs_it_and_announces_it() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let mut pubsub = redis::Client::open(redis_url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(p.keys.channel()).await.unwrap();

    let hash = random_hash();
    let record = key_record(&hash, 1);
    let outcome = publisher.publish_key_outcome(&record).await.unwrap();
    let PublishOutcome::Written { seq } = outcome else {
        panic!("expected a write, got {outcome:?}")
    };

    assert_eq!(
        get_key(&p, &hash).await.as_ref(),
        Some(&record),
        "plain GET returns the record's JSON"
    );
    let log = change_log(&p).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, seq);
    assert_eq!(
        log[0].1,
        ConfigChange {
            kind: ChangeKind::Key,
            id: hash.clone(),
            version: 1,
            seq: String::new()
        }
    );

    let msg = tokio::time::timeout(DEADLINE, pubsub.on_message().next())
        .await
        .unwrap()
        .unwrap();
    let announced: ConfigChange = serde_json::from_slice(msg.get_payload_bytes()).unwrap();
    assert_eq!(
        announced,
        ConfigChange {
            kind: ChangeKind::Key,
            id: hash,
            version: 1,
            seq
        }
    );
}

#[tokio::test]
async fn older_or_equal_versions_are_no_ops() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let hash = random_hash();
    let mut v2 = key_record(&hash, 2);
    v2.name = "second".into();
    assert!(matches!(
        publisher.publish_key_outcome(&v2).await.unwrap(),
        PublishOutcome::Written { .. }
    ));
    assert_eq!(
        publisher
            .publish_key_outcome(&key_record(&hash, 1))
            .await
            .unwrap(),
        PublishOutcome::Stale
    );
    publisher
        .publish_key(&key_record(&hash, 2))
        .await
        .expect("a stale publish is not an error");
    assert_eq!(get_key(&p, &hash).await.unwrap().name, "second");
    assert_eq!(
        change_log(&p).await.len(),
        1,
        "refused writes are neither logged nor announced"
    );
}

#[tokio::test]
async fn racing_publishers_leave_the_newest_version() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let hash = random_hash();
    // Interleave versions so that many arrive after a newer one.
    let versions: Vec<i64> = (1..=40)
        .map(|i| if i % 2 == 0 { i } else { 41 - i })
        .collect();
    let tasks = versions.into_iter().map(|v| {
        let publisher = publisher.clone();
        let record = key_record(&hash, v);
        tokio::spawn(async move { publisher.publish_key(&record).await.unwrap() })
    });
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(get_key(&p, &hash).await.unwrap().version, 40);
    let log = change_log(&p).await;
    let logged: Vec<i64> = log.iter().map(|(_, c)| c.version).collect();
    assert!(
        logged.windows(2).all(|w| w[0] < w[1]),
        "the log only ever moves forward: {logged:?}"
    );
}

#[tokio::test]
async fn a_malformed_stored_value_is_overwritten() {
    let p = Prefix::new();
    let mut c = conn().await;
    let hash = random_hash();
    let _: () = redis::cmd("SET")
        .arg(p.keys.key(&hash))
        .arg("not json")
        .query_async(&mut c)
        .await
        .unwrap();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    publisher.publish_key(&key_record(&hash, 1)).await.unwrap();
    assert_eq!(get_key(&p, &hash).await.unwrap().version, 1);
}

#[tokio::test]
async fn versions_beyond_what_lua_compares_exactly_are_refused() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let err = publisher
        .publish_key(&key_record(&random_hash(), 1 << 60))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::VersionOutOfRange(_)));
}

#[tokio::test]
async fn a_subscribed_store_sees_a_revocation_quickly() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let hash = random_hash();
    let mut record = key_record(&hash, 1);
    publisher.publish_key(&record).await.unwrap();
    let store = ConfigStore::redis(pool(), &redis_url(), p.keys.clone(), MasterKey::generate())
        .await
        .unwrap();
    assert!(
        store
            .key(&hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    record.version = 2;
    record.revoked_at = Some(OffsetDateTime::now_utc());
    publisher.publish_key(&record).await.unwrap();
    let started = std::time::Instant::now();
    eventually("the revocation reaches the store", || async {
        store
            .key(&hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_store_started_after_many_publishes_converges() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let hashes: Vec<String> = (0..20).map(|_| random_hash()).collect();
    for v in 1..=3 {
        for h in &hashes {
            publisher.publish_key(&key_record(h, v)).await.unwrap();
        }
    }
    let store = ConfigStore::redis(pool(), &redis_url(), p.keys.clone(), MasterKey::generate())
        .await
        .unwrap();
    assert!(store.is_ready());
    for h in &hashes {
        assert_eq!(store.key(h).await.unwrap().unwrap().version, 3);
    }
}

fn tenant(master_key: &MasterKey, version: i64) -> (TenantConfig, Uuid) {
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
        deployments: vec![shared::config::DeploymentRecord {
            id: Uuid::new_v4(),
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
            name: "m".into(),
            provider_id,
            upstream_model: "up".into(),
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 1,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: Default::default(),
        }],
        providers: vec![shared::config::ProviderRecord {
            id: provider_id,
            name: "p".into(),
            kind: shared::config::ProviderKind::OpenAiCompatible,
            base_url: Some("http://127.0.0.1:9/v1".into()),
            api_key_sealed: Some(master_key.seal("sk-secret", &provider_id.to_string())),
            options: Default::default(),
        }],
    };
    (config, provider_id)
}

#[tokio::test]
async fn tenant_configs_reach_the_store_with_secrets_opened() {
    let p = Prefix::new();
    let master_key = MasterKey::generate();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let (mut config, provider_id) = tenant(&master_key, 1);
    publisher.publish_tenant(&config).await.unwrap();
    let store = ConfigStore::redis(pool(), &redis_url(), p.keys.clone(), master_key)
        .await
        .unwrap();
    let view = store.tenant(config.tenant_id).await.unwrap().unwrap();
    assert_eq!(
        view.provider(provider_id).unwrap().api_key().unwrap(),
        Some("sk-secret")
    );

    config.version = 2;
    config.deployments.clear();
    publisher.publish_tenant(&config).await.unwrap();
    eventually("the new tenant version replaces the view", || async {
        store
            .tenant(config.tenant_id)
            .await
            .unwrap()
            .unwrap()
            .deployments()
            .is_empty()
    })
    .await;
}

#[tokio::test]
async fn announce_all_drops_every_cache() {
    let p = Prefix::new();
    let publisher = Publisher::redis(pool(), p.keys.clone());
    let hash = random_hash();
    publisher.publish_key(&key_record(&hash, 1)).await.unwrap();
    let store = ConfigStore::redis(pool(), &redis_url(), p.keys.clone(), MasterKey::generate())
        .await
        .unwrap();
    assert!(store.key(&hash).await.unwrap().is_some());
    // Removed behind the publisher's back (e.g. by an operator), then a full resync is announced.
    let mut c = conn().await;
    let _: i64 = redis::cmd("DEL")
        .arg(p.keys.key(&hash))
        .query_async(&mut c)
        .await
        .unwrap();
    publisher.announce_all().await.unwrap();
    eventually("the cache was dropped", || async {
        store.key(&hash).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn in_memory_publisher_and_store() {
    let bus = MemoryBus::new();
    let master_key = MasterKey::generate();
    let publisher = Publisher::in_memory(Arc::clone(&bus));
    let store = ConfigStore::in_memory(Arc::clone(&bus), master_key.clone());
    let hash = random_hash();
    publisher.publish_key(&key_record(&hash, 2)).await.unwrap();
    assert_eq!(
        publisher
            .publish_key_outcome(&key_record(&hash, 1))
            .await
            .unwrap(),
        PublishOutcome::Stale
    );
    assert_eq!(store.key(&hash).await.unwrap().unwrap().version, 2);

    let (config, provider_id) = tenant(&master_key, 1);
    publisher.publish_tenant(&config).await.unwrap();
    let view = store.tenant(config.tenant_id).await.unwrap().unwrap();
    assert_eq!(
        view.provider(provider_id).unwrap().api_key().unwrap(),
        Some("sk-secret")
    );
}
