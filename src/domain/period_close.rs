//! When a billing period may close: after it has ended and a grace period has passed (vendors
//! keep revising usage after a month ends), and only after every period before it.
use chrono::{DateTime, Days, Utc};

use super::billing_schedule::BillingSchedule;
use super::error::{Error, FieldViolation, Result};
use super::period::{Period, local_date, rfc3339, start_of_day};

/// Whole days after a period ends before it may close, counted in the period's time zone
/// (a period ending at midnight on 1 December with 3 days closes at midnight on 4 December).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Grace {
    days: u32,
}

impl Grace {
    pub const DEFAULT: Grace = Grace { days: 3 };
    /// Two months: longer would hold invoices back beyond any vendor's month close.
    pub const MAX_DAYS: u32 = 62;

    pub fn days(field: &str, days: u32) -> Result<Self, FieldViolation> {
        if days > Self::MAX_DAYS {
            return Err(FieldViolation::new(
                field,
                format!("{days} days is longer than the {} allowed", Self::MAX_DAYS),
            ));
        }
        Ok(Grace { days })
    }

    pub fn in_days(self) -> u32 {
        self.days
    }
}

impl Default for Grace {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The first instant `period` may close: the start of the day `grace` days after the day it ends
/// on, in its time zone (never before its end).
pub fn closes_at(period: &Period, grace: Grace) -> Result<DateTime<Utc>> {
    let zone = period.time_zone();
    local_date(period.end, zone)
        .checked_add_days(Days::new(u64::from(grace.days)))
        .and_then(|day| start_of_day(zone, day))
        .map(|at| at.max(period.end))
        .ok_or_else(|| Error::Internal(format!("{period} has no closing time")))
}

/// FAILED_PRECONDITION saying when `period` can close, unless it may close at `now`.
pub fn check_may_close(period: &Period, grace: Grace, now: DateTime<Utc>) -> Result<()> {
    let at = closes_at(period, grace)?;
    if now >= at {
        return Ok(());
    }
    let zone = period.time_zone();
    let local = at.with_timezone(&zone).format("%Y-%m-%d %H:%M");
    let state = if now < period.end {
        format!("has not ended yet (it ends at {})", rfc3339(period.end))
    } else {
        format!(
            "ended at {} but is within its {}-day grace period for late vendor revisions",
            rfc3339(period.end),
            grace.days
        )
    };
    Err(Error::precondition(
        "period",
        format!(
            "the billing period {period} {state}; it closes at {} ({local} {})",
            rfc3339(at),
            zone.name()
        ),
    ))
}

/// Whether a requested period is already closed or is the next one to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOrder {
    /// Closed before: closing again returns its invoice.
    AlreadyClosed,
    /// The next period to close.
    Next,
}

/// The period after the last closed one (`last_closed_end`), or, before any close, the one
/// containing `billing_start` (when the customer was created).
pub fn next_period_to_close(
    schedule: &BillingSchedule,
    last_closed_end: Option<DateTime<Utc>>,
    billing_start: DateTime<Utc>,
) -> Result<Period> {
    schedule.period_containing(last_closed_end.unwrap_or(billing_start))
}

/// Periods close in order: FAILED_PRECONDITION when `requested` comes after `next`, naming it.
pub fn check_close_order(requested: &Period, next: &Period) -> Result<CloseOrder> {
    if requested.end <= next.start {
        Ok(CloseOrder::AlreadyClosed)
    } else if requested == next {
        Ok(CloseOrder::Next)
    } else {
        Err(Error::precondition(
            "period",
            format!(
                "the billing period {requested} cannot close before {next}: periods close in order"
            ),
        ))
    }
}

/// The periods from `next` on that may close at `now`, in order, at most `limit` (a close run
/// takes them in batches).
pub fn periods_to_close(
    schedule: &BillingSchedule,
    next: Period,
    grace: Grace,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Period>> {
    let mut due = Vec::new();
    let mut period = next;
    while due.len() < limit && closes_at(&period, grace)? <= now {
        let following = schedule.next(&period)?;
        due.push(period);
        period = following;
    }
    Ok(due)
}
