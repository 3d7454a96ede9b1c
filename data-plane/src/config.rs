//! Configuration, parsed once from the environment (or flags) at start and validated before
//! the port is bound.
//!
//! [`Settings`] holds what shapes request handling (body limit, upstream timeouts). It is a
//! `clap::Args` struct so the control plane can flatten it into its own config when it embeds
//! the data plane's `/v1` routes (the zero-setup default). [`Config`] is the standalone binary's
//! whole configuration. Nothing reads `std::env` after start.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, ValueEnum};
use shared::config::RedisKeys;
use shared::crypto::MasterKey;
use shared::egress::EgressPolicy;

/// Upper bound for `SWITCHYARD_MAX_BODY_BYTES`: prompts are buffered in memory, so a typo such
/// as an extra zero should fail at start rather than let a few requests exhaust memory.
const MAX_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// `SWITCHYARD_USAGE_SPOOL_DIR`'s default, inside `SWITCHYARD_DATA_DIR`.
pub const DEFAULT_USAGE_SPOOL_DIR: &str = "usage-spool";
/// `SWITCHYARD_USAGE_SPOOL_MAX_BYTES`'s default: 1 GiB.
pub const DEFAULT_USAGE_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// Request handling settings, shared by the standalone data plane and the embedded mode.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Request handling")]
pub struct Settings {
    /// Largest accepted request body in bytes; larger requests are refused with 413.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 4_194_304)]
    pub max_body_bytes: usize,

    /// Time allowed to open a TCP (and TLS) connection to a provider, in milliseconds.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub upstream_connect_timeout_ms: u64,

    /// Time allowed from sending a request upstream until the response headers arrive, in
    /// milliseconds. Non-streaming completions produce no headers until they are done, so this
    /// bounds a whole non-streaming generation.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub upstream_headers_timeout_ms: u64,

    /// Largest gap between two streamed chunks (or two body reads), in milliseconds.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub upstream_idle_timeout_ms: u64,

    /// Total time allowed for one upstream call, streaming included, in milliseconds.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    pub upstream_timeout_ms: u64,

    /// How long a node's budget lease lives in Redis without a refresh, in milliseconds: a
    /// node that dies holds budget money at most this long (see `governance::ledger`).
    #[arg(long, env = "SWITCHYARD_BUDGET_LEASE_TTL_MS", default_value_t = 30_000)]
    pub budget_lease_ttl_ms: u64,

    /// How long a rate-limit or budget script may wait for Redis, in milliseconds, before the
    /// node treats Redis as unreachable for that request (rate limits: it counts alone against
    /// its share; budgets: it serves from the leases it holds, then refuses). Redis answers in
    /// well under a millisecond; the bound only matters when it hangs.
    #[arg(
        long,
        env = "SWITCHYARD_GOVERNANCE_REDIS_TIMEOUT_MS",
        default_value_t = 250
    )]
    pub governance_redis_timeout_ms: u64,

    /// Non-public upstream addresses the gateway may connect to, as comma-separated CIDRs
    /// (e.g. `10.0.0.0/8,fd00::/8`). Loopback, private, link-local, unique-local, CGNAT,
    /// multicast and unspecified addresses are refused unless listed; cloud metadata addresses
    /// only when listed exactly. Unset: `127.0.0.0/8,::1/128` in the zero-setup default (a local
    /// vLLM or Ollama works), nothing in a standalone data plane or a distributed control plane.
    /// `none` means the empty list.
    #[arg(long, env = "SWITCHYARD_UPSTREAM_ALLOW_CIDRS")]
    pub upstream_allow_cidrs: Option<String>,

    /// Most requests this node serves at once; more are refused with 503 and `Retry-After`.
    #[arg(
        long,
        env = "SWITCHYARD_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,

    /// Most requests one organization may have in flight on this node; more are refused with
    /// 429 and `Retry-After`, so one organization cannot take the node from the others.
    #[arg(long, env = "SWITCHYARD_MAX_CONCURRENT_PER_ORG", default_value_t = 256)]
    pub max_concurrent_per_org: usize,

    /// Most calls in flight to one provider credential from this node; more are refused with
    /// 503 and `Retry-After`.
    #[arg(
        long,
        env = "SWITCHYARD_MAX_CONCURRENT_PER_PROVIDER",
        default_value_t = 256
    )]
    pub max_concurrent_per_provider: usize,

    /// Most idle pooled connections kept per provider host.
    #[arg(
        long,
        env = "SWITCHYARD_UPSTREAM_MAX_IDLE_PER_HOST",
        default_value_t = 32
    )]
    pub upstream_max_idle_per_host: usize,

    /// How many data-plane nodes share the rate limits. While Redis is unreachable each node
    /// counts alone against limit / this number.
    #[arg(long, env = "SWITCHYARD_NODE_COUNT", default_value_t = 1)]
    pub node_count: u32,

    /// Reverse proxies (comma-separated CIDRs or addresses) whose `X-Forwarded-For` is
    /// believed when taking a client's address for a key's `allowed_cidrs`. Empty: the TCP peer
    /// address is the client's.
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,

    /// Browser origins allowed to call the gateway's `/v1` API (CORS): comma-separated exact
    /// origins (`https://console.example.com`), or `*` for any. Unset or empty: no CORS headers
    /// (same-origin only; the zero-setup console is same-origin). Credentials are never allowed:
    /// keys travel as bearer headers.
    #[arg(long, env = "SWITCHYARD_GATEWAY_CORS_ORIGINS")]
    pub gateway_cors_origins: Option<String>,

    /// When set, `/metrics` answers only `Authorization: Bearer <this token>` (Prometheus'
    /// `authorization` scrape setting); unset: open, for a port the internet cannot reach.
    #[arg(long, env = "SWITCHYARD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,
}

/// Longest accepted value of each `SWITCHYARD_SHUTDOWN_*` variable: an hour. A stop that takes
/// longer is a typo (milliseconds written as seconds), and orchestrators kill long before.
const MAX_SHUTDOWN_SECONDS: u64 = 3600;

/// How a process stops on SIGTERM (see [`crate::lifecycle`]): shared by the standalone data
/// plane and the control plane (which embeds the gateway in zero-setup mode), so both read the
/// same variables. The whole stop takes at most delay + grace + drain seconds; an orchestrator's
/// kill timeout (Kubernetes' `terminationGracePeriodSeconds`) must be longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownSettings {
    /// After SIGTERM, how long the node keeps serving (and accepting) with `/readyz` answering
    /// 503 `shutting_down`, in seconds, before it stops accepting connections. Gives a load
    /// balancer (or Kubernetes' endpoint controller) time to take the node out of rotation, so
    /// no client is sent to a closed port. 0: stop accepting at once.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_DELAY_SECONDS", default_value_t = 0)]
    pub shutdown_delay_seconds: u64,

    /// Then, how long open requests (long streams included) may take to finish, in seconds.
    /// What is still running afterwards is cut: a stream gets an error event (code
    /// `shutting_down`, no `[DONE]`), a request still waiting for its provider a 503
    /// `shutting_down`; both are metered.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// Then, how long the usage events of the requests get to be written (to Redis or the
    /// spool; in zero-setup mode, to the database) and the background workers to stop, in
    /// seconds.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_DRAIN_SECONDS", default_value_t = 10)]
    pub shutdown_drain_seconds: u64,
}

impl Default for ShutdownSettings {
    /// The same values as the environment variables' defaults.
    fn default() -> Self {
        Self {
            shutdown_delay_seconds: 0,
            shutdown_grace_seconds: 30,
            shutdown_drain_seconds: 10,
        }
    }
}

impl ShutdownSettings {
    /// Refuses values over an hour, and a drain of 0 (usage events would have no time to be
    /// written).
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            (
                "SWITCHYARD_SHUTDOWN_DELAY_SECONDS",
                self.shutdown_delay_seconds,
            ),
            (
                "SWITCHYARD_SHUTDOWN_GRACE_SECONDS",
                self.shutdown_grace_seconds,
            ),
            (
                "SWITCHYARD_SHUTDOWN_DRAIN_SECONDS",
                self.shutdown_drain_seconds,
            ),
        ] {
            if value > MAX_SHUTDOWN_SECONDS {
                bail!("{name} must be at most {MAX_SHUTDOWN_SECONDS} (seconds)");
            }
        }
        if self.shutdown_drain_seconds == 0 {
            bail!("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS must be greater than 0");
        }
        Ok(())
    }

    /// `SWITCHYARD_SHUTDOWN_DELAY_SECONDS`.
    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_seconds)
    }

    /// `SWITCHYARD_SHUTDOWN_GRACE_SECONDS`.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// `SWITCHYARD_SHUTDOWN_DRAIN_SECONDS`.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_seconds)
    }
}

/// Which browser origins may call the gateway (`SWITCHYARD_GATEWAY_CORS_ORIGINS`, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCors {
    /// No CORS headers at all.
    Off,
    /// `*`: any origin (without credentials).
    Any,
    /// These exact origins.
    Origins(Vec<axum::http::HeaderValue>),
}

impl Default for Settings {
    /// The same values as the environment variables' defaults.
    fn default() -> Self {
        Self {
            max_body_bytes: 4_194_304,
            upstream_connect_timeout_ms: 5_000,
            upstream_headers_timeout_ms: 120_000,
            upstream_idle_timeout_ms: 120_000,
            upstream_timeout_ms: 600_000,
            budget_lease_ttl_ms: 30_000,
            governance_redis_timeout_ms: 250,
            upstream_allow_cidrs: None,
            max_concurrent_requests: 1024,
            max_concurrent_per_org: 256,
            max_concurrent_per_provider: 256,
            upstream_max_idle_per_host: 32,
            node_count: 1,
            trusted_proxies: None,
            gateway_cors_origins: None,
            metrics_token: None,
        }
    }
}

impl Settings {
    /// Refuses values that would make the gateway useless or dangerous, naming the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            bail!("SWITCHYARD_MAX_BODY_BYTES must be between 1 and {MAX_BODY_LIMIT}");
        }
        for (name, value) in [
            (
                "SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT_MS",
                self.upstream_connect_timeout_ms,
            ),
            (
                "SWITCHYARD_UPSTREAM_HEADERS_TIMEOUT_MS",
                self.upstream_headers_timeout_ms,
            ),
            (
                "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT_MS",
                self.upstream_idle_timeout_ms,
            ),
            ("SWITCHYARD_UPSTREAM_TIMEOUT_MS", self.upstream_timeout_ms),
            ("SWITCHYARD_BUDGET_LEASE_TTL_MS", self.budget_lease_ttl_ms),
            (
                "SWITCHYARD_GOVERNANCE_REDIS_TIMEOUT_MS",
                self.governance_redis_timeout_ms,
            ),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        for (name, value) in [
            (
                "SWITCHYARD_MAX_CONCURRENT_REQUESTS",
                self.max_concurrent_requests,
            ),
            (
                "SWITCHYARD_MAX_CONCURRENT_PER_ORG",
                self.max_concurrent_per_org,
            ),
            (
                "SWITCHYARD_MAX_CONCURRENT_PER_PROVIDER",
                self.max_concurrent_per_provider,
            ),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        self.egress_policy()?;
        if self.node_count == 0 {
            bail!("SWITCHYARD_NODE_COUNT must be greater than 0");
        }
        self.trusted_proxies()?;
        self.gateway_cors()?;
        Ok(())
    }

    /// `SWITCHYARD_GATEWAY_CORS_ORIGINS`, parsed: `*`, or exact `scheme://host[:port]` origins.
    pub fn gateway_cors(&self) -> anyhow::Result<GatewayCors> {
        let Some(list) = self.gateway_cors_origins.as_deref().map(str::trim) else {
            return Ok(GatewayCors::Off);
        };
        if list == "*" {
            return Ok(GatewayCors::Any);
        }
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let shown: String = entry.chars().take(64).collect();
            let bad = || {
                anyhow::anyhow!(
                    "SWITCHYARD_GATEWAY_CORS_ORIGINS: {shown:?} is not an origin; write \
                     scheme://host[:port] without a path, e.g. https://console.example.com, \
                     or \"*\" alone for any origin"
                )
            };
            let url = url::Url::parse(entry).map_err(|_| bad())?;
            let origin = url.origin().ascii_serialization();
            if !matches!(url.scheme(), "http" | "https") || origin != entry.trim_end_matches('/') {
                return Err(bad());
            }
            origins.push(axum::http::HeaderValue::from_str(&origin).map_err(|_| bad())?);
        }
        Ok(if origins.is_empty() {
            GatewayCors::Off
        } else {
            GatewayCors::Origins(origins)
        })
    }

    /// `SWITCHYARD_TRUSTED_PROXIES`, parsed: CIDRs, or single addresses (a /32 or /128).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        let Some(list) = self.trusted_proxies.as_deref() else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| {
                        format!("SWITCHYARD_TRUSTED_PROXIES: {item:?} is not a CIDR or an address")
                    })
            })
            .collect()
    }

    /// The egress policy: `SWITCHYARD_UPSTREAM_ALLOW_CIDRS`, or the zero-setup default when
    /// unset (a standalone data plane sets it to empty before this is called, see `main`).
    pub fn egress_policy(&self) -> anyhow::Result<EgressPolicy> {
        let list = match self.upstream_allow_cidrs.as_deref().map(str::trim) {
            // `none` spells the empty list where an empty variable is awkward to set.
            Some(list) if list.eq_ignore_ascii_case("none") => "",
            Some(list) => list,
            None => shared::egress::ZERO_SETUP_ALLOW,
        };
        EgressPolicy::parse(list).context("SWITCHYARD_UPSTREAM_ALLOW_CIDRS is invalid")
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_connect_timeout_ms)
    }

    pub fn headers_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_headers_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_idle_timeout_ms)
    }

    pub fn total_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A string that must never appear in logs or `--help` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
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

/// The standalone data-plane binary's configuration.
#[derive(Parser)]
#[command(
    name = "data-plane",
    version,
    about = "Switchyard data plane: the OpenAI-compatible gateway"
)]
pub struct Config {
    /// Address to listen on (host:port).
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: String,

    /// Redis URL, e.g. redis://127.0.0.1:6379 (may carry a password; never logged).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Secret,

    /// Prefix of every Redis key Switchyard uses; must match the control plane's.
    #[arg(long, env = "SWITCHYARD_REDIS_PREFIX", default_value = RedisKeys::DEFAULT_PREFIX)]
    pub redis_prefix: String,

    /// The 32-byte master key that opens provider secrets, as 64 hex characters or base64.
    /// Must be the control plane's key.
    #[arg(long, env = "SWITCHYARD_MASTER_KEY", hide_env_values = true)]
    pub master_key: Secret,

    /// This node's name in logs (default: random).
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<String>,

    /// Log line format.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The node's data directory; only the usage spool lives there (the control plane's
    /// variable of the same name, so one image setting serves both).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,

    /// Directory of the usage spool: where usage events go while Redis is unreachable, replayed
    /// when it answers again or at the next start (see `usage_spool`). Locked by one process at
    /// a time: give every node on a host its own. Default: `usage-spool` in
    /// `SWITCHYARD_DATA_DIR`.
    #[arg(long, env = "SWITCHYARD_USAGE_SPOOL_DIR")]
    pub usage_spool_dir: Option<std::path::PathBuf>,

    /// Most bytes the usage spool may hold; past it, events wait in memory (and request tasks
    /// wait for queue space) rather than being dropped. 0 disables the spool.
    #[arg(
        long,
        env = "SWITCHYARD_USAGE_SPOOL_MAX_BYTES",
        default_value_t = DEFAULT_USAGE_SPOOL_MAX_BYTES
    )]
    pub usage_spool_max_bytes: u64,

    #[command(flatten)]
    pub settings: Settings,

    #[command(flatten)]
    pub shutdown: ShutdownSettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis_url", &redact_url(self.redis_url.expose()))
            .field("redis_prefix", &self.redis_prefix)
            .field("master_key", &self.master_key)
            .field("node_id", &self.node_id)
            .field("log_format", &self.log_format)
            .field("data_dir", &self.data_dir)
            .field("usage_spool_dir", &self.usage_spool_dir)
            .field("usage_spool_max_bytes", &self.usage_spool_max_bytes)
            .field("settings", &self.settings)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

/// Everything `main` needs, checked: the parsed master key and the resolved node id.
#[derive(Debug)]
pub struct Validated {
    pub master_key: MasterKey,
    pub node_id: String,
}

impl Config {
    /// `SWITCHYARD_USAGE_SPOOL_DIR`, or `usage-spool` in `SWITCHYARD_DATA_DIR`.
    pub fn usage_spool_dir(&self) -> std::path::PathBuf {
        self.usage_spool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join(DEFAULT_USAGE_SPOOL_DIR))
    }

    /// Checks every value before anything is started. Messages name the variable and never
    /// contain the offending secret.
    pub fn validate(&self) -> anyhow::Result<Validated> {
        self.settings.validate()?;
        self.shutdown.validate()?;
        if self.listen.trim().is_empty() {
            bail!("SWITCHYARD_LISTEN must be host:port, e.g. 0.0.0.0:8081");
        }
        let url = self.redis_url.expose();
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            bail!("REDIS_URL must start with redis://, rediss:// or unix://");
        }
        if self.usage_spool_max_bytes > 0 && self.usage_spool_dir().as_os_str().is_empty() {
            bail!("SWITCHYARD_USAGE_SPOOL_DIR must not be empty");
        }
        if self.redis_prefix.is_empty() {
            bail!("SWITCHYARD_REDIS_PREFIX must not be empty");
        }
        let master_key = MasterKey::parse(self.master_key.expose())
            .context("SWITCHYARD_MASTER_KEY is invalid")?;
        let node_id = match &self.node_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => format!("dp-{}", uuid::Uuid::new_v4().simple()),
        };
        Ok(Validated {
            master_key,
            node_id,
        })
    }
}

/// `redis://user:secret@host:6379/0` → `redis://***@host:6379/0`, for debug output.
pub(crate) fn redact_url(url: &str) -> String {
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

    #[test]
    fn gateway_cors_origins_are_exact_origins_or_star() {
        let mut s = Settings::default();
        assert_eq!(s.gateway_cors().unwrap(), GatewayCors::Off);
        s.gateway_cors_origins = Some(" * ".to_owned());
        assert_eq!(s.gateway_cors().unwrap(), GatewayCors::Any);
        s.gateway_cors_origins = Some("https://a.example, http://localhost:5173/".to_owned());
        let origins = ["https://a.example", "http://localhost:5173"]
            .map(axum::http::HeaderValue::from_static)
            .to_vec();
        assert_eq!(s.gateway_cors().unwrap(), GatewayCors::Origins(origins));
        for bad in [
            "a.example",
            "https://a.example/x",
            "ftp://a.example",
            "*, https://a.example",
        ] {
            s.gateway_cors_origins = Some(bad.to_owned());
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains("SWITCHYARD_GATEWAY_CORS_ORIGINS"),
                "{bad}: {err}"
            );
        }
    }

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec!["data-plane"];
        all.extend_from_slice(args);
        Config::try_parse_from(all)
    }

    #[test]
    fn defaults_match_the_documented_env_defaults() {
        let c = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--master-key",
            KEY_HEX,
        ])
        .expect("parses");
        assert_eq!(c.settings, Settings::default());
        assert_eq!(c.shutdown, ShutdownSettings::default());
        assert_eq!(c.listen, "0.0.0.0:8081");
        assert_eq!(c.redis_prefix, "switchyard:");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(
            c.usage_spool_dir(),
            std::path::PathBuf::from("./data/usage-spool")
        );
        assert_eq!(c.usage_spool_max_bytes, 1024 * 1024 * 1024);
        let v = c.validate().expect("valid");
        assert!(v.node_id.starts_with("dp-"));
    }

    #[test]
    fn bad_master_key_is_refused_without_echoing_it() {
        let c = parse(&[
            "--redis-url",
            "redis://x",
            "--master-key",
            "not-a-real-key-1234",
        ])
        .expect("parses");
        let err = format!("{:#}", c.validate().expect_err("refused"));
        assert!(err.contains("SWITCHYARD_MASTER_KEY"), "{err}");
        assert!(!err.contains("not-a-real-key-1234"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let c = parse(&[
            "--redis-url",
            "redis://:hunter2@redis:6379/0",
            "--master-key",
            KEY_HEX,
        ])
        .expect("parses");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains(KEY_HEX), "{debug}");
        assert!(debug.contains("redis://***@redis:6379/0"), "{debug}");
    }

    #[test]
    fn zero_timeouts_and_absurd_limits_are_refused() {
        let s = Settings {
            upstream_idle_timeout_ms: 0,
            ..Settings::default()
        };
        assert!(format!("{}", s.validate().expect_err("refused")).contains("IDLE"));
        let s = Settings {
            max_body_bytes: 0,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn shutdown_timings_are_bounded_and_the_drain_is_never_zero() {
        assert!(ShutdownSettings::default().validate().is_ok());
        let s = ShutdownSettings {
            shutdown_delay_seconds: 5,
            shutdown_grace_seconds: 0,
            shutdown_drain_seconds: 1,
        };
        assert!(
            s.validate().is_ok(),
            "a grace of 0 cuts open requests at once"
        );
        let s = ShutdownSettings {
            shutdown_drain_seconds: 0,
            ..ShutdownSettings::default()
        };
        let err = s.validate().expect_err("refused").to_string();
        assert!(err.contains("SWITCHYARD_SHUTDOWN_DRAIN_SECONDS"), "{err}");
        let s = ShutdownSettings {
            shutdown_grace_seconds: 30_000,
            ..ShutdownSettings::default()
        };
        let err = s.validate().expect_err("refused").to_string();
        assert!(err.contains("SWITCHYARD_SHUTDOWN_GRACE_SECONDS"), "{err}");
    }
}
