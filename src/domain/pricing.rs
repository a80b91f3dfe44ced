//! Price rules and FX rates: how the MSP turns vendor cost into its customers' prices.
//!
//! A rule is scoped by any of vendor, service, meter and customer; the most specific rule in
//! force at the usage's window start wins (customer outranks meter, meter outranks service,
//! service outranks vendor; ties go to the latest `effective_from`, then the newest rule).
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::Currency;
use super::vendor::Vendor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PriceKind {
    /// price = cost × (1 + value): value is the markup fraction, e.g. 0.15.
    Markup,
    /// price = list × (1 − value): passes part of the partner discount on. When the vendor does
    /// not state a list price, list = cost / (1 − the partner account's discount rate).
    ListMinusDiscount,
    /// price = quantity × value, in the rule's currency.
    FixedUnitPrice,
}

impl PriceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::Markup => "MARKUP",
            PriceKind::ListMinusDiscount => "LIST_MINUS_DISCOUNT",
            PriceKind::FixedUnitPrice => "FIXED_UNIT_PRICE",
        }
    }
}

impl std::str::FromStr for PriceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "MARKUP" => Ok(PriceKind::Markup),
            "LIST_MINUS_DISCOUNT" => Ok(PriceKind::ListMinusDiscount),
            "FIXED_UNIT_PRICE" => Ok(PriceKind::FixedUnitPrice),
            other => Err(format!("unknown price kind {other:?}")),
        }
    }
}

/// Where a rule applies; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleScope {
    pub vendor: Option<Vendor>,
    pub service: Option<String>,
    pub meter: Option<String>,
    pub customer_id: Option<String>,
}

impl RuleScope {
    fn matches(&self, usage: &UsageFacts<'_>) -> bool {
        self.vendor.is_none_or(|v| v == usage.vendor)
            && self.service.as_deref().is_none_or(|s| s == usage.service)
            && self.meter.as_deref().is_none_or(|m| m == usage.meter)
            && self
                .customer_id
                .as_deref()
                .is_none_or(|c| Some(c) == usage.customer_id)
    }

    /// Higher is more specific.
    fn specificity(&self) -> u8 {
        (u8::from(self.customer_id.is_some()) << 3)
            | (u8::from(self.meter.is_some()) << 2)
            | (u8::from(self.service.is_some()) << 1)
            | u8::from(self.vendor.is_some())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceRule {
    pub id: String,
    pub scope: RuleScope,
    pub kind: PriceKind,
    pub value: Decimal,
    /// The currency of a fixed unit price; None for markup and discount rules.
    pub currency: Option<Currency>,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl PriceRule {
    fn in_force_at(&self, at: DateTime<Utc>) -> bool {
        self.effective_from <= at && self.effective_to.is_none_or(|end| at < end)
    }
}

/// What rating needs to know about one usage line to pick a rule.
pub struct UsageFacts<'a> {
    pub vendor: Vendor,
    pub service: &'a str,
    pub meter: &'a str,
    pub customer_id: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// The rule that prices `usage`, if any.
pub fn select_rule<'r>(rules: &'r [PriceRule], usage: &UsageFacts<'_>) -> Option<&'r PriceRule> {
    rules
        .iter()
        .filter(|r| r.in_force_at(usage.at) && r.scope.matches(usage))
        .max_by(|a, b| {
            (a.scope.specificity(), a.effective_from, a.created_at, &a.id).cmp(&(
                b.scope.specificity(),
                b.effective_from,
                b.created_at,
                &b.id,
            ))
        })
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FxRate {
    pub from: Currency,
    pub to: Currency,
    /// Units of `to` per unit of `from`.
    pub rate: Decimal,
    pub effective_from: DateTime<Utc>,
}

/// The rate in force at `at` for converting `from` to `to`; 1 for the same currency.
pub fn fx_rate(
    rates: &[FxRate],
    from: Currency,
    to: Currency,
    at: DateTime<Utc>,
) -> Option<Decimal> {
    if from == to {
        return Some(Decimal::ONE);
    }
    rates
        .iter()
        .filter(|r| r.from == from && r.to == to && r.effective_from <= at)
        .max_by_key(|r| r.effective_from)
        .map(|r| r.rate)
}

/// A validated new rule (its id and creation time are the store's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewPriceRule {
    pub scope: RuleScope,
    pub kind: PriceKind,
    pub value: Decimal,
    #[serde(serialize_with = "serialize_currency")]
    pub currency: Option<Currency>,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
}

fn serialize_currency<S: serde::Serializer>(c: &Option<Currency>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_some(c.code()),
        None => s.serialize_none(),
    }
}

/// The tenant's pricing policy: what rating does besides applying rules and rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PricingPolicy {
    /// A line a rule would sell below its vendor cost is held unrated (reason BELOW_COST) instead
    /// of charged. Off by default: a loss leader is the MSP's choice.
    pub hold_below_cost: bool,
}

/// The stored policy, with its version for etags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedPricingPolicy {
    pub policy: PricingPolicy,
    /// 0 while the tenant has never set one.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl VersionedPricingPolicy {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}
