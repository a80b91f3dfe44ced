//! A seat's selling price: the catalogue's unit cost in force, priced by the same rules (and FX
//! rates) as usage, so one pricing model covers both. A seat is rated as a usage line of
//! quantity 1 whose service is the item's product and whose meter is its code, at the start of
//! the billing period it is for.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::catalog::{CatalogItem, Offer, cost_in_force};
use super::error::{Error, Result};
use super::rating::{Chargee, PriceBook, rate};
use super::usage::{UsageKey, UsageLine};

/// The price of one seat of `offer` of `item` for the period starting at `at`, in the
/// chargee's currency; why not, as a precondition on `field`, when it cannot be priced.
pub fn seat_price(
    field: &str,
    item: &CatalogItem,
    offer: Offer,
    at: DateTime<Utc>,
    chargee: &Chargee,
    prices: &PriceBook<'_>,
) -> Result<Decimal> {
    let cost =
        cost_in_force(&item.unit_costs, offer, Some(chargee.currency), at).ok_or_else(|| {
            Error::precondition(
                field,
                format!(
                    "catalogue item {} has no unit cost for {offer} in force at {}",
                    item.id,
                    super::period::rfc3339(at)
                ),
            )
        })?;
    let line = UsageLine {
        key: UsageKey {
            vendor_account_id: String::new(),
            service: item.product.clone(),
            meter: item.catalog_item_id.clone(),
            region: String::new(),
            window_start: at,
        },
        window_end: at,
        meter_name: item.product.clone(),
        quantity: Decimal::ONE,
        unit: item.unit.clone(),
        cost: cost.unit_cost,
        list_cost: cost.list_price,
        currency: cost.currency.code().to_string(),
        estimated: false,
        vendor_tenant_id: None,
    };
    // A partner discount does not apply: the catalogue states list prices where it has them.
    rate(&line, item.vendor, Decimal::ZERO, Some(chargee), prices)
        .map(|rated| rated.amount)
        .map_err(|reason| Error::precondition(field, format!("a seat cannot be priced: {reason}")))
}
