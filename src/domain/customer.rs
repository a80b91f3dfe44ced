//! Customers: the MSP's enterprise customers, their enrollments with vendors, and the vendor
//! accounts through which their usage is found.
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::error::{Error, FieldViolation, Result};
use super::money::{Currency, parse_amount};
use super::partner_account::PartnerAccount;
// Billing terms live with the periods they cut; re-exported where customers are described.
pub use super::period::{BillingAnchor, BillingCycle};
use super::service_control::EnrollmentDetails;
use super::text;
use super::vendor::{Vendor, VendorAccountKind};

pub const EXTERNAL_REF_MAX: usize = 128;

/// Where a customer stands. Transitions (suspend, resume, purge) arrive with service management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CustomerStatus {
    Active,
    Suspended,
    PurgeScheduled,
    Purged,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::Active => "ACTIVE",
            CustomerStatus::Suspended => "SUSPENDED",
            CustomerStatus::PurgeScheduled => "PURGE_SCHEDULED",
            CustomerStatus::Purged => "PURGED",
        }
    }
}

impl fmt::Display for CustomerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CustomerStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(CustomerStatus::Active),
            "SUSPENDED" => Ok(CustomerStatus::Suspended),
            "PURGE_SCHEDULED" => Ok(CustomerStatus::PurgeScheduled),
            "PURGED" => Ok(CustomerStatus::Purged),
            other => Err(format!("unknown customer status {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentStatus {
    /// Enrolled; no vendor account linked yet, so no usage can be found.
    AwaitingLink,
    Enrolled,
    Failed,
    /// The gateway is creating the customer's vendor account (an ENROLL service action).
    Provisioning,
}

impl EnrollmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::AwaitingLink => "AWAITING_LINK",
            EnrollmentStatus::Enrolled => "ENROLLED",
            EnrollmentStatus::Failed => "ENROLLMENT_FAILED",
            EnrollmentStatus::Provisioning => "PROVISIONING",
        }
    }
}

impl FromStr for EnrollmentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AWAITING_LINK" => Ok(EnrollmentStatus::AwaitingLink),
            "ENROLLED" => Ok(EnrollmentStatus::Enrolled),
            "ENROLLMENT_FAILED" => Ok(EnrollmentStatus::Failed),
            "PROVISIONING" => Ok(EnrollmentStatus::Provisioning),
            other => Err(format!("unknown enrollment status {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enrollment {
    pub vendor: Vendor,
    pub partner_account_id: String,
    pub status: EnrollmentStatus,
    pub status_detail: String,
    pub portal_url: String,
    pub created_at: DateTime<Utc>,
    /// The ENROLL action creating the vendor account, when one was ordered.
    pub service_action_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VendorAccountLink {
    pub kind: VendorAccountKind,
    pub account_id: String,
    pub partner_account_id: String,
    pub linked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    pub tenant_id: String,
    pub external_ref: String,
    pub display_name: String,
    pub billing_currency: Currency,
    pub billing_cycle: BillingCycle,
    /// Where its billing periods start.
    pub billing_anchor: BillingAnchor,
    pub time_zone: String,
    pub credit_limit: Decimal,
    pub status: CustomerStatus,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub enrollments: Vec<Enrollment>,
    pub vendor_accounts: Vec<VendorAccountLink>,
}

impl Customer {
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// ABORTED unless `etag` is empty (unconditional) or the current one.
    pub fn check_etag(&self, etag: &str) -> Result<()> {
        if etag.is_empty() || etag == self.etag() {
            Ok(())
        } else {
            Err(Error::EtagMismatch {
                kind: "customer",
                id: self.id.clone(),
                sent: etag.to_string(),
                current: self.etag(),
            })
        }
    }
}

/// A vendor to enroll with, as requested.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnrollmentRequest {
    pub vendor: Vendor,
    pub partner_account_id: Option<String>,
    /// The vendor account to create for the customer; None: one is linked by hand later.
    pub new_account: Option<EnrollmentDetails>,
}

/// A validated CreateCustomer request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewCustomer {
    pub external_ref: String,
    pub display_name: String,
    #[serde(serialize_with = "serialize_currency")]
    pub billing_currency: Currency,
    pub billing_cycle: BillingCycle,
    /// Skipped when calendar (the default), so requests made before anchors existed keep their
    /// idempotency fingerprint.
    #[serde(skip_serializing_if = "BillingAnchor::is_calendar")]
    pub billing_anchor: BillingAnchor,
    /// None: the tenant's time zone.
    pub time_zone: Option<String>,
    pub credit_limit: Decimal,
    pub enrollments: Vec<EnrollmentRequest>,
}

fn serialize_currency<S: serde::Serializer>(c: &Currency, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.code())
}

pub fn parse_external_ref(field: &str, value: &str) -> Result<String, FieldViolation> {
    text::identifier(field, value, EXTERNAL_REF_MAX)
}

pub fn parse_credit_limit(
    field: &str,
    value: &str,
    currency: Currency,
) -> Result<Decimal, FieldViolation> {
    if value.is_empty() {
        return Ok(Decimal::ZERO);
    }
    parse_amount(field, value, currency)
}

/// Each vendor at most once.
pub fn check_enrollments(requests: &[EnrollmentRequest]) -> Result<(), FieldViolation> {
    for (i, request) in requests.iter().enumerate() {
        if requests[..i].iter().any(|r| r.vendor == request.vendor) {
            return Err(FieldViolation::new(
                format!("enrollments[{i}].vendor"),
                format!("{} is listed twice", request.vendor),
            ));
        }
        if let Some(order) = &request.new_account
            && order.vendor() != request.vendor
        {
            return Err(FieldViolation::new(
                format!("enrollments[{i}].new_account"),
                format!(
                    "orders a {} account for a {} enrollment; the account's vendor must be the \
                     enrollment's",
                    order.vendor(),
                    request.vendor
                ),
            ));
        }
    }
    Ok(())
}

/// Picks the partner account an enrollment (or a link) goes through: the named one, or the
/// tenant's only enabled account for the vendor.
pub fn choose_partner_account<'a>(
    field: &str,
    vendor: Vendor,
    named: Option<&str>,
    candidates: &'a [PartnerAccount],
) -> Result<&'a PartnerAccount> {
    if let Some(id) = named {
        let account = candidates
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| Error::invalid(field, format!("partner account {id:?} not found")))?;
        if account.spec.vendor != vendor {
            return Err(Error::invalid(
                field,
                format!(
                    "partner account {id:?} is a {} account, not {vendor}",
                    account.spec.vendor
                ),
            ));
        }
        if !account.spec.enabled {
            return Err(Error::precondition(
                field,
                format!("partner account {id:?} is disabled"),
            ));
        }
        return Ok(account);
    }
    let mut enabled = candidates
        .iter()
        .filter(|a| a.spec.vendor == vendor && a.spec.enabled);
    match (enabled.next(), enabled.next()) {
        (Some(only), None) => Ok(only),
        (None, _) => Err(Error::precondition(
            field,
            format!("the tenant has no enabled {vendor} partner account; create one first"),
        )),
        (Some(_), Some(_)) => Err(Error::invalid(
            field,
            format!(
                "the tenant has several enabled {vendor} partner accounts; name one in partner_account_id"
            ),
        )),
    }
}

/// What a write of a customer did: the customer after it, and before it when this call
/// changed it (None when it replayed an earlier call or found nothing to do).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerChange {
    pub before: Option<Customer>,
    pub after: Customer,
}

impl CustomerChange {
    pub fn unchanged(customer: Customer) -> Self {
        CustomerChange {
            before: None,
            after: customer,
        }
    }
}

/// Which fields an update replaces, each validated on its own; `credit_limit` is checked against
/// the customer's currency in [`CustomerPatch::apply`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CustomerPatch {
    pub display_name: Option<String>,
    pub external_ref: Option<String>,
    pub billing_cycle: Option<BillingCycle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_anchor: Option<BillingAnchor>,
    pub time_zone: Option<String>,
    pub credit_limit: Option<String>,
}

impl CustomerPatch {
    pub fn apply(&self, current: &Customer) -> Result<Customer> {
        let mut next = current.clone();
        if let Some(v) = &self.display_name {
            next.display_name = v.clone();
        }
        if let Some(v) = &self.external_ref {
            next.external_ref = v.clone();
        }
        if let Some(v) = self.billing_cycle {
            next.billing_cycle = v;
        }
        if let Some(v) = self.billing_anchor {
            next.billing_anchor = v;
        }
        if let Some(v) = &self.time_zone {
            next.time_zone = v.clone();
        }
        if let Some(v) = &self.credit_limit {
            next.credit_limit =
                parse_credit_limit("customer.credit_limit", v, current.billing_currency)
                    .map_err(|v| Error::InvalidArgument(vec![v]))?;
        }
        Ok(next)
    }
}

/// A vendor account to link, as requested.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewVendorAccountLink {
    pub kind: VendorAccountKind,
    pub account_id: String,
    pub partner_account_id: Option<String>,
}

impl NewVendorAccountLink {
    pub fn parse(
        prefix: &str,
        vendor: Vendor,
        kind: VendorAccountKind,
        account_id: &str,
        partner_account_id: &str,
    ) -> Result<Self> {
        let mut violations = Vec::new();
        if kind.vendor() != vendor {
            violations.push(FieldViolation::new(
                format!("{prefix}.kind"),
                format!("{} is not a kind of {vendor} account", kind.as_str()),
            ));
        }
        if let Err(reason) = kind.check_account_id(account_id) {
            violations.push(FieldViolation::new(format!("{prefix}.account_id"), reason));
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(NewVendorAccountLink {
            kind,
            account_id: account_id.to_string(),
            partner_account_id: (!partner_account_id.is_empty())
                .then(|| partner_account_id.to_string()),
        })
    }
}
