//! Building blocks for end-to-end tests: a distributed deployment (fresh Postgres database, fresh
//! Redis prefix, the control plane and any number of data-plane nodes as real processes), and
//! poll-with-deadline for "eventually visible" assertions.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

use crate::pg::TestDatabase;
use crate::proc::{ChildGuard, command, control_plane_binary, data_plane_binary};

/// `SWITCHYARD_UPSTREAM_ALLOW_CIDRS` for distributed test deployments: loopback, where every
/// fake upstream listens (distributed mode allows no internal address by default).
pub const LOOPBACK_CIDRS: &str = shared::egress::ZERO_SETUP_ALLOW;

/// A fresh 32-byte master key as 64 hex characters (`SWITCHYARD_MASTER_KEY`).
pub fn random_master_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Calls `f` until it returns `Ok`, every `interval`, and fails with its last error once
/// `timeout` has passed. The first call happens at once.
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// The shared settings of one distributed deployment under test.
#[derive(Debug)]
pub struct Deployment {
    pub db: TestDatabase,
    pub redis_url: String,
    pub prefix: String,
    pub master_key: String,
    pub jwt_secret: String,
    /// `SWITCHYARD_DATA_DIR` for the control plane (unused with Postgres, but keeps it out of
    /// the working directory).
    pub data_dir: TempDir,
}

impl Deployment {
    /// A fresh database and Redis prefix, and fresh secrets.
    pub async fn new() -> anyhow::Result<Self> {
        Ok(Self {
            db: crate::pg::fresh_database().await?,
            redis_url: crate::redis_prefix::redis_url(),
            prefix: crate::redis_prefix::fresh_prefix(),
            master_key: random_master_key(),
            jwt_secret: random_master_key(),
            data_dir: tempfile::tempdir().context("temp data dir")?,
        })
    }

    /// The control plane's environment in distributed mode (`SWITCHYARD_LISTEN` is set by
    /// [`command`]).
    pub fn control_plane_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("SWITCHYARD_REDIS_PREFIX", self.prefix.clone()),
            ("SWITCHYARD_MASTER_KEY", self.master_key.clone()),
            ("SWITCHYARD_JWT_SECRET", self.jwt_secret.clone()),
            (
                "SWITCHYARD_DATA_DIR",
                self.data_dir.path().display().to_string(),
            ),
            // Distributed mode allows no internal upstream by default; the fakes listen on
            // loopback.
            ("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", LOOPBACK_CIDRS.to_owned()),
        ]
    }

    /// Starts the `control-plane` binary against this deployment and waits until it is healthy.
    pub async fn start_control_plane(&self, rust_log: &str) -> anyhow::Result<ChildGuard> {
        let mut cmd = command(&control_plane_binary());
        cmd.envs(self.control_plane_env()).env("RUST_LOG", rust_log);
        let cp = ChildGuard::spawn("control-plane", cmd).await?;
        cp.wait_healthy("/healthz", Duration::from_secs(30)).await?;
        Ok(cp)
    }

    /// Starts one `data-plane` node and waits until it is ready (connected and subscribed). The
    /// fakes listen on loopback, so the node's egress policy allows it
    /// (`SWITCHYARD_UPSTREAM_ALLOW_CIDRS`); a standalone node allows nothing non-public by default.
    pub async fn start_data_plane(
        &self,
        node_id: &str,
        rust_log: &str,
    ) -> anyhow::Result<ChildGuard> {
        self.start_data_plane_with(
            node_id,
            rust_log,
            &[("SWITCHYARD_UPSTREAM_ALLOW_CIDRS", "127.0.0.0/8,::1/128")],
        )
        .await
    }

    /// [`Self::start_data_plane`] with exactly the extra environment `env` (no egress allow-list
    /// unless `env` sets one).
    pub async fn start_data_plane_with(
        &self,
        node_id: &str,
        rust_log: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ChildGuard> {
        let mut cmd = command(&data_plane_binary());
        // Each node its own usage spool (a spool is locked by one process), kept across a
        // restart of the same node id; `env` may override it.
        cmd.env("SWITCHYARD_USAGE_SPOOL_DIR", self.spool_dir(node_id));
        cmd.envs(env.iter().copied());
        cmd.env("REDIS_URL", &self.redis_url)
            .env("SWITCHYARD_REDIS_PREFIX", &self.prefix)
            .env("SWITCHYARD_MASTER_KEY", &self.master_key)
            .env("SWITCHYARD_NODE_ID", node_id)
            .env("RUST_LOG", rust_log);
        let dp = ChildGuard::spawn(node_id, cmd).await?;
        dp.wait_healthy("/readyz", Duration::from_secs(30)).await?;
        Ok(dp)
    }

    /// The usage spool directory of data-plane node `node_id` (under the deployment's data dir).
    pub fn spool_dir(&self, node_id: &str) -> std::path::PathBuf {
        self.data_dir.path().join(format!("usage-spool-{node_id}"))
    }

    /// Drops the database and deletes the Redis keys. Best effort; a failed test skips it and
    /// leaves them for inspection.
    pub async fn cleanup(self) {
        crate::redis_prefix::delete_prefix(&self.redis_url, &self.prefix).await;
        self.db.drop_database().await;
    }
}

/// A client with a bounded per-request timeout, for talking to the services under test.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A client that opens a fresh connection per request (no idle pool), so a test's "new
/// connection" really is one; a long timeout for requests held open on purpose.
pub fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `POST {origin}/v1/chat/completions` with a bearer key.
pub async fn chat(
    client: &reqwest::Client,
    origin: &str,
    key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<reqwest::Response> {
    client
        .post(format!("{origin}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .context("POST /v1/chat/completions")
}

/// The concatenated `choices[0].delta.content` of streamed chunks (`data` payloads, `[DONE]`
/// and non-JSON events ignored).
pub fn stream_content(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The row of a `GET /api/v1/usage` answer for `request_id` (a row's `id` is the request id,
/// the `x-switchyard-request-id` the gateway answered with).
pub fn usage_row<'a>(
    usage: &'a serde_json::Value,
    request_id: &str,
) -> Option<&'a serde_json::Value> {
    usage["data"]
        .as_array()?
        .iter()
        .find(|row| row["id"].as_str() == Some(request_id))
}
