//! Partner accounts: the MSP's own account with each vendor, through which customers are
//! enrolled and usage is pulled.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::aws_settings::{AwsSettings, AwsSettingsPatch};
use super::error::{Error, FieldViolation, Result};
use super::microsoft_settings::{MicrosoftSettings, MicrosoftSettingsPatch};
use super::money::parse_decimal;
use super::text;
use super::vendor::Vendor;

pub const DEFAULT_POLL_INTERVAL_SECS: i64 = 15 * 60;
const MIN_POLL_INTERVAL_SECS: i64 = 1;
const MAX_POLL_INTERVAL_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq)]
pub struct PartnerAccount {
    pub id: String,
    pub tenant_id: String,
    /// Leads the keys of the usage lines that come through this account (see
    /// [`super::line_key::LineKey`]); unique across tenants, fixed at creation.
    pub line_key_prefix: u32,
    pub spec: PartnerAccountSpec,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields a caller sets, each already validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartnerAccountSpec {
    pub vendor: Vendor,
    pub display_name: String,
    pub vendor_account_id: String,
    pub partner_discount_rate: Decimal,
    pub credentials_ref: String,
    pub poll_interval_secs: i64,
    pub enabled: bool,
    pub endpoint_url: String,
    /// What the poller asks Cost Explorer for: set on AWS accounts only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSettings>,
    /// The export's currency and the token's authority and scope: set on Microsoft accounts
    /// only, and always there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft: Option<MicrosoftSettings>,
}

impl PartnerAccountSpec {
    /// The AWS settings in force: an AWS account's own (the defaults where none were chosen);
    /// None for other vendors.
    pub fn aws_settings(&self) -> Option<AwsSettings> {
        match self.vendor {
            Vendor::Aws => Some(self.aws.unwrap_or_default()),
            _ => None,
        }
    }

    /// Cross-field rules, checked after every create and update: the account id's shape and the
    /// need for credentials depend on the vendor.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let mut violations = Vec::new();
        if let Err(reason) = self
            .vendor
            .check_partner_account_id(&self.vendor_account_id)
        {
            violations.push(FieldViolation::new(
                format!("{prefix}.vendor_account_id"),
                reason,
            ));
        }
        if self.vendor != Vendor::Simulator && self.credentials_ref.is_empty() {
            violations.push(FieldViolation::new(
                format!("{prefix}.credentials_ref"),
                format!(
                    "is required for {} (\"env:NAME\" or \"file:PATH\")",
                    self.vendor
                ),
            ));
        }
        if self.vendor != Vendor::Aws && self.aws.is_some() {
            violations.push(FieldViolation::new(
                format!("{prefix}.aws_settings"),
                format!("applies to AWS partner accounts only, not {}", self.vendor),
            ));
        }
        match (self.vendor, &self.microsoft) {
            (Vendor::Microsoft, None) => violations.push(FieldViolation::new(
                format!("{prefix}.microsoft_settings.billing_currency"),
                "is required for MICROSOFT (the currency Partner Center bills the partner in)",
            )),
            (Vendor::Microsoft, Some(_)) | (_, None) => {}
            (vendor, Some(_)) => violations.push(FieldViolation::new(
                format!("{prefix}.microsoft_settings"),
                format!("applies to MICROSOFT partner accounts only, not {vendor}"),
            )),
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        }
    }

    pub fn etag(version: i64) -> String {
        format!("v{version}")
    }
}

/// A fraction from 0 to 1, e.g. "0.15".
pub fn parse_discount_rate(field: &str, text: &str) -> Result<Decimal, FieldViolation> {
    let rate = parse_decimal(field, text)?;
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return Err(FieldViolation::new(
            field,
            format!("{text} is not a fraction from 0 to 1 (e.g. \"0.15\" for 15 %)"),
        ));
    }
    Ok(rate)
}

/// Where credentials are found: `env:NAME` or `file:PATH`. Refuses anything that looks like a
/// secret pasted in place of a reference.
pub fn parse_credentials_ref(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let valid = match value.split_once(':') {
        Some(("env", name)) => {
            !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }
        Some(("file", path)) => !path.is_empty() && path.len() <= 1024 && !path.contains('\0'),
        _ => false,
    };
    if valid {
        Ok(value.to_string())
    } else {
        Err(FieldViolation::new(
            field,
            "must be a reference, \"env:NAME\" (an upper-case environment variable) or \
             \"file:PATH\"; never the secret itself",
        ))
    }
}

pub fn check_poll_interval(field: &str, secs: i64) -> Result<i64, FieldViolation> {
    if (MIN_POLL_INTERVAL_SECS..=MAX_POLL_INTERVAL_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(FieldViolation::new(
            field,
            format!("{secs} s is outside 1 s to 1 day"),
        ))
    }
}

/// An optional http(s) endpoint override.
pub fn parse_endpoint_url(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let scheme_ok = value.starts_with("https://") || value.starts_with("http://");
    if !scheme_ok || value.len() > 2048 || value.chars().any(char::is_whitespace) {
        return Err(FieldViolation::new(
            field,
            format!("{value:?} is not an http(s) URL"),
        ));
    }
    Ok(value.to_string())
}

pub fn parse_display_name(field: &str, value: &str) -> Result<String, FieldViolation> {
    text::display_name(field, value, text::NAME_MAX)
}

/// Which fields an update replaces; each `Some` is already validated on its own.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PartnerAccountPatch {
    pub display_name: Option<String>,
    pub vendor_account_id: Option<String>,
    pub partner_discount_rate: Option<Decimal>,
    pub credentials_ref: Option<String>,
    pub poll_interval_secs: Option<i64>,
    pub enabled: Option<bool>,
    pub endpoint_url: Option<String>,
    #[serde(skip_serializing_if = "AwsSettingsPatch::is_empty")]
    pub aws: AwsSettingsPatch,
    #[serde(skip_serializing_if = "MicrosoftSettingsPatch::is_empty")]
    pub microsoft: MicrosoftSettingsPatch,
}

impl PartnerAccountPatch {
    /// The spec after the patch, with the cross-field rules checked.
    pub fn apply(&self, current: &PartnerAccountSpec) -> Result<PartnerAccountSpec> {
        let mut next = current.clone();
        let p = self.clone();
        if let Some(v) = p.display_name {
            next.display_name = v;
        }
        if let Some(v) = p.vendor_account_id {
            next.vendor_account_id = v;
        }
        if let Some(v) = p.partner_discount_rate {
            next.partner_discount_rate = v;
        }
        if let Some(v) = p.credentials_ref {
            next.credentials_ref = v;
        }
        if let Some(v) = p.poll_interval_secs {
            next.poll_interval_secs = v;
        }
        if let Some(v) = p.enabled {
            next.enabled = v;
        }
        if let Some(v) = p.endpoint_url {
            next.endpoint_url = v;
        }
        if !p.aws.is_empty() {
            // On another vendor this is refused by `validate`.
            next.aws = Some(p.aws.apply(current.aws.unwrap_or_default()));
        }
        if !p.microsoft.is_empty() {
            let Some(settings) = current.microsoft.clone() else {
                return Err(Error::invalid(
                    "partner_account.microsoft_settings",
                    format!(
                        "applies to MICROSOFT partner accounts only, not {}",
                        current.vendor
                    ),
                ));
            };
            next.microsoft = Some(p.microsoft.apply(settings));
        }
        next.validate("partner_account")?;
        Ok(next)
    }
}

/// The vendor's version tag of each window's data, by the window's start (RFC 3339).
pub type VersionTags = BTreeMap<String, String>;

/// What the API shows about an account's polling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStatus {
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub requests_spent: i64,
    pub version_tags: VersionTags,
    pub lease_owner: Option<String>,
    /// When the account is due next; None before its first poll.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// Polls that failed in a row since the last success.
    pub consecutive_failures: u32,
}

/// The outcome of one poll, to record.
#[derive(Debug)]
pub struct PollRecord<'a> {
    /// Vendor requests the poll sent (billed or not, failed or not).
    pub requests: i64,
    /// None after a success.
    pub error: Option<&'a str>,
    /// The tags after the poll: a failed poll may still have recorded some windows.
    pub version_tags: &'a VersionTags,
    pub next_poll_at: DateTime<Utc>,
    pub consecutive_failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_references_never_secrets() {
        assert!(parse_credentials_ref("f", "env:AWS_MSP_KEYS").is_ok());
        assert!(parse_credentials_ref("f", "file:/etc/mspgw/pc.json").is_ok());
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "env:lower",
            "http://x",
            "file:",
            "wJalrXUtnFEMI/K7MDENG",
        ] {
            assert!(parse_credentials_ref("f", secret).is_err(), "{secret}");
        }
    }

    #[test]
    fn discount_rates_are_fractions() {
        assert!(parse_discount_rate("f", "0.15").is_ok());
        assert!(parse_discount_rate("f", "1").is_ok());
        assert!(parse_discount_rate("f", "1.01").is_err());
        assert!(parse_discount_rate("f", "-0.1").is_err());
    }
}
