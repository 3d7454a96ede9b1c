//! Provider quota smoothing: keep a deployment under its provider's requests-per-minute
//! (`rpm_limit`) and tokens-per-minute (`tpm_limit`) quotas *together* with every other node, so
//! the gateway moves on to the next candidate before the provider starts answering 429.
//!
//! The count is a sliding minute: the current minute's count plus the previous minute's,
//! weighted by how much of it still overlaps the last 60 seconds (the approximation most rate
//! limiters use; it never lets through more than the limit over any aligned pair of minutes and
//! smooths the burst a fixed window allows at its boundary).
//!
//! - With Redis (distributed mode) the counts live in Redis, shared by every node: one Lua
//!   script reads both minutes, decides and increments atomically, so two nodes can never both
//!   take the last unit. Keys: `{prefix}quota:{deployment}:{rpm|tpm}:{minute}`, expiring after
//!   two minutes. Only deployments with a limit pay this round trip.
//! - Without Redis (the zero-setup default, one process) the counts are in memory.
//! - When Redis is unreachable, a node falls back to counting alone against a local share of
//!   the limit ([`LOCAL_SHARE`]), so a Redis outage neither stops traffic nor lets every node
//!   spend the whole quota.
//!
//! A request takes one unit of RPM and its estimated prompt tokens of TPM when it is sent; units
//! are not returned when the call fails (the provider counts failed requests too).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::Pool;
use shared::config::{DeploymentRecord, RedisKeys};
use uuid::Uuid;

/// The fraction of a limit a node uses on its own while Redis is unreachable.
pub const LOCAL_SHARE: f64 = 0.5;
/// How long a quota check may wait for Redis before the node counts on its own.
const REDIS_WAIT: Duration = Duration::from_millis(250);

/// `KEYS[1]` current minute, `KEYS[2]` previous minute; `ARGV[1]` limit, `ARGV[2]` units to
/// take, `ARGV[3]` weight of the previous minute (0..1). Returns 1 when taken, 0 when over.
const TAKE_LUA: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local used = current + previous * tonumber(ARGV[3])
if used + tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 120)
return 1
";

/// Which quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Rpm,
    Tpm,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Rpm => "rpm",
            Kind::Tpm => "tpm",
        }
    }
}

/// Per-deployment quota counters for this node: shared through Redis when there is one.
pub struct Quotas {
    redis: Option<(Pool, RedisKeys)>,
    script: redis::Script,
    /// (deployment, kind, minute) → count; in-memory mode and the Redis-down fallback.
    local: Mutex<HashMap<(Uuid, Kind, u64), u64>>,
}

impl Quotas {
    /// Counters in Redis (shared by every node) when `redis` is given, else in memory.
    pub fn new(redis: Option<(Pool, RedisKeys)>) -> Self {
        Self {
            redis,
            script: redis::Script::new(TAKE_LUA),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request (and `prompt_tokens` tokens) of `deployment`'s quotas, or returns
    /// `false` when either would go over: the caller moves on to another candidate. A
    /// deployment without limits always passes, at no cost.
    pub async fn try_take(
        &self,
        deployment: &DeploymentRecord,
        prompt_tokens: impl FnOnce() -> u64,
    ) -> bool {
        if deployment.rpm_limit.is_none() && deployment.tpm_limit.is_none() {
            return true;
        }
        let (minute, previous_weight) = sliding_minute(SystemTime::now());
        if let Some(limit) = deployment.rpm_limit
            && !self
                .take(
                    deployment.id,
                    Kind::Rpm,
                    u64::from(limit),
                    1,
                    minute,
                    previous_weight,
                )
                .await
        {
            return false;
        }
        if let Some(limit) = deployment.tpm_limit {
            let tokens = prompt_tokens().max(1);
            if !self
                .take(
                    deployment.id,
                    Kind::Tpm,
                    limit,
                    tokens,
                    minute,
                    previous_weight,
                )
                .await
            {
                return false;
            }
        }
        true
    }

    async fn take(
        &self,
        deployment: Uuid,
        kind: Kind,
        limit: u64,
        units: u64,
        minute: u64,
        previous_weight: f64,
    ) -> bool {
        if let Some((pool, keys)) = &self.redis {
            let key = |m: u64| format!("{}quota:{deployment}:{}:{m}", keys.prefix(), kind.as_str());
            let shared = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                self.script
                    .key(key(minute))
                    .key(key(minute.saturating_sub(1)))
                    .arg(limit)
                    .arg(units)
                    .arg(previous_weight)
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(REDIS_WAIT, shared).await {
                Ok(Ok(taken)) => return taken == 1,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "quota counters unavailable; counting a local share");
                }
                Err(_) => tracing::warn!("quota counters timed out; counting a local share"),
            }
            let share = ((limit as f64) * LOCAL_SHARE).floor().max(1.0) as u64;
            return self.take_local(deployment, kind, share, units, minute, previous_weight);
        }
        self.take_local(deployment, kind, limit, units, minute, previous_weight)
    }

    fn take_local(
        &self,
        deployment: Uuid,
        kind: Kind,
        limit: u64,
        units: u64,
        minute: u64,
        previous_weight: f64,
    ) -> bool {
        let mut counts = self.local.lock().unwrap_or_else(|p| p.into_inner());
        // Older minutes no longer matter; dropping them keeps the map as small as the set of
        // limited deployments in use.
        counts.retain(|(_, _, m), _| *m + 1 >= minute);
        let current = counts
            .get(&(deployment, kind, minute))
            .copied()
            .unwrap_or(0);
        let previous = counts
            .get(&(deployment, kind, minute.saturating_sub(1)))
            .copied()
            .unwrap_or(0);
        let used = current as f64 + previous as f64 * previous_weight;
        if used + units as f64 > limit as f64 {
            return false;
        }
        *counts.entry((deployment, kind, minute)).or_insert(0) += units;
        true
    }
}

/// The current minute since the epoch, and the weight of the previous minute in the sliding
/// window (the part of it still inside the last 60 seconds).
fn sliding_minute(now: SystemTime) -> (u64, f64) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let minute = since.as_secs() / 60;
    let into = (since.as_millis() % 60_000) as f64 / 60_000.0;
    (minute, 1.0 - into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(rpm: Option<u32>, tpm: Option<u64>) -> DeploymentRecord {
        DeploymentRecord {
            id: Uuid::new_v4(),
            name: "m".into(),
            provider_id: Uuid::new_v4(),
            upstream_model: "m".into(),
            input_price_micros_per_mtok: 1,
            output_price_micros_per_mtok: 1,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: None,
            catalog_id: None,
            mode: Default::default(),
            context_window: None,
            capabilities: None,
            rpm_limit: rpm,
            tpm_limit: tpm,
        }
    }

    #[tokio::test]
    async fn local_counts_stop_at_the_limit() {
        let quotas = Quotas::new(None);
        let d = limited(Some(3), None);
        let mut taken = 0;
        for _ in 0..10 {
            if quotas.try_take(&d, || 0).await {
                taken += 1;
            }
        }
        // Exactly the limit, unless the minute rolled over mid-test (then at most twice it,
        // less what the previous minute still weighs).
        assert!((3..=6).contains(&taken), "{taken}");
        assert!(quotas.try_take(&limited(None, None), || 0).await);
    }

    #[tokio::test]
    async fn tokens_count_against_tpm() {
        let quotas = Quotas::new(None);
        let d = limited(None, Some(100));
        assert!(quotas.try_take(&d, || 60).await);
        assert!(!quotas.try_take(&d, || 60).await, "60 + 60 > 100");
        assert!(quotas.try_take(&d, || 40).await);
    }

    #[test]
    fn the_previous_minute_weighs_what_still_overlaps() {
        let at = |secs: u64, millis: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis);
        assert_eq!(sliding_minute(at(120, 0)), (2, 1.0));
        let (m, w) = sliding_minute(at(150, 0));
        assert_eq!(m, 2);
        assert!((w - 0.5).abs() < 1e-9);
    }
}
