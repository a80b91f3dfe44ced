//! Microsoft New Commerce seats bought through Partner Center (the TLS emulator) by the real
//! server, on both backends: CreateSubscription goes through a cart and its checkout (the
//! availability looked up for a `product:sku` item), quantity changes through the subscription
//! PATCH under If-Match (a stale etag re-read), cancellation inside the window as `deleted`; a
//! vendor refusal is FAILED_PRECONDITION with Partner Center's code and nothing written; a 429
//! is waited out; a retried request orders once; changes outside the window are scheduled at
//! Partner Center for the renewal; a suspended customer cannot buy.
use std::sync::Arc;

use chrono::{Duration, Utc};
use msp_gateway::domain::catalog::{BillingFrequency, CatalogItemId, Offer, Term};
use msp_gateway::domain::seat_order::{SeatOrder, SeatOrders};
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::catalog_service_client::CatalogServiceClient;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use msp_gateway::proto::v1::subscription_service_client::SubscriptionServiceClient;
use msp_gateway::vendors::seat_orders::VendorAdapters;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Backend, Bearer, TestGateway, fresh_request};
use crate::partner_center_emulator::{AVAILABILITY, QUANTITY_LIMIT, SKU_UNAVAILABLE};
use crate::service_actions::partner_center::tenant_customer;
use crate::service_actions::{
    RunningWorker, customer_status, open_stream, services, suspend, test_settings, until_status,
};
use crate::service_control::partner_center::{CUSTOMER, Fixture};

type Subscriptions = SubscriptionServiceClient<InterceptedService<Channel, Bearer>>;
type Charges = ChargeServiceClient<InterceptedService<Channel, Bearer>>;

/// Microsoft 365 Business Basic as a price sheet keys it (no availability).
pub(crate) const SKU: &str = "CFQ7TTC0LH18:0001";

pub(crate) struct Shop {
    pub(crate) gw: TestGateway,
    pub(crate) f: Fixture,
    pub(crate) customer: String,
    pub(crate) item: String,
    pub(crate) subs: Subscriptions,
    charges: Charges,
}

/// A gateway buying through the emulator: a customer billed in USD linked to the fixture's
/// customer tenant (no markup), a Microsoft item sold P1Y billed monthly and P1M monthly.
pub(crate) async fn shop(backend: Backend) -> Option<Shop> {
    let gw = TestGateway::start(backend).await?;
    let f = Fixture::start().await;
    let control: Arc<dyn SeatOrders> = Arc::new(f.control());
    gw.ledger
        .set_seat_vendors(Arc::new(VendorAdapters::new(Arc::new(move |_| {
            Ok(control.clone())
        }))));
    let customer = tenant_customer(&gw).await.id;
    let cost = |term: v1::Term, amount: &str| v1::UnitCost {
        term: term.into(),
        billing_frequency: v1::BillingFrequency::Monthly.into(),
        currency: "USD".into(),
        effective_month: "2020-01".into(),
        unit_cost: amount.into(),
        list_price: String::new(),
        market: "US".into(),
    };
    let offer = |term: v1::Term| v1::Offer {
        term: term.into(),
        billing_frequency: v1::BillingFrequency::Monthly.into(),
    };
    let item =
        CatalogServiceClient::with_interceptor(gw.channel().await, Bearer::new(&gw.admin_key))
            .create_catalog_item(v1::CreateCatalogItemRequest {
                request_id: "m365-basic".into(),
                catalog_item: Some(v1::CatalogItem {
                    vendor: v1::Vendor::Microsoft.into(),
                    catalog_item_id: SKU.into(),
                    product: "Microsoft 365 Business Basic".into(),
                    unit: "licence".into(),
                    offers: vec![offer(v1::Term::P1y), offer(v1::Term::P1m)],
                    unit_costs: vec![cost(v1::Term::P1y, "100"), cost(v1::Term::P1m, "120")],
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .id;
    let subs =
        SubscriptionServiceClient::with_interceptor(gw.channel().await, Bearer::new(&gw.admin_key));
    let charges =
        ChargeServiceClient::with_interceptor(gw.channel().await, Bearer::new(&gw.admin_key));
    Some(Shop {
        gw,
        f,
        customer,
        item,
        subs,
        charges,
    })
}

impl Shop {
    pub(crate) fn buy(&self, request_id: &str, quantity: i64) -> v1::CreateSubscriptionRequest {
        v1::CreateSubscriptionRequest {
            request_id: request_id.into(),
            subscription: Some(v1::Subscription {
                customer_id: self.customer.clone(),
                catalog_item_id: self.item.clone(),
                quantity,
                term: v1::Term::P1y.into(),
                billing_frequency: v1::BillingFrequency::Monthly.into(),
                ..Default::default()
            }),
        }
    }

    pub(crate) async fn set_quantity(
        &mut self,
        request_id: &str,
        id: &str,
        quantity: i64,
    ) -> Result<v1::SubscriptionChange, tonic::Status> {
        self.subs
            .change_subscription_quantity(v1::ChangeSubscriptionQuantityRequest {
                request_id: request_id.into(),
                id: id.into(),
                quantity,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn cancel(&mut self, request_id: &str, id: &str) -> v1::SubscriptionChange {
        self.subs
            .cancel_subscription(v1::CancelSubscriptionRequest {
                request_id: request_id.into(),
                id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn subscriptions(&mut self) -> Vec<v1::Subscription> {
        self.subs
            .list_subscriptions(v1::ListSubscriptionsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .subscriptions
    }

    pub(crate) async fn charges(&mut self) -> Vec<v1::Charge> {
        self.charges
            .list_charges(v1::ListChargesRequest {
                customer_id: self.customer.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .charges
    }
}

async fn seats_are_bought_resized_and_cancelled_at_partner_center(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let bought = s
        .subs
        .create_subscription(s.buy("nce-1", 5))
        .await
        .unwrap()
        .into_inner();
    let seen = s.f.emulator.customers_seen();
    assert_eq!(seen.availability_reads, 1);
    assert_eq!(seen.carts.len(), 1);
    let line = &seen.carts[0]["lineItems"][0];
    assert_eq!(line["catalogItemId"], format!("{SKU}:{AVAILABILITY}"));
    assert_eq!(line["quantity"], 5);
    assert_eq!(line["termDuration"], "P1Y");
    assert_eq!(line["billingCycle"], "monthly");
    assert_eq!((seen.checkouts, seen.orders_placed), (1, 1));
    let vendor_id = bought.vendor_subscription_id.clone();
    assert_eq!(
        s.f.emulator.subscription(&vendor_id),
        (
            format!("{SKU}:{AVAILABILITY}"),
            5,
            "P1Y".into(),
            "monthly".into(),
            "active".into()
        )
    );
    // The retry replays the recorded answer without asking Partner Center again.
    let again = s
        .subs
        .create_subscription(s.buy("nce-1", 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, bought);
    let seen = s.f.emulator.customers_seen();
    assert_eq!((seen.carts.len(), seen.orders_placed), (1, 1));
    let fee = s.charges().await;
    assert_eq!(fee.len(), 1);
    assert_eq!(
        (
            fee[0].kind(),
            fee[0].quantity.as_str(),
            fee[0].unit.as_str()
        ),
        (v1::ChargeKind::SubscriptionFee, "5", "seat")
    );

    // More seats: the quantity PATCH under If-Match; another writer moved the etag once, so
    // the subscription is read again and the PATCH repeated.
    s.f.emulator.customers_script(|c| c.stale_etags = 1);
    let added = s.set_quantity("nce-2", &bought.id, 8).await.unwrap();
    assert_eq!(added.charge_kind(), v1::ChargeKind::Proration);
    let seen = s.f.emulator.customers_seen();
    assert_eq!(seen.stale_etag_answers, 1);
    let (patched, quantity, if_match) = seen.quantity_patches.last().unwrap().clone();
    assert_eq!((patched.as_str(), quantity), (vendor_id.as_str(), 8));
    assert!(
        if_match.starts_with(&format!("\"{vendor_id}-v")),
        "{if_match}"
    );
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 8);
    // Fewer seats inside the 168-hour window: refunded here, reduced there.
    let removed = s.set_quantity("nce-3", &bought.id, 6).await.unwrap();
    assert_eq!(removed.charge_kind(), v1::ChargeKind::Refund);
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 6);
    // Cancelled inside the window: deleted at Partner Center.
    let cancelled = s.cancel("nce-4", &bought.id).await;
    assert_eq!(
        cancelled.subscription.unwrap().status(),
        v1::SubscriptionStatus::SubscriptionCancelled
    );
    assert_eq!(s.f.emulator.subscription(&vendor_id).4, "deleted");
    let units: Vec<String> = s.charges().await.into_iter().map(|c| c.unit).collect();
    assert_eq!(units, ["seat"; 4]);
    s.gw.stop().await;
}

async fn a_vendor_refusal_is_surfaced_and_nothing_written(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    // A customer with no Microsoft tenant linked has nowhere to receive the licences.
    let plain =
        s.gw.customers(&s.gw.admin_key)
            .await
            .create_customer(v1::CreateCustomerRequest {
                billing_currency: "USD".into(),
                ..crate::customers::new_customer("plain", "PLAIN-1")
            })
            .await
            .unwrap()
            .into_inner();
    let mut buy = s.buy("nce-r0", 1);
    buy.subscription.as_mut().unwrap().customer_id = plain.id;
    let refused = s.subs.create_subscription(buy).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("no MICROSOFT_TENANT linked"),
        "{refused:?}"
    );
    assert!(s.f.emulator.customers_seen().carts.is_empty());

    s.f.emulator
        .customers_script(|c| c.unavailable_skus = vec![SKU.into()]);
    let refused = s
        .subs
        .create_subscription(s.buy("nce-r1", 3))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&SKU_UNAVAILABLE.to_string())
            && refused.message().contains("not available for purchase"),
        "{refused:?}"
    );
    assert!(s.subscriptions().await.is_empty());
    assert!(s.charges().await.is_empty());
    assert_eq!(s.f.emulator.customers_seen().orders_placed, 0);

    // A quantity over the vendor's limit: the change is refused and the seats stay as they were.
    s.f.emulator.customers_script(|c| {
        c.unavailable_skus.clear();
        c.max_quantity = Some(10);
    });
    let bought = s
        .subs
        .create_subscription(s.buy("nce-r2", 5))
        .await
        .unwrap()
        .into_inner();
    let refused = s.set_quantity("nce-r3", &bought.id, 20).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&QUANTITY_LIMIT.to_string())
            && refused.message().contains("exceeds the limit"),
        "{refused:?}"
    );
    assert_eq!(s.subscriptions().await[0].quantity, 5);
    assert_eq!(s.charges().await.len(), 1, "the purchase's fee only");
    assert_eq!(
        s.f.emulator.subscription(&bought.vendor_subscription_id).1,
        5
    );
    s.gw.stop().await;
}

async fn throttling_is_waited_out_and_a_repeated_order_buys_once(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    s.f.emulator.customers_script(|c| {
        c.throttle = 1;
        c.throttle_retry_after = Some(1);
    });
    let started = std::time::Instant::now();
    let bought = s
        .subs
        .create_subscription(s.buy("nce-t1", 2))
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let seen = s.f.emulator.customers_seen();
    assert_eq!((seen.throttled, seen.orders_placed), (1, 1));
    assert!(!bought.vendor_subscription_id.is_empty());

    // An order that reached Partner Center but was never recorded (a timeout, a crash) is sent
    // again with the same request ids: Partner Center answers with the first order.
    let control = s.f.control();
    let order = SeatOrder {
        customer_tenant: CUSTOMER.into(),
        item: CatalogItemId::parse("item", &format!("{SKU}:{AVAILABILITY}")).unwrap(),
        quantity: 3,
        offer: Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap(),
        request_key: "ten_1/CreateSubscription/lost-answer/fingerprint".into(),
    };
    let first = control.order(&order).await.unwrap();
    let second = control.order(&order).await.unwrap();
    assert_eq!(first, second);
    let seen = s.f.emulator.customers_seen();
    assert_eq!(
        seen.orders_placed, 2,
        "one for the RPC, one for both direct orders"
    );
    let ids = &seen.order_request_ids;
    assert_eq!(ids[ids.len() - 4..ids.len() - 2], ids[ids.len() - 2..]);
    s.gw.stop().await;
}

/// Outside the 168-hour window a reduction and a cancellation wait for the renewal, at Partner
/// Center too: the reduction as the subscription's next-term instructions, the end as
/// `autoRenewEnabled: false`; asking for the current quantity withdraws the reduction.
async fn changes_scheduled_for_the_renewal_are_sent_to_partner_center(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let new = NewSubscription {
        customer_id: s.customer.clone(),
        item_id: s.item.clone(),
        quantity: 10,
        offer: Offer::new(Term::P1Y, BillingFrequency::Monthly).unwrap(),
    };
    // Bought ten days ago: its seats have left the window.
    let bought =
        s.gw.ledger
            .create_subscription(
                &s.gw.tenant_id,
                &new,
                Utc::now() - Duration::days(10),
                &fresh_request(),
            )
            .await
            .unwrap()
            .fresh()
            .unwrap();
    let vendor_id = bought.vendor_subscription_id.clone().unwrap();
    let reduced = s.set_quantity("nce-l1", &bought.id, 7).await.unwrap();
    assert!(reduced.scheduled, "{reduced:?}");
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 10, "not now");
    let (renews, next) = s.f.emulator.renewal(&vendor_id);
    assert!(renews);
    assert_eq!(next["quantity"], 7);
    assert_eq!(next["product"]["productId"], "CFQ7TTC0LH18");
    assert_eq!(next["product"]["availabilityId"], AVAILABILITY);
    assert_eq!(next["product"]["termDuration"], "P1Y");
    // The current quantity withdraws the scheduled reduction.
    let kept = s.set_quantity("nce-l2", &bought.id, 10).await.unwrap();
    assert!(!kept.scheduled);
    assert_eq!(
        s.f.emulator.renewal(&vendor_id),
        (true, serde_json::Value::Null)
    );
    // Cancelled outside the window: ends at the term's end, so it does not renew there.
    let cancelled = s.cancel("nce-l3", &bought.id).await;
    assert!(cancelled.scheduled);
    assert!(!s.f.emulator.renewal(&vendor_id).0);
    assert_eq!(s.f.emulator.subscription(&vendor_id).4, "active");
    s.gw.stop().await;
}

async fn a_suspended_customer_cannot_buy_seats(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let worker = RunningWorker::start(&s.gw, test_settings("w"), Arc::new(s.f.control()));
    let mut client = services(&s.gw, &s.gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let action = client
        .suspend_customer(suspend(&s.customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(
        customer_status(&s.gw, &s.customer).await,
        v1::CustomerStatus::Suspended
    );
    let refused = s
        .subs
        .create_subscription(s.buy("nce-s1", 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("SUSPENDED"), "{refused:?}");
    assert!(s.f.emulator.customers_seen().carts.is_empty());
    assert!(s.subscriptions().await.is_empty());
    worker.stop().await;
    s.gw.stop().await;
}

crate::both_backends!(
    seats_are_bought_resized_and_cancelled_at_partner_center,
    a_vendor_refusal_is_surfaced_and_nothing_written,
    throttling_is_waited_out_and_a_repeated_order_buys_once,
    a_suspended_customer_cannot_buy_seats,
    changes_scheduled_for_the_renewal_are_sent_to_partner_center,
);
