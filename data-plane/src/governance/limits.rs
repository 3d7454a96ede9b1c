//! Distributed rate limits: requests per minute (RPM) and tokens per minute (TPM) at three
//! levels — the key, its team, the organization (tenant) — in any combination, all checked.
//!
//! # Algorithm: per-second buckets over a rolling 60 s
//!
//! Each (level, id, metric) has one Redis hash ([`RedisKeys::rate`]) with fields `t` (running
//! total), `o` (oldest second still counted), `n` (newest second with a count) and one
//! `<unix second>` field per second that took something. A check:
//!
//! 1. evicts the seconds older than `now - 59` (subtracting them from `t`; `o` moves forward,
//!    so each second is evicted once: amortized O(1); a hash whose newest second is already out
//!    of the window is simply deleted);
//! 2. checks `t + cost ≤ limit` for **every** level of the request;
//! 3. only if all pass, adds the cost to every level's current second and total
//!    (all-or-nothing: a request refused by its team's limit takes nothing from its key's).
//!
//! This is exact over any rolling 60 s at 1 s granularity (unlike a two-window approximation,
//! which over- or under-counts at window boundaries), and keeps what GCRA cannot: a running
//! total that later token corrections (positive or negative) adjust in place, and the exact
//! "remaining" count OpenAI's headers report. Memory is at most 60 fields per hash; every key
//! expires 70 s after its last use.
//!
//! One Lua script covers every level that has a limit ([`CHECK_LUA`]); all of a tenant's keys
//! share the organization's hash tag, so the script runs on Redis Cluster too. The clock is
//! Redis's (`TIME`), so nodes with skewed clocks still agree on the window.
//!
//! # Leases: no Redis round trip on a request's path in the steady state
//!
//! A node takes a little of each busy limit ahead — a **lease** — in the same script call, and
//! spends it locally: a request whose every limit has lease left is admitted with no Redis call.
//! When a lease runs below half its size, one background call (per node and limit, never more
//! than one in flight) takes the next; a request that finds its lease empty while that call is
//! in flight waits for it (at most the Redis wait) instead of calling Redis too. Sizes start at
//! four requests' cost and double on each refill, up to `limit / (20 × SWITCHYARD_NODE_COUNT)`
//! (so all nodes together hold at most about a twentieth of a limit ahead); a limit too small
//! for two requests' cost per lease is checked exactly, in Redis, on every request, as before.
//! The lease is taken from the shared window when granted, so nodes never admit more than the
//! limit between them; what a node has not spent after [`LEASE_TTL`] goes back to the second it
//! was taken in (a correction, batched). The costs: near a limit, a node may refuse while
//! another still holds lease (at most its lease, for at most [`LEASE_TTL`]); and a lease is
//! counted in the second it was taken, so it leaves the rolling window up to [`LEASE_TTL`]
//! earlier than the requests that spent it. Headers report Redis's remaining (as of the last
//! grant) plus the node's unspent lease: exact with one node.
//!
//! # Tokens: estimate, then correct
//!
//! TPM takes an estimate before the call (prompt tokens + max output) and the meter corrects it
//! with the actual total afterwards ([`TokenTake::settle`]): the difference (usually negative)
//! goes to the bucket second the estimate went to, floored at 0, and is skipped when that second
//! has already left the window. Corrections are queued to a background task that applies them
//! in batches (one script per tenant per batch), off the response path; a failed batch is
//! dropped (logged, counted), never retried.
//!
//! # Without Redis, and when Redis is unreachable
//!
//! - Zero-setup (no Redis): the same algorithm in memory.
//! - Redis unreachable (or slower than [`REDIS_WAIT`]): the node counts on its own against
//!   `limit / SWITCHYARD_NODE_COUNT` (at least 1), so an outage neither stops traffic nor lets
//!   every node spend the whole limit. The outage is logged once (a warning when it starts, an
//!   info line when Redis answers again) and every fallback decision is counted in
//!   `switchyard_rate_limit_fallback_total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::Pool;
use redis::aio::MultiplexedConnection;
use shared::config::RedisKeys;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The window, in seconds.
pub const WINDOW_SECS: u64 = 60;
/// How long a check waits for Redis before the node counts on its own.
pub const REDIS_WAIT: Duration = Duration::from_millis(250);
/// How long a lease may be spent; what is left then goes back to the shared window.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// A node holds at most `limit / (LEASE_SHARE × node_count)` of a limit ahead.
const LEASE_SHARE: u64 = 20;
/// Queued token corrections; beyond this they are dropped (best-effort).
const CORRECTION_QUEUE: usize = 8192;
/// Most corrections applied in one batch.
const CORRECTION_BATCH: usize = 512;
/// How long the correction task waits for more corrections before sending a batch.
const CORRECTION_LINGER: Duration = Duration::from_millis(50);

/// `KEYS`: one rate hash per limit; `ARGV`: `limit, cost, lease` per key. Returns
/// `{admitted, now, [remaining, reset_ms, retry_ms, leased] per key}` (see the module docs):
/// when admitted, each key also gives up to `lease` more (what fits) as the node's lease.
pub const CHECK_LUA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1])
local now_ms = now * 1000 + math.floor(tonumber(time[2]) / 1000)
local horizon = now - 59
local totals, oldests, newests = {}, {}, {}
local admitted = 1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 2])
  local cost = tonumber(ARGV[3 * i - 1])
  local fields = redis.call('HMGET', key, 't', 'o', 'n')
  local total = tonumber(fields[1]) or 0
  local oldest = tonumber(fields[2]) or now
  local newest = tonumber(fields[3]) or 0
  if oldest < horizon then
    if newest < horizon or horizon - oldest >= 60 then
      redis.call('DEL', key)
      total = 0
      newest = 0
    else
      for s = oldest, horizon - 1 do
        local c = tonumber(redis.call('HGET', key, s))
        if c then
          total = total - c
          redis.call('HDEL', key, s)
        end
      end
      if total < 0 then total = 0 end
      redis.call('HSET', key, 't', total, 'o', horizon)
    end
    oldest = horizon
  end
  totals[i] = total
  oldests[i] = oldest
  newests[i] = newest
  if total + cost > limit then admitted = 0 end
end
local result = {admitted, now}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i - 2])
  local cost = tonumber(ARGV[3 * i - 1])
  local lease = 0
  local total = totals[i]
  local retry = 0
  if total + cost > limit then
    retry = 60000
    if cost <= limit then
      local need = total + cost - limit
      local freed = 0
      for s = oldests[i], now do
        local c = tonumber(redis.call('HGET', key, s))
        if c then
          freed = freed + c
          if freed >= need then
            retry = (s + 60) * 1000 - now_ms
            break
          end
        end
      end
    end
  end
  if admitted == 1 then
    lease = math.max(0, math.min(tonumber(ARGV[3 * i]), limit - total - cost))
  end
  if admitted == 1 and cost + lease > 0 then
    redis.call('HINCRBY', key, now, cost + lease)
    total = redis.call('HINCRBY', key, 't', cost + lease)
    redis.call('HSETNX', key, 'o', now)
    redis.call('HSET', key, 'n', now)
    newests[i] = now
  end
  redis.call('EXPIRE', key, 70)
  local reset = 0
  if total > 0 and newests[i] > 0 then reset = (newests[i] + 60) * 1000 - now_ms end
  local remaining = limit - total
  if remaining < 0 then remaining = 0 end
  table.insert(result, remaining)
  table.insert(result, reset)
  table.insert(result, retry)
  table.insert(result, lease)
end
return result
";

/// `KEYS`: rate hashes of one tenant; `ARGV`: `second, delta` per key. Adds each delta to its
/// second's bucket and the total, floored at 0; a second no longer in the hash is skipped.
pub const CORRECT_LUA: &str = r"
for i, key in ipairs(KEYS) do
  local s = ARGV[2 * i - 1]
  local d = tonumber(ARGV[2 * i])
  local c = tonumber(redis.call('HGET', key, s))
  if c then
    if c + d < 0 then d = -c end
    if d ~= 0 then
      redis.call('HINCRBY', key, s, d)
      local t = tonumber(redis.call('HGET', key, 't')) or 0
      if t + d < 0 then d = -t end
      redis.call('HINCRBY', key, 't', d)
    end
  end
end
return 1
";

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Key,
    Team,
    Tenant,
}

impl Level {
    /// The name in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::Team => "team",
            Level::Tenant => "tenant",
        }
    }

    /// The name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Level::Key => "API key",
            Level::Team => "team",
            Level::Tenant => "organization",
        }
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl Metric {
    /// OpenAI's name (the error `type`, the header suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
        }
    }

    /// The name in Redis keys.
    fn short(self) -> &'static str {
        match self {
            Metric::Requests => "rpm",
            Metric::Tokens => "tpm",
        }
    }
}

/// One limit a request is checked against, and what it would take of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub level: Level,
    /// The key's, team's or tenant's id.
    pub id: Uuid,
    pub metric: Metric,
    pub limit: u64,
    pub cost: u64,
}

/// A limit's state after a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    /// What is left in the rolling window (after this request's take, if admitted).
    pub remaining: u64,
    /// Milliseconds until the window is empty again (everything counted has expired).
    pub reset_ms: u64,
    /// Milliseconds until this request's cost would fit; 0 when it fits now.
    pub retry_ms: u64,
    /// The Unix second this limit's take is counted in (token corrections go there).
    pub second: u64,
}

/// The outcome of [`RateLimiter::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether every limit had room (and so every one was taken).
    pub admitted: bool,
    /// One per checked limit, in the order given.
    pub standings: Vec<Standing>,
    /// Whether this node decided alone (no Redis, or Redis unreachable).
    pub local: bool,
}

/// Which way a check was answered (the `path` label of `switchyard_rate_limit_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// From the node's leases: no Redis call.
    Lease,
    /// By the check script, on the request's path.
    Redis,
    /// By the node alone (no Redis, or Redis unreachable).
    Local,
}

impl Path {
    fn count(self) {
        let path = match self {
            Path::Lease => "lease",
            Path::Redis => "redis",
            Path::Local => "local",
        };
        metrics::counter!("switchyard_rate_limit_checks_total", "path" => path).increment(1);
    }
}

/// The part of one limit a node has taken ahead (see the module docs).
#[derive(Debug)]
struct Lease {
    tenant: Uuid,
    /// Taken and not yet spent.
    left: u64,
    /// The size last asked for.
    size: u64,
    /// Spent since the last grant (the demand the next size follows).
    spent: u64,
    /// The second the last grant was counted in.
    second: u64,
    /// When the last grant arrived; the lease is spent until [`LEASE_TTL`] after it.
    granted: std::time::Instant,
    /// Redis's standing after the last grant (its `remaining` excludes `left`).
    standing: Standing,
    /// A grant call for this limit is in flight.
    refilling: bool,
}

impl Lease {
    fn live(&self, now: std::time::Instant) -> bool {
        now.saturating_duration_since(self.granted) < LEASE_TTL
    }

    /// Half spent, or half its time gone: time to take the next (before it runs out).
    fn wants_refill(&self, now: std::time::Instant) -> bool {
        !self.refilling
            && (self.left < self.size / 2
                || now.saturating_duration_since(self.granted) >= LEASE_TTL / 2)
    }
}

type LimitId = (Level, Uuid, Metric);

/// What the leases can do for a request.
enum Leased {
    /// Every limit had lease left: admitted, nothing to ask Redis.
    Admitted(Decision),
    /// A grant for one of the limits is in flight: wait for it.
    Wait,
    /// Ask Redis, with these lease sizes per limit (0: no lease), as the one grant call in
    /// flight for each limit with a size.
    Ask(Vec<u64>),
}

/// A token correction queued for the background task.
#[derive(Debug)]
struct Correction {
    tenant: Uuid,
    key: String,
    second: u64,
    delta: i64,
}

/// The node's rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Option<(Pool, RedisKeys)>,
    check: redis::Script,
    /// The connection every check shares (with Redis).
    connection: Option<crate::store::SharedConnection>,
    /// Zero-setup counts, and the fallback counts while Redis is unreachable.
    local: Mutex<HashMap<(Level, Uuid, Metric), Window>>,
    node_count: u32,
    /// How long a check waits for Redis before counting alone.
    redis_wait: Duration,
    /// Whether Redis is currently considered unreachable (for logging once per outage).
    outage: AtomicBool,
    corrections: Option<mpsc::Sender<Correction>>,
    /// The node's leases (with Redis only). One short critical section per check.
    leases: Mutex<HashMap<LimitId, Lease>>,
    /// Woken when a grant call ends.
    granted: tokio::sync::Notify,
    /// Check-script calls so far (requests and refills).
    round_trips: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("redis", &self.inner.redis.is_some())
            .field("node_count", &self.inner.node_count)
            .finish()
    }
}

impl RateLimiter {
    /// Counts in Redis (shared by every node) when `redis` is given, else in memory.
    /// `node_count` divides limits while Redis is unreachable. With Redis, starts the
    /// correction task on the current Tokio runtime (if there is one).
    pub fn new(redis: Option<(Pool, RedisKeys)>, node_count: u32) -> Self {
        Self::with_redis_wait(redis, node_count, REDIS_WAIT)
    }

    /// [`RateLimiter::new`] waiting up to `redis_wait` (instead of [`REDIS_WAIT`]) for Redis
    /// before counting alone.
    pub fn with_redis_wait(
        redis: Option<(Pool, RedisKeys)>,
        node_count: u32,
        redis_wait: Duration,
    ) -> Self {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let corrections = match (&redis, &runtime) {
            (Some((pool, _)), Some(runtime)) => {
                let (tx, rx) = mpsc::channel(CORRECTION_QUEUE);
                runtime.spawn(apply_corrections(pool.clone(), rx));
                Some(tx)
            }
            _ => None,
        };
        let connection = redis
            .as_ref()
            .map(|(pool, _)| crate::store::SharedConnection::new(pool.clone()));
        let limiter = Self {
            inner: Arc::new(Inner {
                redis,
                check: redis::Script::new(CHECK_LUA),
                connection,
                local: Mutex::new(HashMap::new()),
                node_count: node_count.max(1),
                redis_wait,
                outage: AtomicBool::new(false),
                corrections,
                leases: Mutex::new(HashMap::new()),
                granted: tokio::sync::Notify::new(),
                round_trips: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        if let (Some(runtime), Some(_)) = (runtime, &limiter.inner.redis) {
            runtime.spawn(return_expired_leases(Arc::downgrade(&limiter.inner)));
        }
        limiter
    }

    /// Checks every limit of `tenant`'s request and takes them all, or none (see the module
    /// docs). No Redis round trip when the node's leases cover it (the steady state), else one.
    pub async fn check(&self, tenant: Uuid, limits: &[Limit]) -> Decision {
        if self.inner.redis.is_none() {
            Path::Local.count();
            return self.check_local(limits, 1);
        }
        // How long this request may wait for grants in flight, in all.
        let deadline = tokio::time::Instant::now() + self.inner.redis_wait;
        loop {
            let notified = self.inner.granted.notified();
            tokio::pin!(notified);
            // Registered before the leases are read, so a grant that ends in between wakes us.
            notified.as_mut().enable();
            match self.spend_leases(tenant, limits) {
                Leased::Admitted(decision) => {
                    Path::Lease.count();
                    return decision;
                }
                Leased::Wait if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
                // Waited long enough: check exactly, without leases.
                // Boxed: the script call's future is large, and the lease path (nearly every
                // request) should not carry room for it.
                Leased::Wait => {
                    return Box::pin(self.check_redis(tenant, limits, None)).await;
                }
                Leased::Ask(sizes) => {
                    return Box::pin(self.check_redis(tenant, limits, Some(&sizes))).await;
                }
            }
        }
    }

    /// What the node's leases can do for a request (see [`Leased`]); takes the costs when they
    /// cover every limit, and starts a background refill of those running low.
    fn spend_leases(&self, tenant: Uuid, limits: &[Limit]) -> Leased {
        let now = std::time::Instant::now();
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        let covered = limits.iter().all(|l| {
            leases
                .get(&(l.level, l.id, l.metric))
                .is_some_and(|lease| lease.live(now) && lease.left >= l.cost)
        });
        if covered {
            let mut refill: Vec<u64> = Vec::new();
            let mut standings = Vec::with_capacity(limits.len());
            for (i, l) in limits.iter().enumerate() {
                let Some(lease) = leases.get_mut(&(l.level, l.id, l.metric)) else {
                    continue;
                };
                lease.left -= l.cost;
                lease.spent = lease.spent.saturating_add(l.cost);
                let elapsed = u64::try_from(now.duration_since(lease.granted).as_millis())
                    .unwrap_or(u64::MAX);
                standings.push(Standing {
                    limit: l.limit,
                    remaining: lease.standing.remaining.saturating_add(lease.left),
                    reset_ms: lease.standing.reset_ms.saturating_sub(elapsed),
                    retry_ms: 0,
                    second: lease.second,
                });
                if lease.wants_refill(now) {
                    let next = self.lease_size(l, Some(&*lease), now);
                    if next > 0 {
                        lease.refilling = true;
                        refill.resize(limits.len(), 0);
                        refill[i] = next;
                    }
                }
            }
            if !refill.is_empty() {
                let limiter = self.clone();
                // The refill takes nothing for a request: only the leases.
                let limits: Vec<Limit> = limits.iter().map(|l| Limit { cost: 0, ..*l }).collect();
                tokio::spawn(async move {
                    limiter.check_redis(tenant, &limits, Some(&refill)).await;
                });
            }
            return Leased::Admitted(Decision {
                admitted: true,
                standings,
                local: false,
            });
        }
        // Per limit: the lease, if it cannot pay for this request.
        let short: Vec<Option<Option<&Lease>>> = limits
            .iter()
            .map(|l| {
                let lease = leases.get(&(l.level, l.id, l.metric));
                let pays = lease.is_some_and(|x| x.live(now) && x.left >= l.cost);
                (!pays).then_some(lease)
            })
            .collect();
        if short.iter().flatten().flatten().any(|x| x.refilling) {
            return Leased::Wait;
        }
        // This request asks Redis, taking a lease for every limit it is short of (and that may
        // have one).
        let sizes: Vec<u64> = limits
            .iter()
            .zip(&short)
            .map(|(l, short)| match short {
                Some(lease) => self.lease_size(l, *lease, now),
                None => 0,
            })
            .collect();
        for (l, &size) in limits.iter().zip(&sizes) {
            if size > 0 {
                let lease = leases
                    .entry((l.level, l.id, l.metric))
                    .or_insert_with(|| Lease {
                        tenant,
                        left: 0,
                        size,
                        spent: 0,
                        second: 0,
                        granted: now,
                        standing: Standing::default(),
                        refilling: false,
                    });
                if !lease.live(now) && lease.left > 0 {
                    // Expired: what is left goes back before a new grant replaces it.
                    let left = std::mem::take(&mut lease.left);
                    self.send_correction(tenant, l.level, l.id, l.metric, lease.second, neg(left));
                }
                lease.refilling = true;
            }
        }
        Leased::Ask(sizes)
    }

    /// The next lease size of `l`, capped at `limit / (LEASE_SHARE × node_count)`; 0 (no
    /// lease) when the cap is under two requests' cost. Four requests' cost at first; then
    /// double the last when it ran low within half its time (demand is growing), else twice
    /// what was spent of it (demand as it is).
    fn lease_size(&self, l: &Limit, previous: Option<&Lease>, now: std::time::Instant) -> u64 {
        let cap = l.limit / (LEASE_SHARE * u64::from(self.inner.node_count));
        let cost = l.cost.max(1);
        if cap < cost.saturating_mul(2) {
            return 0;
        }
        let size = match previous {
            None => cost.saturating_mul(4),
            Some(p) if now.saturating_duration_since(p.granted) < LEASE_TTL / 2 => {
                p.size.saturating_mul(2)
            }
            Some(p) => p.spent.saturating_mul(2),
        };
        size.clamp(cost.saturating_mul(2), cap)
    }

    /// The check script, taking `sizes` as leases when given (see [`Leased::Ask`]); falls back
    /// to the node's own count when Redis fails or is slow.
    async fn check_redis(&self, tenant: Uuid, limits: &[Limit], sizes: Option<&[u64]>) -> Decision {
        let Some((_, keys)) = &self.inner.redis else {
            return self.check_local(limits, 1);
        };
        // If this future is dropped before the reply (a shutdown cuts the request), the
        // grant call still ends: its limits' waiters are released.
        let mut unsettled = Unsettled {
            limiter: self,
            limits,
            sizes,
        };
        let refill = limits.iter().all(|l| l.cost == 0);
        let shared = async {
            let mut conn = self.connection().await?;
            let mut invocation = self.inner.check.prepare_invoke();
            for (i, l) in limits.iter().enumerate() {
                invocation
                    .key(keys.rate(tenant, l.level.as_str(), l.id, l.metric.short()))
                    .arg(l.limit)
                    .arg(l.cost)
                    .arg(sizes.and_then(|s| s.get(i)).copied().unwrap_or(0));
            }
            self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(
                "switchyard_rate_limit_round_trips_total",
                "operation" => if refill { "refill" } else { "check" },
            )
            .increment(1);
            invocation
                .invoke_async::<Vec<i64>>(&mut conn)
                .await
                .map_err(|e| {
                    // A broken connection is replaced on the next call.
                    self.drop_connection();
                    e.to_string()
                })
        };
        let reply = tokio::time::timeout(self.inner.redis_wait, shared).await;
        let parsed = match &reply {
            Ok(Ok(reply)) => parse_reply(reply, limits),
            _ => None,
        };
        unsettled.sizes = None;
        let decision = self.settle_grants(limits, sizes, parsed);
        if let Some((decision, _)) = decision {
            if self.inner.outage.swap(false, Ordering::AcqRel) {
                tracing::info!("rate-limit counters reachable again; counting in Redis");
            }
            if !refill {
                Path::Redis.count();
            }
            return decision;
        }
        match reply {
            Ok(Ok(_)) => self.outage_started("unexpected reply from the rate-limit script"),
            Ok(Err(e)) => self.outage_started(&e),
            Err(_) => self.outage_started("timed out"),
        }
        metrics::counter!("switchyard_rate_limit_fallback_total").increment(1);
        Path::Local.count();
        self.check_local(limits, self.inner.node_count)
    }

    /// Ends the grant call for `limits` with `sizes`: adds what Redis leased (`parsed`, if it
    /// answered) to the leases, clears their in-flight marks and wakes the waiters. The
    /// decision's standings count the node's unspent lease as remaining.
    fn settle_grants(
        &self,
        limits: &[Limit],
        sizes: Option<&[u64]>,
        parsed: Option<(Decision, Vec<u64>)>,
    ) -> Option<(Decision, Vec<u64>)> {
        let Some(sizes) = sizes else {
            return parsed;
        };
        let now = std::time::Instant::now();
        let mut parsed = parsed;
        {
            let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            for (i, l) in limits.iter().enumerate() {
                if sizes.get(i).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let Some(lease) = leases.get_mut(&(l.level, l.id, l.metric)) else {
                    continue;
                };
                lease.refilling = false;
                let Some((decision, granted)) = parsed.as_mut() else {
                    continue;
                };
                let (Some(standing), Some(&grant)) =
                    (decision.standings.get_mut(i), granted.get(i))
                else {
                    continue;
                };
                if decision.admitted {
                    lease.size = sizes[i];
                    if grant > 0 {
                        if !lease.live(now) && lease.left > 0 {
                            let left = std::mem::take(&mut lease.left);
                            self.send_correction(
                                lease.tenant,
                                l.level,
                                l.id,
                                l.metric,
                                lease.second,
                                neg(left),
                            );
                        }
                        lease.left += grant;
                        lease.spent = 0;
                        lease.second = standing.second;
                        lease.granted = now;
                        lease.standing = *standing;
                    }
                }
                standing.remaining = standing.remaining.saturating_add(lease.left);
            }
        }
        self.inner.granted.notify_waiters();
        parsed
    }

    /// Queues `delta` for the `second` bucket of one limit's Redis hash (best-effort, batched).
    fn send_correction(
        &self,
        tenant: Uuid,
        level: Level,
        id: Uuid,
        metric: Metric,
        second: u64,
        delta: i64,
    ) {
        let (Some(tx), Some((_, keys))) = (&self.inner.corrections, &self.inner.redis) else {
            return;
        };
        if delta == 0 {
            return;
        }
        let correction = Correction {
            tenant,
            key: keys.rate(tenant, level.as_str(), id, metric.short()),
            second,
            delta,
        };
        if tx.try_send(correction).is_err() {
            metrics::counter!("switchyard_rate_limit_corrections_dropped_total").increment(1);
        }
    }

    /// How many times this limiter has called the check script (requests and lease refills).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// The node's rate-limit connection, shared by every check (see
    /// [`crate::store::SharedConnection`]).
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        match &self.inner.connection {
            Some(shared) => shared.get().await,
            None => Err("no Redis".to_owned()),
        }
    }

    /// Forgets a broken connection; the next check takes a new one.
    fn drop_connection(&self) {
        if let Some(shared) = &self.inner.connection {
            shared.reset();
        }
    }

    fn outage_started(&self, error: &str) {
        if !self.inner.outage.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error = %error,
                node_count = self.inner.node_count,
                "rate-limit counters unavailable; each node counts alone against limit / SWITCHYARD_NODE_COUNT"
            );
        }
    }

    /// The in-memory check, against `limit / divisor` (at least 1) for each limit.
    fn check_local(&self, limits: &[Limit], divisor: u32) -> Decision {
        let (now, now_ms) = now();
        let share = |limit: u64| (limit / u64::from(divisor)).max(1);
        let mut windows = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut admitted = true;
        for l in limits {
            let window = windows.entry((l.level, l.id, l.metric)).or_default();
            window.evict(now);
            if window.total.saturating_add(l.cost) > share(l.limit) {
                admitted = false;
            }
        }
        let standings = limits
            .iter()
            .map(|l| {
                let window = windows.entry((l.level, l.id, l.metric)).or_default();
                let limit = share(l.limit);
                let retry_ms = window.retry_ms(limit, l.cost, now_ms);
                if admitted && l.cost > 0 {
                    window.add(now, l.cost);
                }
                Standing {
                    limit,
                    remaining: limit.saturating_sub(window.total),
                    reset_ms: window.reset_ms(now_ms),
                    retry_ms,
                    second: now,
                }
            })
            .collect();
        // Idle windows would otherwise stay forever; a few hundred entries cost nothing to scan
        // now and then.
        if windows.len() > 1024 {
            windows.retain(|_, w| {
                w.evict(now);
                w.total > 0
            });
        }
        Decision {
            admitted,
            standings,
            local: true,
        }
    }

    /// Adds `delta` tokens (negative: gives them back) to each target's TPM bucket of its
    /// second.
    fn correct(&self, tenant: Uuid, targets: &[(Level, Uuid, u64)], delta: i64, local: bool) {
        if delta == 0 {
            return;
        }
        if local || self.inner.redis.is_none() {
            let (now, _) = now();
            let mut windows = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
            for (level, id, second) in targets {
                if let Some(window) = windows.get_mut(&(*level, *id, Metric::Tokens)) {
                    window.evict(now);
                    window.adjust(*second, delta);
                }
            }
            return;
        }
        for (level, id, second) in targets {
            self.send_correction(tenant, *level, *id, Metric::Tokens, *second, delta);
        }
    }
}

/// A grant call in flight; on drop (before its reply was settled), ends it as a failed one:
/// clears its limits' in-flight marks and wakes the requests waiting on them.
struct Unsettled<'a> {
    limiter: &'a RateLimiter,
    limits: &'a [Limit],
    /// `None` once settled (or when the call asked for no lease).
    sizes: Option<&'a [u64]>,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.sizes.is_some() {
            let _ = self.limiter.settle_grants(self.limits, self.sizes, None);
        }
    }
}

/// `-n`, saturating.
fn neg(n: u64) -> i64 {
    i64::try_from(n).map_or(i64::MIN, |n| -n)
}

/// Every [`LEASE_TTL`], gives back what expired leases have left and forgets idle ones. Ends
/// with the limiter.
async fn return_expired_leases(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(LEASE_TTL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let limiter = RateLimiter { inner };
        let now = std::time::Instant::now();
        let mut returns = Vec::new();
        {
            let mut leases = limiter
                .inner
                .leases
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            leases.retain(|(level, id, metric), lease| {
                if lease.refilling || lease.live(now) {
                    return true;
                }
                if lease.left > 0 {
                    let left = std::mem::take(&mut lease.left);
                    returns.push((lease.tenant, *level, *id, *metric, lease.second, left));
                }
                // Keep the size a while, so a limit busy again soon starts where it was.
                now.saturating_duration_since(lease.granted) < LEASE_TTL * 10
            });
        }
        for (tenant, level, id, metric, second, left) in returns {
            limiter.send_correction(tenant, level, id, metric, second, neg(left));
        }
    }
}

/// Turns the script's reply into a [`Decision`] and what each limit leased; `None` when it is
/// not what the script returns.
fn parse_reply(reply: &[i64], limits: &[Limit]) -> Option<(Decision, Vec<u64>)> {
    let (&admitted, rest) = reply.split_first()?;
    let (&second, rest) = rest.split_first()?;
    if rest.len() != limits.len() * 4 {
        return None;
    }
    let second = u64::try_from(second).unwrap_or(0);
    let value = |v: i64| u64::try_from(v).unwrap_or(0);
    let standings = limits
        .iter()
        .zip(rest.chunks_exact(4))
        .map(|(l, v)| Standing {
            limit: l.limit,
            remaining: value(v[0]),
            reset_ms: value(v[1]),
            retry_ms: value(v[2]),
            second,
        })
        .collect();
    let leased = rest.chunks_exact(4).map(|v| value(v[3])).collect();
    Some((
        Decision {
            admitted: admitted == 1,
            standings,
            local: false,
        },
        leased,
    ))
}

/// The correction task: applies queued corrections in batches, one script call per tenant (a
/// tenant's keys share a hash tag; different tenants' may not share a Cluster slot). Ends when
/// every sender is gone.
async fn apply_corrections(pool: Pool, mut rx: mpsc::Receiver<Correction>) {
    let script = redis::Script::new(CORRECT_LUA);
    let mut batch = Vec::with_capacity(CORRECTION_BATCH);
    while rx.recv_many(&mut batch, CORRECTION_BATCH).await > 0 {
        // Linger briefly, so a busy node sends one call per tenant per interval instead of one
        // per request (corrections are off the request path; a few ms late is harmless).
        tokio::time::sleep(CORRECTION_LINGER).await;
        while batch.len() < CORRECTION_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        // Merge corrections of the same bucket; group by tenant.
        let mut by_tenant: HashMap<Uuid, BTreeMap<(String, u64), i64>> = HashMap::new();
        for c in batch.drain(..) {
            *by_tenant
                .entry(c.tenant)
                .or_default()
                .entry((c.key, c.second))
                .or_default() += c.delta;
        }
        for buckets in by_tenant.into_values() {
            let mut invocation = script.prepare_invoke();
            for ((key, second), delta) in &buckets {
                invocation.key(key).arg(*second).arg(*delta);
            }
            let call = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                invocation
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(REDIS_WAIT * 4, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "token corrections dropped");
                    metrics::counter!("switchyard_rate_limit_corrections_dropped_total")
                        .increment(buckets.len() as u64);
                }
                Err(_) => {
                    tracing::debug!("token corrections timed out; dropped");
                    metrics::counter!("switchyard_rate_limit_corrections_dropped_total")
                        .increment(buckets.len() as u64);
                }
            }
        }
    }
}

/// The TPM estimate a request took, for the meter to correct with the actual total.
#[derive(Debug)]
#[must_use = "a token take is corrected by the meter with the actual tokens"]
pub struct TokenTake {
    limiter: RateLimiter,
    tenant: Uuid,
    /// The levels whose TPM took the estimate, with the second each took it in.
    targets: Vec<(Level, Uuid, u64)>,
    estimate: u64,
    local: bool,
}

impl TokenTake {
    /// What `decision` took of `limits`' TPM, if anything.
    pub fn of(
        limiter: &RateLimiter,
        tenant: Uuid,
        limits: &[Limit],
        decision: &Decision,
    ) -> Option<Self> {
        if !decision.admitted {
            return None;
        }
        let mut estimate = 0;
        let targets: Vec<(Level, Uuid, u64)> = limits
            .iter()
            .zip(&decision.standings)
            .filter(|(l, _)| l.metric == Metric::Tokens && l.cost > 0)
            .map(|(l, s)| {
                estimate = l.cost;
                (l.level, l.id, s.second)
            })
            .collect();
        if targets.is_empty() {
            return None;
        }
        Some(Self {
            limiter: limiter.clone(),
            tenant,
            targets,
            estimate,
            local: decision.local,
        })
    }

    /// The estimate taken.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }

    /// Replaces the estimate with the request's `actual` total tokens (queued, off the
    /// response path; best-effort).
    pub fn settle(self, actual: u64) {
        let delta = i64::try_from(actual)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(self.estimate).unwrap_or(i64::MAX));
        self.limiter
            .correct(self.tenant, &self.targets, delta, self.local);
    }
}

/// One (level, id, metric)'s counts in memory: the same buckets as the Redis hash.
#[derive(Debug, Default)]
struct Window {
    total: u64,
    /// Second → count, for the seconds still in the window.
    buckets: BTreeMap<u64, u64>,
}

impl Window {
    fn evict(&mut self, now: u64) {
        let horizon = now.saturating_sub(WINDOW_SECS - 1);
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            self.total = self.total.saturating_sub(entry.remove());
        }
    }

    fn add(&mut self, second: u64, cost: u64) {
        *self.buckets.entry(second).or_default() += cost;
        self.total = self.total.saturating_add(cost);
    }

    fn adjust(&mut self, second: u64, delta: i64) {
        let Some(count) = self.buckets.get_mut(&second) else {
            return;
        };
        let before = *count;
        *count = before.saturating_add_signed(delta);
        if *count >= before {
            self.total = self.total.saturating_add(*count - before);
        } else {
            self.total = self.total.saturating_sub(before - *count);
        }
    }

    fn reset_ms(&self, now_ms: u64) -> u64 {
        match self.buckets.iter().rev().find(|(_, c)| **c > 0) {
            Some((s, _)) if self.total > 0 => ((s + WINDOW_SECS) * 1000).saturating_sub(now_ms),
            _ => 0,
        }
    }

    fn retry_ms(&self, limit: u64, cost: u64, now_ms: u64) -> u64 {
        if self.total.saturating_add(cost) <= limit {
            return 0;
        }
        if cost > limit {
            return WINDOW_SECS * 1000;
        }
        let need = self.total + cost - limit;
        let mut freed = 0;
        for (s, c) in &self.buckets {
            freed += c;
            if freed >= need {
                return ((s + WINDOW_SECS) * 1000).saturating_sub(now_ms);
            }
        }
        WINDOW_SECS * 1000
    }
}

/// The current Unix second and millisecond.
fn now() -> (u64, u64) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    (ms / 1000, ms)
}

/// A reset or retry delay in OpenAI's format (Go's duration format): `20ms`, `1s`, `59.5s`,
/// `6m0s`, `1h0m0s`; `0s` for nothing.
pub fn format_reset(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let seconds = seconds_text(ms % 60_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `ms` (under a minute) as seconds with up to three decimals, trailing zeros trimmed.
fn seconds_text(ms: u64) -> String {
    let whole = ms / 1000;
    let frac = ms % 1000;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn resets_read_like_openai_durations() {
        assert_eq!(format_reset(0), "0s");
        assert_eq!(format_reset(20), "20ms");
        assert_eq!(format_reset(1000), "1s");
        assert_eq!(format_reset(59_500), "59.5s");
        assert_eq!(format_reset(8_640), "8.64s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(86_400), "1m26.4s");
        assert_eq!(format_reset(3_600_000), "1h0m0s");
    }

    fn limit(metric: Metric, limit: u64, cost: u64) -> Limit {
        Limit {
            level: Level::Key,
            id: Uuid::new_v4(),
            metric,
            limit,
            cost,
        }
    }

    #[tokio::test]
    async fn memory_counts_stop_at_the_limit_all_or_nothing() {
        let limiter = RateLimiter::new(None, 1);
        let rpm = limit(Metric::Requests, 3, 1);
        let tpm = limit(Metric::Tokens, 100, 40);
        let tenant = Uuid::new_v4();
        let mut admitted = 0;
        for _ in 0..5 {
            if limiter.check(tenant, &[rpm, tpm]).await.admitted {
                admitted += 1;
            }
        }
        // 40 + 40 fit in 100, a third 40 does not: the third RPM unit is never taken either.
        assert_eq!(admitted, 2);
        let d = limiter.check(tenant, &[rpm]).await;
        assert!(d.admitted, "RPM still has its third unit");
        assert_eq!(d.standings[0].remaining, 0);
        let refused = limiter.check(tenant, &[rpm]).await;
        assert!(!refused.admitted);
        assert!(refused.standings[0].retry_ms > 0 && refused.standings[0].retry_ms <= 60_000);
    }

    #[tokio::test]
    async fn corrections_give_tokens_back() {
        let limiter = RateLimiter::new(None, 1);
        let tenant = Uuid::new_v4();
        let tpm = [limit(Metric::Tokens, 100, 90)];
        let d = limiter.check(tenant, &tpm).await;
        let take = TokenTake::of(&limiter, tenant, &tpm, &d).expect("took tokens");
        take.settle(10);
        let d = limiter.check(tenant, &[Limit { cost: 80, ..tpm[0] }]).await;
        assert!(d.admitted, "10 + 80 ≤ 100 after the correction");
        assert_eq!(d.standings[0].remaining, 10);
    }
}
