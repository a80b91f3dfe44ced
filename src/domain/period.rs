//! Billing periods: a customer's cycle (monthly, quarterly, annual) cut at the first instant of
//! a day in its time zone.
//!
//! A period is a run of whole local days `[first day, end day)`; as instants it is
//! `[start of the first day, start of the end day)`. An instant belongs to the period its local
//! date falls in, the rule the daily charge totals use (`ledger_append::usage_date`), so a period's
//! charges are exactly the daily totals of its days. A day whose midnight does not exist (the
//! clock jumps over it) starts at the jump; a day whose midnight happens twice starts at the
//! first one.
//!
//! Navigation across changes of terms (a cycle change taking effect at the next boundary) is in
//! `billing_schedule`; this module cuts the periods of one set of terms.
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

use super::error::{Error, FieldViolation, Result};

/// How often a customer is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BillingCycle {
    Monthly,
    Quarterly,
    Annual,
}

impl BillingCycle {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingCycle::Monthly => "MONTHLY",
            BillingCycle::Quarterly => "QUARTERLY",
            BillingCycle::Annual => "ANNUAL",
        }
    }
}

impl FromStr for BillingCycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "MONTHLY" => Ok(BillingCycle::Monthly),
            "QUARTERLY" => Ok(BillingCycle::Quarterly),
            "ANNUAL" => Ok(BillingCycle::Annual),
            other => Err(format!("unknown billing cycle {other:?}")),
        }
    }
}

/// Where a cycle's periods start: on `day` of `month` and of every cycle length after it.
/// Monthly periods ignore the month. A day past a month's end starts that month's period on its
/// last day (an anchor on the 31st starts on 28 or 29 February, then on 31 March).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BillingAnchor {
    month: u32,
    day: u32,
}

impl BillingAnchor {
    /// Calendar periods: months, quarters from January, years from 1 January.
    pub const CALENDAR: BillingAnchor = BillingAnchor { month: 1, day: 1 };

    /// `month` 1-12 and `day` 1-31; 0 (an unset proto3 field) means the calendar default, 1.
    pub fn parse(field: &str, month: u32, day: u32) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        if month > 12 {
            violations.push(FieldViolation::new(
                format!("{field}.month"),
                format!("{month} is not a month (1 to 12, or 0 for January)"),
            ));
        }
        if day > 31 {
            violations.push(FieldViolation::new(
                format!("{field}.day"),
                format!(
                    "{day} is not a day of a month (1 to 31, or 0 for the 1st; days past a month's end mean its last day)"
                ),
            ));
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(BillingAnchor {
            month: month.max(1),
            day: day.max(1),
        })
    }

    /// A stored anchor (the `customers.billing_anchor_*` columns), checked.
    pub fn from_stored(month: i32, day: i32) -> std::result::Result<Self, String> {
        match (u32::try_from(month), u32::try_from(day)) {
            (Ok(m @ 1..=12), Ok(d @ 1..=31)) => Ok(BillingAnchor { month: m, day: d }),
            _ => Err(format!(
                "billing anchor month {month} day {day} is out of range"
            )),
        }
    }

    pub fn stored_month(self) -> i32 {
        self.month as i32
    }

    pub fn stored_day(self) -> i32 {
        self.day as i32
    }

    /// Calendar periods (1 January), the default.
    pub fn is_calendar(&self) -> bool {
        *self == Self::CALENDAR
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn day(self) -> u32 {
        self.day
    }
}

impl Default for BillingAnchor {
    fn default() -> Self {
        Self::CALENDAR
    }
}

/// How one customer's periods are cut: its cycle, anchor and time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingTerms {
    pub cycle: BillingCycle,
    pub anchor: BillingAnchor,
    pub time_zone: Tz,
}

impl BillingTerms {
    /// Calendar periods of `cycle` in `time_zone`: the default.
    pub fn calendar(cycle: BillingCycle, time_zone: Tz) -> Self {
        BillingTerms {
            cycle,
            anchor: BillingAnchor::CALENDAR,
            time_zone,
        }
    }

    /// The period of these terms whose local days include `at`'s local date.
    pub fn period_containing(&self, at: DateTime<Utc>) -> Result<Period> {
        if !SUPPORTED_YEARS.contains(&at.year()) {
            return Err(out_of_range(at));
        }
        let (first_day, end_day) = self.days_containing(local_date(at, self.time_zone))?;
        Ok(Period {
            start: start_of_day(self.time_zone, first_day).ok_or_else(|| out_of_range(at))?,
            end: start_of_day(self.time_zone, end_day).ok_or_else(|| out_of_range(at))?,
            terms: *self,
        })
    }

    /// `[first day, end day)` of the period containing local date `day`.
    fn days_containing(&self, day: NaiveDate) -> Result<(NaiveDate, NaiveDate)> {
        let step = cycle_months(self.cycle);
        let month_index = i64::from(day.year()) * 12 + i64::from(day.month0());
        let offset = i64::from(self.anchor.month - 1);
        let mut first = month_index - (month_index - offset).rem_euclid(step);
        let range = || Error::Internal(format!("no billing period contains {day}"));
        if self.start_in_month(first).ok_or_else(range)? > day {
            first -= step;
        }
        Ok((
            self.start_in_month(first).ok_or_else(range)?,
            self.start_in_month(first + step).ok_or_else(range)?,
        ))
    }

    /// The anchor day in month `index` (months since year 0), clamped to the month's last day.
    fn start_in_month(&self, index: i64) -> Option<NaiveDate> {
        let year = i32::try_from(index.div_euclid(12)).ok()?;
        let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let day = self.anchor.day.min(u32::from(first.num_days_in_month()));
        NaiveDate::from_ymd_opt(year, month, day)
    }
}

/// Years of the instants periods are computed around (those of a protobuf Timestamp); chrono
/// panics on local times beyond its own range, which starts a few days outside this one.
const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

fn cycle_months(cycle: BillingCycle) -> i64 {
    match cycle {
        BillingCycle::Monthly => 1,
        BillingCycle::Quarterly => 3,
        BillingCycle::Annual => 12,
    }
}

fn out_of_range(at: DateTime<Utc>) -> Error {
    Error::Internal(format!("no billing period can be computed around {at}"))
}

/// `[start, end)` of one billing period, as instants, with the terms that cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub terms: BillingTerms,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    pub fn time_zone(&self) -> Tz {
        self.terms.time_zone
    }

    /// The local date the period starts on.
    pub fn first_day(&self) -> NaiveDate {
        local_date(self.start, self.time_zone())
    }

    /// The local date of the period's last instant.
    pub fn last_day(&self) -> NaiveDate {
        local_date(self.end - Duration::nanoseconds(1), self.time_zone())
    }
}

impl fmt::Display for Period {
    /// "2026-11-01 to 2026-11-30 (Europe/London)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to {} ({})",
            self.first_day(),
            self.last_day(),
            self.time_zone().name()
        )
    }
}

/// The date `at` falls on in `zone` (the same as `ledger_append::usage_date`).
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The first instant whose local date in `zone` is `day` or later: midnight, the earlier of two
/// midnights, or the moment the clock jumps over a missing midnight (or a missing day).
pub fn start_of_day(zone: Tz, day: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = day.and_time(NaiveTime::MIN);
    match zone.from_local_datetime(&midnight) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // UTC offsets stay within ±15 h, so the day starts within a day of the naive
            // midnight read as UTC; transitions fall on whole seconds: bisect over seconds.
            const REACH: i64 = 26 * 3600;
            let naive = midnight.and_utc().timestamp();
            let (mut before, mut from) = (naive - REACH, naive + REACH);
            let date_at = |t: i64| DateTime::from_timestamp(t, 0).map(|at| local_date(at, zone));
            while from - before > 1 {
                let mid = before + (from - before) / 2;
                if date_at(mid)? >= day {
                    from = mid;
                } else {
                    before = mid;
                }
            }
            DateTime::from_timestamp(from, 0)
        }
    }
}

/// An instant as the error messages show it: "2026-12-04T00:00:00Z".
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `[start, end)` of the calendar period containing `at`, as UTC instants (the open-period
/// read's form; see [`BillingTerms::period_containing`]).
pub fn containing(
    cycle: BillingCycle,
    time_zone: &str,
    at: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let tz: Tz = time_zone
        .parse()
        .map_err(|_| Error::Internal(format!("stored time zone {time_zone:?} is unknown")))?;
    let period = BillingTerms::calendar(cycle, tz).period_containing(at)?;
    Ok((period.start, period.end))
}
