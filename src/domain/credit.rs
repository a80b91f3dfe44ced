//! Credit control rules: thresholds as whole percentages of a customer's credit limit, which of
//! them an exposure is at or above, the events a change of exposure implies, and the run-rate
//! forecast. Pure and exact (rust_decimal); the store applies them inside ledger transactions.
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use super::error::{Error, FieldViolation, Result};
use super::money::Currency;

/// The thresholds a tenant starts with: 50 %, 80 % and 100 % of the limit.
pub const DEFAULT_THRESHOLDS: &[u32] = &[50, 80, 100];
/// The limit itself, always evaluated so AUTO_SUSPEND has a crossing to act on.
pub const LIMIT_PERCENT: u32 = 100;
pub const MAX_THRESHOLD_PERCENT: u32 = 1000;
pub const MAX_THRESHOLDS: usize = 10;
/// The run rate is measured over charges whose usage windows start on the last this many days
/// (today and the days before it, in the customer's time zone).
pub const RUN_RATE_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CreditPolicy {
    /// Emit events only.
    Notify,
    /// Crossing the limit requires suspending the customer's services (the event says so until
    /// service management carries it out).
    AutoSuspend,
}

impl CreditPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditPolicy::Notify => "NOTIFY",
            CreditPolicy::AutoSuspend => "AUTO_SUSPEND",
        }
    }
}

impl std::str::FromStr for CreditPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NOTIFY" => Ok(CreditPolicy::Notify),
            "AUTO_SUSPEND" => Ok(CreditPolicy::AutoSuspend),
            other => Err(format!("unknown credit policy {other:?}")),
        }
    }
}

/// Whole percentages of the credit limit, ascending and distinct; always including 100.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Thresholds(Vec<u32>);

impl Thresholds {
    /// Validates a client's list (any order; 1 to 1000 each, distinct, at most 10).
    pub fn parse(field: &str, percents: &[u32]) -> Result<Self, FieldViolation> {
        if percents.is_empty() {
            return Err(FieldViolation::new(
                field,
                "is required (e.g. [50, 80, 100])",
            ));
        }
        if percents.len() > MAX_THRESHOLDS {
            return Err(FieldViolation::new(
                field,
                format!("has {} entries; at most {MAX_THRESHOLDS}", percents.len()),
            ));
        }
        for (i, &p) in percents.iter().enumerate() {
            if !(1..=MAX_THRESHOLD_PERCENT).contains(&p) {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    format!(
                        "{p} is outside 1 to {MAX_THRESHOLD_PERCENT} (percent of the credit limit)"
                    ),
                ));
            }
            if percents[..i].contains(&p) {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    format!("{p} appears twice"),
                ));
            }
        }
        Ok(Self::normalized(percents.to_vec()))
    }

    fn normalized(mut percents: Vec<u32>) -> Self {
        if !percents.contains(&LIMIT_PERCENT) {
            percents.push(LIMIT_PERCENT);
        }
        percents.sort_unstable();
        percents.dedup();
        Thresholds(percents)
    }

    pub fn default_set() -> Self {
        Thresholds(DEFAULT_THRESHOLDS.to_vec())
    }

    pub fn percents(&self) -> &[u32] {
        &self.0
    }

    /// Storage form: "50,80,100".
    pub fn encode(&self) -> String {
        encode_percents(&self.0)
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        decode_percents(text).map(Self::normalized)
    }
}

pub fn encode_percents(percents: &[u32]) -> String {
    percents
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode_percents(text: &str) -> Result<Vec<u32>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| format!("stored threshold list {text:?} is malformed"))
        })
        .collect()
}

/// The thresholds `exposure` is at or above. None are crossed without a positive limit (a zero
/// limit means the customer has no credit limit set).
pub fn crossed(exposure: Decimal, limit: Decimal, thresholds: &Thresholds) -> Vec<u32> {
    if limit <= Decimal::ZERO {
        return Vec::new();
    }
    thresholds
        .0
        .iter()
        .copied()
        .filter(|&p| exposure * Decimal::ONE_HUNDRED >= limit * Decimal::from(p))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Exposure rose to or above the threshold.
    Up,
    /// Exposure fell back below it.
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "UP",
            Direction::Down => "DOWN",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "UP" => Ok(Direction::Up),
            "DOWN" => Ok(Direction::Down),
            other => Err(format!("unknown crossing direction {other:?}")),
        }
    }
}

/// What the consumer of a credit event is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditAction {
    /// Inform only.
    Notify,
    /// AUTO_SUSPEND and the limit was reached: suspend the customer's services.
    SuspensionRequired,
    /// AUTO_SUSPEND and the exposure fell back below the limit: services may be resumed.
    ResumptionAllowed,
}

impl CreditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditAction::Notify => "NOTIFY",
            CreditAction::SuspensionRequired => "SUSPENSION_REQUIRED",
            CreditAction::ResumptionAllowed => "RESUMPTION_ALLOWED",
        }
    }
}

impl std::str::FromStr for CreditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "NOTIFY" => Ok(CreditAction::Notify),
            "SUSPENSION_REQUIRED" => Ok(CreditAction::SuspensionRequired),
            "RESUMPTION_ALLOWED" => Ok(CreditAction::ResumptionAllowed),
            other => Err(format!("unknown credit action {other:?}")),
        }
    }
}

/// One threshold crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub threshold_percent: u32,
    pub direction: Direction,
    pub action: CreditAction,
}

/// The crossings between two crossed sets: upward ones ascending, then downward ones
/// descending. A change that stays on the same side of every threshold yields nothing.
pub fn crossings(before: &[u32], after: &[u32], policy: CreditPolicy) -> Vec<Crossing> {
    let action = |p: u32, direction: Direction| match (policy, p == LIMIT_PERCENT, direction) {
        (CreditPolicy::AutoSuspend, true, Direction::Up) => CreditAction::SuspensionRequired,
        (CreditPolicy::AutoSuspend, true, Direction::Down) => CreditAction::ResumptionAllowed,
        _ => CreditAction::Notify,
    };
    let mut out: Vec<Crossing> = after
        .iter()
        .filter(|p| !before.contains(p))
        .map(|&p| Crossing {
            threshold_percent: p,
            direction: Direction::Up,
            action: action(p, Direction::Up),
        })
        .collect();
    let mut downs: Vec<u32> = before
        .iter()
        .copied()
        .filter(|p| !after.contains(p))
        .collect();
    downs.sort_unstable_by(|a, b| b.cmp(a));
    out.extend(downs.into_iter().map(|p| Crossing {
        threshold_percent: p,
        direction: Direction::Down,
        action: action(p, Direction::Down),
    }));
    out
}

/// When the limit will be reached at the recent run rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// Charges per day over the last [`RUN_RATE_DAYS`] days (by usage day), exact.
    pub run_rate_per_day: Decimal,
    /// Days from `now` until exposure reaches the limit, rounded to 6 places; zero when it
    /// already has; None when it never will at this rate (or there is no limit).
    pub days_to_limit: Option<Decimal>,
    pub limit_reached_at: Option<DateTime<Utc>>,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `recent_charges`: the sum of the customer's charges with usage windows starting in the last
/// [`RUN_RATE_DAYS`] days.
pub fn forecast(
    exposure: Decimal,
    limit: Decimal,
    recent_charges: Decimal,
    now: DateTime<Utc>,
) -> Forecast {
    let run_rate_per_day = recent_charges / Decimal::from(RUN_RATE_DAYS);
    let (days_to_limit, limit_reached_at) = if limit <= Decimal::ZERO {
        (None, None)
    } else if exposure >= limit {
        (Some(Decimal::ZERO), Some(now))
    } else if run_rate_per_day <= Decimal::ZERO {
        (None, None)
    } else {
        let days = ((limit - exposure) / run_rate_per_day).round_dp(6);
        let micros = (days * Decimal::from(MICROS_PER_DAY)).round();
        let at = i64::try_from(micros)
            .ok()
            .and_then(|m| now.checked_add_signed(Duration::microseconds(m)));
        (Some(days), at)
    };
    Forecast {
        run_rate_per_day,
        days_to_limit,
        limit_reached_at,
    }
}

/// A tenant's defaults for customers without their own thresholds or policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditDefaults {
    pub thresholds: Thresholds,
    pub policy: CreditPolicy,
}

impl CreditDefaults {
    /// Defaults from their stored form (thresholds as `Thresholds::encode` text).
    pub fn decode(thresholds: &str, policy: &str) -> Result<Self> {
        Ok(CreditDefaults {
            thresholds: Thresholds::decode(thresholds).map_err(Error::Internal)?,
            policy: policy.parse().map_err(Error::Internal)?,
        })
    }
}

impl Default for CreditDefaults {
    fn default() -> Self {
        CreditDefaults {
            thresholds: Thresholds::default_set(),
            policy: CreditPolicy::Notify,
        }
    }
}

/// A customer's effective credit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditSettings {
    pub customer_id: String,
    pub credit_limit: Decimal,
    pub currency: Currency,
    pub thresholds: Thresholds,
    pub thresholds_inherited: bool,
    pub policy: CreditPolicy,
    pub policy_inherited: bool,
}

/// A change of settings: `None` leaves a field alone; `Some(None)` returns it to the tenant's
/// default.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CreditSettingsPatch {
    pub credit_limit: Option<Decimal>,
    pub thresholds: Option<Option<Thresholds>>,
    pub policy: Option<Option<CreditPolicy>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditPosition {
    pub customer_id: String,
    pub currency: Currency,
    pub credit_limit: Decimal,
    pub open_charges: Decimal,
    pub unpaid_invoices: Decimal,
    pub exposure: Decimal,
    /// Limit minus exposure (negative when over the limit); None when there is no limit.
    pub headroom: Option<Decimal>,
    pub crossed: Vec<u32>,
    pub policy: CreditPolicy,
    pub forecast: Forecast,
    /// The ledger sequence the figures include.
    pub as_of_sequence: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditEvent {
    pub sequence: i64,
    pub customer_id: String,
    pub threshold_percent: u32,
    pub direction: Direction,
    pub exposure: Decimal,
    pub credit_limit: Decimal,
    pub currency: Currency,
    pub policy: CreditPolicy,
    pub action: CreditAction,
    /// The ledger sequence whose write caused the crossing.
    pub ledger_sequence: i64,
    pub recorded_at: DateTime<Utc>,
    /// The suspend or resume this event caused (AUTO_SUSPEND), recorded in the same commit.
    pub service_action_id: Option<String>,
}

/// A customer's stored credit state: its own thresholds and policy (None: the tenant's
/// defaults), what it owes, and the thresholds its exposure has crossed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreditState {
    pub thresholds: Option<Thresholds>,
    pub policy: Option<CreditPolicy>,
    pub open_charges: Decimal,
    pub unpaid_invoices: Decimal,
    pub crossed: Vec<u32>,
}

impl CreditState {
    /// A state from its stored form (thresholds and crossings as `encode_percents` text).
    pub fn decode(
        customer_id: &str,
        thresholds: Option<&str>,
        policy: Option<&str>,
        open_charges: Decimal,
        unpaid_invoices: Decimal,
        crossed: &str,
    ) -> Result<Self> {
        let corrupt =
            |e: String| Error::Internal(format!("stored credit state of {customer_id}: {e}"));
        Ok(CreditState {
            thresholds: thresholds
                .map(Thresholds::decode)
                .transpose()
                .map_err(corrupt)?,
            policy: policy.map(str::parse).transpose().map_err(corrupt)?,
            open_charges,
            unpaid_invoices,
            crossed: decode_percents(crossed).map_err(corrupt)?,
        })
    }
}

/// What credit evaluation reads for the customers a ledger write touched.
#[derive(Debug, Clone, Default)]
pub struct CreditInputs {
    /// (limit, currency) by customer.
    pub limits: HashMap<String, (Decimal, Currency)>,
    pub states: HashMap<String, CreditState>,
    pub defaults: CreditDefaults,
}

/// One customer's exposure after a ledger write.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureUpdate {
    pub customer_id: String,
    pub open_charges: Decimal,
    pub crossed: Vec<u32>,
}

/// Moves each customer's open charges by its delta and re-evaluates its thresholds: the
/// customers' new exposure and the crossings to record (numbered by the caller).
pub fn assess(
    deltas: &[(String, Decimal)],
    mut inputs: CreditInputs,
    ledger_sequence: i64,
) -> Result<(Vec<ExposureUpdate>, Vec<CreditEvent>)> {
    let defaults = &inputs.defaults;
    let mut events = Vec::new();
    let mut updates = Vec::with_capacity(deltas.len());
    for (customer_id, delta) in deltas {
        let Some((limit, currency)) = inputs.limits.get(customer_id) else {
            return Err(Error::not_found("customer", customer_id.clone()));
        };
        let mut state = inputs.states.remove(customer_id).unwrap_or_default();
        state.open_charges += *delta;
        let thresholds = state
            .thresholds
            .clone()
            .unwrap_or_else(|| defaults.thresholds.clone());
        let policy = state.policy.unwrap_or(defaults.policy);
        let exposure = state.open_charges + state.unpaid_invoices;
        // Thresholds no longer configured are forgotten, not "crossed down".
        let before: Vec<u32> = state
            .crossed
            .iter()
            .copied()
            .filter(|p| thresholds.percents().contains(p))
            .collect();
        let after = crossed(exposure, *limit, &thresholds);
        for c in crossings(&before, &after, policy) {
            events.push(CreditEvent {
                sequence: 0,
                customer_id: customer_id.clone(),
                threshold_percent: c.threshold_percent,
                direction: c.direction,
                exposure,
                credit_limit: *limit,
                currency: *currency,
                policy,
                action: c.action,
                ledger_sequence,
                recorded_at: Utc::now(),
                service_action_id: None,
            });
        }
        updates.push(ExposureUpdate {
            customer_id: customer_id.clone(),
            open_charges: state.open_charges,
            crossed: after,
        });
    }
    Ok((updates, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros_free::dec;

    mod rust_decimal_macros_free {
        pub fn dec(s: &str) -> rust_decimal::Decimal {
            rust_decimal::Decimal::from_str_exact(s).unwrap()
        }
    }

    #[test]
    fn thresholds_validate_and_always_include_the_limit() {
        assert_eq!(
            Thresholds::parse("t", &[80, 50]).unwrap().percents(),
            &[50, 80, 100]
        );
        assert!(Thresholds::parse("t", &[]).is_err());
        assert!(Thresholds::parse("t", &[0]).is_err());
        assert!(Thresholds::parse("t", &[1001]).is_err());
        assert_eq!(Thresholds::parse("t", &[50, 50]).unwrap_err().field, "t[1]");
        let t = Thresholds::parse("t", &[50, 120]).unwrap();
        assert_eq!(Thresholds::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn crossed_is_exact_at_the_boundary() {
        let t = Thresholds::default_set();
        assert_eq!(crossed(dec("79.99"), dec("100"), &t), vec![50]);
        assert_eq!(crossed(dec("80"), dec("100"), &t), vec![50, 80]);
        assert_eq!(
            crossed(dec("100.0000000001"), dec("100"), &t),
            vec![50, 80, 100]
        );
        assert!(crossed(dec("1000"), Decimal::ZERO, &t).is_empty());
    }

    #[test]
    fn one_event_per_crossing_in_either_direction() {
        let up = crossings(&[50], &[50, 80, 100], CreditPolicy::AutoSuspend);
        assert_eq!(up.len(), 2);
        assert_eq!(up[1].action, CreditAction::SuspensionRequired);
        assert!(crossings(&[50, 80], &[50, 80], CreditPolicy::Notify).is_empty());
        let down = crossings(&[50, 80, 100], &[50], CreditPolicy::Notify);
        assert_eq!(
            down.iter().map(|c| c.threshold_percent).collect::<Vec<_>>(),
            vec![100, 80]
        );
        assert!(down.iter().all(|c| c.direction == Direction::Down));
    }

    #[test]
    fn forecast_divides_headroom_by_the_daily_run_rate() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let f = forecast(dec("700"), dec("1000"), dec("700"), now);
        assert_eq!(f.run_rate_per_day, dec("100"));
        assert_eq!(f.days_to_limit, Some(dec("3")));
        assert_eq!(f.limit_reached_at, Some(now + Duration::days(3)));
        let f = forecast(dec("10"), dec("1000"), dec("1"), now);
        assert_eq!(f.days_to_limit, Some(dec("6930")));
        assert_eq!(
            forecast(dec("10"), dec("1000"), dec("0"), now).days_to_limit,
            None
        );
        assert_eq!(
            forecast(dec("1000"), dec("1000"), dec("0"), now).days_to_limit,
            Some(Decimal::ZERO)
        );
        assert_eq!(
            forecast(dec("10"), dec("0"), dec("5"), now).days_to_limit,
            None
        );
    }
}
