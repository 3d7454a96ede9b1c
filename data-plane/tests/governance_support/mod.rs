//! Harness for the rate-limit and key-scope tests: several data-plane nodes (AppStates served on
//! 127.0.0.1:0 with the binaries' listener and the peer address as `ConnectInfo`) sharing one
//! in-memory config bus, counting their rate limits in memory, in one real Redis under a fresh
//! prefix (= nodes of one cluster), or against a Redis that cannot be reached.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use data_plane::AppState;
use data_plane::config::Settings;
use data_plane::governance::limits::RateLimiter;
use data_plane::store::{ConfigStore, redis_pool};
use data_plane::usage_sink::UsageSink;
use serde_json::Value;
use shared::bus::MemoryBus;
use shared::config::{DeploymentRecord, KeyRecord, ProviderKind, ProviderRecord, TenantConfig};
use shared::crypto::MasterKey;
use shared::usage::UsageEvent;
use testkit::fake_openai::FakeOpenAi;
use testkit::redis_prefix::PrefixGuard;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(10);
/// The model every test calls (a normal model of the fake upstream).
pub const MODEL: &str = "gpt-4o-mini";

/// Where the nodes count their rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// In memory (the zero-setup default).
    Memory,
    /// In the test Redis, under a fresh prefix shared by every node.
    Redis,
    /// In a Redis nobody listens for (connections refused).
    Unreachable,
}

pub struct Node {
    pub addr: SocketAddr,
    pub state: AppState,
    usage_rx: mpsc::Receiver<UsageEvent>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Cluster {
    pub bus: Arc<MemoryBus>,
    pub master_key: MasterKey,
    pub tenant_id: Uuid,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
    pub upstream: FakeOpenAi,
    pub provider: ProviderRecord,
    pub prefix: Option<PrefixGuard>,
    tenant_version: AtomicI64,
}

impl Cluster {
    pub async fn start(nodes: usize, counting: Counting, settings: Settings) -> Self {
        let bus = MemoryBus::new();
        let master_key = MasterKey::generate();
        let prefix = (counting == Counting::Redis).then(PrefixGuard::new);
        let mut started = Vec::new();
        for _ in 0..nodes {
            let store = ConfigStore::in_memory(Arc::clone(&bus), master_key.clone());
            let (tx, usage_rx) = mpsc::channel(4096);
            let mut state =
                AppState::new(settings.clone(), store, UsageSink::in_memory(tx)).expect("state");
            let redis = match (counting, &prefix) {
                (Counting::Redis, Some(p)) => Some((
                    redis_pool(&testkit::redis_prefix::redis_url()).expect("pool"),
                    p.keys.clone(),
                )),
                (Counting::Unreachable, _) => Some((
                    redis_pool(&format!("redis://127.0.0.1:{}", closed_port())).expect("pool"),
                    shared::config::RedisKeys::new(testkit::redis_prefix::fresh_prefix()),
                )),
                _ => None,
            };
            // Counting in Redis, a node waits longer than the production bound before it
            // counts alone: on a loaded test machine a burst of 100 requests per node can stall
            // a few hundred milliseconds, which would turn an exactness test into a test of the
            // fallback (tested on its own with the real bound).
            let wait = match counting {
                Counting::Redis => Duration::from_secs(5),
                _ => data_plane::governance::limits::REDIS_WAIT,
            };
            if redis.is_some() {
                state = state
                    .with_rate_limiter(RateLimiter::with_redis_wait(
                        redis,
                        settings.node_count,
                        wait,
                    ))
                    .expect("limiter");
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let app = data_plane::app(state.clone());
            let listener = data_plane::http::listener::listener(listener);
            let server = tokio::spawn(async move {
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
            started.push(Node {
                addr,
                state,
                usage_rx,
                server,
            });
        }
        let upstream = FakeOpenAi::start().await.expect("fake upstream");
        let id = Uuid::new_v4();
        let provider = ProviderRecord {
            id,
            name: "fake".into(),
            kind: ProviderKind::OpenAiCompatible,
            base_url: Some(upstream.base_url()),
            api_key_sealed: None,
            options: Default::default(),
        };
        let cluster = Self {
            bus,
            master_key,
            tenant_id: Uuid::new_v4(),
            nodes: started,
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            upstream,
            provider,
            prefix,
            tenant_version: AtomicI64::new(0),
        };
        cluster.set_tenant(|_| {});
        cluster
    }

    /// Publishes the tenant (one deployment, [`MODEL`], on the fake upstream) as `edit` leaves it.
    pub fn set_tenant(&self, edit: impl FnOnce(&mut TenantConfig)) {
        let version = self.tenant_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut config = TenantConfig {
            tenant_id: self.tenant_id,
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
            deployments: vec![deployment(&self.provider, MODEL)],
            providers: vec![self.provider.clone()],
        };
        edit(&mut config);
        assert!(self.bus.put_tenant(config));
    }

    /// Publishes a key of the tenant as `edit` leaves it; returns the plaintext key and its id.
    pub fn add_key(&self, edit: impl FnOnce(&mut KeyRecord)) -> (String, Uuid) {
        let key = shared::keys::generate_api_key();
        let mut record = KeyRecord {
            key_id: Uuid::new_v4(),
            key_hash: shared::keys::hash_api_key(&key),
            tenant_id: self.tenant_id,
            team_id: None,
            name: "test key".into(),
            allowed_models: None,
            expires_at: None,
            revoked_at: None,
            version: 1,
            limits: Default::default(),
            endpoints: None,
            allowed_cidrs: None,
            max_tokens_per_request: None,
            metadata: Default::default(),
            cache: None,
        };
        edit(&mut record);
        let id = record.key_id;
        assert!(self.bus.put_key(record));
        (key, id)
    }

    pub fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[node].addr)
    }

    pub async fn post(
        &self,
        node: usize,
        path: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(node, path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn chat(&self, node: usize, key: &str, body: &Value) -> reqwest::Response {
        self.post(node, "/v1/chat/completions", key, body).await
    }

    /// The next usage event of `node`.
    pub async fn next_usage(&mut self, node: usize) -> UsageEvent {
        tokio::time::timeout(WAIT, self.nodes[node].usage_rx.recv())
            .await
            .expect("a usage event in time")
            .expect("usage channel open")
    }
}

pub fn deployment(provider: &ProviderRecord, name: &str) -> DeploymentRecord {
    DeploymentRecord {
        id: Uuid::new_v4(),
        context_window: None,
        capabilities: None,
        rpm_limit: None,
        tpm_limit: None,
        name: name.into(),
        provider_id: provider.id,
        upstream_model: name.into(),
        input_price_micros_per_mtok: 1_000_000,
        output_price_micros_per_mtok: 2_000_000,
        region: None,
        cached_input_price_micros_per_mtok: None,
        max_output_tokens: None,
        catalog_id: None,
        mode: Default::default(),
    }
}

/// A local port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub fn hello(max_tokens: Option<u32>) -> Value {
    let mut body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello"}],
    });
    if let Some(max) = max_tokens {
        body["max_tokens"] = serde_json::json!(max);
    }
    body
}

/// A header's value as a string ("" when absent).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
