//! The books the chaos run keeps, made through an API-only gateway (no poller yet) before any
//! fault: two simulator
//! partner accounts (one whose usage only pushes bring, disabled so it is never polled, and one
//! polled every few seconds), pushed customers each linked to a simulator account of their own, one polled
//! customer, a 20 % markup and a USD→ZAR rate of 18.5 from long before any usage, and invoicing
//! with no grace period (so every period before this month may close) and its own prefix.
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::customer_service_client::CustomerServiceClient;
use msp_gateway::proto::v1::invoice_service_client::InvoiceServiceClient;
use msp_gateway::proto::v1::partner_account_service_client::PartnerAccountServiceClient;
use msp_gateway::proto::v1::pricing_service_client::PricingServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::customers::new_customer;
use crate::gateway_process::CALL_TIMEOUT;
use crate::harness::Bearer;
use crate::usage::link_simulator_account;

/// The prefix of every invoice number of the run.
pub const PREFIX: &str = "CHAOS";

/// The polled account's interval: short, so polls (and kills in the middle of them) happen
/// during the run.
const POLL_EVERY_SECS: i64 = 2;

pub struct Books {
    /// The simulator partner account usage is pushed through (disabled: never polled).
    pub pushed_account_id: String,
    /// The polled simulator partner account.
    pub polled_account_id: String,
    /// Customers of pushed usage; customer `i` uses simulator account [`account_of`]`(i)`.
    pub customers: Vec<String>,
    /// The customer whose usage the poller brings.
    pub polled_customer: String,
}

/// Customer `i`'s simulator account.
pub fn account_of(i: usize) -> String {
    format!("sim-chaos-{i}")
}

fn partner_accounts(
    channel: Channel,
    key: &str,
) -> PartnerAccountServiceClient<InterceptedService<Channel, Bearer>> {
    PartnerAccountServiceClient::with_interceptor(channel, Bearer::new(key))
}

async fn partner_account(channel: Channel, key: &str, name: &str) -> String {
    partner_accounts(channel, key)
        .create_partner_account(v1::CreatePartnerAccountRequest {
            request_id: format!("partner-{name}"),
            partner_account: Some(v1::PartnerAccount {
                vendor: v1::Vendor::Simulator.into(),
                display_name: format!("Simulator ({name})"),
                vendor_account_id: format!("sim-partner-{name}"),
                partner_discount_rate: "0.10".into(),
                poll_interval: Some(prost_types::Duration {
                    seconds: POLL_EVERY_SECS,
                    nanos: 0,
                }),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .expect("simulator partner account")
        .into_inner()
        .id
}

/// Waits until the polled account's first poll committed (its usage then is in the ledger
/// before the first fault, whose restart leaves the poll lease to lapse for a minute).
pub async fn polled(channel: Channel, key: &str, books: &Books) {
    let started = std::time::Instant::now();
    loop {
        let account = partner_accounts(channel.clone(), key)
            .get_partner_account(v1::GetPartnerAccountRequest {
                id: books.polled_account_id.clone(),
            })
            .await
            .expect("partner account")
            .into_inner();
        let status = account.poll_status.clone().unwrap_or_default();
        if status.last_success_time.is_some() {
            return;
        }
        assert!(
            started.elapsed() < CALL_TIMEOUT,
            "the polled account was never polled: {account:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Disables the account: never polled again (links stay, pushes are still taken).
async fn disable(channel: Channel, key: &str, id: &str) {
    partner_accounts(channel, key)
        .update_partner_account(v1::UpdatePartnerAccountRequest {
            partner_account: Some(v1::PartnerAccount {
                id: id.into(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".into()],
            }),
            request_id: format!("disable-{id}"),
        })
        .await
        .expect("disable the partner account");
}

/// A customer without credit limit (so credit policy never acts on its own), linked to
/// simulator account `account` of `partner_account_id`.
async fn customer(
    channel: Channel,
    key: &str,
    name: &str,
    account: &str,
    partner_account_id: &str,
) -> String {
    let mut request = new_customer(name, &name.to_uppercase());
    request.credit_limit = "0".into();
    let id = CustomerServiceClient::with_interceptor(channel.clone(), Bearer::new(key))
        .create_customer(request)
        .await
        .expect("customer")
        .into_inner()
        .id;
    link_simulator_account(channel, key, &id, account, partner_account_id).await;
    id
}

pub async fn books(channel: Channel, key: &str, customers: usize) -> Books {
    // Pushed usage only: disabled once its customers are linked (links need it enabled).
    let pushed_account_id = partner_account(channel.clone(), key, "pushed").await;
    let polled_account_id = partner_account(channel.clone(), key, "polled").await;
    let mut ids = Vec::new();
    for i in 0..customers {
        let name = format!("chaos-{i}");
        ids.push(
            customer(
                channel.clone(),
                key,
                &name,
                &account_of(i),
                &pushed_account_id,
            )
            .await,
        );
    }
    disable(channel.clone(), key, &pushed_account_id).await;
    let polled_customer = customer(
        channel.clone(),
        key,
        "chaos-polled",
        "sim-chaos-polled",
        &polled_account_id,
    )
    .await;
    let long_ago = Some(prost_types::Timestamp {
        seconds: 1_577_836_800, // 2020-01-01
        nanos: 0,
    });
    let mut pricing = PricingServiceClient::with_interceptor(channel.clone(), Bearer::new(key));
    pricing
        .create_price_rule(v1::CreatePriceRuleRequest {
            request_id: "markup".into(),
            price_rule: Some(v1::PriceRule {
                kind: v1::PriceRuleKind::Markup.into(),
                value: "0.20".into(),
                effective_from: long_ago,
                ..Default::default()
            }),
        })
        .await
        .expect("markup");
    pricing
        .set_fx_rate(v1::SetFxRateRequest {
            fx_rate: Some(v1::FxRate {
                from_currency: "USD".into(),
                to_currency: "ZAR".into(),
                rate: "18.5".into(),
                effective_from: long_ago,
            }),
            request_id: "usd-zar".into(),
        })
        .await
        .expect("USD->ZAR");
    InvoiceServiceClient::with_interceptor(channel, Bearer::new(key))
        .update_invoice_settings(v1::UpdateInvoiceSettingsRequest {
            request_id: "no-grace".into(),
            settings: Some(v1::InvoiceSettings {
                number_prefix: PREFIX.into(),
                rounding: v1::RoundingRule::HalfUp.into(),
                grace_days: 0,
            }),
        })
        .await
        .expect("invoice settings");
    Books {
        pushed_account_id,
        polled_account_id,
        customers: ids,
        polled_customer,
    }
}
