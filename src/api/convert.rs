//! Conversions between proto and domain values shared by the services.
use chrono::{DateTime, Utc};

use crate::domain::customer::{BillingCycle, CustomerStatus};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::vendor::{Vendor, VendorAccountKind};
use crate::proto::v1;

/// An optional timestamp field: absent is `None`; one outside the representable range, or with
/// nanoseconds out of range, is a violation.
pub fn instant(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    match t {
        None => Ok(None),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .map(Some)
            .ok_or_else(|| FieldViolation::new(field, "is not a valid timestamp")),
    }
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A proto enum field: 0 (UNSPECIFIED) is `None`, a number the proto does not define is a
/// violation.
pub fn enum_field<E: TryFrom<i32>>(field: &str, value: i32) -> Result<Option<E>, FieldViolation> {
    if value == 0 {
        return Ok(None);
    }
    E::try_from(value)
        .map(Some)
        .map_err(|_| FieldViolation::new(field, format!("{value} is not a known value")))
}

pub fn vendor(field: &str, value: i32) -> Result<Vendor, FieldViolation> {
    enum_field::<v1::Vendor>(field, value)?
        .and_then(vendor_from_proto)
        .ok_or_else(|| FieldViolation::new(field, "is required"))
}

pub fn optional_vendor(field: &str, value: i32) -> Result<Option<Vendor>, FieldViolation> {
    Ok(enum_field::<v1::Vendor>(field, value)?.and_then(vendor_from_proto))
}

fn vendor_from_proto(v: v1::Vendor) -> Option<Vendor> {
    match v {
        v1::Vendor::Unspecified => None,
        v1::Vendor::Aws => Some(Vendor::Aws),
        v1::Vendor::Microsoft => Some(Vendor::Microsoft),
        v1::Vendor::Simulator => Some(Vendor::Simulator),
        v1::Vendor::Msp => Some(Vendor::Msp),
    }
}

pub fn vendor_to_proto(v: Vendor) -> v1::Vendor {
    match v {
        Vendor::Aws => v1::Vendor::Aws,
        Vendor::Microsoft => v1::Vendor::Microsoft,
        Vendor::Simulator => v1::Vendor::Simulator,
        Vendor::Msp => v1::Vendor::Msp,
    }
}

pub fn billing_cycle(field: &str, value: i32) -> Result<BillingCycle, FieldViolation> {
    match enum_field::<v1::BillingCycle>(field, value)? {
        Some(v1::BillingCycle::Monthly) => Ok(BillingCycle::Monthly),
        Some(v1::BillingCycle::Quarterly) => Ok(BillingCycle::Quarterly),
        Some(v1::BillingCycle::Annual) => Ok(BillingCycle::Annual),
        Some(v1::BillingCycle::Unspecified) | None => {
            Err(FieldViolation::new(field, "is required"))
        }
    }
}

pub fn billing_cycle_to_proto(c: BillingCycle) -> v1::BillingCycle {
    match c {
        BillingCycle::Monthly => v1::BillingCycle::Monthly,
        BillingCycle::Quarterly => v1::BillingCycle::Quarterly,
        BillingCycle::Annual => v1::BillingCycle::Annual,
    }
}

pub fn optional_customer_status(
    field: &str,
    value: i32,
) -> Result<Option<CustomerStatus>, FieldViolation> {
    let Some(status) = enum_field::<v1::CustomerStatus>(field, value)? else {
        return Ok(None);
    };
    Ok(match status {
        v1::CustomerStatus::Unspecified => None,
        v1::CustomerStatus::Active => Some(CustomerStatus::Active),
        v1::CustomerStatus::Suspended => Some(CustomerStatus::Suspended),
        v1::CustomerStatus::PurgeScheduled => Some(CustomerStatus::PurgeScheduled),
        v1::CustomerStatus::Purged => Some(CustomerStatus::Purged),
        v1::CustomerStatus::Suspending | v1::CustomerStatus::Resuming => {
            return Err(FieldViolation::new(
                field,
                format!(
                    "{} is shown while an action runs, not stored; filter by ACTIVE or SUSPENDED",
                    status.as_str_name()
                ),
            ));
        }
    })
}

pub fn customer_status_to_proto(s: CustomerStatus) -> v1::CustomerStatus {
    match s {
        CustomerStatus::Active => v1::CustomerStatus::Active,
        CustomerStatus::Suspended => v1::CustomerStatus::Suspended,
        CustomerStatus::PurgeScheduled => v1::CustomerStatus::PurgeScheduled,
        CustomerStatus::Purged => v1::CustomerStatus::Purged,
    }
}

pub fn vendor_account_kind(field: &str, value: i32) -> Result<VendorAccountKind, FieldViolation> {
    match enum_field::<v1::VendorAccountKind>(field, value)? {
        Some(v1::VendorAccountKind::AwsAccount) => Ok(VendorAccountKind::AwsAccount),
        Some(v1::VendorAccountKind::MicrosoftTenant) => Ok(VendorAccountKind::MicrosoftTenant),
        Some(v1::VendorAccountKind::MicrosoftSubscription) => {
            Ok(VendorAccountKind::MicrosoftSubscription)
        }
        Some(v1::VendorAccountKind::SimulatorAccount) => Ok(VendorAccountKind::SimulatorAccount),
        Some(v1::VendorAccountKind::Unspecified) | None => {
            Err(FieldViolation::new(field, "is required"))
        }
    }
}

pub fn vendor_account_kind_to_proto(k: VendorAccountKind) -> v1::VendorAccountKind {
    match k {
        VendorAccountKind::AwsAccount => v1::VendorAccountKind::AwsAccount,
        VendorAccountKind::MicrosoftTenant => v1::VendorAccountKind::MicrosoftTenant,
        VendorAccountKind::MicrosoftSubscription => v1::VendorAccountKind::MicrosoftSubscription,
        VendorAccountKind::SimulatorAccount => v1::VendorAccountKind::SimulatorAccount,
    }
}

/// A required id field of a request.
pub fn required_id(field: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() {
        Err(Error::invalid(field, "is required"))
    } else if value.len() > 64
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        // Cannot name anything stored; NOT_FOUND would also be true, but the caller sent garbage.
        Err(Error::invalid(
            field,
            format!("{value:?} is not a gateway id"),
        ))
    } else {
        Ok(value.to_string())
    }
}

/// The paths of an update mask, each one of `allowed`; an empty mask is refused.
pub fn update_mask(
    mask: Option<&prost_types::FieldMask>,
    allowed: &[&str],
) -> Result<Vec<String>, Error> {
    let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!(
                "is required; name the fields to change ({})",
                allowed.join(", ")
            ),
        ));
    }
    let mut v = Violations::new();
    for (i, path) in paths.iter().enumerate() {
        if !allowed.contains(&path.as_str()) {
            v.add(
                format!("update_mask.paths[{i}]"),
                format!(
                    "{path:?} cannot be updated; updatable: {}",
                    allowed.join(", ")
                ),
            );
        }
    }
    v.into_result()?;
    Ok(paths)
}
