//! A purchase whose answer was lost is finished by the pending-order sweeper, on both backends:
//! the emulator carries out the checkout and loses its answer on every attempt, so the gateway
//! records nothing; the sweeper (called directly, with its age cut-off) repeats the order with
//! the same request ids, Partner Center answers with the first order, and the subscription and
//! its first fee are recorded once, with the request id's answer for the client's retry. A
//! pending order Partner Center refuses marks the request failed: its retry answers the refusal.
use std::sync::Arc;

use chrono::{Duration, Utc};
use msp_gateway::api::subscriptions::subscription_to_proto;
use msp_gateway::ledger::pending_orders::EncodeSubscription;
use tonic::Code;

use crate::harness::Backend;
use crate::nce_orders::{SKU, shop};
use crate::partner_center_emulator::SKU_UNAVAILABLE;

fn encoder() -> EncodeSubscription {
    Arc::new(|record| prost::Message::encode_to_vec(&subscription_to_proto(record)))
}

async fn a_purchase_whose_answer_was_lost_is_recorded_once_by_the_sweeper(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    s.f.emulator
        .customers_script(|c| c.lose_checkout_answers = 10);
    let lost = s
        .subs
        .create_subscription(s.buy("lost-1", 4))
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 1);
    assert!(s.subscriptions().await.is_empty());
    assert!(s.charges().await.is_empty());
    s.f.emulator
        .customers_script(|c| c.lose_checkout_answers = 0);

    let encode = encoder();
    let ledger = s.gw.ledger.clone();
    // Younger than the sweeper's age: left for the client's own retry.
    let young = Utc::now() - Duration::minutes(5);
    assert_eq!(
        ledger.finish_pending_orders(young, &encode).await.unwrap(),
        0
    );
    assert!(s.subscriptions().await.is_empty());
    let due = Utc::now() + Duration::seconds(1);
    assert_eq!(ledger.finish_pending_orders(due, &encode).await.unwrap(), 1);
    let recorded = s.subscriptions().await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].quantity, 4);
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 1, "sold once");
    let fees = s.charges().await;
    assert_eq!(fees.len(), 1, "{fees:?}");
    assert_eq!(fees[0].quantity, "4");
    assert_eq!(ledger.finish_pending_orders(due, &encode).await.unwrap(), 0);

    // The client's retry answers the subscription the sweeper recorded.
    let again = s
        .subs
        .create_subscription(s.buy("lost-1", 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, recorded[0]);
    assert_eq!(s.charges().await.len(), 1);
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 1);
    s.gw.stop().await;
}

async fn a_pending_order_partner_center_refuses_answers_its_retry_with_the_refusal(
    backend: Backend,
) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    // Partner Center cannot be reached: the order may or may not have been placed.
    s.f.emulator.customers_script(|c| c.unavailable = 10);
    let lost = s
        .subs
        .create_subscription(s.buy("lost-2", 2))
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    s.f.emulator.customers_script(|c| {
        c.unavailable = 0;
        c.unavailable_skus = vec![SKU.into()];
    });
    let encode = encoder();
    let due = Utc::now() + Duration::seconds(1);
    assert_eq!(
        s.gw.ledger
            .finish_pending_orders(due, &encode)
            .await
            .unwrap(),
        1
    );
    assert!(s.subscriptions().await.is_empty());
    assert!(s.charges().await.is_empty());
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 0);
    assert_eq!(
        s.gw.ledger
            .finish_pending_orders(due, &encode)
            .await
            .unwrap(),
        0
    );
    // The retry answers the refusal, even once the SKU could be sold again.
    s.f.emulator
        .customers_script(|c| c.unavailable_skus.clear());
    let refused = s
        .subs
        .create_subscription(s.buy("lost-2", 2))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&SKU_UNAVAILABLE.to_string()),
        "{refused:?}"
    );
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 0);
    // The refusal is kept while the request id is, and forgotten with it.
    let refusals = "UPDATE pending_seat_orders SET refusal = refusal WHERE refusal IS NOT NULL";
    assert_eq!(s.gw.execute_sql(refusals).await, 1);
    s.gw.store
        .forget_request_ids_before(Utc::now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(s.gw.execute_sql(refusals).await, 1, "within the retention");
    s.gw.store
        .forget_request_ids_before(Utc::now() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(s.gw.execute_sql(refusals).await, 0, "past the retention");
    s.gw.stop().await;
}

crate::both_backends!(
    a_purchase_whose_answer_was_lost_is_recorded_once_by_the_sweeper,
    a_pending_order_partner_center_refuses_answers_its_retry_with_the_refusal,
);
