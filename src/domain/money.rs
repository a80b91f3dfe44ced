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

/// The most digits after the decimal point a `Decimal` holds.
const MAX_SCALE: i64 = 28;

/// Parses an exact decimal string: optional '-', digits, optional '.' and digits, then optionally
/// an exponent ('e' or 'E', an optional sign, 1 to 4 digits), as Java's `BigDecimal.toString()`
/// and Python's `str(Decimal)` write small and large values ("1E-10", "1.5e3", "-2E+2"). The value
/// is computed exactly in integers (never through a float); one that needs more than 28 digits
/// after the point, or more than 28-29 significant digits, is refused. No '+' on the number, no
/// spaces, no thousands separators, no precision lost.
pub fn parse_decimal(field: &str, text: &str) -> Result<Decimal, FieldViolation> {
    let malformed = || {
        FieldViolation::new(
            field,
            format!(
                "{text:?} is not a decimal number (expected digits with an optional '-', '.' and exponent, e.g. \"1234.50\" or \"1E-10\")"
            ),
        )
    };
    let too_many_digits = || {
        FieldViolation::new(
            field,
            format!(
                "{text:?} has more digits than can be held exactly (at most 28 significant digits and 28 after the point)"
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
    let (plain, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let unsigned = plain.strip_prefix('-').unwrap_or(plain);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(malformed());
    }
    // The exponent's syntax first, so a malformed number is called malformed whatever its digits.
    let exponent = match exponent {
        None => None,
        Some(exponent) => {
            let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if !digits(exponent_digits) || exponent_digits.len() > 4 {
                return Err(malformed());
            }
            Some(exponent.parse::<i64>().map_err(|_| malformed())?)
        }
    };
    let mantissa = Decimal::from_str_exact(plain).map_err(|_| too_many_digits())?;
    match exponent {
        None => Ok(mantissa),
        Some(exponent) => scaled(mantissa, exponent).ok_or_else(too_many_digits),
    }
}

/// `mantissa` × 10^`exponent` exactly, or None when a `Decimal` cannot hold it.
fn scaled(mantissa: Decimal, exponent: i64) -> Option<Decimal> {
    let negative = mantissa.is_sign_negative();
    let mut units = mantissa.mantissa();
    let mut scale = i64::from(mantissa.scale()) - exponent;
    if units == 0 {
        scale = scale.clamp(0, MAX_SCALE);
    }
    // Trailing zeros of the digits can absorb a scale beyond what a Decimal holds.
    while scale > MAX_SCALE && units % 10 == 0 {
        units /= 10;
        scale -= 1;
    }
    if scale > MAX_SCALE {
        return None;
    }
    if scale < 0 {
        let factor = 10i128.checked_pow(u32::try_from(-scale).ok()?)?;
        units = units.checked_mul(factor)?;
        scale = 0;
    }
    let value = Decimal::try_from_i128_with_scale(units, u32::try_from(scale).ok()?).ok()?;
    // Keep "-0E-3" a negative zero as "-0.000" is; the sign sits in `units` otherwise.
    Some(if negative && value.is_zero() {
        -value
    } else {
        value
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
    // Every amount leaves with the currency's minor digits ("5E27" ZAR as "5000…000.00"); one
    // too large to carry them could not (a Decimal holds 28-29 significant digits in all).
    if !fits_minor_digits(amount, digits) {
        return Err(FieldViolation::new(
            field,
            format!("{text} is too large to be written with {currency}'s {digits} minor digits"),
        ));
    }
    Ok(amount.abs())
}

/// Whether `amount` can be written with `digits` places after the point.
fn fits_minor_digits(amount: Decimal, digits: u32) -> bool {
    let mut shown = amount.normalize();
    shown.rescale(digits);
    shown.scale() == digits && shown == amount
}

/// The one way an amount in a currency leaves the gateway (every API answer, stream and CSV
/// export): exact, with at least the currency's minor digits and more only when the value needs
/// them, never a trailing zero beyond the minor digits, never rounded: "92.00" and
/// "0.00000000222" ZAR, "1200" JPY, "5.000" KWD, "-0.50" ZAR.
pub fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut exact = amount.normalize();
    if exact.scale() < currency.minor_digits() {
        exact.rescale(currency.minor_digits());
    }
    exact.to_string()
}

/// An amount as the portal's HTML pages show it to people: rounded (half to even) to
/// exactly the currency's minor digits, e.g. "50000.00" ZAR, "1200" JPY. Never on the API.
pub fn display_amount(amount: Decimal, currency: Currency) -> String {
    let mut rounded = amount.round_dp(currency.minor_digits());
    rounded.rescale(currency.minor_digits());
    rounded.to_string()
}

/// A decimal that is not an amount in a currency (a quantity, a count of days): every
/// significant digit, no trailing zeros, e.g. "1.5", "1500", "0.0000000001".
pub fn format_decimal(value: Decimal) -> String {
    value.normalize().to_string()
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
            "", "+1", " 1", "1,000", "1.", ".5", "NaN", "1.2.3", "--1", "0x10", "1e", "e5", "1e+",
            "1e--2", "1E2.5", "1e 2", "1e12345", "1.e3", ".5e3", "1e3e3", "inf", "+1e3",
        ] {
            let err = parse_decimal("x", bad).unwrap_err();
            assert_eq!(err.field, "x", "{bad}");
        }
        assert!(parse_decimal("x", "1.00000000000000000000000000001").is_err());
    }

    #[test]
    fn scientific_notation_is_read_exactly() {
        let read = |s: &str| parse_decimal("x", s).unwrap();
        assert_eq!(read("1E-10"), Decimal::new(1, 10));
        assert_eq!(read("1E-10").to_string(), "0.0000000001");
        assert_eq!(read("1.5e3"), Decimal::new(1500, 0));
        assert_eq!(read("-2E+2"), Decimal::new(-200, 0));
        assert_eq!(read("1.50E2").to_string(), "150");
        assert_eq!(read("12345E-2").to_string(), "123.45");
        assert_eq!(read("0E-3"), Decimal::ZERO);
        assert_eq!(read("0E-3000"), Decimal::ZERO);
        assert_eq!(read("0E+3000"), Decimal::ZERO);
        // What Python's str(Decimal) and Java's BigDecimal.toString() write.
        assert_eq!(read("1.23E-7").to_string(), "0.000000123");
        assert_eq!(read("5E+1").to_string(), "50");
        // 28 digits after the point is the limit; trailing zeros of the digits may absorb more.
        assert_eq!(read("1E-28"), Decimal::new(1, 28));
        assert_eq!(read("100E-30"), Decimal::new(1, 28));
        assert_eq!(read("7.9E+28").to_string(), "79000000000000000000000000000");
        for too_much in ["1E-29", "1.5E-28", "1E+29", "8E+28", "1E-9999", "1E+9999"] {
            let err = parse_decimal("x", too_much).unwrap_err();
            assert!(
                err.description.contains("held exactly"),
                "{too_much}: {err:?}"
            );
        }
    }

    #[test]
    fn amounts_in_scientific_notation_keep_the_minor_unit_rule() {
        assert_eq!(
            parse_amount("x", "1.05E2", zar()).unwrap(),
            Decimal::new(105, 0)
        );
        assert_eq!(
            parse_amount("x", "5E-2", zar()).unwrap(),
            Decimal::new(5, 2)
        );
        assert!(parse_amount("x", "1E-3", zar()).is_err());
        assert!(parse_amount("x", "-1E2", zar()).is_err());
    }

    #[test]
    fn amounts_too_large_for_their_minor_digits_are_refused() {
        // Found by fuzzing (fuzz/regressions/currency_amount/): accepted, then written
        // without the minor digits every amount leaves with.
        let kwd = Currency::parse("c", "KWD").unwrap();
        for (text, currency) in [
            ("5E27", zar()),
            ("1E28", zar()),
            ("552255522252255222521552155", kwd),
        ] {
            let err = parse_amount("x", text, currency).unwrap_err();
            assert!(err.description.contains("too large"), "{text}: {err:?}");
        }
        let largest = "792281625142643375935439503.35";
        assert_eq!(
            format_amount(parse_amount("x", largest, zar()).unwrap(), zar()),
            largest
        );
        let jpy = Currency::parse("c", "JPY").unwrap();
        assert!(parse_amount("x", "7.9E+28", jpy).is_ok());
    }

    #[test]
    fn a_malformed_exponent_is_malformed_whatever_the_digits() {
        // Found by fuzzing: 30 digits and the exponent "-+00" was called too long, not malformed.
        let err = parse_decimal("x", "0.00000000000007777777777777721E-+00").unwrap_err();
        assert!(err.description.contains("not a decimal number"), "{err:?}");
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

    #[test]
    fn amounts_leave_with_at_least_the_minor_digits_and_exactly() {
        let jpy = Currency::parse("c", "JPY").unwrap();
        let kwd = Currency::parse("c", "KWD").unwrap();
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        for (value, currency, text) in [
            ("92", zar(), "92.00"),
            ("92.000000", zar(), "92.00"),
            ("5.00", zar(), "5.00"),
            ("5", zar(), "5.00"),
            ("0.00000000222", zar(), "0.00000000222"),
            ("209.8750", zar(), "209.875"),
            ("-0.5", zar(), "-0.50"),
            ("-0.00", zar(), "0.00"),
            ("0", zar(), "0.00"),
            ("1200.0", jpy, "1200"),
            ("1200.5", jpy, "1200.5"),
            ("5", kwd, "5.000"),
            ("5.1234", kwd, "5.1234"),
        ] {
            assert_eq!(
                format_amount(d(value), currency),
                text,
                "{value} {currency}"
            );
            // What leaves is read back as the same value.
            assert_eq!(parse_decimal("x", text).unwrap(), d(value));
        }
        assert_eq!(display_amount(d("0.00000000222"), zar()), "0.00");
        assert_eq!(display_amount(d("1.006"), zar()), "1.01");
        assert_eq!(format_decimal(d("1.500")), "1.5");
        assert_eq!(format_decimal(d("1500")), "1500");
    }
}
