//! A customer's billing terms over time, and the periods they cut.
//!
//! A change of terms (cycle, anchor or time zone) takes effect at the end of the period in which
//! it was requested, so a period is always cut by one set of terms and periods never overlap or
//! leave gaps. The first period under new terms runs from that boundary to the new terms' next
//! boundary: shorter than a full cycle when the boundary is not on the new terms' grid (monthly
//! to calendar quarterly in February: March alone, then April to June).
use chrono::{DateTime, Duration, Utc};

use super::error::{Error, Result};
use super::period::{BillingTerms, Period, rfc3339};

/// Terms that apply from `effective_at` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermsChange {
    pub effective_at: DateTime<Utc>,
    pub terms: BillingTerms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingSchedule {
    initial: BillingTerms,
    /// Strictly increasing `effective_at`.
    changes: Vec<TermsChange>,
}

/// From a period's start back into the period before it.
const ONE_NANOSECOND: Duration = Duration::nanoseconds(1);

impl BillingSchedule {
    /// One set of terms, forever.
    pub fn new(initial: BillingTerms) -> Self {
        BillingSchedule {
            initial,
            changes: Vec::new(),
        }
    }

    /// A stored schedule: the changes must be in strictly increasing order of `effective_at`.
    pub fn with_changes(initial: BillingTerms, changes: Vec<TermsChange>) -> Result<Self> {
        if let Some(w) = changes
            .windows(2)
            .find(|w| w[0].effective_at >= w[1].effective_at)
        {
            return Err(Error::Internal(format!(
                "stored billing terms changes are out of order ({} then {})",
                w[0].effective_at, w[1].effective_at
            )));
        }
        Ok(BillingSchedule { initial, changes })
    }

    pub fn initial(&self) -> BillingTerms {
        self.initial
    }

    pub fn changes(&self) -> &[TermsChange] {
        &self.changes
    }

    /// The terms that cut the period containing `at`.
    pub fn terms_at(&self, at: DateTime<Utc>) -> BillingTerms {
        self.segment(at).0
    }

    /// Requests `terms` at `requested_at`: they take effect when the period containing
    /// `requested_at` ends, the instant returned. A request replaces any change not yet in effect
    /// at `requested_at` (the latest request wins); asking for the terms already in effect then
    /// just cancels those.
    pub fn change_terms(
        &mut self,
        requested_at: DateTime<Utc>,
        terms: BillingTerms,
    ) -> Result<DateTime<Utc>> {
        let in_effect = self
            .changes
            .partition_point(|c| c.effective_at <= requested_at);
        self.changes.truncate(in_effect);
        let effective_at = self.period_containing(requested_at)?.end;
        if self.terms_at(requested_at) != terms {
            self.changes.push(TermsChange {
                effective_at,
                terms,
            });
        }
        Ok(effective_at)
    }

    /// The period containing `at`.
    pub fn period_containing(&self, at: DateTime<Utc>) -> Result<Period> {
        let (terms, from, until) = self.segment(at);
        let mut period = terms.period_containing(at)?;
        if let Some(from) = from {
            period.start = period.start.max(from);
        }
        if let Some(until) = until {
            period.end = period.end.min(until);
        }
        Ok(period)
    }

    /// The period a charge is billed in: the one its usage window starts in (by the local date in
    /// the customer's time zone, as the daily totals count it).
    pub fn period_of_charge(&self, window_start: DateTime<Utc>) -> Result<Period> {
        self.period_containing(window_start)
    }

    pub fn next(&self, period: &Period) -> Result<Period> {
        self.period_containing(period.end)
    }

    pub fn previous(&self, period: &Period) -> Result<Period> {
        let before = period
            .start
            .checked_sub_signed(ONE_NANOSECOND)
            .ok_or_else(|| Error::Internal(format!("no billing period before {period}")))?;
        self.period_containing(before)
    }

    /// The period that starts exactly at `start`, for a request naming a period (`field`);
    /// INVALID_ARGUMENT naming the period that contains it otherwise.
    pub fn period_starting_at(&self, field: &str, start: DateTime<Utc>) -> Result<Period> {
        let period = self
            .period_containing(start)
            .map_err(|_| Error::invalid(field, format!("{} is out of range", rfc3339(start))))?;
        if period.start != start {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not the start of a billing period; the period containing it, {period}, starts at {}",
                    rfc3339(start),
                    rfc3339(period.start)
                ),
            ));
        }
        Ok(period)
    }

    /// The terms in effect at `at` and their segment `[from, until)` (open-ended when None).
    fn segment(
        &self,
        at: DateTime<Utc>,
    ) -> (BillingTerms, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let k = self.changes.partition_point(|c| c.effective_at <= at);
        let until = self.changes.get(k).map(|c| c.effective_at);
        match k.checked_sub(1).map(|i| self.changes[i]) {
            Some(change) => (change.terms, Some(change.effective_at), until),
            None => (self.initial, None, until),
        }
    }
}
