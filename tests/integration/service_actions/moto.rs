//! Service actions through the real AWS Organizations adapter (the SDK against moto), built by
//! the worker from the partner account as in production: suspend attaches the gateway's deny
//! SCP to every AWS account of the customer beside FullAWSAccess, resume detaches it, purge
//! closes the accounts.
use msp_gateway::domain::customer::NewVendorAccountLink;
use msp_gateway::domain::idempotency::IdempotencyKey;
use msp_gateway::domain::partner_account::{PartnerAccount, PartnerAccountSpec};
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::proto::v1;
use msp_gateway::service_worker::vendor_adapters;
use msp_gateway::vendors::aws::organizations::{DENY_POLICY_NAME, FULL_AWS_ACCESS};

use super::{RunningWorker, customer_status, open_stream, services, test_settings, until_status};
use crate::aws_cost_explorer::credentials_in;
use crate::harness::{Backend, TestGateway};
use crate::service_control::aws_organizations::Org;

async fn policy_names(org: &Org, account: &str) -> Vec<String> {
    org.scps(account)
        .await
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// The tenant's AWS partner account: the organization's management account, reached through
/// the fault proxy in front of moto.
pub async fn aws_partner_account(gw: &TestGateway, org: &Org) -> PartnerAccount {
    let spec = PartnerAccountSpec {
        vendor: Vendor::Aws,
        display_name: "AWS organization".into(),
        vendor_account_id: org.management.clone(),
        partner_discount_rate: rust_decimal::Decimal::ZERO,
        credentials_ref: credentials_in(&org.credentials),
        poll_interval_secs: 900,
        enabled: true,
        endpoint_url: org.proxy.url(),
        aws: None,
        microsoft: None,
    };
    let key = IdempotencyKey::new("pa".into(), "CreatePartnerAccount", &spec);
    gw.store
        .create_partner_account(
            &gw.tenant_id,
            &spec,
            &msp_gateway::domain::idempotency::Idempotent::unanswered(key),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap()
        .0
}

async fn suspend_resume_purge_in_an_aws_organization(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let org = Org::start().await;
    let (prod, dev) = (org.member("acme-prod").await, org.member("acme-dev").await);
    let account = aws_partner_account(&gw, &org).await;
    let customer = gw
        .linked_customer(Vendor::Aws, VendorAccountKind::AwsAccount, &prod, "USD")
        .await;
    let link =
        NewVendorAccountLink::parse("v", Vendor::Aws, VendorAccountKind::AwsAccount, &dev, "")
            .unwrap();
    gw.ledger
        .link_vendor_account(&gw.tenant_id, &customer, &link, None)
        .await
        .unwrap();
    let external_ref = format!("AWS-{prod}");

    let worker = RunningWorker::with_factory(&gw, test_settings("w"), vendor_adapters());
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let suspend = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: customer.clone(),
            reason: "credit hold".into(),
            request_id: "s".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let done = until_status(&mut stream, &suspend.id, v1::ServiceActionStatus::Succeeded)
        .await
        .pop()
        .unwrap();
    let mut targets: Vec<&str> = done.steps.iter().map(|s| s.account_id.as_str()).collect();
    targets.sort_unstable();
    let mut expected = [prod.as_str(), dev.as_str()];
    expected.sort_unstable();
    assert_eq!(targets, expected);
    assert!(
        done.steps
            .iter()
            .all(|s| s.partner_account_id == account.id)
    );
    for member in [&prod, &dev] {
        assert_eq!(
            policy_names(&org, member).await,
            ["FullAWSAccess", DENY_POLICY_NAME],
            "{member}"
        );
    }
    assert!(
        org.scps(&prod)
            .await
            .iter()
            .any(|(id, _)| id == FULL_AWS_ACCESS)
    );
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );

    let resume = client
        .resume_customer(v1::ResumeCustomerRequest {
            customer_id: customer.clone(),
            reason: "paid".into(),
            request_id: "r".into(),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &resume.id, v1::ServiceActionStatus::Succeeded).await;
    for member in [&prod, &dev] {
        assert_eq!(
            policy_names(&org, member).await,
            ["FullAWSAccess"],
            "{member}"
        );
    }
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Active
    );

    // Purge: only from SUSPENDED, then the accounts are closed.
    let purge = |request_id: &str| v1::PurgeCustomerRequest {
        customer_id: customer.clone(),
        reason: "contract ended".into(),
        request_id: request_id.into(),
        confirm_external_ref: external_ref.clone(),
    };
    let refused = client
        .purge_customer(purge("p-0"))
        .await
        .expect_err("from ACTIVE");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let again = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: customer.clone(),
            reason: "closing".into(),
            request_id: "s-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &again.id, v1::ServiceActionStatus::Succeeded).await;
    let purged = client
        .purge_customer(purge("p-1"))
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &purged.id, v1::ServiceActionStatus::Succeeded).await;
    for member in [&prod, &dev] {
        assert_eq!(
            org.account_status(member).await,
            "SUSPENDED",
            "{member} closed"
        );
    }
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Purged
    );
    worker.stop().await;
    gw.stop().await;
}

/// AUTO_SUSPEND against AWS Organizations: usage over the limit records a credit event and its
/// suspend in one commit, and the worker attaches the deny SCP in moto (FullAWSAccess stays);
/// the exposure back under the limit resumes the customer and detaches it.
async fn auto_suspend_attaches_and_detaches_the_deny_policy(backend: Backend) {
    use msp_gateway::domain::idempotency::Idempotent;
    use msp_gateway::domain::pricing::{NewPriceRule, PriceKind, RuleScope};
    use msp_gateway::domain::usage::{UsageKey, UsageLine};
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let org = Org::start().await;
    let prod = org.member("auto-prod").await;
    let account = aws_partner_account(&gw, &org).await;
    let customer = gw
        .linked_customer(Vendor::Aws, VendorAccountKind::AwsAccount, &prod, "USD")
        .await;
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: rust_decimal::Decimal::ZERO,
        currency: None,
        effective_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        effective_to: None,
    };
    let key = IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule);
    gw.ledger
        .create_price_rule(&gw.admin(), &rule, &Idempotent::unanswered(key))
        .await
        .unwrap();
    super::auto_suspend::settings(&gw, &customer, "100", true, "auto").await;
    let worker = RunningWorker::with_factory(&gw, test_settings("w"), vendor_adapters());
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    let window = chrono::Utc::now() - chrono::Duration::hours(2);
    let usage = UsageLine {
        key: UsageKey {
            vendor_account_id: prod.clone(),
            service: "Amazon Elastic Compute Cloud - Compute".into(),
            meter: "BoxUsage:m5.large".into(),
            region: "af-south-1".into(),
            window_start: window,
        },
        window_end: window + chrono::Duration::hours(1),
        meter_name: "BoxUsage:m5.large".into(),
        quantity: rust_decimal::Decimal::ONE,
        unit: "Hrs".into(),
        cost: "150.00".parse().unwrap(),
        list_cost: None,
        currency: "USD".into(),
        estimated: false,
        vendor_tenant_id: None,
    };
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &account,
            vec![usage],
            &crate::harness::fresh_request(),
        )
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id");
    let events = super::auto_suspend::acting_events(&gw).await;
    assert_eq!(events.len(), 1, "one SUSPENSION_REQUIRED: {events:?}");
    let (_, suspend_id, _) = events[0].clone();
    assert!(!suspend_id.is_empty(), "the event names its suspend action");
    let done = until_status(&mut stream, &suspend_id, v1::ServiceActionStatus::Succeeded)
        .await
        .pop()
        .unwrap();
    assert!(done.automatic);
    assert_eq!(
        policy_names(&org, &prod).await,
        ["FullAWSAccess", DENY_POLICY_NAME]
    );
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );

    // A higher limit puts the exposure back under it: resumed, the deny policy detached.
    super::auto_suspend::settings(&gw, &customer, "1000", false, "raise").await;
    let events = super::auto_suspend::acting_events(&gw).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (_, resume_id, _) = events[1].clone();
    assert!(!resume_id.is_empty(), "the resumption names its action");
    until_status(&mut stream, &resume_id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(policy_names(&org, &prod).await, ["FullAWSAccess"]);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Active
    );
    worker.stop().await;
    gw.stop().await;
}

/// Suspends and then purges `customer` through the API, waiting for each to succeed.
async fn suspend_then_purge(
    client: &mut super::Services,
    stream: &mut tonic::Streaming<v1::StreamServiceActionsResponse>,
    customer: &str,
    external_ref: &str,
) -> Result<v1::ServiceAction, tonic::Status> {
    let suspend = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: customer.into(),
            reason: "closing".into(),
            request_id: format!("s-{customer}"),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(stream, &suspend.id, v1::ServiceActionStatus::Succeeded).await;
    let purge = client
        .purge_customer(v1::PurgeCustomerRequest {
            customer_id: customer.into(),
            reason: "contract ended".into(),
            request_id: format!("p-{customer}"),
            confirm_external_ref: external_ref.into(),
        })
        .await?
        .into_inner();
    Ok(
        until_status(stream, &purge.id, v1::ServiceActionStatus::Succeeded)
            .await
            .pop()
            .unwrap(),
    )
}

async fn the_closure_budget_refuses_the_eleventh_closure_before_aws_is_called(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let org = Org::start().await;
    let mut members = Vec::new();
    for i in 0..50 {
        members.push(org.member(&format!("member-{i:02}")).await);
    }
    aws_partner_account(&gw, &org).await;
    // Customer A holds ten of the fifty accounts, customer B one more.
    let a = gw
        .linked_customer(
            Vendor::Aws,
            VendorAccountKind::AwsAccount,
            &members[0],
            "USD",
        )
        .await;
    for member in &members[1..10] {
        let link = NewVendorAccountLink::parse(
            "v",
            Vendor::Aws,
            VendorAccountKind::AwsAccount,
            member,
            "",
        )
        .unwrap();
        gw.ledger
            .link_vendor_account(&gw.tenant_id, &a, &link, None)
            .await
            .unwrap();
    }
    let b = gw
        .linked_customer(
            Vendor::Aws,
            VendorAccountKind::AwsAccount,
            &members[10],
            "USD",
        )
        .await;
    let worker = RunningWorker::with_factory(&gw, test_settings("w"), vendor_adapters());
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    // Ten closures: the whole budget of an organization of fifty (max(10, 10 % of 50)).
    let purged = suspend_then_purge(&mut client, &mut stream, &a, &format!("AWS-{}", members[0]))
        .await
        .expect("ten closures fit");
    assert_eq!(purged.steps.len(), 10);
    assert_eq!(org.proxy.count("CloseAccount"), 10);

    // The eleventh is refused before AWS is asked to close anything, and nothing is written.
    let refused = suspend_then_purge(
        &mut client,
        &mut stream,
        &b,
        &format!("AWS-{}", members[10]),
    )
    .await
    .expect_err("over the budget");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("AWS account closure budget")
            && refused
                .message()
                .contains("close 10 member accounts in any 30 days"),
        "{}",
        refused.message()
    );
    assert_eq!(org.proxy.count("CloseAccount"), 10);
    assert_eq!(org.account_status(&members[10]).await, "ACTIVE");
    let purges = client
        .list_service_actions(v1::ListServiceActionsRequest {
            customer_id: b.clone(),
            kind: v1::ServiceActionKind::Purge.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(purges.service_actions.is_empty(), "{purges:?}");
    assert_eq!(
        customer_status(&gw, &b).await,
        v1::CustomerStatus::Suspended
    );
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(
    auto_suspend_attaches_and_detaches_the_deny_policy,
    suspend_resume_purge_in_an_aws_organization,
    the_closure_budget_refuses_the_eleventh_closure_before_aws_is_called
);
