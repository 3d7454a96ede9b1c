//! `Publisher`: writes config records where the data plane reads them, with version checks,
//! appends each accepted write to the change log and announces it.
//!
//! # Redis protocol
//!
//! All names come from [`RedisKeys`] (one prefix, default `switchyard:`):
//!
//! | name | type | content |
//! | --- | --- | --- |
//! | `{prefix}key:{key_hash}` | string | JSON [`KeyRecord`] |
//! | `{prefix}tenant:{tenant_id}` | string | JSON [`TenantConfig`] |
//! | `{prefix}changes` | stream | the change log; field `change` = JSON [`ConfigChange`](shared::config::ConfigChange) with `seq: ""` (the entry id *is* the seq) |
//! | `{prefix}config` | pub/sub channel | JSON [`ConfigChange`](shared::config::ConfigChange) with `seq` = the change log entry id |
//!
//! A record is a plain string holding exactly the JSON the data plane parses, so a reader needs
//! one `GET` and nothing else (no hash fields, no side keys): `redis-cli GET switchyard:tenant:…`
//! is also the debugging story.
//!
//! Every record write is **one Lua script** ([`WRITE_RECORD_LUA`]), atomic on the Redis server:
//!
//! 1. `GET` the stored record and decode it with `cjson`; if its `version` is greater than or
//!    equal to the new one, return nil and change nothing (an older or repeated publish is a
//!    no-op, not an error: two racing publishers, or a retry after an ambiguous timeout, can never
//!    put an older record on top of a newer one). A stored value that does not decode as a JSON
//!    object with a numeric `version` counts as absent and is overwritten.
//! 2. `SET` the new JSON.
//! 3. `XADD {prefix}changes MAXLEN ~ 100000 * change <json>` ([`RedisKeys::CHANGES_MAXLEN`]).
//! 4. `PUBLISH {prefix}config <json with seq = the new entry id>`.
//! 5. Return the entry id.
//!
//! Because steps 2–4 happen in one script, every accepted write is in the change log, in write
//! order, and announced exactly when it becomes visible; a reader that sees entry `N` on the
//! channel knows every entry up to `N` is in the stream. How nodes consume this (lazy cache,
//! refetch on announcement, replay from the last seen entry, drop everything when the log was
//! trimmed past it) is described in `data_plane::store`.
//!
//! Versions travel through Lua as doubles, so they must stay within ±2^53 (any database row
//! counter or timestamp in milliseconds does); [`Publisher`] refuses larger ones rather than
//! compare them wrongly. The change JSON is built on the Rust side (Lua's `cjson.encode` would
//! print large integers in exponent notation), and the script only appends the entry id.
//!
//! The script names two keys, so the record and the change log must live on one Redis node
//! (a single Redis or a primary/replica pair; for Redis Cluster use a hash-tagged prefix such as
//! `{switchyard}:`).
//!
//! # In-process
//!
//! [`Publisher::in_memory`] writes to a [`MemoryBus`], which applies the same "only if newer"
//! rule and announces each accepted write on its broadcast channel (with an empty `seq`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use shared::bus::MemoryBus;
use shared::config::{ChangeKind, KeyRecord, RedisKeys, TenantConfig};

/// The record-write script; see the module docs for its contract.
///
/// `KEYS[1]` record key, `KEYS[2]` change log. `ARGV[1]` record JSON, `ARGV[2]` version,
/// `ARGV[3]` the change JSON up to and including `"seq":"`, `ARGV[4]` change log MAXLEN,
/// `ARGV[5]` pub/sub channel. Returns the new entry id, or nil when the write was stale.
pub const WRITE_RECORD_LUA: &str = r#"
local new_version = tonumber(ARGV[2])
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and type(decoded['version']) == 'number'
     and decoded['version'] >= new_version then
    return false
  end
end
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'change', ARGV[3] .. '"}')
redis.call('PUBLISH', ARGV[5], ARGV[3] .. seq .. '"}')
return seq
"#;

/// Appends a change without writing a record (used for [`ChangeKind::All`]).
///
/// `KEYS[1]` change log. `ARGV[1]` change JSON prefix, `ARGV[2]` MAXLEN, `ARGV[3]` channel.
pub const ANNOUNCE_LUA: &str = r#"
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'change', ARGV[1] .. '"}')
redis.call('PUBLISH', ARGV[3], ARGV[1] .. seq .. '"}')
return seq
"#;

/// Largest version magnitude the Lua compare handles exactly (2^53 - 1).
pub const MAX_VERSION: i64 = (1 << 53) - 1;

/// Upper bound for one publish (pool checkout + script), so a hung Redis never stalls the sync
/// worker forever. A publish that times out may or may not have been applied; retrying it is
/// safe because an equal version is a no-op.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a publish failed. Messages never contain record contents, secrets or key hashes.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("record version {0} is outside the supported range (|version| <= 2^53 - 1)")]
    VersionOutOfRange(i64),
    #[error("could not serialize the record: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("no Redis connection available: {0}")]
    Pool(String),
    #[error("Redis command failed: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the publish script")]
    UnexpectedReply,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The record was stored and announced; `seq` is the change log entry id (empty in-process).
    Written { seq: String },
    /// A record with an equal or higher version was already stored; nothing changed.
    Stale,
}

/// Writes records for the data plane. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Backend,
}

#[derive(Clone)]
enum Backend {
    Redis(Arc<RedisBackend>),
    Memory(Arc<MemoryBus>),
}

struct RedisBackend {
    pool: Pool,
    keys: RedisKeys,
    write_record: redis::Script,
    announce: redis::Script,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Backend::Redis(r) => f
                .debug_struct("Publisher")
                .field("redis_prefix", &r.keys.prefix())
                .finish(),
            Backend::Memory(_) => f.write_str("Publisher(in-memory)"),
        }
    }
}

impl Publisher {
    /// Publishes to Redis through `pool` (build it with `data_plane::store::redis_pool`, which
    /// sets connect/response/wait timeouts).
    pub fn redis(pool: Pool, keys: RedisKeys) -> Self {
        Self {
            inner: Backend::Redis(Arc::new(RedisBackend {
                pool,
                keys,
                write_record: redis::Script::new(WRITE_RECORD_LUA),
                announce: redis::Script::new(ANNOUNCE_LUA),
            })),
        }
    }

    /// Publishes to the in-process bus (zero-setup default).
    pub fn in_memory(bus: Arc<MemoryBus>) -> Self {
        Self {
            inner: Backend::Memory(bus),
        }
    }

    /// Stores `record` unless an equal or newer version is there, appends the change to the
    /// change log and announces it. A stale record is `Ok(())`.
    pub async fn publish_key(&self, record: &KeyRecord) -> Result<(), PublishError> {
        self.publish_key_outcome(record).await.map(|_| ())
    }

    /// Same as [`Publisher::publish_key`] for a tenant's deployments and providers.
    pub async fn publish_tenant(&self, config: &TenantConfig) -> Result<(), PublishError> {
        self.publish_tenant_outcome(config).await.map(|_| ())
    }

    /// [`Publisher::publish_key`], telling whether the record was written or stale.
    pub async fn publish_key_outcome(
        &self,
        record: &KeyRecord,
    ) -> Result<PublishOutcome, PublishError> {
        check_version(record.version)?;
        let outcome = match &self.inner {
            Backend::Memory(bus) => memory_outcome(bus.put_key(record.clone())),
            Backend::Redis(r) => {
                let json = serde_json::to_string(record)?;
                let key = r.keys.key(&record.key_hash);
                let change = change_prefix(ChangeKind::Key, &record.key_hash, record.version);
                r.write(&key, &json, record.version, &change).await?
            }
        };
        count("key", &outcome);
        Ok(outcome)
    }

    /// [`Publisher::publish_tenant`], telling whether the record was written or stale.
    pub async fn publish_tenant_outcome(
        &self,
        config: &TenantConfig,
    ) -> Result<PublishOutcome, PublishError> {
        check_version(config.version)?;
        let outcome = match &self.inner {
            Backend::Memory(bus) => memory_outcome(bus.put_tenant(config.clone())),
            Backend::Redis(r) => {
                let json = serde_json::to_string(config)?;
                let id = config.tenant_id.to_string();
                let key = r.keys.tenant(config.tenant_id);
                let change = change_prefix(ChangeKind::Tenant, &id, config.version);
                r.write(&key, &json, config.version, &change).await?
            }
        };
        count("tenant", &outcome);
        Ok(outcome)
    }

    /// Announces a [`ChangeKind::All`] change: every node drops its whole cache and refills it
    /// lazily. Meant for a full resync after Redis lost its data or records were removed by hand.
    /// In-process this is a no-op: the in-memory store reads the bus directly and cannot go stale.
    pub async fn announce_all(&self) -> Result<PublishOutcome, PublishError> {
        match &self.inner {
            Backend::Memory(_) => Ok(PublishOutcome::Written { seq: String::new() }),
            Backend::Redis(r) => {
                let change = change_prefix(ChangeKind::All, "", 0);
                let fut = async {
                    let mut conn = r.conn().await?;
                    let seq: Option<String> = r
                        .announce
                        .key(r.keys.changes())
                        .arg(&change)
                        .arg(RedisKeys::CHANGES_MAXLEN)
                        .arg(r.keys.channel())
                        .invoke_async(&mut *conn)
                        .await?;
                    seq.map(|seq| PublishOutcome::Written { seq })
                        .ok_or(PublishError::UnexpectedReply)
                };
                tokio::time::timeout(PUBLISH_TIMEOUT, fut)
                    .await
                    .map_err(|_| PublishError::Timeout(PUBLISH_TIMEOUT))?
            }
        }
    }
}

impl RedisBackend {
    async fn conn(&self) -> Result<deadpool_redis::Connection, PublishError> {
        self.pool
            .get()
            .await
            .map_err(|e| PublishError::Pool(e.to_string()))
    }

    async fn write(
        &self,
        key: &str,
        json: &str,
        version: i64,
        change_prefix: &str,
    ) -> Result<PublishOutcome, PublishError> {
        let fut = async {
            let mut conn = self.conn().await?;
            let seq: Option<String> = self
                .write_record
                .key(key)
                .key(self.keys.changes())
                .arg(json)
                .arg(version)
                .arg(change_prefix)
                .arg(RedisKeys::CHANGES_MAXLEN)
                .arg(self.keys.channel())
                .invoke_async(&mut *conn)
                .await?;
            Ok(match seq {
                Some(seq) => PublishOutcome::Written { seq },
                None => PublishOutcome::Stale,
            })
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, fut)
            .await
            .map_err(|_| PublishError::Timeout(PUBLISH_TIMEOUT))?
    }
}

fn check_version(version: i64) -> Result<(), PublishError> {
    if (-MAX_VERSION..=MAX_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(PublishError::VersionOutOfRange(version))
    }
}

fn memory_outcome(stored: bool) -> PublishOutcome {
    if stored {
        PublishOutcome::Written { seq: String::new() }
    } else {
        PublishOutcome::Stale
    }
}

fn count(kind: &'static str, outcome: &PublishOutcome) {
    let result = match outcome {
        PublishOutcome::Written { .. } => "written",
        PublishOutcome::Stale => "stale",
    };
    metrics::counter!("switchyard_config_published_total", "kind" => kind, "result" => result)
        .increment(1);
}

/// The JSON of a [`ConfigChange`](shared::config::ConfigChange) up to and including `"seq":"`. The script appends the entry id
/// (only digits and `-`, nothing to escape) and `"}`; `serde_json` escapes the id string.
pub fn change_prefix(kind: ChangeKind, id: &str, version: i64) -> String {
    // Serializing a unit enum and a &str cannot fail; the fallbacks are unreachable.
    let kind = serde_json::to_string(&kind).unwrap_or_else(|_| "\"all\"".to_owned());
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    format!(r#"{{"kind":{kind},"id":{id},"version":{version},"seq":""#)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use shared::config::ConfigChange;

    #[test]
    fn change_prefix_completes_to_a_config_change() {
        let p = change_prefix(ChangeKind::Key, "ab\"c", 9_007_199_254_740_991);
        let with_seq: ConfigChange =
            serde_json::from_str(&format!("{p}1732233600000-0\"}}")).unwrap();
        assert_eq!(
            with_seq,
            ConfigChange {
                kind: ChangeKind::Key,
                id: "ab\"c".into(),
                version: 9_007_199_254_740_991,
                seq: "1732233600000-0".into()
            }
        );
        let empty: ConfigChange = serde_json::from_str(&format!("{p}\"}}")).unwrap();
        assert_eq!(empty.seq, "");
    }

    #[test]
    fn versions_beyond_2_pow_53_are_refused() {
        assert!(check_version(MAX_VERSION).is_ok());
        assert!(check_version(-MAX_VERSION).is_ok());
        assert!(matches!(
            check_version(MAX_VERSION + 1),
            Err(PublishError::VersionOutOfRange(_))
        ));
    }
}
