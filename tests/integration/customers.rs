use msp_gateway::proto::v1;
use tonic::Code;

use crate::harness::{Backend, TestGateway, assert_violation};

pub fn new_customer(request_id: &str, external_ref: &str) -> v1::CreateCustomerRequest {
    v1::CreateCustomerRequest {
        request_id: request_id.into(),
        external_ref: external_ref.into(),
        display_name: format!("Customer {external_ref}"),
        billing_currency: "ZAR".into(),
        billing_cycle: v1::BillingCycle::Monthly.into(),
        time_zone: String::new(),
        credit_limit: "50000.00".into(),
        enrollments: vec![],
        billing_anchor: None,
    }
}

pub async fn simulator_account(gw: &TestGateway) -> v1::PartnerAccount {
    simulator_account_at(gw.channel().await, &gw.admin_key).await
}

/// [`simulator_account`] through the gateway at `channel` (one this process does not run).
pub async fn simulator_account_at(
    channel: tonic::transport::Channel,
    key: &str,
) -> v1::PartnerAccount {
    v1::partner_account_service_client::PartnerAccountServiceClient::with_interceptor(
        channel,
        crate::harness::Bearer::new(key),
    )
    .create_partner_account(v1::CreatePartnerAccountRequest {
        request_id: "sim-account".into(),
        partner_account: Some(v1::PartnerAccount {
            vendor: v1::Vendor::Simulator.into(),
            display_name: "Simulator".into(),
            vendor_account_id: "sim-partner".into(),
            partner_discount_rate: "0.10".into(),
            enabled: true,
            ..Default::default()
        }),
    })
    .await
    .expect("simulator partner account")
    .into_inner()
}

pub async fn aws_account(gw: &TestGateway) -> v1::PartnerAccount {
    let mut accounts = gw.partner_accounts(&gw.admin_key).await;
    accounts
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: "aws-account".into(),
            partner_account: Some(v1::PartnerAccount {
                vendor: v1::Vendor::Aws.into(),
                display_name: "AWS payer".into(),
                vendor_account_id: "111122223333".into(),
                partner_discount_rate: "0.05".into(),
                credentials_ref: "env:MSPGW_AWS_PAYER".into(),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .expect("aws partner account")
        .into_inner()
}

async fn lifecycle(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let sim = simulator_account(&gw).await;
    let mut client = gw.customers(&gw.admin_key).await;

    // Create, with a simulator enrollment that links an account at once.
    let mut request = new_customer("req-1", "ISP-0001");
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Simulator.into(),
        partner_account_id: String::new(),
        new_account: None,
    }];
    let created = client
        .create_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.external_ref, "ISP-0001");
    assert_eq!(created.billing_currency, "ZAR");
    assert_eq!(created.credit_limit, "50000.00");
    assert_eq!(
        created.time_zone, "Africa/Johannesburg",
        "defaults to the tenant's zone"
    );
    assert_eq!(created.status(), v1::CustomerStatus::Active);
    assert_eq!(created.enrollments.len(), 1);
    assert_eq!(
        created.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    assert_eq!(created.enrollments[0].partner_account_id, sim.id);
    assert!(
        created.enrollments[0]
            .portal_url
            .contains(&created.vendor_accounts[0].account_id)
    );

    // Get returns the same customer.
    let fetched = client
        .get_customer(v1::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);

    // A retry with the same request_id returns the same customer and creates nothing.
    let retried = client
        .create_customer(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.id, created.id);

    // The same request_id with a different body is refused.
    let mut changed = request.clone();
    changed.display_name = "Somebody else".into();
    assert_violation(
        client.create_customer(changed).await,
        Code::InvalidArgument,
        "request_id",
    );

    // A duplicate external_ref under a new request_id answers ALREADY_EXISTS.
    let duplicate = client
        .create_customer(new_customer("req-2", "ISP-0001"))
        .await;
    assert_violation(duplicate, Code::AlreadyExists, "external_ref");

    // List across pages: 7 customers in pages of 3.
    for i in 2..=7 {
        client
            .create_customer(new_customer(
                &format!("req-list-{i}"),
                &format!("ISP-000{i}"),
            ))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_customers(v1::ListCustomersRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.customers.len() <= 3);
        seen.extend(page.customers.into_iter().map(|c| c.external_ref));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (1..=7).map(|i| format!("ISP-000{i}")).collect();
    assert_eq!(seen, expected, "every customer once, in creation order");

    // Filter by external_ref.
    let one = client
        .list_customers(v1::ListCustomersRequest {
            external_ref: "ISP-0004".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.customers.len(), 1);
    assert_eq!(one.customers[0].external_ref, "ISP-0004");

    // Update with the current etag succeeds and changes the etag.
    let mut patch = created.clone();
    patch.display_name = "Renamed Ltd".into();
    patch.credit_limit = "75000.5".into();
    let updated = client
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(patch.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into(), "credit_limit".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "Renamed Ltd");
    assert_eq!(updated.credit_limit, "75000.50");
    assert_ne!(updated.etag, created.etag);

    // The stale etag is refused with ABORTED, and nothing changes.
    patch.display_name = "Lost update".into();
    let stale = client
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            request_id: String::new(),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);
    let after = client
        .get_customer(v1::GetCustomerRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.display_name, "Renamed Ltd");
    gw.stop().await;
}

async fn vendor_account_links(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let aws = aws_account(&gw).await;
    let mut client = gw.customers(&gw.admin_key).await;
    let mut request = new_customer("req-a", "A");
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Aws.into(),
        partner_account_id: String::new(),
        new_account: None,
    }];
    let a = client.create_customer(request).await.unwrap().into_inner();
    assert_eq!(
        a.enrollments[0].status(),
        v1::EnrollmentStatus::AwaitingLink
    );
    let b = client
        .create_customer(new_customer("req-b", "B"))
        .await
        .unwrap()
        .into_inner();

    let link = |customer_id: &str| v1::LinkVendorAccountRequest {
        customer_id: customer_id.into(),
        vendor_account: Some(v1::VendorAccount {
            vendor: v1::Vendor::Aws.into(),
            kind: v1::VendorAccountKind::AwsAccount.into(),
            account_id: "444455556666".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let linked = client
        .link_vendor_account(link(&a.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.vendor_accounts.len(), 1);
    assert_eq!(linked.vendor_accounts[0].partner_account_id, aws.id);
    assert_eq!(
        linked.enrollments[0].status(),
        v1::EnrollmentStatus::Enrolled
    );
    assert!(linked.enrollments[0].portal_url.contains("444455556666"));

    // Linking again to the same customer is a no-op; to another customer is refused.
    let again = client
        .link_vendor_account(link(&a.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.vendor_accounts.len(), 1);
    assert_violation(
        client.link_vendor_account(link(&b.id)).await,
        Code::AlreadyExists,
        "vendor_account.account_id",
    );
    let b_after = client
        .get_customer(v1::GetCustomerRequest { id: b.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(b_after.vendor_accounts.is_empty(), "nothing half-written");

    // A malformed AWS account id names the field.
    let mut bad = link(&b.id);
    bad.vendor_account.as_mut().unwrap().account_id = "12345".into();
    assert_violation(
        client.link_vendor_account(bad).await,
        Code::InvalidArgument,
        "vendor_account.account_id",
    );

    // Unlink frees the account for the other customer.
    let unlinked = client
        .unlink_vendor_account(v1::UnlinkVendorAccountRequest {
            customer_id: a.id.clone(),
            vendor: v1::Vendor::Aws.into(),
            account_id: "444455556666".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unlinked.vendor_accounts.is_empty());
    assert_eq!(
        unlinked.enrollments[0].status(),
        v1::EnrollmentStatus::AwaitingLink
    );
    let moved = client
        .link_vendor_account(link(&b.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.vendor_accounts[0].account_id, "444455556666");
    gw.stop().await;
}

async fn concurrent_creates_with_one_request_id(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let client = gw.customers(&gw.admin_key).await;
    let calls = (0..50).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .create_customer(new_customer("same-request", "CONCURRENT-1"))
                .await
                .map(|r| r.into_inner().id)
        })
    });
    let results = futures::future::join_all(calls).await;
    let ids: Vec<String> = results
        .into_iter()
        .map(|r| {
            r.expect("task")
                .expect("every call succeeds with the same customer")
        })
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id == &ids[0]), "one customer: {ids:?}");
    let mut client = client.clone();
    let all = client
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.customers.len(), 1);
    gw.stop().await;
}

crate::both_backends!(
    lifecycle,
    vendor_account_links,
    concurrent_creates_with_one_request_id
);
