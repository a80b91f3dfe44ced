//! Changes of one subscription are made one at a time, on both backends. A Microsoft
//! subscription's change is held at Partner Center (the emulator holds its PATCH): a second
//! change of the same subscription meanwhile is ABORTED, and afterwards the gateway's quantity is
//! Partner Center's; a retry of the first request answers its first result. The MSP's own items
//! change inside one transaction: concurrent changes each decide on the state the one before
//! left, so their prorations and refunds add up to the change of quantity.
use msp_gateway::proto::v1;
use rust_decimal::Decimal;
use tonic::Code;

use crate::harness::{Backend, TestGateway};
use crate::nce_orders::shop;
use crate::subscriptions::{charges_of, clients, purchase, setup};

async fn a_change_while_another_is_at_partner_center_is_aborted(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let bought = s
        .subs
        .create_subscription(s.buy("order-1", 5))
        .await
        .unwrap()
        .into_inner();
    let vendor_id = bought.vendor_subscription_id.clone();
    let held = s.f.emulator.hold_next_patch();
    let mut first_client = s.subs.clone();
    let first_request = v1::ChangeSubscriptionQuantityRequest {
        request_id: "order-2".into(),
        id: bought.id.clone(),
        quantity: 8,
    };
    let first = tokio::spawn({
        let request = first_request.clone();
        async move { first_client.change_subscription_quantity(request).await }
    });
    held.arrived
        .await
        .expect("the first change reached Partner Center");

    // Every kind of change of the same subscription is refused while the PATCH is held.
    let reduce = s.set_quantity("order-3", &bought.id, 3).await.unwrap_err();
    assert_eq!(reduce.code(), Code::Aborted, "{reduce:?}");
    assert!(
        reduce.message().contains(&bought.id) && reduce.message().contains("in progress"),
        "{reduce:?}"
    );
    let cancel = s
        .subs
        .cancel_subscription(v1::CancelSubscriptionRequest {
            request_id: "order-4".into(),
            id: bought.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::Aborted, "{cancel:?}");
    let renew = s
        .subs
        .set_subscription_auto_renew(v1::SetSubscriptionAutoRenewRequest {
            request_id: "order-5".into(),
            id: bought.id.clone(),
            auto_renew: false,
        })
        .await
        .unwrap_err();
    assert_eq!(renew.code(), Code::Aborted, "{renew:?}");
    assert_eq!(s.f.emulator.customers_seen().quantity_patches.len(), 0);

    held.release.send(()).unwrap();
    let changed = first.await.unwrap().unwrap().into_inner();
    assert_eq!(changed.subscription.as_ref().unwrap().quantity, 8);
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 8);
    assert_eq!(s.subscriptions().await[0].quantity, 8);
    // The refused changes wrote nothing: the fee and the one proration.
    assert_eq!(s.charges().await.len(), 2);
    // The first request's retry answers its first result; the refused one, retried, now
    // decides on the 8 seats and is made at both ends.
    let again = s
        .subs
        .change_subscription_quantity(first_request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, changed);
    let reduced = s.set_quantity("order-3", &bought.id, 3).await.unwrap();
    assert_eq!(reduced.charge_kind(), v1::ChargeKind::Refund);
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 3);
    assert_eq!(s.subscriptions().await[0].quantity, 3);
    s.gw.stop().await;
}

async fn concurrent_changes_of_an_msp_item_are_ordered(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (_, mut subs, mut charges) = clients(&gw, &gw.admin_key).await;
    let bought = subs
        .create_subscription(purchase(&customer, &item, 10))
        .await
        .unwrap()
        .into_inner();
    // Within the window: every change applies now, increases and reductions alike.
    let targets = [14i64, 3, 9, 12, 1, 7, 11, 5];
    let changes = targets.iter().map(|&quantity| {
        let mut subs = subs.clone();
        let request = v1::ChangeSubscriptionQuantityRequest {
            request_id: format!("msp-{quantity}"),
            id: bought.id.clone(),
            quantity,
        };
        tokio::spawn(async move { subs.change_subscription_quantity(request).await })
    });
    for change in futures::future::join_all(changes).await {
        change.unwrap().expect("each change applies");
    }
    let now = subs
        .get_subscription(v1::GetSubscriptionRequest {
            id: bought.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .quantity;
    assert!(targets.contains(&now), "{now}");
    // Each change's seats are counted from the quantity the previous one left.
    let moved: Decimal = charges_of(&mut charges, &customer)
        .await
        .iter()
        .filter(|c| c.kind() != v1::ChargeKind::SubscriptionFee)
        .map(|c| c.quantity.parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(moved, Decimal::from(now - 10));
    gw.stop().await;
}

crate::both_backends!(
    a_change_while_another_is_at_partner_center_is_aborted,
    concurrent_changes_of_an_msp_item_are_ordered,
);
