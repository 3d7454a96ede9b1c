//! Which failures are worth another attempt, and how long to wait before one.
//!
//! # Classes
//!
//! [`classify`] names the [`RetryClass`] of an error, or `None` for errors that no other attempt
//! can fix. A route's `retry_on` (default [`DEFAULT_RETRY_ON`]) says which classes move on to
//! the next attempt; [`retryable`] applies both.
//!
//! | error | class | why |
//! | --- | --- | --- |
//! | `UpstreamRateLimited` (429) | `rate_limited` | |
//! | `UpstreamError` 5xx (529 "overloaded" included), `UpstreamProtocol` | `server_error` | |
//! | `UpstreamError` 408 | `timeout` | the provider gave up waiting |
//! | `UpstreamTimeout` | `timeout` | |
//! | `UpstreamUnreachable` | `connection` | |
//! | `EgressRefused`, `ProviderUnavailable` | `connection` | the deployment can never be reached from here, but another candidate may be: they fail every retry of the same deployment and count against its breaker, which keeps later requests off it |
//! | `ProviderBusy` | `rate_limited` | this node's cap on the provider credential: a capacity refusal like a 429, and another candidate may have room (not a health failure: see [`AttemptGuard::report_error`](super::AttemptGuard::report_error)) |
//! | `UpstreamBadRequest` with provider code `context_length_exceeded` | `context_length_exceeded` | the caller moves on to a candidate with a larger context window |
//! | `UpstreamBadRequest` with provider code `content_filter` (Azure) or `content_policy_violation` (OpenAI) | `content_filter` | another provider's filter may differ |
//! | everything else: other 400/413/422, `UpstreamError` other 4xx (unknown upstream model), `UpstreamAuthFailed`, `LoopDetected`, client errors, this node's own limits, `Internal` | `None` | the same request fails the same way; a configuration error is shown, not hidden behind a fallback |
//!
//! # Backoff
//!
//! [`Backoff`] spaces retries of the *same* deployment: exponential from 100 ms, capped at 2 s,
//! with full jitter (a uniform draw between zero and the exponential ceiling, so nodes that
//! failed together do not retry together). A `Retry-After` is honoured exactly. A wait that
//! would not leave time for the attempt before the deadline is refused (`None`): the caller
//! moves on to the next candidate at once, or gives up. Moving to another candidate needs no
//! wait: its upstream did not fail.

use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use rand::Rng;
use shared::config::RetryClass;
use time::PrimitiveDateTime;
use time::macros::format_description;

use crate::error::GatewayError;

/// The classes retried when a route sets no `retry_on`: failures of the deployment, not of the
/// request. `context_length_exceeded` and `content_filter` are opt-in.
pub const DEFAULT_RETRY_ON: [RetryClass; 4] = [
    RetryClass::RateLimited,
    RetryClass::ServerError,
    RetryClass::Timeout,
    RetryClass::Connection,
];

/// Provider error codes that mean a content filter refused the prompt or the answer.
const CONTENT_FILTER_CODES: [&str; 2] = ["content_filter", "content_policy_violation"];

/// The retry class of `err`; `None` = no other attempt can help (see the module doc's table).
pub fn classify(err: &GatewayError) -> Option<RetryClass> {
    use GatewayError::*;
    match err {
        UpstreamRateLimited { .. } | ProviderBusy { .. } => Some(RetryClass::RateLimited),
        UpstreamError { status, .. } => match status {
            500..=599 => Some(RetryClass::ServerError),
            408 => Some(RetryClass::Timeout),
            _ => None,
        },
        UpstreamProtocol(_) => Some(RetryClass::ServerError),
        UpstreamTimeout(_) => Some(RetryClass::Timeout),
        UpstreamUnreachable { .. } | EgressRefused { .. } | ProviderUnavailable(_) => {
            Some(RetryClass::Connection)
        }
        UpstreamBadRequest { error, .. } => match error.code.as_deref() {
            Some("context_length_exceeded") => Some(RetryClass::ContextLengthExceeded),
            Some(code) if CONTENT_FILTER_CODES.contains(&code) => Some(RetryClass::ContentFilter),
            _ => None,
        },
        InvalidJson(_)
        | InvalidRequest { .. }
        | BodyRead(_)
        | RequestTooLarge { .. }
        | MissingApiKey
        | MetricsUnauthorized
        | InvalidApiKey
        | KeyRevoked
        | KeyExpired
        | ModelNotAllowed { .. }
        | GuardrailBlocked { .. }
        | GuardrailUnavailable(_)
        | ModelNotFound { .. }
        | RegionNotAllowed { .. }
        | QuotaExhausted { .. }
        | RouteNotFound
        | MethodNotAllowed
        | UpstreamAuthFailed { .. }
        | LoopDetected { .. }
        | Overloaded
        | ShuttingDown
        | TooManyConcurrent { .. }
        | RateLimitExceeded { .. }
        | EndpointNotAllowed { .. }
        | ClientIpNotAllowed { .. }
        | UriTooLong { .. }
        | HeaderTooLarge { .. }
        | StoreUnavailable(_)
        | BudgetExceeded { .. }
        | BudgetUnavailable
        | OrganizationSuspended { .. }
        | Internal(_) => None,
    }
}

/// The class of `err` if the route retries it: `retry_on` is the route's list, `None` for
/// [`DEFAULT_RETRY_ON`].
pub fn retryable(err: &GatewayError, retry_on: Option<&[RetryClass]>) -> Option<RetryClass> {
    let class = classify(err)?;
    retry_on
        .unwrap_or(&DEFAULT_RETRY_ON)
        .contains(&class)
        .then_some(class)
}

/// How long `err` asks to wait: its `Retry-After` (delta-seconds, fractional accepted, or an
/// HTTP date relative to `now`); `None` when it carries none or one we cannot read. A date in
/// the past is zero.
pub fn retry_after(err: &GatewayError, now: SystemTime) -> Option<Duration> {
    match err {
        GatewayError::UpstreamRateLimited {
            retry_after: Some(value),
            ..
        } => parse_retry_after(value, now),
        _ => None,
    }
}

fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = text.parse().ok()?;
        return Duration::try_from_secs_f64(secs).ok();
    }
    // IMF-fixdate, the only date form senders may generate (RFC 9110 §5.6.7).
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = SystemTime::from(PrimitiveDateTime::parse(text, format).ok()?.assume_utc());
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Waits between retries of one deployment (see the module doc). One per request.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    retries: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BASE, Self::DEFAULT_CAP)
    }
}

impl Backoff {
    /// The first retry's ceiling.
    pub const DEFAULT_BASE: Duration = Duration::from_millis(100);
    /// The largest ceiling.
    pub const DEFAULT_CAP: Duration = Duration::from_secs(2);

    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            retries: 0,
        }
    }

    /// How long to wait before retrying the deployment that just failed, with `remaining` left
    /// before the request's deadline: the `retry_after` it asked for, or a draw from
    /// `[0, min(cap, base × 2^n)]` for the n-th retry. `None` when that wait would use up the
    /// time left: move on to another candidate without waiting, or give up.
    pub fn next_delay<R: Rng + ?Sized>(
        &mut self,
        retry_after: Option<Duration>,
        remaining: Duration,
        rng: &mut R,
    ) -> Option<Duration> {
        let delay = match retry_after {
            Some(wait) => wait,
            None => {
                let ceiling = self
                    .base
                    .saturating_mul(1 << self.retries.min(20))
                    .min(self.cap);
                jitter(ceiling, rng)
            }
        };
        if delay >= remaining {
            return None;
        }
        self.retries = self.retries.saturating_add(1);
        Some(delay)
    }

    /// Retries granted so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// A uniform draw from `[0, ceiling]`, at nanosecond resolution.
fn jitter<R: Rng + ?Sized>(ceiling: Duration, rng: &mut R) -> Duration {
    let ceiling = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    let span = u128::from(ceiling) + 1;
    // Multiply-shift instead of a modulo: no division, bias below 2^-64 × span.
    let draw = (u128::from(rng.next_u64()) * span) >> 64;
    Duration::from_nanos(u64::try_from(draw).unwrap_or(ceiling))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use axum::http::StatusCode;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::error::{ProviderError, Unreachable};

    fn provider(code: Option<&str>) -> Box<ProviderError> {
        Box::new(ProviderError {
            code: code.map(str::to_owned),
            ..ProviderError::default()
        })
    }

    fn upstream(status: u16) -> GatewayError {
        GatewayError::UpstreamError {
            status,
            error: provider(None),
        }
    }

    fn bad_request(status: StatusCode, code: Option<&str>) -> GatewayError {
        GatewayError::UpstreamBadRequest {
            status,
            error: provider(code),
        }
    }

    /// Fails to compile when `GatewayError` gains a variant, so the table below is extended.
    fn covered(err: &GatewayError) {
        use GatewayError::*;
        match err {
            InvalidJson(_) | InvalidRequest { .. } | BodyRead(_) | RequestTooLarge { .. } => {}
            MissingApiKey | InvalidApiKey | KeyRevoked | KeyExpired | MetricsUnauthorized => {}
            ModelNotAllowed { .. } | ModelNotFound { .. } | RouteNotFound | MethodNotAllowed => {}
            RegionNotAllowed { .. } | QuotaExhausted { .. } => {}
            GuardrailBlocked { .. } | GuardrailUnavailable(_) => {}
            UpstreamRateLimited { .. } | UpstreamBadRequest { .. } | UpstreamAuthFailed { .. } => {}
            UpstreamError { .. } | UpstreamUnreachable { .. } | EgressRefused { .. } => {}
            LoopDetected { .. } | Overloaded | TooManyConcurrent { .. } | ProviderBusy { .. } => {}
            ShuttingDown => {}
            UriTooLong { .. } | HeaderTooLarge { .. } | UpstreamTimeout(_) => {}
            UpstreamProtocol(_) | ProviderUnavailable(_) | StoreUnavailable(_) | Internal(_) => {}
            RateLimitExceeded { .. } | EndpointNotAllowed { .. } | ClientIpNotAllowed { .. } => {}
            BudgetExceeded { .. } | BudgetUnavailable | OrganizationSuspended { .. } => {}
        }
    }

    #[test]
    fn classify_every_error() {
        use GatewayError::*;
        use RetryClass::*;
        let cases: Vec<(GatewayError, Option<RetryClass>)> = vec![
            (InvalidJson("x".into()), None),
            (
                InvalidRequest {
                    message: "m".into(),
                    param: None,
                },
                None,
            ),
            (BodyRead("x".into()), None),
            (RequestTooLarge { limit: 1 }, None),
            (MissingApiKey, None),
            (InvalidApiKey, None),
            (KeyRevoked, None),
            (KeyExpired, None),
            (ModelNotAllowed { model: "m".into() }, None),
            (
                GuardrailBlocked {
                    guardrail: "g".into(),
                    rule: "pii.email".into(),
                },
                None,
            ),
            (GuardrailUnavailable("g".into()), None),
            (ModelNotFound { model: "m".into() }, None),
            (RouteNotFound, None),
            (MethodNotAllowed, None),
            (
                BudgetExceeded {
                    scope: "team",
                    period_end: "never".into(),
                },
                None,
            ),
            (BudgetUnavailable, None),
            (
                OrganizationSuspended {
                    reason: "payment_failed",
                    message: "m".into(),
                },
                None,
            ),
            (
                UpstreamRateLimited {
                    retry_after: None,
                    error: provider(None),
                },
                Some(RateLimited),
            ),
            (bad_request(StatusCode::BAD_REQUEST, None), None),
            (
                bad_request(StatusCode::BAD_REQUEST, Some("invalid_value")),
                None,
            ),
            (bad_request(StatusCode::PAYLOAD_TOO_LARGE, None), None),
            (
                bad_request(StatusCode::BAD_REQUEST, Some("context_length_exceeded")),
                Some(ContextLengthExceeded),
            ),
            (
                bad_request(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("context_length_exceeded"),
                ),
                Some(ContextLengthExceeded),
            ),
            (
                bad_request(StatusCode::BAD_REQUEST, Some("content_filter")),
                Some(ContentFilter),
            ),
            (
                bad_request(StatusCode::BAD_REQUEST, Some("content_policy_violation")),
                Some(ContentFilter),
            ),
            (UpstreamAuthFailed { status: 401 }, None),
            (UpstreamAuthFailed { status: 403 }, None),
            (upstream(500), Some(ServerError)),
            (upstream(502), Some(ServerError)),
            (upstream(503), Some(ServerError)),
            (upstream(504), Some(ServerError)),
            (upstream(529), Some(ServerError)),
            (upstream(408), Some(Timeout)),
            (upstream(404), None),
            (upstream(409), None),
            (
                UpstreamUnreachable {
                    host: "h".into(),
                    why: Unreachable::Refused,
                },
                Some(Connection),
            ),
            (
                UpstreamUnreachable {
                    host: "h".into(),
                    why: Unreachable::Timeout,
                },
                Some(Connection),
            ),
            (
                EgressRefused {
                    host: "h".into(),
                    refused: shared::egress::Refused { range: "loopback" },
                },
                Some(Connection),
            ),
            (LoopDetected { hops: 2 }, None),
            (Overloaded, None),
            (TooManyConcurrent { limit: 1 }, None),
            (ProviderBusy { limit: 1 }, Some(RateLimited)),
            (UriTooLong { limit: 1 }, None),
            (
                HeaderTooLarge {
                    name: "h".into(),
                    limit: 1,
                },
                None,
            ),
            (
                UpstreamTimeout("no response headers in time"),
                Some(Timeout),
            ),
            (UpstreamProtocol("cut".into()), Some(ServerError)),
            (ProviderUnavailable("no base URL".into()), Some(Connection)),
            (StoreUnavailable("down".into()), None),
            (Internal("bug".into()), None),
            (
                RateLimitExceeded {
                    level: crate::governance::limits::Level::Key,
                    metric: crate::governance::limits::Metric::Requests,
                    limit: 1,
                    requested: 1,
                    retry_after_ms: 1000,
                    headers: Default::default(),
                },
                None,
            ),
            (
                EndpointNotAllowed {
                    endpoint: "/v1/embeddings",
                },
                None,
            ),
            (ClientIpNotAllowed { ip: "x".into() }, None),
        ];
        for (err, want) in &cases {
            covered(err);
            assert_eq!(classify(err), *want, "{err:?}");
        }
    }

    #[test]
    fn retryable_honours_the_route_list_or_the_default() {
        let ctx = bad_request(StatusCode::BAD_REQUEST, Some("context_length_exceeded"));
        type Case<'a> = (
            &'a GatewayError,
            Option<&'a [RetryClass]>,
            Option<RetryClass>,
        );
        let cases: [Case<'_>; 6] = [
            (&upstream(503), None, Some(RetryClass::ServerError)),
            (&ctx, None, None),
            (
                &ctx,
                Some(&[RetryClass::ContextLengthExceeded]),
                Some(RetryClass::ContextLengthExceeded),
            ),
            (&upstream(503), Some(&[RetryClass::Timeout]), None),
            (&upstream(503), Some(&[]), None),
            (&GatewayError::Overloaded, None, None),
        ];
        for (err, retry_on, want) in cases {
            assert_eq!(retryable(err, retry_on), want, "{err:?} {retry_on:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let cases = [
            ("7", Some(Duration::from_secs(7))),
            (" 120 ", Some(Duration::from_secs(120))),
            ("0", Some(Duration::ZERO)),
            ("1.5", Some(Duration::from_millis(1500))),
            (
                "Sun, 06 Nov 1994 08:50:07 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("soon", None),
            ("1e3", None),
            ("", None),
            ("Sunday, 06-Nov-94 08:49:37 GMT", None),
        ];
        for (value, want) in cases {
            let err = GatewayError::UpstreamRateLimited {
                retry_after: Some(HeaderValue::from_str(value).expect("header")),
                error: provider(None),
            };
            assert_eq!(retry_after(&err, now), want, "{value:?}");
        }
        assert_eq!(retry_after(&upstream(503), now), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_up_to_the_cap() {
        let mut rng = StdRng::seed_from_u64(1);
        let far = Duration::from_secs(3600);
        // Per retry n: the ceiling min(2 s, 100 ms × 2^n); over many draws the largest comes
        // close to it and the smallest close to zero.
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        let mut highest = [Duration::ZERO; 8];
        let mut lowest = [Duration::MAX; 8];
        for _ in 0..2000 {
            let mut b = Backoff::default();
            for n in 0..ceilings.len() {
                let d = b.next_delay(None, far, &mut rng).expect("fits");
                highest[n] = highest[n].max(d);
                lowest[n] = lowest[n].min(d);
            }
            assert_eq!(b.retries(), 8);
        }
        for (n, ceiling) in ceilings.iter().enumerate() {
            let ceiling = Duration::from_millis(*ceiling);
            assert!(highest[n] <= ceiling, "retry {n}: {:?}", highest[n]);
            assert!(
                highest[n] >= ceiling * 95 / 100,
                "retry {n}: {:?}",
                highest[n]
            );
            assert!(lowest[n] <= ceiling * 5 / 100, "retry {n}: {:?}", lowest[n]);
        }
    }

    #[test]
    fn backoff_never_waits_past_the_deadline() {
        let mut rng = StdRng::seed_from_u64(2);
        let remaining = Duration::from_millis(50);
        let (mut granted, mut refused) = (0, 0);
        for _ in 0..1000 {
            let mut b = Backoff::default();
            for _ in 0..4 {
                match b.next_delay(None, remaining, &mut rng) {
                    Some(d) => {
                        assert!(d < remaining, "{d:?}");
                        granted += 1;
                    }
                    None => refused += 1,
                }
            }
        }
        assert!(granted > 0 && refused > 0, "{granted} / {refused}");
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(None, Duration::ZERO, &mut rng), None);
    }

    #[test]
    fn backoff_honours_retry_after_when_it_fits() {
        let mut rng = StdRng::seed_from_u64(3);
        let secs = Duration::from_secs;
        // (Retry-After, time left, wait)
        let cases = [
            (secs(3), secs(10), Some(secs(3))),
            (secs(10), secs(10), None),
            (secs(30), secs(10), None),
            (Duration::ZERO, secs(1), Some(Duration::ZERO)),
        ];
        for (retry_after, remaining, want) in cases {
            let mut b = Backoff::default();
            assert_eq!(
                b.next_delay(Some(retry_after), remaining, &mut rng),
                want,
                "{retry_after:?} in {remaining:?}"
            );
        }
    }
}
