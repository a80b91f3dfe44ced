//! Catalogue items and their unit costs.
use chrono::{NaiveDate, SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::catalog_schema::{catalog_items, catalog_unit_costs};
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::catalog::{
    CatalogItem, NewCatalogItem, Offer, UnitCost, decode_offers, encode_offers,
};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::store::idempotency::write_once;

pub(super) type ItemRow = (String, String, String, String, String, String, DbTime);
pub(super) type CostRow = (
    String,
    String,
    String,
    String,
    String,
    DbDecimal,
    Option<DbDecimal>,
    String,
);

/// The columns a [`CostRow`] is read from (the catalogue's reads and the price-sheet import).
#[rustfmt::skip]
pub(super) const COST_COLUMNS: (
    catalog_unit_costs::item_id,
    catalog_unit_costs::term,
    catalog_unit_costs::billing_frequency,
    catalog_unit_costs::currency,
    catalog_unit_costs::effective_month,
    catalog_unit_costs::unit_cost,
    catalog_unit_costs::list_price,
    catalog_unit_costs::market,
) = (
    catalog_unit_costs::item_id,
    catalog_unit_costs::term,
    catalog_unit_costs::billing_frequency,
    catalog_unit_costs::currency,
    catalog_unit_costs::effective_month,
    catalog_unit_costs::unit_cost,
    catalog_unit_costs::list_price,
    catalog_unit_costs::market,
);

fn into_item(row: ItemRow, costs: Vec<CostRow>) -> Result<CatalogItem> {
    let (id, vendor, catalog_item_id, product, unit, offers, created_at) = row;
    let corrupt = |e: String| Error::Internal(format!("stored catalogue item {id}: {e}"));
    let unit_costs = costs
        .into_iter()
        .map(|(_, term, billing, currency, month, cost, list, market)| {
            Ok(UnitCost {
                offer: Offer::new(
                    term.parse().map_err(corrupt)?,
                    billing.parse().map_err(corrupt)?,
                )
                .map_err(corrupt)?,
                currency: Currency::parse("currency", &currency)
                    .map_err(|e| corrupt(e.to_string()))?,
                effective_month: NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
                    .map_err(|e| corrupt(e.to_string()))?,
                unit_cost: cost.0,
                list_price: list.map(|l| l.0),
                market,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CatalogItem {
        vendor: vendor.parse().map_err(corrupt)?,
        offers: decode_offers(&offers).map_err(corrupt)?,
        catalog_item_id,
        product,
        unit,
        unit_costs,
        created_at: created_at.0,
        id,
    })
}

for_each_backend! {
    use super::{COST_COLUMNS, CostRow, ItemRow, into_item};

    fn item_columns() -> (catalog_items::id, catalog_items::vendor, catalog_items::catalog_item_id, catalog_items::product, catalog_items::unit, catalog_items::offers, catalog_items::created_at) {
        (catalog_items::id, catalog_items::vendor, catalog_items::catalog_item_id, catalog_items::product, catalog_items::unit, catalog_items::offers, catalog_items::created_at)
    }

    /// The items' unit costs, each item's in (offer, currency, month) order.
    async fn with_costs(conn: &mut Conn, rows: Vec<ItemRow>) -> Result<Vec<CatalogItem>> {
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let costs: Vec<CostRow> = catalog_unit_costs::table
            .filter(catalog_unit_costs::item_id.eq_any(&ids))
            .select(COST_COLUMNS)
            .order((catalog_unit_costs::item_id, catalog_unit_costs::term, catalog_unit_costs::billing_frequency, catalog_unit_costs::currency, catalog_unit_costs::effective_month))
            .load(conn)
            .await?;
        let mut by_item: std::collections::HashMap<String, Vec<CostRow>> = std::collections::HashMap::new();
        for cost in costs {
            by_item.entry(cost.0.clone()).or_default().push(cost);
        }
        rows.into_iter()
            .map(|row| {
                let costs = by_item.remove(&row.0).unwrap_or_default();
                into_item(row, costs)
            })
            .collect()
    }

    pub async fn create(conn: &mut Conn, tenant_id: &str, new: &NewCatalogItem) -> Result<CatalogItem> {
        let taken: i64 = catalog_items::table
            .filter(catalog_items::tenant_id.eq(tenant_id))
            .filter(catalog_items::vendor.eq(new.vendor.as_str()))
            .filter(catalog_items::catalog_item_id.eq(&new.catalog_item_id))
            .count()
            .get_result(conn)
            .await?;
        if taken > 0 {
            return Err(Error::AlreadyExists {
                kind: "catalogue item",
                field: "catalog_item.catalog_item_id".into(),
                value: new.catalog_item_id.clone(),
            });
        }
        let id = ids::new_id(ids::CATALOG_ITEM);
        diesel::insert_into(catalog_items::table)
            .values((
                catalog_items::id.eq(&id),
                catalog_items::tenant_id.eq(tenant_id),
                catalog_items::vendor.eq(new.vendor.as_str()),
                catalog_items::catalog_item_id.eq(&new.catalog_item_id),
                catalog_items::product.eq(&new.product),
                catalog_items::unit.eq(&new.unit),
                catalog_items::offers.eq(encode_offers(&new.offers)),
                catalog_items::created_at.eq(DbTime(Utc::now().trunc_subsecs(6))),
            ))
            .execute(conn)
            .await?;
        for cost in &new.unit_costs {
            diesel::insert_into(catalog_unit_costs::table)
                .values((
                    catalog_unit_costs::tenant_id.eq(tenant_id),
                    catalog_unit_costs::item_id.eq(&id),
                    catalog_unit_costs::term.eq(cost.offer.term.as_str()),
                    catalog_unit_costs::billing_frequency.eq(cost.offer.billing.as_str()),
                    catalog_unit_costs::currency.eq(cost.currency.code()),
                    catalog_unit_costs::effective_month.eq(cost.effective_month.format("%Y-%m").to_string()),
                    catalog_unit_costs::unit_cost.eq(DbDecimal(cost.unit_cost)),
                    catalog_unit_costs::list_price.eq(cost.list_price.map(DbDecimal)),
                    catalog_unit_costs::market.eq(&cost.market),
                ))
                .execute(conn)
                .await?;
        }
        get(conn, tenant_id, &id).await
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<CatalogItem> {
        let row: ItemRow = catalog_items::table
            .filter(catalog_items::tenant_id.eq(tenant_id))
            .filter(catalog_items::id.eq(id))
            .select(item_columns())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("catalogue item", id))?;
        with_costs(conn, vec![row]).await?.pop().ok_or_else(|| Error::not_found("catalogue item", id))
    }

    /// The tenant's items among `ids` (those not found are left out).
    pub async fn get_many(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<Vec<CatalogItem>> {
        let rows: Vec<ItemRow> = catalog_items::table
            .filter(catalog_items::tenant_id.eq(tenant_id))
            .filter(catalog_items::id.eq_any(ids))
            .select(item_columns())
            .order(catalog_items::id)
            .load(conn)
            .await?;
        with_costs(conn, rows).await
    }

    pub async fn list(conn: &mut Conn, tenant_id: &str, page: &PageRequest) -> Result<Page<CatalogItem>> {
        let mut query = catalog_items::table
            .filter(catalog_items::tenant_id.eq(tenant_id))
            .select(item_columns())
            .order(catalog_items::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(after) = &page.after {
            query = query.filter(catalog_items::id.gt(after));
        }
        let rows: Vec<ItemRow> = query.load(conn).await?;
        let items = with_costs(conn, rows).await?;
        Ok(page.page(items, |i| &i.id))
    }
}

impl Store {
    pub async fn create_catalog_item(
        &self,
        tenant_id: &str,
        new: &NewCatalogItem,
        request: &Idempotent<'_, CatalogItem>,
    ) -> Result<Answer<CatalogItem>> {
        write_once!(self, tenant_id, Some(request), self::create(tenant_id, new))
    }

    pub async fn catalog_item(&self, tenant_id: &str, id: &str) -> Result<CatalogItem> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    pub async fn list_catalog_items(
        &self,
        tenant_id: &str,
        page: &PageRequest,
    ) -> Result<Page<CatalogItem>> {
        dispatch!(self, read, self::list(tenant_id, page))
    }
}
