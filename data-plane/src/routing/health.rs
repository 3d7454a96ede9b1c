//! [`Health`]: what this node has seen of each deployment lately, and its circuit breaker.
//!
//! Each node keeps its own record (no network round trip on the request path); nodes converge
//! because they see the same upstreams fail. Keyed by deployment id.
//!
//! # Per deployment
//!
//! - **EWMA latency and time to first token** (ms), per sample with weight
//!   [`HealthSettings::ewma_alpha`] (default 0.25: a sample's weight halves after about 2.4
//!   newer ones, so a slowdown shows within a handful of requests). The first sample is taken as
//!   is. Only successful attempts are sampled: a timeout's "latency" is the timeout.
//! - **Success rate over a sliding window**: [`HealthSettings::window`] (default 60 s) in 12
//!   buckets, so an outcome ages out within one bucket (5 s) of the window's end. Time-based
//!   rather than "last N outcomes" so that a deployment that stopped getting traffic forgets its
//!   old failures, and a busy one is judged on the last minute, not its last second. Successes
//!   and client errors count as successes; server errors, timeouts and connection failures as
//!   failures; 429s as failures of the rate (not of the breaker).
//! - **In flight**: attempts holding an [`AttemptGuard`].
//! - **Circuit breaker**: *closed* → *open* after [`HealthSettings::failure_threshold`]
//!   consecutive failures (default 5), or when the window holds at least
//!   [`HealthSettings::error_rate_min_requests`] outcomes (default 20) of which at least
//!   [`HealthSettings::error_rate_threshold`] (default 50 %) failed. After a cooldown (default
//!   30 s, doubling with each reopening without recovery, at most 5 min) it is *half-open*: the
//!   next [`Health::try_acquire`] takes the one probe slot (atomically: of two concurrent
//!   callers one gets it). The probe's success (or its first token) closes the breaker and
//!   clears the window; its failure opens it again. A probe dropped without a report frees the
//!   slot for the next caller.
//! - **429 cool-down**: a rate-limited answer makes the deployment unavailable for its
//!   `Retry-After` (or [`HealthSettings::rate_limit_cooldown`], default 1 s, when there is none;
//!   at most [`HealthSettings::max_rate_limit_cooldown`], 5 min), without counting as a breaker
//!   failure: the provider is up, only saturated.
//!
//! Which outcomes are failures: [`AttemptGuard::report_error`] applies
//! [`classify`](super::retry::classify): server errors, timeouts and connection failures count
//! against the breaker; client errors (a 400, a context window too small, a content filter) are
//! answers of a working deployment and count as successes; errors raised by this node before
//! anything reached the provider ([`GatewayError::ProviderBusy`]) count as neither.
//!
//! # Bounded
//!
//! An entry is created on the first [`Health::try_acquire`] for a deployment and touched by every
//! acquire and [`Health::snapshot`]. Entries untouched for [`HealthSettings::idle_ttl`] (15 min,
//! longer than the longest breaker cooldown) are dropped by [`Health::sweep`], and when the map
//! holds [`HealthSettings::max_entries`] a new deployment first sweeps, then evicts the least
//! recently seen. A deleted deployment therefore costs memory for at most `idle_ttl`.
//!
//! # Time and locks
//!
//! Time comes from a [`Clock`] ([`SystemClock`] in production, [`ManualClock`] in tests), so
//! tests move it instead of sleeping. The map is behind a `RwLock` taken for writing only to add
//! or drop entries; each entry's state is behind its own `Mutex` held for a few field updates,
//! never across an `.await`. In-flight counts and last-seen times are atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use shared::config::RetryClass;
use uuid::Uuid;

use super::retry;
use crate::error::GatewayError;

/// Buckets in the sliding window.
const BUCKETS: usize = 12;
/// The cooldown doubles at most this many times before [`HealthSettings::max_open_cooldown`]
/// caps it anyway; bounds the shift.
const MAX_COOLDOWN_DOUBLINGS: u32 = 16;

// === Clock ===

/// Where [`Health`] reads the time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests (this module's and the pipeline's).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset_nanos: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

// === Settings ===

/// Breaker thresholds, windows and bounds. [`Default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// Share of failures in the window (0–1) that opens a closed breaker…
    pub error_rate_threshold: f64,
    /// …once the window holds at least this many outcomes (rate-limited ones not counted).
    pub error_rate_min_requests: u32,
    /// The sliding window for the success rate and the error-rate trip.
    pub window: Duration,
    /// How long a breaker stays open before its half-open probe, the first time.
    pub open_cooldown: Duration,
    /// The cooldown doubles each time a probe fails, up to this.
    pub max_open_cooldown: Duration,
    /// Cool-down after a 429 that carries no `Retry-After`.
    pub rate_limit_cooldown: Duration,
    /// Longest cool-down a `Retry-After` can impose (a provider saying "come back tomorrow"
    /// is checked again after this).
    pub max_rate_limit_cooldown: Duration,
    /// Weight of a new sample in the latency and TTFT EWMAs, in (0, 1].
    pub ewma_alpha: f64,
    /// Entries not touched for this long are dropped by [`Health::sweep`].
    pub idle_ttl: Duration,
    /// Most deployments tracked at once.
    pub max_entries: usize,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            error_rate_threshold: 0.5,
            error_rate_min_requests: 20,
            window: Duration::from_secs(60),
            open_cooldown: Duration::from_secs(30),
            max_open_cooldown: Duration::from_secs(300),
            rate_limit_cooldown: Duration::from_secs(1),
            max_rate_limit_cooldown: Duration::from_secs(300),
            ewma_alpha: 0.25,
            idle_ttl: Duration::from_secs(900),
            max_entries: 10_000,
        }
    }
}

// === Stats ===

/// The breaker's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Refusing requests until the cooldown ends.
    Open,
    /// One probe request may go through (or is under way).
    HalfOpen,
}

impl BreakerState {
    /// A metric label (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A copy of one deployment's record at one instant, for strategies and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeploymentStats {
    /// EWMA of successful attempts' total latency; `None` before the first.
    pub ewma_latency_ms: Option<f64>,
    /// EWMA of time to first token (streams) ; `None` before the first.
    pub ewma_ttft_ms: Option<f64>,
    /// Successes over outcomes in the window; `None` when the window is empty.
    pub success_rate: Option<f64>,
    /// Successes in the window (client errors included).
    pub window_successes: u32,
    /// Outcomes in the window (successes, failures and rate-limited answers).
    pub window_requests: u32,
    /// Attempts holding an [`AttemptGuard`] now.
    pub in_flight: u32,
    pub state: BreakerState,
    /// While open: when the breaker goes half-open.
    pub open_until: Option<Instant>,
    /// While cooling down after a 429: until when.
    pub cooling_until: Option<Instant>,
    /// Whether [`Health::try_acquire`] would succeed now: closed, or half-open with the probe
    /// slot free, and not cooling down.
    pub available: bool,
}

impl DeploymentStats {
    /// A deployment this node knows nothing about: available, no numbers.
    pub const UNKNOWN: DeploymentStats = DeploymentStats {
        ewma_latency_ms: None,
        ewma_ttft_ms: None,
        success_rate: None,
        window_successes: 0,
        window_requests: 0,
        in_flight: 0,
        state: BreakerState::Closed,
        open_until: None,
        cooling_until: None,
        available: true,
    };

    /// When the deployment is next available (the later of breaker and cool-down), `None` if
    /// it is available or waits for a probe under way. For a `Retry-After` when every
    /// candidate is unavailable.
    pub fn available_at(&self) -> Option<Instant> {
        if self.available {
            return None;
        }
        match (self.open_until, self.cooling_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for DeploymentStats {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

// === Window ===

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tick: u64,
    ok: u32,
    failed: u32,
    throttled: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    ok: u32,
    failed: u32,
    throttled: u32,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Failed,
    Throttled,
}

/// A ring of [`BUCKETS`] buckets indexed by tick (time since the registry's epoch divided by
/// the bucket width): a bucket whose tick is not the current one is stale and reset on write,
/// and skipped on read when older than the window. Fixed size, no allocation.
#[derive(Debug, Clone, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
}

impl Window {
    fn record(&mut self, tick: u64, outcome: Outcome) {
        let b = &mut self.buckets[(tick % BUCKETS as u64) as usize];
        if b.tick != tick {
            *b = Bucket {
                tick,
                ..Bucket::default()
            };
        }
        let n = match outcome {
            Outcome::Ok => &mut b.ok,
            Outcome::Failed => &mut b.failed,
            Outcome::Throttled => &mut b.throttled,
        };
        *n = n.saturating_add(1);
    }

    fn counts(&self, tick: u64) -> Counts {
        self.buckets
            .iter()
            .filter(|b| b.tick <= tick && tick - b.tick < BUCKETS as u64)
            .fold(Counts::default(), |c, b| Counts {
                ok: c.ok.saturating_add(b.ok),
                failed: c.failed.saturating_add(b.failed),
                throttled: c.throttled.saturating_add(b.throttled),
            })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

// === Entry ===

#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_taken: bool },
}

/// One deployment's mutable record.
#[derive(Debug)]
struct State {
    breaker: Breaker,
    consecutive_failures: u32,
    /// Openings since a probe last closed the breaker; grows the cooldown.
    trips: u32,
    cooling_until: Option<Instant>,
    ewma_latency_ms: Option<f64>,
    ewma_ttft_ms: Option<f64>,
    window: Window,
}

#[derive(Debug)]
struct Entry {
    in_flight: AtomicU32,
    /// Milliseconds since the registry's epoch when last acquired or snapshotted.
    last_seen_ms: AtomicU64,
    state: Mutex<State>,
}

impl Entry {
    fn new(now_ms: u64) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            last_seen_ms: AtomicU64::new(now_ms),
            state: Mutex::new(State {
                breaker: Breaker::Closed,
                consecutive_failures: 0,
                trips: 0,
                cooling_until: None,
                ewma_latency_ms: None,
                ewma_ttft_ms: None,
                window: Window::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-update of plain numbers; they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Lazy transitions that only depend on time.
    fn refresh(&mut self, now: Instant) {
        if let Breaker::Open { until } = self.breaker
            && now >= until
        {
            self.breaker = Breaker::HalfOpen { probe_taken: false };
        }
        if self.cooling_until.is_some_and(|t| now >= t) {
            self.cooling_until = None;
        }
    }

    fn available(&self) -> bool {
        self.cooling_until.is_none()
            && matches!(
                self.breaker,
                Breaker::Closed | Breaker::HalfOpen { probe_taken: false }
            )
    }

    fn open(&mut self, now: Instant, s: &HealthSettings) {
        let doublings = self.trips.min(MAX_COOLDOWN_DOUBLINGS);
        let cooldown = s
            .open_cooldown
            .saturating_mul(1 << doublings)
            .min(s.max_open_cooldown.max(s.open_cooldown));
        self.breaker = Breaker::Open {
            until: now + cooldown,
        };
        self.trips = self.trips.saturating_add(1);
        self.consecutive_failures = 0;
    }

    /// The probe is over without a verdict (cancelled, rate limited): the next caller probes.
    fn release_probe(&mut self) {
        if let Breaker::HalfOpen { probe_taken: true } = self.breaker {
            self.breaker = Breaker::HalfOpen { probe_taken: false };
        }
    }

    fn close(&mut self) {
        self.breaker = Breaker::Closed;
        self.trips = 0;
        self.consecutive_failures = 0;
        // The failures that opened the breaker would trip the error rate again at once.
        self.window.clear();
    }
}

fn ewma(prev: Option<f64>, sample: Duration, alpha: f64) -> f64 {
    let sample = sample.as_secs_f64() * 1000.0;
    match prev {
        Some(p) => p + alpha * (sample - p),
        None => sample,
    }
}

// === Health ===

/// The node's health record of every deployment it routes to. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    settings: HealthSettings,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    bucket_nanos: u64,
    entries: RwLock<HashMap<Uuid, Arc<Entry>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("settings", &self.inner.settings)
            .field("deployments", &self.len())
            .finish()
    }
}

impl Inner {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn tick(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / u128::from(self.bucket_nanos)).unwrap_or(u64::MAX)
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn error_rate_tripped(&self, c: Counts) -> bool {
        let judged = u64::from(c.ok) + u64::from(c.failed);
        judged >= u64::from(self.settings.error_rate_min_requests.max(1))
            && c.failed as f64 >= self.settings.error_rate_threshold * judged as f64
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Arc<Entry>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &Uuid, now: Instant) -> Option<Arc<Entry>> {
        let entry = self.read().get(id).cloned()?;
        entry
            .last_seen_ms
            .store(self.millis(now), Ordering::Relaxed);
        Some(entry)
    }

    fn get_or_insert(&self, id: Uuid, now: Instant) -> Arc<Entry> {
        if let Some(entry) = self.get(&id, now) {
            return entry;
        }
        let now_ms = self.millis(now);
        let mut map = self.write();
        if !map.contains_key(&id) && map.len() >= self.settings.max_entries.max(1) {
            self.sweep_locked(&mut map, now_ms);
            if map.len() >= self.settings.max_entries.max(1) {
                // Still full of recently seen deployments: drop the least recent. A guard
                // still holding it reports into the dropped entry, which is harmless.
                let oldest = map
                    .iter()
                    .min_by_key(|(_, e)| e.last_seen_ms.load(Ordering::Relaxed))
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        Arc::clone(
            map.entry(id)
                .or_insert_with(|| Arc::new(Entry::new(now_ms))),
        )
    }

    fn sweep_locked(&self, map: &mut HashMap<Uuid, Arc<Entry>>, now_ms: u64) -> usize {
        let ttl = u64::try_from(self.settings.idle_ttl.as_millis()).unwrap_or(u64::MAX);
        let before = map.len();
        map.retain(|_, e| {
            e.in_flight.load(Ordering::Acquire) > 0
                || now_ms.saturating_sub(e.last_seen_ms.load(Ordering::Relaxed)) < ttl
        });
        before - map.len()
    }

    fn stats(&self, entry: &Entry, now: Instant) -> DeploymentStats {
        let mut st = entry.lock();
        st.refresh(now);
        let c = st.window.counts(self.tick(now));
        let requests = c.ok.saturating_add(c.failed).saturating_add(c.throttled);
        let (state, open_until) = match st.breaker {
            Breaker::Closed => (BreakerState::Closed, None),
            Breaker::Open { until } => (BreakerState::Open, Some(until)),
            Breaker::HalfOpen { .. } => (BreakerState::HalfOpen, None),
        };
        DeploymentStats {
            ewma_latency_ms: st.ewma_latency_ms,
            ewma_ttft_ms: st.ewma_ttft_ms,
            success_rate: (requests > 0).then(|| f64::from(c.ok) / f64::from(requests)),
            window_successes: c.ok,
            window_requests: requests,
            in_flight: entry.in_flight.load(Ordering::Acquire),
            state,
            open_until,
            cooling_until: st.cooling_until,
            available: st.available(),
        }
    }
}

impl Health {
    /// A registry on the system clock.
    pub fn new(settings: HealthSettings) -> Self {
        Self::with_clock(settings, Arc::new(SystemClock))
    }

    /// A registry reading time from `clock`.
    pub fn with_clock(settings: HealthSettings, clock: Arc<dyn Clock>) -> Self {
        let bucket = settings.window / BUCKETS as u32;
        let bucket_nanos = u64::try_from(bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1_000_000);
        let epoch = clock.now();
        Self {
            inner: Arc::new(Inner {
                settings,
                clock,
                epoch,
                bucket_nanos,
                entries: RwLock::new(HashMap::new()),
            }),
        }
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.inner.settings
    }

    /// The registry's clock, for the caller's own timings (latency, TTFT, deadlines in tests).
    pub fn now(&self) -> Instant {
        self.inner.now()
    }

    /// What this node knows of `id` now ([`DeploymentStats::UNKNOWN`] if nothing). Does not
    /// create an entry; keeps an existing one from being swept.
    pub fn snapshot(&self, id: Uuid) -> DeploymentStats {
        let now = self.inner.now();
        match self.inner.get(&id, now) {
            Some(entry) => self.inner.stats(&entry, now),
            None => DeploymentStats::UNKNOWN,
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would succeed now. Takes nothing: another
    /// caller may take a half-open probe slot in between.
    pub fn is_available(&self, id: Uuid) -> bool {
        let now = self.inner.now();
        match self.inner.get(&id, now) {
            Some(entry) => {
                let mut st = entry.lock();
                st.refresh(now);
                st.available()
            }
            None => true,
        }
    }

    /// Admits one attempt on `id`: `Some` when the breaker is closed, or half-open with its
    /// probe slot free (this guard then holds the slot), and the deployment is not cooling
    /// down after a 429. The guard counts as in flight until dropped.
    pub fn try_acquire(&self, id: Uuid) -> Option<AttemptGuard> {
        let now = self.inner.now();
        let entry = self.inner.get_or_insert(id, now);
        let probe = {
            let mut st = entry.lock();
            st.refresh(now);
            if st.cooling_until.is_some() {
                return None;
            }
            match st.breaker {
                Breaker::Closed => false,
                Breaker::HalfOpen { probe_taken: false } => {
                    st.breaker = Breaker::HalfOpen { probe_taken: true };
                    true
                }
                Breaker::HalfOpen { probe_taken: true } | Breaker::Open { .. } => return None,
            }
        };
        entry.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(AttemptGuard {
            inner: Arc::clone(&self.inner),
            entry,
            probe,
            started: now,
            finished: false,
        })
    }

    /// Deployments tracked now.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries untouched for [`HealthSettings::idle_ttl`] with nothing in flight;
    /// returns how many. Call it now and then (a minute is plenty); inserting into a full map
    /// sweeps too.
    pub fn sweep(&self) -> usize {
        let now_ms = self.inner.millis(self.inner.now());
        let mut map = self.inner.write();
        self.inner.sweep_locked(&mut map, now_ms)
    }

    /// Every tracked deployment's breaker state, for a metrics gauge.
    pub fn states(&self) -> Vec<(Uuid, BreakerState)> {
        let now = self.inner.now();
        let entries: Vec<(Uuid, Arc<Entry>)> = self
            .inner
            .read()
            .iter()
            .map(|(k, e)| (*k, Arc::clone(e)))
            .collect();
        entries
            .into_iter()
            .map(|(k, e)| (k, self.inner.stats(&e, now).state))
            .collect()
    }
}

// === AttemptGuard ===

/// One admitted attempt on a deployment: counts as in flight until dropped, and is told how the
/// attempt ended. Dropping it without a report (the client went away, the attempt was hedged
/// and lost) counts as neither success nor failure, and frees a half-open probe slot.
#[must_use = "an attempt is only counted while its guard lives"]
pub struct AttemptGuard {
    inner: Arc<Inner>,
    entry: Arc<Entry>,
    /// Holds the half-open probe slot.
    probe: bool,
    started: Instant,
    finished: bool,
}

impl std::fmt::Debug for AttemptGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptGuard")
            .field("probe", &self.probe)
            .field("started", &self.started)
            .finish()
    }
}

impl AttemptGuard {
    /// Whether this attempt is the half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Time since the guard was taken, on the registry's clock.
    pub fn elapsed(&self) -> Duration {
        self.inner.now().saturating_duration_since(self.started)
    }

    /// A stream's first token arrived after `ttft`: samples the TTFT EWMA now, and if this is
    /// the probe, closes the breaker at once (the deployment answers; a long stream should not
    /// keep every other request off it). Call at most once; [`success`](Self::success) then
    /// takes no TTFT.
    pub fn first_token(&mut self, ttft: Duration) {
        let alpha = self.inner.settings.ewma_alpha;
        let mut st = self.entry.lock();
        st.ewma_ttft_ms = Some(ewma(st.ewma_ttft_ms, ttft, alpha));
        if self.probe {
            st.close();
            self.probe = false;
        }
    }

    /// The attempt succeeded after `latency` in total (`ttft` for a stream whose first token
    /// was not reported through [`first_token`](Self::first_token)).
    pub fn success(mut self, latency: Duration, ttft: Option<Duration>) {
        self.finished = true;
        let now = self.inner.now();
        let alpha = self.inner.settings.ewma_alpha;
        let mut st = self.entry.lock();
        st.ewma_latency_ms = Some(ewma(st.ewma_latency_ms, latency, alpha));
        if let Some(ttft) = ttft {
            st.ewma_ttft_ms = Some(ewma(st.ewma_ttft_ms, ttft, alpha));
        }
        self.healthy(&mut st, now);
    }

    /// The deployment answered but refused the request as the client's fault (a 400, a prompt
    /// over its context window, a content filter): healthy for the breaker, no timing sample.
    pub fn rejected(mut self) {
        self.finished = true;
        let now = self.inner.now();
        let mut st = self.entry.lock();
        self.healthy(&mut st, now);
    }

    /// The attempt failed with `class`. Server errors, timeouts and connection failures count
    /// against the breaker; `rate_limited` cools the deployment down for `retry_after` (or the
    /// default) without touching the breaker; `context_length_exceeded` and `content_filter`
    /// are [`rejected`](Self::rejected).
    pub fn failure(mut self, class: RetryClass, retry_after: Option<Duration>) {
        self.finished = true;
        let now = self.inner.now();
        let s = &self.inner.settings;
        let tick = self.inner.tick(now);
        let mut st = self.entry.lock();
        match class {
            RetryClass::ServerError | RetryClass::Timeout | RetryClass::Connection => {
                st.window.record(tick, Outcome::Failed);
                match st.breaker {
                    Breaker::Closed => {
                        st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                        if st.consecutive_failures >= s.failure_threshold.max(1)
                            || self.inner.error_rate_tripped(st.window.counts(tick))
                        {
                            st.open(now, s);
                        }
                    }
                    Breaker::HalfOpen { .. } if self.probe => st.open(now, s),
                    // An attempt admitted before the breaker opened: already accounted for.
                    Breaker::HalfOpen { .. } | Breaker::Open { .. } => {}
                }
            }
            RetryClass::RateLimited => {
                st.window.record(tick, Outcome::Throttled);
                let wait = retry_after
                    .unwrap_or(s.rate_limit_cooldown)
                    .min(s.max_rate_limit_cooldown);
                let until = now + wait;
                if wait > Duration::ZERO {
                    st.cooling_until = Some(st.cooling_until.map_or(until, |t| t.max(until)));
                }
                if self.probe {
                    st.release_probe();
                }
            }
            RetryClass::ContextLengthExceeded | RetryClass::ContentFilter => {
                self.healthy(&mut st, now)
            }
        }
    }

    /// Reports `err` by its [`classify`](super::retry::classify)cation (see the module doc):
    /// breaker failure, 429 cool-down (with the error's `Retry-After`), healthy (client errors
    /// the deployment answered), or nothing (errors this node raised before calling out).
    pub fn report_error(self, err: &GatewayError) {
        match (retry::classify(err), err) {
            // This node's own per-provider cap: the deployment was never called.
            (_, GatewayError::ProviderBusy { .. }) => drop(self),
            (Some(class), _) => {
                let retry_after = retry::retry_after(err, SystemTime::now());
                self.failure(class, retry_after)
            }
            (
                None,
                GatewayError::UpstreamBadRequest { .. }
                | GatewayError::UpstreamAuthFailed { .. }
                | GatewayError::UpstreamError { .. }
                | GatewayError::LoopDetected { .. },
            ) => self.rejected(),
            (None, _) => drop(self),
        }
    }

    /// Ends the attempt without a verdict (same as dropping the guard).
    pub fn cancel(self) {}

    fn healthy(&self, st: &mut State, now: Instant) {
        if self.probe && matches!(st.breaker, Breaker::HalfOpen { .. }) {
            st.close();
        }
        st.window.record(self.inner.tick(now), Outcome::Ok);
        st.consecutive_failures = 0;
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.entry.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.probe && !self.finished {
            self.entry.lock().release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use std::sync::Barrier;

    use axum::http::{HeaderValue, StatusCode};

    use crate::error::ProviderError;

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn setup(settings: HealthSettings) -> (Health, Arc<ManualClock>, Uuid) {
        let clock = Arc::new(ManualClock::new());
        let health = Health::with_clock(settings, clock.clone());
        (health, clock, Uuid::new_v4())
    }

    fn fail(h: &Health, id: Uuid, class: RetryClass) {
        h.try_acquire(id).expect("admitted").failure(class, None);
    }

    fn succeed(h: &Health, id: Uuid) {
        h.try_acquire(id).expect("admitted").success(100 * MS, None);
    }

    #[test]
    fn unknown_deployments_are_available_and_not_created_by_reads() {
        let (h, _, id) = setup(HealthSettings::default());
        assert!(h.is_available(id));
        assert_eq!(h.snapshot(id), DeploymentStats::UNKNOWN);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn opens_after_consecutive_failures_of_the_deployment() {
        for class in [
            RetryClass::ServerError,
            RetryClass::Timeout,
            RetryClass::Connection,
        ] {
            let (h, _, id) = setup(HealthSettings::default());
            for n in 1..5 {
                fail(&h, id, class);
                assert_eq!(h.snapshot(id).state, BreakerState::Closed, "{class:?} {n}");
            }
            fail(&h, id, class);
            let s = h.snapshot(id);
            assert_eq!(s.state, BreakerState::Open, "{class:?}");
            assert!(!s.available);
            assert!(h.try_acquire(id).is_none());
            assert!(!h.is_available(id));
        }
    }

    #[test]
    fn a_success_or_client_error_resets_the_consecutive_count() {
        type Reset = fn(&Health, Uuid);
        let resets: [(&str, Reset); 4] = [
            ("success", |h, id| succeed(h, id)),
            ("rejected", |h, id| {
                h.try_acquire(id).expect("admitted").rejected()
            }),
            ("context length", |h, id| {
                fail(h, id, RetryClass::ContextLengthExceeded)
            }),
            ("content filter", |h, id| {
                fail(h, id, RetryClass::ContentFilter)
            }),
        ];
        for (name, reset) in resets {
            let (h, _, id) = setup(HealthSettings::default());
            for _ in 0..4 {
                fail(&h, id, RetryClass::ServerError);
            }
            reset(&h, id);
            for _ in 0..4 {
                fail(&h, id, RetryClass::ServerError);
            }
            assert_eq!(h.snapshot(id).state, BreakerState::Closed, "{name}");
            fail(&h, id, RetryClass::ServerError);
            assert_eq!(h.snapshot(id).state, BreakerState::Open, "{name}");
        }
    }

    #[test]
    fn half_open_after_the_cooldown_admits_exactly_one_probe() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..5 {
            fail(&h, id, RetryClass::ServerError);
        }
        clock.advance(29 * SEC);
        assert!(h.try_acquire(id).is_none());
        clock.advance(SEC);
        let s = h.snapshot(id);
        assert_eq!((s.state, s.available), (BreakerState::HalfOpen, true));
        let probe = h.try_acquire(id).expect("the probe");
        assert!(probe.is_probe());
        assert!(h.try_acquire(id).is_none(), "a second caller waits");
        let s = h.snapshot(id);
        assert_eq!(
            (s.state, s.available, s.in_flight),
            (BreakerState::HalfOpen, false, 1)
        );
        probe.success(200 * MS, None);
        let s = h.snapshot(id);
        assert_eq!(
            (s.state, s.available, s.in_flight),
            (BreakerState::Closed, true, 0)
        );
        let next = h.try_acquire(id).expect("closed again");
        assert!(!next.is_probe());
    }

    #[test]
    fn concurrent_callers_race_for_one_probe_slot() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..5 {
            fail(&h, id, RetryClass::Timeout);
        }
        clock.advance(30 * SEC);
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (h, barrier) = (h.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    h.try_acquire(id)
                })
            })
            .collect();
        let guards: Vec<AttemptGuard> = handles
            .into_iter()
            .filter_map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(guards.len(), 1);
        assert!(guards[0].is_probe());
    }

    #[test]
    fn a_failed_probe_reopens_with_a_longer_cooldown() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..5 {
            fail(&h, id, RetryClass::Connection);
        }
        // Each failed probe doubles the cooldown: 30 s, 60 s, 120 s, 240 s, then 300 s (cap).
        for cooldown in [30, 60, 120, 240, 300, 300] {
            clock.advance(Duration::from_secs(cooldown) - MS);
            assert!(
                h.try_acquire(id).is_none(),
                "still open before {cooldown} s"
            );
            clock.advance(MS);
            let probe = h.try_acquire(id).expect("probe after the cooldown");
            assert!(probe.is_probe());
            probe.failure(RetryClass::ServerError, None);
            let s = h.snapshot(id);
            assert_eq!(s.state, BreakerState::Open);
        }
        // Recovery resets the cooldown to its base.
        clock.advance(300 * SEC);
        h.try_acquire(id).expect("probe").success(MS, None);
        for _ in 0..5 {
            fail(&h, id, RetryClass::Connection);
        }
        let s = h.snapshot(id);
        assert_eq!(s.open_until, Some(clock.now() + 30 * SEC));
    }

    #[test]
    fn a_dropped_or_rate_limited_probe_frees_the_slot() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..5 {
            fail(&h, id, RetryClass::ServerError);
        }
        clock.advance(30 * SEC);
        drop(h.try_acquire(id).expect("probe"));
        let probe = h.try_acquire(id).expect("the slot is free again");
        assert!(probe.is_probe());
        probe.failure(RetryClass::RateLimited, Some(2 * SEC));
        assert_eq!(h.snapshot(id).state, BreakerState::HalfOpen);
        assert!(h.try_acquire(id).is_none(), "cooling down");
        clock.advance(2 * SEC);
        assert!(h.try_acquire(id).expect("probe").is_probe());
    }

    #[test]
    fn the_first_token_of_a_probe_closes_the_breaker() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..5 {
            fail(&h, id, RetryClass::ServerError);
        }
        clock.advance(30 * SEC);
        let mut probe = h.try_acquire(id).expect("probe");
        probe.first_token(300 * MS);
        assert_eq!(h.snapshot(id).state, BreakerState::Closed);
        assert!(
            h.try_acquire(id).is_some(),
            "others flow while the probe streams"
        );
        probe.success(2 * SEC, None);
        let s = h.snapshot(id);
        assert_eq!(s.ewma_ttft_ms, Some(300.0));
        assert_eq!(s.ewma_latency_ms, Some(2000.0));
    }

    #[test]
    fn outcomes_of_attempts_admitted_before_opening_do_not_move_the_breaker() {
        let (h, clock, id) = setup(HealthSettings::default());
        let late_ok = h.try_acquire(id).expect("admitted");
        let late_fail = h.try_acquire(id).expect("admitted");
        for _ in 0..5 {
            fail(&h, id, RetryClass::ServerError);
        }
        late_ok.success(MS, None);
        assert_eq!(h.snapshot(id).state, BreakerState::Open);
        clock.advance(30 * SEC);
        late_fail.failure(RetryClass::ServerError, None);
        assert_eq!(h.snapshot(id).state, BreakerState::HalfOpen);
        assert!(h.try_acquire(id).expect("probe").is_probe());
    }

    #[test]
    fn error_rate_over_the_window_trips_the_breaker() {
        // (failures among 20 alternating outcomes, min requests, opens)
        let cases = [
            (10, 20, true),
            (9, 20, false),
            (10, 21, false),
            (12, 20, true),
        ];
        for (failures, min_requests, opens) in cases {
            let settings = HealthSettings {
                error_rate_min_requests: min_requests,
                ..HealthSettings::default()
            };
            let (h, clock, id) = setup(settings);
            // Failures spread evenly (Bresenham), so no run reaches the consecutive threshold
            // and the last outcome is a failure, which is when the error rate is checked.
            let pattern = (0..20).map(|i| (i + 1) * failures / 20 > i * failures / 20);
            for failed in pattern {
                clock.advance(2 * SEC);
                if failed {
                    fail(&h, id, RetryClass::ServerError);
                } else {
                    succeed(&h, id);
                }
            }
            let s = h.snapshot(id);
            assert_eq!(
                s.state == BreakerState::Open,
                opens,
                "{failures} failures, min {min_requests}: {s:?}"
            );
        }
    }

    #[test]
    fn rate_limited_answers_count_in_the_window_but_not_in_the_error_rate() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..30 {
            h.try_acquire(id)
                .expect("admitted")
                .failure(RetryClass::RateLimited, Some(Duration::ZERO));
            clock.advance(MS);
        }
        succeed(&h, id);
        let s = h.snapshot(id);
        assert_eq!(s.state, BreakerState::Closed);
        assert_eq!((s.window_successes, s.window_requests), (1, 31));
    }

    #[test]
    fn retry_after_cools_the_deployment_down_without_opening_the_breaker() {
        // (Retry-After given, how long it cools)
        let cases = [
            (Some(10 * SEC), 10 * SEC),
            (None, SEC),
            (Some(3600 * SEC), 300 * SEC),
        ];
        for (retry_after, cools) in cases {
            let (h, clock, id) = setup(HealthSettings::default());
            for _ in 0..10 {
                clock.advance(MS);
                h.try_acquire(id)
                    .expect("admitted")
                    .failure(RetryClass::RateLimited, retry_after);
                // Each 429 happens after the previous cool-down ended.
                clock.advance(cools);
            }
            clock.advance(MS);
            h.try_acquire(id)
                .expect("admitted")
                .failure(RetryClass::RateLimited, retry_after);
            let s = h.snapshot(id);
            assert_eq!(s.state, BreakerState::Closed, "{retry_after:?}");
            assert_eq!(s.cooling_until, Some(clock.now() + cools));
            assert_eq!(s.available_at(), Some(clock.now() + cools));
            assert!(!s.available && h.try_acquire(id).is_none());
            clock.advance(cools - MS);
            assert!(h.try_acquire(id).is_none(), "{retry_after:?}");
            clock.advance(MS);
            assert!(h.try_acquire(id).is_some(), "{retry_after:?}");
        }
    }

    #[test]
    fn ewma_of_latency_and_ttft() {
        let (h, _, id) = setup(HealthSettings {
            ewma_alpha: 0.25,
            ..HealthSettings::default()
        });
        // (latency ms, ttft ms, expected latency EWMA, expected TTFT EWMA)
        let steps = [
            (100, Some(40), 100.0, Some(40.0)),
            (200, None, 125.0, Some(40.0)),
            (200, Some(80), 143.75, Some(50.0)),
            (0, Some(0), 107.8125, Some(37.5)),
        ];
        for (latency, ttft, want_latency, want_ttft) in steps {
            h.try_acquire(id)
                .expect("admitted")
                .success(latency * MS, ttft.map(|t| t * MS));
            let s = h.snapshot(id);
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
            assert!(
                close(s.ewma_latency_ms.expect("latency"), want_latency),
                "{s:?}"
            );
            match (s.ewma_ttft_ms, want_ttft) {
                (Some(a), Some(b)) => assert!(close(a, b), "{s:?}"),
                (a, b) => assert_eq!(a, b),
            }
        }
        // Failures take no timing sample.
        fail(&h, id, RetryClass::Timeout);
        assert!((h.snapshot(id).ewma_latency_ms.expect("latency") - 107.8125).abs() < 1e-9);
    }

    #[test]
    fn success_rate_slides_with_the_window() {
        let (h, clock, id) = setup(HealthSettings::default());
        for _ in 0..3 {
            fail(&h, id, RetryClass::ServerError);
        }
        clock.advance(30 * SEC);
        succeed(&h, id);
        let s = h.snapshot(id);
        assert_eq!((s.window_successes, s.window_requests), (1, 4));
        assert_eq!(s.success_rate, Some(0.25));
        clock.advance(31 * SEC);
        let s = h.snapshot(id);
        assert_eq!((s.window_successes, s.window_requests), (1, 1));
        assert_eq!(s.success_rate, Some(1.0));
        clock.advance(60 * SEC);
        assert_eq!(h.snapshot(id).success_rate, None);
    }

    #[test]
    fn in_flight_counts_live_guards() {
        let (h, _, id) = setup(HealthSettings::default());
        let guards: Vec<_> = (0..3)
            .map(|_| h.try_acquire(id).expect("admitted"))
            .collect();
        assert_eq!(h.snapshot(id).in_flight, 3);
        let mut guards = guards.into_iter();
        guards.next().expect("one").success(MS, None);
        guards.next().expect("two").cancel();
        assert_eq!(h.snapshot(id).in_flight, 1);
        drop(guards);
        assert_eq!(h.snapshot(id).in_flight, 0);
        assert_eq!(
            h.snapshot(id).window_requests,
            1,
            "cancelled attempts are not counted"
        );
    }

    #[test]
    fn report_error_applies_the_classification() {
        let provider_error = || Box::new(ProviderError::default());
        // (error, state after 5 of them, cooling, window requests)
        let cases: Vec<(GatewayError, BreakerState, bool, u32)> = vec![
            (
                GatewayError::UpstreamError {
                    status: 503,
                    error: provider_error(),
                },
                BreakerState::Open,
                false,
                5,
            ),
            (
                GatewayError::UpstreamTimeout("no response headers in time"),
                BreakerState::Open,
                false,
                5,
            ),
            (
                GatewayError::UpstreamRateLimited {
                    retry_after: Some(HeaderValue::from_static("7")),
                    error: provider_error(),
                },
                BreakerState::Closed,
                true,
                1,
            ),
            (
                GatewayError::UpstreamBadRequest {
                    status: StatusCode::BAD_REQUEST,
                    error: provider_error(),
                },
                BreakerState::Closed,
                false,
                5,
            ),
            (
                GatewayError::ProviderBusy { limit: 4 },
                BreakerState::Closed,
                false,
                0,
            ),
        ];
        for (err, state, cooling, requests) in cases {
            let (h, _, id) = setup(HealthSettings::default());
            for _ in 0..5 {
                if let Some(g) = h.try_acquire(id) {
                    g.report_error(&err);
                }
            }
            let s = h.snapshot(id);
            assert_eq!(s.state, state, "{err:?}");
            assert_eq!(s.cooling_until.is_some(), cooling, "{err:?}");
            assert_eq!(s.window_requests, requests, "{err:?}");
            if cooling {
                assert_eq!(s.cooling_until, Some(h.now() + 7 * SEC));
            }
        }
    }

    #[test]
    fn idle_entries_are_swept_and_the_map_is_bounded() {
        let (h, clock, _) = setup(HealthSettings {
            max_entries: 3,
            idle_ttl: 60 * SEC,
            ..HealthSettings::default()
        });
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        for id in &ids[..3] {
            succeed(&h, *id);
            clock.advance(SEC);
        }
        // Full: the least recently seen (ids[0]) makes room.
        let held = h.try_acquire(ids[3]).expect("admitted");
        assert_eq!(h.len(), 3);
        assert_eq!(h.snapshot(ids[0]), DeploymentStats::UNKNOWN);
        // A snapshot keeps an entry alive; an in-flight guard too.
        clock.advance(50 * SEC);
        let _ = h.snapshot(ids[1]);
        clock.advance(20 * SEC);
        assert_eq!(h.sweep(), 1, "ids[2] idle for 70 s");
        assert_eq!(h.len(), 2);
        clock.advance(3600 * SEC);
        assert_eq!(h.sweep(), 1, "ids[1] idle; ids[3] still in flight");
        held.success(MS, None);
        assert_eq!(h.sweep(), 1);
        assert!(h.is_empty());
    }

    #[test]
    fn states_lists_every_breaker() {
        let (h, _, a) = setup(HealthSettings::default());
        let b = Uuid::new_v4();
        succeed(&h, a);
        for _ in 0..5 {
            fail(&h, b, RetryClass::ServerError);
        }
        let mut states = h.states();
        states.sort();
        let mut want = vec![(a, BreakerState::Closed), (b, BreakerState::Open)];
        want.sort();
        assert_eq!(states, want);
    }
}
