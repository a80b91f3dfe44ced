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
    let customer = tenant_customer(&gw).await;
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

/// The customer holding the fixture's tenant (three subscriptions).
pub async fn tenant_customer(gw: &TestGateway) -> v1::Customer {
    gw.vendor_customer(
        Vendor::Microsoft,
        TENANT,
        "USD",
        VendorAccountKind::MicrosoftTenant,
        CUSTOMER,
        rust_decimal::Decimal::ZERO,
    )
    .await;
    gw.customers(&gw.admin_key)
        .await
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .customers
        .remove(0)
}

/// Suspends (or resumes) the customer and waits for the action to succeed: every state seen.
async fn carried_out(
    client: &mut super::Services,
    stream: &mut tonic::Streaming<v1::StreamServiceActionsResponse>,
    customer: &str,
    suspend: bool,
    request_id: &str,
) -> Vec<v1::ServiceAction> {
    let action = if suspend {
        client
            .suspend_customer(v1::SuspendCustomerRequest {
                customer_id: customer.into(),
                reason: "credit hold".into(),
                request_id: request_id.into(),
            })
            .await
    } else {
        client
            .resume_customer(v1::ResumeCustomerRequest {
                customer_id: customer.into(),
                reason: "paid".into(),
                request_id: request_id.into(),
            })
            .await
    }
    .unwrap()
    .into_inner();
    until_status(stream, &action.id, v1::ServiceActionStatus::Succeeded).await
}

/// Faults the adapter gives up on are the worker's to retry: a 5xx, a stale etag (412) and a
/// 429 whose Retry-After is longer than the adapter waits each fail the first attempt of the
/// step; the worker tries again (after the vendor's Retry-After for the 429) and the action
/// succeeds, the step keeping the vendor's last error for the audit trail.
async fn the_worker_retries_what_partner_center_refuses_for_now(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let f = Fixture::start().await;
    let customer = tenant_customer(&gw).await.id;
    let worker = RunningWorker::start(&gw, test_settings("w"), Arc::new(f.control()));
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    // Five 503s: the adapter's three attempts, then two more in the worker's second attempt.
    f.emulator.customers_script(|s| s.unavailable = 5);
    let done = carried_out(&mut client, &mut stream, &customer, true, "s-1")
        .await
        .pop()
        .unwrap();
    assert_eq!(done.steps[0].attempts, 2, "{done:?}");
    assert!(done.steps[0].last_error.contains("HTTP 503"), "{done:?}");
    assert_eq!(f.emulator.customers_seen().unavailable, 5);
    assert_eq!(f.statuses(), ["suspended", "suspended", "suspended"]);

    // Four stale etags: three spend the adapter's attempts, the fourth the worker's retry's
    // first read; each 412 is read again and retried.
    f.emulator.customers_script(|s| s.stale_etags = 4);
    let done = carried_out(&mut client, &mut stream, &customer, false, "r-1")
        .await
        .pop()
        .unwrap();
    assert_eq!(done.steps[0].attempts, 2, "{done:?}");
    assert!(done.steps[0].last_error.contains("412"), "{done:?}");
    assert_eq!(f.emulator.customers_seen().stale_etag_answers, 4);
    assert_eq!(f.statuses(), ["active", "active", "active"]);

    // Throttled with a Retry-After (3 s) longer than the adapter waits (2 s): the worker waits
    // it out before its next attempt.
    f.emulator.customers_script(|s| {
        s.throttle = 1;
        s.throttle_retry_after = Some(3);
    });
    let start = std::time::Instant::now();
    let seen = carried_out(&mut client, &mut stream, &customer, true, "s-2").await;
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let waiting = seen
        .iter()
        .find(|a| {
            a.steps[0].status() == v1::ServiceActionStatus::Pending && a.steps[0].attempts == 1
        })
        .expect("the step waiting for the vendor's Retry-After");
    let (updated, next) = (
        waiting.update_time.unwrap().seconds,
        waiting.steps[0].next_attempt_time.unwrap().seconds,
    );
    assert!(next - updated >= 2, "waits ~3 s: {waiting:?}");
    assert!(waiting.steps[0].last_error.contains("429"), "{waiting:?}");
    assert_eq!(f.statuses(), ["suspended", "suspended", "suspended"]);
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(
    a_refused_subscription_fails_the_purge_and_is_named,
    the_worker_retries_what_partner_center_refuses_for_now
);
