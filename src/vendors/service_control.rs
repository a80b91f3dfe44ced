//! Acting on a customer's vendor accounts: enroll (create one), suspend, resume, purge. One
//! adapter per vendor behind [`ServiceControl`], beside the usage connectors, built from a
//! partner account the same way (credentials by reference, see [`super::credentials`]).
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

use super::aws::organizations::{AwsOrganizations, AwsOrganizationsConfig};
use super::microsoft::control::{PartnerCenterControl, PartnerCenterControlConfig};
use super::simulator::control::{SimulatorControl, SimulatorControlConfig};
use crate::domain::partner_account::PartnerAccount;
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

/// The adapter for a partner account. `deny_policy_id` is the AWS deny policy's id as kept from
/// an earlier [`ControlReport::deny_policy_id`] (None: found by name). Adapters cache what they
/// learn (the management account, the policy id; the simulator's accounts live in it), so keep
/// one per partner account rather than building one per call.
pub fn for_partner_account(
    account: &PartnerAccount,
    deny_policy_id: Option<String>,
) -> ControlResult<Box<dyn ServiceControl>> {
    let spec = &account.spec;
    Ok(match spec.vendor {
        Vendor::Aws => Box::new(AwsOrganizations::new(
            AwsOrganizationsConfig::for_partner_account(spec, deny_policy_id),
        )?),
        Vendor::Microsoft => Box::new(PartnerCenterControl::new(
            PartnerCenterControlConfig::for_partner_account(spec)?,
        )?),
        Vendor::Simulator => Box::new(SimulatorControl::new(SimulatorControlConfig::default())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::partner_account::PartnerAccountSpec;
    use crate::domain::vendor::VendorAccountKind;

    fn account(vendor: Vendor, vendor_account_id: &str, credentials_ref: &str) -> PartnerAccount {
        PartnerAccount {
            id: "pa_1".into(),
            tenant_id: "ten_1".into(),
            line_key_prefix: 1,
            spec: PartnerAccountSpec {
                vendor,
                display_name: "partner".into(),
                vendor_account_id: vendor_account_id.into(),
                partner_discount_rate: rust_decimal::Decimal::ZERO,
                credentials_ref: credentials_ref.into(),
                poll_interval_secs: 900,
                enabled: true,
                endpoint_url: String::new(),
                aws: None,
            },
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn each_vendor_gets_its_adapter() {
        let simulator = for_partner_account(&account(Vendor::Simulator, "sim", ""), None).unwrap();
        assert_eq!(simulator.vendor(), Vendor::Simulator);
        let target = ControlTarget::new(VendorAccountKind::SimulatorAccount, "sim-a");
        assert!(simulator.suspend(&target).await.is_ok());
        assert_eq!(simulator.closure_quota_members().await, Ok(None));

        let unset = "MSPGW_TEST_CONTROL_FACTORY_SURELY_UNSET";
        for (vendor, id) in [
            (Vendor::Aws, "111122223333"),
            (Vendor::Microsoft, "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17"),
        ] {
            let error = for_partner_account(&account(vendor, id, &format!("env:{unset}")), None)
                .err()
                .expect("credentials are resolved when the adapter is built");
            assert!(
                !error.is_transient() && error.reason().contains(unset),
                "{error}"
            );
        }
    }
}
