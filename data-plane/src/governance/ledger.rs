//! The budget ledger: how much of each budget window is spent and how much is held by
//! requests in flight, exact across any number of nodes.
//!
//! # Backends
//!
//! - **Memory** (zero-setup, one process): one `{spent, held}` pair per budget window under a
//!   mutex; every request reserves its worst case exactly and settles it. The control plane in
//!   the same process reads the very same ledger (one `Arc`).
//! - **Redis** (distributed): per budget window one hash ([`RedisKeys::budget`]: `spent`,
//!   `held`, and `l:<node>` = the lease each node holds) and one sorted set
//!   ([`RedisKeys::budget_leases`]: node → lease expiry in ms). One Lua script ([`SYNC_LUA`])
//!   does everything for all the budgets of one request (they share the organization's hash
//!   tag) atomically: reap expired leases, apply the node's reported consumption and returns,
//!   check `limit - spent - held >= need` for every budget asked for (all or nothing), grant.
//!
//! # Leases (Redis backend)
//!
//! A node does not ask Redis for every request. It takes a *slice* of a budget's remaining
//! money (`slice = max(need, avail / 16)` while `avail >= 32 × need`, the lease mode) and
//! reserves requests' worst cases from that slice locally (no round trip). Near the cap
//! (`avail < 32 × need`) a grant is exactly the request's need (exact mode), and what the
//! request does not use is returned at once when it settles. Consumption and returns are
//! reported by a background flusher (every [`LedgerOptions::flush_interval`], at once in exact
//! mode), which also refreshes the lease's expiry and hands back free lease money idle for
//! [`LedgerOptions::idle_return`]. A lease not refreshed for [`LedgerOptions::lease_ttl`] is
//! reaped by the next script call of any node (its money comes back), so a dead node's holds
//! expire. A node stops spending from a lease a margin before it could have been reaped.
//!
//! Every lease money unit is counted in `held` until it is reported as consumed (`spent`) or
//! returned, so `spent + held <= limit` holds at every instant for hard budgets, whatever the
//! number of nodes: the cap can only be passed by a request whose actual cost exceeds its
//! worst case estimate, or by a node that kept spending on a reaped lease (which it does not
//! do while its clock agrees with Redis' within the safety margin).
//!
//! # Redis unreachable
//!
//! A script call waits at most [`LedgerOptions::redis_wait`]. While Redis is unreachable the
//! node serves what its valid leases cover, then refuses ([`Refusal::Unavailable`], fail
//! closed). Unreported consumption is kept and reported when Redis is back. The outage is
//! logged once (warn at its start, info at recovery) and counted in
//! `switchyard_budget_ledger_errors_total`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use shared::config::RedisKeys;
use tokio::sync::Notify;
use uuid::Uuid;

/// One budget window: the ledger's unit of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub tenant_id: Uuid,
    pub budget_id: Uuid,
    /// The window's start as Unix seconds (`PeriodWindow::id`).
    pub window_id: i64,
}

/// A budget a request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub window: WindowKey,
    /// The cap in µ$.
    pub limit_micros: i64,
    /// Hard budgets refuse; soft ones are only counted.
    pub hard: bool,
    /// When the window's Redis keys may go (Unix seconds; window end + 7 days), `None` to keep
    /// them (lifetime budgets).
    pub expire_at: Option<i64>,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The claim at this index has no room for the request.
    Exceeded(usize),
    /// Redis is unreachable and the node's leases do not cover the request.
    Unavailable,
}

/// Spent and held µ$ of one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub spent_micros: i64,
    pub held_micros: i64,
}

/// Tuning of the Redis backend.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// A lease not refreshed for this long is reaped by other nodes.
    pub lease_ttl: Duration,
    /// How often consumption is reported (and leases refreshed).
    pub flush_interval: Duration,
    /// Free lease money unused for this long is returned.
    pub idle_return: Duration,
    /// The longest a script call may take before Redis counts as unreachable.
    pub redis_wait: Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            flush_interval: Duration::from_millis(200),
            idle_return: Duration::from_secs(2),
            redis_wait: Duration::from_millis(250),
        }
    }
}

/// The ledger. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field(
                "backend",
                &match &self.inner.backend {
                    Backend::Memory(_) => "memory",
                    Backend::Redis(_) => "redis",
                },
            )
            .finish()
    }
}

struct Inner {
    backend: Backend,
}

enum Backend {
    Memory(Mutex<HashMap<WindowKey, Usage>>),
    Redis(Box<RedisLedger>),
}

/// Money held for one request against one budget window, until settled.
#[derive(Debug, Clone, Copy)]
struct HoldEntry {
    claim: Claim,
    /// µ$ held (0 for soft budgets).
    amount: i64,
    /// The lease generation it was taken from (Redis backend).
    generation: u64,
}

/// One request's reservation in the ledger. Settle it once with the actual cost; dropped
/// unsettled (a panic) it releases everything it holds.
#[must_use = "a hold must be settled, or it is released when dropped"]
#[derive(Debug)]
pub struct Hold {
    ledger: Ledger,
    entries: Vec<HoldEntry>,
    settled: bool,
}

impl Hold {
    /// µ$ held per hard budget.
    pub fn amount(&self) -> i64 {
        self.entries.iter().map(|e| e.amount).max().unwrap_or(0)
    }

    /// Records `actual_micros` as spent against every budget and releases the rest.
    pub fn settle(mut self, actual_micros: i64) {
        self.settled = true;
        self.ledger.settle(&self.entries, actual_micros.max(0));
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.release(&self.entries);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    /// The in-process ledger (zero-setup mode).
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(Inner {
                backend: Backend::Memory(Mutex::new(HashMap::new())),
            }),
        }
    }

    /// The Redis ledger of one node; spawns its flusher (needs a tokio runtime). The flusher
    /// stops when the last clone is dropped (without returning anything: that is a dead node).
    pub fn redis(pool: Pool, keys: RedisKeys, options: LedgerOptions) -> Self {
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            backend: Backend::Redis(Box::new(RedisLedger {
                pool,
                keys,
                node: Uuid::new_v4().to_string(),
                options,
                script: redis::Script::new(SYNC_LUA),
                read_script: redis::Script::new(READ_LUA),
                raise_script: redis::Script::new(RAISE_LUA),
                local: Mutex::new(HashMap::new()),
                wake: Arc::clone(&wake),
                down: AtomicBool::new(false),
                last_failure: Mutex::new(None),
                gates: Mutex::new(HashMap::new()),
            })),
        });
        tokio::spawn(flusher(Arc::downgrade(&inner), wake));
        Self { inner }
    }

    /// Reserves `amount_micros` against every claim at once (all or nothing). Hard claims
    /// need room for it; soft claims are only recorded for settling.
    pub async fn reserve(&self, claims: &[Claim], amount_micros: i64) -> Result<Hold, Refusal> {
        let amount = amount_micros.max(0);
        let entries = match &self.inner.backend {
            Backend::Memory(windows) => {
                let mut windows = lock(windows);
                for (i, c) in claims.iter().enumerate() {
                    let u = windows.get(&c.window).copied().unwrap_or_default();
                    if c.hard && c.limit_micros - u.spent_micros - u.held_micros < amount {
                        refused("exceeded");
                        return Err(Refusal::Exceeded(i));
                    }
                }
                claims
                    .iter()
                    .map(|c| {
                        let held = if c.hard { amount } else { 0 };
                        windows.entry(c.window).or_default().held_micros += held;
                        HoldEntry {
                            claim: *c,
                            amount: held,
                            generation: 0,
                        }
                    })
                    .collect()
            }
            Backend::Redis(r) => r.reserve(claims, amount).await?,
        };
        Ok(Hold {
            ledger: self.clone(),
            entries,
            settled: false,
        })
    }

    fn settle(&self, entries: &[HoldEntry], actual: i64) {
        match &self.inner.backend {
            Backend::Memory(windows) => {
                let mut windows = lock(windows);
                for e in entries {
                    let u = windows.entry(e.claim.window).or_default();
                    u.held_micros -= e.amount;
                    u.spent_micros += actual;
                }
            }
            Backend::Redis(r) => r.settle(entries, actual),
        }
    }

    fn release(&self, entries: &[HoldEntry]) {
        self.settle(entries, 0);
    }

    /// Spent and held µ$ of one window as every node sees it (expired leases reaped first).
    pub async fn window_usage(&self, window: WindowKey) -> Result<Usage, String> {
        match &self.inner.backend {
            Backend::Memory(windows) => Ok(lock(windows).get(&window).copied().unwrap_or_default()),
            Backend::Redis(r) => r.read(window).await,
        }
    }

    /// Raises a window's spend so that spend + held covers `floor_micros` (what the database
    /// recorded); never lowers it. Held money is subtracted because a node's consumption not
    /// reported yet is still inside its lease (`held`): raising to the full floor would count
    /// it twice once reported. What is lost for good — a dead node's unreported consumption
    /// after its lease was reaped, a Redis or in-memory ledger that lost the window — shows up
    /// as recorded spend beyond spend + held, and is put back.
    pub async fn raise_spent(&self, window: WindowKey, floor_micros: i64) -> Result<(), String> {
        match &self.inner.backend {
            Backend::Memory(windows) => {
                let mut windows = lock(windows);
                let u = windows.entry(window).or_default();
                u.spent_micros = u.spent_micros.max(floor_micros - u.held_micros);
                Ok(())
            }
            Backend::Redis(r) => r.raise(window, floor_micros).await,
        }
    }

    /// Reports every unreported consumption and returns every free lease (the shutdown drain:
    /// call after the request tasks finished). Returns whether everything was reported.
    pub async fn shutdown(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.flush(true).await,
        }
    }

    /// Runs one flush now (reports, refreshes, idle returns), as the background flusher does.
    pub async fn flush(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.flush(false).await,
        }
    }

    /// This node's free lease money for `window` (tests and diagnostics); 0 in memory mode.
    pub fn local_free(&self, window: WindowKey) -> i64 {
        match &self.inner.backend {
            Backend::Memory(_) => 0,
            Backend::Redis(r) => lock(&r.local).get(&window).map_or(0, |l| l.free),
        }
    }
}

fn refused(reason: &'static str) {
    metrics::counter!("switchyard_budget_refusals_total", "reason" => reason).increment(1);
}

/// Syncs one node's view of several budget windows of one organization (see the module docs).
///
/// `KEYS[2i-1]` window hash, `KEYS[2i]` lease zset of budget i. `ARGV[1]` node id, `ARGV[2]`
/// lease ttl (ms); then 6 values per budget: limit, consumed (from this node's lease),
/// returned (to the pool), spent only (consumption not backed by a lease: soft budgets, stale
/// leases, overruns), need (grant wanted, 0 for none), expire at (Unix s, 0 = keep).
///
/// Reaping an expired lease leaves a marker (`r:<node>`) that the node's next call consumes:
/// that is how a node learns, exactly once, that its lease is gone (a lease that merely went
/// to 0 through reports leaves none).
///
/// Returns `{refused, granted_1, reaped_1, granted_2, reaped_2, …}`: `refused` is the index of
/// the first budget without room for its need (0: granted all); `reaped_i` is 1 when this
/// node's lease had been reaped (its consumption then only adds to `spent`).
pub const SYNC_LUA: &str = r"
local function int(x) return string.format('%d', x) end
local n = #KEYS / 2
local member = ARGV[1]
local field = 'l:' .. member
local marker = 'r:' .. member
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
local avail = {}
local out = {0}
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local b = 2 + (i-1)*6
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, m in ipairs(dead) do
    local f = 'l:' .. m
    local amt = tonumber(redis.call('HGET', h, f) or '0')
    if amt ~= 0 then redis.call('HINCRBY', h, 'held', int(-amt)) end
    redis.call('HDEL', h, f)
    redis.call('HSET', h, 'r:' .. m, 1)
    redis.call('ZREM', z, m)
  end
  local limit = tonumber(ARGV[b+1])
  local consumed = tonumber(ARGV[b+2])
  local returned = tonumber(ARGV[b+3])
  local spent_only = tonumber(ARGV[b+4])
  local need = tonumber(ARGV[b+5])
  local reaped = 0
  if redis.call('HDEL', h, marker) == 1 then reaped = 1 end
  local lease = redis.call('HGET', h, field)
  if lease then
    lease = tonumber(lease)
    local dec = math.min(lease, consumed + returned)
    if dec > 0 then
      redis.call('HINCRBY', h, 'held', int(-dec))
      lease = lease - dec
      if lease > 0 then
        redis.call('HSET', h, field, int(lease))
      else
        redis.call('HDEL', h, field)
        redis.call('ZREM', z, member)
      end
    end
  end
  if consumed + spent_only > 0 then
    redis.call('HINCRBY', h, 'spent', int(consumed + spent_only))
  end
  local spent = tonumber(redis.call('HGET', h, 'spent') or '0')
  local held = tonumber(redis.call('HGET', h, 'held') or '0')
  avail[i] = limit - spent - held
  if need > 0 and avail[i] < need and out[1] == 0 then out[1] = i end
  out[2*i] = 0
  out[2*i+1] = reaped
end
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local b = 2 + (i-1)*6
  local need = tonumber(ARGV[b+5])
  if out[1] == 0 and need > 0 then
    local slice = need
    if avail[i] >= 32 * need then slice = math.max(need, math.floor(avail[i] / 16)) end
    redis.call('HINCRBY', h, 'held', int(slice))
    redis.call('HINCRBY', h, field, int(slice))
    out[2*i] = slice
  end
  if redis.call('HEXISTS', h, field) == 1 then redis.call('ZADD', z, expiry, member) end
  local at = tonumber(ARGV[b+6])
  if at > 0 then
    redis.call('EXPIREAT', h, at)
    redis.call('EXPIREAT', z, at)
  end
end
return out
";

/// Reaps expired leases of one window and returns `{spent, held}`.
const READ_LUA: &str = r"
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, m in ipairs(dead) do
  local f = 'l:' .. m
  local amt = tonumber(redis.call('HGET', KEYS[1], f) or '0')
  if amt ~= 0 then redis.call('HINCRBY', KEYS[1], 'held', int(-amt)) end
  redis.call('HDEL', KEYS[1], f)
  redis.call('HSET', KEYS[1], 'r:' .. m, 1)
  redis.call('ZREM', KEYS[2], m)
end
return {tonumber(redis.call('HGET', KEYS[1], 'spent') or '0'), tonumber(redis.call('HGET', KEYS[1], 'held') or '0')}
";

/// Raises `spent` to at least `ARGV[1] - held` (see [`Ledger::raise_spent`]); a new key of a
/// periodic window (`ARGV[2]` = 1) gets a 40-day expiry (the longest period plus the 7 days
/// kept after it).
const RAISE_LUA: &str = r"
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
local floor = tonumber(ARGV[1]) - held
if floor > spent then
  redis.call('HINCRBY', KEYS[1], 'spent', string.format('%d', floor - spent))
  if ARGV[2] == '1' and redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], 3456000)
  end
end
return 1
";

struct RedisLedger {
    pool: Pool,
    keys: RedisKeys,
    /// A random id per process: the lease holder's name in every window.
    node: String,
    options: LedgerOptions,
    script: redis::Script,
    read_script: redis::Script,
    raise_script: redis::Script,
    local: Mutex<HashMap<WindowKey, Local>>,
    /// Wakes the flusher (exact-mode settles report at once).
    wake: Arc<Notify>,
    /// Whether the last script call failed (for once-per-outage logging).
    down: AtomicBool,
    /// When a call last failed: while recent, reservations needing Redis fail fast.
    last_failure: Mutex<Option<Instant>>,
    /// One top-up at a time per organization (see [`RedisLedger::reserve`]).
    gates: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// This node's state of one window.
#[derive(Debug, Clone)]
struct Local {
    claim: Claim,
    /// Lease money not reserved by any request.
    free: i64,
    /// Reserved by requests in flight (current generation).
    inflight: i64,
    /// Consumed from the lease, not reported yet.
    consumed: i64,
    /// To give back to the pool, not reported yet.
    returned: i64,
    /// Consumption not backed by the lease (soft budget, stale lease, overrun), unreported.
    spent_only: i64,
    /// Bumped when Redis reaped this node's lease: holds of older generations settle as
    /// `spent_only`.
    generation: u64,
    /// Spending from the lease is allowed until then (a margin before it could be reaped).
    valid_until: Option<Instant>,
    last_used: Instant,
    last_sync: Instant,
    /// The last grant was exact (the cap is near): return the unused part at once.
    exact: bool,
    /// The cap the lease was granted under: a lease granted under another (say, a just
    /// lowered) cap is not spent locally but given back and checked anew.
    lease_limit: i64,
}

impl Local {
    fn new(claim: Claim, now: Instant) -> Self {
        Self {
            claim,
            free: 0,
            inflight: 0,
            consumed: 0,
            returned: 0,
            spent_only: 0,
            generation: 0,
            valid_until: None,
            last_used: now,
            last_sync: now,
            exact: false,
            lease_limit: claim.limit_micros,
        }
    }

    /// What this node holds in Redis' `l:<node>` field, by its own account.
    fn holding(&self) -> i64 {
        self.free + self.inflight + self.consumed + self.returned
    }

    fn valid(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|v| now < v)
    }

    /// Takes the unreported amounts for a script call.
    fn take_report(&mut self, return_free: bool, need: i64) -> Report {
        let mut returned = std::mem::take(&mut self.returned);
        if return_free {
            returned += std::mem::take(&mut self.free);
        }
        Report {
            window: self.claim.window,
            limit: self.claim.limit_micros,
            expire_at: self.claim.expire_at.unwrap_or(0),
            consumed: std::mem::take(&mut self.consumed),
            returned,
            spent_only: std::mem::take(&mut self.spent_only),
            need,
            generation: self.generation,
        }
    }

    /// A failed call: the amounts are still owed to Redis (a returned free slice stays
    /// returned: it is given back with the next report).
    fn restore(&mut self, r: &Report) {
        if r.generation == self.generation {
            self.consumed += r.consumed;
            self.returned += r.returned;
        } else {
            self.spent_only += r.consumed;
        }
        self.spent_only += r.spent_only;
    }

    /// Applies a script's answer about this window.
    fn apply(&mut self, r: &Report, reaped: bool, started: Instant, ttl: Duration) {
        if reaped && r.generation == self.generation {
            // Redis no longer counts our lease: what we hold locally is gone, and consumption
            // of the old lease still in flight is reported as spent only.
            self.generation += 1;
            self.free = 0;
            self.inflight = 0;
            self.spent_only += std::mem::take(&mut self.consumed);
            self.returned = 0;
            self.valid_until = None;
        }
        self.last_sync = started;
        if self.holding() > 0 || r.need > 0 {
            self.valid_until = Some(started + ttl - safety_margin(ttl));
        }
    }
}

/// How long before a lease's expiry in Redis the node stops spending from it (clock drift,
/// the call's own latency).
fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 5).min(Duration::from_secs(5))
}

/// One window's part of a script call.
#[derive(Debug, Clone, Copy)]
struct Report {
    window: WindowKey,
    limit: i64,
    expire_at: i64,
    consumed: i64,
    returned: i64,
    spent_only: i64,
    need: i64,
    generation: u64,
}

/// How long reservations fail fast (no script call) after a failed call.
const FAIL_FAST: Duration = Duration::from_millis(500);

impl RedisLedger {
    fn lock_local(&self) -> MutexGuard<'_, HashMap<WindowKey, Local>> {
        lock(&self.local)
    }

    /// Reserves from the local leases when they cover every hard claim; otherwise tops up
    /// through Redis, one top-up at a time per organization on this node: requests that found
    /// the lease short while a top-up is on its way wait for it and reserve from what it
    /// brought. Without that, a burst would have every request take its own slice, pull the
    /// whole budget onto one node and get requests refused elsewhere while it sits idle.
    async fn reserve(&self, claims: &[Claim], amount: i64) -> Result<Vec<HoldEntry>, Refusal> {
        if let Some(entries) = self.reserve_locally(claims, amount) {
            return Ok(entries);
        }
        let gate = {
            let tenant = claims
                .first()
                .map(|c| c.window.tenant_id)
                .unwrap_or_default();
            let mut gates = lock(&self.gates);
            Arc::clone(gates.entry(tenant).or_default())
        };
        let _turn = gate.lock().await;
        self.top_up(claims, amount).await
    }

    /// All-or-nothing reservation from the local leases, without a round trip.
    fn reserve_locally(&self, claims: &[Claim], amount: i64) -> Option<Vec<HoldEntry>> {
        let now = Instant::now();
        let mut local = self.lock_local();
        let covered = claims.iter().all(|c| {
            !c.hard
                || amount == 0
                || local.get(&c.window).is_some_and(|l| {
                    l.valid(now) && l.free >= amount && l.lease_limit == c.limit_micros
                })
        });
        if !covered {
            return None;
        }
        let mut entries = Vec::with_capacity(claims.len());
        for c in claims {
            let l = local.entry(c.window).or_insert_with(|| Local::new(*c, now));
            l.claim = *c;
            l.last_used = now;
            let held = if c.hard { amount } else { 0 };
            l.free -= held;
            l.inflight += held;
            entries.push(HoldEntry {
                claim: *c,
                amount: held,
                generation: l.generation,
            });
        }
        Some(entries)
    }

    async fn top_up(&self, claims: &[Claim], amount: i64) -> Result<Vec<HoldEntry>, Refusal> {
        let now = Instant::now();
        let mut entries = Vec::with_capacity(claims.len());
        // (index into claims, report) of the windows the local lease does not cover.
        let mut lacking: Vec<(usize, Report)> = Vec::new();
        {
            let mut local = self.lock_local();
            for (i, c) in claims.iter().enumerate() {
                let l = local.entry(c.window).or_insert_with(|| Local::new(*c, now));
                l.claim = *c;
                l.last_used = now;
                if !c.hard {
                    entries.push(HoldEntry {
                        claim: *c,
                        amount: 0,
                        generation: l.generation,
                    });
                } else if amount == 0
                    || (l.valid(now) && l.free >= amount && l.lease_limit == c.limit_micros)
                {
                    l.free -= amount;
                    l.inflight += amount;
                    entries.push(HoldEntry {
                        claim: *c,
                        amount,
                        generation: l.generation,
                    });
                } else {
                    // The lease's free money goes back in the same call, and the whole need
                    // is asked for: near the cap, no money stays stranded on this node.
                    lacking.push((i, l.take_report(true, amount)));
                }
            }
        }
        if lacking.is_empty() {
            return Ok(entries);
        }
        let fail_fast = lock(&self.last_failure).is_some_and(|t| t.elapsed() < FAIL_FAST);
        let started = Instant::now();
        // Should this future be dropped while waiting, the taken reports and holds go back.
        let mut pending = Pending {
            ledger: self,
            lacking: &lacking,
            entries: &entries,
            armed: true,
        };
        let answer = if fail_fast {
            Err("recent failure".to_owned())
        } else {
            let reports: Vec<Report> = lacking.iter().map(|(_, r)| *r).collect();
            metrics::counter!("switchyard_budget_ledger_round_trips_total", "op" => "reserve")
                .increment(1);
            self.call(&reports).await
        };
        pending.armed = false;
        drop(pending);
        let mut local = self.lock_local();
        match answer {
            Err(e) => {
                if !fail_fast {
                    self.failed(&e);
                }
                for (_, r) in &lacking {
                    if let Some(l) = local.get_mut(&r.window) {
                        l.restore(r);
                    }
                }
                release_locked(&mut local, &entries);
                refused("unavailable");
                Err(Refusal::Unavailable)
            }
            Ok(answer) => {
                self.recovered();
                for (k, (_, r)) in lacking.iter().enumerate() {
                    if let Some(l) = local.get_mut(&r.window) {
                        l.apply(r, answer.reaped(k), started, self.options.lease_ttl);
                    }
                }
                if answer.refused > 0 {
                    release_locked(&mut local, &entries);
                    refused("exceeded");
                    let index = lacking.get(answer.refused - 1).map_or(0, |(i, _)| *i);
                    return Err(Refusal::Exceeded(index));
                }
                for (k, (i, r)) in lacking.iter().enumerate() {
                    let granted = answer.granted(k);
                    let l = local
                        .entry(r.window)
                        .or_insert_with(|| Local::new(claims[*i], now));
                    l.free += granted - amount;
                    l.inflight += amount;
                    l.exact = granted <= amount;
                    l.lease_limit = claims[*i].limit_micros;
                    entries.push(HoldEntry {
                        claim: claims[*i],
                        amount,
                        generation: l.generation,
                    });
                }
                Ok(entries)
            }
        }
    }

    fn settle(&self, entries: &[HoldEntry], actual: i64) {
        let now = Instant::now();
        let mut wake = false;
        {
            let mut local = self.lock_local();
            for e in entries {
                let l = local
                    .entry(e.claim.window)
                    .or_insert_with(|| Local::new(e.claim, now));
                if !e.claim.hard || e.amount == 0 || e.generation != l.generation {
                    // Not backed by the lease (a soft budget, or a lease Redis reaped).
                    l.spent_only += actual;
                } else {
                    l.inflight -= e.amount;
                    let used = actual.min(e.amount);
                    l.consumed += used;
                    let mut over = actual - used;
                    if over > 0 {
                        // An overrun of the worst case: from the free lease while it lasts.
                        let t = over.min(l.free);
                        l.free -= t;
                        l.consumed += t;
                        over -= t;
                        l.spent_only += over;
                    }
                    let unused = e.amount - used;
                    if l.exact {
                        l.returned += unused;
                        wake = true;
                    } else {
                        l.free += unused;
                    }
                }
            }
        }
        if wake {
            self.wake.notify_one();
        }
    }

    /// One flush: per organization one script call with every window that has something to
    /// report, a lease to refresh, or free money to return.
    async fn flush(&self, all: bool) -> bool {
        let now = Instant::now();
        let ttl = self.options.lease_ttl;
        let mut batches: HashMap<Uuid, Vec<Report>> = HashMap::new();
        {
            let mut local = self.lock_local();
            local.retain(|_, l| {
                l.holding() > 0 || l.spent_only > 0 || now.duration_since(l.last_used) < ttl
            });
            for l in local.values_mut() {
                let return_free = all
                    || l.exact
                    || (l.free > 0 && now.duration_since(l.last_used) >= self.options.idle_return)
                    || !l.valid(now);
                let refresh = l.holding() > 0 && now.duration_since(l.last_sync) >= ttl / 3;
                let has_report = l.consumed > 0
                    || l.returned > 0
                    || l.spent_only > 0
                    || (return_free && l.free > 0);
                if has_report || refresh {
                    let report = l.take_report(return_free, 0);
                    batches
                        .entry(report.window.tenant_id)
                        .or_default()
                        .push(report);
                }
            }
        }
        let mut ok = true;
        for reports in batches.into_values() {
            let started = Instant::now();
            metrics::counter!("switchyard_budget_ledger_round_trips_total", "op" => "flush")
                .increment(1);
            let answer = self.call(&reports).await;
            let mut local = self.lock_local();
            match answer {
                Ok(answer) => {
                    self.recovered();
                    for (k, r) in reports.iter().enumerate() {
                        if let Some(l) = local.get_mut(&r.window) {
                            l.apply(r, answer.reaped(k), started, ttl);
                        }
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    ok = false;
                    for r in &reports {
                        let l = local
                            .entry(r.window)
                            .or_insert_with(|| Local::new(claim_of(r), now));
                        l.restore(r);
                    }
                }
            }
        }
        ok
    }

    /// Runs [`SYNC_LUA`] for `reports` (one organization), bounded by `redis_wait`.
    async fn call(&self, reports: &[Report]) -> Result<Answer, String> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(&self.node)
            .arg(self.options.lease_ttl.as_millis() as u64);
        for r in reports {
            let w = r.window;
            invocation
                .key(self.keys.budget(w.tenant_id, w.budget_id, w.window_id))
                .key(
                    self.keys
                        .budget_leases(w.tenant_id, w.budget_id, w.window_id),
                )
                .arg(r.limit)
                .arg(r.consumed)
                .arg(r.returned)
                .arg(r.spent_only)
                .arg(r.need)
                .arg(r.expire_at);
        }
        // Waiting for a pooled connection is bounded by the pool itself (a busy pool is not an
        // outage); the script call by `redis_wait`.
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let values = tokio::time::timeout(
            self.options.redis_wait,
            invocation.invoke_async::<Vec<i64>>(&mut conn),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let refused = values.first().copied().unwrap_or(0);
        if values.len() != 1 + 2 * reports.len() {
            return Err(format!(
                "unexpected script answer of {} values",
                values.len()
            ));
        }
        Ok(Answer {
            refused: usize::try_from(refused).unwrap_or(0),
            values,
        })
    }

    async fn read(&self, w: WindowKey) -> Result<Usage, String> {
        let run = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            self.read_script
                .key(self.keys.budget(w.tenant_id, w.budget_id, w.window_id))
                .key(
                    self.keys
                        .budget_leases(w.tenant_id, w.budget_id, w.window_id),
                )
                .invoke_async::<(i64, i64)>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        let (spent, held) = tokio::time::timeout(Duration::from_secs(2), run)
            .await
            .map_err(|_| "timed out".to_owned())??;
        Ok(Usage {
            spent_micros: spent,
            held_micros: held,
        })
    }

    async fn raise(&self, w: WindowKey, floor: i64) -> Result<(), String> {
        let run = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            self.raise_script
                .key(self.keys.budget(w.tenant_id, w.budget_id, w.window_id))
                .arg(floor)
                .arg(if w.window_id == 0 { "0" } else { "1" })
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(2), run)
            .await
            .map_err(|_| "timed out".to_owned())??;
        Ok(())
    }

    fn failed(&self, error: &str) {
        *lock(&self.last_failure) = Some(Instant::now());
        metrics::counter!("switchyard_budget_ledger_errors_total").increment(1);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error,
                "budget ledger (Redis) unreachable: serving from held leases only, then refusing"
            );
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            *lock(&self.last_failure) = None;
            tracing::info!("budget ledger (Redis) reachable again");
        }
    }
}

fn claim_of(r: &Report) -> Claim {
    Claim {
        window: r.window,
        limit_micros: r.limit,
        hard: true,
        expire_at: (r.expire_at > 0).then_some(r.expire_at),
    }
}

/// A reservation's script call in flight: if its future is dropped before the answer, the
/// reports it took are owed to Redis again and its local holds are released. (Should Redis
/// have run the script already, the reports count twice and the grant stays held until the
/// lease expires: both err on the side of the cap.)
struct Pending<'a> {
    ledger: &'a RedisLedger,
    lacking: &'a [(usize, Report)],
    entries: &'a [HoldEntry],
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut local = self.ledger.lock_local();
            for (_, r) in self.lacking {
                if let Some(l) = local.get_mut(&r.window) {
                    l.restore(r);
                }
            }
            release_locked(&mut local, self.entries);
        }
    }
}

/// Gives back holds taken in a reservation that is refused after all.
fn release_locked(local: &mut HashMap<WindowKey, Local>, entries: &[HoldEntry]) {
    for e in entries {
        if let Some(l) = local.get_mut(&e.claim.window)
            && e.generation == l.generation
            && e.amount > 0
        {
            l.inflight -= e.amount;
            l.free += e.amount;
        }
    }
}

/// A parsed [`SYNC_LUA`] answer.
struct Answer {
    /// 1-based index of the first budget without room (0: none).
    refused: usize,
    values: Vec<i64>,
}

impl Answer {
    fn granted(&self, k: usize) -> i64 {
        self.values.get(1 + 2 * k).copied().unwrap_or(0)
    }

    fn reaped(&self, k: usize) -> bool {
        self.values.get(2 + 2 * k).copied().unwrap_or(0) == 1
    }
}

/// Reports every [`LedgerOptions::flush_interval`], or at once when woken; stops when the
/// ledger is gone.
async fn flusher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let interval = match inner.upgrade().map(|i| match &i.backend {
        Backend::Redis(r) => r.options.flush_interval,
        Backend::Memory(_) => Duration::ZERO,
    }) {
        Some(d) if !d.is_zero() => d,
        _ => return,
    };
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Backend::Redis(r) = &inner.backend {
            r.flush(false).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn claim(limit: i64, hard: bool) -> Claim {
        Claim {
            window: WindowKey {
                tenant_id: Uuid::new_v4(),
                budget_id: Uuid::new_v4(),
                window_id: 0,
            },
            limit_micros: limit,
            hard,
            expire_at: None,
        }
    }

    #[tokio::test]
    async fn memory_reserves_exactly_and_settles() {
        let ledger = Ledger::memory();
        let hard = claim(100, true);
        let soft = claim(10, false);
        let a = ledger.reserve(&[hard, soft], 60).await.unwrap();
        assert_eq!(
            ledger.reserve(&[hard, soft], 60).await.unwrap_err(),
            Refusal::Exceeded(0)
        );
        a.settle(30);
        let u = ledger.window_usage(hard.window).await.unwrap();
        assert_eq!((u.spent_micros, u.held_micros), (30, 0));
        // Soft budgets never refuse but count.
        let b = ledger.reserve(&[hard, soft], 70).await.unwrap();
        drop(b);
        let u = ledger.window_usage(hard.window).await.unwrap();
        assert_eq!(
            (u.spent_micros, u.held_micros),
            (30, 0),
            "dropped = released"
        );
        assert_eq!(
            ledger.window_usage(soft.window).await.unwrap().spent_micros,
            30
        );
        ledger.raise_spent(hard.window, 50).await.unwrap();
        ledger.raise_spent(hard.window, 10).await.unwrap();
        assert_eq!(
            ledger.window_usage(hard.window).await.unwrap().spent_micros,
            50
        );
    }
}
