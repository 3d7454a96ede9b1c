//! Test harness: the data plane served in-process on 127.0.0.1:0 with the in-memory bus, the
//! in-memory config store and a usage sink whose receiving end the test keeps.

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
use data_plane::store::ConfigStore;
use data_plane::usage_sink::UsageSink;
use serde_json::Value;
use shared::bus::MemoryBus;
use shared::config::{
    DeploymentRecord, KeyRecord, ProviderKind, ProviderRecord, RouteCandidate, RouteRecord,
    RouteStrategy, TenantConfig,
};
use shared::crypto::MasterKey;
use shared::usage::UsageEvent;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const REQUEST_ID: &str = "x-switchyard-request-id";

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Gateway {
    pub addr: SocketAddr,
    pub bus: Arc<MemoryBus>,
    pub master_key: MasterKey,
    pub tenant_id: Uuid,
    pub http: reqwest::Client,
    usage_rx: mpsc::Receiver<UsageEvent>,
    tenant_version: AtomicI64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Options for a key.
#[derive(Default)]
pub struct KeyOptions {
    pub allowed_models: Option<Vec<String>>,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub team_id: Option<Uuid>,
    pub cache: Option<shared::cache::CacheSettings>,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(Settings::default()).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        let bus = MemoryBus::new();
        let master_key = MasterKey::generate();
        let store = ConfigStore::in_memory(Arc::clone(&bus), master_key.clone());
        let (tx, usage_rx) = mpsc::channel(1024);
        let state = AppState::new(settings, store, UsageSink::in_memory(tx)).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = data_plane::app(state);
        // The binaries' listener: TCP_NODELAY and JSON answers for the HTTP parser's refusals.
        let listener = data_plane::http::listener::listener(listener);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Self {
            addr,
            bus,
            master_key,
            tenant_id: Uuid::new_v4(),
            http,
            usage_rx,
            tenant_version: AtomicI64::new(0),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Publishes a key of this gateway's tenant; returns the plaintext key.
    pub fn add_key(&self, options: KeyOptions) -> String {
        self.add_key_for(self.tenant_id, options)
    }

    /// Publishes a key of `tenant_id` (another organization on the same gateway).
    pub fn add_key_for(&self, tenant_id: Uuid, options: KeyOptions) -> String {
        let key = shared::keys::generate_api_key();
        let record = KeyRecord {
            key_id: Uuid::new_v4(),
            key_hash: shared::keys::hash_api_key(&key),
            tenant_id,
            team_id: options.team_id,
            name: "test key".into(),
            allowed_models: options.allowed_models,
            expires_at: options.expires_at,
            revoked_at: options.revoked_at,
            version: 1,
            limits: Default::default(),
            endpoints: None,
            allowed_cidrs: None,
            max_tokens_per_request: None,
            metadata: Default::default(),
            cache: options.cache,
        };
        assert!(self.bus.put_key(record));
        key
    }

    pub fn key(&self) -> String {
        self.add_key(KeyOptions::default())
    }

    /// Publishes the tenant config (with a fresh, higher version each time).
    pub fn set_tenant(&self, providers: Vec<ProviderRecord>, deployments: Vec<DeploymentRecord>) {
        self.set_tenant_for(self.tenant_id, providers, deployments);
    }

    /// Publishes `tenant_id`'s config (another organization on the same gateway).
    pub fn set_tenant_for(
        &self,
        tenant_id: Uuid,
        providers: Vec<ProviderRecord>,
        deployments: Vec<DeploymentRecord>,
    ) {
        let version = self.tenant_version.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            self.bus
                .put_tenant(tenant_config(tenant_id, version, providers, deployments))
        );
    }

    /// Publishes this gateway's tenant config as `edit` leaves it (routes, region policies),
    /// starting from these providers and deployments.
    pub fn set_tenant_with(
        &self,
        providers: Vec<ProviderRecord>,
        deployments: Vec<DeploymentRecord>,
        edit: impl FnOnce(&mut TenantConfig),
    ) {
        let version = self.tenant_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut config = TenantConfig {
            tenant_id: self.tenant_id,
            version,
            deployments,
            providers,
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
        };
        edit(&mut config);
        assert!(self.bus.put_tenant(config));
    }

    /// A provider record, its API key sealed with this gateway's master key.
    pub fn provider(
        &self,
        kind: ProviderKind,
        base_url: Option<String>,
        api_key: Option<&str>,
    ) -> ProviderRecord {
        let id = Uuid::new_v4();
        ProviderRecord {
            id,
            name: format!("{} provider", kind.as_str()),
            kind,
            base_url,
            api_key_sealed: api_key.map(|k| self.master_key.seal(k, &id.to_string())),
            options: Default::default(),
        }
    }

    /// POSTs `body` as JSON to `path` with `key` as the bearer token.
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.post_json("/v1/chat/completions", key, &body).await
    }

    pub async fn embeddings(&self, key: &str, body: Value) -> reqwest::Response {
        self.post_json("/v1/embeddings", key, &body).await
    }

    /// The next usage event (fails the test after [`WAIT`]).
    pub async fn next_usage(&mut self) -> UsageEvent {
        tokio::time::timeout(WAIT, self.usage_rx.recv())
            .await
            .expect("a usage event in time")
            .expect("usage channel open")
    }

    /// Asserts that no usage event is queued right now.
    pub fn assert_no_usage_queued(&mut self) {
        if let Ok(e) = self.usage_rx.try_recv() {
            panic!("unexpected usage event: {e:?}");
        }
    }
}

/// Serves `router` on 127.0.0.1:0 in a background task of the current runtime.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A local port nothing listens on (it was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A tenant config with `providers` and `deployments` and nothing else (no routes, policies,
/// budgets or limits).
pub fn tenant_config(
    tenant_id: Uuid,
    version: i64,
    providers: Vec<ProviderRecord>,
    deployments: Vec<DeploymentRecord>,
) -> TenantConfig {
    TenantConfig {
        tenant_id,
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
        deployments,
        providers,
    }
}

/// A route named `name` over `deployments`, in that order, with default settings.
pub fn route(
    name: &str,
    strategy: RouteStrategy,
    deployments: &[&DeploymentRecord],
) -> RouteRecord {
    RouteRecord {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        strategy,
        candidates: deployments
            .iter()
            .map(|d| RouteCandidate {
                deployment_id: d.id,
                weight: None,
                priority: None,
            })
            .collect(),
        allowed_regions: None,
        max_attempts: None,
        retry_on: None,
        timeouts: Default::default(),
        hedge_after_ms: None,
        sticky: false,
        cache: None,
    }
}

pub fn deployment(name: &str, provider: &ProviderRecord, upstream_model: &str) -> DeploymentRecord {
    DeploymentRecord {
        id: Uuid::new_v4(),
        context_window: None,
        capabilities: None,
        rpm_limit: None,
        tpm_limit: None,
        name: name.into(),
        provider_id: provider.id,
        upstream_model: upstream_model.into(),
        input_price_micros_per_mtok: 2_500_000,
        output_price_micros_per_mtok: 10_000_000,
        region: None,
        cached_input_price_micros_per_mtok: None,
        max_output_tokens: None,
        catalog_id: None,
        mode: Default::default(),
    }
}

/// A deployment per model in `models`, each named like the upstream model it calls (the fakes
/// pick their behaviour by model name).
pub fn same_name_deployments<'a>(
    provider: &'a ProviderRecord,
    models: impl IntoIterator<Item = &'a str> + 'a,
) -> impl Iterator<Item = DeploymentRecord> + 'a {
    models
        .into_iter()
        .map(move |model| deployment(model, provider, model))
}

/// `body` made a streaming request, asking for the usage chunk when `include_usage`.
pub fn streaming(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = serde_json::json!(true);
    if include_usage {
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body
}

/// Asserts a `text/event-stream` answer.
pub fn assert_event_stream(response: &reqwest::Response) {
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
}

pub fn user_message(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Asserts an OpenAI-format error with `status` and `code`; returns the `error` object.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response.headers().contains_key(REQUEST_ID),
        "request id header on errors"
    );
    let body: Value = response.json().await.expect("JSON error body");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object: {body}"))
        .clone();
    assert!(error["message"].is_string(), "message: {body}");
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "message: {body}"
    );
    assert!(error["type"].is_string(), "type: {body}");
    assert!(error.get("param").is_some(), "param present: {body}");
    assert!(error.get("code").is_some(), "code present: {body}");
    assert_eq!(error["code"], code, "code: {body}");
    error
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    testkit::sse::data_events(body)
}

/// Asserts a stream that did not end with `[DONE]` (cut short or failed); returns its last
/// event, parsed.
pub fn last_event_without_done(events: &[String]) -> Value {
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:#?}");
    serde_json::from_str(events.last().expect("some events")).expect("a JSON event")
}

/// Concatenated `choices[0].delta.content` of stream events.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
