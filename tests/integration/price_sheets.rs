//! ImportPriceSheet through the generated client on both backends, with a small real-shaped
//! Partner Center licence-based price sheet (fixtures/nce-price-sheet-us.csv): items and costs
//! listed, a retry answered byte for byte, a later month's sheet adding its prices beside the
//! earlier month's, bad rows refused by line and column with nothing written, another market in
//! the same currency refused, and a help-desk key refused.
use msp_gateway::domain::catalog::{BillingFrequency, Offer, Term};
use msp_gateway::domain::subscription_record::NewSubscription;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::catalog_service_client::CatalogServiceClient;
use prost::Message;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::{Backend, Bearer, TestGateway, assert_violation, field_violations};

type Catalog = CatalogServiceClient<InterceptedService<Channel, Bearer>>;

const SHEET: &str = include_str!("fixtures/nce-price-sheet-us.csv");

async fn catalog(gw: &TestGateway, key: &str) -> Catalog {
    CatalogServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

fn import(request_id: &str, market: &str, csv: &str) -> v1::ImportPriceSheetRequest {
    v1::ImportPriceSheetRequest {
        request_id: request_id.into(),
        market: market.into(),
        csv: csv.as_bytes().to_vec(),
    }
}

async fn items(catalog: &mut Catalog) -> Vec<v1::CatalogItem> {
    catalog
        .list_catalog_items(v1::ListCatalogItemsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .catalog_items
}

fn item<'a>(items: &'a [v1::CatalogItem], code: &str) -> &'a v1::CatalogItem {
    items
        .iter()
        .find(|i| i.catalog_item_id == code)
        .unwrap_or_else(|| panic!("{code} not catalogued: {items:?}"))
}

/// The (effective month, unit cost, list price, market) of one offer of an item.
fn costs_of(
    item: &v1::CatalogItem,
    term: v1::Term,
    billing: v1::BillingFrequency,
) -> Vec<(String, String, String, String)> {
    item.unit_costs
        .iter()
        .filter(|c| c.term == i32::from(term) && c.billing_frequency == i32::from(billing))
        .map(|c| {
            assert_eq!(c.currency, "USD");
            (
                c.effective_month.clone(),
                c.unit_cost.clone(),
                c.list_price.clone(),
                c.market.clone(),
            )
        })
        .collect()
}

fn cost(month: &str, unit: &str, list: &str) -> (String, String, String, String) {
    (month.into(), unit.into(), list.into(), "US".into())
}

async fn a_sheet_is_imported_once_and_a_later_month_adds_its_prices(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut catalog = catalog(&gw, &gw.admin_key).await;
    let request = import("sheet-2026-12", "US", SHEET);
    let first = catalog.import_price_sheet(request.clone()).await.unwrap();
    assert!(first.metadata().get("mspgw-replayed").is_none());
    let first = first.into_inner();
    assert_eq!(
        (
            first.items_created,
            first.items_updated,
            first.unit_costs_written
        ),
        (4, 0, 14)
    );
    assert_eq!((first.rows_read, first.rows_skipped), (17, 3));
    let skipped: Vec<(i32, i32)> = first
        .skipped
        .iter()
        .map(|s| (s.first_line, s.rows))
        .collect();
    assert_eq!(skipped, [(16, 1), (17, 2)], "{:?}", first.skipped);
    assert!(first.skipped[0].reason.contains("Education"));
    assert!(first.skipped[1].reason.contains("tiers"));

    let listed = items(&mut catalog).await;
    assert_eq!(listed.len(), 4);
    let basic = item(&listed, "CFQ7TTC0LH18:0001");
    assert_eq!(basic.vendor, i32::from(v1::Vendor::Microsoft));
    assert_eq!(
        (basic.product.as_str(), basic.unit.as_str()),
        ("Microsoft 365 Business Basic", "1 License")
    );
    assert_eq!(basic.offers.len(), 3);
    assert_eq!(
        costs_of(basic, v1::Term::P1y, v1::BillingFrequency::Annual),
        [cost("2026-12", "64.8", "72")]
    );
    let exchange = item(&listed, "CFQ7TTC0LH16:0001");
    assert_eq!(
        costs_of(exchange, v1::Term::P3y, v1::BillingFrequency::Triennial),
        [cost("2026-12", "129.6", "144")]
    );

    // The retry answers the first answer, byte for byte, and writes nothing.
    let again = catalog.import_price_sheet(request).await.unwrap();
    assert_eq!(again.metadata().get("mspgw-replayed").unwrap(), "true");
    assert_eq!(again.into_inner().encode_to_vec(), first.encode_to_vec());
    assert_eq!(items(&mut catalog).await, listed);
    // The same id with another sheet is refused.
    assert_violation(
        catalog
            .import_price_sheet(import(
                "sheet-2026-12",
                "US",
                &SHEET.replace("64.80", "60.00"),
            ))
            .await,
        Code::InvalidArgument,
        "request_id",
    );

    // January's sheet: Business Basic annual goes up; every cost is January's, December's stay.
    let january = SHEET
        .replace("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
        .replace("2026-12-31T23:59:59Z", "2027-01-31T23:59:59Z")
        .replace("64.80", "66.00");
    let second = catalog
        .import_price_sheet(import("sheet-2027-01", "US", &january))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            second.items_created,
            second.items_updated,
            second.unit_costs_written
        ),
        (0, 4, 14)
    );
    let listed = items(&mut catalog).await;
    let basic = item(&listed, "CFQ7TTC0LH18:0001");
    assert_eq!(
        costs_of(basic, v1::Term::P1y, v1::BillingFrequency::Annual),
        [cost("2026-12", "64.8", "72"), cost("2027-01", "66", "72")]
    );
    // A corrected January sheet rewrites only the cost that changed.
    let corrected = january.replace("66.00", "65.50");
    let third = catalog
        .import_price_sheet(import("sheet-2027-01-fix", "US", &corrected))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((third.items_updated, third.unit_costs_written), (4, 1));

    // Priced, but not orderable until Partner Center ordering is built.
    let customer = gw
        .customers(&gw.admin_key)
        .await
        .create_customer(crate::customers::new_customer("ps-c", "PS-0001"))
        .await
        .unwrap()
        .into_inner();
    let refused = gw
        .ledger
        .create_subscription(
            &gw.tenant_id,
            &NewSubscription {
                customer_id: customer.id,
                item_id: basic.id.clone(),
                quantity: 1,
                offer: Offer::new(Term::P1Y, BillingFrequency::Annual).unwrap(),
            },
            chrono::Utc::now(),
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            msp_gateway::domain::Error::FailedPrecondition { .. }
        ),
        "{refused:?}"
    );
    gw.stop().await;
}

async fn bad_rows_are_named_and_nothing_is_written(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let mut catalog = catalog(&gw, &gw.admin_key).await;
    let mut lines: Vec<String> = SHEET.split("\r\n").map(str::to_string).collect();
    // Line 3: a price with a thousands separator; line 5: a monthly term billed annually;
    // line 9: a float's rendering; line 12: another market's row.
    lines[2] = lines[2].replace(",5.40,", ",\"1,005.40\",");
    lines[4] = lines[4].replace("P1M,Monthly", "P1M,Annual");
    lines[8] = lines[8].replace(",19.80,", ",1.98e1.5,");
    lines[11] = lines[11].replace(",US,", ",CA,");
    let status = catalog
        .import_price_sheet(import("bad-sheet", "US", &lines.join("\r\n")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    assert_eq!(
        fields,
        [
            "csv[line 3].UnitPrice",
            "csv[line 5].BillingPlan",
            "csv[line 9].UnitPrice",
            "csv[line 12].Market"
        ],
        "{status:?}"
    );
    assert!(items(&mut catalog).await.is_empty(), "nothing written");
    // The refused request id was not used up: the corrected sheet imports under it.
    catalog
        .import_price_sheet(import("bad-sheet", "US", SHEET))
        .await
        .unwrap();
    assert_eq!(items(&mut catalog).await.len(), 4);

    // Not a price list, no market, and a second market priced in the same currency.
    assert_violation(
        catalog
            .import_price_sheet(import("not-a-sheet", "US", "Name,Amount\r\nx,1\r\n"))
            .await,
        Code::InvalidArgument,
        "csv",
    );
    assert_violation(
        catalog
            .import_price_sheet(import("no-market", "", SHEET))
            .await,
        Code::InvalidArgument,
        "market",
    );
    let puerto_rico = SHEET.replace(",US,USD,", ",PR,USD,");
    let status = catalog
        .import_price_sheet(import("pr-sheet", "PR", &puerto_rico))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("market"), "{status:?}");
    gw.stop().await;
}

async fn a_help_desk_key_cannot_import(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let secret = gw
        .tenants(&gw.admin_key)
        .await
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "help-desk-key".into(),
            name: "help desk".into(),
            scope: v1::ApiKeyScope::HelpDesk.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mut help_desk = catalog(&gw, &secret).await;
    let status = help_desk
        .import_price_sheet(import("help-desk-import", "US", SHEET))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // It may read the catalogue, which is empty: nothing was imported.
    assert!(items(&mut help_desk).await.is_empty());
    gw.stop().await;
}

crate::both_backends!(
    a_sheet_is_imported_once_and_a_later_month_adds_its_prices,
    bad_rows_are_named_and_nothing_is_written,
    a_help_desk_key_cannot_import,
);
