//! A close from charges summed in the database rather than read one by one: the store groups the
//! charges a close may see by [`GroupClass`] (computed with [`CloseBounds`], which restates the
//! selection rule of `invoice_selection` for one close) and by vendor, service, meter and unit,
//! and this module turns the groups into the same invoice and `open_from_sequence` as
//! `close_invoice` over the single charges (property tested in `invoice_properties`).
//!
//! The charges of the period itself may come summed without sequences ([`PeriodCharges`]):
//! every charge whose window starts in the period and that is recorded by the close sequence is
//! on the invoice (no earlier close billed a window of this period), so the store can take
//! their sums from the daily totals and rollups the ledger write keeps, when the period is
//! whole local days of the zone those are kept in ([`period_days`]).
//!
//! Why: reading and decoding every charge event made a close 15-23× the cost of one SQL
//! `GROUP BY` over the same rows (BENCHMARKS.md, "Month close benchmark"); summing them in SQL
//! still read every one.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::error::{Error, Result};
use super::invoice::{ChargeAmount, InvoiceContext, InvoiceDraft, assemble};
use super::invoice_selection::{ClosePoint, on_invoice, open_from_sequence};
use super::period::{Period, local_date, start_of_day};
use super::spend::DayRange;

/// One close's cut of the customer's ledger, as plain bounds a SQL `WHERE` and `CASE` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseBounds {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The ledger sequence of this close: nothing after it is seen.
    pub close_sequence: i64,
    /// The previous close's sequence (0 before the first close): charges for earlier periods up
    /// to it are on earlier invoices.
    pub settled_through: i64,
}

/// Where a charge seen by a close goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupClass {
    /// A line of the period itself.
    Period,
    /// A prior-period adjustment (its window starts before the period).
    Adjustment,
    /// Left open: its window starts after the period's end.
    Later,
}

impl CloseBounds {
    pub fn of(ctx: &InvoiceContext) -> Self {
        CloseBounds {
            period_start: ctx.period.start,
            period_end: ctx.period.end,
            close_sequence: ctx.close_sequence,
            settled_through: ctx.previous.map_or(0, |p| p.sequence),
        }
    }

    /// What the close does with a charge recorded by `close_sequence`; None when an earlier
    /// close billed it (the store's `WHERE` leaves those out). The same as `on_invoice`, given
    /// that periods close in order (the previous close ended where this period starts).
    pub fn class(&self, sequence: i64, window_start: DateTime<Utc>) -> Option<GroupClass> {
        if window_start >= self.period_end {
            Some(GroupClass::Later)
        } else if window_start >= self.period_start {
            Some(GroupClass::Period)
        } else if sequence > self.settled_through {
            Some(GroupClass::Adjustment)
        } else {
            None
        }
    }
}

/// Charges of one class that agree on vendor, service, meter, unit and currency (and, for
/// adjustments, on the window start), summed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeGroup {
    pub class: GroupClass,
    /// The lowest sequence in the group.
    pub first_sequence: i64,
    /// The sums; `window_start` is the group's exact window for adjustments, else the earliest
    /// window in the group.
    pub amount: ChargeAmount,
}

/// How the charges of the period itself (`GroupClass::Period`) reach a close.
#[derive(Debug, Clone, PartialEq)]
pub enum PeriodCharges {
    /// Among the groups, like the others.
    InGroups,
    /// Summed apart, per vendor, service, meter and unit, over every charge recorded by the
    /// close sequence whose window starts in the period; the groups then hold none of them.
    /// The sums' window starts are the period's start.
    Summed(Vec<ChargeAmount>),
}

/// The local days `period` covers in `zone`, when its start and end are the starts of local
/// days there: the daily totals (and so the rollups) keep each charge on the local day its
/// window starts on in the customer's zone, and such a period is exactly their days. None when
/// the period was laid out in another zone (the customer's zone changed since) whose midnights
/// differ.
pub fn period_days(period: &Period, zone: Tz) -> Option<DayRange> {
    let days = DayRange {
        first: local_date(period.start, zone),
        end: local_date(period.end, zone),
    };
    let whole_days = start_of_day(zone, days.first) == Some(period.start)
        && start_of_day(zone, days.end) == Some(period.end);
    whole_days.then_some(days)
}

/// The invoice, and the `open_from_sequence` of the close, from the groups of every charge the
/// close may see (the customer's from the previous close's `open_from_sequence` up to the close
/// sequence, less those `CloseBounds::class` leaves out, and less those of the period itself
/// when `period` brings them summed).
pub fn close_from_groups(
    ctx: &InvoiceContext,
    groups: Vec<ChargeGroup>,
    period: PeriodCharges,
) -> Result<(InvoiceDraft, i64)> {
    let bounds = CloseBounds::of(ctx);
    let this = ClosePoint {
        period_end: ctx.period.end,
        sequence: ctx.close_sequence,
    };
    let mut later = Vec::new();
    let mut billed = Vec::with_capacity(groups.len());
    let summed = matches!(period, PeriodCharges::Summed(_));
    if let PeriodCharges::Summed(sums) = period {
        if let Some(outside) = sums.iter().find(|s| s.window_start != ctx.period.start) {
            return Err(Error::Internal(format!(
                "a sum of the period {} is dated {}",
                ctx.period, outside.window_start
            )));
        }
        billed.extend(sums);
    }
    for g in groups {
        let (sequence, window) = (g.first_sequence, g.amount.window_start);
        // A group the store classed differently from the rule would bill charges wrongly.
        let agrees = bounds.class(sequence, window) == Some(g.class)
            && sequence <= ctx.close_sequence
            && (g.class == GroupClass::Later)
                != on_invoice(ctx.previous.as_ref(), &this, sequence, window);
        // Summed apart, the period's charges in a group too would be billed twice.
        if !agrees || (summed && g.class == GroupClass::Period) {
            return Err(Error::Internal(format!(
                "a charge group ({:?}, sequence {sequence}, window {window}) does not match the close of {}",
                g.class, ctx.period
            )));
        }
        match g.class {
            GroupClass::Later => later.push((sequence, window)),
            GroupClass::Period | GroupClass::Adjustment => billed.push(g.amount),
        }
    }
    let draft = assemble(ctx, billed)?;
    Ok((draft, open_from_sequence(&this, later)))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::domain::period::{BillingCycle, BillingTerms};

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// `[first, end)` as the period of local days in `zone`.
    fn local_period(zone: Tz, first: &str, end: &str) -> Period {
        Period {
            start: start_of_day(zone, day(first)).unwrap(),
            end: start_of_day(zone, day(end)).unwrap(),
            terms: BillingTerms::calendar(BillingCycle::Monthly, zone),
        }
    }

    #[test]
    fn a_period_of_local_days_is_those_days_in_its_own_zone() {
        for (zone, first, end) in [
            // March holds the change to summer time, October the change back.
            (Tz::Europe__London, "2026-03-01", "2026-04-01"),
            (Tz::America__New_York, "2026-10-01", "2027-01-01"),
            (Tz::Asia__Kolkata, "2028-02-01", "2028-03-01"),
            (Tz::Pacific__Chatham, "2026-01-15", "2027-01-15"),
            // Chile moves its clocks at midnight: the day still starts once.
            (Tz::America__Santiago, "2026-04-01", "2026-05-01"),
        ] {
            let period = local_period(zone, first, end);
            assert_eq!(
                period_days(&period, zone),
                Some(DayRange {
                    first: day(first),
                    end: day(end)
                }),
                "{zone}"
            );
        }
    }

    #[test]
    fn a_period_laid_out_in_another_zone_is_not_days_of_this_one() {
        let london = local_period(Tz::Europe__London, "2026-11-01", "2026-12-01");
        assert_eq!(period_days(&london, Tz::Asia__Kolkata), None);
        // The same offset in winter and another in summer: days only while they agree.
        let lisbon = local_period(Tz::Europe__Lisbon, "2026-07-01", "2026-08-01");
        assert!(period_days(&lisbon, Tz::Europe__London).is_some());
        let utc = Period {
            start: Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap(),
            terms: BillingTerms::calendar(BillingCycle::Monthly, Tz::UTC),
        };
        assert_eq!(period_days(&utc, Tz::Europe__London), None);
    }
}
