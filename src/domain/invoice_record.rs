//! Invoices as they are kept once finalized, their payments, a customer's close chain and a
//! tenant-wide close run: the records the store keeps and the API shows. How an invoice is made
//! is `invoice`; which charges it bills is `invoice_selection`.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::billing_schedule::{BillingSchedule, TermsChange};
use super::customer::BillingCycle;
use super::error::{Error, Result};
use super::invoice::{BilledCustomer, InvoiceDraft, InvoiceLine};
use super::invoice_selection::{ClosePoint, FIRST_SEQUENCE};
use super::money::Currency;
use super::payment::{PaymentStatus, balance};
use super::period::{BillingAnchor, BillingTerms};
use super::rounding::RoundingRule;

/// A finalized invoice: immutable but for the payments recorded against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub id: String,
    /// `PREFIX-YYYY-MM-NNNNNN`; None for a close that billed nothing.
    pub number: Option<String>,
    /// The tenant's gap-free counter behind `number`.
    pub number_counter: Option<i64>,
    pub customer: BilledCustomer,
    pub currency: Currency,
    pub rounding: RoundingRule,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub time_zone: String,
    pub cycle: BillingCycle,
    /// Every charge up to this ledger sequence that belongs on the invoice is on it; none after.
    pub close_sequence: i64,
    /// The sequence of the customer's previous close (0 before its first).
    pub previous_close_sequence: i64,
    pub lines: Vec<InvoiceLine>,
    pub unrounded_total: Decimal,
    pub total: Decimal,
    pub rounding_difference: Decimal,
    pub paid: Decimal,
    pub finalized_at: DateTime<Utc>,
}

impl Invoice {
    pub fn from_draft(
        id: String,
        number: Option<(i64, String)>,
        draft: InvoiceDraft,
        previous_close_sequence: i64,
        finalized_at: DateTime<Utc>,
    ) -> Self {
        let (number_counter, number) = number.unzip();
        Invoice {
            id,
            number,
            number_counter,
            customer: draft.customer,
            currency: draft.currency,
            rounding: draft.rounding,
            period_start: draft.period.start,
            period_end: draft.period.end,
            time_zone: draft.period.time_zone().name().to_string(),
            cycle: draft.period.terms.cycle,
            close_sequence: draft.close_sequence,
            previous_close_sequence,
            lines: draft.lines,
            unrounded_total: draft.unrounded_total,
            total: draft.total,
            rounding_difference: draft.rounding_difference,
            paid: Decimal::ZERO,
            finalized_at,
        }
    }

    pub fn balance(&self) -> Decimal {
        balance(self.total, self.paid)
    }

    pub fn payment_status(&self) -> PaymentStatus {
        PaymentStatus::of(self.total, self.paid)
    }
}

/// Which invoices a listing wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvoiceFilter {
    pub customer_id: Option<String>,
    /// Only the invoices of the period starting at this instant.
    pub period_start: Option<DateTime<Utc>>,
    pub status: Option<PaymentStatus>,
}

/// A payment recorded against an invoice, with the invoice's state just after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: String,
    pub invoice_id: String,
    pub amount: Decimal,
    pub currency: Currency,
    pub reference: String,
    pub paid_after: Decimal,
    pub balance_after: Decimal,
    pub recorded_at: DateTime<Utc>,
}

/// A validated RecordPayment request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewPayment {
    pub invoice_id: String,
    /// As sent (validated against the invoice's currency once it is read).
    pub amount: String,
    pub reference: String,
}

/// Where a customer's close chain stands: its last close (None before the first) and the lowest
/// ledger sequence that close left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseChain {
    pub last: Option<ClosePoint>,
    pub open_from_sequence: i64,
}

impl Default for CloseChain {
    fn default() -> Self {
        CloseChain {
            last: None,
            open_from_sequence: FIRST_SEQUENCE,
        }
    }
}

/// A customer's billing schedule from its current cycle, anchor and time zone. The current
/// terms apply from its last closed period's end on, so a change of cycle, anchor or time zone
/// takes effect at the next boundary and never re-cuts a closed period.
pub fn customer_schedule(
    cycle: BillingCycle,
    anchor: BillingAnchor,
    time_zone: &str,
    last_closed_end: Option<DateTime<Utc>>,
) -> Result<BillingSchedule> {
    let zone: Tz = time_zone
        .parse()
        .map_err(|_| Error::Internal(format!("stored time zone {time_zone:?} is unknown")))?;
    let terms = BillingTerms {
        cycle,
        anchor,
        time_zone: zone,
    };
    match last_closed_end {
        None => Ok(BillingSchedule::new(terms)),
        Some(effective_at) => BillingSchedule::with_changes(
            terms,
            vec![TermsChange {
                effective_at,
                terms,
            }],
        ),
    }
}

/// The status of a tenant-wide close run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRunStatus {
    Running,
    Succeeded,
    /// Some customers could not be closed (see `last_error`); running it again retries them.
    Failed,
}

impl CloseRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseRunStatus::Running => "RUNNING",
            CloseRunStatus::Succeeded => "SUCCEEDED",
            CloseRunStatus::Failed => "FAILED",
        }
    }

    pub fn parse_stored(s: &str) -> Result<Self> {
        match s {
            "RUNNING" => Ok(CloseRunStatus::Running),
            "SUCCEEDED" => Ok(CloseRunStatus::Succeeded),
            "FAILED" => Ok(CloseRunStatus::Failed),
            other => Err(Error::Internal(format!(
                "stored close run status {other:?}"
            ))),
        }
    }
}

/// A tenant-wide month close: every customer whose periods are due at `as_of`, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseRun {
    pub id: String,
    pub as_of: DateTime<Utc>,
    pub status: CloseRunStatus,
    pub customers_planned: i32,
    pub customers_done: i32,
    pub invoices_closed: i32,
    /// The last customer done (resume after it).
    pub cursor_customer_id: Option<String>,
    pub last_error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_cycle_change_after_a_close_starts_at_the_closed_end() {
        // Closed monthly up to 1 Feb; now quarterly: February..March is a stub, then April.
        let end = at("2026-02-01T00:00:00Z");
        let s = customer_schedule(
            BillingCycle::Quarterly,
            BillingAnchor::CALENDAR,
            "UTC",
            Some(end),
        )
        .unwrap();
        let p = s.period_containing(end).unwrap();
        assert_eq!((p.start, p.end), (end, at("2026-04-01T00:00:00Z")));
        let first =
            customer_schedule(BillingCycle::Monthly, BillingAnchor::CALENDAR, "UTC", None).unwrap();
        let p = first.period_containing(at("2026-02-10T10:00:00Z")).unwrap();
        assert_eq!((p.start, p.end), (end, at("2026-03-01T00:00:00Z")));
        assert!(
            customer_schedule(
                BillingCycle::Monthly,
                BillingAnchor::CALENDAR,
                "Mars/Base",
                None
            )
            .is_err()
        );
    }
}
