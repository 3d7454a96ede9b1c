//! Plans: built-in `free`, `payg` and `enterprise`, overridable (by name) and extendable with
//! `SWITCHYARD_BILLING_PLANS`, a JSON file:
//!
//! ```json
//! {"plans": [
//!   {"name": "free", "kind": "free", "included_credit_micros": 10000000},
//!   {"name": "payg", "kind": "payg", "margin_bps": 1500, "stripe_price_id": "price_123"},
//!   {"name": "team", "kind": "payg", "margin_bps": 1000, "stripe_price_id": "price_456"}
//! ]}
//! ```
//!
//! Money is integer micro-dollars and the margin is in basis points (2000 = 20 %), so no float
//! ever touches a bill.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::BillingSettings;

/// How a plan is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// An included monthly credit; when spent the organization is suspended
    /// (`credit_exhausted`) until the month ends or it subscribes.
    Free,
    /// Pay as you go: provider cost × (1 + margin), reported to Stripe as metered usage.
    Payg,
    /// By invoice, outside Checkout: usage is shown, never suspended automatically.
    Enterprise,
}

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    pub kind: PlanKind,
    /// `free`: the credit included each calendar month (UTC), micro-dollars.
    #[serde(default)]
    pub included_credit_micros: i64,
    /// The margin on provider cost, basis points (2000 = 20 %).
    #[serde(default)]
    pub margin_bps: i64,
    /// `payg`: the Stripe metered price (`price_…`) Checkout subscribes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_price_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansFile {
    plans: Vec<Plan>,
}

/// The configured plans.
#[derive(Debug, Clone)]
pub struct Plans {
    plans: Vec<Plan>,
    default: usize,
}

/// The built-in free credit: $5 a month.
pub const DEFAULT_FREE_CREDIT_MICROS: i64 = 5_000_000;
/// The built-in pay-as-you-go margin: 20 %.
pub const DEFAULT_MARGIN_BPS: i64 = 2_000;

impl Plans {
    fn builtin_list(settings: &BillingSettings) -> Vec<Plan> {
        vec![
            Plan {
                name: "free".to_owned(),
                kind: PlanKind::Free,
                included_credit_micros: DEFAULT_FREE_CREDIT_MICROS,
                margin_bps: DEFAULT_MARGIN_BPS,
                stripe_price_id: None,
            },
            Plan {
                name: "payg".to_owned(),
                kind: PlanKind::Payg,
                included_credit_micros: 0,
                margin_bps: DEFAULT_MARGIN_BPS,
                stripe_price_id: settings.stripe_price_id.clone(),
            },
            Plan {
                name: "enterprise".to_owned(),
                kind: PlanKind::Enterprise,
                included_credit_micros: 0,
                margin_bps: 0,
                stripe_price_id: None,
            },
        ]
    }

    /// The built-in plans only (for billing off).
    pub fn builtin(settings: &BillingSettings) -> Self {
        Self {
            plans: Self::builtin_list(settings),
            default: 0,
        }
    }

    /// Built-in plans, overridden by the file; the default plan must exist.
    pub fn load(settings: &BillingSettings) -> anyhow::Result<Self> {
        let mut plans = Self::builtin_list(settings);
        if let Some(path) = &settings.plans_path {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read SWITCHYARD_BILLING_PLANS {}", path.display())
            })?;
            let file: PlansFile = serde_json::from_str(&text)
                .with_context(|| format!("SWITCHYARD_BILLING_PLANS {}", path.display()))?;
            for mut p in file.plans {
                if p.name.trim().is_empty() || p.name.len() > 64 {
                    bail!("SWITCHYARD_BILLING_PLANS: plan names must be 1 to 64 characters");
                }
                if p.included_credit_micros < 0 || !(0..=1_000_000).contains(&p.margin_bps) {
                    bail!(
                        "SWITCHYARD_BILLING_PLANS: plan {:?}: included_credit_micros must be ≥ 0 and margin_bps from 0 to 1000000",
                        p.name
                    );
                }
                if p.kind == PlanKind::Payg && p.stripe_price_id.is_none() {
                    p.stripe_price_id = settings.stripe_price_id.clone();
                }
                match plans.iter_mut().find(|q| q.name == p.name) {
                    Some(existing) => *existing = p,
                    None => plans.push(p),
                }
            }
        }
        let default = plans
            .iter()
            .position(|p| p.name == settings.default_plan)
            .with_context(|| {
                format!(
                    "SWITCHYARD_BILLING_DEFAULT_PLAN {:?} is not a plan",
                    settings.default_plan
                )
            })?;
        Ok(Self { plans, default })
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    pub fn default_plan(&self) -> &Plan {
        &self.plans[self.default]
    }

    pub fn all(&self) -> &[Plan] {
        &self.plans
    }

    /// The first pay-as-you-go plan (what Checkout subscribes to when the request names none).
    pub fn first_payg(&self) -> Option<&Plan> {
        self.plans.iter().find(|p| p.kind == PlanKind::Payg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn file_overrides_and_adds_plans() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("plans.json");
        std::fs::write(
            &path,
            r#"{"plans":[{"name":"free","kind":"free","included_credit_micros":1},
                        {"name":"team","kind":"payg","margin_bps":1000,"stripe_price_id":"price_t"}]}"#,
        )
        .expect("write");
        let settings = BillingSettings {
            plans_path: Some(path),
            stripe_price_id: Some("price_env".into()),
            ..BillingSettings::default()
        };
        let plans = Plans::load(&settings).expect("loads");
        assert_eq!(plans.get("free").expect("free").included_credit_micros, 1);
        assert_eq!(
            plans.get("payg").expect("payg").stripe_price_id.as_deref(),
            Some("price_env")
        );
        assert_eq!(plans.get("team").expect("team").margin_bps, 1000);
        assert_eq!(plans.default_plan().name, "free");
        let bad = BillingSettings {
            default_plan: "nope".into(),
            ..BillingSettings::default()
        };
        assert!(Plans::load(&bad).is_err());
    }
}
