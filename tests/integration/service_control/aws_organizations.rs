//! AWS Organizations service control against moto: the adapter talks through the fault proxy;
//! the test checks the organization with its own SDK client straight to moto.
use std::time::Duration;

use aws_sdk_organizations::types::{OrganizationFeatureSet, PolicyType};
use chrono::{DateTime, Utc};
use msp_gateway::domain::service_action::{ClosureBudget, RetryPolicy};
use msp_gateway::domain::service_control::{
    AwsEnrollment, Change, ControlError, ControlReport, ControlTarget, EnrollmentDetails,
    EnrollmentOrder, EnrollmentProgress,
};
use msp_gateway::domain::vendor::VendorAccountKind;
use msp_gateway::vendors::aws::organizations::{
    AwsOrganizations, AwsOrganizationsConfig, DENY_POLICY_CONTENT, DENY_POLICY_NAME,
    FULL_AWS_ACCESS,
};
use msp_gateway::vendors::service_control::ServiceControl;
use serde_json::json;

use crate::aws_cost_explorer::credentials_in;
use crate::aws_cost_explorer::moto::{FaultProxy, Moto};

/// An organization in a moto of its own, the proxy in front of it, and an SDK client straight to
/// moto for checking.
pub struct Org {
    pub sdk: aws_sdk_organizations::Client,
    pub proxy: FaultProxy,
    pub management: String,
    pub credentials: tempfile::TempDir,
    _moto: Moto,
}

impl Org {
    pub async fn start() -> Org {
        let moto = Moto::start().await;
        let sdk = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::Config::builder()
                .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
                .region(aws_sdk_organizations::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_organizations::config::Credentials::new(
                    "AKIAIOSFODNN7EXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG",
                    None,
                    None,
                    "test",
                ))
                .endpoint_url(format!("http://{}", moto.address))
                .build(),
        );
        let created = sdk
            .create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .expect("create organization");
        let management = created
            .organization()
            .and_then(|o| o.master_account_id())
            .expect("management account")
            .to_string();
        let proxy = FaultProxy::start(moto.address, &[]).await;
        Org {
            sdk,
            proxy,
            management,
            credentials: tempfile::tempdir().unwrap(),
            _moto: moto,
        }
    }

    /// A new member account, created by the test (not the adapter).
    pub async fn member(&self, name: &str) -> String {
        let output = self
            .sdk
            .create_account()
            .email(format!("{name}@example.com"))
            .account_name(name)
            .send()
            .await
            .expect("create account");
        output
            .create_account_status()
            .and_then(|s| s.account_id())
            .expect("account id")
            .to_string()
    }

    fn config(&self) -> AwsOrganizationsConfig {
        let mut config = AwsOrganizationsConfig::new(credentials_in(&self.credentials));
        config.endpoint_url = Some(self.proxy.url());
        config.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        config
    }

    fn adapter(&self) -> AwsOrganizations {
        AwsOrganizations::new(self.config()).expect("adapter")
    }

    /// The SCPs attached to a target, as (id, name), sorted by name.
    pub async fn scps(&self, target: &str) -> Vec<(String, String)> {
        let output = self
            .sdk
            .list_policies_for_target()
            .target_id(target)
            .filter(PolicyType::ServiceControlPolicy)
            .send()
            .await
            .expect("list policies for target");
        let mut policies: Vec<(String, String)> = output
            .policies()
            .iter()
            .map(|p| {
                (
                    p.id().unwrap_or_default().to_string(),
                    p.name().unwrap_or_default().to_string(),
                )
            })
            .collect();
        policies.sort_by(|a, b| a.1.cmp(&b.1));
        policies
    }

    /// The organization's SCPs named like the gateway's.
    async fn deny_policies(&self) -> Vec<String> {
        let output = self
            .sdk
            .list_policies()
            .filter(PolicyType::ServiceControlPolicy)
            .send()
            .await
            .expect("list policies");
        output
            .policies()
            .iter()
            .filter(|p| p.name() == Some(DENY_POLICY_NAME))
            .filter_map(|p| p.id().map(str::to_string))
            .collect()
    }

    pub async fn account_status(&self, account: &str) -> String {
        let output = self
            .sdk
            .describe_account()
            .account_id(account)
            .send()
            .await
            .expect("describe account");
        let account = output.account().expect("account");
        account
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default()
    }
}

fn aws(account: &str) -> ControlTarget {
    ControlTarget::new(VendorAccountKind::AwsAccount, account)
}

fn changes(report: &ControlReport) -> Vec<(String, Change)> {
    report
        .resources
        .iter()
        .map(|r| (r.resource_id.clone(), r.change))
        .collect()
}

fn permanent(result: Result<impl std::fmt::Debug, ControlError>) -> String {
    match result {
        Err(ControlError::Permanent { reason }) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn full_aws_access() -> (String, String) {
    (FULL_AWS_ACCESS.to_string(), "FullAWSAccess".to_string())
}

#[tokio::test]
async fn suspend_attaches_the_deny_policy_beside_full_aws_access_and_resume_detaches_it() {
    let org = Org::start().await;
    let (a, b) = (org.member("acme-prod").await, org.member("acme-dev").await);
    let adapter = org.adapter();

    let report = adapter.suspend(&aws(&a)).await.expect("suspend");
    assert_eq!(changes(&report), [(a.clone(), Change::Applied)]);
    let policy_id = report
        .deny_policy_id
        .clone()
        .expect("the policy id to keep");
    assert_eq!(
        org.scps(&a).await,
        [
            full_aws_access(),
            (policy_id.clone(), DENY_POLICY_NAME.into())
        ]
    );
    assert_eq!(org.scps(&b).await, [full_aws_access()], "only the target");
    let policy = org
        .sdk
        .describe_policy()
        .policy_id(&policy_id)
        .send()
        .await
        .unwrap();
    let content: serde_json::Value =
        serde_json::from_str(policy.policy().unwrap().content().unwrap()).unwrap();
    assert_eq!(
        content,
        serde_json::from_str::<serde_json::Value>(DENY_POLICY_CONTENT).unwrap()
    );
    assert_eq!(
        content["Statement"][0],
        json!({"Sid": "MspGatewaySuspended", "Effect": "Deny", "Action": "*", "Resource": "*"})
    );

    // Again: nothing to do, and no second attach sent.
    let attaches = org.proxy.count("AttachPolicy");
    let again = adapter.suspend(&aws(&a)).await.expect("suspend again");
    assert_eq!(changes(&again), [(a.clone(), Change::AlreadyInState)]);
    assert_eq!(org.proxy.count("AttachPolicy"), attaches);

    // A fresh adapter (another replica, or after a restart) finds the policy by name.
    let other = org.adapter();
    let report = other.suspend(&aws(&b)).await.expect("suspend b");
    assert_eq!(report.deny_policy_id.as_deref(), Some(policy_id.as_str()));
    assert_eq!(
        org.deny_policies().await,
        std::slice::from_ref(&policy_id),
        "one policy only"
    );
    assert_eq!(org.proxy.count("CreatePolicy"), 1);

    let resumed = adapter.resume(&aws(&a)).await.expect("resume");
    assert_eq!(changes(&resumed), [(a.clone(), Change::Applied)]);
    assert_eq!(
        org.scps(&a).await,
        [full_aws_access()],
        "FullAWSAccess stays"
    );
    let again = adapter.resume(&aws(&a)).await.expect("resume again");
    assert_eq!(changes(&again), [(a.clone(), Change::AlreadyInState)]);
    assert_eq!(org.proxy.count("DetachPolicy"), 1);
    assert!(
        org.scps(&b)
            .await
            .contains(&(policy_id, DENY_POLICY_NAME.into())),
        "b stays suspended"
    );
}

#[tokio::test]
async fn the_management_account_is_refused_before_anything_changes() {
    let org = Org::start().await;
    let adapter = org.adapter();
    let management = aws(&org.management);
    for (what, result) in [
        ("suspends", adapter.suspend(&management).await),
        ("resumes", adapter.resume(&management).await),
        ("closes", adapter.purge(&management).await),
    ] {
        let reason = permanent(result);
        assert!(
            reason.contains("management (payer) account") && reason.contains(what),
            "{reason}"
        );
    }
    let operations = org.proxy.operations();
    assert!(
        operations.iter().all(|o| o == "DescribeOrganization"),
        "{operations:?}"
    );
    assert_eq!(operations.len(), 1, "the management account id is kept");
    assert!(org.deny_policies().await.is_empty());
}

#[tokio::test]
async fn purge_closes_the_account_once() {
    let org = Org::start().await;
    let a = org.member("acme-old").await;
    let adapter = org.adapter();
    assert_eq!(adapter.closure_quota_members().await.unwrap(), Some(1));

    let report = adapter.purge(&aws(&a)).await.expect("purge");
    assert_eq!(changes(&report), [(a.clone(), Change::Applied)]);
    assert_eq!(org.account_status(&a).await, "SUSPENDED");
    let again = adapter.purge(&aws(&a)).await.expect("purge again");
    assert_eq!(changes(&again), [(a.clone(), Change::AlreadyInState)]);
    assert_eq!(org.proxy.count("CloseAccount"), 1);
    assert_eq!(
        adapter.closure_quota_members().await.unwrap(),
        Some(0),
        "closed accounts no longer count towards the quota's base"
    );
}

/// The caller's side of the quota, as the worker will compose it: count the members, check the
/// gateway's own record of closures, and only then call AWS.
async fn purge_within_budget(
    adapter: &AwsOrganizations,
    closures: &mut Vec<DateTime<Utc>>,
    account: &str,
) -> Result<ControlReport, String> {
    let members = adapter
        .closure_quota_members()
        .await
        .map_err(|e| e.to_string())?
        .expect("AWS has a closure quota");
    ClosureBudget::for_members(members)
        .check(closures, Utc::now(), 1)
        .map_err(|e| e.to_string())?;
    let report = adapter
        .purge(&aws(account))
        .await
        .map_err(|e| e.to_string())?;
    closures.push(Utc::now());
    Ok(report)
}

#[tokio::test]
async fn with_fifty_members_the_eleventh_closure_is_refused_before_aws_is_called() {
    let org = Org::start().await;
    let mut members = Vec::new();
    for i in 0..50 {
        members.push(org.member(&format!("member-{i:02}")).await);
    }
    let adapter = org.adapter();
    let mut closures = Vec::new();
    for account in &members[..10] {
        purge_within_budget(&adapter, &mut closures, account)
            .await
            .expect("within the budget");
    }
    let refused = purge_within_budget(&adapter, &mut closures, &members[10])
        .await
        .unwrap_err();
    assert!(
        refused.contains("AWS account closure budget")
            && refused.contains("close 10 member accounts in any 30 days"),
        "{refused}"
    );
    assert_eq!(org.proxy.count("CloseAccount"), 10, "AWS was not asked");
    assert_eq!(org.account_status(&members[10]).await, "ACTIVE");
}

#[tokio::test]
async fn aws_closure_quota_answers_are_classified() {
    let org = Org::start().await;
    let a = org.member("acme-quota").await;
    let adapter = org.adapter();
    let quota = |reason: &str| json!({"__type": "ConstraintViolationException", "Message": "limit", "Reason": reason});
    org.proxy
        .script("CloseAccount", 400, quota("CLOSE_ACCOUNT_QUOTA_EXCEEDED"));
    let reason = permanent(adapter.purge(&aws(&a)).await);
    assert!(reason.contains("closure quota is spent"), "{reason}");

    // Too many closures in flight: transient, retried within the call, then reported as such.
    for _ in 0..4 {
        org.proxy.script(
            "CloseAccount",
            400,
            quota("CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED"),
        );
    }
    let error = adapter.purge(&aws(&a)).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    org.proxy.script(
        "CloseAccount",
        400,
        quota("CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED"),
    );
    let report = adapter.purge(&aws(&a)).await.expect("closed after a retry");
    assert_eq!(changes(&report), [(a.clone(), Change::Applied)]);
    assert_eq!(org.account_status(&a).await, "SUSPENDED");
}

#[tokio::test]
async fn transient_faults_are_retried_and_permanent_ones_reported() {
    let org = Org::start().await;
    let a = org.member("acme-flaky").await;
    let adapter = org.adapter();
    org.proxy.fault(&[
        (400, "ConcurrentModificationException"),
        (500, "ServiceException"),
        (400, "TooManyRequestsException"),
    ]);
    let report = adapter
        .suspend(&aws(&a))
        .await
        .expect("suspended despite faults");
    assert_eq!(changes(&report), [(a.clone(), Change::Applied)]);

    org.proxy
        .fault(&[(400, "ConcurrentModificationException"); 4]);
    let error = adapter.resume(&aws(&a)).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.reason().contains("ConcurrentModificationException"),
        "{error}"
    );

    org.proxy.fault(&[(400, "AccessDeniedException")]);
    let reason = permanent(adapter.resume(&aws(&a)).await);
    assert!(reason.contains("credentials or permissions"), "{reason}");

    let unknown = permanent(adapter.suspend(&aws("999988887777")).await);
    assert!(unknown.contains("AccountNotFoundException"), "{unknown}");
}

#[tokio::test]
async fn five_policies_is_the_aws_maximum_and_a_stale_policy_id_is_replaced() {
    let org = Org::start().await;
    let (a, b) = (org.member("acme-full").await, org.member("acme-b").await);
    for i in 0..4 {
        let created = org
            .sdk
            .create_policy()
            .name(format!("customer-policy-{i}"))
            .description("the customer's own")
            .content(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .r#type(PolicyType::ServiceControlPolicy)
            .send()
            .await
            .unwrap();
        let id = created
            .policy()
            .unwrap()
            .policy_summary()
            .unwrap()
            .id()
            .unwrap();
        org.sdk
            .attach_policy()
            .policy_id(id)
            .target_id(&a)
            .send()
            .await
            .unwrap();
    }
    let reason = permanent(org.adapter().suspend(&aws(&a)).await);
    assert!(reason.contains("AWS's maximum of 5"), "{reason}");
    assert_eq!(org.proxy.count("AttachPolicy"), 0);

    // A kept id of a policy deleted since: the policy is created again and its id returned.
    let mut config = org.config();
    config.deny_policy_id = Some("p-deleted01".into());
    let adapter = AwsOrganizations::new(config).unwrap();
    let report = adapter.suspend(&aws(&b)).await.expect("suspend");
    let id = report.deny_policy_id.expect("the new id");
    assert_ne!(id, "p-deleted01");
    assert_eq!(org.deny_policies().await, [id]);
}

fn order(key: &str, name: &str) -> EnrollmentOrder {
    EnrollmentOrder {
        idempotency_key: key.into(),
        details: EnrollmentDetails::Aws(AwsEnrollment {
            email: format!("{name}@acme.example"),
            account_name: name.into(),
        }),
    }
}

#[tokio::test]
async fn enrollment_creates_one_account_however_often_it_is_repeated() {
    let org = Org::start().await;
    let adapter = org.adapter();
    let order = order("sva_enroll_1", "acme-new");
    let EnrollmentProgress::Enrolled { kind, account_id } =
        adapter.enroll(&order).await.expect("enroll")
    else {
        panic!("moto creates accounts at once");
    };
    assert_eq!(kind, VendorAccountKind::AwsAccount);
    assert_eq!(org.account_status(&account_id).await, "ACTIVE");
    assert_eq!(
        adapter.enroll(&order).await.expect("enroll again"),
        EnrollmentProgress::Enrolled {
            kind,
            account_id: account_id.clone()
        }
    );
    assert_eq!(org.proxy.count("CreateAccount"), 1);
    // The new account can be suspended like any other.
    adapter.suspend(&aws(&account_id)).await.expect("suspend");
}

/// A scripted CreateAccountStatus answer in `state`, with `extra` fields.
pub fn creation(state: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut status = json!({
        "Id": "car-0123456789abcdef0123456789abcdef",
        "AccountName": "acme-slow",
        "State": state,
        "RequestedTimestamp": 1_800_000_000,
    });
    status
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "CreateAccountStatus": status })
}

#[tokio::test]
async fn enrollment_in_progress_is_polled_until_it_ends() {
    let org = Org::start().await;
    let adapter = org.adapter();
    let order = order("sva_enroll_2", "acme-slow");
    org.proxy
        .script("CreateAccount", 200, creation("IN_PROGRESS", json!({})));
    let EnrollmentProgress::Pending { operation_id } = adapter.enroll(&order).await.unwrap() else {
        panic!("pending");
    };
    assert_eq!(operation_id, "car-0123456789abcdef0123456789abcdef");

    // A retry of the order while AWS works finds the creation instead of starting another.
    org.proxy.script(
        "ListCreateAccountStatus",
        200,
        json!({"CreateAccountStatuses": [creation("IN_PROGRESS", json!({}))["CreateAccountStatus"]]}),
    );
    assert_eq!(
        adapter.enroll(&order).await.unwrap(),
        EnrollmentProgress::Pending {
            operation_id: operation_id.clone()
        }
    );
    assert_eq!(org.proxy.count("CreateAccount"), 1);

    org.proxy.script(
        "DescribeCreateAccountStatus",
        200,
        creation("IN_PROGRESS", json!({})),
    );
    org.proxy.script(
        "DescribeCreateAccountStatus",
        200,
        creation(
            "SUCCEEDED",
            json!({"AccountId": "210987654321", "CompletedTimestamp": 1_800_000_100}),
        ),
    );
    assert!(matches!(
        adapter.poll_enrollment(&operation_id).await.unwrap(),
        EnrollmentProgress::Pending { .. }
    ));
    assert_eq!(
        adapter.poll_enrollment(&operation_id).await.unwrap(),
        EnrollmentProgress::Enrolled {
            kind: VendorAccountKind::AwsAccount,
            account_id: "210987654321".into()
        }
    );
    let bodies = org.proxy.bodies();
    assert!(
        bodies
            .iter()
            .any(|b| b["CreateAccountRequestId"] == json!(operation_id)),
        "polled by the request id"
    );
}

#[tokio::test]
async fn a_failed_creation_reports_the_vendors_reason() {
    let org = Org::start().await;
    let adapter = org.adapter();
    org.proxy.script(
        "CreateAccount",
        200,
        creation("FAILED", json!({"FailureReason": "EMAIL_ALREADY_EXISTS"})),
    );
    let EnrollmentProgress::Failed { reason } = adapter
        .enroll(&order("sva_enroll_3", "acme-taken"))
        .await
        .unwrap()
    else {
        panic!("failed");
    };
    assert!(
        reason.contains("EMAIL_ALREADY_EXISTS") && reason.contains("already belongs"),
        "{reason}"
    );
    let unknown = permanent(
        adapter
            .poll_enrollment("car-00000000000000000000000000000000")
            .await,
    );
    assert!(
        unknown.contains("car-00000000000000000000000000000000"),
        "{unknown}"
    );
}
