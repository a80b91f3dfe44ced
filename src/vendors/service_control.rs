//! Acting on a customer's vendor accounts: enroll (create one), suspend, resume, purge. One
//! adapter per vendor behind [`ServiceControl`], beside the usage connectors, built from a
//! partner account the same way (credentials by reference, see [`super::credentials`]) by
//! [`super::service_control_for`].
//!
//! Every call is idempotent at the vendor: repeating it after a crash, a timeout or a retry
//! leaves the vendor as one call would, and answers [`Change::AlreadyInState`] for what was
//! already done. Failures are classified for the caller's retry machinery
//! ([`crate::domain::service_action::RetryPolicy`]): [`ControlError::Transient`] (throttling,
//! 5xx, timeouts, concurrent modifications) or [`ControlError::Permanent`] with the vendor's
//! reason. Adapters retry quick transient faults themselves a few times first.
//!
//! [`Change::AlreadyInState`]: crate::domain::service_control::Change::AlreadyInState
use rand::Rng;

use crate::domain::service_action::RetryPolicy;
use crate::domain::service_control::{
    ControlError, ControlReport, ControlTarget, EnrollmentOrder, EnrollmentProgress,
};
use crate::domain::vendor::Vendor;

pub type ControlResult<T> = Result<T, ControlError>;

/// Service control through one partner account.
#[async_trait::async_trait]
pub trait ServiceControl: Send + Sync {
    fn vendor(&self) -> Vendor;

    /// Starts creating a vendor account for a customer. Answers [`EnrollmentProgress::Pending`]
    /// with an operation to [`ServiceControl::poll_enrollment`] when the vendor works
    /// asynchronously. Repeating an order (same idempotency key and details) never creates a
    /// second account: it finds the first one, or its pending operation.
    async fn enroll(&self, order: &EnrollmentOrder) -> ControlResult<EnrollmentProgress>;

    /// Where a pending enrollment stands.
    async fn poll_enrollment(&self, operation_id: &str) -> ControlResult<EnrollmentProgress>;

    /// Stops the account's services (AWS: a deny-all SCP; Microsoft: subscriptions suspended).
    async fn suspend(&self, target: &ControlTarget) -> ControlResult<ControlReport>;

    /// Undoes [`ServiceControl::suspend`].
    async fn resume(&self, target: &ControlTarget) -> ControlResult<ControlReport>;

    /// Irreversibly closes the account (AWS: CloseAccount; Microsoft: subscriptions deleted).
    async fn purge(&self, target: &ControlTarget) -> ControlResult<ControlReport>;

    /// The member-account count a closure quota is computed from
    /// ([`crate::domain::service_action::ClosureBudget::for_members`]), or None where the
    /// vendor has no such quota.
    async fn closure_quota_members(&self) -> ControlResult<Option<u32>> {
        Ok(None)
    }
}

/// The error for a target of another vendor's kind handed to an adapter.
pub fn wrong_vendor(adapter: Vendor, target: &ControlTarget) -> ControlError {
    ControlError::permanent(format!(
        "{target} is not a {adapter} account; it belongs to another partner account's vendor"
    ))
}

/// An adapter's in-call retry: waits before the next attempt after `attempts` attempts, the last
/// failing with `error`, or hands the error back when `policy` gives up (a permanent fault, or
/// the attempts are spent).
pub async fn back_off(
    policy: &RetryPolicy,
    attempts: u32,
    error: ControlError,
    what: &str,
) -> ControlResult<()> {
    let jitter: f64 = rand::rng().random();
    match policy.next_attempt(attempts, &error, jitter) {
        Some(wait) => {
            tracing::warn!(attempts, ?wait, %error, "{what} failed; retrying");
            tokio::time::sleep(wait).await;
            Ok(())
        }
        None => Err(error),
    }
}
