//! Stage limit: the key's, its team's and its organization's rate limits (requests and tokens
//! per minute), checked after authentication (so a limit is always attributed to a key) and
//! before any upstream work. The counting is [`crate::governance::limits`]'s: the node's leases
//! in the steady state, one atomic Redis script covering every level that has a limit when a
//! lease is short, or nothing at all when no level has a limit.
//!
//! - RPM takes 1 per request. TPM takes an estimate: the prompt's tokens plus the most the
//!   request may generate (the client's `max_tokens` / `max_completion_tokens`, else the key's
//!   `max_tokens_per_request`, else the largest `max_output_tokens` of the tenant's
//!   deployments or route candidates under that name, else [`DEFAULT_MAX_OUTPUT`]). The meter
//!   corrects it with the actual total after the call ([`RateOutcome`] carries the take).
//! - A refusal is [`GatewayError::RateLimitExceeded`]: 429, `code: "rate_limit_exceeded"`, `type`
//!   `requests` or `tokens` as OpenAI sends them, `Retry-After` in seconds (at least 1) and the
//!   headers below.
//! - Every response of a key under any limit carries `x-ratelimit-{limit,remaining,reset}-
//!   {requests,tokens}` ([`RateHeaders`]) for the metrics that have a limit: the numbers of the
//!   most restrictive level (least remaining), reset in OpenAI's duration format (`1s`, `6m0s`,
//!   `59.5s`, `20ms`). The stage's outcome goes to the meter, which puts the headers on whatever
//!   answer it sends (success, stream, or an error after this stage).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use shared::config::RateLimits;

use crate::error::GatewayError;
use crate::governance::limits::{self, Decision, Level, Limit, Metric, TokenTake};
use crate::pipeline::{AuthContext, Intent};
use crate::state::AppState;

/// The output estimate when neither the request, the key nor any deployment names a maximum.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// The header names, as OpenAI spells them.
pub const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
pub const REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
pub const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// One metric's header values: the most restrictive level's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// The `x-ratelimit-*` headers of a request; empty for a key under no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<MetricHeaders>,
    pub tokens: Option<MetricHeaders>,
}

impl RateHeaders {
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Sets the headers on `headers` (nothing when empty).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let names = [
            (
                self.requests,
                [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
            ),
            (self.tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]),
        ];
        for (values, [limit, remaining, reset]) in names {
            let Some(v) = values else { continue };
            headers.insert(limit, HeaderValue::from(v.limit));
            headers.insert(remaining, HeaderValue::from(v.remaining));
            if let Ok(value) = HeaderValue::from_str(&limits::format_reset(v.reset_ms)) {
                headers.insert(reset, value);
            }
        }
    }
}

/// What the stage hands the meter: the headers for the answer, and the TPM estimate to correct.
#[derive(Debug, Default)]
pub struct RateOutcome {
    pub headers: RateHeaders,
    pub tokens: Option<TokenTake>,
}

/// Admits (taking every applicable limit) or refuses the request. A key, team and tenant
/// without limits cost nothing: no Redis call, no allocation.
pub async fn check(
    state: &AppState,
    auth: &AuthContext,
    intent: &Intent<'_>,
) -> Result<RateOutcome, GatewayError> {
    let key = &auth.key;
    let tenant = state
        .store()
        .tenant(key.tenant_id)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(e.to_string()))?;
    let (tenant_limits, team_limits) = match &tenant {
        Some(view) => (
            view.limits(),
            key.team_id.and_then(|team| view.team_limits(team)),
        ),
        None => (RateLimits::default(), None),
    };
    let levels = [
        (Level::Key, key.key_id, key.limits),
        (
            Level::Team,
            key.team_id.unwrap_or_default(),
            team_limits.unwrap_or_default(),
        ),
        (Level::Tenant, key.tenant_id, tenant_limits),
    ];
    if levels.iter().all(|(_, _, l)| l.is_empty()) {
        return Ok(RateOutcome::default());
    }

    let mut token_cost = None;
    let mut checks = Vec::with_capacity(6);
    for (level, id, l) in levels {
        if let Some(rpm) = l.rpm_limit {
            checks.push(Limit {
                level,
                id,
                metric: Metric::Requests,
                limit: u64::from(rpm),
                cost: 1,
            });
        }
        if let Some(tpm) = l.tpm_limit {
            let cost = *token_cost.get_or_insert_with(|| token_estimate(auth, intent, &tenant));
            checks.push(Limit {
                level,
                id,
                metric: Metric::Tokens,
                limit: tpm,
                cost,
            });
        }
    }

    let limiter = state.rate_limiter();
    let decision = limiter.check(key.tenant_id, &checks).await;
    let headers = headers_of(&checks, &decision);
    if !decision.admitted {
        return Err(refusal(&checks, &decision, headers));
    }
    Ok(RateOutcome {
        headers,
        tokens: TokenTake::of(limiter, key.tenant_id, &checks, &decision),
    })
}

/// The TPM estimate: prompt tokens + the most the request may generate (see the module docs).
fn token_estimate(
    auth: &AuthContext,
    intent: &Intent<'_>,
    tenant: &Option<std::sync::Arc<crate::store::TenantView>>,
) -> u64 {
    let max_output = intent
        .max_output_tokens
        .or(auth.key.max_tokens_per_request)
        .map(u64::from)
        .or_else(|| {
            let view = tenant.as_ref()?;
            let indices: Vec<usize> = match view.route(intent.model) {
                Some(route) => route
                    .candidates
                    .iter()
                    .filter_map(|c| view.deployment_index(c.deployment_id))
                    .collect(),
                None => view.deployments_named(intent.model).to_vec(),
            };
            indices
                .into_iter()
                .filter_map(|i| view.deployment(i)?.max_output_tokens)
                .max()
                .map(u64::from)
        })
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    intent.prompt_tokens().saturating_add(max_output)
}

/// Per metric, the standing with the least remaining (ties: the smaller limit).
fn headers_of(checks: &[Limit], decision: &Decision) -> RateHeaders {
    let pick = |metric: Metric| {
        checks
            .iter()
            .zip(&decision.standings)
            .filter(|(l, _)| l.metric == metric)
            .map(|(_, s)| s)
            .min_by_key(|s| (s.remaining, s.limit))
            .map(|s| MetricHeaders {
                limit: s.limit,
                remaining: s.remaining,
                reset_ms: s.reset_ms,
            })
    };
    RateHeaders {
        requests: pick(Metric::Requests),
        tokens: pick(Metric::Tokens),
    }
}

/// The refusal: the limit that takes longest to have room names the error; `Retry-After` is
/// that wait.
fn refusal(checks: &[Limit], decision: &Decision, headers: RateHeaders) -> GatewayError {
    let worst = checks
        .iter()
        .zip(&decision.standings)
        .filter(|(_, s)| s.retry_ms > 0)
        .max_by_key(|(_, s)| s.retry_ms);
    if let Some((l, _)) = worst {
        metrics::counter!(
            "switchyard_rate_limit_refusals_total",
            "scope" => match l.level {
                Level::Key => "key",
                Level::Team => "team",
                Level::Tenant => "organization",
            },
            "kind" => l.metric.as_str(),
        )
        .increment(1);
    }
    match worst {
        Some((l, s)) => GatewayError::RateLimitExceeded {
            level: l.level,
            metric: l.metric,
            limit: s.limit,
            requested: l.cost,
            retry_after_ms: s.retry_ms,
            headers,
        },
        // Refused with no limit over (cannot happen with a consistent reply): ask for a retry.
        None => GatewayError::RateLimitExceeded {
            level: Level::Key,
            metric: Metric::Requests,
            limit: 0,
            requested: 1,
            retry_after_ms: 1000,
            headers,
        },
    }
}
