//! A small client for the control API (`/api/v1/...`), shared by the end-to-end tests and the
//! benchmark so the request shapes live in one place.
//!
//! Responses are kept as `serde_json::Value`: tests assert on the documented field names
//! themselves, and a helper only insists on what it needs to continue (an id, a token, a key).

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The password [`ControlApi::provision`] signs up with.
pub const PASSWORD: &str = "correct horse battery staple";

/// An HTTP client bound to one control plane, optionally signed in.
#[derive(Debug, Clone)]
pub struct ControlApi {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// A key as returned once by `POST /api/v1/keys`.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    /// The plaintext `sk-sy-…` key.
    pub key: String,
    pub body: Value,
}

impl ControlApi {
    /// `base_url` is the control plane's origin, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            token: None,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn access_token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn set_access_token(&mut self, token: impl Into<String>) {
        self.token = Some(token.into());
    }

    /// Sends a request (with the bearer token when signed in) and returns status and JSON body
    /// (`Value::Null` for an empty or non-JSON body).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {path} body"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Like [`Self::send`] but fails unless the status is `want`.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        want: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.send(method.clone(), path, body).await?;
        if status != want {
            bail!("{method} {path}: expected {want}, got {status}: {value}");
        }
        Ok(value)
    }

    fn take_token(&mut self, body: &Value) -> anyhow::Result<()> {
        let token = body["access_token"]
            .as_str()
            .with_context(|| format!("no access_token in {body}"))?;
        self.token = Some(token.to_owned());
        Ok(())
    }

    /// `POST /api/v1/auth/signup` (201); keeps the access token.
    pub async fn signup(
        &mut self,
        email: &str,
        password: &str,
        organization: &str,
    ) -> anyhow::Result<Value> {
        let body = json!({"email": email, "password": password, "organization": organization});
        let v = self
            .expect(
                Method::POST,
                "/api/v1/auth/signup",
                Some(&body),
                StatusCode::CREATED,
            )
            .await?;
        self.take_token(&v)?;
        Ok(v)
    }

    /// `POST /api/v1/auth/login` (200); keeps the access token.
    pub async fn login(&mut self, email: &str, password: &str) -> anyhow::Result<Value> {
        let body = json!({"email": email, "password": password});
        let v = self
            .expect(
                Method::POST,
                "/api/v1/auth/login",
                Some(&body),
                StatusCode::OK,
            )
            .await?;
        self.take_token(&v)?;
        Ok(v)
    }

    /// `POST /api/v1/providers` (201).
    pub async fn create_provider(&self, body: &Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/providers",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// `POST /api/v1/models` (201).
    pub async fn create_model(&self, body: &Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/models",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// `POST /api/v1/routes` (201), e.g.
    /// `{"name": "support", "strategy": "priority", "candidates": [{"model_id": primary}, {"model_id": fallback}]}`.
    pub async fn create_route(&self, body: &Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/routes",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// `PATCH /api/v1/routes/{id}` (200): only the fields in `body` change.
    pub async fn update_route(&self, id: &str, body: &Value) -> anyhow::Result<Value> {
        self.expect(
            Method::PATCH,
            &format!("/api/v1/routes/{id}"),
            Some(body),
            StatusCode::OK,
        )
        .await
    }

    /// `POST /api/v1/teams` (201), e.g. `{"name": "eu", "allowed_regions": ["eu"]}`.
    pub async fn create_team(&self, body: &Value) -> anyhow::Result<Value> {
        self.expect(
            Method::POST,
            "/api/v1/teams",
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    /// `PATCH /api/v1/organization` (200): sets the organization's region policy; `None`
    /// removes it.
    pub async fn set_org_regions(&self, regions: Option<&[&str]>) -> anyhow::Result<Value> {
        self.expect(
            Method::PATCH,
            "/api/v1/organization",
            Some(&json!({"allowed_regions": regions})),
            StatusCode::OK,
        )
        .await
    }

    /// `PATCH /api/v1/teams/{id}` (200): sets the team's region policy; `None` removes it.
    pub async fn set_team_regions(
        &self,
        team_id: &str,
        regions: Option<&[&str]>,
    ) -> anyhow::Result<Value> {
        self.expect(
            Method::PATCH,
            &format!("/api/v1/teams/{team_id}"),
            Some(&json!({"allowed_regions": regions})),
            StatusCode::OK,
        )
        .await
    }

    /// `POST /api/v1/keys` (201), returning the plaintext key shown once.
    pub async fn create_key(&self, body: &Value) -> anyhow::Result<CreatedKey> {
        let v = self
            .expect(
                Method::POST,
                "/api/v1/keys",
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
        Ok(CreatedKey {
            id: id_of(&v)?,
            key: v["key"]
                .as_str()
                .with_context(|| format!("no key in {v}"))?
                .to_owned(),
            body: v,
        })
    }

    /// `DELETE /api/v1/keys/{id}` (204).
    pub async fn revoke_key(&self, id: &str) -> anyhow::Result<()> {
        self.expect(
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await
        .map(drop)
    }

    /// `GET /api/v1/usage` (200).
    pub async fn usage(&self) -> anyhow::Result<Value> {
        self.expect(Method::GET, "/api/v1/usage", None, StatusCode::OK)
            .await
    }

    /// Signs up a fresh tenant and provisions one provider, one model and one key: what most
    /// tests and the benchmark need before sending traffic. Returns the key.
    pub async fn provision(&mut self, setup: &Provision<'_>) -> anyhow::Result<Provisioned> {
        let org = format!("org-{}", uuid::Uuid::new_v4().simple());
        let email = format!("{org}@example.com");
        self.signup(&email, PASSWORD, &org).await?;
        let mut provider = json!({"name": "upstream", "kind": setup.kind});
        if let Some(url) = setup.base_url {
            provider["base_url"] = json!(url);
        }
        if let Some(key) = setup.api_key {
            provider["api_key"] = json!(key);
        }
        let provider = self.create_provider(&provider).await?;
        let provider_id = id_of(&provider)?;
        let model = self
            .create_model(&json!({
                "name": setup.model,
                "provider_id": provider_id,
                "upstream_model": setup.upstream_model,
                "input_price_per_mtok": setup.input_price_per_mtok,
                "output_price_per_mtok": setup.output_price_per_mtok,
            }))
            .await?;
        let key = self.create_key(&json!({"name": "test key"})).await?;
        Ok(Provisioned {
            email,
            provider_id,
            model_id: id_of(&model)?,
            key,
        })
    }
}

/// What [`ControlApi::provision`] creates.
#[derive(Debug, Clone)]
pub struct Provision<'a> {
    /// Provider kind: `openai_compatible`, `openai` or `mock`.
    pub kind: &'a str,
    pub base_url: Option<&'a str>,
    pub api_key: Option<&'a str>,
    /// The model name clients send.
    pub model: &'a str,
    pub upstream_model: &'a str,
    /// USD per million tokens.
    pub input_price_per_mtok: f64,
    pub output_price_per_mtok: f64,
}

/// Ids and the key [`ControlApi::provision`] created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub email: String,
    pub provider_id: String,
    pub model_id: String,
    pub key: CreatedKey,
}

/// The `id` of a created object, as a string.
pub fn id_of(v: &Value) -> anyhow::Result<String> {
    match &v["id"] {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => bail!("no id in {v}"),
    }
}
