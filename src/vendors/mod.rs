//! Vendor connectors: one module per vendor, each turning the vendor's cost data into
//! normalized [`UsageLine`](crate::domain::usage::UsageLine)s behind the [`UsageSource`] trait,
//! and acting on customers' vendor accounts behind [`service_control::ServiceControl`].
pub mod aws;
pub mod credentials;
pub mod microsoft;
pub mod seat_orders;
pub mod service_control;
pub mod simulator;

// The pull types are the ledger's too, so they live in the domain.
pub use crate::domain::usage::{Pull, PullOutcome, PullRequest, VendorPeriod};
use crate::domain::vendor::Vendor;

/// What a pull cost: vendors bill some API requests (AWS Cost Explorer: USD 0.01 a page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCount(pub u32);

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// Throttled after the connector's own retries; try again after the hint, if any.
    #[error("throttled by the vendor{}", .retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    Throttled {
        retry_after: Option<std::time::Duration>,
    },
    /// Credentials missing, unreadable or refused.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The vendor's request budget for this account is spent.
    #[error("request budget exhausted: {0}")]
    BudgetExhausted(String),
    /// The vendor answered with something we cannot parse.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// Network failure or a 5xx that survived retries.
    #[error("vendor unavailable: {0}")]
    Unavailable(String),
    /// The vendor reported a failed operation (e.g. an export that ended in "failed").
    #[error("vendor error: {0}")]
    Failed(String),
}

/// What a pull brought back and what it cost. The cost stands whether or not the pull succeeded:
/// the requests a failed pull sent were billed too.
#[derive(Debug)]
pub struct Pulled {
    pub outcome: Result<PullOutcome, VendorError>,
    pub requests: RequestCount,
}

impl Pulled {
    /// The outcome with its cost, or the error (whose cost is then dropped).
    pub fn into_result(self) -> Result<(PullOutcome, RequestCount), VendorError> {
        self.outcome.map(|outcome| (outcome, self.requests))
    }
}

/// Checks that `pem` holds at least one certificate, as a trusted root CA must.
pub fn check_ca_bundle(pem: &str) -> Result<(), VendorError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| VendorError::Credentials(format!("extra root CA PEM: {e}")))?;
    if certs.is_empty() {
        return Err(VendorError::Credentials(
            "extra root CA PEM holds no certificate".into(),
        ));
    }
    Ok(())
}

/// A source of usage for one partner account.
#[async_trait::async_trait]
pub trait UsageSource: Send + Sync {
    fn vendor(&self) -> Vendor;

    /// Reads every line in the window. Connectors retry transient failures themselves.
    async fn pull(&self, request: &PullRequest) -> Pulled;
}

/// The adapter for a partner account. `deny_policy_id` is the AWS deny policy's id as kept from
/// an earlier [`ControlReport::deny_policy_id`] (None: found by name). Adapters cache what they
/// learn (the management account, the policy id; the simulator's accounts live in it), so keep
/// one per partner account rather than building one per call.
pub fn service_control_for(
    account: &crate::domain::partner_account::PartnerAccount,
    deny_policy_id: Option<String>,
) -> service_control::ControlResult<Box<dyn service_control::ServiceControl>> {
    let spec = &account.spec;
    Ok(match spec.vendor {
        Vendor::Aws => Box::new(aws::organizations::AwsOrganizations::new(
            aws::organizations::AwsOrganizationsConfig::for_partner_account(spec, deny_policy_id),
        )?),
        Vendor::Microsoft => Box::new(microsoft::control::PartnerCenterControl::new(
            microsoft::control::PartnerCenterControlConfig::for_partner_account(spec)?,
        )?),
        Vendor::Simulator => Box::new(simulator::control::SimulatorControl::new(
            simulator::control::SimulatorControlConfig::default(),
        )?),
        Vendor::Msp => {
            return Err(crate::domain::service_control::ControlError::Permanent {
                reason: "the MSP's own items have no vendor to control".into(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::partner_account::PartnerAccount;
    use crate::domain::partner_account::PartnerAccountSpec;
    use crate::domain::service_control::ControlTarget;
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
                microsoft: None,
            },
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn each_vendor_gets_its_adapter() {
        let simulator = service_control_for(&account(Vendor::Simulator, "sim", ""), None).unwrap();
        assert_eq!(simulator.vendor(), Vendor::Simulator);
        let target = ControlTarget::new(VendorAccountKind::SimulatorAccount, "sim-a");
        assert!(simulator.suspend(&target).await.is_ok());
        assert_eq!(simulator.closure_quota_members().await, Ok(None));

        let unset = "MSPGW_TEST_CONTROL_FACTORY_SURELY_UNSET";
        for (vendor, id) in [
            (Vendor::Aws, "111122223333"),
            (Vendor::Microsoft, "5b1d3a2e-7c4f-4e8a-9d21-0f6b8c3e4a17"),
        ] {
            let error = service_control_for(&account(vendor, id, &format!("env:{unset}")), None)
                .err()
                .expect("credentials are resolved when the adapter is built");
            assert!(
                !error.is_transient() && error.reason().contains(unset),
                "{error}"
            );
        }
    }
}
