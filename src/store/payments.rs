//! Payments recorded against invoices.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::invoicing_schema::payments;
use super::sql_types::{DbDecimal, DbTime};
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::Payment;
use crate::domain::money::Currency;

for_each_backend! {
    pub async fn insert(conn: &mut Conn, tenant_id: &str, p: &Payment) -> Result<()> {
        diesel::insert_into(payments::table)
            .values((
                payments::tenant_id.eq(tenant_id),
                payments::id.eq(&p.id),
                payments::invoice_id.eq(&p.invoice_id),
                payments::amount.eq(DbDecimal(p.amount)),
                payments::currency.eq(p.currency.code()),
                payments::reference.eq(&p.reference),
                payments::paid_after.eq(DbDecimal(p.paid_after)),
                payments::balance_after.eq(DbDecimal(p.balance_after)),
                payments::recorded_at.eq(DbTime(p.recorded_at)),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Payment> {
        let row: (String, String, DbDecimal, String, String, DbDecimal, DbDecimal, DbTime) = payments::table
            .find((tenant_id, id))
            .select((
                payments::id,
                payments::invoice_id,
                payments::amount,
                payments::currency,
                payments::reference,
                payments::paid_after,
                payments::balance_after,
                payments::recorded_at,
            ))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("payment", id))?;
        let (id, invoice_id, amount, currency, reference, paid_after, balance_after, at) = row;
        Ok(Payment {
            id,
            invoice_id,
            amount: amount.0,
            currency: Currency::from_stored(&currency)?,
            reference,
            paid_after: paid_after.0,
            balance_after: balance_after.0,
            recorded_at: at.0,
        })
    }
}
