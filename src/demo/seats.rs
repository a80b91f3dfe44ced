//! The demo's catalogue and seats: two of the MSP's own items, Microsoft licences priced from
//! the sample Partner Center price sheet (catalogued, not orderable until Partner Center
//! ordering is built), and a customer with a monthly and an annual subscription, whose fees are
//! charges on the same stream as its usage.
use chrono::{Duration, Utc};
use rust_decimal::Decimal;

use crate::domain::catalog::{
    BillingFrequency, CatalogItem, NewCatalogItem, Offer, Term, UnitCost, parse_effective_month,
};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, IdempotencyKey, Idempotent};
use crate::domain::money::Currency;
use crate::domain::price_sheet;
use crate::domain::subscription_record::{NewSubscription, SubscriptionRecord};
use crate::domain::vendor::Vendor;
use crate::ledger::Ledger;

/// The sample price sheet the tests import too: a real-shaped extract of a US market sheet.
const SAMPLE_PRICE_SHEET: &[u8] =
    include_bytes!("../../tests/integration/fixtures/nce-price-sheet-us.csv");

/// How long before the demo's first start the annual subscription was bought: past the 168-hour
/// window, so reducing it shows the change scheduled for the renewal.
const ANNUAL_BOUGHT_DAYS_AGO: i64 = 10;

/// The demo's subscriptions, for the banner.
pub struct DemoSeats {
    pub monthly: SubscriptionRecord,
    pub annual: SubscriptionRecord,
}

fn offer(term: Term, billing: BillingFrequency) -> Result<Offer> {
    Offer::new(term, billing).map_err(Error::Internal)
}

fn cost(offer: Offer, currency: Currency, amount: i64) -> Result<UnitCost> {
    Ok(UnitCost {
        offer,
        currency,
        effective_month: parse_effective_month("effective_month", "2020-01")
            .map_err(|v| Error::InvalidArgument(vec![v]))?,
        unit_cost: Decimal::from(amount),
        list_price: None,
        market: String::new(),
    })
}

/// Creates `new` once; a later start finds it by the id the first one recorded.
async fn item(ledger: &Ledger, tenant_id: &str, new: &NewCatalogItem) -> Result<CatalogItem> {
    let store = ledger.store();
    let key = IdempotencyKey::new(
        format!("demo-item-{}", new.catalog_item_id),
        "CreateCatalogItem",
        new,
    );
    let recorded = Idempotent::new(key, |item: &CatalogItem| item.id.clone().into_bytes());
    match store.create_catalog_item(tenant_id, new, &recorded).await? {
        Answer::Fresh(item) => Ok(item),
        Answer::Replayed(id) => {
            store
                .catalog_item(tenant_id, &String::from_utf8_lossy(&id))
                .await
        }
    }
}

async fn subscription(
    ledger: &Ledger,
    tenant_id: &str,
    name: &str,
    new: &NewSubscription,
    bought: chrono::DateTime<Utc>,
) -> Result<SubscriptionRecord> {
    let key = IdempotencyKey::new(format!("demo-{name}"), "CreateSubscription", new);
    let recorded = Idempotent::new(key, |r: &SubscriptionRecord| r.id.clone().into_bytes());
    let id = match ledger
        .create_subscription(tenant_id, new, bought, &recorded)
        .await?
    {
        Answer::Fresh(record) => record.id,
        Answer::Replayed(id) => String::from_utf8_lossy(&id).into_owned(),
    };
    // Periods that began since (the boundary run would append them within a minute anyway).
    ledger
        .catch_up_subscription(tenant_id, &id, Utc::now())
        .await?;
    ledger.store().subscription(tenant_id, &id).await
}

/// The catalogue, and `customer_id`'s two subscriptions (idempotent across starts).
pub async fn prepare(
    ledger: &Ledger,
    tenant_id: &str,
    customer_id: &str,
    zar: Currency,
) -> Result<DemoSeats> {
    let p1m_monthly = offer(Term::P1M, BillingFrequency::Monthly)?;
    let p1y_monthly = offer(Term::P1Y, BillingFrequency::Monthly)?;
    let p1y_annual = offer(Term::P1Y, BillingFrequency::Annual)?;
    let backup = item(
        ledger,
        tenant_id,
        &NewCatalogItem {
            vendor: Vendor::Msp,
            catalog_item_id: "BACKUP-50GB".into(),
            product: "Managed backup".into(),
            unit: "50 GB".into(),
            offers: vec![p1m_monthly, p1y_annual],
            unit_costs: vec![cost(p1m_monthly, zar, 100)?, cost(p1y_annual, zar, 1_000)?],
        },
    )
    .await?;
    let support = item(
        ledger,
        tenant_id,
        &NewCatalogItem {
            vendor: Vendor::Msp,
            catalog_item_id: "M365-SUPPORT".into(),
            product: "Microsoft 365 support desk".into(),
            unit: "user".into(),
            offers: vec![p1m_monthly, p1y_monthly, p1y_annual],
            unit_costs: vec![
                cost(p1m_monthly, zar, 45)?,
                cost(p1y_monthly, zar, 40)?,
                cost(p1y_annual, zar, 480)?,
            ],
        },
    )
    .await?;
    let sheet = price_sheet::parse("US", SAMPLE_PRICE_SHEET)?;
    let key = IdempotencyKey::from_bytes(
        "demo-price-sheet".into(),
        "ImportPriceSheet",
        SAMPLE_PRICE_SHEET,
    );
    ledger
        .store()
        .import_price_sheet(tenant_id, &sheet, &Idempotent::unanswered(key))
        .await?;
    let now = Utc::now();
    let monthly = subscription(
        ledger,
        tenant_id,
        "monthly-backup",
        &NewSubscription {
            customer_id: customer_id.into(),
            item_id: backup.id,
            quantity: 10,
            offer: p1m_monthly,
        },
        now,
    )
    .await?;
    let annual = subscription(
        ledger,
        tenant_id,
        "annual-support",
        &NewSubscription {
            customer_id: customer_id.into(),
            item_id: support.id,
            quantity: 25,
            offer: p1y_annual,
        },
        now - Duration::days(ANNUAL_BOUGHT_DAYS_AGO),
    )
    .await?;
    Ok(DemoSeats { monthly, annual })
}
