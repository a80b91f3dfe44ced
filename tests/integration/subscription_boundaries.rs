//! The period-boundary run's batches on both backends: a subscription that cannot be priced is
//! left due and holds back no other, whether it shares a batch with them or has one of its own,
//! and is caught up once it can be priced. (Fees appended once across replicas and after
//! downtime: subscriptions.rs.)
use chrono::{Duration, Utc};
use msp_gateway::domain::catalog::{BillingFrequency, Offer, Term};
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::proto::v1;

use crate::harness::{Backend, TestGateway, fresh_request};
use crate::subscriptions::{charges_of, clients, setup};

async fn a_subscription_that_cannot_be_priced_holds_back_no_other(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (_, mut subs, mut charges) = clients(&gw, &gw.admin_key).await;
    let mut ids = Vec::new();
    for seats in [1, 2, 3] {
        let new = NewSubscription {
            customer_id: customer.clone(),
            item_id: item.clone(),
            quantity: seats,
            offer: Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap(),
        };
        let record = gw
            .ledger
            .create_subscription(
                &gw.tenant_id,
                &new,
                Utc::now() - Duration::days(40),
                &fresh_request(),
            )
            .await
            .unwrap()
            .fresh()
            .unwrap();
        ids.push(record.id);
    }
    // The catalogue has no unit cost in USD: the second subscription cannot be priced.
    let broken = &ids[1];
    let set_currency =
        |code: &str| format!("UPDATE subscriptions SET currency = '{code}' WHERE id = '{broken}'");
    assert_eq!(gw.execute_sql(&set_currency("USD")).await, 1);
    let period_start = async |subs: &mut crate::subscriptions::Subscriptions, id: &str| {
        subs.get_subscription(v1::GetSubscriptionRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .current_period_start_time
            .map(|t| t.seconds)
    };
    let before = period_start(&mut subs, broken).await;
    let now = Utc::now();
    // One batch with all three: the other two are caught up.
    assert_eq!(
        gw.ledger
            .catch_up_due_subscriptions(now, 1_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(period_start(&mut subs, broken).await, before, "left due");
    for id in [&ids[0], &ids[2]] {
        assert_ne!(period_start(&mut subs, id).await, before, "{id} moved on");
    }
    // Batches of one: the run reads past it instead of stopping at it.
    assert_eq!(
        gw.ledger.catch_up_due_subscriptions(now, 1).await.unwrap(),
        0
    );
    let fees = charges_of(&mut charges, &customer).await;
    assert_eq!(
        fees.len(),
        3 + 2,
        "three purchases, two renewals: {fees:#?}"
    );
    // Once it can be priced, the next run catches it up, once.
    assert_eq!(gw.execute_sql(&set_currency("ZAR")).await, 1);
    assert_eq!(
        gw.ledger.catch_up_due_subscriptions(now, 1).await.unwrap(),
        1
    );
    assert_eq!(
        gw.ledger.catch_up_due_subscriptions(now, 1).await.unwrap(),
        0
    );
    assert_eq!(charges_of(&mut charges, &customer).await.len(), 6);
    assert_ne!(period_start(&mut subs, broken).await, before);
    gw.stop().await;
}

crate::both_backends!(a_subscription_that_cannot_be_priced_holds_back_no_other);
