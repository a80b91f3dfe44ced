//! Every mutating RPC answers a retry of its request id with the first call's response, byte
//! for byte, even when what it touched has changed since; the retry changes nothing and is
//! marked with the `mspgw-replayed` response header.
use msp_gateway::api::replies::REPLAYED_HEADER;
use msp_gateway::domain::charges::ChargeFilter;
use msp_gateway::proto::v1;
use prost::Message;
use tonic::{Response, Status};

use crate::customers::new_customer;
use crate::harness::{Backend, TestGateway, assert_violation};
use crate::usage::{hour, priced_tenant, push, ts, usage_line};

/// A response as it crossed the wire (prost's encoding is canonical, so these are the bytes
/// the gateway sent) and whether the gateway marked it a replay.
fn answer<T: Message>(response: Result<Response<T>, Status>) -> (Vec<u8>, bool) {
    let response = response.expect("call succeeds");
    let replayed = match response.metadata().get(REPLAYED_HEADER) {
        Some(value) => value.to_str().unwrap() == "true",
        None => false,
    };
    (response.into_inner().encode_to_vec(), replayed)
}

/// `first` was fresh; `retry` is the same bytes, marked as a replay.
fn assert_replayed(what: &str, first: &(Vec<u8>, bool), retry: (Vec<u8>, bool)) {
    assert!(!first.1, "{what}: the first call is not a replay");
    assert!(retry.1, "{what}: the retry is marked as a replay");
    assert_eq!(
        retry.0, first.0,
        "{what}: the retry answers the first bytes"
    );
}

fn customer_of(bytes: &[u8]) -> v1::Customer {
    v1::Customer::decode(bytes).unwrap()
}

async fn retries_answer_the_first_response_byte_for_byte(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = priced_tenant(&gw).await;

    // IngestUsage: a retry learns what the first call appended, even after later pushes.
    let lines = vec![
        usage_line("sim-linked", "vm.small", 0, "10.00"),
        usage_line("sim-linked", "vm.large", 0, "2.5"),
    ];
    let mut usage = gw.usage(&gw.admin_key).await;
    let request = |id: &str, lines: Vec<v1::UsageLine>| v1::IngestUsageRequest {
        request_id: id.into(),
        partner_account_id: priced.partner_account_id.clone(),
        lines,
    };
    let first = answer(
        usage
            .ingest_usage(tokio_stream::iter(vec![request("push-1", lines.clone())]))
            .await,
    );
    let summary = v1::IngestUsageResponse::decode(first.0.as_slice()).unwrap();
    assert_eq!((summary.lines_written, summary.events_appended), (2, 2));
    assert!(summary.last_sequence > 0);
    let later = push(
        &gw,
        "push-2",
        &priced.partner_account_id,
        vec![vec![usage_line("sim-linked", "vm.small", 0, "11.00")]],
    )
    .await
    .unwrap();
    assert_eq!(later.events_appended, 1);
    let retry = answer(
        usage
            .ingest_usage(tokio_stream::iter(vec![request("push-1", lines.clone())]))
            .await,
    );
    assert_replayed("IngestUsage", &first, retry);
    let charges = gw
        .ledger
        .list_charges(&gw.admin(), &ChargeFilter::default(), 0, 1000)
        .await
        .unwrap()
        .0;
    assert_eq!(charges.len(), 3, "the retry appended nothing");

    // CreateCustomer, then a change: a retry of the create answers the customer as created.
    let mut customers = gw.customers(&gw.admin_key).await;
    let created = answer(customers.create_customer(new_customer("c-1", "R-1")).await);
    let customer = customer_of(&created.0);
    let update = |id: &str, name: &str, etag: &str| v1::UpdateCustomerRequest {
        customer: Some(v1::Customer {
            id: customer.id.clone(),
            display_name: name.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
        request_id: id.into(),
    };
    let renamed = answer(
        customers
            .update_customer(update("u-1", "Renamed", &customer.etag))
            .await,
    );
    let renamed_etag = customer_of(&renamed.0).etag;
    let again = answer(
        customers
            .update_customer(update("u-2", "Renamed again", &renamed_etag))
            .await,
    );
    assert_replayed(
        "CreateCustomer",
        &created,
        answer(customers.create_customer(new_customer("c-1", "R-1")).await),
    );
    // UpdateCustomer: the first answer, not the current state, and the later name stays.
    assert_replayed(
        "UpdateCustomer",
        &renamed,
        answer(
            customers
                .update_customer(update("u-1", "Renamed", &customer.etag))
                .await,
        ),
    );
    let now = customers
        .get_customer(v1::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.encode_to_vec(), again.0, "the retries changed nothing");

    // LinkVendorAccount, an unlink, then a retry of the link: the first answer, still unlinked.
    let link = |id: &str| v1::LinkVendorAccountRequest {
        customer_id: customer.id.clone(),
        vendor_account: Some(v1::VendorAccount {
            vendor: v1::Vendor::Simulator.into(),
            kind: v1::VendorAccountKind::SimulatorAccount.into(),
            account_id: "sim-replayed".into(),
            ..Default::default()
        }),
        request_id: id.into(),
    };
    let unlink = |id: &str| v1::UnlinkVendorAccountRequest {
        customer_id: customer.id.clone(),
        vendor: v1::Vendor::Simulator.into(),
        account_id: "sim-replayed".into(),
        request_id: id.into(),
    };
    let linked = answer(customers.link_vendor_account(link("l-1")).await);
    let unlinked = answer(customers.unlink_vendor_account(unlink("ul-1")).await);
    assert_replayed(
        "LinkVendorAccount",
        &linked,
        answer(customers.link_vendor_account(link("l-1")).await),
    );
    assert_replayed(
        "UnlinkVendorAccount",
        &unlinked,
        answer(customers.unlink_vendor_account(unlink("ul-1")).await),
    );
    let now = customers
        .get_customer(v1::GetCustomerRequest {
            id: customer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        now.vendor_accounts
            .iter()
            .all(|a| a.account_id != "sim-replayed")
    );

    // Partner accounts: created, updated, updated again; retries answer the first answers.
    let mut accounts = gw.partner_accounts(&gw.admin_key).await;
    let create_account = v1::CreatePartnerAccountRequest {
        request_id: "pa-1".into(),
        partner_account: Some(v1::PartnerAccount {
            vendor: v1::Vendor::Simulator.into(),
            display_name: "Second simulator".into(),
            vendor_account_id: "sim-partner-2".into(),
            partner_discount_rate: "0.10".into(),
            enabled: false,
            ..Default::default()
        }),
    };
    let created_account = answer(
        accounts
            .create_partner_account(create_account.clone())
            .await,
    );
    let account = v1::PartnerAccount::decode(created_account.0.as_slice()).unwrap();
    let rename_account = |id: &str, name: &str, etag: &str| v1::UpdatePartnerAccountRequest {
        partner_account: Some(v1::PartnerAccount {
            id: account.id.clone(),
            display_name: name.into(),
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["display_name".into()],
        }),
        request_id: id.into(),
    };
    let updated_account = answer(
        accounts
            .update_partner_account(rename_account("pu-1", "Renamed", &account.etag))
            .await,
    );
    let etag = v1::PartnerAccount::decode(updated_account.0.as_slice())
        .unwrap()
        .etag;
    answer(
        accounts
            .update_partner_account(rename_account("pu-2", "Renamed again", &etag))
            .await,
    );
    assert_replayed(
        "CreatePartnerAccount",
        &created_account,
        answer(accounts.create_partner_account(create_account).await),
    );
    assert_replayed(
        "UpdatePartnerAccount",
        &updated_account,
        answer(
            accounts
                .update_partner_account(rename_account("pu-1", "Renamed", &account.etag))
                .await,
        ),
    );

    // Pricing: a rule, an FX rate and the policy.
    let mut pricing = gw.pricing(&gw.admin_key).await;
    let rule = v1::CreatePriceRuleRequest {
        request_id: "rule-2".into(),
        price_rule: Some(v1::PriceRule {
            kind: v1::PriceRuleKind::Markup.into(),
            value: "0.25".into(),
            service: "Storage".into(),
            effective_from: Some(ts(hour(-10))),
            ..Default::default()
        }),
    };
    let created_rule = answer(pricing.create_price_rule(rule.clone()).await);
    assert_replayed(
        "CreatePriceRule",
        &created_rule,
        answer(pricing.create_price_rule(rule).await),
    );
    let fx = |rate: &str| v1::SetFxRateRequest {
        fx_rate: Some(v1::FxRate {
            from_currency: "USD".into(),
            to_currency: "ZAR".into(),
            rate: rate.into(),
            effective_from: Some(ts(hour(-5))),
        }),
        request_id: "fx-1".into(),
    };
    let set = answer(pricing.set_fx_rate(fx("18.75")).await);
    assert_replayed(
        "SetFxRate",
        &set,
        answer(pricing.set_fx_rate(fx("18.75")).await),
    );
    assert_violation(
        pricing.set_fx_rate(fx("19")).await,
        tonic::Code::InvalidArgument,
        "request_id",
    );
    let policy = |id: &str, hold: bool| v1::UpdatePricingPolicyRequest {
        pricing_policy: Some(v1::PricingPolicy {
            hold_below_cost: hold,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["hold_below_cost".into()],
        }),
        request_id: id.into(),
    };
    let held = answer(pricing.update_pricing_policy(policy("pp-1", true)).await);
    answer(pricing.update_pricing_policy(policy("pp-2", false)).await);
    assert_replayed(
        "UpdatePricingPolicy",
        &held,
        answer(pricing.update_pricing_policy(policy("pp-1", true)).await),
    );
    let current = pricing
        .get_pricing_policy(v1::GetPricingPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!current.hold_below_cost, "the retry did not hold again");

    // Keys: a retry of CreateApiKey answers the first answer without its secret; a revoke.
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let mint = v1::CreateApiKeyRequest {
        request_id: "k-1".into(),
        name: "replayed".into(),
        scope: v1::ApiKeyScope::HelpDesk.into(),
        customer_id: String::new(),
    };
    let minted = answer(tenants.create_api_key(mint.clone()).await);
    let mut without_secret = v1::CreateApiKeyResponse::decode(minted.0.as_slice()).unwrap();
    assert!(!without_secret.secret.is_empty());
    without_secret.secret.clear();
    assert_replayed(
        "CreateApiKey",
        &(without_secret.encode_to_vec(), false),
        answer(tenants.create_api_key(mint).await),
    );
    let revoke = v1::RevokeApiKeyRequest {
        id: without_secret.api_key.unwrap().id,
        request_id: "rk-1".into(),
    };
    let revoked = answer(tenants.revoke_api_key(revoke.clone()).await);
    assert_replayed(
        "RevokeApiKey",
        &revoked,
        answer(tenants.revoke_api_key(revoke).await),
    );

    // Branding: a retry answers the first colours, even after another change.
    let brand = |id: &str, primary: &str| v1::UpdateTenantBrandingRequest {
        request_id: id.into(),
        branding: Some(v1::TenantBranding {
            primary_color: primary.into(),
            accent_color: "#F2A900".into(),
        }),
    };
    let branded = answer(
        tenants
            .update_tenant_branding(brand("b-1", "#0E6E6E"))
            .await,
    );
    let tenant = v1::Tenant::decode(branded.0.as_slice()).unwrap();
    assert_eq!(tenant.branding.unwrap().primary_color, "#0e6e6e");
    answer(tenants.update_tenant_branding(brand("b-2", "#123")).await);
    assert_replayed(
        "UpdateTenantBranding",
        &branded,
        answer(
            tenants
                .update_tenant_branding(brand("b-1", "#0E6E6E"))
                .await,
        ),
    );
    gw.stop().await;
}

/// Request ids are kept for the retention and then forgotten: until then a retry is answered
/// from the record (even one sent with a different body is refused as a reuse); afterwards the
/// id is free and runs as a new call.
async fn request_ids_are_forgotten_after_the_retention(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut customers = gw.customers(&gw.admin_key).await;
    let create = |external_ref: &str| new_customer("kept-then-forgotten", external_ref);
    let first = answer(customers.create_customer(create("RET-1")).await);
    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    assert_eq!(
        gw.store.forget_request_ids_before(week_ago).await.unwrap(),
        0
    );
    let retry = answer(customers.create_customer(create("RET-1")).await);
    assert_replayed("within the retention", &first, retry);
    assert_violation(
        customers.create_customer(create("RET-2")).await,
        tonic::Code::InvalidArgument,
        "request_id",
    );

    // Past the retention (everything recorded until a moment from now).
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert!(gw.store.forget_request_ids_before(later).await.unwrap() >= 1);
    let again = answer(customers.create_customer(create("RET-2")).await);
    assert!(!again.1, "a forgotten request id runs as a new call");
    assert_ne!(customer_of(&again.0).id, customer_of(&first.0).id);
}

crate::both_backends!(
    retries_answer_the_first_response_byte_for_byte,
    request_ids_are_forgotten_after_the_retention
);
