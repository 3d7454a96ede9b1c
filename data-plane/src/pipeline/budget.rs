//! Stage reserve budget (after route: it needs the plan's prices): reserve the request's
//! worst-case cost against every budget that applies to it — its key's, its team's and its
//! tenant's — at once, all or nothing, before the provider is called.
//!
//! - Applicable budgets: the tenant's published [`BudgetRecord`]s (from the tenant view the
//!   route stage already loaded, no lookup) that [`BudgetRecord::applies_to`] the key; the
//!   window is the period containing now in the budget's time zone. A request with no
//!   applicable budget costs nothing here (no allocation, no round trip).
//! - Worst case ([`worst_case_micros`]): prompt tokens × the highest input price among the
//!   plan's candidates + max output tokens × the highest output price, rounded up. Max output:
//!   the client's (`max_completion_tokens`/`max_tokens`), else the key's
//!   `max_tokens_per_request`, else the largest `max_output_tokens` of the candidates, else
//!   [`DEFAULT_MAX_OUTPUT`]; embeddings have no output.
//! - The reservation goes through the [`Ledger`](crate::governance::ledger::Ledger) (exact
//!   under concurrency, leases across nodes). A hard budget without room refuses with 429
//!   `budget_exceeded`; soft budgets never refuse but count the spend. Redis unreachable beyond
//!   what this node's leases cover: 503 `budget_unavailable` (fail closed).
//! - The meter settles the [`Reservation`] exactly once with the actual cost, on success,
//!   error, client disconnect and upstream cut alike; a reservation dropped unsettled (a panic)
//!   releases its hold.

use shared::config::{DeploymentRecord, KeyRecord};
use shared::governance::{BudgetRecord, PeriodWindow};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::GatewayError;
use crate::governance::ledger::{Claim, Hold, Refusal, WindowKey};
use crate::pipeline::route::Plan;
use crate::pipeline::{Api, AuthContext, Intent};
use crate::state::AppState;

/// The output tokens assumed when neither the request, the key nor any candidate sets a limit.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;
/// How long a window's ledger keys stay after it ended (reports of late settles, reads).
const KEEP_AFTER_WINDOW: i64 = 7 * 86_400;

/// Money held against the applicable budgets for one request, until the meter settles it.
/// Empty when no budget applies.
#[derive(Debug, Default)]
#[must_use = "a reservation must reach the meter, which settles or releases it"]
pub struct Reservation {
    hold: Option<Hold>,
}

impl Reservation {
    /// Settles the reservation with the request's actual cost (0 for a request that failed),
    /// releasing the rest. Called once, by the meter, when the usage event is built.
    pub fn settle(self, actual_cost_micros: i64) {
        if let Some(hold) = self.hold {
            hold.settle(actual_cost_micros);
        }
    }

    /// µ$ held per hard budget (0 when none applies).
    pub fn held_micros(&self) -> i64 {
        self.hold.as_ref().map_or(0, Hold::amount)
    }
}

/// Reserves the request's worst-case cost for `plan` against every applicable budget.
pub async fn reserve(
    state: &AppState,
    auth: &AuthContext,
    intent: &Intent<'_>,
    plan: &Plan,
) -> Result<Reservation, GatewayError> {
    let Some((applicable, claims, worst)) = prepare(auth, intent, plan) else {
        return Ok(Reservation::default());
    };
    match state.ledger().reserve(&claims, worst).await {
        Ok(hold) => Ok(Reservation { hold: Some(hold) }),
        Err(Refusal::Exceeded(i)) => {
            let (budget, window) = applicable[i.min(applicable.len() - 1)];
            Err(GatewayError::BudgetExceeded {
                scope: budget.scope.as_str(),
                period_end: window.end.map_or_else(
                    || "never".to_owned(),
                    |end| end.format(&Rfc3339).unwrap_or_else(|_| end.to_string()),
                ),
            })
        }
        Err(Refusal::Unavailable) => Err(GatewayError::BudgetUnavailable),
    }
}

/// The applicable budgets with their current windows, their ledger claims and the request's
/// worst-case cost; `None` when no budget applies. (Synchronous, so nothing here is held
/// across the ledger's await.)
#[allow(clippy::type_complexity)]
fn prepare<'p>(
    auth: &AuthContext,
    intent: &Intent<'_>,
    plan: &'p Plan,
) -> Option<(Vec<(&'p BudgetRecord, PeriodWindow)>, Vec<Claim>, i64)> {
    // Every candidate comes from the one tenant view the route stage loaded.
    let tenant = &plan.candidates.first()?.tenant;
    let key = &auth.key;
    let budgets = tenant.budgets();
    if !budgets
        .iter()
        .any(|b| b.applies_to(key.tenant_id, key.team_id, key.key_id))
    {
        return None;
    }
    let now = OffsetDateTime::now_utc();
    let applicable: Vec<(&BudgetRecord, PeriodWindow)> = budgets
        .iter()
        .filter(|b| b.applies_to(key.tenant_id, key.team_id, key.key_id))
        .map(|b| (b, window_of(b, now)))
        .collect();
    let claims = applicable
        .iter()
        .map(|(b, window)| Claim {
            window: WindowKey {
                tenant_id: key.tenant_id,
                budget_id: b.id,
                window_id: window.id(),
            },
            limit_micros: b.limit_micros,
            hard: b.hard,
            expire_at: window
                .end
                .map(|end| end.unix_timestamp() + KEEP_AFTER_WINDOW),
        })
        .collect();
    let deployments = || plan.candidates.iter().map(|c| c.deployment());
    let worst = worst_case_micros(
        intent.prompt_tokens(),
        max_output_tokens(intent, key, deployments()),
        deployments(),
    );
    Some((applicable, claims, worst))
}

/// The window of `budget` containing `now`. A time zone this node does not know (the control
/// plane validates them, so only a newer tz database could cause it) counts in UTC.
fn window_of(budget: &BudgetRecord, now: OffsetDateTime) -> PeriodWindow {
    budget.window(now).unwrap_or_else(|e| {
        tracing::warn!(budget = %budget.id, error = %e, "budget period computed in UTC");
        shared::governance::period_window(budget.period, "UTC", now).unwrap_or(PeriodWindow {
            start: OffsetDateTime::UNIX_EPOCH,
            end: None,
        })
    })
}

/// The most output tokens the request may produce (see the module docs).
pub fn max_output_tokens<'a>(
    intent: &Intent<'_>,
    key: &KeyRecord,
    candidates: impl Iterator<Item = &'a DeploymentRecord>,
) -> u64 {
    if intent.api == Api::Embeddings {
        return 0;
    }
    intent
        .max_output_tokens
        .or(key.max_tokens_per_request)
        .or_else(|| candidates.filter_map(|d| d.max_output_tokens).max())
        .map_or(DEFAULT_MAX_OUTPUT, u64::from)
}

/// `prompt_tokens × max input price + output_tokens × max output price` over `candidates`,
/// in µ$ (prices are µ$ per million tokens), rounded up; 128-bit arithmetic, saturating.
pub fn worst_case_micros<'a>(
    prompt_tokens: u64,
    output_tokens: u64,
    candidates: impl Iterator<Item = &'a DeploymentRecord>,
) -> i64 {
    let (input, output) = candidates.fold((0i64, 0i64), |(i, o), d| {
        (
            i.max(d.input_price_micros_per_mtok),
            o.max(d.output_price_micros_per_mtok),
        )
    });
    let total = u128::from(prompt_tokens) * input.max(0) as u128
        + u128::from(output_tokens) * output.max(0) as u128;
    let micros = total.div_ceil(1_000_000);
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::pipeline::Parsed;
    use uuid::Uuid;

    fn deployment(input: i64, output: i64, max_output: Option<u32>) -> DeploymentRecord {
        DeploymentRecord {
            id: Uuid::new_v4(),
            name: "m".into(),
            provider_id: Uuid::new_v4(),
            upstream_model: "m".into(),
            input_price_micros_per_mtok: input,
            output_price_micros_per_mtok: output,
            region: None,
            cached_input_price_micros_per_mtok: None,
            max_output_tokens: max_output,
            catalog_id: None,
            mode: Default::default(),
            context_window: None,
            capabilities: None,
            rpm_limit: None,
            tpm_limit: None,
        }
    }

    fn intent(api: Api, max: Option<u32>) -> Intent<'static> {
        Intent {
            model: "m",
            api,
            stream: false,
            max_output_tokens: max,
            sticky_key: None,
            needs: Default::default(),
            body: Parsed::None,
            body_bytes: 0,
            prompt_estimate: Default::default(),
        }
    }

    fn key(max: Option<u32>) -> KeyRecord {
        KeyRecord {
            key_id: Uuid::new_v4(),
            key_hash: "h".into(),
            tenant_id: Uuid::new_v4(),
            team_id: None,
            name: "k".into(),
            allowed_models: None,
            expires_at: None,
            revoked_at: None,
            version: 1,
            limits: Default::default(),
            endpoints: None,
            allowed_cidrs: None,
            max_tokens_per_request: max,
            metadata: Default::default(),
            cache: None,
        }
    }

    #[test]
    fn worst_case_takes_the_most_expensive_prices_and_rounds_up() {
        // Input from one candidate, output from another: each the most expensive.
        let a = deployment(2_500_000, 10_000_000, None);
        let b = deployment(3_000_000, 4_000_000, None);
        // 1000 × 3 $/M + 100 × 10 $/M = 0.003 + 0.001 $ = 4000 µ$.
        assert_eq!(worst_case_micros(1000, 100, [&a, &b].into_iter()), 4000);
        // 1 token × 1 µ$/M = 0.000001 µ$, rounded up to 1.
        let cheap = deployment(1, 1, None);
        assert_eq!(worst_case_micros(1, 0, std::iter::once(&cheap)), 1);
        assert_eq!(worst_case_micros(0, 0, std::iter::once(&cheap)), 0);
        // Saturates instead of overflowing.
        let dear = deployment(i64::MAX, i64::MAX, None);
        assert_eq!(
            worst_case_micros(u64::MAX, u64::MAX, std::iter::once(&dear)),
            i64::MAX
        );
    }

    #[test]
    fn max_output_prefers_the_client_then_the_key_then_the_model() {
        let ds = [
            deployment(1, 1, Some(8_000)),
            deployment(1, 1, Some(16_000)),
        ];
        let none = [deployment(1, 1, None)];
        let m = |i: &Intent<'_>, k: &KeyRecord, d: &[DeploymentRecord]| {
            max_output_tokens(i, k, d.iter())
        };
        assert_eq!(m(&intent(Api::Chat, Some(50)), &key(Some(100)), &ds), 50);
        assert_eq!(m(&intent(Api::Chat, None), &key(Some(100)), &ds), 100);
        assert_eq!(m(&intent(Api::Chat, None), &key(None), &ds), 16_000);
        assert_eq!(
            m(&intent(Api::Chat, None), &key(None), &none),
            DEFAULT_MAX_OUTPUT
        );
        assert_eq!(m(&intent(Api::Embeddings, Some(50)), &key(None), &ds), 0);
    }
}
