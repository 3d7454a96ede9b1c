//! Brakes on password guessing and mass sign-up: login throttling per account and per client
//! IP, and a sign-up rate per client IP.
//!
//! # Login
//!
//! Every login attempt is counted *before* the password is checked, against two keys: the
//! account (the normalized email, whether or not an account exists for it, so a registered and
//! an unregistered email behave alike) and the client IP. Counting first makes the check and
//! the count one step under one lock, so a burst of parallel guesses cannot all slip through
//! before the first failure is recorded. A successful attempt then clears the account's count
//! and gives its IP count back; a failed one leaves both counted.
//!
//! Once a key has [`ThrottleSettings::login_failures_per_account`] (or `_per_ip`) failures
//! within [`ThrottleSettings::failure_window`] it is locked: every further attempt, with the
//! right password too, is answered `429` with `Retry-After` and no password check until the
//! lock passes. Each failure past the limit doubles the lock, from
//! [`ThrottleSettings::base_lockout`] up to [`ThrottleSettings::max_lockout`], so a patient
//! guesser gets at most one try per `max_lockout`. A key is forgotten one window after its last
//! failure or the end of its lock, whichever is later.
//!
//! # Sign-up
//!
//! A generic cell rate (GCRA): [`ThrottleSettings::signups_per_ip_per_hour`] sign-ups per IP,
//! spread over the hour with that many as a burst.
//!
//! # Scope and memory
//!
//! The state is in this process: each control-plane replica counts on its own, so with N
//! replicas behind a load balancer an attacker gets up to N times the limits. Each table is
//! bounded ([`MAX_TRACKED`] keys); when one is full, forgotten keys are pruned, and if it is
//! still full the key closest to being forgotten is evicted (never a locked one before an
//! unlocked one, since locks end later). Emails are kept only as SHA-256.
//!
//! # Client IP
//!
//! [`ClientIp`] is the TCP peer address (axum's `ConnectInfo`). Behind a reverse proxy every
//! client has the proxy's address; with `SWITCHYARD_TRUST_FORWARDED_FOR=true` the last
//! (rightmost) address of `X-Forwarded-For`, the one the proxy itself appended, is used
//! instead. Only enable it when a proxy you run always sets that header: otherwise a client
//! could pick its own address. IPv6 clients are counted per /64, since one host usually holds a
//! whole /64. Without `ConnectInfo` (a router driven in-process, e.g. by `oneshot` tests) the IP
//! is unknown and only the per-account limit applies.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Most keys one table (accounts, login IPs, sign-up IPs) keeps. About 100 bytes each, so a
/// full table is ~10 MB.
pub const MAX_TRACKED: usize = 100_000;
/// Every this many new keys, a table drops the keys it has forgotten.
const PRUNE_EVERY: u32 = 1024;

/// Where "now" comes from: the system clock in production, a hand-driven one in tests (so
/// time-dependent behaviour is tested without sleeping).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to. For tests.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The limits. Defaults are what the README documents.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failed logins per account within `failure_window` before it is locked.
    pub login_failures_per_account: u32,
    /// Failed logins per client IP within `failure_window` before it is locked.
    pub login_failures_per_ip: u32,
    /// How long a failure counts.
    pub failure_window: Duration,
    /// The first lock; each further failure doubles it.
    pub base_lockout: Duration,
    /// The longest lock.
    pub max_lockout: Duration,
    /// Sign-ups per client IP per hour (also the burst).
    pub signups_per_ip_per_hour: u32,
    /// Take the client IP from the rightmost `X-Forwarded-For` entry.
    pub trust_forwarded_for: bool,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            login_failures_per_account: 5,
            login_failures_per_ip: 30,
            failure_window: Duration::from_secs(15 * 60),
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
            signups_per_ip_per_hour: 20,
            trust_forwarded_for: false,
        }
    }
}

/// The login and sign-up throttles of this process. Shared through `AppState`.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: Table<[u8; 32], Failures>,
    login_ips: Table<IpAddr, Failures>,
    signup_ips: Table<IpAddr, Cell>,
}

impl Throttle {
    pub fn new(settings: ThrottleSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// With the system clock.
    pub fn system(settings: ThrottleSettings) -> Self {
        Self::new(settings, Arc::new(SystemClock))
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can leave the tables half-updated, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a login attempt for `email` (as typed; normalized here) from `ip`, or refuses it
    /// with `429` while the account or the IP is locked. Call [`LoginAttempt::succeeded`] when
    /// the password was right.
    pub fn begin_login(
        &self,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<LoginAttempt<'_>, ApiError> {
        let account = account_key(email);
        let now = self.clock.now();
        let s = &self.settings;
        let mut inner = self.lock();
        let account_wait = inner.accounts.wait(&account, now, s);
        let ip_wait = ip.and_then(|ip| inner.login_ips.wait(&ip, now, s));
        if let Some(wait) = account_wait.max(ip_wait) {
            return Err(too_many_logins(wait));
        }
        inner
            .accounts
            .entry(account, now, s)
            .fail(now, s.login_failures_per_account, s);
        if let Some(ip) = ip {
            inner
                .login_ips
                .entry(ip, now, s)
                .fail(now, s.login_failures_per_ip, s);
        }
        Ok(LoginAttempt {
            throttle: self,
            account,
            ip,
        })
    }

    /// Counts a sign-up from `ip`, or refuses it with `429` when the IP has used its hourly
    /// allowance. An unknown IP is not limited.
    pub fn check_signup(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        let now = self.clock.now();
        let s = &self.settings;
        let per_hour = s.signups_per_ip_per_hour.max(1);
        let interval = Duration::from_secs(3600) / per_hour;
        let burst = Duration::from_secs(3600).saturating_sub(interval);
        let mut inner = self.lock();
        let cell = inner.signup_ips.entry(ip, now, s);
        let tat = cell.tat.max(now);
        let ahead = tat - now;
        if ahead > burst {
            return Err(ApiError::TooManyRequests {
                message: "too many sign-ups from this address; try again later",
                retry_after: ahead - burst,
            });
        }
        cell.tat = tat + interval;
        Ok(())
    }
}

/// A counted login attempt. Dropping it leaves the failure counted.
#[must_use = "call succeeded() when the password was right"]
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    throttle: &'a Throttle,
    account: [u8; 32],
    ip: Option<IpAddr>,
}

impl LoginAttempt<'_> {
    /// The password was right: the account starts afresh and the IP gets this attempt back.
    /// The IP keeps its other failures, so one valid account cannot be used to wash an IP's
    /// guesses against other accounts.
    pub fn succeeded(self) {
        let s = &self.throttle.settings;
        let mut inner = self.throttle.lock();
        inner.accounts.remove(&self.account);
        if let Some(ip) = self.ip
            && let Some(f) = inner.login_ips.map.get_mut(&ip)
        {
            f.count = f.count.saturating_sub(1);
            if f.count < s.login_failures_per_ip {
                f.locked_until = None;
            }
        }
    }
}

fn too_many_logins(wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        message: "too many failed sign-in attempts; try again later",
        retry_after: wait,
    }
}

/// The account key: SHA-256 of the trimmed, lowercased email, so the table never holds emails
/// and its keys have a fixed size whatever was typed.
fn account_key(email: &str) -> [u8; 32] {
    Sha256::digest(email.trim().to_lowercase().as_bytes()).into()
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 included), IPv6 by /64.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

// === tables ===

/// What a table keeps per key.
trait Tracked {
    /// The state of a key first seen at `now`.
    fn fresh(now: Instant) -> Self;
    /// When this entry can be forgotten.
    fn forget_at(&self, settings: &ThrottleSettings) -> Instant;
}

/// Failed logins of one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    /// Counts a failure at `now`; at `limit` failures and beyond, locks with a doubling lock.
    fn fail(&mut self, now: Instant, limit: u32, s: &ThrottleSettings) {
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count >= limit {
            let doublings = (self.count - limit).min(20);
            let lock = s
                .base_lockout
                .saturating_mul(1u32 << doublings)
                .min(s.max_lockout);
            self.locked_until = Some(now + lock);
        }
    }
}

impl Tracked for Failures {
    fn fresh(now: Instant) -> Self {
        Self {
            count: 0,
            last: now,
            locked_until: None,
        }
    }

    /// A window after the last failure or the end of the lock, whichever is later: a failure
    /// soon after a lock ends keeps doubling (up to the cap) instead of starting afresh.
    fn forget_at(&self, s: &ThrottleSettings) -> Instant {
        self.locked_until.map_or(self.last, |l| l.max(self.last)) + s.failure_window
    }
}

/// The GCRA state of one key: the theoretical arrival time of the next request.
#[derive(Debug, Clone, Copy)]
struct Cell {
    tat: Instant,
}

impl Tracked for Cell {
    fn fresh(now: Instant) -> Self {
        Self { tat: now }
    }

    fn forget_at(&self, _: &ThrottleSettings) -> Instant {
        self.tat
    }
}

/// A bounded map of keys to their state.
#[derive(Debug)]
struct Table<K, V> {
    map: HashMap<K, V>,
    inserts_since_prune: u32,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            inserts_since_prune: 0,
        }
    }
}

impl<K: Hash + Eq + Copy, V: Tracked> Table<K, V> {
    /// The live entry for `key` (a forgotten one starts afresh), inserted if missing.
    fn entry(&mut self, key: K, now: Instant, s: &ThrottleSettings) -> &mut V {
        if self.map.get(&key).is_some_and(|v| v.forget_at(s) <= now) {
            self.map.remove(&key);
        }
        if !self.map.contains_key(&key) {
            self.make_room(now, s);
        }
        self.map.entry(key).or_insert_with(|| V::fresh(now))
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    fn make_room(&mut self, now: Instant, s: &ThrottleSettings) {
        self.inserts_since_prune += 1;
        if self.inserts_since_prune >= PRUNE_EVERY || self.map.len() >= MAX_TRACKED {
            self.inserts_since_prune = 0;
            self.map.retain(|_, v| v.forget_at(s) > now);
        }
        if self.map.len() >= MAX_TRACKED {
            let soonest = self
                .map
                .iter()
                .min_by_key(|(_, v)| v.forget_at(s))
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                tracing::warn!(
                    tracked = self.map.len(),
                    "throttle table full; forgetting the key closest to expiry"
                );
                self.map.remove(&k);
            }
        }
    }
}

impl<K: Hash + Eq + Copy> Table<K, Failures> {
    /// How long `key` stays locked, if it is.
    fn wait(&self, key: &K, now: Instant, s: &ThrottleSettings) -> Option<Duration> {
        let f = self.map.get(key)?;
        if f.forget_at(s) <= now {
            return None;
        }
        f.locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

// === client IP ===

/// The client's address as the throttles count it (see the module doc); `None` when unknown.
/// Never rejects.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded = if state.throttle.settings().trust_forwarded_for {
            forwarded_for(&parts.headers)
        } else {
            None
        };
        Ok(ClientIp(forwarded.or(peer).map(normalize_ip)))
    }
}

/// The rightmost address of the last `X-Forwarded-For` header (`ip`, `ip:port` or `[v6]:port`).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let value = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last = value.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn throttle(clock: &Arc<ManualClock>) -> Throttle {
        Throttle::new(ThrottleSettings::default(), clock.clone())
    }

    fn wait_of(err: ApiError) -> Duration {
        match err {
            ApiError::TooManyRequests { retry_after, .. } => retry_after,
            other => panic!("not a 429: {other:?}"),
        }
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn five_failures_lock_the_account_with_doubling_locks() {
        let clock = ManualClock::new();
        let t = throttle(&clock);
        for _ in 0..5 {
            drop(t.begin_login("Alice@Example.com", IP).expect("allowed"));
        }
        // Locked for base_lockout (60 s), whatever the case or spaces of the email.
        let wait = wait_of(
            t.begin_login(" alice@example.COM ", IP)
                .expect_err("locked"),
        );
        assert_eq!(wait, Duration::from_secs(60));
        clock.advance(Duration::from_secs(59));
        assert!(t.begin_login("alice@example.com", IP).is_err());
        clock.advance(Duration::from_secs(1));
        // The 6th failure doubles the lock, the 7th doubles it again.
        drop(t.begin_login("alice@example.com", IP).expect("lock passed"));
        assert_eq!(
            wait_of(t.begin_login("alice@example.com", IP).expect_err("locked")),
            Duration::from_secs(120)
        );
        clock.advance(Duration::from_secs(120));
        drop(t.begin_login("alice@example.com", IP).expect("lock passed"));
        assert_eq!(
            wait_of(t.begin_login("alice@example.com", IP).expect_err("locked")),
            Duration::from_secs(240)
        );
        // Capped at max_lockout.
        for _ in 0..10 {
            clock.advance(Duration::from_secs(15 * 60));
            drop(t.begin_login("alice@example.com", IP).expect("lock passed"));
        }
        assert_eq!(
            wait_of(t.begin_login("alice@example.com", IP).expect_err("locked")),
            Duration::from_secs(15 * 60)
        );
        // Another account from the same IP is not locked (the IP has 17 failures of 30).
        drop(t.begin_login("bob@example.com", IP).expect("other account"));
    }

    #[test]
    fn success_resets_the_account_and_failures_expire() {
        let clock = ManualClock::new();
        let t = throttle(&clock);
        for _ in 0..4 {
            drop(t.begin_login("a@example.com", IP).expect("allowed"));
        }
        t.begin_login("a@example.com", IP).expect("5th").succeeded();
        for _ in 0..4 {
            drop(
                t.begin_login("a@example.com", IP)
                    .expect("counter was reset"),
            );
        }
        // Failures older than the window no longer count.
        clock.advance(Duration::from_secs(15 * 60));
        for _ in 0..4 {
            drop(t.begin_login("a@example.com", IP).expect("window passed"));
        }
        assert!(t.begin_login("a@example.com", IP).is_ok());
    }

    #[test]
    fn the_ip_is_locked_across_accounts() {
        let clock = ManualClock::new();
        let t = throttle(&clock);
        for i in 0..30 {
            drop(
                t.begin_login(&format!("user{i}@example.com"), IP)
                    .expect("allowed"),
            );
        }
        let wait = wait_of(
            t.begin_login("fresh@example.com", IP)
                .expect_err("ip locked"),
        );
        assert_eq!(wait, Duration::from_secs(60));
        // Another address is not affected; an unknown address only has the account limit.
        let other = Some("192.0.2.2".parse().unwrap());
        drop(t.begin_login("fresh@example.com", other).expect("other ip"));
        drop(
            t.begin_login("fresh2@example.com", None)
                .expect("unknown ip"),
        );
    }

    #[test]
    fn signups_follow_a_cell_rate() {
        let clock = ManualClock::new();
        let t = throttle(&clock);
        for _ in 0..20 {
            t.check_signup(IP).expect("within the burst");
        }
        let wait = wait_of(t.check_signup(IP).expect_err("burst used"));
        assert_eq!(wait, Duration::from_secs(180));
        t.check_signup(None).expect("unknown ip is not limited");
        clock.advance(Duration::from_secs(180));
        t.check_signup(IP).expect("one more after the interval");
        assert!(t.check_signup(IP).is_err());
    }

    #[test]
    fn ips_are_normalized() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(normalize_ip(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            normalize_ip(v6),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_takes_the_rightmost_entry() {
        let mut h = axum::http::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(forwarded_for(&h), Some("198.51.100.7".parse().unwrap()));
        h.append("x-forwarded-for", "[2001:db8::1]:4711".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("2001:db8::1".parse().unwrap()));
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(forwarded_for(&h), None);
    }

    #[test]
    fn tables_stay_bounded() {
        let clock = ManualClock::new();
        let s = ThrottleSettings::default();
        let mut table: Table<u32, Failures> = Table::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            table.entry(i, clock.now(), &s).fail(clock.now(), 5, &s);
        }
        assert_eq!(table.map.len(), MAX_TRACKED);
    }
}
