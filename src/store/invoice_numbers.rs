//! The tenant's gap-free invoice counter: taken in the transaction that stores the invoice, the
//! row stays locked until it commits, so counters are gap-free and commit in order.
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::invoicing_schema::invoice_number_sequences;
use crate::domain::error::Result;

for_each_backend! {
    /// The next counter (from 1).
    pub async fn take_next(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        let take = || {
            diesel::update(invoice_number_sequences::table.find(tenant_id))
                .set(invoice_number_sequences::last_number.eq(invoice_number_sequences::last_number + 1))
                .returning(invoice_number_sequences::last_number)
        };
        // One statement once the tenant's counter exists: it runs in a close's serial part.
        if let Some(number) = take().get_result(conn).await.optional()? {
            return Ok(number);
        }
        diesel::insert_into(invoice_number_sequences::table)
            .values((invoice_number_sequences::tenant_id.eq(tenant_id), invoice_number_sequences::last_number.eq(0i64)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(take().get_result(conn).await?)
    }
}
