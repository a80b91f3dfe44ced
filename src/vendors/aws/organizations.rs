//! AWS Organizations service control for one payer (management) account.
//!
//! - Enroll: `CreateAccount` (email and account name), then `DescribeCreateAccountStatus` until
//!   SUCCEEDED or FAILED ([`enrollment`]).
//! - Suspend: attach the gateway's deny-all service control policy to the member account; the
//!   policy is created once per organization and found again by name ([`deny_policy`]).
//!   An SCP stops API calls in the account, not resources already running: usage keeps flowing
//!   and is still billed.
//! - Resume: detach that policy, and only that one: AWS's FullAWSAccess stays attached (a
//!   target must keep at least one SCP).
//! - Purge: `CloseAccount`. Asynchronous at AWS (PENDING_CLOSURE, then SUSPENDED), reversible
//!   only through AWS Support within 90 days, and subject to AWS's closure quota, which the
//!   caller checks first with [`crate::domain::service_action::ClosureBudget`] and
//!   [`ServiceControl::closure_quota_members`].
//!
//! SCPs do not apply to the management account, so every call refuses it (`DescribeOrganization`
//! names it). Each call is idempotent: attach, detach and close first look at the account and
//! answer `AlreadyInState` when nothing is to be done, and AWS's "already attached / not
//! attached / already closed" answers mean the same. Transient faults (throttling,
//! ConcurrentModificationException, 5xx, timeouts) are retried here under
//! [`AwsOrganizationsConfig::retry`]; the SDK's own retries are off.
/// Every page of a paginated request (a fluent builder), retried as a whole on transient faults.
macro_rules! all_pages {
    ($adapter:expr, $what:expr, $request:expr) => {
        $adapter
            .retrying($what, || async {
                $request
                    .into_paginator()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| {
                        $crate::vendors::aws::organizations::errors::control_error(&e, $what)
                    })
            })
            .await
    };
}

mod deny_policy;
mod enrollment;
mod errors;

use std::future::Future;
use std::time::Duration;

use aws_sdk_organizations::Client;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_organizations::operation::close_account::CloseAccountError;
use aws_sdk_organizations::types::{Account, AccountState, AccountStatus, PolicyType};

pub use self::deny_policy::{DENY_POLICY_CONTENT, DENY_POLICY_NAME, FULL_AWS_ACCESS};
use self::errors::control_error;
use super::settings::{self, DEFAULT_REGION};
use crate::domain::partner_account::PartnerAccountSpec;
use crate::domain::service_action::RetryPolicy;
use crate::domain::service_control::{
    Change, ControlError, ControlReport, ControlTarget, EnrollmentOrder, EnrollmentProgress,
    ResourceChange,
};
use crate::domain::vendor::{Vendor, VendorAccountKind};
use crate::vendors::service_control::{ControlResult, ServiceControl, back_off, wrong_vendor};

/// AWS's limit on SCPs attached directly to one account.
pub const MAX_SCPS_PER_TARGET: usize = 5;

/// How the adapter reaches AWS Organizations. `credentials_ref` points at the payer account's
/// access key, in the formats [`super::AwsCostExplorerConfig`] documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOrganizationsConfig {
    /// Overrides the AWS endpoint (an emulator, a VPC endpoint or a proxy).
    pub endpoint_url: Option<String>,
    pub region: String,
    pub credentials_ref: String,
    /// The deny policy's id as kept from an earlier call's [`ControlReport::deny_policy_id`];
    /// None: found by name (or created on the first suspend).
    pub deny_policy_id: Option<String>,
    /// Retries of transient faults within one call.
    pub retry: RetryPolicy,
    /// Limit for one HTTP attempt, so a hung connection becomes a retryable failure.
    pub attempt_timeout: Duration,
}

/// Within one call: 4 attempts, waits from 500 ms doubling up to 5 s. Longer outages are the
/// caller's to retry, with its own backoff.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(5),
};

impl AwsOrganizationsConfig {
    /// Defaults: us-east-1 (Organizations is global and served from there), AWS's endpoint.
    pub fn new(credentials_ref: impl Into<String>) -> Self {
        AwsOrganizationsConfig {
            endpoint_url: None,
            region: DEFAULT_REGION.to_string(),
            credentials_ref: credentials_ref.into(),
            deny_policy_id: None,
            retry: DEFAULT_RETRY,
            attempt_timeout: Duration::from_secs(30),
        }
    }

    /// The partner account's credentials and endpoint override (empty = AWS).
    pub fn for_partner_account(spec: &PartnerAccountSpec, deny_policy_id: Option<String>) -> Self {
        let mut config = Self::new(spec.credentials_ref.clone());
        config.endpoint_url = Some(spec.endpoint_url.clone()).filter(|url| !url.is_empty());
        config.deny_policy_id = deny_policy_id;
        config
    }
}

/// An SCP attached to an account.
struct AttachedPolicy {
    id: String,
    /// The gateway's deny policy (by name, and not AWS-managed).
    is_gateways: bool,
}

/// Service control through one AWS organization's management account.
#[derive(Debug)]
pub struct AwsOrganizations {
    client: Client,
    config: AwsOrganizationsConfig,
    management_account: tokio::sync::OnceCell<String>,
    /// Held while the policy is looked up or created, so one process creates it once.
    deny_policy_id: tokio::sync::Mutex<Option<String>>,
}

impl AwsOrganizations {
    /// Resolves the credentials now, so a bad reference fails when the adapter is built.
    pub fn new(config: AwsOrganizationsConfig) -> Result<Self, ControlError> {
        if config.retry.max_attempts == 0 {
            return Err(ControlError::permanent(
                "retry.max_attempts must be at least 1",
            ));
        }
        let sdk = settings::sdk_config(
            &config.credentials_ref,
            &config.region,
            config.endpoint_url.as_deref(),
            config.attempt_timeout,
        )
        .map_err(|e| ControlError::permanent(e.to_string()))?;
        Ok(AwsOrganizations {
            client: Client::new(&sdk),
            deny_policy_id: tokio::sync::Mutex::new(config.deny_policy_id.clone()),
            config,
            management_account: tokio::sync::OnceCell::new(),
        })
    }

    /// Runs `call` until it succeeds, fails permanently, or the retry policy gives up.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> ControlResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ControlResult<T>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) => back_off(&self.config.retry, attempts, error, what).await?,
            }
        }
    }

    /// The organization's management (payer) account id.
    pub async fn management_account(&self) -> ControlResult<String> {
        self.management_account
            .get_or_try_init(|| {
                self.retrying("describing the organization", || async {
                    let output = self
                        .client
                        .describe_organization()
                        .send()
                        .await
                        .map_err(|e| control_error(&e, "describing the organization"))?;
                    output
                        .organization()
                        .and_then(|o| o.master_account_id())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ControlError::permanent(
                                "DescribeOrganization named no management account",
                            )
                        })
                })
            })
            .await
            .cloned()
    }

    /// The member account a target names; the management account and other vendors' kinds
    /// are refused.
    async fn member_account<'a>(
        &self,
        target: &'a ControlTarget,
        action: &str,
    ) -> ControlResult<&'a str> {
        if target.kind != VendorAccountKind::AwsAccount {
            return Err(wrong_vendor(Vendor::Aws, target));
        }
        if target.account_id == self.management_account().await? {
            return Err(ControlError::permanent(format!(
                "account {} is the organization's management (payer) account: service control \
                 policies do not apply to it and the gateway never {action} it",
                target.account_id
            )));
        }
        Ok(&target.account_id)
    }

    /// The SCPs attached directly to an account.
    async fn scps_of(&self, account: &str) -> ControlResult<Vec<AttachedPolicy>> {
        let what = format!("listing the policies of account {account}");
        let request = self
            .client
            .list_policies_for_target()
            .target_id(account)
            .filter(PolicyType::ServiceControlPolicy);
        let pages = all_pages!(self, &what, request.clone())?;
        Ok(pages
            .iter()
            .flat_map(|page| page.policies())
            .map(|p| AttachedPolicy {
                id: p.id().unwrap_or_default().to_string(),
                is_gateways: deny_policy::is_gateways(p),
            })
            .collect())
    }

    /// Every account of the organization, the management account included.
    async fn accounts(&self) -> ControlResult<Vec<Account>> {
        let pages = all_pages!(
            self,
            "listing the organization's accounts",
            self.client.list_accounts()
        )?;
        Ok(pages
            .iter()
            .flat_map(|page| page.accounts())
            .cloned()
            .collect())
    }

    /// Attaches the deny policy; None when AWS no longer knows the policy id.
    async fn attach(&self, account: &str, policy_id: &str) -> ControlResult<Option<Change>> {
        let what = format!("attaching the deny policy to account {account}");
        self.retrying(&what, || async {
            match self
                .client
                .attach_policy()
                .policy_id(policy_id)
                .target_id(account)
                .send()
                .await
            {
                Ok(_) => Ok(Some(Change::Applied)),
                Err(e) => match e.code() {
                    Some("DuplicatePolicyAttachmentException") => Ok(Some(Change::AlreadyInState)),
                    Some("PolicyNotFoundException") => Ok(None),
                    Some("PolicyTypeNotEnabledException") => Err(ControlError::permanent(format!(
                        "{what}: service control policies are not enabled in the organization; \
                         enable them once on its root (EnablePolicyType SERVICE_CONTROL_POLICY)"
                    ))),
                    _ => Err(control_error(&e, &what)),
                },
            }
        })
        .await
    }

    async fn detach(&self, account: &str, policy_id: &str) -> ControlResult<Change> {
        let what = format!("detaching the deny policy from account {account}");
        self.retrying(&what, || async {
            match self
                .client
                .detach_policy()
                .policy_id(policy_id)
                .target_id(account)
                .send()
                .await
            {
                Ok(_) => Ok(Change::Applied),
                Err(e) if e.code() == Some("PolicyNotAttachedException") => {
                    Ok(Change::AlreadyInState)
                }
                Err(e) => Err(control_error(&e, &what)),
            }
        })
        .await
    }

    /// `CloseAccount`, unless the account is already closed or closing.
    async fn close(&self, account: &str) -> ControlResult<Change> {
        let what = format!("closing account {account}");
        if self.is_closed_or_closing(account).await? {
            return Ok(Change::AlreadyInState);
        }
        self.retrying(&what, || async {
            match self.client.close_account().account_id(account).send().await {
                Ok(_) => Ok(Change::Applied),
                Err(e) => match e.as_service_error() {
                    Some(
                        CloseAccountError::AccountAlreadyClosedException(_)
                        | CloseAccountError::ConflictException(_),
                    ) => Ok(Change::AlreadyInState),
                    Some(CloseAccountError::ConstraintViolationException(c)) => {
                        let reason = c.reason().map(|r| r.as_str()).unwrap_or("none");
                        let error = match reason {
                            "CLOSE_ACCOUNT_QUOTA_EXCEEDED" => ControlError::permanent(format!(
                                "{what}: AWS's closure quota is spent (10 % of the member \
                                 accounts, at least 10, at most 1,000, in any 30 days)"
                            )),
                            "CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED" => ControlError::transient(
                                format!("{what}: too many closures in progress at AWS"),
                            ),
                            _ => control_error(&e, &what),
                        };
                        Err(error)
                    }
                    _ => Err(control_error(&e, &what)),
                },
            }
        })
        .await
    }

    async fn is_closed_or_closing(&self, account: &str) -> ControlResult<bool> {
        let what = format!("describing account {account}");
        self.retrying(&what, || async {
            let output = self
                .client
                .describe_account()
                .account_id(account)
                .send()
                .await
                .map_err(|e| control_error(&e, &what))?;
            Ok(output.account().is_some_and(|a| {
                matches!(
                    a.state(),
                    Some(
                        AccountState::PendingClosure
                            | AccountState::Suspended
                            | AccountState::Closed
                    )
                ) || matches!(
                    a.status(),
                    Some(AccountStatus::PendingClosure | AccountStatus::Suspended)
                )
            }))
        })
        .await
    }

    fn report(account: &str, change: Change, deny_policy_id: Option<String>) -> ControlReport {
        ControlReport {
            resources: vec![ResourceChange::new(account, change)],
            deny_policy_id,
        }
    }
}

#[async_trait::async_trait]
impl ServiceControl for AwsOrganizations {
    fn vendor(&self) -> Vendor {
        Vendor::Aws
    }

    async fn enroll(&self, order: &EnrollmentOrder) -> ControlResult<EnrollmentProgress> {
        self.create_account(order).await
    }

    async fn poll_enrollment(&self, operation_id: &str) -> ControlResult<EnrollmentProgress> {
        self.create_account_status(operation_id).await
    }

    async fn suspend(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = self.member_account(target, "suspends").await?;
        let attached = self.scps_of(account).await?;
        if let Some(ours) = attached.iter().find(|p| p.is_gateways) {
            let id = Some(ours.id.clone());
            return Ok(Self::report(account, Change::AlreadyInState, id));
        }
        if attached.len() >= MAX_SCPS_PER_TARGET {
            return Err(ControlError::permanent(format!(
                "account {account} already has {} service control policies attached, AWS's \
                 maximum of {MAX_SCPS_PER_TARGET}; detach one (never FullAWSAccess) so the \
                 gateway's deny policy fits",
                attached.len()
            )));
        }
        // A kept id of a policy deleted since is forgotten, and the policy found or created
        // again, once.
        for _ in 0..2 {
            let policy_id = self.deny_policy_id().await?;
            if let Some(change) = self.attach(account, &policy_id).await? {
                return Ok(Self::report(account, change, Some(policy_id)));
            }
            self.forget_deny_policy(&policy_id).await;
        }
        Err(ControlError::transient(format!(
            "the deny policy vanished twice while being attached to account {account}"
        )))
    }

    /// Detaches every policy of the gateway's (found by name on the account itself, so a
    /// policy re-created under a new id is found too) and nothing else.
    async fn resume(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = self.member_account(target, "resumes").await?;
        let ours: Vec<AttachedPolicy> = self
            .scps_of(account)
            .await?
            .into_iter()
            .filter(|p| p.is_gateways)
            .collect();
        let mut change = Change::AlreadyInState;
        for policy in &ours {
            if self.detach(account, &policy.id).await? == Change::Applied {
                change = Change::Applied;
            }
        }
        Ok(Self::report(
            account,
            change,
            ours.first().map(|p| p.id.clone()),
        ))
    }

    async fn purge(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = self.member_account(target, "closes").await?;
        let change = self.close(account).await?;
        Ok(Self::report(account, change, None))
    }

    /// The organization's ACTIVE member accounts, the management account excluded: fewer than
    /// AWS may count, so the budget derived from it never promises a closure AWS refuses.
    async fn closure_quota_members(&self) -> ControlResult<Option<u32>> {
        let management = self.management_account().await?;
        let active = self
            .accounts()
            .await?
            .iter()
            .filter(|a| a.id() != Some(management.as_str()))
            .filter(|a| match a.state() {
                Some(state) => *state == AccountState::Active,
                None => a.status() == Some(&AccountStatus::Active),
            })
            .count();
        Ok(Some(u32::try_from(active).unwrap_or(u32::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_checks_credentials_without_the_network() {
        let config = AwsOrganizationsConfig::new("env:MSPGW_TEST_AWS_ORG_SURELY_UNSET");
        let error = AwsOrganizations::new(config).unwrap_err();
        assert!(
            !error.is_transient() && error.reason().contains("MSPGW_TEST_AWS_ORG_SURELY_UNSET")
        );
        let mut config = AwsOrganizationsConfig::new("env:X");
        config.retry.max_attempts = 0;
        assert!(AwsOrganizations::new(config).is_err());
    }

    #[test]
    fn partner_accounts_supply_credentials_endpoint_and_the_kept_policy() {
        let spec = PartnerAccountSpec {
            vendor: Vendor::Aws,
            display_name: "payer".into(),
            vendor_account_id: "111122223333".into(),
            partner_discount_rate: rust_decimal::Decimal::ZERO,
            credentials_ref: "env:AWS_PAYER".into(),
            poll_interval_secs: 900,
            enabled: true,
            endpoint_url: "http://127.0.0.1:5000".into(),
            aws: None,
            microsoft: None,
        };
        let config = AwsOrganizationsConfig::for_partner_account(&spec, Some("p-abc12345".into()));
        assert_eq!(config.credentials_ref, "env:AWS_PAYER");
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(config.deny_policy_id.as_deref(), Some("p-abc12345"));
        assert_eq!(config.region, "us-east-1");
    }
}
