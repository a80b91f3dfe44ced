//! AWS Organizations failures as [`ControlError`]s: what is worth another attempt.
use aws_sdk_organizations::error::{ProvideErrorMetadata, SdkError};

use crate::domain::service_control::ControlError;
use crate::vendors::VendorError;
use crate::vendors::aws::retry::{self, Verdict};

/// Organizations-specific transient answers, on top of throttling, 5xx and network faults.
const TRANSIENT_CODES: &[&str] = &[
    // Another request is changing the same target; AWS says to try again later.
    "ConcurrentModificationException",
    "ServiceException",
];

pub(super) fn control_error<E>(error: &SdkError<E>, what: &str) -> ControlError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(code) = error.code()
        && TRANSIENT_CODES.contains(&code)
    {
        return ControlError::transient(format!(
            "{what}: {code}: {}",
            error.message().unwrap_or("no message")
        ));
    }
    match retry::classify(error) {
        Verdict::Throttled => ControlError::transient(format!("{what}: throttled by AWS")),
        Verdict::Transient(detail) => ControlError::transient(format!("{what}: {detail}")),
        Verdict::Fatal(VendorError::Credentials(detail)) => ControlError::permanent(format!(
            "{what}: AWS refused the partner account's credentials or permissions: {detail}"
        )),
        Verdict::Fatal(
            VendorError::Failed(detail)
            | VendorError::Malformed(detail)
            | VendorError::Unavailable(detail),
        ) => ControlError::permanent(format!("{what}: {detail}")),
        Verdict::Fatal(other) => ControlError::permanent(format!("{what}: {other}")),
        Verdict::NoData => ControlError::permanent(format!("{what}: AWS answered without data")),
    }
}
