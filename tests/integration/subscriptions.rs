//! CatalogService and SubscriptionService through the generated clients on both backends: an
//! MSP item priced by the tenant's price rules, subscriptions whose fee, proration and refunds
//! are charges in the same ledger (ListCharges, the open period), idempotent retries, changes
//! outside the 168-hour window scheduled for renewal, missed period boundaries appended once,
//! and bad input refused with nothing written. (The rules at their edges are proven on the
//! domain: `domain::subscription_tests` and `subscription_properties`.)
use std::str::FromStr;

use chrono::{Duration, Utc};
use msp_gateway::domain::catalog::{BillingFrequency, Offer, Term};
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::catalog_service_client::CatalogServiceClient;
use msp_gateway::proto::v1::charge_service_client::ChargeServiceClient;
use msp_gateway::proto::v1::subscription_service_client::SubscriptionServiceClient;
use rust_decimal::Decimal;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::customers::new_customer;
use crate::harness::{Backend, Bearer, TestGateway, assert_violation, fresh_request};

type Catalog = CatalogServiceClient<InterceptedService<Channel, Bearer>>;
pub type Subscriptions = SubscriptionServiceClient<InterceptedService<Channel, Bearer>>;
pub type Charges = ChargeServiceClient<InterceptedService<Channel, Bearer>>;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("{s:?} is not a decimal"))
}

pub async fn clients(gw: &TestGateway, key: &str) -> (Catalog, Subscriptions, Charges) {
    (
        CatalogServiceClient::with_interceptor(gw.channel().await, Bearer::new(key)),
        SubscriptionServiceClient::with_interceptor(gw.channel().await, Bearer::new(key)),
        ChargeServiceClient::with_interceptor(gw.channel().await, Bearer::new(key)),
    )
}

fn offer(term: v1::Term, billing: v1::BillingFrequency) -> v1::Offer {
    v1::Offer {
        term: term.into(),
        billing_frequency: billing.into(),
    }
}

fn cost(term: v1::Term, billing: v1::BillingFrequency, amount: &str) -> v1::UnitCost {
    v1::UnitCost {
        term: term.into(),
        billing_frequency: billing.into(),
        currency: "ZAR".into(),
        effective_month: "2020-01".into(),
        unit_cost: amount.into(),
        list_price: String::new(),
        market: String::new(),
    }
}

/// An MSP item sold P1M monthly (100 a seat) and P1Y annual (1,000), a 20 % markup on MSP
/// items, and a customer billed in ZAR: (item id, customer id).
pub async fn setup(gw: &TestGateway) -> (String, String) {
    let (mut catalog, _, _) = clients(gw, &gw.admin_key).await;
    let item = catalog
        .create_catalog_item(v1::CreateCatalogItemRequest {
            request_id: "item-1".into(),
            catalog_item: Some(v1::CatalogItem {
                vendor: v1::Vendor::Msp.into(),
                catalog_item_id: "BACKUP-50GB".into(),
                product: "Managed backup".into(),
                unit: "seat".into(),
                offers: vec![
                    offer(v1::Term::P1m, v1::BillingFrequency::Monthly),
                    offer(v1::Term::P1y, v1::BillingFrequency::Annual),
                ],
                unit_costs: vec![
                    cost(v1::Term::P1m, v1::BillingFrequency::Monthly, "100"),
                    cost(v1::Term::P1y, v1::BillingFrequency::Annual, "1000"),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut pricing = gw.pricing(&gw.admin_key).await;
    pricing
        .create_price_rule(v1::CreatePriceRuleRequest {
            request_id: "msp-markup".into(),
            price_rule: Some(v1::PriceRule {
                vendor: v1::Vendor::Msp.into(),
                kind: v1::PriceRuleKind::Markup.into(),
                value: "0.20".into(),
                effective_from: Some(prost_types::Timestamp::default()),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut customers = gw.customers(&gw.admin_key).await;
    let customer = customers
        .create_customer(new_customer("sub-c", "SUB-0001"))
        .await
        .unwrap()
        .into_inner();
    (item.id, customer.id)
}

pub fn purchase(customer: &str, item: &str, quantity: i64) -> v1::CreateSubscriptionRequest {
    v1::CreateSubscriptionRequest {
        request_id: format!("buy-{customer}-{quantity}"),
        subscription: Some(v1::Subscription {
            customer_id: customer.into(),
            catalog_item_id: item.into(),
            quantity,
            term: v1::Term::P1m.into(),
            billing_frequency: v1::BillingFrequency::Monthly.into(),
            ..Default::default()
        }),
    }
}

pub async fn charges_of(charges: &mut Charges, customer: &str) -> Vec<v1::Charge> {
    charges
        .list_charges(v1::ListChargesRequest {
            customer_id: customer.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .charges
}

async fn seats_are_charged_in_the_ledger_like_usage(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (mut catalog, mut subs, mut charges) = clients(&gw, &gw.admin_key).await;
    let listed = catalog
        .list_catalog_items(v1::ListCatalogItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.catalog_items.len(), 1);
    assert_eq!(listed.catalog_items[0].unit_costs.len(), 2);

    // Buying 5 seats charges the first month in advance at cost + 20 %.
    let request = purchase(&customer, &item, 5);
    let bought = subs.create_subscription(request.clone()).await.unwrap();
    assert!(bought.metadata().get("mspgw-replayed").is_none());
    let bought = bought.into_inner();
    assert_eq!(bought.unit_price, "120.00");
    assert_eq!(bought.quantity, 5);
    assert_eq!(bought.removable_seats, 5);
    assert_eq!(
        bought.status,
        i32::from(v1::SubscriptionStatus::SubscriptionActive)
    );
    // A retry answers the first answer, and charges nothing more.
    let again = subs.create_subscription(request).await.unwrap();
    assert_eq!(again.metadata().get("mspgw-replayed").unwrap(), "true");
    assert_eq!(again.into_inner(), bought);
    let fee = charges_of(&mut charges, &customer).await;
    assert_eq!(fee.len(), 1, "{fee:?}");
    assert_eq!(fee[0].kind, i32::from(v1::ChargeKind::SubscriptionFee));
    assert_eq!(
        (fee[0].amount.as_str(), fee[0].quantity.as_str()),
        ("600.00", "5")
    );
    assert_eq!(fee[0].vendor, i32::from(v1::Vendor::Msp));
    assert_eq!(
        (fee[0].service.as_str(), fee[0].meter.as_str()),
        ("Managed backup", "BACKUP-50GB")
    );

    // Three more seats: a proration of at most three whole months.
    let added = subs
        .change_subscription_quantity(v1::ChangeSubscriptionQuantityRequest {
            request_id: "add-3".into(),
            id: bought.id.clone(),
            quantity: 8,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!added.scheduled);
    assert_eq!(added.charge_kind, i32::from(v1::ChargeKind::Proration));
    let proration = dec(&added.charge_amount);
    assert!(
        proration > Decimal::ZERO && proration <= dec("360"),
        "{proration}"
    );
    // Inside the window seats come off at once, with a refund.
    let removed = subs
        .change_subscription_quantity(v1::ChangeSubscriptionQuantityRequest {
            request_id: "remove-2".into(),
            id: bought.id.clone(),
            quantity: 6,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!removed.scheduled);
    assert_eq!(removed.charge_kind, i32::from(v1::ChargeKind::Refund));
    assert!(dec(&removed.charge_amount) < Decimal::ZERO);
    assert_eq!(removed.subscription.as_ref().unwrap().quantity, 6);
    let cancelled = subs
        .cancel_subscription(v1::CancelSubscriptionRequest {
            request_id: "cancel".into(),
            id: bought.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let ended = cancelled.subscription.unwrap();
    assert_eq!(
        ended.status,
        i32::from(v1::SubscriptionStatus::SubscriptionCancelled)
    );
    assert!(ended.end_time.is_some());

    // Every charge is in the ledger, numbered like usage, and the change answers name theirs.
    let all = charges_of(&mut charges, &customer).await;
    let kinds: Vec<i32> = all.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            v1::ChargeKind::SubscriptionFee,
            v1::ChargeKind::Proration,
            v1::ChargeKind::Refund,
            v1::ChargeKind::Refund
        ]
        .map(i32::from)
    );
    assert_eq!(all[1].sequence, added.charge_sequence);
    assert_eq!(all[2].sequence, removed.charge_sequence);
    assert!(all.windows(2).all(|w| w[1].sequence == w[0].sequence + 1));
    // One period: its charges share one line key, and never go below zero.
    assert!(all.iter().all(|c| c.line_key == all[0].line_key));
    let total: Decimal = all.iter().map(|c| dec(&c.amount)).sum();
    assert!(total >= Decimal::ZERO && total < dec("1"), "{total}");
    // The open period shows the seats beside any usage, with no special case.
    let open = charges
        .list_open_line_items(v1::ListOpenLineItemsRequest {
            customer_id: customer.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.line_items.len(), 1);
    assert_eq!(dec(&open.line_items[0].amount), total);
    assert_eq!(open.line_items[0].vendor, i32::from(v1::Vendor::Msp));
    gw.stop().await;
}

async fn missed_boundaries_are_appended_once_and_late_reductions_scheduled(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (_, mut subs, mut charges) = clients(&gw, &gw.admin_key).await;
    // Bought 40 days ago (a gateway down since): one boundary passed unseen.
    let bought_at = Utc::now() - Duration::days(40);
    let new = NewSubscription {
        customer_id: customer.clone(),
        item_id: item.clone(),
        quantity: 4,
        offer: Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap(),
    };
    let record = gw
        .ledger
        .create_subscription(&gw.tenant_id, &new, bought_at, &fresh_request())
        .await
        .unwrap()
        .fresh()
        .unwrap();
    let appended = gw
        .ledger
        .catch_up_subscription(&gw.tenant_id, &record.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(appended, 1, "the one missed renewal");
    let again = gw
        .ledger
        .catch_up_subscription(&gw.tenant_id, &record.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(again, 0, "appended once");
    let fees = charges_of(&mut charges, &customer).await;
    assert_eq!(fees.len(), 2);
    assert!(fees.iter().all(|f| f.amount == "480.00"));
    assert_ne!(fees[0].line_key, fees[1].line_key, "a line per period");

    // The renewal was ~10 days ago: outside the window, a reduction waits for the next one.
    let shown = subs
        .get_subscription(v1::GetSubscriptionRequest {
            id: record.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.removable_seats, 0);
    let change = subs
        .change_subscription_quantity(v1::ChangeSubscriptionQuantityRequest {
            request_id: "late".into(),
            id: record.id.clone(),
            quantity: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(change.scheduled);
    assert_eq!(change.effective_time, shown.term_end_time);
    assert!(
        change.explanation.contains("168 hours"),
        "{}",
        change.explanation
    );
    let after = change.subscription.unwrap();
    assert_eq!((after.quantity, after.scheduled_quantity), (4, 1));
    assert_eq!(change.charge_sequence, 0);
    let cancel = subs
        .cancel_subscription(v1::CancelSubscriptionRequest {
            request_id: "late-cancel".into(),
            id: record.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancel.scheduled);
    assert!(cancel.subscription.unwrap().cancel_at_term_end);
    assert_eq!(
        charges_of(&mut charges, &customer).await.len(),
        2,
        "nothing charged"
    );
    gw.stop().await;
}

async fn bad_input_is_refused_and_nothing_written(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (mut catalog, mut subs, mut charges) = clients(&gw, &gw.admin_key).await;
    let with = |f: &dyn Fn(&mut v1::Subscription)| {
        let mut request = purchase(&customer, &item, 1);
        f(request.subscription.as_mut().unwrap());
        request
    };
    let cases: Vec<(v1::CreateSubscriptionRequest, &str)> = vec![
        (
            with(&|s| s.catalog_item_id = "cat_unknown".into()),
            "subscription.catalog_item_id",
        ),
        (with(&|s| s.quantity = 0), "subscription.quantity"),
        (
            with(&|s| s.quantity = 1_000_000_000),
            "subscription.quantity",
        ),
        // P1Y billed monthly is a valid combination the item does not offer.
        (
            with(&|s| s.term = v1::Term::P1y.into()),
            "subscription.billing_frequency",
        ),
        // P1M billed annually is no combination at all.
        (
            with(&|s| s.billing_frequency = v1::BillingFrequency::Annual.into()),
            "subscription.billing_frequency",
        ),
        (with(&|s| s.term = 0), "subscription.term"),
    ];
    for (request, field) in cases {
        assert_violation(
            subs.create_subscription(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    // Another tenant's key cannot buy for this tenant's customer.
    let other = gw.other_tenant().await;
    let (_, mut other_subs, _) = clients(&gw, &other).await;
    assert_violation(
        other_subs
            .create_subscription(purchase(&customer, &item, 1))
            .await,
        Code::InvalidArgument,
        "subscription.customer_id",
    );
    let none = subs
        .list_subscriptions(v1::ListSubscriptionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.subscriptions.is_empty());
    assert!(charges_of(&mut charges, &customer).await.is_empty());

    // The catalogue's own checks.
    let bad_item = |f: &dyn Fn(&mut v1::CatalogItem)| {
        let mut item = v1::CatalogItem {
            vendor: v1::Vendor::Microsoft.into(),
            catalog_item_id: "CFQ7TTC0LH18:0001:CFQ7TTC0K5DL".into(),
            product: "Microsoft 365 Business Basic".into(),
            offers: vec![offer(v1::Term::P1y, v1::BillingFrequency::Monthly)],
            ..Default::default()
        };
        f(&mut item);
        v1::CreateCatalogItemRequest {
            request_id: "bad-item".into(),
            catalog_item: Some(item),
        }
    };
    let cases: Vec<(v1::CreateCatalogItemRequest, &str)> = vec![
        (
            bad_item(&|i| i.catalog_item_id = "CFQ7TTC0LH18:0001:".into()),
            "catalog_item.catalog_item_id",
        ),
        (
            bad_item(&|i| i.vendor = v1::Vendor::Aws.into()),
            "catalog_item.vendor",
        ),
        (bad_item(&|i| i.offers.clear()), "catalog_item.offers"),
        (
            bad_item(&|i| {
                i.unit_costs = vec![cost(v1::Term::P3y, v1::BillingFrequency::Annual, "1")]
            }),
            "catalog_item.unit_costs[0].term",
        ),
        (
            bad_item(&|i| {
                i.unit_costs = vec![cost(v1::Term::P1y, v1::BillingFrequency::Monthly, "-1")]
            }),
            "catalog_item.unit_costs[0].unit_cost",
        ),
    ];
    for (request, field) in cases {
        assert_violation(
            catalog.create_catalog_item(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    // Microsoft seats pass every gateway rule before Partner Center is asked: with no price rule
    // for Microsoft seats the purchase is refused and nothing is billed (orders through Partner
    // Center: nce_orders.rs).
    let mut microsoft = bad_item(&|i| {
        i.unit_costs = vec![cost(v1::Term::P1y, v1::BillingFrequency::Monthly, "6.00")]
    });
    microsoft.request_id = "microsoft-item".into();
    let microsoft = catalog
        .create_catalog_item(microsoft)
        .await
        .expect("a Microsoft item is catalogued")
        .into_inner();
    let mut buy = purchase(&customer, &microsoft.id, 1);
    buy.request_id = "buy-microsoft".into();
    if let Some(s) = buy.subscription.as_mut() {
        s.term = v1::Term::P1y.into();
    }
    let refused = subs.create_subscription(buy).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("no price rule"), "{refused:?}");
    assert!(charges_of(&mut charges, &customer).await.is_empty());

    // (Price sheets have their own tests: price_sheets.rs.)
    gw.stop().await;
}

/// The period-boundary run: subscriptions bought 40 and 70 days ago (one and two missed
/// renewals) on a gateway that was down, caught up by two replicas at once: each missed fee is
/// appended once, and a second run appends nothing.
async fn the_boundary_run_appends_missed_fees_once_across_replicas(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let (item, customer) = setup(&gw).await;
    let (_, _, mut charges) = clients(&gw, &gw.admin_key).await;
    for (days, seats) in [(40, 2), (70, 3)] {
        let new = NewSubscription {
            customer_id: customer.clone(),
            item_id: item.clone(),
            quantity: seats,
            offer: Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap(),
        };
        gw.ledger
            .create_subscription(
                &gw.tenant_id,
                &new,
                Utc::now() - Duration::days(days),
                &fresh_request(),
            )
            .await
            .unwrap();
    }
    let replica = gw.replica().await;
    let now = Utc::now();
    // A batch of one, so each run reads the due ones several times while the other writes.
    let (a, b) = tokio::join!(
        gw.ledger.catch_up_due_subscriptions(now, 1),
        replica.ledger.catch_up_due_subscriptions(now, 1),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 3, "1 + 2 missed renewals, once");
    assert_eq!(
        gw.ledger.catch_up_due_subscriptions(now, 1).await.unwrap(),
        0
    );
    let all = charges_of(&mut charges, &customer).await;
    let fees: Vec<&str> = all.iter().map(|c| c.amount.as_str()).collect();
    assert_eq!(fees.len(), 5, "{fees:?}");
    let total: Decimal = all.iter().map(|c| dec(&c.amount)).sum();
    assert_eq!(total, dec("240") * dec("2") + dec("360") * dec("3"));
    assert!(all.windows(2).all(|w| w[1].sequence == w[0].sequence + 1));
    // Seat charges count seats, on the stream and on the invoice.
    assert!(all.iter().all(|c| c.unit == "seat"), "{all:?}");
    let mut invoices = crate::invoicing::invoices(&gw, &gw.admin_key).await;
    let invoice = crate::invoicing::close(&mut invoices, &customer, None).await;
    assert!(!invoice.lines.is_empty(), "{invoice:#?}");
    assert!(
        invoice.lines.iter().all(|l| l.unit == "seat"),
        "{invoice:#?}"
    );
    replica.stop().await;
    gw.stop().await;
}

crate::both_backends!(
    the_boundary_run_appends_missed_fees_once_across_replicas,
    seats_are_charged_in_the_ledger_like_usage,
    missed_boundaries_are_appended_once_and_late_reductions_scheduled,
    bad_input_is_refused_and_nothing_written,
);
