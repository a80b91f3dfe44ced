//! The gateway's deny-all service control policy: created once per organization, found again by
//! name, so a retry (or another replica) never creates a second one.
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_organizations::types::{PolicySummary, PolicyType};

use super::AwsOrganizations;
use super::errors::control_error;
use crate::domain::service_control::ControlError;
use crate::vendors::service_control::ControlResult;

/// The name the gateway's policy is found by; unique within an organization.
pub const DENY_POLICY_NAME: &str = "msp-gateway-deny-all";
const DESCRIPTION: &str =
    "Attached by msp-gateway to suspend a customer's account, detached to resume it. Do not edit.";
/// Denies every action to every principal of the account (its root user included); AWS's
/// FullAWSAccess stays attached beside it, and an explicit deny wins.
pub const DENY_POLICY_CONTENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"MspGatewaySuspended","Effect":"Deny","Action":"*","Resource":"*"}]}"#;
/// AWS's own allow-all policy, attached to every account; the gateway never detaches it.
pub const FULL_AWS_ACCESS: &str = "p-FullAWSAccess";

/// Whether a policy is the gateway's (by name, and never one AWS manages).
pub(super) fn is_gateways(policy: &PolicySummary) -> bool {
    policy.name() == Some(DENY_POLICY_NAME)
        && !policy.aws_managed()
        && policy.id() != Some(FULL_AWS_ACCESS)
}

impl AwsOrganizations {
    /// The policy's id: kept, found by name, or created.
    pub(super) async fn deny_policy_id(&self) -> ControlResult<String> {
        let mut kept = self.deny_policy_id.lock().await;
        if let Some(id) = &*kept {
            return Ok(id.clone());
        }
        let id = match self.find_deny_policy().await? {
            Some(id) => id,
            None => self.create_deny_policy().await?,
        };
        *kept = Some(id.clone());
        Ok(id)
    }

    /// Forgets a kept id AWS no longer knows (unless another call has replaced it already).
    pub(super) async fn forget_deny_policy(&self, stale: &str) {
        let mut kept = self.deny_policy_id.lock().await;
        if kept.as_deref() == Some(stale) {
            *kept = None;
        }
    }

    async fn find_deny_policy(&self) -> ControlResult<Option<String>> {
        let what = "listing the organization's service control policies";
        let request = self
            .client
            .list_policies()
            .filter(PolicyType::ServiceControlPolicy);
        let pages = all_pages!(self, what, request.clone())?;
        Ok(pages
            .iter()
            .flat_map(|page| page.policies())
            .find(|p| is_gateways(p))
            .and_then(|p| p.id().map(str::to_string)))
    }

    async fn create_deny_policy(&self) -> ControlResult<String> {
        let what = "creating the deny policy";
        let created = self
            .retrying(what, || async {
                match self
                    .client
                    .create_policy()
                    .name(DENY_POLICY_NAME)
                    .description(DESCRIPTION)
                    .content(DENY_POLICY_CONTENT)
                    .r#type(PolicyType::ServiceControlPolicy)
                    .send()
                    .await
                {
                    Ok(output) => Ok(output
                        .policy()
                        .and_then(|p| p.policy_summary())
                        .and_then(|s| s.id())
                        .map(str::to_string)),
                    // Another replica created it first.
                    Err(e) if e.code() == Some("DuplicatePolicyException") => Ok(None),
                    Err(e) => Err(control_error(&e, what)),
                }
            })
            .await?;
        match created {
            Some(id) => {
                tracing::info!(policy_id = %id, "created the gateway's deny-all SCP");
                Ok(id)
            }
            None => self.find_deny_policy().await?.ok_or_else(|| {
                ControlError::transient(format!(
                    "AWS says a policy named {DENY_POLICY_NAME} exists but does not list it"
                ))
            }),
        }
    }
}
