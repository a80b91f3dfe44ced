//! CatalogService: catalogue items, their unit costs, and Partner Center price-sheet imports.
use tonic::{Request, Response, Status};

use super::Gateway;
use super::auth::principal;
use super::convert::{enum_field, required_id, timestamp, vendor, vendor_to_proto};
use super::replies::{guard, reply};
use crate::domain::catalog::{
    BillingFrequency, CatalogItem, NewCatalogItem, Offer, Term, UnitCost, check_item_code,
    check_item_vendor, parse_effective_month,
};
use crate::domain::error::{Error, FieldViolation, Violations};
use crate::domain::idempotency::IdempotencyKey;
use crate::domain::money::{Currency, parse_decimal};
use crate::domain::paging::PageRequest;
use crate::domain::price_sheet::{self, PriceSheet, parse_market};
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::catalog_service_server::CatalogService;
use crate::store::price_sheets::ImportSummary;

pub struct CatalogApi {
    gw: Gateway,
}

impl CatalogApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

pub fn term_from_proto(field: &str, value: i32) -> Result<Term, FieldViolation> {
    match enum_field::<v1::Term>(field, value)? {
        Some(v1::Term::P1m) => Ok(Term::P1M),
        Some(v1::Term::P1y) => Ok(Term::P1Y),
        Some(v1::Term::P3y) => Ok(Term::P3Y),
        Some(v1::Term::Unspecified) | None => Err(FieldViolation::new(field, "is required")),
    }
}

pub fn term_to_proto(term: Term) -> v1::Term {
    match term {
        Term::P1M => v1::Term::P1m,
        Term::P1Y => v1::Term::P1y,
        Term::P3Y => v1::Term::P3y,
    }
}

pub fn billing_from_proto(field: &str, value: i32) -> Result<BillingFrequency, FieldViolation> {
    match enum_field::<v1::BillingFrequency>(field, value)? {
        Some(v1::BillingFrequency::Monthly) => Ok(BillingFrequency::Monthly),
        Some(v1::BillingFrequency::Annual) => Ok(BillingFrequency::Annual),
        Some(v1::BillingFrequency::Triennial) => Ok(BillingFrequency::Triennial),
        Some(v1::BillingFrequency::Unspecified) | None => {
            Err(FieldViolation::new(field, "is required"))
        }
    }
}

pub fn billing_to_proto(billing: BillingFrequency) -> v1::BillingFrequency {
    match billing {
        BillingFrequency::Monthly => v1::BillingFrequency::Monthly,
        BillingFrequency::Annual => v1::BillingFrequency::Annual,
        BillingFrequency::Triennial => v1::BillingFrequency::Triennial,
    }
}

/// A term and billing frequency named by `prefix.term` and `prefix.billing_frequency`.
pub fn offer_from_proto(
    v: &mut Violations,
    prefix: &str,
    term: i32,
    billing: i32,
) -> Option<Offer> {
    let term = v.check(term_from_proto(&format!("{prefix}term"), term));
    let billing = v.check(billing_from_proto(
        &format!("{prefix}billing_frequency"),
        billing,
    ));
    let (term, billing) = (term?, billing?);
    v.check(
        Offer::new(term, billing)
            .map_err(|e| FieldViolation::new(format!("{prefix}billing_frequency"), e)),
    )
}

fn item_to_proto(item: &CatalogItem) -> v1::CatalogItem {
    v1::CatalogItem {
        id: item.id.clone(),
        vendor: vendor_to_proto(item.vendor).into(),
        catalog_item_id: item.catalog_item_id.clone(),
        product: item.product.clone(),
        unit: item.unit.clone(),
        offers: item
            .offers
            .iter()
            .map(|o| v1::Offer {
                term: term_to_proto(o.term).into(),
                billing_frequency: billing_to_proto(o.billing).into(),
            })
            .collect(),
        unit_costs: item
            .unit_costs
            .iter()
            .map(|c| v1::UnitCost {
                term: term_to_proto(c.offer.term).into(),
                billing_frequency: billing_to_proto(c.offer.billing).into(),
                currency: c.currency.code().to_string(),
                effective_month: c.effective_month.format("%Y-%m").to_string(),
                unit_cost: c.unit_cost.normalize().to_string(),
                list_price: c
                    .list_price
                    .map(|l| l.normalize().to_string())
                    .unwrap_or_default(),
                market: c.market.clone(),
            })
            .collect(),
        create_time: Some(timestamp(item.created_at)),
    }
}

/// The answer to an import: what `summary` wrote of `sheet` (the CLI prints the same).
pub fn import_to_proto(
    sheet: &PriceSheet,
    summary: &ImportSummary,
) -> v1::ImportPriceSheetResponse {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    v1::ImportPriceSheetResponse {
        items_created: count(summary.items_created),
        unit_costs_written: count(summary.unit_costs_written),
        items_updated: count(summary.items_updated),
        rows_read: count(sheet.rows_read),
        rows_skipped: count(sheet.rows_skipped()),
        skipped: sheet
            .skipped
            .iter()
            .map(|s| v1::PriceSheetSkip {
                first_line: count(s.first_line),
                rows: count(s.rows),
                reason: s.reason.clone(),
            })
            .collect(),
    }
}

/// The request's fingerprint covers the market and the file's bytes as sent.
pub fn import_key(request_id: String, market: &str, csv: &[u8]) -> IdempotencyKey {
    let mut body = Vec::with_capacity(market.len() + 1 + csv.len());
    body.extend_from_slice(market.as_bytes());
    body.push(0);
    body.extend_from_slice(csv);
    IdempotencyKey::from_bytes(request_id, "ImportPriceSheet", &body)
}

fn parse_item(item: &v1::CatalogItem) -> Result<NewCatalogItem, Error> {
    let mut v = Violations::new();
    let vendor = v
        .check(vendor("catalog_item.vendor", item.vendor))
        .and_then(|vendor| {
            v.check(check_item_vendor("catalog_item.vendor", vendor))
                .map(|_| vendor)
        });
    let code = vendor.and_then(|vendor| {
        v.check(check_item_code(
            "catalog_item.catalog_item_id",
            vendor,
            &item.catalog_item_id,
        ))
    });
    let product = v.check(text::display_name(
        "catalog_item.product",
        &item.product,
        256,
    ));
    let unit = if item.unit.is_empty() {
        Some("seat".to_string())
    } else {
        v.check(text::display_name("catalog_item.unit", &item.unit, 64))
    };
    let mut offers = Vec::new();
    if item.offers.is_empty() {
        v.add("catalog_item.offers", "at least one offer is required");
    }
    for (i, o) in item.offers.iter().enumerate() {
        let prefix = format!("catalog_item.offers[{i}].");
        if let Some(offer) = offer_from_proto(&mut v, &prefix, o.term, o.billing_frequency) {
            if offers.contains(&offer) {
                v.add(format!("{prefix}term"), format!("{offer} is listed twice"));
            }
            offers.push(offer);
        }
    }
    let mut unit_costs: Vec<UnitCost> = Vec::new();
    for (i, c) in item.unit_costs.iter().enumerate() {
        let prefix = format!("catalog_item.unit_costs[{i}].");
        let offer = offer_from_proto(&mut v, &prefix, c.term, c.billing_frequency);
        if let Some(offer) = offer
            && !offers.contains(&offer)
        {
            v.add(
                format!("{prefix}term"),
                format!("{offer} is not among the item's offers"),
            );
        }
        let currency = v.check(Currency::parse(&format!("{prefix}currency"), &c.currency));
        let month = v.check(parse_effective_month(
            &format!("{prefix}effective_month"),
            &c.effective_month,
        ));
        let cost = v.check(parse_decimal(&format!("{prefix}unit_cost"), &c.unit_cost));
        if cost.is_some_and(|c| c.is_sign_negative() && !c.is_zero()) {
            v.add(format!("{prefix}unit_cost"), "cannot be negative");
        }
        let market = if c.market.is_empty() {
            Some(String::new())
        } else {
            v.check(parse_market(&format!("{prefix}market"), &c.market))
        };
        let list = if c.list_price.is_empty() {
            Some(None)
        } else {
            v.check(parse_decimal(&format!("{prefix}list_price"), &c.list_price))
                .map(Some)
        };
        if let (Some(offer), Some(currency), Some(month), Some(cost), Some(list), Some(market)) =
            (offer, currency, month, cost, list, market)
        {
            let cost = UnitCost {
                offer,
                currency,
                effective_month: month,
                unit_cost: cost,
                list_price: list,
                market,
            };
            if unit_costs.iter().any(|u| {
                (u.offer, u.currency, u.effective_month)
                    == (cost.offer, cost.currency, cost.effective_month)
            }) {
                v.add(
                    format!("{prefix}effective_month"),
                    "the same offer, currency and month is listed twice",
                );
            }
            unit_costs.push(cost);
        }
    }
    v.into_result()?;
    match (vendor, code, product, unit) {
        (Some(vendor), Some(catalog_item_id), Some(product), Some(unit)) => Ok(NewCatalogItem {
            vendor,
            catalog_item_id,
            product,
            unit,
            offers,
            unit_costs,
        }),
        _ => Err(Error::Internal("validated fields missing".into())),
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn create_catalog_item(
        &self,
        request: Request<v1::CreateCatalogItemRequest>,
    ) -> Result<Response<v1::CatalogItem>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let request_id = text::request_id(&req.request_id, true)
            .map_err(|v| Error::InvalidArgument(vec![v]))?
            .ok_or_else(|| Error::invalid("request_id", "is required"))?;
        let item = req
            .catalog_item
            .ok_or_else(|| Error::invalid("catalog_item", "is required"))?;
        let new = parse_item(&item)?;
        let key = IdempotencyKey::new(request_id, "CreateCatalogItem", &new);
        let answer = self
            .gw
            .store
            .create_catalog_item(&principal.tenant_id, &new, &guard(key, item_to_proto))
            .await?;
        reply(answer, item_to_proto)
    }

    async fn get_catalog_item(
        &self,
        request: Request<v1::GetCatalogItemRequest>,
    ) -> Result<Response<v1::CatalogItem>, Status> {
        let principal = principal(&request)?;
        let id = required_id("id", &request.get_ref().id)?;
        let item = self
            .gw
            .store
            .catalog_item(&principal.tenant_id, &id)
            .await?;
        Ok(Response::new(item_to_proto(&item)))
    }

    async fn list_catalog_items(
        &self,
        request: Request<v1::ListCatalogItemsRequest>,
    ) -> Result<Response<v1::ListCatalogItemsResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let page = PageRequest::parse(req.page_size, &req.page_token, "catalog_items")
            .map_err(Error::InvalidArgument)?;
        let page = self
            .gw
            .store
            .list_catalog_items(&principal.tenant_id, &page)
            .await?;
        Ok(Response::new(v1::ListCatalogItemsResponse {
            catalog_items: page.items.iter().map(item_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn import_price_sheet(
        &self,
        request: Request<v1::ImportPriceSheetRequest>,
    ) -> Result<Response<v1::ImportPriceSheetResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let request_id = text::request_id(&req.request_id, true)
            .map_err(|v| Error::InvalidArgument(vec![v]))?
            .ok_or_else(|| Error::invalid("request_id", "is required"))?;
        let key = import_key(request_id, &req.market, &req.csv);
        // Reading a sheet of megabytes is CPU work: off the async workers.
        let sheet = tokio::task::spawn_blocking(move || price_sheet::parse(&req.market, &req.csv))
            .await
            .map_err(|e| Error::Internal(format!("price sheet parse: {e}")))??;
        let answer = self
            .gw
            .store
            .import_price_sheet(
                &principal.tenant_id,
                &sheet,
                &guard(key, |summary| import_to_proto(&sheet, summary)),
            )
            .await?;
        reply(answer, |summary| import_to_proto(&sheet, summary))
    }
}
