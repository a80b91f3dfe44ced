//! A close from charges summed in the database rather than read one by one: the store groups the
//! charges a close may see by [`GroupClass`] (computed with [`CloseBounds`], which restates the
//! selection rule of `invoice_selection` for one close) and by vendor, service, meter and unit,
//! and this module turns the groups into the same invoice and `open_from_sequence` as
//! `close_invoice` over the single charges (property tested in `invoice_properties`).
//!
//! Why: reading and decoding every charge event made a close 15-23× the cost of one SQL
//! `GROUP BY` over the same rows (BENCHMARKS.md, "Month close benchmark").
use chrono::{DateTime, Utc};

use super::error::{Error, Result};
use super::invoice::{ChargeAmount, InvoiceContext, InvoiceDraft, assemble};
use super::invoice_selection::{ClosePoint, on_invoice, open_from_sequence};

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

/// The invoice, and the `open_from_sequence` of the close, from the groups of every charge the
/// close may see (the customer's from the previous close's `open_from_sequence` up to the close
/// sequence, less those `CloseBounds::class` leaves out).
pub fn close_from_groups(
    ctx: &InvoiceContext,
    groups: Vec<ChargeGroup>,
) -> Result<(InvoiceDraft, i64)> {
    let bounds = CloseBounds::of(ctx);
    let this = ClosePoint {
        period_end: ctx.period.end,
        sequence: ctx.close_sequence,
    };
    let mut later = Vec::new();
    let mut billed = Vec::with_capacity(groups.len());
    for g in groups {
        let (sequence, window) = (g.first_sequence, g.amount.window_start);
        // A group the store classed differently from the rule would bill charges wrongly.
        let agrees = bounds.class(sequence, window) == Some(g.class)
            && sequence <= ctx.close_sequence
            && (g.class == GroupClass::Later)
                != on_invoice(ctx.previous.as_ref(), &this, sequence, window);
        if !agrees {
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
