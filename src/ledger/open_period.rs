//! A customer's open period: its charges so far by vendor, service and meter, read from the
//! daily totals the ledger keeps (never by scanning charge events).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;

use super::{Ledger, ledger_backends};
use crate::domain::charges::{OpenLineItem, OpenPeriod};
use crate::domain::customer::BillingCycle;
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::customer_schedule;
use crate::domain::ledger_append::usage_date;
use crate::domain::money::Currency;
use crate::domain::period::BillingAnchor;
use crate::domain::vendor::Vendor;
use crate::store::dispatch;
use crate::store::schema::{charge_totals, customers};
use crate::store::sql_types::DbDecimal;

ledger_backends! {
    pub async fn open_period(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>) -> Result<OpenPeriod> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let (cycle, anchor_month, anchor_day, time_zone, currency): (String, i32, i32, String, String) = customers::table
                .filter(customers::tenant_id.eq(tenant_id))
                .filter(customers::id.eq(customer_id))
                .select((
                    customers::billing_cycle,
                    customers::billing_anchor_month,
                    customers::billing_anchor_day,
                    customers::time_zone,
                    customers::billing_currency,
                ))
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::not_found("customer", customer_id))?;
            let cycle: BillingCycle = cycle.parse().map_err(Error::Internal)?;
            let anchor = BillingAnchor::from_stored(anchor_month, anchor_day).map_err(Error::Internal)?;
            let currency = Currency::from_stored(&currency)?;
            let last_closed_end = q::customer_billing::get(conn, tenant_id, customer_id).await?.last.map(|l| l.period_end);
            let period = customer_schedule(cycle, anchor, &time_zone, last_closed_end)?.period_containing(now)?;
            let (start, end) = (period.start, period.end);
            // Periods start at midnight in the customer's time zone: whole days of its totals.
            let zone: chrono_tz::Tz = time_zone
                .parse()
                .map_err(|_| Error::Internal(format!("stored time zone {time_zone:?} is unknown")))?;
            let (first_day, end_day) = (usage_date(start, zone), usage_date(end, zone));
            let totals: Vec<(String, String, String, DbDecimal, DbDecimal)> = charge_totals::table
                .filter(charge_totals::tenant_id.eq(tenant_id))
                .filter(charge_totals::customer_id.eq(customer_id))
                .filter(charge_totals::usage_date.ge(first_day))
                .filter(charge_totals::usage_date.lt(end_day))
                .select((
                    charge_totals::vendor,
                    charge_totals::service,
                    charge_totals::meter,
                    charge_totals::amount,
                    charge_totals::quantity,
                ))
                .load(conn)
                .await?;
            let mut lines: BTreeMap<(&'static str, String, String), OpenLineItem> = BTreeMap::new();
            let mut total = Decimal::ZERO;
            for (vendor, service, meter, amount, quantity) in totals {
                let vendor: Vendor = vendor.parse().map_err(Error::Internal)?;
                total += amount.0;
                let item = lines
                    .entry((vendor.as_str(), service.clone(), meter.clone()))
                    .or_insert_with(|| OpenLineItem {
                        vendor,
                        service,
                        meter,
                        amount: Decimal::ZERO,
                        quantity: Decimal::ZERO,
                    });
                item.amount += amount.0;
                item.quantity += quantity.0;
            }
            Ok(OpenPeriod {
                customer_id: customer_id.to_string(),
                period_start: start,
                period_end: end,
                currency,
                items: lines.into_values().collect(),
                total,
                as_of_sequence,
            })
        })
        .await
    }
}

impl Ledger {
    pub async fn open_period(
        &self,
        tenant_id: &str,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<OpenPeriod> {
        dispatch!(
            self.store,
            read,
            self::open_period(tenant_id, customer_id, now)
        )
    }
}
