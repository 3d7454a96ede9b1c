//! Governance records both planes agree on: budgets (what the control plane manages and the
//! data plane enforces), rate limits, key scopes, and the period arithmetic that decides which
//! spending window a request falls in.
//!
//! Period boundaries are computed here, once, so the control plane's `GET /budgets` and every
//! data-plane node agree to the second on when a period rolls over: at local midnight
//! (`daily`), local midnight on Monday (`weekly`), local midnight on the 1st (`monthly`) in the
//! budget's IANA time zone, DST included. A `lifetime` budget has one window from the Unix
//! epoch with no end.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a budget applies to. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// Every request of the organization (`scope_id` = the tenant id).
    Tenant,
    /// Every request made with a key of the team.
    Team,
    /// Every request made with one key.
    Key,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Tenant => "tenant",
            BudgetScope::Team => "team",
            BudgetScope::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tenant" => Some(BudgetScope::Tenant),
            "team" => Some(BudgetScope::Team),
            "key" => Some(BudgetScope::Key),
            _ => None,
        }
    }
}

/// How often a budget starts over. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
    /// Never resets.
    Lifetime,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Weekly => "weekly",
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Lifetime => "lifetime",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(BudgetPeriod::Daily),
            "weekly" => Some(BudgetPeriod::Weekly),
            "monthly" => Some(BudgetPeriod::Monthly),
            "lifetime" => Some(BudgetPeriod::Lifetime),
            _ => None,
        }
    }
}

/// A budget as published in [`crate::config::TenantConfig::budgets`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    pub id: Uuid,
    pub scope: BudgetScope,
    /// The tenant, team or key id the budget applies to.
    pub scope_id: Uuid,
    /// The cap, in µ$ (integer micro-dollars).
    pub limit_micros: i64,
    pub period: BudgetPeriod,
    /// IANA time zone name the period boundaries are computed in (e.g. `Europe/Berlin`).
    pub timezone: String,
    /// A hard budget refuses requests that could exceed it; a soft one only alerts.
    pub hard: bool,
    /// Percentages of the cap at which an alert fires (once per threshold per period).
    #[serde(default)]
    pub alert_thresholds: Vec<u32>,
}

impl BudgetRecord {
    /// The window containing `now`.
    pub fn window(&self, now: OffsetDateTime) -> Result<PeriodWindow, PeriodError> {
        period_window(self.period, &self.timezone, now)
    }

    /// Whether this budget applies to a request of `key_id` (in `team_id`) of `tenant_id`.
    pub fn applies_to(&self, tenant_id: Uuid, team_id: Option<Uuid>, key_id: Uuid) -> bool {
        match self.scope {
            BudgetScope::Tenant => self.scope_id == tenant_id,
            BudgetScope::Team => team_id == Some(self.scope_id),
            BudgetScope::Key => self.scope_id == key_id,
        }
    }
}

/// One period of a budget: `[start, end)`; `end` is `None` for `lifetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodWindow {
    pub start: OffsetDateTime,
    pub end: Option<OffsetDateTime>,
}

impl PeriodWindow {
    /// The window's id in ledger keys: its start as Unix seconds.
    pub fn id(&self) -> i64 {
        self.start.unix_timestamp()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error("unknown time zone {0:?} (expected an IANA name such as \"Europe/Berlin\")")]
    UnknownTimeZone(String),
    #[error("time out of range")]
    OutOfRange,
}

/// Whether `name` is a known IANA time zone.
pub fn is_valid_timezone(name: &str) -> bool {
    jiff::tz::TimeZone::get(name).is_ok()
}

/// The window of `period` in time zone `tz` that contains `now`.
pub fn period_window(
    period: BudgetPeriod,
    tz: &str,
    now: OffsetDateTime,
) -> Result<PeriodWindow, PeriodError> {
    if period == BudgetPeriod::Lifetime {
        return Ok(PeriodWindow {
            start: OffsetDateTime::UNIX_EPOCH,
            end: None,
        });
    }
    let zone =
        jiff::tz::TimeZone::get(tz).map_err(|_| PeriodError::UnknownTimeZone(tz.to_owned()))?;
    let instant =
        jiff::Timestamp::new(now.unix_timestamp(), 0).map_err(|_| PeriodError::OutOfRange)?;
    let local = instant.to_zoned(zone);
    let date = local.date();
    let days = |d: jiff::civil::Date, n: i64| {
        d.checked_add(jiff::Span::new().days(n))
            .map_err(|_| PeriodError::OutOfRange)
    };
    let (start_date, end_date) = match period {
        BudgetPeriod::Daily => (date, days(date, 1)?),
        BudgetPeriod::Weekly => {
            let monday = days(date, -i64::from(date.weekday().to_monday_zero_offset()))?;
            (monday, days(monday, 7)?)
        }
        BudgetPeriod::Monthly => {
            let first = date.first_of_month();
            let next = first
                .checked_add(jiff::Span::new().months(1))
                .map_err(|_| PeriodError::OutOfRange)?;
            (first, next)
        }
        BudgetPeriod::Lifetime => return Err(PeriodError::OutOfRange),
    };
    let start = start_of_day(start_date, local.time_zone())?;
    let end = start_of_day(end_date, local.time_zone())?;
    Ok(PeriodWindow {
        start,
        end: Some(end),
    })
}

/// The first instant of `date` in `zone` (midnight, or the first valid time after a DST gap).
fn start_of_day(
    date: jiff::civil::Date,
    zone: &jiff::tz::TimeZone,
) -> Result<OffsetDateTime, PeriodError> {
    let zoned = date
        .to_zoned(zone.clone())
        .map_err(|_| PeriodError::OutOfRange)?;
    OffsetDateTime::from_unix_timestamp(zoned.timestamp().as_second())
        .map_err(|_| PeriodError::OutOfRange)
}

/// Requests- and tokens-per-minute limits of one level (key, team or tenant); `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.rpm_limit.is_none() && self.tpm_limit.is_none()
    }
}

/// An API a key may be scoped to. Wire names are a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEndpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/messages` (and `/v1/messages/count_tokens`).
    Messages,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl KeyEndpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEndpoint::Chat => "chat",
            KeyEndpoint::Messages => "messages",
            KeyEndpoint::Embeddings => "embeddings",
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn window(
        period: BudgetPeriod,
        tz: &str,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, OffsetDateTime) {
        let w = period_window(period, tz, now).expect("window");
        (w.start, w.end.expect("has an end"))
    }

    #[test]
    fn daily_rolls_over_at_local_midnight() {
        let (s, e) = window(BudgetPeriod::Daily, "UTC", datetime!(2026-12-06 13:00 UTC));
        assert_eq!(
            (s, e),
            (
                datetime!(2026-12-06 00:00 UTC),
                datetime!(2026-12-07 00:00 UTC)
            )
        );
        // 23:30 UTC on the 6th is already the 7th in Berlin (UTC+1 in winter).
        let (s, e) = window(
            BudgetPeriod::Daily,
            "Europe/Berlin",
            datetime!(2026-12-06 23:30 UTC),
        );
        assert_eq!(
            (s, e),
            (
                datetime!(2026-12-06 23:00 UTC),
                datetime!(2026-12-07 23:00 UTC)
            )
        );
    }

    #[test]
    fn a_dst_day_is_23_hours_long() {
        // Europe/Berlin springs forward on 2027-03-28.
        let (s, e) = window(
            BudgetPeriod::Daily,
            "Europe/Berlin",
            datetime!(2027-03-28 12:00 UTC),
        );
        assert_eq!(e - s, time::Duration::hours(23));
    }

    #[test]
    fn weekly_starts_on_monday_and_monthly_on_the_first() {
        // 2026-12-06 is a Sunday.
        let (s, e) = window(BudgetPeriod::Weekly, "UTC", datetime!(2026-12-06 10:00 UTC));
        assert_eq!(
            (s, e),
            (
                datetime!(2026-11-30 00:00 UTC),
                datetime!(2026-12-07 00:00 UTC)
            )
        );
        let (s, e) = window(BudgetPeriod::Weekly, "UTC", datetime!(2026-12-07 00:00 UTC));
        assert_eq!(s, datetime!(2026-12-07 00:00 UTC));
        assert_eq!(e, datetime!(2026-12-14 00:00 UTC));
        let (s, e) = window(
            BudgetPeriod::Monthly,
            "America/New_York",
            datetime!(2026-12-01 03:00 UTC),
        );
        // Still November in New York (UTC-5).
        assert_eq!(
            (s, e),
            (
                datetime!(2026-11-01 04:00 UTC),
                datetime!(2026-12-01 05:00 UTC)
            )
        );
    }

    #[test]
    fn lifetime_has_one_window_and_bad_zones_are_named() {
        let w = period_window(
            BudgetPeriod::Lifetime,
            "Nowhere/Else",
            datetime!(2026-12-06 10:00 UTC),
        )
        .expect("lifetime needs no zone");
        assert_eq!((w.id(), w.end), (0, None));
        assert_eq!(
            period_window(
                BudgetPeriod::Daily,
                "Nowhere/Else",
                datetime!(2026-12-06 10:00 UTC)
            ),
            Err(PeriodError::UnknownTimeZone("Nowhere/Else".into()))
        );
        assert!(is_valid_timezone("Asia/Tokyo"));
        assert!(!is_valid_timezone("Mars/Olympus"));
    }
}
