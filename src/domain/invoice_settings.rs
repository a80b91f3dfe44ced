//! A tenant's invoicing settings: the invoice number prefix, the rounding rule and the grace
//! period before a period closes.
use super::error::{Result, Violations};
use super::invoice_number::{DEFAULT_PREFIX, parse_prefix};
use super::period_close::Grace;
use super::rounding::RoundingRule;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvoiceSettings {
    pub number_prefix: String,
    pub rounding: RoundingRule,
    pub grace: Grace,
}

impl Default for InvoiceSettings {
    fn default() -> Self {
        InvoiceSettings {
            number_prefix: DEFAULT_PREFIX.to_string(),
            rounding: RoundingRule::default(),
            grace: Grace::DEFAULT,
        }
    }
}

impl InvoiceSettings {
    /// Validates a request's settings under `prefix` (e.g. "invoice_settings"), reporting every
    /// bad field at once.
    pub fn parse(
        prefix: &str,
        number_prefix: &str,
        rounding: &str,
        grace_days: u32,
    ) -> Result<Self> {
        let mut v = Violations::new();
        let number_prefix = v.check(parse_prefix(
            &format!("{prefix}.number_prefix"),
            number_prefix,
        ));
        let rounding = v.check(RoundingRule::parse(&format!("{prefix}.rounding"), rounding));
        let grace = v.check(Grace::days(&format!("{prefix}.grace_days"), grace_days));
        v.into_result()?;
        Ok(InvoiceSettings {
            number_prefix: number_prefix.expect("checked"),
            rounding: rounding.expect("checked"),
            grace: grace.expect("checked"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::Error;

    #[test]
    fn settings_parse_and_report_every_bad_field() {
        let s = InvoiceSettings::parse("invoice_settings", "ISP", "HALF_EVEN", 5).unwrap();
        assert_eq!(s.number_prefix, "ISP");
        assert_eq!(s.rounding, RoundingRule::HalfEven);
        assert_eq!(s.grace.in_days(), 5);
        let Err(Error::InvalidArgument(violations)) =
            InvoiceSettings::parse("invoice_settings", "isp", "UP", 400)
        else {
            panic!("bad settings accepted");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "invoice_settings.number_prefix",
                "invoice_settings.rounding",
                "invoice_settings.grace_days"
            ]
        );
        let d = InvoiceSettings::default();
        assert_eq!((d.number_prefix.as_str(), d.grace.in_days()), ("INV", 3));
    }
}
