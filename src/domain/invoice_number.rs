//! Invoice numbers: `PREFIX-YYYY-MM-NNNNNN`, e.g. `ISP-2026-11-000123`. The counter is one
//! gap-free sequence per tenant (the store's), taken when an invoice is finalized; the year and
//! month are the issue date's in the tenant's time zone, so numbers sort in issue order.
use chrono::{Datelike, NaiveDate};

use super::error::{Error, FieldViolation, Result};

pub const PREFIX_MAX: usize = 16;
/// Counters are zero-padded to this many digits (and grow beyond it, never wrap).
pub const COUNTER_DIGITS: usize = 6;
/// The prefix a tenant starts with.
pub const DEFAULT_PREFIX: &str = "INV";

/// A tenant's prefix: 1 to 16 capital letters, digits and inner hyphens ("ISP", "ACME-ZA").
pub fn parse_prefix(field: &str, prefix: &str) -> Result<String, FieldViolation> {
    let problem = if prefix.is_empty() {
        Some("is required (capital letters, digits and hyphens, e.g. \"ISP\")".to_string())
    } else if prefix.len() > PREFIX_MAX {
        Some(format!(
            "is {} characters long; at most {PREFIX_MAX} are allowed",
            prefix.len()
        ))
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        Some(format!(
            "{prefix:?} may hold only capital letters A-Z, digits and hyphens"
        ))
    } else if prefix.starts_with('-') || prefix.ends_with('-') || prefix.contains("--") {
        Some(format!(
            "{prefix:?} must not start or end with a hyphen or hold two in a row"
        ))
    } else {
        None
    };
    match problem {
        Some(description) => Err(FieldViolation::new(field, description)),
        None => Ok(prefix.to_string()),
    }
}

/// The number of the `counter`th invoice (from 1) of a tenant, issued on `issued_on`:
/// [`number_stem`] then the counter, zero-padded to [`COUNTER_DIGITS`].
pub fn format_invoice_number(prefix: &str, issued_on: NaiveDate, counter: i64) -> Result<String> {
    if counter < 1 {
        return Err(Error::Internal(format!(
            "invoice counter {counter} (counters start at 1)"
        )));
    }
    Ok(format!(
        "{}{counter:0width$}",
        number_stem(prefix, issued_on),
        width = COUNTER_DIGITS
    ))
}

/// What every number issued on `issued_on` starts with: `PREFIX-YYYY-MM-`.
pub fn number_stem(prefix: &str, issued_on: NaiveDate) -> String {
    format!("{prefix}-{:04}-{:02}-", issued_on.year(), issued_on.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_prefix_issue_month_and_padded_counter() {
        let nov = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(
            format_invoice_number("ISP", nov, 123).unwrap(),
            "ISP-2026-11-000123"
        );
        let jan = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(
            format_invoice_number("ACME-ZA", jan, 1).unwrap(),
            "ACME-ZA-2027-01-000001"
        );
        // Past a million the counter widens instead of wrapping.
        assert_eq!(
            format_invoice_number("ISP", jan, 1_234_567).unwrap(),
            "ISP-2027-01-1234567"
        );
        assert!(format_invoice_number("ISP", jan, 0).is_err());
    }

    #[test]
    fn prefixes_are_checked_with_the_field_named() {
        for good in ["ISP", "A", "ACME-ZA", "X1-2", "ABCDEFGHIJKLMNOP"] {
            assert_eq!(parse_prefix("p", good).unwrap(), good);
        }
        for bad in [
            "",
            "isp",
            "IS P",
            "ISP_1",
            "-ISP",
            "ISP-",
            "IS--P",
            "ÄBC",
            "ABCDEFGHIJKLMNOPQ",
        ] {
            let err = parse_prefix("invoice_settings.number_prefix", bad).unwrap_err();
            assert_eq!(err.field, "invoice_settings.number_prefix", "{bad:?}");
        }
    }
}
