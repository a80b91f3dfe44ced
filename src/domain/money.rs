//! Currencies and exact decimal amounts. Money is `rust_decimal::Decimal` end to end; it crosses
//! the API as a decimal string and is parsed strictly here.
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::error::FieldViolation;

/// An ISO 4217 currency usable for billing (one with a defined number of minor digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(field: &str, code: &str) -> Result<Self, FieldViolation> {
        let valid_shape = code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase());
        let currency = valid_shape
            .then(|| iso_currency::Currency::from_code(code))
            .flatten()
            .ok_or_else(|| {
                FieldViolation::new(
                    field,
                    format!("{code:?} is not an ISO 4217 currency code (three capital letters, e.g. \"ZAR\")"),
                )
            })?;
        if currency.exponent().is_none() {
            return Err(FieldViolation::new(
                field,
                format!("{code} has no minor unit (a metal or fund code) and cannot be billed in"),
            ));
        }
        Ok(Currency(currency))
    }

    /// A currency the gateway stored itself: one that does not parse is corruption, not bad input.
    pub fn from_stored(code: &str) -> super::error::Result<Self> {
        Currency::parse("currency", code)
            .map_err(|e| super::error::Error::Internal(format!("stored currency: {e}")))
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point in the currency's minor unit: 2 for ZAR, 0 for JPY, 3 for KWD.
    pub fn minor_digits(&self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Serialized as its code (in idempotency fingerprints of requests that carry one).
impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = FieldViolation;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse("currency", code)
    }
}

/// Longest decimal string accepted; rust_decimal holds 28-29 significant digits.
const MAX_DECIMAL_LEN: usize = 40;

/// Parses a plain decimal string: optional '-', digits, optional '.' and digits. No exponent,
/// no '+', no spaces, no thousands separators, no precision lost.
pub fn parse_decimal(field: &str, text: &str) -> Result<Decimal, FieldViolation> {
    let malformed = || {
        FieldViolation::new(
            field,
            format!(
                "{text:?} is not a decimal number (expected digits with an optional '-' and '.', e.g. \"1234.50\")"
            ),
        )
    };
    if text.is_empty() || text.len() > MAX_DECIMAL_LEN {
        return Err(if text.is_empty() {
            FieldViolation::new(field, "is required (a decimal string such as \"1234.50\")")
        } else {
            FieldViolation::new(
                field,
                format!("is longer than {MAX_DECIMAL_LEN} characters"),
            )
        });
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(malformed());
    }
    Decimal::from_str_exact(text).map_err(|_| {
        FieldViolation::new(
            field,
            format!(
                "{text:?} has more digits than can be held exactly (at most 28 significant digits)"
            ),
        )
    })
}

/// A non-negative amount in `currency`, with no more fractional digits than its minor unit.
pub fn parse_amount(
    field: &str,
    text: &str,
    currency: Currency,
) -> Result<Decimal, FieldViolation> {
    let amount = parse_decimal(field, text)?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(FieldViolation::new(
            field,
            format!("{text} is negative; it must be zero or more"),
        ));
    }
    let digits = currency.minor_digits();
    if amount.normalize().scale() > digits {
        return Err(FieldViolation::new(
            field,
            format!("{text} has more fractional digits than {currency} allows ({digits})"),
        ));
    }
    Ok(amount.abs())
}

/// Formats an amount with exactly the currency's minor digits, e.g. "50000.00" ZAR, "1200" JPY.
pub fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut rounded = amount.round_dp(currency.minor_digits());
    rounded.rescale(currency.minor_digits());
    rounded.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zar() -> Currency {
        Currency::parse("c", "ZAR").unwrap()
    }

    #[test]
    fn currencies_validate_and_know_their_minor_digits() {
        assert_eq!(Currency::parse("c", "JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("c", "KWD").unwrap().minor_digits(), 3);
        assert_eq!(zar().minor_digits(), 2);
        for bad in ["zar", "ZA", "ZARR", "XYZ", "", "XAU"] {
            assert!(Currency::parse("c", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn decimals_parse_strictly_and_exactly() {
        assert_eq!(
            parse_decimal("x", "0.0000000001").unwrap().to_string(),
            "0.0000000001"
        );
        assert_eq!(parse_decimal("x", "-12.5").unwrap().to_string(), "-12.5");
        for bad in [
            "", "1e5", "+1", " 1", "1,000", "1.", ".5", "NaN", "1.2.3", "--1", "0x10",
        ] {
            let err = parse_decimal("x", bad).unwrap_err();
            assert_eq!(err.field, "x", "{bad}");
        }
        assert!(parse_decimal("x", "1.00000000000000000000000000001").is_err());
    }

    #[test]
    fn amounts_respect_sign_and_minor_unit() {
        assert_eq!(
            parse_amount("x", "10.50", zar()).unwrap().to_string(),
            "10.50"
        );
        assert!(parse_amount("x", "-1", zar()).is_err());
        assert!(parse_amount("x", "0.001", zar()).is_err());
        assert!(parse_amount("x", "0.010", zar()).is_ok());
        let jpy = Currency::parse("c", "JPY").unwrap();
        assert!(parse_amount("x", "1.5", jpy).is_err());
        assert_eq!(format_amount(Decimal::new(12, 0), jpy), "12");
        assert_eq!(format_amount(Decimal::new(5, 1), zar()), "0.50");
    }
}
