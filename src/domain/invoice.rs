//! Invoices: a closed period's charges as lines grouped by vendor, service, meter and unit, each
//! rounded once to the currency's minor unit, plus prior-period adjustment lines naming the
//! period (and invoice) they correct. The total is the sum of the rounded lines, exactly; the
//! rounding difference against the unrounded sum is shown beside it. Which charges a close bills
//! is `invoice_selection`'s rule.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::billing_schedule::BillingSchedule;
use super::error::{Error, Result};
use super::invoice_selection::{ClosePoint, on_invoice};
use super::money::Currency;
use super::period::{BillingAnchor, BillingCycle, Period};
use super::rounding::RoundingRule;
use super::vendor::Vendor;

/// The customer as the invoice shows it, copied at close so later renames leave it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledCustomer {
    pub id: String,
    pub external_ref: String,
    pub display_name: String,
}

/// What closing a customer's periods needs of its record: the customer record without its
/// enrollments and vendor links (two reads a close does not need).
#[derive(Debug, Clone, PartialEq)]
pub struct BillingProfile {
    pub customer: BilledCustomer,
    pub currency: Currency,
    pub cycle: BillingCycle,
    pub anchor: BillingAnchor,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

/// What is billed: one charge, or the sum of charges that agree on every field but the amounts
/// (the store may sum them in SQL).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeAmount {
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    /// The usage unit ("Hrs", "GB-Mo"); empty when unknown.
    pub unit: String,
    pub quantity: Decimal,
    pub amount: Decimal,
    pub currency: Currency,
    pub window_start: DateTime<Utc>,
}

/// One charge event of the ledger, as invoicing reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceCharge {
    pub sequence: i64,
    pub customer_id: String,
    pub charge: ChargeAmount,
}

/// A reference to an invoice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InvoiceRef {
    pub id: String,
    /// None for a close that billed nothing (it has no number).
    pub number: Option<String>,
}

/// An invoice already closed for an earlier period of the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorInvoice {
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub invoice: InvoiceRef,
}

/// The period a prior-period adjustment corrects, and its invoice (None for usage before the
/// customer's first closed period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustedPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub invoice: Option<InvoiceRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceLine {
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    /// Empty when unknown.
    pub unit: String,
    pub quantity: Decimal,
    /// The exact sum of the line's charges.
    pub unrounded_amount: Decimal,
    /// `unrounded_amount` rounded to the currency's minor unit by the invoice's rule.
    pub amount: Decimal,
    /// Set on a prior-period adjustment: what it corrects.
    pub adjusts: Option<AdjustedPeriod>,
}

/// An invoice as a close makes it, before the store numbers and keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceDraft {
    pub customer: BilledCustomer,
    pub currency: Currency,
    pub rounding: RoundingRule,
    pub period: Period,
    /// Every charge up to this ledger sequence that belongs on the invoice is on it; none after.
    pub close_sequence: i64,
    /// The period's lines by vendor, service, meter and unit, then the adjustments by the
    /// period they correct.
    pub lines: Vec<InvoiceLine>,
    pub unrounded_total: Decimal,
    /// Σ of the lines' rounded amounts.
    pub total: Decimal,
    /// `total - unrounded_total`.
    pub rounding_difference: Decimal,
}

impl InvoiceDraft {
    /// Only invoices that bill something take a number from the tenant's gap-free sequence; a
    /// close with nothing to bill is still recorded (the next close starts after it).
    pub fn needs_number(&self) -> bool {
        !self.lines.is_empty()
    }

    pub fn close_point(&self) -> ClosePoint {
        ClosePoint {
            period_end: self.period.end,
            sequence: self.close_sequence,
        }
    }
}

/// Everything a close needs besides the charges.
#[derive(Debug, Clone)]
pub struct InvoiceContext<'a> {
    pub customer: BilledCustomer,
    pub currency: Currency,
    pub rounding: RoundingRule,
    pub period: Period,
    pub close_sequence: i64,
    /// The customer's previous close; None before its first.
    pub previous: Option<ClosePoint>,
    pub schedule: &'a BillingSchedule,
    /// The customer's closed invoices, to name on adjustment lines.
    pub prior_invoices: &'a [PriorInvoice],
}

impl InvoiceContext<'_> {
    pub fn close_point(&self) -> ClosePoint {
        ClosePoint {
            period_end: self.period.end,
            sequence: self.close_sequence,
        }
    }

    fn check(&self) -> Result<()> {
        self.close_point().check_follows(self.previous.as_ref())?;
        match self.previous {
            Some(p) if p.period_end != self.period.start => Err(Error::Internal(format!(
                "closing {} after a period that ended at {}: periods close in order",
                self.period, p.period_end
            ))),
            _ => Ok(()),
        }
    }

    /// The period a window before this period belongs to, and the invoice that billed it.
    fn adjusted_period(&self, window_start: DateTime<Utc>) -> Result<AdjustedPeriod> {
        let billed = self
            .prior_invoices
            .iter()
            .find(|p| p.period_start <= window_start && window_start < p.period_end);
        Ok(match billed {
            Some(p) => AdjustedPeriod {
                start: p.period_start,
                end: p.period_end,
                invoice: Some(p.invoice.clone()),
            },
            None => {
                let period = self.schedule.period_of_charge(window_start)?;
                AdjustedPeriod {
                    start: period.start,
                    end: period.end,
                    invoice: None,
                }
            }
        })
    }
}

/// Closes the period from the customer's charge events: `charges` may hold any of its charges
/// as long as it includes every one on this invoice (those not on it are left out).
pub fn close_invoice(ctx: &InvoiceContext, charges: &[InvoiceCharge]) -> Result<InvoiceDraft> {
    if let Some(other) = charges.iter().find(|c| c.customer_id != ctx.customer.id) {
        return Err(Error::Internal(format!(
            "charge {} of customer {} read for an invoice of {}",
            other.sequence, other.customer_id, ctx.customer.id
        )));
    }
    let this = ctx.close_point();
    let billed = charges
        .iter()
        .filter(|c| {
            on_invoice(
                ctx.previous.as_ref(),
                &this,
                c.sequence,
                c.charge.window_start,
            )
        })
        .map(|c| c.charge.clone());
    assemble(ctx, billed)
}

/// Line grouping: None (the period's own lines) first, then adjustments by the start of the
/// period they correct.
type LineKey = (Option<DateTime<Utc>>, Vendor, String, String, String);

#[derive(Default)]
struct Sums {
    quantity: Decimal,
    amount: Decimal,
}

/// Builds the invoice from the amounts it bills (every charge the selection rule puts on it,
/// singly or summed).
pub fn assemble(
    ctx: &InvoiceContext,
    amounts: impl IntoIterator<Item = ChargeAmount>,
) -> Result<InvoiceDraft> {
    ctx.check()?;
    let mut groups: BTreeMap<LineKey, Sums> = BTreeMap::new();
    let mut adjusted: BTreeMap<DateTime<Utc>, AdjustedPeriod> = BTreeMap::new();
    for c in amounts {
        if c.currency != ctx.currency {
            return Err(Error::Internal(format!(
                "a {} charge for a customer billed in {}",
                c.currency, ctx.currency
            )));
        }
        if c.window_start >= ctx.period.end {
            return Err(Error::Internal(format!(
                "a charge for {} is after the period {} it was to be billed in",
                c.window_start, ctx.period
            )));
        }
        let adjusts = if c.window_start >= ctx.period.start {
            None
        } else {
            let period = ctx.adjusted_period(c.window_start)?;
            let start = period.start;
            adjusted.entry(start).or_insert(period);
            Some(start)
        };
        let sums = groups
            .entry((adjusts, c.vendor, c.service, c.meter, c.unit))
            .or_default();
        sums.quantity = checked_sum(sums.quantity, c.quantity)?;
        sums.amount = checked_sum(sums.amount, c.amount)?;
    }
    let mut lines = Vec::with_capacity(groups.len());
    let (mut unrounded_total, mut total) = (Decimal::ZERO, Decimal::ZERO);
    for ((adjusts, vendor, service, meter, unit), sums) in groups {
        // Charges that cancel out entirely (a line reversed in full) leave nothing to show.
        if sums.amount.is_zero() && sums.quantity.is_zero() {
            continue;
        }
        let amount = ctx.rounding.round(sums.amount, ctx.currency);
        unrounded_total = checked_sum(unrounded_total, sums.amount)?;
        total = checked_sum(total, amount)?;
        lines.push(InvoiceLine {
            vendor,
            service,
            meter,
            unit,
            quantity: sums.quantity.normalize(),
            unrounded_amount: sums.amount.normalize(),
            amount,
            adjusts: adjusts.and_then(|start| adjusted.get(&start).cloned()),
        });
    }
    Ok(InvoiceDraft {
        customer: ctx.customer.clone(),
        currency: ctx.currency,
        rounding: ctx.rounding,
        period: ctx.period,
        close_sequence: ctx.close_sequence,
        lines,
        unrounded_total: unrounded_total.normalize(),
        total,
        rounding_difference: (total - unrounded_total).normalize(),
    })
}

/// `a + b`, or an error where rust_decimal would panic (beyond about 7.9e28).
pub(crate) fn checked_sum(a: Decimal, b: Decimal) -> Result<Decimal> {
    a.checked_add(b)
        .ok_or_else(|| Error::Internal(format!("{a} + {b} exceeds the decimal range")))
}
