//! Daily charge totals per customer, vendor, service and meter (see `domain::ledger_append`),
//! and their rollups (see `domain::spend::rollup`): kept by every ledger write, re-bucketed when
//! a customer's time zone changes.
use std::collections::BTreeMap;

use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::batch::{BatchWriter, TotalsWrite};
use super::diesel_tx::DieselLedger;
use super::ledger_backends;
use super::tx::{Access, LedgerTx};
use crate::domain::error::Result;
use crate::domain::ledger_append::{Total, TotalKey, usage_date};
use crate::domain::spend::rollup::rollups;
use crate::store::schema::{charge_rollups, charge_totals};

ledger_backends! {
    /// Adds `changes` to the stored totals and their rollups, in the database (exactly on both
    /// backends, see `batch::TotalsWrite`).
    pub async fn add(conn: &mut Conn, tenant_id: &str, changes: &BTreeMap<TotalKey, Total>) -> Result<()> {
        write(conn, tenant_id, changes, TotalsWrite::Add).await
    }

    async fn write(conn: &mut Conn, tenant_id: &str, totals: &BTreeMap<TotalKey, Total>, how: TotalsWrite) -> Result<()> {
        if totals.is_empty() {
            return Ok(());
        }
        let rows = totals.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        let rollups = rollups(totals).into_iter().collect();
        Ok(conn.write_totals(tenant_id.to_string(), rows, rollups, how).await?)
    }

    /// Re-buckets a customer's totals by day in `zone` (its time zone changed), from its
    /// charge events. Takes the tenant alone, as a re-rate does: a write that read the old zone
    /// before this commits cannot add its totals after the rebuild.
    pub async fn rebuild(conn: &mut Conn, tenant_id: &str, customer_id: &str, zone: Tz) -> Result<()> {
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
                // Stored events keep no unit: the rebuilt rollups leave it to the close to
                // look up (`invoice_charges`).
                totals.entry(key).or_default().add(e.amount, e.quantity, e.line_key, None);
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
        diesel::delete(charge_rollups::table)
            .filter(charge_rollups::tenant_id.eq(tenant_id))
            .filter(charge_rollups::customer_id.eq(customer_id))
            .execute(conn)
            .await?;
        write(conn, tenant_id, &totals, TotalsWrite::Replace).await
    }
}
