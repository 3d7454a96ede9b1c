//! Configuration, parsed once from the environment (or flags) with clap and validated before
//! anything starts. Nothing reads `std::env` afterwards.
//!
//! Two modes follow from `REDIS_URL`:
//! - **unset: zero-setup / embedded.** The data plane's `/v1` routes run in this process on
//!   the same port, over an in-process bus. `DATABASE_URL` defaults to a SQLite file in
//!   `SWITCHYARD_DATA_DIR`; the master key and JWT secret default to values generated once and
//!   kept in `<data_dir>/secrets.json`.
//! - **set: distributed.** Only the control API is served; config is published to Redis and
//!   usage is read from it. `SWITCHYARD_MASTER_KEY` and `SWITCHYARD_JWT_SECRET` are required
//!   (every data-plane node needs the same master key, and every control-plane replica the same
//!   JWT secret).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use data_plane::config::{Settings, ShutdownSettings};
use shared::config::RedisKeys;
use shared::crypto::MasterKey;
use shared::egress::EgressPolicy;

use crate::throttle::ThrottleSettings;

/// Shortest accepted JWT secret, in bytes (HS256 wants at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How log lines are written: the data plane's type, since both binaries share one
/// telemetry setup (`data_plane::telemetry`).
pub use data_plane::config::LogFormat;

/// Whether the console's session cookies carry `Secure` (`SWITCHYARD_COOKIE_SECURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CookieSecure {
    /// When the request came through HTTPS (`x-forwarded-proto: https`) or HSTS is configured.
    #[default]
    Auto,
    /// Always (the console is only ever reached over HTTPS).
    True,
    /// Never (plain-http deployments, local development).
    False,
}

/// A string that must never appear in logs, `Debug` output or `--help`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The control plane's configuration.
#[derive(Clone, Parser)]
#[command(
    name = "control-plane",
    version,
    about = "Switchyard control plane: the management API (and, without REDIS_URL, the gateway too)"
)]
pub struct Config {
    /// Address to listen on (host:port).
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,

    /// Database URL: postgres://… or sqlite://…; default: a SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Directory for the default SQLite database and the zero-setup secrets file.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Redis URL. Unset: run everything in this one process (zero-setup). Set: publish config to
    /// Redis for separate data-plane nodes and read usage from it.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key Switchyard uses; must match the data plane's.
    #[arg(long, env = "SWITCHYARD_REDIS_PREFIX", default_value = RedisKeys::DEFAULT_PREFIX)]
    pub redis_prefix: String,

    /// 32-byte master key sealing provider API keys, as 64 hex characters or base64. Required
    /// with REDIS_URL; otherwise generated once into <data_dir>/secrets.json.
    #[arg(long, env = "SWITCHYARD_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<Secret>,

    /// Secret signing access tokens (at least 32 bytes). Required with REDIS_URL; otherwise
    /// generated once into <data_dir>/secrets.json.
    #[arg(long, env = "SWITCHYARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "SWITCHYARD_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of refresh tokens, in seconds.
    #[arg(
        long,
        env = "SWITCHYARD_REFRESH_TOKEN_TTL_SECS",
        default_value_t = 2_592_000
    )]
    pub refresh_token_ttl_secs: u64,

    /// This process's name in logs and as the Redis usage consumer (default: random).
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,

    /// A model catalog file replacing the built-in one (same format as `catalog/models.json`).
    /// Validated at start: a bad file stops the control plane.
    #[arg(long, env = "SWITCHYARD_CATALOG_PATH")]
    pub catalog_path: Option<PathBuf>,

    /// Take the client address (for login and sign-up throttling) from the last entry of
    /// `X-Forwarded-For` instead of the TCP peer. Enable only behind a reverse proxy you run
    /// that always sets the header; otherwise clients could choose their own address.
    #[arg(
        long,
        env = "SWITCHYARD_TRUST_FORWARDED_FOR",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub trust_forwarded_for: bool,

    /// Failed logins for one email within 15 minutes before further attempts are refused (429)
    /// for a growing time (1 minute, doubling per failure, at most 15 minutes).
    #[arg(
        long,
        env = "SWITCHYARD_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 5
    )]
    pub login_max_failures_per_account: u32,

    /// Failed logins from one client address (IPv6: per /64) within 15 minutes before further
    /// attempts from it are refused the same way.
    #[arg(
        long,
        env = "SWITCHYARD_LOGIN_MAX_FAILURES_PER_IP",
        default_value_t = 30
    )]
    pub login_max_failures_per_ip: u32,

    /// Sign-ups allowed per client address per hour.
    #[arg(long, env = "SWITCHYARD_SIGNUPS_PER_IP_PER_HOUR", default_value_t = 20)]
    pub signups_per_ip_per_hour: u32,
    /// Browser origins allowed to call the control API (CORS), comma-separated exact origins
    /// such as `https://console.example.com`. Unset: same-origin only (no CORS headers).
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// When above 0, every control-plane response carries `strict-transport-security:
    /// max-age=<this>; includeSubDomains`. Set it only when clients reach the control plane
    /// over HTTPS (e.g. behind a TLS-terminating proxy); 0 (the default) sends no HSTS.
    #[arg(long, env = "SWITCHYARD_HSTS_MAX_AGE_SECS", default_value_t = 0)]
    pub hsts_max_age_secs: u64,

    /// Whether the console's session cookies (`switchyard_refresh`, `switchyard_csrf`) carry
    /// `Secure`: `auto` (when the request arrived as `x-forwarded-proto: https` or HSTS is
    /// configured), `true` or `false`.
    #[arg(long, env = "SWITCHYARD_COOKIE_SECURE", value_enum, default_value_t = CookieSecure::Auto)]
    pub cookie_secure: CookieSecure,

    /// The gateway's public base URL as clients should call it, without `/v1` and without a
    /// trailing slash (e.g. `https://gateway.example.com`). Shown by `GET /api/v1/meta` (the
    /// console builds its snippets and playground calls from it) and allowed in the console's
    /// `connect-src`. Unset: the console uses its own origin.
    #[arg(long, env = "SWITCHYARD_PUBLIC_GATEWAY_URL")]
    pub public_gateway_url: Option<String>,

    /// How often the budget alert worker looks at every budget's spend and sends due webhook
    /// deliveries, in milliseconds.
    #[arg(long, env = "SWITCHYARD_ALERT_INTERVAL_MS", default_value_t = 1000)]
    pub alert_interval_ms: u64,

    /// How long a usage event may sit unacknowledged with another control plane's consumer
    /// (one that died mid-batch) before this one claims it, in milliseconds (`XAUTOCLAIM`
    /// min-idle). Also the interval between claim passes, capped at 30 s.
    #[arg(long, env = "SWITCHYARD_USAGE_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub usage_claim_idle_ms: u64,
    /// Days raw usage rows (and stored payloads) are kept for organizations without their own
    /// `usage_retention_days`.
    #[arg(long, env = "SWITCHYARD_USAGE_RETENTION_DAYS", default_value_t = 30)]
    pub usage_retention_days: u32,
    /// How often the usage retention worker runs, in seconds.
    #[arg(
        long,
        env = "SWITCHYARD_RETENTION_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub retention_interval_secs: u64,
    /// Hours minute rollups are kept.
    #[arg(
        long,
        env = "SWITCHYARD_ROLLUP_MINUTE_RETENTION_HOURS",
        default_value_t = 48
    )]
    pub rollup_minute_retention_hours: u32,
    /// Days hour rollups are kept.
    #[arg(
        long,
        env = "SWITCHYARD_ROLLUP_HOUR_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub rollup_hour_retention_days: u32,
    /// Days day rollups are kept.
    #[arg(
        long,
        env = "SWITCHYARD_ROLLUP_DAY_RETENTION_DAYS",
        default_value_t = 400
    )]
    pub rollup_day_retention_days: u32,

    /// Log line format.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Billing (Stripe); off without `STRIPE_SECRET_KEY`.
    #[command(flatten)]
    pub billing: crate::billing::BillingSettings,

    /// Request handling of the embedded data plane (zero-setup mode only).
    #[command(flatten)]
    pub settings: Settings,

    /// How the process stops on SIGTERM: the same variables and sequence as the data plane's
    /// (see `data_plane::lifecycle`), covering the control API and, in zero-setup mode, the
    /// embedded gateway.
    #[command(flatten)]
    pub shutdown: ShutdownSettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| redact_url(u.expose())),
            )
            .field("data_dir", &self.data_dir)
            .field(
                "redis_url",
                &self.redis_url.as_ref().map(|u| redact_url(u.expose())),
            )
            .field("redis_prefix", &self.redis_prefix)
            .field("master_key", &self.master_key)
            .field("jwt_secret", &self.jwt_secret)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("node_id", &self.node_id)
            .field("catalog_path", &self.catalog_path)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field(
                "login_max_failures_per_account",
                &self.login_max_failures_per_account,
            )
            .field("login_max_failures_per_ip", &self.login_max_failures_per_ip)
            .field("signups_per_ip_per_hour", &self.signups_per_ip_per_hour)
            .field("log_format", &self.log_format)
            .field("cors_origins", &self.cors_origins)
            .field("hsts_max_age_secs", &self.hsts_max_age_secs)
            .field("cookie_secure", &self.cookie_secure)
            .field("public_gateway_url", &self.public_gateway_url)
            .field("alert_interval_ms", &self.alert_interval_ms)
            .field("usage_claim_idle_ms", &self.usage_claim_idle_ms)
            .field("usage_retention_days", &self.usage_retention_days)
            .field("retention_interval_secs", &self.retention_interval_secs)
            .field(
                "rollup_minute_retention_hours",
                &self.rollup_minute_retention_hours,
            )
            .field(
                "rollup_hour_retention_days",
                &self.rollup_hour_retention_days,
            )
            .field("rollup_day_retention_days", &self.rollup_day_retention_days)
            .field("billing", &self.billing)
            .field("settings", &self.settings)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl Config {
    /// A zero-setup configuration that reads nothing from the environment: listens on
    /// `127.0.0.1:0`, keeps its files in `data_dir`, and uses `database_url` (or the default
    /// SQLite file). For tests and embedding.
    pub fn embedded(data_dir: impl Into<PathBuf>, database_url: Option<String>) -> Self {
        Self {
            listen: "127.0.0.1:0".to_owned(),
            database_url: database_url.map(Secret),
            data_dir: data_dir.into(),
            redis_url: None,
            redis_prefix: RedisKeys::DEFAULT_PREFIX.to_owned(),
            master_key: None,
            jwt_secret: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 2_592_000,
            node_id: None,
            catalog_path: None,
            trust_forwarded_for: false,
            login_max_failures_per_account: 5,
            login_max_failures_per_ip: 30,
            signups_per_ip_per_hour: 20,
            log_format: LogFormat::Text,
            cors_origins: None,
            hsts_max_age_secs: 0,
            cookie_secure: CookieSecure::Auto,
            public_gateway_url: None,
            alert_interval_ms: 1000,
            usage_claim_idle_ms: 30_000,
            usage_retention_days: 30,
            retention_interval_secs: 3600,
            rollup_minute_retention_hours: 48,
            rollup_hour_retention_days: 90,
            rollup_day_retention_days: 400,
            billing: Default::default(),
            settings: Settings::default(),
            shutdown: ShutdownSettings::default(),
        }
    }

    /// Whether this runs without Redis (data plane embedded, in-process bus).
    pub fn is_embedded(&self) -> bool {
        self.redis_url.is_none()
    }

    /// Checks every value. Messages name the variable and never contain a secret.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listen.trim().is_empty() {
            bail!("SWITCHYARD_LISTEN must be host:port, e.g. 0.0.0.0:8080");
        }
        self.shutdown.validate()?;
        if self.alert_interval_ms == 0 {
            bail!("SWITCHYARD_ALERT_INTERVAL_MS must be at least 1");
        }
        if self.usage_claim_idle_ms == 0 {
            bail!("SWITCHYARD_USAGE_CLAIM_IDLE_MS must be at least 1");
        }
        if !(1..=3650).contains(&self.usage_retention_days) {
            bail!("SWITCHYARD_USAGE_RETENTION_DAYS must be between 1 and 3650");
        }
        if self.retention_interval_secs == 0 {
            bail!("SWITCHYARD_RETENTION_INTERVAL_SECS must be at least 1");
        }
        if self.rollup_minute_retention_hours == 0
            || self.rollup_hour_retention_days == 0
            || self.rollup_day_retention_days == 0
        {
            bail!("rollup retentions (SWITCHYARD_ROLLUP_*_RETENTION_*) must be at least 1");
        }
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:");
            }
        }
        if self.database_url.is_none() && self.data_dir.as_os_str().is_empty() {
            bail!("SWITCHYARD_DATA_DIR must not be empty");
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose();
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                bail!("REDIS_URL must start with redis://, rediss:// or unix://");
            }
            if self.redis_prefix.is_empty() {
                bail!("SWITCHYARD_REDIS_PREFIX must not be empty");
            }
            if self.master_key.is_none() {
                bail!(
                    "SWITCHYARD_MASTER_KEY is required when REDIS_URL is set (data-plane nodes need the same key); \
                     generate one with `openssl rand -hex 32`"
                );
            }
            if self.jwt_secret.is_none() {
                bail!(
                    "SWITCHYARD_JWT_SECRET is required when REDIS_URL is set (every control-plane replica needs the same secret); \
                     generate one with `openssl rand -base64 48`"
                );
            }
        }
        if let Some(key) = &self.master_key {
            MasterKey::parse(key.expose()).context("SWITCHYARD_MASTER_KEY is invalid")?;
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < MIN_JWT_SECRET_BYTES
        {
            bail!("SWITCHYARD_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes long");
        }
        if !(60..=7 * 24 * 3600).contains(&self.access_token_ttl_secs) {
            bail!("SWITCHYARD_ACCESS_TOKEN_TTL_SECS must be between 60 and 604800");
        }
        if self.refresh_token_ttl_secs < self.access_token_ttl_secs
            || self.refresh_token_ttl_secs > 365 * 24 * 3600
        {
            bail!(
                "SWITCHYARD_REFRESH_TOKEN_TTL_SECS must be at least the access token lifetime and at most 31536000"
            );
        }
        if self.login_max_failures_per_account == 0
            || self.login_max_failures_per_ip == 0
            || self.signups_per_ip_per_hour == 0
        {
            bail!(
                "SWITCHYARD_LOGIN_MAX_FAILURES_PER_ACCOUNT, SWITCHYARD_LOGIN_MAX_FAILURES_PER_IP and \
                 SWITCHYARD_SIGNUPS_PER_IP_PER_HOUR must be at least 1"
            );
        }
        if self.is_embedded() {
            self.settings.validate()?;
        }
        self.egress_policy()?;
        self.cors_origins()?;
        self.public_gateway_url()?;
        if self.hsts_max_age_secs > 2 * 365 * 24 * 3600 {
            bail!("SWITCHYARD_HSTS_MAX_AGE_SECS must be at most 63072000 (two years)");
        }
        Ok(())
    }

    /// The usage retention worker's settings (`crate::retention`).
    pub fn retention_settings(&self) -> crate::retention::RetentionSettings {
        crate::retention::RetentionSettings {
            default_days: self.usage_retention_days,
            minute_rollup_hours: self.rollup_minute_retention_hours,
            hour_rollup_days: self.rollup_hour_retention_days,
            day_rollup_days: self.rollup_day_retention_days,
        }
    }

    /// The login and sign-up limits (`crate::throttle`).
    pub fn throttle_settings(&self) -> ThrottleSettings {
        ThrottleSettings {
            login_failures_per_account: self.login_max_failures_per_account,
            login_failures_per_ip: self.login_max_failures_per_ip,
            signups_per_ip_per_hour: self.signups_per_ip_per_hour,
            trust_forwarded_for: self.trust_forwarded_for,
            ..ThrottleSettings::default()
        }
    }

    /// The egress policy from `SWITCHYARD_UPSTREAM_ALLOW_CIDRS` (a field of the data plane's
    /// flattened [`Settings`], so both planes read the one variable), or the mode's default
    /// ([`shared::egress::ZERO_SETUP_ALLOW`] in zero-setup, empty with `REDIS_URL`). The
    /// embedded data plane must be given the same policy.
    pub fn egress_policy(&self) -> anyhow::Result<EgressPolicy> {
        let list = match self.settings.upstream_allow_cidrs.as_deref().map(str::trim) {
            Some(list) if list.eq_ignore_ascii_case("none") => "",
            Some(list) => list,
            None if self.is_embedded() => shared::egress::ZERO_SETUP_ALLOW,
            None => "",
        };
        EgressPolicy::parse(list).context("SWITCHYARD_UPSTREAM_ALLOW_CIDRS is invalid")
    }

    /// The origins of `SWITCHYARD_CORS_ORIGINS`, each an exact `scheme://host[:port]` origin.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<axum::http::HeaderValue>> {
        let Some(list) = self.cors_origins.as_deref() else {
            return Ok(vec![]);
        };
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let shown: String = entry.chars().take(64).collect();
            let bad = || {
                anyhow::anyhow!(
                    "SWITCHYARD_CORS_ORIGINS: {shown:?} is not an origin; write scheme://host[:port] \
                     without a path, e.g. https://console.example.com (\"*\" is not accepted: \
                     credentials are allowed for the listed origins)"
                )
            };
            let url = url::Url::parse(entry).map_err(|_| bad())?;
            let origin = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https") || origin != entry.trim_end_matches('/') {
                return Err(bad());
            }
            origins.push(axum::http::HeaderValue::from_str(&origin).map_err(|_| bad())?);
        }
        Ok(origins)
    }

    /// `SWITCHYARD_PUBLIC_GATEWAY_URL`, checked: an absolute `http(s)://` URL without user info,
    /// query, fragment or trailing slash.
    pub fn public_gateway_url(&self) -> anyhow::Result<Option<url::Url>> {
        let Some(raw) = self.public_gateway_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if raw.is_empty() {
            return Ok(None);
        }
        let shown: String = raw.chars().take(64).collect();
        let bad = |why: &str| {
            anyhow::anyhow!(
                "SWITCHYARD_PUBLIC_GATEWAY_URL: {shown:?} {why}; write e.g. https://gateway.example.com"
            )
        };
        let url = url::Url::parse(raw).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("must be an http:// or https:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        if raw.ends_with('/') {
            return Err(bad("must not end with a slash"));
        }
        Ok(Some(url))
    }

    /// The `strict-transport-security` header value, when `SWITCHYARD_HSTS_MAX_AGE_SECS` > 0.
    pub fn hsts_header(&self) -> Option<axum::http::HeaderValue> {
        (self.hsts_max_age_secs > 0).then(|| {
            axum::http::HeaderValue::from_str(&format!(
                "max-age={}; includeSubDomains",
                self.hsts_max_age_secs
            ))
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("max-age=31536000"))
        })
    }

    /// The database URL to use: `DATABASE_URL`, or `sqlite://<data_dir>/switchyard.db?mode=rwc`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("switchyard.db").display()
            ),
        }
    }

    /// The node id, or a random one.
    pub fn node_id(&self) -> String {
        match &self.node_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => format!("cp-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// `scheme://user:secret@host/db` → `scheme://***@host/db`, for debug output and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const JWT: &str = "a-jwt-secret-that-is-long-enough-1234";

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["control-plane"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parses")
    }

    #[test]
    fn distributed_mode_requires_both_secrets_and_names_them() {
        let c = parse(&["--redis-url", "redis://127.0.0.1:6379", "--jwt-secret", JWT]);
        let err = c.validate().expect_err("refused").to_string();
        assert!(err.contains("SWITCHYARD_MASTER_KEY"), "{err}");
        let c = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--master-key",
            KEY_HEX,
        ]);
        let err = c.validate().expect_err("refused").to_string();
        assert!(err.contains("SWITCHYARD_JWT_SECRET"), "{err}");
        let c = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--master-key",
            KEY_HEX,
            "--jwt-secret",
            JWT,
        ]);
        c.validate().expect("valid");
    }

    #[test]
    fn embedded_defaults() {
        let c = Config::embedded("/tmp/sy", None);
        c.validate().expect("valid");
        assert!(c.is_embedded());
        assert_eq!(c.database_url(), "sqlite:///tmp/sy/switchyard.db?mode=rwc");
    }

    #[test]
    fn bad_values_are_refused_without_echoing_secrets() {
        let c = parse(&["--master-key", "not-a-key-topsecret"]);
        let err = format!("{:#}", c.validate().expect_err("refused"));
        assert!(
            err.contains("SWITCHYARD_MASTER_KEY") && !err.contains("topsecret"),
            "{err}"
        );
        let c = parse(&["--jwt-secret", "short"]);
        assert!(
            c.validate()
                .expect_err("refused")
                .to_string()
                .contains("SWITCHYARD_JWT_SECRET")
        );
        let c = parse(&["--database-url", "mysql://x"]);
        assert!(
            c.validate()
                .expect_err("refused")
                .to_string()
                .contains("DATABASE_URL")
        );
    }

    #[test]
    fn egress_policy_defaults_by_mode_and_names_the_variable() {
        let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
        let zero_setup = Config::embedded("/tmp/sy", None);
        assert!(
            zero_setup
                .egress_policy()
                .expect("valid")
                .check(loopback)
                .is_ok()
        );
        let distributed = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--master-key",
            KEY_HEX,
            "--jwt-secret",
            JWT,
        ]);
        assert!(
            distributed
                .egress_policy()
                .expect("valid")
                .check(loopback)
                .is_err()
        );
        let mut c = Config::embedded("/tmp/sy", None);
        c.settings.upstream_allow_cidrs = Some("none".to_owned());
        assert!(c.egress_policy().expect("valid").check(loopback).is_err());
        c.settings.upstream_allow_cidrs = Some("10.0.0.0/8, 127.0.0.1".to_owned());
        assert!(c.egress_policy().expect("valid").check(loopback).is_ok());
        c.settings.upstream_allow_cidrs = Some("10.0.0.0/8,localhost".to_owned());
        let err = format!("{:#}", c.validate().expect_err("refused"));
        assert!(
            err.contains("SWITCHYARD_UPSTREAM_ALLOW_CIDRS") && err.contains("localhost"),
            "{err}"
        );
    }

    #[test]
    fn cors_origins_must_be_exact_origins() {
        let mut c = Config::embedded("/tmp/sy", None);
        assert!(c.cors_origins().expect("none").is_empty());
        c.cors_origins = Some("https://console.example.com, http://localhost:5173".to_owned());
        let origins = c.cors_origins().expect("valid");
        assert_eq!(origins.len(), 2);
        assert_eq!(origins[1], "http://localhost:5173");
        for bad in [
            "*",
            "console.example.com",
            "https://x.example/path",
            "ftp://x.example",
            "https://u@x.example",
        ] {
            c.cors_origins = Some(bad.to_owned());
            let err = c.validate().expect_err(bad).to_string();
            assert!(err.contains("SWITCHYARD_CORS_ORIGINS"), "{bad}: {err}");
        }
        assert!(c.hsts_header().is_none());
        c.cors_origins = None;
        c.hsts_max_age_secs = 31_536_000;
        assert_eq!(
            c.hsts_header().expect("set"),
            "max-age=31536000; includeSubDomains"
        );
    }

    #[test]
    fn public_gateway_url_is_an_http_url_without_trailing_slash() {
        let mut c = Config::embedded("/tmp/sy", None);
        assert!(c.public_gateway_url().expect("unset").is_none());
        for good in [
            "https://gateway.example.com",
            "http://localhost:8081",
            "https://x.example/gw",
        ] {
            c.public_gateway_url = Some(good.to_owned());
            c.validate().expect(good);
            assert_eq!(
                c.public_gateway_url()
                    .expect(good)
                    .expect(good)
                    .as_str()
                    .trim_end_matches('/'),
                good
            );
        }
        for bad in [
            "gateway.example.com",
            "https://gateway.example.com/",
            "ftp://gateway.example.com",
            "https://u:p@gateway.example.com",
            "https://gateway.example.com?x=1",
        ] {
            c.public_gateway_url = Some(bad.to_owned());
            let err = c.validate().expect_err(bad).to_string();
            assert!(
                err.contains("SWITCHYARD_PUBLIC_GATEWAY_URL"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = parse(&[
            "--database-url",
            "postgres://app:hunter2@db/app",
            "--redis-url",
            "redis://:hunter3@redis:6379",
            "--master-key",
            KEY_HEX,
            "--jwt-secret",
            JWT,
        ]);
        let debug = format!("{c:?}");
        for secret in ["hunter2", "hunter3", KEY_HEX, JWT] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("postgres://***@db/app"), "{debug}");
    }
}
