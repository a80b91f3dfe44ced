//! Service actions through the Partner Center adapter against the TLS emulator: a customer
//! tenant's subscriptions suspended and resumed; a purge where one of three subscriptions
//! refuses deletion fails, and the action says which.
use std::sync::Arc;

use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::proto::v1;

use super::{RunningWorker, customer_status, open_stream, services, test_settings, until_status};
use crate::harness::{Backend, TestGateway};
use crate::partner_center_emulator::TENANT;
use crate::service_control::partner_center::{CUSTOMER, Fixture, S2};

async fn a_refused_subscription_fails_the_purge_and_is_named(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let f = Fixture::start().await;
    gw.vendor_customer(
        Vendor::Microsoft,
        TENANT,
        "USD",
        VendorAccountKind::MicrosoftTenant,
        CUSTOMER,
        rust_decimal::Decimal::ZERO,
    )
    .await;
    let customer = gw
        .customers(&gw.admin_key)
        .await
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .customers
        .remove(0);
    let worker = RunningWorker::start(&gw, test_settings("w"), Arc::new(f.control()));
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    let suspend = |request_id: &str| v1::SuspendCustomerRequest {
        customer_id: customer.id.clone(),
        reason: "credit hold".into(),
        request_id: request_id.into(),
    };
    let action = client
        .suspend_customer(suspend("s-1"))
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(f.statuses(), ["suspended", "suspended", "suspended"]);
    let action = client
        .resume_customer(v1::ResumeCustomerRequest {
            customer_id: customer.id.clone(),
            reason: "paid".into(),
            request_id: "r-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(f.statuses(), ["active", "active", "active"]);

    let action = client
        .suspend_customer(suspend("s-2"))
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    f.emulator.refuse_deletion(S2);
    let purge = client
        .purge_customer(v1::PurgeCustomerRequest {
            customer_id: customer.id.clone(),
            reason: "contract ended".into(),
            request_id: "p-1".into(),
            confirm_external_ref: customer.external_ref.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let failed = until_status(&mut stream, &purge.id, v1::ServiceActionStatus::Failed)
        .await
        .pop()
        .unwrap();
    let error = &failed.steps[0].last_error;
    assert!(
        error.contains(&format!("subscription {S2}:")) && error.contains("1 of 3"),
        "{error}"
    );
    assert_eq!(f.statuses(), ["deleted", "suspended", "deleted"]);
    // A purge cannot be taken back: the customer stays scheduled for it (purge again to retry).
    assert_eq!(
        customer_status(&gw, &customer.id).await,
        v1::CustomerStatus::PurgeScheduled
    );
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(a_refused_subscription_fails_the_purge_and_is_named);
