//! Shared helpers of the control-plane API tests: start a real control plane on `127.0.0.1:0`
//! in zero-setup mode (in-process bus, embedded `/v1`), against a fresh PostgreSQL database per
//! test binary (migrated once) or a fresh SQLite file, and talk to it over HTTP with reqwest.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use control_plane::RunningControlPlane;
use control_plane::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub const PASSWORD: &str = "correct horse battery staple";

/// The test binary's database: created and migrated once, shared by its tests (each test works
/// in its own organizations, so they do not see each other's data).
static DATABASE: OnceCell<String> = OnceCell::const_new();

pub async fn database_url() -> String {
    DATABASE
        .get_or_init(|| async {
            let db = testkit::pg::fresh_database()
                .await
                .expect("fresh Postgres database (is Postgres running?)");
            // Migrate once here, so parallel control planes never race on CREATE TABLE.
            let conn = control_plane::db::connect_and_migrate(&db.url)
                .await
                .expect("migrations");
            conn.close().await.expect("close");
            db.url
        })
        .await
        .clone()
}

/// A running control plane plus what a test needs to talk to it.
pub struct Cp {
    pub running: RunningControlPlane,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// An HTTP answer: status, JSON body (Null when empty) and headers.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error in our shape with this status and code; returns the message.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        let err = self
            .body
            .get("error")
            .unwrap_or_else(|| panic!("no error object in {}", self.body));
        assert_eq!(err["code"], code, "body: {}", self.body);
        assert_eq!(
            err.as_object().map(|o| o.len()),
            Some(2),
            "error has exactly code and message: {}",
            self.body
        );
        err["message"]
            .as_str()
            .expect("message is a string")
            .to_owned()
    }
}

/// A signed-up user with a session in their own organization.
#[derive(Debug, Clone)]
pub struct Session {
    pub email: String,
    pub token: String,
    pub refresh: String,
    pub tenant_id: String,
    pub user_id: String,
}

impl Cp {
    /// Zero-setup mode on the test binary's PostgreSQL database.
    pub async fn start() -> Cp {
        let url = database_url().await;
        Self::start_with(Some(url)).await
    }

    /// Zero-setup mode on a fresh SQLite file (the default database).
    pub async fn start_sqlite() -> Cp {
        Self::start_with(None).await
    }

    async fn start_with(database_url: Option<String>) -> Cp {
        Self::start_configured(database_url, |_| {}).await
    }

    /// Zero-setup mode on `database_url` (None: a fresh SQLite file), with `adjust` applied to
    /// the configuration first (e.g. to set `catalog_path`).
    pub async fn start_configured(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
    ) -> Cp {
        Self::start_clocked(
            database_url,
            adjust,
            std::sync::Arc::new(control_plane::throttle::SystemClock),
        )
        .await
    }

    /// Like [`Cp::start_configured`], with the clock the login and sign-up throttles read (a
    /// `ManualClock` lets a test move past a lock without waiting).
    pub async fn start_clocked(
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
        clock: std::sync::Arc<dyn control_plane::throttle::Clock>,
    ) -> Cp {
        // Logs go to the test's captured output (shown on failure); RUST_LOG filters them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,control_plane=info")
                }),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::embedded(dir.path(), database_url);
        adjust(&mut config);
        let running = control_plane::start_with_clock(config, clock)
            .await
            .expect("control plane starts");
        let base = running.base_url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Cp {
            running,
            base,
            client,
            dir,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Signs up a fresh user with a fresh organization.
    pub async fn signup(&self) -> Session {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let email = format!("user-{tag}@example.com");
        let body = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "organization": format!("org-{tag}")}),
            )
            .await
            .expect(201);
        Session {
            email,
            token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
            tenant_id: body["tenant"]["id"].as_str().expect("tenant id").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
        }
    }

    /// Invites `member` to `owner`'s organization with `role`, has `member` accept, and returns
    /// the session the acceptance gave `member` in that organization.
    pub async fn join(&self, owner: &Session, member: &Session, role: &str) -> Session {
        let invitation = self
            .post(
                "/api/v1/invitations",
                Some(&owner.token),
                json!({"email": member.email, "role": role}),
            )
            .await
            .expect(201);
        let accept_path = invitation["accept_path"].as_str().expect("accept_path");
        let joined = self
            .post(accept_path, Some(&member.token), json!({}))
            .await
            .expect(200);
        assert_eq!(joined["tenant"]["id"], owner.tenant_id.as_str(), "{joined}");
        assert_eq!(joined["role"], role, "{joined}");
        Session {
            email: member.email.clone(),
            token: joined["access_token"].as_str().expect("token").to_owned(),
            refresh: joined["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
            tenant_id: owner.tenant_id.clone(),
            user_id: member.user_id.clone(),
        }
    }

    /// A mock provider and a model deployment on it; returns (provider id, model id).
    pub async fn mock_model(&self, s: &Session, model: &str) -> (String, String) {
        let provider = self
            .post(
                "/api/v1/providers",
                Some(&s.token),
                json!({"name": format!("mock-{}", uuid::Uuid::new_v4().simple()), "kind": "mock"}),
            )
            .await
            .expect(201);
        let provider_id = provider["id"].as_str().expect("id").to_owned();
        let m = self
            .post(
                "/api/v1/models",
                Some(&s.token),
                json!({
                    "name": model,
                    "provider_id": provider_id,
                    "upstream_model": "mock-1",
                    "input_price_per_mtok": "2.5",
                    "output_price_per_mtok": 10,
                }),
            )
            .await
            .expect(201);
        (provider_id, m["id"].as_str().expect("id").to_owned())
    }

    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}
