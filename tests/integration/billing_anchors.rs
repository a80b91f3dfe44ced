//! Billing anchors through the generated client on both backends: a customer whose months start
//! on the 15th in Johannesburg (UTC+2) closes [15th, 15th) periods by the local date its usage
//! windows start on; a new anchor takes effect at the next boundary (a short period first, a
//! closed one never re-cut); impossible anchors are refused naming the field.
use msp_gateway::proto::v1;
use tonic::Code;

use crate::charge_streams::line;
use crate::customers::new_customer;
use crate::harness::{Backend, TestGateway, assert_violation};
use crate::invoicing::{at, books, close, invoices, push, ts};

async fn periods_start_on_the_anchor_day(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (account, _) = books(&gw, &[]).await;
    let mut customers = gw.customers(&gw.admin_key).await;

    // Out of range: refused with both fields named, nothing written.
    let mut bad = new_customer("anchor-bad", "ANCHOR-BAD");
    bad.billing_anchor = Some(v1::BillingAnchor { month: 13, day: 7 });
    assert_violation(
        customers.create_customer(bad.clone()).await,
        Code::InvalidArgument,
        "billing_anchor.month",
    );
    bad.billing_anchor = Some(v1::BillingAnchor { month: 1, day: 32 });
    assert_violation(
        customers.create_customer(bad).await,
        Code::InvalidArgument,
        "billing_anchor.day",
    );

    let mut request = new_customer("anchor-1", "ANCHOR-1");
    request.time_zone = "Africa/Johannesburg".into();
    // Month 0: January (monthly cycles ignore it).
    request.billing_anchor = Some(v1::BillingAnchor { month: 0, day: 15 });
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Simulator.into(),
        partner_account_id: String::new(),
        new_account: None,
    }];
    let created = customers
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.billing_anchor,
        Some(v1::BillingAnchor { month: 1, day: 15 })
    );
    let c = &created.id;
    push(
        &gw,
        &account,
        vec![
            // 23:30 on 14 October in Johannesburg: the period from 15 September.
            line(c, "vm", "1.00", at("2025-10-14T21:30:00Z")),
            // 00:30 on 15 October: the period from 15 October.
            line(c, "vm", "2.00", at("2025-10-14T22:30:00Z")),
            // 23:00 on 14 November: still the period from 15 October.
            line(c, "disk", "4.00", at("2025-11-14T21:00:00Z")),
            // 20 November: after the anchor changes below.
            line(c, "disk", "8.00", at("2025-11-20T10:00:00Z")),
        ],
    )
    .await;
    let mut client = invoices(&gw, &gw.admin_key).await;
    let september = close(&mut client, c, None).await;
    assert_eq!(september.period_start, Some(ts("2025-09-14T22:00:00Z")));
    assert_eq!(september.period_end, Some(ts("2025-10-14T22:00:00Z")));
    assert_eq!(september.total, "1.00");
    let october = close(&mut client, c, None).await;
    assert_eq!(october.period_start, Some(ts("2025-10-14T22:00:00Z")));
    assert_eq!(october.period_end, Some(ts("2025-11-14T22:00:00Z")));
    assert_eq!(october.total, "6.00");

    // Back to calendar months: from the end of the last closed period to the next 1st.
    let mut changed = created.clone();
    changed.billing_anchor = Some(v1::BillingAnchor { month: 0, day: 1 });
    let updated = customers
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(changed),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["billing_anchor".into()],
            }),
            request_id: "anchor-update".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        updated.billing_anchor,
        Some(v1::BillingAnchor { month: 1, day: 1 })
    );
    let short = close(&mut client, c, None).await;
    assert_eq!(short.period_start, Some(ts("2025-11-14T22:00:00Z")));
    assert_eq!(short.period_end, Some(ts("2025-11-30T22:00:00Z")));
    assert_eq!(short.total, "8.00");
    // The closed periods stand as they were cut.
    let again = client
        .get_invoice(v1::GetInvoiceRequest {
            id: october.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, october);
    gw.stop().await;
}

crate::both_backends!(periods_start_on_the_anchor_day);
