//! A fresh Redis key prefix per test run (`sy-test-<uuid>:`), so tests share one Redis server
//! without seeing each other's keys, streams or pub/sub channels; [`PrefixGuard`] deletes them
//! afterwards.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::Context;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use shared::config::RedisKeys;

/// `TEST_REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `sy-test-<uuid>:`, to pass as `SWITCHYARD_REDIS_PREFIX`.
pub fn fresh_prefix() -> String {
    format!("sy-test-{}:", uuid::Uuid::new_v4().simple())
}

/// The test Redis's address (host and port of [`redis_url`]), for a proxy in front of it.
pub fn redis_addr() -> anyhow::Result<SocketAddr> {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let host_port = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .split('/')
        .next()
        .unwrap_or(rest);
    host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving the Redis address {host_port:?}"))?
        .next()
        .with_context(|| format!("{host_port:?} resolves to no address"))
}

/// A multiplexed connection to the test Redis.
pub async fn connect() -> anyhow::Result<MultiplexedConnection> {
    redis::Client::open(redis_url())
        .context("parsing the Redis URL")?
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")
}

/// A fresh prefix whose keys are deleted when the guard drops (best effort, on a fresh thread
/// so it works from inside a runtime).
#[derive(Debug)]
pub struct PrefixGuard {
    pub keys: RedisKeys,
}

impl PrefixGuard {
    pub fn new() -> Self {
        Self {
            keys: RedisKeys::new(fresh_prefix()),
        }
    }
}

impl Default for PrefixGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.keys.prefix().to_owned();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(delete_prefix(&redis_url(), &prefix));
            }
        })
        .join();
    }
}

/// What one Redis key holds, rendered as text for searching.
#[derive(Debug, Clone)]
pub struct RedisEntry {
    pub key: String,
    /// The Redis type (`string`, `hash`, `stream`, …).
    pub kind: String,
    /// Every value (and field name) the key holds, lossily decoded as UTF-8, one per line.
    pub text: String,
}

/// Every key under `prefix` with its content: strings, hashes, lists, sets, sorted sets, and
/// streams (every entry via XRANGE). Used to prove a secret is stored nowhere in plaintext.
pub async fn dump_prefix(url: &str, prefix: &str) -> anyhow::Result<Vec<RedisEntry>> {
    let client = redis::Client::open(url).context("parsing the Redis URL")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let keys = scan_prefix(&mut conn, prefix).await?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![conn.get(&key).await?],
            "hash" => {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(&key).await?;
                pairs.into_iter().flat_map(|(f, v)| [f, v]).collect()
            }
            "list" => conn.lrange(&key, 0, -1).await?,
            "set" => conn.smembers(&key).await?,
            "zset" => conn.zrange(&key, 0, -1).await?,
            "stream" => {
                // Raw XRANGE reply: [[id, [field, value, …]], …], flattened to bytes.
                let reply: redis::Value = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await?;
                let mut acc = Vec::new();
                flatten(&reply, &mut acc);
                acc
            }
            // `none` (expired between SCAN and TYPE) or a type we do not use.
            _ => Vec::new(),
        };
        let text = values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        out.push(RedisEntry { key, kind, text });
    }
    Ok(out)
}

/// Deletes every key under `prefix`. Best effort, for tidying up after a test.
pub async fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    if let Ok(keys) = scan_prefix(&mut conn, prefix).await {
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = conn.del(chunk).await;
        }
    }
}

async fn scan_prefix(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    // Escape glob metacharacters so the prefix matches literally.
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .context("SCAN")?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn flatten(v: &redis::Value, acc: &mut Vec<Vec<u8>>) {
    match v {
        redis::Value::BulkString(b) => acc.push(b.clone()),
        redis::Value::SimpleString(s) => acc.push(s.clone().into_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|i| flatten(i, acc));
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, acc);
            flatten(v, acc);
        }),
        redis::Value::Int(i) => acc.push(i.to_string().into_bytes()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn dumps_every_kind_under_the_prefix_only() {
        let prefix = fresh_prefix();
        assert!(prefix.starts_with("sy-test-") && prefix.ends_with(':'));
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis at TEST_REDIS_URL");
        let other = fresh_prefix();
        let _: () = conn.set(format!("{other}x"), "not mine").await.unwrap();
        let _: () = conn.set(format!("{prefix}s"), "str-needle").await.unwrap();
        let _: () = conn
            .hset(format!("{prefix}h"), "f", "hash-needle")
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(format!("{prefix}x"))
            .arg("*")
            .arg("event")
            .arg("stream-needle")
            .query_async(&mut conn)
            .await
            .unwrap();

        let dump = dump_prefix(&redis_url(), &prefix).await.unwrap();
        let all: String = dump
            .iter()
            .map(|e| format!("{} {}\n", e.key, e.text))
            .collect();
        assert_eq!(dump.len(), 3, "{all}");
        for needle in ["str-needle", "hash-needle", "stream-needle"] {
            assert!(all.contains(needle), "{needle} in {all}");
        }
        assert!(!all.contains("not mine"));

        delete_prefix(&redis_url(), &prefix).await;
        delete_prefix(&redis_url(), &other).await;
        assert!(dump_prefix(&redis_url(), &prefix).await.unwrap().is_empty());
    }
}
