//! Which charges a close bills, and which stay open.
//!
//! A customer's periods close in order, each at a ledger sequence no lower than the one before
//! it. Close `n` (period `P_n`, sequence `S_n`) covers every charge recorded by `S_n` whose usage
//! window starts before `P_n` ends. Its invoice bills what it covers and no earlier close did:
//!
//! - lines: sequence <= `S_n` and window in `P_n` (however early the charge arrived);
//! - prior-period adjustments: `S_(n-1)` < sequence <= `S_n` and window before `P_n` (revisions,
//!   reversals, re-rates and late usage for periods already closed).
//!
//! Everything else stays open: recorded after the last close, or for a window after its period.
//! So each charge is on exactly one invoice or open, a closed invoice never changes, and per
//! customer Σ invoices + open charges = Σ ledger at every sequence.
use chrono::{DateTime, Utc};

use super::error::{Error, Result};

/// The first sequence a tenant's ledger hands out.
pub const FIRST_SEQUENCE: i64 = 1;

/// Where one close cut a customer's ledger: the end of the period it closed and the ledger
/// sequence it was closed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePoint {
    pub period_end: DateTime<Utc>,
    pub sequence: i64,
}

impl ClosePoint {
    /// Whether this close, or one before it, billed the charge.
    pub fn covers(&self, sequence: i64, window_start: DateTime<Utc>) -> bool {
        sequence <= self.sequence && window_start < self.period_end
    }

    /// Closes follow each other in period order at non-decreasing sequences; anything else
    /// would bill a charge twice or never.
    pub fn check_follows(&self, previous: Option<&ClosePoint>) -> Result<()> {
        match previous {
            Some(p) if p.period_end >= self.period_end || p.sequence > self.sequence => {
                Err(Error::Internal(format!(
                    "a close at sequence {} for a period ending {} cannot follow one at sequence {} ending {}",
                    self.sequence, self.period_end, p.sequence, p.period_end
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Whether the invoice closed at `this`, after `previous`, bills the charge.
pub fn on_invoice(
    previous: Option<&ClosePoint>,
    this: &ClosePoint,
    sequence: i64,
    window_start: DateTime<Utc>,
) -> bool {
    this.covers(sequence, window_start)
        && !previous.is_some_and(|p| p.covers(sequence, window_start))
}

/// Whether a recorded charge is on no invoice after the closes up to `last`.
pub fn is_open(last: Option<&ClosePoint>, sequence: i64, window_start: DateTime<Utc>) -> bool {
    !last.is_some_and(|l| l.covers(sequence, window_start))
}

/// The lowest sequence that may still be open after closing at `this`: the first of `charges`
/// (sequence, window start) the close leaves open, else the one after its sequence. `charges`
/// must include every charge from the previous close's `open_from_sequence` up to `this`; the
/// next close reads from the result, so no close re-reads what is settled.
pub fn open_from_sequence(
    this: &ClosePoint,
    charges: impl IntoIterator<Item = (i64, DateTime<Utc>)>,
) -> i64 {
    charges
        .into_iter()
        .filter(|&(sequence, window)| sequence <= this.sequence && !this.covers(sequence, window))
        .map(|(sequence, _)| sequence)
        .min()
        .unwrap_or(this.sequence + 1)
}
