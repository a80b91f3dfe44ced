//! Rating: a usage line's vendor cost becomes the customer's price, in the customer's currency,
//! exactly. A line that cannot be rated says why; it is rated again once the reason is fixed.
use std::fmt;

use rust_decimal::Decimal;

use super::money::Currency;
use super::pricing::{
    FxRate, PriceKind, PriceRule, PricingPolicy, UsageFacts, fx_rate, select_rule,
};
use super::usage::UsageLine;
use super::vendor::Vendor;

/// Fractional digits kept in rated amounts: far beyond any currency's minor unit (rounding to
/// that happens only on invoice lines) and beyond vendors' 10-digit precision.
pub const AMOUNT_SCALE: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedAmount {
    pub amount: Decimal,
    pub currency: Currency,
    pub rule_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnratedReason {
    /// The vendor account is linked to no customer.
    UnknownVendorAccount,
    /// No price rule is in force for the line.
    NoPriceRule,
    /// No FX rate converts the price to the customer's currency on the usage date.
    NoFxRate { from: String, to: String },
    /// The vendor's currency code is not ISO 4217.
    UnknownCurrency(String),
    /// The arithmetic left Decimal's range (absurd input).
    Overflow,
    /// The rule in force would sell the line below its vendor cost, and the tenant's pricing
    /// policy holds such lines.
    BelowCost { rule_id: String },
}

impl UnratedReason {
    pub fn code(&self) -> &'static str {
        match self {
            UnratedReason::UnknownVendorAccount => "UNKNOWN_VENDOR_ACCOUNT",
            UnratedReason::NoPriceRule => "NO_PRICE_RULE",
            UnratedReason::NoFxRate { .. } => "NO_FX_RATE",
            UnratedReason::UnknownCurrency(_) => "UNKNOWN_CURRENCY",
            UnratedReason::Overflow => "OVERFLOW",
            UnratedReason::BelowCost { .. } => "BELOW_COST",
        }
    }
}

impl fmt::Display for UnratedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnratedReason::UnknownVendorAccount => f.write_str(
                "the vendor account is linked to no customer; link it with LinkVendorAccount",
            ),
            UnratedReason::NoPriceRule => f.write_str(
                "no price rule is in force for this usage; add one with CreatePriceRule",
            ),
            UnratedReason::NoFxRate { from, to } => {
                write!(
                    f,
                    "no {from}->{to} FX rate in force on the usage date; set one with SetFxRate"
                )
            }
            UnratedReason::UnknownCurrency(code) => {
                write!(f, "the vendor's currency {code:?} is not ISO 4217")
            }
            UnratedReason::Overflow => f.write_str("the amount is out of range"),
            UnratedReason::BelowCost { rule_id } => write!(
                f,
                "price rule {rule_id} would sell this usage below its vendor cost, and the \
                 pricing policy holds such usage (hold_below_cost); change the rule, or the \
                 policy with UpdatePricingPolicy"
            ),
        }
    }
}

/// The customer a line is charged to, as rating sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargee {
    pub customer_id: String,
    pub currency: Currency,
}

/// The MSP's prices, as rating sees them.
pub struct PriceBook<'a> {
    pub rules: &'a [PriceRule],
    pub fx: &'a [FxRate],
    pub policy: PricingPolicy,
}

/// Rates `line` (from `vendor`, through a partner account with `partner_discount_rate`) for
/// `chargee`.
pub fn rate(
    line: &UsageLine,
    vendor: Vendor,
    partner_discount_rate: Decimal,
    chargee: Option<&Chargee>,
    prices: &PriceBook<'_>,
) -> Result<RatedAmount, UnratedReason> {
    let chargee = chargee.ok_or(UnratedReason::UnknownVendorAccount)?;
    let facts = UsageFacts {
        vendor,
        service: &line.key.service,
        meter: &line.key.meter,
        customer_id: Some(&chargee.customer_id),
        at: line.key.window_start,
    };
    let rule = select_rule(prices.rules, &facts).ok_or(UnratedReason::NoPriceRule)?;
    let vendor_currency = || {
        Currency::parse("currency", &line.currency)
            .map_err(|_| UnratedReason::UnknownCurrency(line.currency.clone()))
    };
    let (price, price_currency) = match rule.kind {
        PriceKind::Markup => (
            line.cost.checked_mul(Decimal::ONE + rule.value),
            vendor_currency()?,
        ),
        PriceKind::ListMinusDiscount => {
            // Without a stated list price, recover it from the partner's discount off list.
            let list = match line.list_cost {
                Some(list) => Some(list),
                None => {
                    let net = Decimal::ONE - partner_discount_rate;
                    if net.is_zero() {
                        None
                    } else {
                        line.cost.checked_div(net)
                    }
                }
            };
            (
                list.and_then(|l| l.checked_mul(Decimal::ONE - rule.value)),
                vendor_currency()?,
            )
        }
        PriceKind::FixedUnitPrice => (
            line.quantity.checked_mul(rule.value),
            rule.currency.ok_or(UnratedReason::NoPriceRule)?,
        ),
    };
    let price = price.ok_or(UnratedReason::Overflow)?;
    let rate = fx_rate(
        prices.fx,
        price_currency,
        chargee.currency,
        line.key.window_start,
    )
    .ok_or_else(|| UnratedReason::NoFxRate {
        from: price_currency.code().into(),
        to: chargee.currency.code().into(),
    })?;
    let amount = price.checked_mul(rate).ok_or(UnratedReason::Overflow)?;
    if prices.policy.hold_below_cost {
        let below = below_cost(line, prices, chargee, (price, price_currency), amount)?;
        if below {
            return Err(UnratedReason::BelowCost {
                rule_id: rule.id.clone(),
            });
        }
    }
    Ok(RatedAmount {
        amount: amount.round_dp(AMOUNT_SCALE).normalize(),
        currency: chargee.currency,
        rule_id: rule.id.clone(),
    })
}

/// Whether `price` (in `price_currency`, `amount` once in the customer's currency) is below the
/// line's vendor cost: compared in the vendor's currency where the price is in it, otherwise in
/// the customer's, which then needs the vendor-to-customer rate too. Compared at the scale
/// amounts are kept at, so a list recovered by division (cost / (1 − d) × (1 − d)) that lands
/// a digit under cost in the 28th place is not taken for a loss.
fn below_cost(
    line: &UsageLine,
    prices: &PriceBook<'_>,
    chargee: &Chargee,
    (price, price_currency): (Decimal, Currency),
    amount: Decimal,
) -> Result<bool, UnratedReason> {
    let vendor_currency = Currency::parse("currency", &line.currency)
        .map_err(|_| UnratedReason::UnknownCurrency(line.currency.clone()))?;
    let below =
        |price: Decimal, cost: Decimal| price.round_dp(AMOUNT_SCALE) < cost.round_dp(AMOUNT_SCALE);
    if price_currency == vendor_currency {
        return Ok(below(price, line.cost));
    }
    let rate = fx_rate(
        prices.fx,
        vendor_currency,
        chargee.currency,
        line.key.window_start,
    )
    .ok_or_else(|| UnratedReason::NoFxRate {
        from: vendor_currency.code().into(),
        to: chargee.currency.code().into(),
    })?;
    let cost = line.cost.checked_mul(rate).ok_or(UnratedReason::Overflow)?;
    Ok(below(amount, cost))
}
