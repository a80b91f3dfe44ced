//! Charges as the ledger records them and as readers ask for them: a charge event (one
//! numbered delta of a usage line's rated value), listing filters, and a customer's open period.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::ledger::ChargeKind;
use super::line_key::LineKey;
use super::money::Currency;
use super::vendor::Vendor;

/// A recorded charge event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeEvent {
    pub sequence: i64,
    pub line_key: LineKey,
    pub customer_id: String,
    pub kind: ChargeKind,
    pub amount: Decimal,
    pub currency: Currency,
    pub quantity: Decimal,
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    pub window_start: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// What `quantity` counts: the usage line's unit ("h", "GB-Mo"), "seat" for a
    /// subscription's charges. Read with the event, never stored on it.
    pub unit: String,
}

/// Filters of a charge listing.
#[derive(Debug, Clone, Default)]
pub struct ChargeFilter {
    pub customer_id: Option<String>,
    pub kinds: Vec<ChargeKind>,
    /// Usage windows starting in `[from, to)`.
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
}

/// One aggregated line of a customer's open period.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLineItem {
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    pub amount: Decimal,
    pub quantity: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenPeriod {
    pub customer_id: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub currency: Currency,
    pub items: Vec<OpenLineItem>,
    /// Exact sum of `items`, which is the sum of the period's charge events.
    pub total: Decimal,
    pub as_of_sequence: i64,
}
