//! The config outbox in distributed mode, against real Redis behind a proxy we can cut:
//! changes are published before the API answers; while Redis is unreachable the API still
//! answers (after a bounded wait) and the change is published as soon as Redis is back; on
//! start, everything is republished (Redis may have lost its data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cp_support;

use std::time::{Duration, Instant};

use control_plane::config::{Config, Secret};
use cp_support::Cp;
use redis::AsyncCommands;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use shared::config::{KeyRecord, RedisKeys, TenantConfig};
use testkit::tcp_proxy::Proxy;

struct Distributed {
    cp: Cp,
    proxy: Proxy,
    keys: RedisKeys,
    redis: redis::aio::MultiplexedConnection,
}

async fn start_distributed(
    db_url: String,
    keys: &RedisKeys,
    data_dir: tempfile::TempDir,
    proxy: Proxy,
) -> Distributed {
    let mut config = Config::embedded(data_dir.path(), Some(db_url));
    config.redis_url = Some(Secret::new(format!("redis://{}", proxy.addr)));
    // Distributed mode allows no internal upstream by default; the fakes listen on loopback.
    config.settings.upstream_allow_cidrs = Some(shared::egress::ZERO_SETUP_ALLOW.to_owned());
    config.redis_prefix = keys.prefix().to_owned();
    config.master_key = Some(Secret::new(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ));
    config.jwt_secret = Some(Secret::new("a-jwt-secret-for-the-sync-tests-0123456789"));
    config.node_id = Some("cp-sync-test".to_owned());
    let running = control_plane::start(config)
        .await
        .expect("control plane starts");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let redis = testkit::redis_prefix::connect()
        .await
        .expect("Redis is running");
    Distributed {
        cp: Cp {
            base: running.base_url(),
            running,
            client,
            dir: data_dir,
        },
        proxy,
        keys: keys.clone(),
        redis,
    }
}

impl Distributed {
    async fn key_record(&mut self, key: &str) -> Option<KeyRecord> {
        let raw: Option<String> = self
            .redis
            .get(self.keys.key(&shared::keys::hash_api_key(key)))
            .await
            .unwrap();
        raw.map(|r| serde_json::from_str(&r).unwrap())
    }

    async fn tenant_record(&mut self, tenant_id: &str) -> Option<TenantConfig> {
        let raw: Option<String> = self
            .redis
            .get(self.keys.tenant(tenant_id.parse().unwrap()))
            .await
            .unwrap();
        raw.map(|r| serde_json::from_str(&r).unwrap())
    }

    async fn outbox_len(&self) -> u64 {
        control_plane::entities::config_outbox::Entity::find()
            .count(self.cp.running.db())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_published_before_answering_and_after_an_outage() {
    let db_url = cp_support::database_url().await;
    let keys = RedisKeys::new(testkit::redis_prefix::fresh_prefix());
    let proxy = Proxy::start(testkit::redis_prefix::redis_addr().unwrap())
        .await
        .unwrap();
    let mut d = start_distributed(db_url.clone(), &keys, tempfile::tempdir().unwrap(), proxy).await;

    let s = d.cp.signup().await;
    let tenant = d
        .tenant_record(&s.tenant_id)
        .await
        .expect("tenant published at signup");
    assert_eq!(tenant.version, 0);
    let created =
        d.cp.post("/api/v1/keys", Some(&s.token), json!({"name": "k"}))
            .await
            .expect(201);
    let key = created["key"].as_str().unwrap().to_owned();
    let record = d
        .key_record(&key)
        .await
        .expect("published before POST returned");
    assert_eq!(record.version, 1);
    assert!(record.revoked_at.is_none());
    let provider =
        d.cp.post(
            "/api/v1/providers",
            Some(&s.token),
            json!({"name": "p", "kind": "openai", "api_key": "sk-secret-value"}),
        )
        .await
        .expect(201);
    let tenant = d.tenant_record(&s.tenant_id).await.unwrap();
    assert_eq!(tenant.version, 1);
    assert_eq!(
        tenant.providers[0].id.to_string(),
        provider["id"].as_str().unwrap()
    );
    assert!(
        tenant.providers[0]
            .api_key_sealed
            .as_deref()
            .unwrap()
            .starts_with("v1:")
    );

    // Redis goes away: the revocation is committed and answered within the wait budget…
    d.proxy.set_up(false);
    let started = Instant::now();
    d.cp.delete(
        &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
        &s.token,
    )
    .await
    .expect(204);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered after a bounded wait: {:?}",
        started.elapsed()
    );
    assert!(
        d.key_record(&key).await.unwrap().revoked_at.is_none(),
        "not published while Redis is unreachable"
    );
    assert!(d.outbox_len().await >= 1, "the change waits in the outbox");
    let got =
        d.cp.get(
            &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .expect(200);
    assert!(got["revoked_at"].is_string());

    // …and published once Redis is back, after which the outbox is empty.
    d.proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rec = d.key_record(&key).await.unwrap();
        if rec.revoked_at.is_some() {
            assert_eq!(rec.version, 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revocation not published after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.outbox_len().await > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox rows are deleted after publishing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Redis loses its data; a restart republishes every key and tenant.
    let Distributed { cp, proxy, .. } = d;
    let dir = tempfile::tempdir().unwrap();
    cp.running.shutdown().await.unwrap();
    testkit::redis_prefix::delete_prefix(&testkit::redis_prefix::redis_url(), keys.prefix()).await;
    let mut d = start_distributed(db_url, &keys, dir, proxy).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let (Some(k), Some(t)) = (
            d.key_record(&key).await,
            d.tenant_record(&s.tenant_id).await,
        ) {
            assert!(k.revoked_at.is_some());
            assert_eq!(t.version, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records were not republished on start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: Value = d.cp.get("/api/v1/me", &s.token).await.expect(200);
    d.cp.stop().await;
    testkit::redis_prefix::delete_prefix(&testkit::redis_prefix::redis_url(), keys.prefix()).await;
}
