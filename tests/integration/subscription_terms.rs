//! ChangeSubscriptionTerm and SetSubscriptionAutoRenew on the MSP's own items (no vendor),
//! through the generated client on both backends: a term change is scheduled for the renewal
//! and the renewal's fee is at the new offer's price; a subscription not to renew ends at its
//! term's end, and turning renewal back on withdraws a scheduled cancellation; retries replay
//! the first answer; bad input is refused naming the field, with nothing written. (Microsoft
//! seats, whose changes go to Partner Center first: nce_terms.rs.)
use chrono::{DateTime, Duration, TimeZone, Utc};
use msp_gateway::domain::catalog::{BillingFrequency, Offer, Term};
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::proto::v1;
use tonic::Code;

use crate::harness::{Backend, TestGateway, assert_violation, fresh_request};
use crate::subscriptions::{Subscriptions, charges_of, clients, purchase, setup};

fn instant(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    Utc.timestamp_opt(t.seconds, t.nanos as u32).unwrap()
}

fn term_change(
    request_id: &str,
    id: &str,
    term: v1::Term,
    billing: v1::BillingFrequency,
) -> v1::ChangeSubscriptionTermRequest {
    v1::ChangeSubscriptionTermRequest {
        request_id: request_id.into(),
        id: id.into(),
        term: term.into(),
        billing_frequency: billing.into(),
    }
}

fn auto_renew(request_id: &str, id: &str, on: bool) -> v1::SetSubscriptionAutoRenewRequest {
    v1::SetSubscriptionAutoRenewRequest {
        request_id: request_id.into(),
        id: id.into(),
        auto_renew: on,
    }
}

/// The MSP item and customer of `setup`, the admin's clients, and `quantity` seats bought P1M
/// billed monthly.
struct Bought {
    item: String,
    customer: String,
    subs: Subscriptions,
    charges: crate::subscriptions::Charges,
    subscription: v1::Subscription,
}

async fn bought(gw: &TestGateway, quantity: i64) -> Bought {
    let (item, customer) = setup(gw).await;
    let (_, mut subs, charges) = clients(gw, &gw.admin_key).await;
    let subscription = subs
        .create_subscription(purchase(&customer, &item, quantity))
        .await
        .unwrap()
        .into_inner();
    Bought {
        item,
        customer,
        subs,
        charges,
        subscription,
    }
}

async fn get(subs: &mut Subscriptions, id: &str) -> v1::Subscription {
    subs.get_subscription(v1::GetSubscriptionRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// P1M billed monthly (120.00 a seat with the markup) changed to P1Y billed annually (1,200.00):
/// scheduled for the term's end, charged nothing now, and the renewal's fee is the new offer's.
async fn a_term_change_is_scheduled_and_renews_at_the_new_price(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let Bought {
        customer,
        mut subs,
        mut charges,
        subscription: bought,
        ..
    } = bought(&gw, 3).await;
    let request = term_change(
        "term-1",
        &bought.id,
        v1::Term::P1y,
        v1::BillingFrequency::Annual,
    );
    let answer = subs
        .change_subscription_term(request.clone())
        .await
        .unwrap();
    assert!(answer.metadata().get("mspgw-replayed").is_none());
    let change = answer.into_inner();
    assert!(change.scheduled, "{change:?}");
    assert_eq!(change.effective_time, bought.term_end_time);
    assert!(
        change.explanation.contains("P1Y billed annual"),
        "{}",
        change.explanation
    );
    assert_eq!(change.charge_sequence, 0);
    let after = change.subscription.clone().unwrap();
    assert_eq!(
        (after.term(), after.billing_frequency()),
        (v1::Term::P1m, v1::BillingFrequency::Monthly),
        "not before the renewal"
    );
    assert_eq!(
        (after.scheduled_term(), after.scheduled_billing_frequency()),
        (v1::Term::P1y, v1::BillingFrequency::Annual)
    );
    // The current offer withdraws the change; a retry of the first request then answers the
    // first answer byte for byte and changes nothing.
    let withdrawn = subs
        .change_subscription_term(term_change(
            "term-2",
            &bought.id,
            v1::Term::P1m,
            v1::BillingFrequency::Monthly,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(withdrawn.subscription.unwrap().scheduled_term, 0);
    let again = subs.change_subscription_term(request).await.unwrap();
    assert_eq!(again.metadata().get("mspgw-replayed").unwrap(), "true");
    assert_eq!(again.into_inner(), change);
    assert_eq!(get(&mut subs, &bought.id).await.scheduled_term, 0);
    subs.change_subscription_term(term_change(
        "term-3",
        &bought.id,
        v1::Term::P1y,
        v1::BillingFrequency::Annual,
    ))
    .await
    .unwrap();
    assert_eq!(charges_of(&mut charges, &customer).await.len(), 1);

    // The renewal (the boundary run at the term's end): a P1Y term billed annually, one fee of
    // 3 × 1,200.00.
    let term_end = instant(&bought.term_end_time);
    let appended = gw
        .ledger
        .catch_up_subscription(&gw.tenant_id, &bought.id, term_end)
        .await
        .unwrap();
    assert_eq!(appended, 1);
    let fees = charges_of(&mut charges, &customer).await;
    assert_eq!(fees.len(), 2, "{fees:?}");
    assert_eq!(
        (
            fees[1].kind(),
            fees[1].amount.as_str(),
            fees[1].quantity.as_str()
        ),
        (v1::ChargeKind::SubscriptionFee, "3600.00", "3")
    );
    let renewed = get(&mut subs, &bought.id).await;
    assert_eq!(
        (renewed.term(), renewed.billing_frequency()),
        (v1::Term::P1y, v1::BillingFrequency::Annual)
    );
    assert_eq!(renewed.scheduled_term, 0);
    assert_eq!(renewed.unit_price, "1200.00");
    assert_eq!(instant(&renewed.term_start_time), term_end);
    gw.stop().await;
}

/// Auto-renewal off: the subscription ends (EXPIRED) at its term's end with no further fee. A
/// cancellation scheduled outside the window is withdrawn by turning renewal back on, and that
/// subscription renews.
async fn a_subscription_not_to_renew_ends_at_its_term_end(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let Bought {
        item,
        customer,
        mut subs,
        mut charges,
        subscription: bought,
    } = bought(&gw, 2).await;
    assert!(bought.auto_renew);
    let request = auto_renew("no-renew", &bought.id, false);
    let change = subs
        .set_subscription_auto_renew(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(change.scheduled);
    assert_eq!(change.effective_time, bought.term_end_time);
    let after = change.subscription.clone().unwrap();
    assert!(!after.auto_renew && after.cancel_at_term_end, "{after:?}");
    let again = subs.set_subscription_auto_renew(request).await.unwrap();
    assert_eq!(again.metadata().get("mspgw-replayed").unwrap(), "true");
    assert_eq!(again.into_inner(), change);
    // What does not renew takes no term change.
    let refused = subs
        .change_subscription_term(term_change(
            "term-no-renew",
            &bought.id,
            v1::Term::P1y,
            v1::BillingFrequency::Annual,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    let term_end = instant(&bought.term_end_time);
    let appended = gw
        .ledger
        .catch_up_subscription(&gw.tenant_id, &bought.id, term_end)
        .await
        .unwrap();
    assert_eq!(appended, 0, "no renewal, no fee");
    let ended = get(&mut subs, &bought.id).await;
    assert_eq!(ended.status(), v1::SubscriptionStatus::SubscriptionExpired);
    assert_eq!(ended.end_time, bought.term_end_time);
    assert_eq!(charges_of(&mut charges, &customer).await.len(), 1);

    // Bought 10 days ago: a cancellation waits for the term's end; renewal turned back on
    // withdraws it.
    let new = NewSubscription {
        customer_id: customer.clone(),
        item_id: item.clone(),
        quantity: 1,
        offer: Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap(),
    };
    let late = gw
        .ledger
        .create_subscription(
            &gw.tenant_id,
            &new,
            Utc::now() - Duration::days(10),
            &fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap();
    let cancel = subs
        .cancel_subscription(v1::CancelSubscriptionRequest {
            request_id: "late-cancel".into(),
            id: late.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancel.scheduled && cancel.subscription.unwrap().cancel_at_term_end);
    let renews = subs
        .set_subscription_auto_renew(auto_renew("renew-again", &late.id, true))
        .await
        .unwrap()
        .into_inner();
    let shown = renews.subscription.unwrap();
    assert!(shown.auto_renew && !shown.cancel_at_term_end, "{shown:?}");
    let term_end = instant(&shown.term_end_time);
    let appended = gw
        .ledger
        .catch_up_subscription(&gw.tenant_id, &late.id, term_end)
        .await
        .unwrap();
    assert_eq!(appended, 1, "renewed");
    assert_eq!(
        get(&mut subs, &late.id).await.status(),
        v1::SubscriptionStatus::SubscriptionActive
    );
    gw.stop().await;
}

async fn bad_term_changes_are_refused_and_nothing_written(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let Bought {
        item,
        customer,
        mut subs,
        mut charges,
        subscription: monthly,
    } = bought(&gw, 1).await;
    let mut annual = purchase(&customer, &item, 2);
    annual.request_id = "buy-annual".into();
    if let Some(s) = annual.subscription.as_mut() {
        s.term = v1::Term::P1y.into();
        s.billing_frequency = v1::BillingFrequency::Annual.into();
    }
    let annual = subs.create_subscription(annual).await.unwrap().into_inner();
    use v1::BillingFrequency::{Annual, Monthly};
    use v1::Term::{P1m, P1y, P3y};
    let cases = [
        // Shorter than P1Y.
        (term_change("bad-1", &annual.id, P1m, Monthly), "term"),
        // P1Y is sold billed annually only.
        (
            term_change("bad-2", &monthly.id, P1y, Monthly),
            "billing_frequency",
        ),
        // The item sells no P3Y.
        (term_change("bad-3", &monthly.id, P3y, Annual), "term"),
        // No such combination at all.
        (
            term_change("bad-4", &monthly.id, P1m, Annual),
            "billing_frequency",
        ),
        (
            term_change("bad-5", &monthly.id, v1::Term::Unspecified, Monthly),
            "term",
        ),
        (term_change("", &monthly.id, P1y, Annual), "request_id"),
        (term_change("bad-6", "", P1y, Annual), "id"),
    ];
    for (request, field) in cases {
        assert_violation(
            subs.change_subscription_term(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_violation(
        subs.set_subscription_auto_renew(auto_renew("", &monthly.id, false))
            .await,
        Code::InvalidArgument,
        "request_id",
    );
    // An unknown subscription, and this tenant's subscription asked for by another tenant.
    let unknown = subs
        .change_subscription_term(term_change("bad-7", "sub_unknown", P1y, Annual))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let other = gw.other_tenant().await;
    let (_, mut other_subs, _) = clients(&gw, &other).await;
    let foreign = other_subs
        .change_subscription_term(term_change("bad-8", &monthly.id, P1y, Annual))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    let foreign = other_subs
        .set_subscription_auto_renew(auto_renew("bad-9", &monthly.id, false))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    // A help-desk key reads subscriptions but changes none.
    let help_desk = crate::helpdesk::key(&gw, v1::ApiKeyScope::HelpDesk, "").await;
    let (_, mut help_subs, _) = clients(&gw, &help_desk).await;
    let denied = help_subs
        .change_subscription_term(term_change("bad-10", &monthly.id, P1y, Annual))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let denied = help_subs
        .set_subscription_auto_renew(auto_renew("bad-11", &monthly.id, false))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Nothing changed, nothing charged beyond the two purchases.
    for (bought, shown) in [
        (&monthly, get(&mut subs, &monthly.id).await),
        (&annual, get(&mut subs, &annual.id).await),
    ] {
        assert_eq!((shown.scheduled_term, shown.auto_renew), (0, true));
        assert_eq!(shown.term, bought.term);
    }
    assert_eq!(charges_of(&mut charges, &customer).await.len(), 2);
    gw.stop().await;
}

crate::both_backends!(
    a_term_change_is_scheduled_and_renews_at_the_new_price,
    a_subscription_not_to_renew_ends_at_its_term_end,
    bad_term_changes_are_refused_and_nothing_written,
);
