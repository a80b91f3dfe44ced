//! Daily charge totals per customer, vendor, service and meter (see `domain::ledger_append`):
//! kept by every ledger write, re-bucketed when a customer's time zone changes.
use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::schema::charge_totals;
use super::sql_types::DbDecimal;
use crate::domain::error::{Error, Result};
use crate::domain::ledger_append::{Total, TotalKey, usage_date};

/// Rows per multi-row statement (8 columns, within SQLite's 32766 bind parameters).
const ROWS_PER_STATEMENT: usize = 1000;

/// A stored total: (customer, day, vendor, service, meter, amount, quantity).
type StoredTotal = (
    String,
    NaiveDate,
    String,
    String,
    String,
    DbDecimal,
    DbDecimal,
);

/// `changes` added to the stored values of the same keys: the values to write.
fn added(
    changes: &BTreeMap<TotalKey, Total>,
    stored: Vec<StoredTotal>,
) -> Result<BTreeMap<TotalKey, Total>> {
    let mut totals = changes.clone();
    for (customer_id, usage_date, vendor, service, meter, amount, quantity) in stored {
        let key = TotalKey {
            customer_id,
            usage_date,
            vendor: vendor.parse().map_err(Error::Internal)?,
            service,
            meter,
        };
        if let Some(total) = totals.get_mut(&key) {
            total.amount += amount.0;
            total.quantity += quantity.0;
        }
    }
    Ok(totals)
}

for_each_backend! {
    /// Adds `changes` to the stored totals: read, add in Rust, write back (SQLite's arithmetic
    /// on decimal text would go through floats). Callers hold the tenant's ledger lock, which
    /// keeps the tenant's other writers out meanwhile.
    pub async fn add(conn: &mut Conn, tenant_id: &str, changes: &BTreeMap<TotalKey, Total>) -> Result<()> {
        let (Some(first), Some(last)) = (
            changes.keys().map(|k| k.usage_date).min(),
            changes.keys().map(|k| k.usage_date).max(),
        ) else {
            return Ok(());
        };
        let mut customers: Vec<&str> = changes.keys().map(|k| k.customer_id.as_str()).collect();
        customers.dedup();
        let mut stored = Vec::new();
        for ids in customers.chunks(ROWS_PER_STATEMENT) {
            stored.extend(
                charge_totals::table
                    .filter(charge_totals::tenant_id.eq(tenant_id))
                    .filter(charge_totals::customer_id.eq_any(ids))
                    .filter(charge_totals::usage_date.between(first, last))
                    .select((
                        charge_totals::customer_id,
                        charge_totals::usage_date,
                        charge_totals::vendor,
                        charge_totals::service,
                        charge_totals::meter,
                        charge_totals::amount,
                        charge_totals::quantity,
                    ))
                    .load::<StoredTotal>(conn)
                    .await?,
            );
        }
        write(conn, tenant_id, &added(changes, stored)?).await
    }

    /// Upserts `totals` as they are, a row per statement: on SQLite statements cost no round
    /// trip, and on PostgreSQL this serves only re-rates (writes of pushes and pulls go through
    /// `pg_ledger`).
    async fn write(conn: &mut Conn, tenant_id: &str, totals: &BTreeMap<TotalKey, Total>) -> Result<()> {
        for (k, t) in totals {
            diesel::insert_into(charge_totals::table)
                .values((
                    charge_totals::tenant_id.eq(tenant_id),
                    charge_totals::customer_id.eq(&k.customer_id),
                    charge_totals::usage_date.eq(k.usage_date),
                    charge_totals::vendor.eq(k.vendor.as_str()),
                    charge_totals::service.eq(&k.service),
                    charge_totals::meter.eq(&k.meter),
                    charge_totals::amount.eq(DbDecimal(t.amount)),
                    charge_totals::quantity.eq(DbDecimal(t.quantity)),
                ))
                .on_conflict((
                    charge_totals::tenant_id,
                    charge_totals::customer_id,
                    charge_totals::usage_date,
                    charge_totals::vendor,
                    charge_totals::service,
                    charge_totals::meter,
                ))
                .do_update()
                .set((
                    charge_totals::amount.eq(DbDecimal(t.amount)),
                    charge_totals::quantity.eq(DbDecimal(t.quantity)),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Re-buckets a customer's totals by day in `zone` (its time zone changed), from its
    /// charge events. Takes the tenant alone, as a re-rate does: a write that read the old zone
    /// before this commits cannot add its totals after the rebuild.
    pub async fn rebuild(conn: &mut Conn, tenant_id: &str, customer_id: &str, zone: Tz) -> Result<()> {
        use crate::store::ledger_tx::{Access, DieselLedger, LedgerTx};
        const PAGE: i64 = 10_000;
        DieselLedger::new(&mut *conn).enter(tenant_id, Access::Exclusive).await?;
        q::charges::lock_ledger(conn, tenant_id).await?;
        let mut totals: BTreeMap<TotalKey, Total> = BTreeMap::new();
        let mut after = 0;
        loop {
            let events = q::charges::events_after(conn, tenant_id, &[customer_id], &[], (None, None), after, PAGE).await?;
            let Some(last) = events.last().map(|e| e.sequence) else { break };
            for e in &events {
                let key = TotalKey {
                    customer_id: e.customer_id.clone(),
                    usage_date: usage_date(e.window_start, zone),
                    vendor: e.vendor,
                    service: e.service.clone(),
                    meter: e.meter.clone(),
                };
                let total = totals.entry(key).or_default();
                total.amount += e.amount;
                total.quantity += e.quantity;
            }
            if (events.len() as i64) < PAGE {
                break;
            }
            after = last;
        }
        diesel::delete(charge_totals::table)
            .filter(charge_totals::tenant_id.eq(tenant_id))
            .filter(charge_totals::customer_id.eq(customer_id))
            .execute(conn)
            .await?;
        write(conn, tenant_id, &totals).await
    }
}
