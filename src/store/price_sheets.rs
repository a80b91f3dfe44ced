//! Writing an imported price sheet into the catalogue, in one transaction (with its request id):
//! Microsoft items created or extended, unit costs inserted or replaced.
use std::collections::{BTreeSet, HashMap};

use chrono::{SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::catalog::{COST_COLUMNS, CostRow};
use super::catalog_schema::{catalog_items, catalog_unit_costs};
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, for_each_backend};
use crate::domain::catalog::{Offer, UnitCost, decode_offers, encode_offers};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::price_sheet::PriceSheet;
use crate::domain::vendor::Vendor;
use crate::store::idempotency::write_once;

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub items_created: usize,
    pub items_updated: usize,
    /// New costs, and stored ones whose price changed (an unchanged cost is not rewritten).
    pub unit_costs_written: usize,
}

/// The `product:sku` an item's code prices by: its first two parts.
fn priced_as(code: &str) -> String {
    code.splitn(3, ':').take(2).collect::<Vec<_>>().join(":")
}

type CostKey = (String, String, String, String, String);

fn cost_key(item_id: &str, cost: &UnitCost) -> CostKey {
    (
        item_id.to_string(),
        cost.offer.term.as_str().to_string(),
        cost.offer.billing.as_str().to_string(),
        cost.currency.code().to_string(),
        cost.effective_month.format("%Y-%m").to_string(),
    )
}

for_each_backend! {
    use super::{CostKey, CostRow, ImportSummary, cost_key, priced_as};

    /// Refuses a sheet of another market than the one the tenant's costs in the same currency
    /// came from: two markets' prices for one offer, currency and month would overwrite each
    /// other, and the catalogue prices a seat by currency.
    async fn check_market(conn: &mut Conn, tenant_id: &str, sheet: &PriceSheet) -> Result<()> {
        let currencies: BTreeSet<&str> = sheet
            .items
            .iter()
            .flat_map(|i| i.unit_costs.iter().map(|c| c.currency.code()))
            .collect();
        let other: Option<(String, String)> = catalog_unit_costs::table
            .filter(catalog_unit_costs::tenant_id.eq(tenant_id))
            .filter(catalog_unit_costs::currency.eq_any(currencies))
            .filter(catalog_unit_costs::market.ne(""))
            .filter(catalog_unit_costs::market.ne(&sheet.market))
            .select((catalog_unit_costs::market, catalog_unit_costs::currency))
            .first(conn)
            .await
            .optional()?;
        match other {
            Some((market, currency)) => Err(Error::precondition(
                "market",
                format!(
                    "the catalogue's {currency} costs come from market {market}'s price sheet; \
                     costs are chosen by currency, so one market per currency is imported"
                ),
            )),
            None => Ok(()),
        }
    }

    pub async fn import(conn: &mut Conn, tenant_id: &str, sheet: &PriceSheet) -> Result<ImportSummary> {
        check_market(conn, tenant_id, sheet).await?;
        let stored: Vec<(String, String, String)> = catalog_items::table
            .filter(catalog_items::tenant_id.eq(tenant_id))
            .filter(catalog_items::vendor.eq(Vendor::Microsoft.as_str()))
            .select((catalog_items::id, catalog_items::catalog_item_id, catalog_items::offers))
            .load(conn)
            .await?;
        // An item catalogued by hand with its availability (product:sku:availability) is the
        // same SKU as the sheet's product:sku: its costs are the sheet's.
        let mut by_sku: HashMap<String, Vec<(String, Vec<Offer>)>> = HashMap::new();
        for (id, code, offers) in stored {
            let offers = decode_offers(&offers)
                .map_err(|e| Error::Internal(format!("stored catalogue item {id}: {e}")))?;
            by_sku.entry(priced_as(&code)).or_default().push((id, offers));
        }
        let existing: Vec<CostRow> =
            catalog_unit_costs::table
                .filter(catalog_unit_costs::tenant_id.eq(tenant_id))
                .select(COST_COLUMNS)
                .load(conn)
                .await?;
        let existing: HashMap<CostKey, (DbDecimal, Option<DbDecimal>, String)> = existing
            .into_iter()
            .map(|(item, term, billing, currency, month, cost, list, market)| {
                ((item, term, billing, currency, month), (cost, list, market))
            })
            .collect();
        let now = DbTime(Utc::now().trunc_subsecs(6));
        let mut summary = ImportSummary { items_created: 0, items_updated: 0, unit_costs_written: 0 };
        let mut inserts: Vec<(String, &UnitCost)> = Vec::new();
        for item in &sheet.items {
            let targets: Vec<String> = match by_sku.get(&item.priced_as) {
                Some(stored) => {
                    summary.items_updated += 1;
                    for (id, offers) in stored {
                        // Offers are only ever added: subscriptions hold the ones they bought.
                        let mut merged = offers.clone();
                        merged.extend(item.offers.iter().filter(|o| !offers.contains(o)));
                        if merged.len() != offers.len() {
                            diesel::update(catalog_items::table.filter(catalog_items::id.eq(id)))
                                .set(catalog_items::offers.eq(encode_offers(&merged)))
                                .execute(conn)
                                .await?;
                        }
                    }
                    stored.iter().map(|(id, _)| id.clone()).collect()
                }
                None => {
                    summary.items_created += 1;
                    let id = ids::new_id(ids::CATALOG_ITEM);
                    diesel::insert_into(catalog_items::table)
                        .values((
                            catalog_items::id.eq(&id),
                            catalog_items::tenant_id.eq(tenant_id),
                            catalog_items::vendor.eq(Vendor::Microsoft.as_str()),
                            catalog_items::catalog_item_id.eq(&item.priced_as),
                            catalog_items::product.eq(&item.product),
                            catalog_items::unit.eq(&item.unit),
                            catalog_items::offers.eq(encode_offers(&item.offers)),
                            catalog_items::created_at.eq(now),
                        ))
                        .execute(conn)
                        .await?;
                    vec![id]
                }
            };
            for id in targets {
                for cost in &item.unit_costs {
                    let key = cost_key(&id, cost);
                    match existing.get(&key) {
                        None => inserts.push((id.clone(), cost)),
                        Some((stored, list, market))
                            if stored.0 == cost.unit_cost
                                && list.as_ref().map(|l| l.0) == cost.list_price
                                && *market == cost.market => {}
                        Some(_) => {
                            let (item_id, term, billing, currency, month) = key;
                            diesel::update(
                                catalog_unit_costs::table
                                    .filter(catalog_unit_costs::item_id.eq(item_id))
                                    .filter(catalog_unit_costs::term.eq(term))
                                    .filter(catalog_unit_costs::billing_frequency.eq(billing))
                                    .filter(catalog_unit_costs::currency.eq(currency))
                                    .filter(catalog_unit_costs::effective_month.eq(month)),
                            )
                            .set((
                                catalog_unit_costs::unit_cost.eq(DbDecimal(cost.unit_cost)),
                                catalog_unit_costs::list_price.eq(cost.list_price.map(DbDecimal)),
                                catalog_unit_costs::market.eq(&cost.market),
                            ))
                            .execute(conn)
                            .await?;
                            summary.unit_costs_written += 1;
                        }
                    }
                }
            }
        }
        summary.unit_costs_written += inserts.len();
        // One statement a cost: diesel's multi-row INSERT is not built for SQLite's dialect, and
        // a market's sheet is some thousands of costs, written once a month.
        for (id, cost) in inserts {
            diesel::insert_into(catalog_unit_costs::table)
                .values((
                    catalog_unit_costs::tenant_id.eq(tenant_id),
                    catalog_unit_costs::item_id.eq(id.as_str()),
                    catalog_unit_costs::term.eq(cost.offer.term.as_str()),
                    catalog_unit_costs::billing_frequency.eq(cost.offer.billing.as_str()),
                    catalog_unit_costs::currency.eq(cost.currency.code()),
                    catalog_unit_costs::effective_month.eq(cost.effective_month.format("%Y-%m").to_string()),
                    catalog_unit_costs::unit_cost.eq(DbDecimal(cost.unit_cost)),
                    catalog_unit_costs::list_price.eq(cost.list_price.map(DbDecimal)),
                    catalog_unit_costs::market.eq(cost.market.as_str()),
                ))
                .execute(conn)
                .await?;
        }
        Ok(summary)
    }
}

impl Store {
    /// Imports `sheet` into the tenant's catalogue, once per request id.
    pub async fn import_price_sheet(
        &self,
        tenant_id: &str,
        sheet: &PriceSheet,
        request: &Idempotent<'_, ImportSummary>,
    ) -> Result<Answer<ImportSummary>> {
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::import(tenant_id, sheet)
        )
    }
}
