//! Payments against invoices, and a customer's exposure: open charges plus unpaid invoice
//! balances. Partial payments are allowed; paying more than the balance is refused.
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::error::{Error, FieldViolation, Result};
use super::invoice::checked_sum;
use super::money::{Currency, format_amount, parse_amount};

/// What is left to pay: `total - paid` (negative for a credit invoice).
pub fn balance(total: Decimal, paid: Decimal) -> Decimal {
    total - paid
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PaymentStatus {
    /// Nothing paid of a positive total.
    Unpaid,
    PartiallyPaid,
    /// Paid in full, or nothing to pay (a zero total).
    Paid,
    /// A negative total: the MSP owes the customer (adjustments that lowered earlier periods).
    Credit,
}

impl PaymentStatus {
    pub fn of(total: Decimal, paid: Decimal) -> Self {
        if total < Decimal::ZERO {
            PaymentStatus::Credit
        } else if balance(total, paid) <= Decimal::ZERO {
            PaymentStatus::Paid
        } else if paid.is_zero() {
            PaymentStatus::Unpaid
        } else {
            PaymentStatus::PartiallyPaid
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "UNPAID",
            PaymentStatus::PartiallyPaid => "PARTIALLY_PAID",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Credit => "CREDIT",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "UNPAID" => Ok(PaymentStatus::Unpaid),
            "PARTIALLY_PAID" => Ok(PaymentStatus::PartiallyPaid),
            "PAID" => Ok(PaymentStatus::Paid),
            "CREDIT" => Ok(PaymentStatus::Credit),
            other => Err(format!("unknown payment status {other:?}")),
        }
    }
}

/// A payment amount: a positive decimal string with no more digits than `currency`'s minor unit.
pub fn parse_payment_amount(
    field: &str,
    text: &str,
    currency: Currency,
) -> Result<Decimal, FieldViolation> {
    let amount = parse_amount(field, text, currency)?;
    if amount.is_zero() {
        return Err(FieldViolation::new(field, "must be more than zero"));
    }
    Ok(amount)
}

/// What has been paid of an invoice of `total` after paying `amount` on top of `paid`;
/// FAILED_PRECONDITION naming `field`, the amount and the balance when it would pay too much.
pub fn apply_payment(
    field: &str,
    amount: Decimal,
    currency: Currency,
    total: Decimal,
    paid: Decimal,
) -> Result<Decimal> {
    if amount <= Decimal::ZERO {
        return Err(Error::invalid(field, "must be more than zero"));
    }
    let owed = balance(total, paid);
    if amount > owed {
        let show = |d: Decimal| format!("{} {currency}", format_amount(d, currency));
        let description = if owed <= Decimal::ZERO {
            format!(
                "{} cannot be paid: the invoice has nothing left to pay (balance {})",
                show(amount),
                show(owed)
            )
        } else {
            format!(
                "{} is more than the invoice's balance of {} (total {}, paid {}); overpayment is refused",
                show(amount),
                show(owed),
                show(total),
                show(paid)
            )
        };
        return Err(Error::precondition(field, description));
    }
    checked_sum(paid, amount)
}

/// What a customer owes and has not paid, in its billing currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Charges on no invoice yet (exact, unrounded).
    pub open_charges: Decimal,
    /// Σ of the balances of its invoices (credits count against it).
    pub unpaid_invoices: Decimal,
}

impl Exposure {
    pub fn total(&self) -> Decimal {
        self.open_charges + self.unpaid_invoices
    }

    /// A close moves the invoice's charges out of the open ones and its rounded total into the
    /// unpaid invoices: exposure moves by the rounding difference only.
    pub fn after_close(&self, unrounded_total: Decimal, total: Decimal) -> Result<Exposure> {
        self.moved_by(Exposure::close_move(unrounded_total, total))
    }

    /// What [`after_close`](Self::after_close) adds, as a change a store can apply to the
    /// stored exposure (a close on PostgreSQL sends it with its serial step; see
    /// `ledger::invoicing::steps`).
    pub fn close_move(unrounded_total: Decimal, total: Decimal) -> Exposure {
        Exposure {
            open_charges: -unrounded_total,
            unpaid_invoices: total,
        }
    }

    /// This exposure with `change` added to each part.
    pub fn moved_by(&self, change: Exposure) -> Result<Exposure> {
        Ok(Exposure {
            open_charges: checked_sum(self.open_charges, change.open_charges)?,
            unpaid_invoices: checked_sum(self.unpaid_invoices, change.unpaid_invoices)?,
        })
    }

    pub fn after_payment(&self, amount: Decimal) -> Result<Exposure> {
        Ok(Exposure {
            open_charges: self.open_charges,
            unpaid_invoices: checked_sum(self.unpaid_invoices, -amount)?,
        })
    }
}

/// Σ of the balances of invoices given as (total, paid).
pub fn unpaid_invoices(invoices: impl IntoIterator<Item = (Decimal, Decimal)>) -> Result<Decimal> {
    invoices
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, (total, paid)| {
            checked_sum(sum, balance(total, paid))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn zar() -> Currency {
        Currency::parse("c", "ZAR").unwrap()
    }

    #[test]
    fn partial_then_full_payment_and_overpayment_refused() {
        let total = dec("100.00");
        let paid = apply_payment("amount", dec("30.00"), zar(), total, Decimal::ZERO).unwrap();
        assert_eq!(paid, dec("30.00"));
        assert_eq!(PaymentStatus::of(total, paid), PaymentStatus::PartiallyPaid);
        assert_eq!(balance(total, paid), dec("70.00"));
        let err = apply_payment("amount", dec("70.01"), zar(), total, paid).unwrap_err();
        let Error::FailedPrecondition {
            subject,
            description,
        } = err
        else {
            panic!("overpayment not refused as a precondition: {err:?}");
        };
        assert_eq!(subject, "amount");
        assert!(
            description.contains("70.01 ZAR") && description.contains("balance of 70.00 ZAR"),
            "{description}"
        );
        let paid = apply_payment("amount", dec("70.00"), zar(), total, paid).unwrap();
        assert_eq!(PaymentStatus::of(total, paid), PaymentStatus::Paid);
        let err = apply_payment("amount", dec("0.01"), zar(), total, paid).unwrap_err();
        assert!(err.to_string().contains("nothing left to pay"), "{err}");
        assert!(apply_payment("amount", Decimal::ZERO, zar(), total, Decimal::ZERO).is_err());
    }

    #[test]
    fn statuses_follow_total_and_paid() {
        assert_eq!(PaymentStatus::of(dec("5"), dec("0")), PaymentStatus::Unpaid);
        assert_eq!(PaymentStatus::of(dec("0"), dec("0")), PaymentStatus::Paid);
        assert_eq!(
            PaymentStatus::of(dec("-5"), dec("0")),
            PaymentStatus::Credit
        );
        for s in [
            PaymentStatus::Unpaid,
            PaymentStatus::PartiallyPaid,
            PaymentStatus::Paid,
            PaymentStatus::Credit,
        ] {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(s));
        }
    }

    #[test]
    fn payment_amounts_are_positive_in_the_minor_unit() {
        assert_eq!(
            parse_payment_amount("amount", "12.50", zar()),
            Ok(dec("12.50"))
        );
        for bad in ["0", "0.00", "-1", "1.005", "abc", ""] {
            assert_eq!(
                parse_payment_amount("amount", bad, zar())
                    .unwrap_err()
                    .field,
                "amount",
                "{bad}"
            );
        }
        let jpy = Currency::parse("c", "JPY").unwrap();
        assert!(parse_payment_amount("amount", "1.5", jpy).is_err());
        let kwd = Currency::parse("c", "KWD").unwrap();
        assert_eq!(
            parse_payment_amount("amount", "0.125", kwd),
            Ok(dec("0.125"))
        );
    }

    #[test]
    fn exposure_is_open_charges_plus_unpaid_balances() {
        let open = Exposure {
            open_charges: dec("100.004"),
            unpaid_invoices: Decimal::ZERO,
        };
        // Closing 100.004 into an invoice of 100.00: exposure drops by the rounding only.
        let closed = open.after_close(dec("100.004"), dec("100.00")).unwrap();
        assert_eq!(closed.open_charges, Decimal::ZERO);
        assert_eq!(closed.total(), dec("100.00"));
        let paid = closed.after_payment(dec("40.00")).unwrap();
        assert_eq!(paid.total(), dec("60.00"));
        let unpaid = unpaid_invoices([
            (dec("100.00"), dec("40.00")),
            (dec("20.00"), dec("20.00")),
            (dec("-5.00"), Decimal::ZERO),
        ])
        .unwrap();
        assert_eq!(unpaid, dec("55.00"));
    }
}
