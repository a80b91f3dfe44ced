//! What crosses the service-control boundary between the gateway and a vendor adapter: the
//! vendor resource a call acts on, what the call changed, how it failed (worth a retry or not),
//! and the enrollment orders that create new vendor accounts.
use std::fmt;
use std::time::Duration;

use super::error::{Result, Violations};
use super::text;
use super::vendor::{Vendor, VendorAccountKind};

/// The vendor resource one suspend, resume or purge acts on: a customer's linked vendor account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlTarget {
    pub kind: VendorAccountKind,
    pub account_id: String,
    /// A Microsoft subscription's customer tenant: Partner Center addresses a subscription only
    /// under its customer (`/customers/{tenant}/subscriptions/{id}`). None for other kinds.
    pub tenant_id: Option<String>,
}

impl ControlTarget {
    pub fn new(kind: VendorAccountKind, account_id: impl Into<String>) -> Self {
        ControlTarget {
            kind,
            account_id: account_id.into(),
            tenant_id: None,
        }
    }

    pub fn vendor(&self) -> Vendor {
        self.kind.vendor()
    }
}

impl fmt::Display for ControlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.account_id)
    }
}

/// What a call did to one vendor resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The vendor changed the resource.
    Applied,
    /// The resource was already in the wanted state (a retry, or someone else did it).
    AlreadyInState,
    /// Left alone on purpose, e.g. a subscription already cancelled when a tenant is resumed.
    Skipped,
}

/// One vendor resource a call touched: the AWS account itself, or each subscription of a
/// Microsoft customer tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    pub resource_id: String,
    pub change: Change,
    /// Why, for [`Change::Skipped`].
    pub note: Option<String>,
}

impl ResourceChange {
    pub fn new(resource_id: impl Into<String>, change: Change) -> Self {
        ResourceChange {
            resource_id: resource_id.into(),
            change,
            note: None,
        }
    }

    pub fn skipped(resource_id: impl Into<String>, note: impl Into<String>) -> Self {
        ResourceChange {
            resource_id: resource_id.into(),
            change: Change::Skipped,
            note: Some(note.into()),
        }
    }
}

/// A successful suspend, resume or purge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlReport {
    pub resources: Vec<ResourceChange>,
    /// AWS: the id of the gateway's deny-all service control policy, for the caller to keep
    /// with the partner account (so later calls need not look it up by name).
    pub deny_policy_id: Option<String>,
}

/// A failed vendor call, classified for the retry machinery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Throttling, a 5xx, a timeout, a network failure, a concurrent modification: the same
    /// call later may succeed. `retry_after` is the vendor's own hint, when it gave one.
    #[error("{reason} (transient)")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the vendor's reason says why (refused, not found, not allowed,
    /// credentials refused).
    #[error("{reason}")]
    Permanent { reason: String },
}

impl ControlError {
    pub fn transient(reason: impl Into<String>) -> Self {
        ControlError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        ControlError::Permanent {
            reason: reason.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ControlError::Transient { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            ControlError::Transient { reason, .. } | ControlError::Permanent { reason } => reason,
        }
    }

    /// The same error with `context` in front of its reason.
    pub fn context(self, context: &str) -> Self {
        match self {
            ControlError::Transient {
                reason,
                retry_after,
            } => ControlError::Transient {
                reason: format!("{context}: {reason}"),
                retry_after,
            },
            ControlError::Permanent { reason } => ControlError::Permanent {
                reason: format!("{context}: {reason}"),
            },
        }
    }
}

/// A request to create a vendor account for a customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnrollmentOrder {
    /// Stable across retries of the same enrollment (e.g. the action id): vendors that take an
    /// idempotency key (Partner Center's `MS-RequestId`) get one derived from it.
    pub idempotency_key: String,
    pub details: EnrollmentDetails,
}

/// What each vendor needs to create an account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EnrollmentDetails {
    /// AWS `CreateAccount`: a member account in the partner's organization.
    Aws(AwsEnrollment),
    /// Partner Center `POST /v1/customers`: a customer tenant under the partner.
    Microsoft(Box<MicrosoftEnrollment>),
    Simulator(SimulatorEnrollment),
}

impl EnrollmentDetails {
    pub fn vendor(&self) -> Vendor {
        match self {
            EnrollmentDetails::Aws(_) => Vendor::Aws,
            EnrollmentDetails::Microsoft(_) => Vendor::Microsoft,
            EnrollmentDetails::Simulator(_) => Vendor::Simulator,
        }
    }

    /// Every field checked, all violations reported at once under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let mut violations = Violations::new();
        match self {
            EnrollmentDetails::Aws(aws) => aws.check(prefix, &mut violations),
            EnrollmentDetails::Microsoft(ms) => ms.check(prefix, &mut violations),
            EnrollmentDetails::Simulator(sim) => {
                violations.check(text::display_name(
                    &format!("{prefix}.account_name"),
                    &sim.account_name,
                    AWS_ACCOUNT_NAME_MAX,
                ));
            }
        }
        violations.into_result()
    }
}

/// AWS limits on `CreateAccount`'s fields.
pub const AWS_ACCOUNT_NAME_MAX: usize = 50;
pub const AWS_EMAIL_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsEnrollment {
    /// The new account's root user email; unique across all of AWS.
    pub email: String,
    pub account_name: String,
}

impl AwsEnrollment {
    fn check(&self, prefix: &str, violations: &mut Violations) {
        violations.check(email(
            &format!("{prefix}.email"),
            &self.email,
            AWS_EMAIL_MAX,
        ));
        violations.check(text::display_name(
            &format!("{prefix}.account_name"),
            &self.account_name,
            AWS_ACCOUNT_NAME_MAX,
        ));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MicrosoftEnrollment {
    /// The customer's initial domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
    pub company_name: String,
    pub contact: Contact,
    pub address: PostalAddress,
    /// Partner Center billing profile culture and language, e.g. `en-US` and `en`.
    pub culture: String,
    pub language: String,
}

impl MicrosoftEnrollment {
    fn check(&self, prefix: &str, violations: &mut Violations) {
        violations.check(onmicrosoft_domain(
            &format!("{prefix}.domain"),
            &self.domain,
        ));
        violations.check(text::display_name(
            &format!("{prefix}.company_name"),
            &self.company_name,
            text::NAME_MAX,
        ));
        let contact = format!("{prefix}.contact");
        for (field, value) in [
            ("first_name", &self.contact.first_name),
            ("last_name", &self.contact.last_name),
        ] {
            violations.check(text::display_name(
                &format!("{contact}.{field}"),
                value,
                text::NAME_MAX,
            ));
        }
        violations.check(email(
            &format!("{contact}.email"),
            &self.contact.email,
            EMAIL_MAX,
        ));
        self.address.check(&format!("{prefix}.address"), violations);
        if !is_culture(&self.culture) {
            violations.add(
                format!("{prefix}.culture"),
                format!("{:?} is not a culture such as \"en-US\"", self.culture),
            );
        }
        if !(self.language.len() == 2 && self.language.bytes().all(|b| b.is_ascii_lowercase())) {
            violations.add(
                format!("{prefix}.language"),
                format!(
                    "{:?} is not a two-letter language such as \"en\"",
                    self.language
                ),
            );
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Optional.
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostalAddress {
    /// ISO 3166-1 alpha-2, e.g. `ZA`.
    pub country: String,
    /// State or province; optional where the country has none.
    pub region: String,
    pub city: String,
    pub address_line1: String,
    pub address_line2: String,
    pub postal_code: String,
}

impl PostalAddress {
    fn check(&self, prefix: &str, violations: &mut Violations) {
        if !(self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_uppercase())) {
            violations.add(
                format!("{prefix}.country"),
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 country code such as \"ZA\"",
                    self.country
                ),
            );
        }
        for (field, value) in [
            ("city", &self.city),
            ("address_line1", &self.address_line1),
            ("postal_code", &self.postal_code),
        ] {
            violations.check(text::display_name(
                &format!("{prefix}.{field}"),
                value,
                ADDRESS_PART_MAX,
            ));
        }
        for (field, value) in [
            ("region", &self.region),
            ("address_line2", &self.address_line2),
        ] {
            if !value.is_empty() {
                violations.check(text::display_name(
                    &format!("{prefix}.{field}"),
                    value,
                    ADDRESS_PART_MAX,
                ));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimulatorEnrollment {
    pub account_name: String,
}

const EMAIL_MAX: usize = 254;
const ADDRESS_PART_MAX: usize = 100;
const ONMICROSOFT: &str = ".onmicrosoft.com";
/// Microsoft's limit on the prefix of an initial (`*.onmicrosoft.com`) domain.
const DOMAIN_PREFIX_MAX: usize = 27;

/// An email address in the plain form vendors accept: `local@domain.tld`, printable ASCII.
fn email(
    field: &str,
    value: &str,
    max: usize,
) -> std::result::Result<String, super::FieldViolation> {
    let address = text::identifier(field, value, max)?;
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    };
    if valid {
        Ok(address)
    } else {
        Err(super::FieldViolation::new(
            field,
            format!("{value:?} is not an email address such as \"it@example.com\""),
        ))
    }
}

fn onmicrosoft_domain(
    field: &str,
    value: &str,
) -> std::result::Result<String, super::FieldViolation> {
    let prefix = value.strip_suffix(ONMICROSOFT).unwrap_or_default();
    let valid = (1..=DOMAIN_PREFIX_MAX).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(value.to_string())
    } else {
        Err(super::FieldViolation::new(
            field,
            format!(
                "{value:?} is not an initial domain: 1 to {DOMAIN_PREFIX_MAX} lowercase letters or \
                 digits followed by {ONMICROSOFT}, e.g. \"contoso{ONMICROSOFT}\""
            ),
        ))
    }
}

fn is_culture(value: &str) -> bool {
    match value.split_once('-') {
        Some((language, region)) => {
            language.len() == 2
                && language.bytes().all(|b| b.is_ascii_lowercase())
                && region.len() == 2
                && region.bytes().all(|b| b.is_ascii_uppercase())
        }
        None => false,
    }
}

/// Where an enrollment stands at the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentProgress {
    /// The vendor is still creating the account: poll again with this id.
    Pending { operation_id: String },
    /// The account exists; link it to the customer.
    Enrolled {
        kind: VendorAccountKind,
        account_id: String,
    },
    /// The vendor refused or gave up; its reason.
    Failed { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Error;

    fn aws(email: &str, name: &str) -> EnrollmentDetails {
        EnrollmentDetails::Aws(AwsEnrollment {
            email: email.into(),
            account_name: name.into(),
        })
    }

    fn microsoft() -> MicrosoftEnrollment {
        MicrosoftEnrollment {
            domain: "acmemining.onmicrosoft.com".into(),
            company_name: "Acme Mining".into(),
            contact: Contact {
                first_name: "Thandi".into(),
                last_name: "Nkosi".into(),
                email: "it@acme.example".into(),
                phone: String::new(),
            },
            address: PostalAddress {
                country: "ZA".into(),
                region: "Gauteng".into(),
                city: "Johannesburg".into(),
                address_line1: "1 Main Road".into(),
                address_line2: String::new(),
                postal_code: "2001".into(),
            },
            culture: "en-US".into(),
            language: "en".into(),
        }
    }

    fn fields(result: Result<()>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(Error::InvalidArgument(violations)) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn aws_enrollments_need_an_email_and_a_short_name() {
        assert!(fields(aws("ops@acme.example", "Acme Mining").validate("e")).is_empty());
        assert_eq!(
            fields(aws("not-an-email", "").validate("e")),
            ["e.email", "e.account_name"]
        );
        assert_eq!(
            fields(aws("a@b.example", &"x".repeat(51)).validate("e")),
            ["e.account_name"]
        );
        assert_eq!(fields(aws("a@@b.example", "n").validate("e")), ["e.email"]);
        assert_eq!(fields(aws("a@example.", "n").validate("e")), ["e.email"]);
    }

    #[test]
    fn microsoft_enrollments_check_every_part_at_once() {
        let good = microsoft();
        assert!(
            fields(EnrollmentDetails::Microsoft(Box::new(good.clone())).validate("m")).is_empty()
        );
        let mut bad = good;
        bad.domain = "Acme.onmicrosoft.com".into();
        bad.contact.email = "nobody".into();
        bad.address.country = "South Africa".into();
        bad.address.city = " ".into();
        bad.culture = "english".into();
        assert_eq!(
            fields(EnrollmentDetails::Microsoft(Box::new(bad)).validate("m")),
            [
                "m.domain",
                "m.contact.email",
                "m.address.country",
                "m.address.city",
                "m.culture"
            ]
        );
    }

    #[test]
    fn errors_keep_their_class_under_context() {
        let e = ControlError::transient("HTTP 503").context("subscription s1");
        assert!(e.is_transient());
        assert_eq!(e.reason(), "subscription s1: HTTP 503");
        let e = ControlError::permanent("refused").context("account 1");
        assert_eq!(e.to_string(), "account 1: refused");
    }
}
