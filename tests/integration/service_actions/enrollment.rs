//! Enrollment through CreateCustomer: an enrollment that orders a new vendor account answers at
//! once PROVISIONING with its ENROLL action, and the worker creates the account at the vendor
//! (AWS CreateAccount in moto, Partner Center POST /v1/customers in the emulator, the
//! simulator) and links it: ENROLLED, or ENROLLMENT_FAILED with the vendor's reason. A retry of
//! the request answers the first response and orders nothing more.
use std::sync::Arc;

use msp_gateway::domain::service_control::EnrollmentProgress;
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::enrollment_request::NewAccount;
use msp_gateway::service_worker::vendor_adapters;
use msp_gateway::vendors::service_control::ServiceControl;
use msp_gateway::vendors::simulator::control::{SimulatorControl, SimulatorControlConfig};
use serde_json::json;
use tonic::Code;

use super::moto::aws_partner_account;
use super::{
    RunningWorker, customer_status, open_stream, services, simulator, test_settings, until_status,
};
use crate::customers::{new_customer, simulator_account};
use crate::harness::{Backend, TestGateway, assert_violation, field_violations};
use crate::partner_center_emulator::TENANT;
use crate::service_control::aws_organizations::{Org, creation};
use crate::service_control::partner_center::{CUSTOMER, Fixture};

fn enrolling(
    request_id: &str,
    external_ref: &str,
    vendor: v1::Vendor,
    order: NewAccount,
) -> v1::CreateCustomerRequest {
    let mut request = new_customer(request_id, external_ref);
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: vendor.into(),
        partner_account_id: String::new(),
        new_account: Some(order),
    }];
    request
}

fn aws_order(name: &str) -> NewAccount {
    NewAccount::Aws(v1::NewAwsAccount {
        email: format!("{name}@acme.example"),
        account_name: name.into(),
    })
}

fn microsoft_order(domain: &str) -> NewAccount {
    NewAccount::Microsoft(v1::NewMicrosoftCustomer {
        domain: format!("{domain}.onmicrosoft.com"),
        company_name: "Acme Mining".into(),
        contact: Some(v1::MicrosoftContact {
            first_name: "Thandi".into(),
            last_name: "Nkosi".into(),
            email: "it@acme.example".into(),
            phone: String::new(),
        }),
        address: Some(v1::PostalAddress {
            country: "ZA".into(),
            region: "Gauteng".into(),
            city: "Johannesburg".into(),
            address_line1: "1 Main Road".into(),
            address_line2: String::new(),
            postal_code: "2001".into(),
        }),
        culture: "en-US".into(),
        language: "en".into(),
    })
}

async fn get(gw: &TestGateway, id: &str) -> v1::Customer {
    gw.customers(&gw.admin_key)
        .await
        .get_customer(v1::GetCustomerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Creates the customer, checks the immediate answer (PROVISIONING, the action named) and that
/// a retry answers it again; waits for the action to end with `outcome`; the customer then.
async fn create_and_wait(
    gw: &TestGateway,
    request: v1::CreateCustomerRequest,
    outcome: v1::ServiceActionStatus,
) -> (v1::Customer, v1::ServiceAction) {
    let mut client = services(gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let mut customers = gw.customers(&gw.admin_key).await;
    let created = customers
        .create_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    let enrollment = &created.enrollments[0];
    assert_eq!(
        enrollment.status(),
        v1::EnrollmentStatus::Provisioning,
        "{created:?}"
    );
    assert!(created.vendor_accounts.is_empty());
    let action_id = enrollment.service_action_id.clone();
    assert!(action_id.starts_with("sva_"), "{action_id}");
    let seen = until_status(&mut stream, &action_id, outcome).await;
    let action = seen.last().unwrap().clone();
    assert_eq!(action.kind(), v1::ServiceActionKind::Enroll);
    assert_eq!(action.customer_id, created.id);
    assert_eq!(action.steps.len(), 1);
    // A retry of the request: the first answer again, nothing ordered twice.
    let replay = customers
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, created);
    (get(gw, &created.id).await, action)
}

async fn aws_enrollment_creates_and_links_a_member_account(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let org = Org::start().await;
    let account = aws_partner_account(&gw, &org).await;
    let worker = RunningWorker::with_factory(&gw, test_settings("w"), vendor_adapters());

    let (customer, action) = create_and_wait(
        &gw,
        enrolling("c-1", "ACME-NEW", v1::Vendor::Aws, aws_order("acme-new")),
        v1::ServiceActionStatus::Succeeded,
    )
    .await;
    let created = org
        .sdk
        .list_accounts()
        .send()
        .await
        .unwrap()
        .accounts()
        .iter()
        .find(|a| a.email() == Some("acme-new@acme.example"))
        .and_then(|a| a.id().map(str::to_string))
        .expect("the account exists in the organization");
    assert_eq!(org.account_status(&created).await, "ACTIVE");
    assert_eq!(org.proxy.count("CreateAccount"), 1);
    assert_eq!(action.steps[0].account_id, created);
    assert_eq!(
        customer.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    assert_eq!(customer.vendor_accounts.len(), 1);
    let link = &customer.vendor_accounts[0];
    assert_eq!(
        (
            link.kind(),
            link.account_id.as_str(),
            link.partner_account_id.as_str()
        ),
        (
            v1::VendorAccountKind::AwsAccount,
            created.as_str(),
            account.id.as_str()
        )
    );

    // AWS still creating: the worker polls DescribeCreateAccountStatus until it ends.
    org.proxy
        .script("CreateAccount", 200, creation("IN_PROGRESS", json!({})));
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
    let (slow, _) = create_and_wait(
        &gw,
        enrolling("c-2", "ACME-SLOW", v1::Vendor::Aws, aws_order("acme-slow")),
        v1::ServiceActionStatus::Succeeded,
    )
    .await;
    assert_eq!(slow.vendor_accounts[0].account_id, "210987654321");
    assert_eq!(org.proxy.count("DescribeCreateAccountStatus"), 2);

    // AWS refuses: ENROLLMENT_FAILED with its reason, nothing linked.
    org.proxy.script(
        "CreateAccount",
        200,
        creation("FAILED", json!({"FailureReason": "EMAIL_ALREADY_EXISTS"})),
    );
    let (refused, action) = create_and_wait(
        &gw,
        enrolling(
            "c-3",
            "ACME-TAKEN",
            v1::Vendor::Aws,
            aws_order("acme-taken"),
        ),
        v1::ServiceActionStatus::Failed,
    )
    .await;
    let enrollment = &refused.enrollments[0];
    assert_eq!(enrollment.status(), v1::EnrollmentStatus::EnrollmentFailed);
    assert!(
        enrollment.status_detail.contains("EMAIL_ALREADY_EXISTS"),
        "{enrollment:?}"
    );
    assert!(action.steps[0].last_error.contains("EMAIL_ALREADY_EXISTS"));
    assert!(refused.vendor_accounts.is_empty());
    assert_eq!(
        customer_status(&gw, &refused.id).await,
        v1::CustomerStatus::Active
    );

    // The new account is the customer's like any linked one: a suspend reaches it.
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let suspend = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: customer.id.clone(),
            reason: "credit hold".into(),
            request_id: "s-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &suspend.id, v1::ServiceActionStatus::Succeeded).await;
    let policies: Vec<String> = org.scps(&created).await.into_iter().map(|p| p.1).collect();
    assert_eq!(policies.len(), 2, "{policies:?}");
    worker.stop().await;
    gw.stop().await;
}

async fn microsoft_enrollment_creates_the_customer_tenant(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let f = Fixture::start().await;
    // The tenant's Microsoft partner account (and a customer of the fixture's).
    let partner = gw
        .vendor_customer(
            Vendor::Microsoft,
            TENANT,
            "ZAR",
            VendorAccountKind::MicrosoftTenant,
            CUSTOMER,
            rust_decimal::Decimal::ZERO,
        )
        .await;
    let worker = RunningWorker::start(&gw, test_settings("w"), Arc::new(f.control()));

    let (customer, _) = create_and_wait(
        &gw,
        enrolling(
            "m-1",
            "ACME-MS",
            v1::Vendor::Microsoft,
            microsoft_order("acmemining"),
        ),
        v1::ServiceActionStatus::Succeeded,
    )
    .await;
    let tenant = f.emulator.customers()["acmemining.onmicrosoft.com"].clone();
    assert_eq!(
        customer.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    let link = &customer.vendor_accounts[0];
    assert_eq!(
        (
            link.kind(),
            link.account_id.as_str(),
            link.partner_account_id.as_str()
        ),
        (
            v1::VendorAccountKind::MicrosoftTenant,
            tenant.as_str(),
            partner.id.as_str()
        )
    );
    let body = &f.emulator.customers_seen().create_bodies[0];
    assert_eq!(
        body["BillingProfile"]["DefaultAddress"]["City"],
        "Johannesburg"
    );

    // The domain is taken now: Partner Center's refusal is the enrollment's detail.
    let (refused, _) = create_and_wait(
        &gw,
        enrolling(
            "m-2",
            "ACME-MS-2",
            v1::Vendor::Microsoft,
            microsoft_order("acmemining"),
        ),
        v1::ServiceActionStatus::Failed,
    )
    .await;
    let enrollment = &refused.enrollments[0];
    assert_eq!(enrollment.status(), v1::EnrollmentStatus::EnrollmentFailed);
    assert!(
        enrollment.status_detail.contains("already in use"),
        "{enrollment:?}"
    );
    // Linking an existing tenant by hand still works, and enrolls the customer.
    let linked = gw
        .customers(&gw.admin_key)
        .await
        .link_vendor_account(v1::LinkVendorAccountRequest {
            customer_id: refused.id.clone(),
            vendor_account: Some(v1::VendorAccount {
                vendor: v1::Vendor::Microsoft.into(),
                kind: v1::VendorAccountKind::MicrosoftTenant.into(),
                account_id: "4b2b8a4e-3c1f-4b6e-9d8a-2f6c1e0d7a55".into(),
                ..Default::default()
            }),
            request_id: "l-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        linked.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    worker.stop().await;
    gw.stop().await;
}

async fn simulator_enrollment_is_polled_then_linked_and_bad_orders_are_refused(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    simulator_account(&gw).await;
    let sim = Arc::new(
        SimulatorControl::new(SimulatorControlConfig {
            polls_before_enrolled: 2,
            ..Default::default()
        })
        .unwrap(),
    );
    let worker = RunningWorker::start(&gw, test_settings("w"), sim);
    let mut customers = gw.customers(&gw.admin_key).await;

    // Bad orders: each field named, nothing written.
    let bad = enrolling(
        "bad-1",
        "BAD",
        v1::Vendor::Simulator,
        aws_order("not-an-email-anyway"),
    );
    assert_violation(
        customers.create_customer(bad).await,
        Code::InvalidArgument,
        "enrollments[0].new_account",
    );
    let bad = enrolling(
        "bad-2",
        "BAD",
        v1::Vendor::Aws,
        NewAccount::Aws(v1::NewAwsAccount {
            email: "nobody".into(),
            account_name: "x".repeat(51),
        }),
    );
    let refused = customers.create_customer(bad).await.unwrap_err();
    let fields: Vec<String> = field_violations(&refused)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    assert_eq!(
        fields,
        [
            "enrollments[0].aws.email",
            "enrollments[0].aws.account_name"
        ]
    );
    let none = customers
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.customers.is_empty());

    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let created = customers
        .create_customer(enrolling(
            "s-1",
            "SIM-NEW",
            v1::Vendor::Simulator,
            NewAccount::Simulator(v1::NewSimulatorAccount {
                account_name: "Acme".into(),
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    let action_id = created.enrollments[0].service_action_id.clone();
    let seen = until_status(&mut stream, &action_id, v1::ServiceActionStatus::Succeeded).await;
    // The stream ends on the step's outcome. (Whether it also shows the step under way depends
    // on when the stream reads: a stream shows an action's state at each read, and the
    // simulator's order takes a fraction of a second. The suspend test shows RUNNING steps
    // with a vendor latency long enough to be seen.)
    let last = seen.last().expect("the stream showed the action");
    assert_eq!(last.steps[0].status(), v1::ServiceActionStatus::Succeeded);
    assert!(!last.steps[0].account_id.is_empty(), "{last:?}");
    let customer = get(&gw, &created.id).await;
    assert_eq!(
        customer.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    assert_eq!(
        customer.vendor_accounts[0].kind(),
        v1::VendorAccountKind::SimulatorAccount
    );
    assert_eq!(
        customer.vendor_accounts[0].account_id,
        seen.last().unwrap().steps[0].account_id
    );
    assert_ne!(customer.etag, created.etag, "the link changed the customer");
    worker.stop().await;
    gw.stop().await;
}

/// Usage for the account an enrollment is creating arrives before the account is linked (a
/// vendor reports usage of a new account at once): it waits as UNKNOWN_VENDOR_ACCOUNT, and the
/// commit that links the new account rates it, exactly as a link by hand rates the same usage.
async fn an_enrollment_link_rates_the_usage_waiting_for_the_new_account(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = crate::usage::priced_tenant(&gw).await;
    let mut customers = gw.customers(&gw.admin_key).await;
    let created = customers
        .create_customer(enrolling(
            "e-1",
            "SIM-RATED",
            v1::Vendor::Simulator,
            NewAccount::Simulator(v1::NewSimulatorAccount {
                account_name: "Rated".into(),
            }),
        ))
        .await
        .unwrap()
        .into_inner();
    let action_id = created.enrollments[0].service_action_id.clone();
    // The simulator is deterministic: the account this order will create.
    let order = gw
        .store
        .service_action(&gw.tenant_id, &action_id)
        .await
        .unwrap()
        .steps[0]
        .enrollment
        .clone()
        .expect("an enrollment order");
    let EnrollmentProgress::Enrolled {
        account_id: new_account,
        ..
    } = simulator().enroll(&order).await.unwrap()
    else {
        panic!("the simulator enrolls at once with polls_before_enrolled 0");
    };
    // The same usage for an account another customer will link by hand: the baseline.
    let by_hand = customers
        .create_customer(crate::customers::new_customer("h-1", "BY-HAND"))
        .await
        .unwrap()
        .into_inner();
    let line = |account: &str| crate::usage::usage_line(account, "vm.small", 3, "4.00");
    crate::usage::push(
        &gw,
        "u-1",
        &priced.partner_account_id,
        vec![vec![line(&new_account), line("sim-by-hand")]],
    )
    .await
    .unwrap();
    let mut usage = gw.usage(&gw.admin_key).await;
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .unrated_usage;
    assert_eq!(unrated.len(), 2, "{unrated:?}");
    assert!(
        unrated
            .iter()
            .all(|u| u.reason_code == "UNKNOWN_VENDOR_ACCOUNT")
    );

    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let worker = RunningWorker::start(&gw, test_settings("w"), simulator());
    until_status(&mut stream, &action_id, v1::ServiceActionStatus::Succeeded).await;
    worker.stop().await;
    // Rated by the enrollment's own commit: only the other account's usage still waits.
    let unrated = usage
        .list_unrated_usage(v1::ListUnratedUsageRequest::default())
        .await
        .unwrap()
        .into_inner()
        .unrated_usage;
    let waiting: Vec<&str> = unrated
        .iter()
        .filter_map(|u| u.line.as_ref().map(|l| l.vendor_account_id.as_str()))
        .collect();
    assert_eq!(waiting, ["sim-by-hand"], "{unrated:?}");
    let charges = || async {
        gw.ledger
            .list_charges(
                &gw.admin(),
                &msp_gateway::domain::charges::ChargeFilter::default(),
                0,
                1_000,
            )
            .await
            .unwrap()
            .0
    };
    let of = |charges: &[msp_gateway::domain::charges::ChargeEvent], customer_id: &str| {
        charges
            .iter()
            .filter(|c| c.customer_id == customer_id)
            .map(|c| c.amount)
            .collect::<Vec<rust_decimal::Decimal>>()
    };
    let enrolled = of(&charges().await, &created.id);
    assert_eq!(enrolled.len(), 1, "{enrolled:?}");
    assert!(enrolled[0] > rust_decimal::Decimal::ZERO);

    // The baseline: the same usage, linked by hand to another customer.
    customers
        .link_vendor_account(v1::LinkVendorAccountRequest {
            customer_id: by_hand.id.clone(),
            vendor_account: Some(v1::VendorAccount {
                vendor: v1::Vendor::Simulator.into(),
                kind: v1::VendorAccountKind::SimulatorAccount.into(),
                account_id: "sim-by-hand".into(),
                ..Default::default()
            }),
            request_id: "l-1".into(),
        })
        .await
        .unwrap();
    let all = charges().await;
    assert_eq!(of(&all, &created.id), enrolled, "nothing rated twice");
    assert_eq!(
        enrolled,
        of(&all, &by_hand.id),
        "rated as a link by hand rates"
    );
    let customer = get(&gw, &created.id).await;
    assert_eq!(customer.vendor_accounts[0].account_id, new_account);
    gw.stop().await;
}

crate::both_backends!(
    an_enrollment_link_rates_the_usage_waiting_for_the_new_account,
    aws_enrollment_creates_and_links_a_member_account,
    microsoft_enrollment_creates_the_customer_tenant,
    simulator_enrollment_is_polled_then_linked_and_bad_orders_are_refused
);
