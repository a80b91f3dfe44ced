//! Term changes and auto-renewal of Microsoft seats against the Partner Center TLS emulator, on
//! both backends: each goes to Partner Center first (the subscription PATCH with
//! `scheduledNextTermInstructions`, validated by the emulator as Partner Center documents it,
//! or `autoRenewEnabled`) and is recorded only once it was accepted; a refusal writes nothing.
//! Orders through a disabled partner account are refused before Partner Center is called.
use serde_json::json;
use tonic::Code;

use msp_gateway::proto::v1;

use crate::harness::Backend;
use crate::nce_orders::{SKU, Shop, shop};
use crate::partner_center_emulator::{AVAILABILITY, QUANTITY_LIMIT};

impl Shop {
    /// Buys `quantity` seats billed monthly for a P1M term.
    async fn buy_monthly(&mut self, request_id: &str, quantity: i64) -> v1::Subscription {
        let mut request = self.buy(request_id, quantity);
        if let Some(s) = request.subscription.as_mut() {
            s.term = v1::Term::P1m.into();
        }
        self.subs
            .create_subscription(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn change_term(
        &mut self,
        request_id: &str,
        id: &str,
        term: v1::Term,
    ) -> Result<v1::SubscriptionChange, tonic::Status> {
        self.subs
            .change_subscription_term(v1::ChangeSubscriptionTermRequest {
                request_id: request_id.into(),
                id: id.into(),
                term: term.into(),
                billing_frequency: v1::BillingFrequency::Monthly.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn auto_renew(
        &mut self,
        request_id: &str,
        id: &str,
        on: bool,
    ) -> Result<v1::SubscriptionChange, tonic::Status> {
        self.subs
            .set_subscription_auto_renew(v1::SetSubscriptionAutoRenewRequest {
                request_id: request_id.into(),
                id: id.into(),
                auto_renew: on,
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn get(&mut self, id: &str) -> v1::Subscription {
        self.subs
            .get_subscription(v1::GetSubscriptionRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }
}

/// The next-term instructions Partner Center documents, for the emulator's subscription.
fn instructions(quantity: u64, term: &str) -> serde_json::Value {
    let (product, sku) = SKU.split_once(':').unwrap();
    json!({
        "product": {
            "productId": product,
            "skuId": sku,
            "availabilityId": AVAILABILITY,
            "termDuration": term,
            "billingCycle": "monthly",
        },
        "quantity": quantity,
    })
}

async fn term_changes_and_auto_renewal_go_to_partner_center_first(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let bought = s.buy_monthly("nce-term-0", 5).await;
    let vendor_id = bought.vendor_subscription_id.clone();

    // P1M → P1Y at the renewal: Partner Center's next-term instructions carry the product, the
    // seats and the new term and billing cycle.
    let change = s
        .change_term("nce-term-1", &bought.id, v1::Term::P1y)
        .await
        .unwrap();
    assert!(change.scheduled);
    assert_eq!(change.effective_time, bought.term_end_time);
    assert_eq!(
        change.subscription.as_ref().unwrap().scheduled_term(),
        v1::Term::P1y
    );
    assert_eq!(
        s.f.emulator.renewal(&vendor_id),
        (true, instructions(5, "P1Y"))
    );
    assert_eq!(s.f.emulator.subscription(&vendor_id).2, "P1M", "not now");
    let seen = s.f.emulator.customers_seen();
    assert_eq!(seen.next_term_patches.len(), 1);
    // A retry replays the answer without a second PATCH.
    let again = s
        .change_term("nce-term-1", &bought.id, v1::Term::P1y)
        .await
        .unwrap();
    assert_eq!(again, change);
    assert_eq!(s.f.emulator.customers_seen().patches, seen.patches);

    // Seats added now: Partner Center deletes the scheduled change with a change made now, so
    // it is sent again, renewing the new quantity.
    s.set_quantity("nce-term-2", &bought.id, 7).await.unwrap();
    assert_eq!(
        s.f.emulator.renewal(&vendor_id),
        (true, instructions(7, "P1Y"))
    );
    assert_eq!(s.f.emulator.subscription(&vendor_id).1, 7);
    assert_eq!(s.f.emulator.customers_seen().next_term_patches.len(), 2);

    // Auto-renewal off, then on again: `autoRenewEnabled` at Partner Center. Not renewing, it
    // takes no term change (Partner Center schedules changes only with auto-renewal on).
    let off = s.auto_renew("nce-term-3", &bought.id, false).await.unwrap();
    assert!(off.scheduled && off.subscription.unwrap().cancel_at_term_end);
    assert!(!s.f.emulator.renewal(&vendor_id).0);
    let patches = s.f.emulator.customers_seen().patches;
    let refused = s
        .change_term("nce-term-3b", &bought.id, v1::Term::P1y)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("auto-renewal"), "{refused:?}");
    assert_eq!(s.f.emulator.customers_seen().patches, patches);
    let on = s.auto_renew("nce-term-4", &bought.id, true).await.unwrap();
    assert!(on.subscription.unwrap().auto_renew);
    assert!(s.f.emulator.renewal(&vendor_id).0);
    assert_eq!(
        s.f.emulator.customers_seen().auto_renew_patches,
        [(vendor_id.clone(), false), (vendor_id.clone(), true)]
    );

    // The current term withdraws the change there too.
    let withdrawn = s
        .change_term("nce-term-5", &bought.id, v1::Term::P1m)
        .await
        .unwrap();
    assert_eq!(withdrawn.subscription.unwrap().scheduled_term, 0);
    assert_eq!(
        s.f.emulator.renewal(&vendor_id),
        (true, serde_json::Value::Null)
    );

    // Partner Center refuses (the renewal's seats over its limit): nothing is recorded.
    s.f.emulator.customers_script(|c| c.max_quantity = Some(3));
    let refused = s
        .change_term("nce-term-6", &bought.id, v1::Term::P1y)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&QUANTITY_LIMIT.to_string()),
        "{refused:?}"
    );
    assert_eq!(s.get(&bought.id).await.scheduled_term, 0);
    assert_eq!(
        s.f.emulator.renewal(&vendor_id),
        (true, serde_json::Value::Null)
    );
    // A shorter term is refused by the gateway and never reaches Partner Center.
    let annual = s
        .subs
        .create_subscription(s.buy("nce-term-7", 2))
        .await
        .unwrap()
        .into_inner();
    let patches = s.f.emulator.customers_seen().patches;
    let shorter = s.change_term("nce-term-8", &annual.id, v1::Term::P1m).await;
    crate::harness::assert_violation(shorter, Code::InvalidArgument, "term");
    assert_eq!(s.f.emulator.customers_seen().patches, patches);
    s.gw.stop().await;
}

async fn orders_through_a_disabled_partner_account_are_refused(backend: Backend) {
    let Some(mut s) = shop(backend).await else {
        return;
    };
    let bought = s.buy_monthly("nce-off-0", 4).await;
    let mut accounts = s.gw.partner_accounts(&s.gw.admin_key).await;
    let mut account = accounts
        .list_partner_accounts(v1::ListPartnerAccountsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .partner_accounts
        .into_iter()
        .find(|a| a.vendor() == v1::Vendor::Microsoft)
        .expect("the fixture's Microsoft partner account");
    account.enabled = false;
    accounts
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(account.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let before = s.f.emulator.customers_seen();
    let charges = s.charges().await.len();

    let refusals = [
        s.subs
            .create_subscription(s.buy("nce-off-1", 1))
            .await
            .map(|_| ()),
        s.set_quantity("nce-off-2", &bought.id, 6).await.map(|_| ()),
        s.set_quantity("nce-off-3", &bought.id, 2).await.map(|_| ()),
        s.subs
            .cancel_subscription(v1::CancelSubscriptionRequest {
                request_id: "nce-off-4".into(),
                id: bought.id.clone(),
            })
            .await
            .map(|_| ()),
        s.change_term("nce-off-5", &bought.id, v1::Term::P1y)
            .await
            .map(|_| ()),
        s.auto_renew("nce-off-6", &bought.id, false)
            .await
            .map(|_| ()),
    ];
    for refused in refusals {
        let refused = refused.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains(&account.id) && refused.message().contains("disabled"),
            "{refused:?}"
        );
    }
    // Partner Center was not called, and nothing was written.
    let after = s.f.emulator.customers_seen();
    assert_eq!(
        (after.carts.len(), after.patches, after.reads),
        (before.carts.len(), before.patches, before.reads)
    );
    assert_eq!(s.subscriptions().await.len(), 1);
    let shown = s.get(&bought.id).await;
    assert_eq!(
        (shown.quantity, shown.scheduled_term, shown.auto_renew),
        (4, 0, true)
    );
    assert_eq!(s.charges().await.len(), charges);
    s.gw.stop().await;
}

crate::both_backends!(
    term_changes_and_auto_renewal_go_to_partner_center_first,
    orders_through_a_disabled_partner_account_are_refused,
);
