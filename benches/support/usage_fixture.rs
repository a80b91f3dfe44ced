//! The ingest benchmarks' fixture: simulated usage lines, and a database with one priced tenant
//! (an MSP) whose 100 customers own the simulator accounts the lines belong to.
#![allow(dead_code)]
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use msp_gateway::domain::access::{Principal, Scope};
use msp_gateway::domain::customer::{BillingCycle, NewCustomer, NewVendorAccountLink};
use msp_gateway::domain::idempotency::{IdempotencyKey, Idempotent};
use msp_gateway::domain::money::Currency;
use msp_gateway::domain::partner_account::{PartnerAccount, PartnerAccountSpec};
use msp_gateway::domain::pricing::{FxRate, NewPriceRule, PriceKind, RuleScope};
use msp_gateway::domain::tenant::NewTenant;
use msp_gateway::domain::usage::UsageLine;
use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::ledger::Ledger;
use msp_gateway::store::Store;
use msp_gateway::store::migrate::{self, Direction};
use msp_gateway::vendors::simulator::Simulator;
use rust_decimal::Decimal;

/// The simulator's account ids `sim-00000`, `sim-00001`, … (`accounts` of them).
pub fn account_ids(accounts: usize) -> Vec<String> {
    (0..accounts).map(|i| format!("sim-{i:05}")).collect()
}

/// Where generated usage starts.
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The simulator's usage of `ids` for windows in [from, to), as the vendor reports it two
/// days after `to`.
pub fn lines_between(ids: &[String], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<UsageLine> {
    Simulator::new(7, ids.to_vec())
        .at(to + Duration::days(2))
        .lines(from, to)
}

/// `accounts` simulator accounts over enough hours to make at least `target` lines.
pub fn generate(target: usize, accounts: usize) -> (Vec<String>, Vec<UsageLine>) {
    let ids = account_ids(accounts);
    let start = start();
    let mut hours = (target / (accounts * 4)).max(1) as i64;
    loop {
        let end = start + Duration::hours(hours);
        let mut lines = lines_between(&ids, start, end);
        if lines.len() >= target {
            lines.truncate(target);
            return (ids, lines);
        }
        hours += hours / 10 + 1;
    }
}

/// One pushing source: a simulator partner account of the bench tenant (an MSP).
pub struct Source {
    pub tenant_id: String,
    pub account: msp_gateway::domain::partner_account::PartnerAccount,
}

/// A prepared database: its ledger, the pushing sources, the tenant's admin key and the
/// customers owning the accounts.
pub struct Prepared {
    pub ledger: Arc<Ledger>,
    pub sources: Vec<Source>,
    pub key: String,
    pub customer_ids: Vec<String>,
}

impl Prepared {
    pub fn into_parts(self) -> (Arc<Ledger>, Vec<Source>) {
        (self.ledger, self.sources)
    }
}

/// The tenant's simulator partner account number `i` ("bench-{i}"), written through the store.
pub async fn simulator_partner_account(
    store: &Store,
    tenant_id: &str,
    i: usize,
    partner_discount_rate: Decimal,
) -> PartnerAccount {
    let spec = PartnerAccountSpec {
        vendor: Vendor::Simulator,
        display_name: format!("Bench simulator {i}"),
        vendor_account_id: format!("bench-{i}"),
        partner_discount_rate,
        credentials_ref: String::new(),
        poll_interval_secs: 3600,
        // No pollers run in the benchmarks; enabled so customers can be linked through it.
        enabled: true,
        endpoint_url: String::new(),
        aws: None,
        microsoft: None,
    };
    let key = IdempotencyKey::new(format!("pa-{i}"), "CreatePartnerAccount", &spec);
    store
        .create_partner_account(tenant_id, &spec, &Idempotent::unanswered(key))
        .await
        .unwrap()
        .fresh()
        .unwrap()
        .0
}

/// A migrated store with one priced tenant pushing through `sources` partner accounts: a 15 %
/// markup, a USD->ZAR rate, and 100 customers owning the simulator `accounts`.
pub async fn prepare(url: &str, accounts: &[String], sources: usize) -> Prepared {
    migrate::run(url, Direction::Up).await.expect("migrations");
    let store = Arc::new(Store::connect(url, &Default::default()).expect("store"));
    let ledger = Arc::new(Ledger::new(store.clone()).expect("ledger"));
    let (tenant, key) = store
        .create_tenant(NewTenant::parse("Bench ISP", "ZAR", "Africa/Johannesburg").unwrap())
        .await
        .expect("tenant");
    let admin = Principal {
        tenant_id: tenant.id.clone(),
        key_id: "bench".into(),
        scope: Scope::Admin,
        customer_id: None,
    };
    let mut partner_accounts = Vec::new();
    for i in 0..sources {
        partner_accounts.push(
            simulator_partner_account(&store, &admin.tenant_id, i, Decimal::new(12, 2)).await,
        );
    }
    let zar = Currency::parse("c", "ZAR").unwrap();
    let effective_from = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let rule = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: Decimal::new(15, 2),
        currency: None,
        effective_from,
        effective_to: None,
    };
    ledger
        .create_price_rule(
            &admin.tenant_id,
            &rule,
            &Idempotent::unanswered(IdempotencyKey::new("rule".into(), "CreatePriceRule", &rule)),
        )
        .await
        .unwrap();
    ledger
        .set_fx_rate(
            &admin.tenant_id,
            &FxRate {
                from: Currency::parse("c", "USD").unwrap(),
                to: zar,
                rate: Decimal::new(1825, 2),
                effective_from,
            },
            None,
        )
        .await
        .unwrap();
    // 100 customers, each with accounts/100 linked simulator accounts.
    let mut customer_ids = Vec::new();
    for c in 0..100 {
        let new = NewCustomer {
            external_ref: format!("BENCH-{c}"),
            display_name: format!("Bench customer {c}"),
            billing_currency: zar,
            billing_cycle: BillingCycle::Monthly,
            billing_anchor: Default::default(),
            time_zone: None,
            credit_limit: Decimal::ZERO,
            enrollments: vec![],
        };
        let key = IdempotencyKey::new(format!("c-{c}"), "CreateCustomer", &new);
        customer_ids.push(
            store
                .create_customer(
                    &admin.tenant_id,
                    &tenant.time_zone,
                    &new,
                    None,
                    &Idempotent::unanswered(key),
                )
                .await
                .unwrap()
                .fresh()
                .unwrap()
                .id,
        );
    }
    for (i, id) in accounts.iter().enumerate() {
        let link = NewVendorAccountLink::parse(
            "v",
            Vendor::Simulator,
            VendorAccountKind::SimulatorAccount,
            id,
            &partner_accounts[0].id,
        )
        .unwrap();
        ledger
            .link_vendor_account(
                &admin.tenant_id,
                &customer_ids[i % customer_ids.len()],
                &link,
                None,
            )
            .await
            .unwrap();
    }
    let sources = partner_accounts
        .into_iter()
        .map(|account| Source {
            tenant_id: tenant.id.clone(),
            account,
        })
        .collect();
    Prepared {
        ledger,
        sources,
        key: key.token().to_string(),
        customer_ids,
    }
}
