//! Small, dependency-free helpers for Redis Stream replies and pool setup, shared by the config
//! store, the usage sink and the control plane's usage ingest.
//!
//! Stream replies are parsed from raw [`Value`]s instead of the `redis` crate's typed replies
//! because those refuse entries whose fields are nil (an entry deleted with `XDEL` while still
//! pending in a consumer group comes back as `[id, nil]`), and we must be able to ack those.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_redis::redis::{AsyncConnectionConfig, Value};
use deadpool_redis::{Manager, Pool, Runtime};

use super::StoreError;

/// Connect timeout for pooled connections.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Per-command response timeout for pooled connections. Blocking reads (`XREADGROUP BLOCK`) must
/// block for less than this; the ingest blocks for 400 ms so it also works with the `redis`
/// crate's default of 500 ms.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a caller waits for a free pooled connection, or for a new one to be created.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of pooled connections (each is multiplexed, so a few go a long way).
pub const POOL_MAX_SIZE: usize = 16;

/// Builds the Redis pool both planes use: bounded connect, response, wait, create and recycle
/// times, so a dead or hung Redis turns into a prompt error instead of a stuck request.
///
/// The error never echoes the URL (it may hold a password).
pub fn redis_pool(url: &str) -> Result<Pool, StoreError> {
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager =
        Manager::new_with_config(url, conn_config).map_err(|_| StoreError::InvalidRedisUrl)?;
    Pool::builder(manager)
        .max_size(POOL_MAX_SIZE)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(POOL_WAIT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot build the Redis pool: {e}")))
}

/// A stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// `0-0`, smaller than every real entry id.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
}

impl FromStr for StreamId {
    type Err = InvalidStreamId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(InvalidStreamId)?;
        Ok(StreamId {
            ms: ms.parse().map_err(|_| InvalidStreamId)?,
            seq: seq.parse().map_err(|_| InvalidStreamId)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A string that is not a stream entry id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a Redis stream entry id")]
pub struct InvalidStreamId;

/// One stream entry. `fields` is `None` for an entry that was deleted while still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl StreamEntry {
    /// The value of field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The parsed id, if well formed.
    pub fn stream_id(&self) -> Option<StreamId> {
        self.id.parse().ok()
    }
}

/// A reply that does not have the shape of a stream reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Redis stream reply shape: {0}")]
pub struct ReplyShape(pub &'static str);

/// Parses an `XRANGE`/`XREVRANGE` reply (also the entry list inside `XREADGROUP`/`XAUTOCLAIM`).
pub fn parse_entries(value: Value) -> Result<Vec<StreamEntry>, ReplyShape> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) | Value::Set(items) => items.into_iter().map(parse_entry).collect(),
        _ => Err(ReplyShape("entry list is not an array")),
    }
}

/// Parses an `XREADGROUP`/`XREAD` reply for a single stream (nil on timeout).
pub fn parse_read_reply(value: Value) -> Result<Vec<StreamEntry>, ReplyShape> {
    match value {
        Value::Nil => Ok(Vec::new()),
        // RESP2: [[stream, entries], ...]
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                match s {
                    Value::Array(mut pair) if pair.len() == 2 => {
                        let entries = pair.pop().unwrap_or(Value::Nil);
                        out.extend(parse_entries(entries)?);
                    }
                    _ => return Err(ReplyShape("stream item is not [name, entries]")),
                }
            }
            Ok(out)
        }
        // RESP3: {stream: entries, ...}
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        _ => Err(ReplyShape("read reply is not an array")),
    }
}

/// Parses an `XAUTOCLAIM` reply: (next cursor, claimed entries). Ids of entries that no longer
/// exist (third element, Redis 7+) are dropped from the pending list by Redis itself.
pub fn parse_autoclaim_reply(value: Value) -> Result<(String, Vec<StreamEntry>), ReplyShape> {
    let Value::Array(mut parts) = value else {
        return Err(ReplyShape("XAUTOCLAIM reply is not an array"));
    };
    if parts.len() < 2 {
        return Err(ReplyShape("XAUTOCLAIM reply is too short"));
    }
    parts.truncate(2);
    let entries = parts.pop().unwrap_or(Value::Nil);
    let cursor = parts
        .pop()
        .and_then(value_to_string)
        .ok_or(ReplyShape("XAUTOCLAIM cursor is not a string"))?;
    Ok((cursor, parse_entries(entries)?))
}

fn parse_entry(value: Value) -> Result<StreamEntry, ReplyShape> {
    let Value::Array(mut pair) = value else {
        return Err(ReplyShape("entry is not an array"));
    };
    if pair.len() != 2 {
        return Err(ReplyShape("entry is not [id, fields]"));
    }
    let fields = pair.pop().unwrap_or(Value::Nil);
    let id = pair
        .pop()
        .and_then(value_to_string)
        .ok_or(ReplyShape("entry id is not a string"))?;
    let fields = match fields {
        Value::Nil => None,
        Value::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((
                    value_to_bytes(k).ok_or(ReplyShape("field name"))?,
                    value_to_bytes(v).ok_or(ReplyShape("field value"))?,
                ));
            }
            Some(out)
        }
        Value::Map(pairs) => {
            let mut out = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                out.push((
                    value_to_bytes(k).ok_or(ReplyShape("field name"))?,
                    value_to_bytes(v).ok_or(ReplyShape("field value"))?,
                ));
            }
            Some(out)
        }
        _ => return Err(ReplyShape("entry fields are not an array")),
    };
    Ok(StreamEntry { id, fields })
}

fn value_to_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn value_to_string(value: Value) -> Option<String> {
    value_to_bytes(value).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn stream_ids_order_numerically() {
        let a: StreamId = "9-5".parse().unwrap();
        let b: StreamId = "10-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "10-0");
        assert!("10".parse::<StreamId>().is_err());
        assert!("x-1".parse::<StreamId>().is_err());
    }

    #[test]
    fn parses_read_and_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("event"), bulk("{}")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = parse_read_reply(reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].field("event"), Some(&b"{}"[..]));
        assert_eq!(entries[1].fields, None);
        assert_eq!(parse_read_reply(Value::Nil).unwrap(), vec![]);
    }

    #[test]
    fn parses_autoclaim() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("3-1"),
                Value::Array(vec![bulk("a"), bulk("b")]),
            ])]),
            Value::Array(vec![]),
        ]);
        let (cursor, entries) = parse_autoclaim_reply(reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(entries[0].stream_id(), Some(StreamId { ms: 3, seq: 1 }));
    }
}
