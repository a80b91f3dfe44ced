//! A subscription as the gateway keeps it (its state with whom and what it is for), and its
//! charges as ledger events: each billing period of a subscription is one ledger line key
//! (prefix 0, which no partner account has), so the sum of a period's charges is its amount the
//! way the sum of a usage line's charges is its price.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::catalog::{CatalogItem, Offer};
use super::idempotency::IdempotencyKey;
use super::ledger::{ChargeKind, NewChargeEvent};
use super::line_key::LineKey;
use super::money::Currency;
use super::seat_order::SEAT_UNIT;
use super::subscription::{ChangeOutcome, SeatCharge, SeatChargeKind, Subscription};
use super::usage::UsageKey;

/// The line key prefix of subscription charges: partner accounts' prefixes start at 1.
pub const SUBSCRIPTION_LINE_PREFIX: u32 = 0;

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub id: String,
    pub customer_id: String,
    /// The catalogue item's id.
    pub item_id: String,
    /// The vendor's subscription the seats were bought as (Partner Center's subscription id),
    /// set once the vendor confirmed the order; None for the MSP's own items.
    pub vendor_subscription_id: Option<String>,
    /// The customer's billing currency: every charge's.
    pub currency: Currency,
    pub state: Subscription,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated purchase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewSubscription {
    pub customer_id: String,
    pub item_id: String,
    pub quantity: u32,
    pub offer: Offer,
}

/// A purchase sent to the vendor and not yet recorded: what the sweeper needs to finish it as
/// the request would have (see `ledger::pending_orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOrder {
    pub tenant_id: String,
    /// The CreateSubscription request's key (its operation is always CreateSubscription).
    pub key: IdempotencyKey,
    pub order: NewSubscription,
    /// When the request decided the purchase: the subscription's first period starts then.
    pub ordered_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The operation of every pending order's request.
pub const CREATE_SUBSCRIPTION: &str = "CreateSubscription";

/// What a quantity change or cancellation did, with the sequence of the charge it appended.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    pub record: SubscriptionRecord,
    pub outcome: ChangeOutcome,
    pub charge_sequence: Option<i64>,
}

impl SeatChargeKind {
    pub fn charge_kind(self) -> ChargeKind {
        match self {
            SeatChargeKind::Fee => ChargeKind::SubscriptionFee,
            SeatChargeKind::Proration => ChargeKind::Proration,
            SeatChargeKind::Refund => ChargeKind::Refund,
        }
    }
}

impl SubscriptionRecord {
    /// The ledger event of one of this subscription's charges for `item`.
    pub fn charge_event(&self, item: &CatalogItem, charge: &SeatCharge) -> NewChargeEvent {
        let key = UsageKey {
            vendor_account_id: self.id.clone(),
            service: item.product.clone(),
            meter: item.catalog_item_id.clone(),
            region: String::new(),
            window_start: charge.period_start,
        };
        NewChargeEvent {
            line_key: LineKey::of(SUBSCRIPTION_LINE_PREFIX, &self.id, &key),
            customer_id: self.customer_id.clone(),
            kind: charge.kind.charge_kind(),
            amount: charge.amount,
            currency: self.currency,
            quantity: Decimal::from(charge.seats),
            vendor: item.vendor,
            service: key.service,
            meter: key.meter,
            unit: SEAT_UNIT.to_string(),
            window_start: charge.at,
        }
    }
}

/// The unit of a line that has no usage line: a subscription line's (prefix
/// [`SUBSCRIPTION_LINE_PREFIX`]) counts seats.
pub fn line_unit(line_key: &[u8]) -> Option<&'static str> {
    (line_key.get(..4) == Some(&SUBSCRIPTION_LINE_PREFIX.to_be_bytes()[..])).then_some(SEAT_UNIT)
}

/// What the charges of the line `line_key` count: its usage line's unit (`usage_unit`, read
/// beside it), else the line's own ([`line_unit`]), else nothing known ("").
pub fn charge_unit(usage_unit: Option<String>, line_key: &[u8]) -> String {
    usage_unit
        .or_else(|| line_unit(line_key).map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn subscription_charges_count_seats() {
        let key = UsageKey {
            vendor_account_id: "sub_1".into(),
            service: "Microsoft 365".into(),
            meter: "CFQ7TTC0LH18:0001".into(),
            region: String::new(),
            window_start: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        };
        let seats = LineKey::of(SUBSCRIPTION_LINE_PREFIX, "sub_1", &key);
        assert_eq!(line_unit(seats.as_bytes()), Some("seat"));
        let usage = LineKey::of(1, "pa_1", &key);
        assert_eq!(line_unit(usage.as_bytes()), None);
    }
}
