//! Rounding to a currency's minor unit. It happens in exactly one place, where an invoice line is
//! made; every amount before that keeps the vendor's full precision.
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use super::error::FieldViolation;
use super::money::Currency;

/// How an exact half of the minor unit rounds; one rule per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum RoundingRule {
    /// Halves away from zero: 0.125 -> 0.13, -0.125 -> -0.13 (commercial rounding; Java's
    /// `RoundingMode.HALF_UP`). The default.
    #[default]
    HalfUp,
    /// Halves to the even digit: 0.125 -> 0.12, 0.135 -> 0.14 (banker's rounding; no drift
    /// over many halves).
    HalfEven,
}

impl RoundingRule {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundingRule::HalfUp => "HALF_UP",
            RoundingRule::HalfEven => "HALF_EVEN",
        }
    }

    pub fn parse(field: &str, text: &str) -> Result<Self, FieldViolation> {
        text.parse().map_err(|_| {
            FieldViolation::new(field, format!("{text:?} is not HALF_UP or HALF_EVEN"))
        })
    }

    /// `amount` rounded to `currency`'s minor unit, with exactly that many fractional digits
    /// ("12" JPY, "0.10" ZAR, "1.235" KWD).
    pub fn round(self, amount: Decimal, currency: Currency) -> Decimal {
        let strategy = match self {
            RoundingRule::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingRule::HalfEven => RoundingStrategy::MidpointNearestEven,
        };
        let digits = currency.minor_digits();
        let mut rounded = amount.round_dp_with_strategy(digits, strategy);
        rounded.rescale(digits);
        rounded
    }
}

impl fmt::Display for RoundingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RoundingRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "HALF_UP" => Ok(RoundingRule::HalfUp),
            "HALF_EVEN" => Ok(RoundingRule::HalfEven),
            other => Err(format!("unknown rounding rule {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn currency(code: &str) -> Currency {
        Currency::parse("c", code).unwrap()
    }

    #[test]
    fn exact_halves_follow_the_rule_in_every_minor_unit() {
        use RoundingRule::{HalfEven, HalfUp};
        let cases = [
            // (amount, currency, half-up, half-even)
            ("0.125", "ZAR", "0.13", "0.12"),
            ("0.135", "ZAR", "0.14", "0.14"),
            ("-0.125", "ZAR", "-0.13", "-0.12"),
            ("2.5", "JPY", "3", "2"),
            ("3.5", "JPY", "4", "4"),
            ("-2.5", "JPY", "-3", "-2"),
            ("0.5", "JPY", "1", "0"),
            ("1.0005", "KWD", "1.001", "1.000"),
            ("1.0015", "KWD", "1.002", "1.002"),
            ("-1.0005", "KWD", "-1.001", "-1.000"),
            // Just off the half: both rules agree.
            ("0.1250000001", "ZAR", "0.13", "0.13"),
            ("0.1249999999", "ZAR", "0.12", "0.12"),
            ("2.4999999999", "JPY", "2", "2"),
        ];
        for (amount, code, up, even) in cases {
            let c = currency(code);
            assert_eq!(
                HalfUp.round(dec(amount), c).to_string(),
                up,
                "{amount} {code} half-up"
            );
            assert_eq!(
                HalfEven.round(dec(amount), c).to_string(),
                even,
                "{amount} {code} half-even"
            );
        }
    }

    #[test]
    fn rounded_amounts_carry_exactly_the_minor_digits() {
        let rule = RoundingRule::HalfUp;
        assert_eq!(rule.round(dec("5"), currency("ZAR")).to_string(), "5.00");
        assert_eq!(rule.round(dec("5"), currency("KWD")).to_string(), "5.000");
        assert_eq!(rule.round(dec("5.00"), currency("JPY")).to_string(), "5");
        assert_eq!(
            rule.round(dec("0.0000000001"), currency("ZAR")).to_string(),
            "0.00"
        );
    }

    #[test]
    fn rules_parse_by_name_and_name_the_field() {
        assert_eq!(
            RoundingRule::parse("r", "HALF_EVEN"),
            Ok(RoundingRule::HalfEven)
        );
        assert_eq!(
            RoundingRule::parse("r", "HALF_UP"),
            Ok(RoundingRule::HalfUp)
        );
        assert_eq!(RoundingRule::parse("r", "half_up").unwrap_err().field, "r");
        assert_eq!(RoundingRule::default(), RoundingRule::HalfUp);
    }
}
