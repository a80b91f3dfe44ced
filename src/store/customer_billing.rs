//! Each customer's close chain: its last close and the lowest sequence that close left open.
use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::invoicing_schema::customer_billing;
use super::prepared::KeepPrepared;
use super::sql_types::DbTime;
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::CloseChain;
use crate::domain::invoice_selection::ClosePoint;

/// A stored chain: the last close's end and sequence, and what it left open.
fn chain_of(end: DbTime, sequence: i64, open_from_sequence: i64) -> CloseChain {
    CloseChain {
        last: Some(ClosePoint {
            period_end: end.0,
            sequence,
        }),
        open_from_sequence,
    }
}

for_each_backend! {
    use super::chain_of;

    /// The close chains of the tenant's customers among `ids` that have closed a period (the
    /// others' is the default: nothing closed).
    pub async fn get_many(conn: &mut Conn, tenant_id: &str, ids: &[String]) -> Result<HashMap<String, CloseChain>> {
        let rows: Vec<(String, DbTime, i64, i64)> = customer_billing::table
            .filter(customer_billing::tenant_id.eq(tenant_id))
            .filter(customer_billing::customer_id.eq_any(ids))
            .select((
                customer_billing::customer_id,
                customer_billing::last_closed_end,
                customer_billing::last_close_sequence,
                customer_billing::open_from_sequence,
            ))
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, end, sequence, open_from_sequence)| (id, chain_of(end, sequence, open_from_sequence)))
            .collect())
    }

    /// The customer's chain (the default before its first close).
    pub async fn get(conn: &mut impl Statements, tenant_id: &str, customer_id: &str) -> Result<CloseChain> {
        let row: Option<(DbTime, i64, i64)> = customer_billing::table
            .find((tenant_id, customer_id))
            .select((
                customer_billing::last_closed_end,
                customer_billing::last_close_sequence,
                customer_billing::open_from_sequence,
            ))
            .first(conn)
            .await
            .optional()?;
        Ok(match row {
            None => CloseChain::default(),
            Some((end, sequence, open_from_sequence)) => chain_of(end, sequence, open_from_sequence),
        })
    }

    /// Moves the chain from `expected` to `next`; an INTERNAL error when another close moved it
    /// first (closes of one customer are serialized by the ledger lock, so this is a bug).
    pub async fn advance(conn: &mut impl Statements, tenant_id: &str, customer_id: &str, expected: &CloseChain, next: &CloseChain) -> Result<()> {
        let Some(last) = next.last else {
            return Err(Error::Internal("a close chain cannot move back to no close".into()));
        };
        let values = (
            customer_billing::last_closed_end.eq(DbTime(last.period_end)),
            customer_billing::last_close_sequence.eq(last.sequence),
            customer_billing::open_from_sequence.eq(next.open_from_sequence),
        );
        // Kept prepared: Diesel leaves upserts and UPDATEs unprepared (a prepare round trip
        // each, in a close's pipelined step).
        let changed = match expected.last {
            None => diesel::insert_into(customer_billing::table)
                .values((customer_billing::tenant_id.eq(tenant_id), customer_billing::customer_id.eq(customer_id), values))
                .on_conflict_do_nothing()
                .keep_prepared()
                .execute(conn)
                .await?,
            Some(previous) => diesel::update(customer_billing::table.find((tenant_id, customer_id)))
                .filter(customer_billing::last_close_sequence.eq(previous.sequence))
                .filter(customer_billing::last_closed_end.eq(DbTime(previous.period_end)))
                .set(values)
                .keep_prepared()
                .execute(conn)
                .await?,
        };
        if changed != 1 {
            return Err(Error::Internal(format!("customer {customer_id}'s close chain moved during a close")));
        }
        Ok(())
    }
}
