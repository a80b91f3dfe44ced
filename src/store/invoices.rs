//! Finalized invoices and their lines. Written once, at close, in the closing transaction; only
//! the paid sum and payment status change afterwards (with each payment).
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use super::invoicing_schema::{invoice_lines, invoice_number_sequences, invoices};
use super::prepared::KeepPrepared;
use super::sql_types::{DbDecimal, DbTime};
use super::{SqliteConn, Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::invoice::{
    AdjustedPeriod, BilledCustomer, InvoiceLine, InvoiceRef, PriorInvoice,
};
use crate::domain::invoice_record::{Invoice, InvoiceFilter};
use crate::domain::money::Currency;
use crate::domain::paging::{Page, PageRequest};
use crate::domain::payment::PaymentStatus;

type InvoiceRow = (
    (String, String, DbTime, DbTime, String, String, i64, i64),
    (Option<i64>, Option<String>, String, String, String, String),
    (DbDecimal, DbDecimal, DbDecimal, DbDecimal, DbTime),
);

type LineRow = (
    String,
    (String, String, String, String),
    (DbDecimal, DbDecimal, DbDecimal),
    (
        Option<DbTime>,
        Option<DbTime>,
        Option<String>,
        Option<String>,
    ),
);

fn internal(e: String) -> Error {
    Error::Internal(e)
}

fn invoice_from_row(row: InvoiceRow, lines: Vec<InvoiceLine>) -> Result<Invoice> {
    let (
        (id, customer_id, start, end, time_zone, cycle, close_sequence, previous_close_sequence),
        (number_counter, number, external_ref, name, currency, rounding),
        (unrounded_total, total, rounding_difference, paid, finalized_at),
    ) = row;
    Ok(Invoice {
        id,
        number,
        number_counter,
        customer: BilledCustomer {
            id: customer_id,
            external_ref,
            display_name: name,
        },
        currency: Currency::from_stored(&currency)?,
        rounding: rounding.parse().map_err(internal)?,
        period_start: start.0,
        period_end: end.0,
        time_zone,
        cycle: cycle.parse().map_err(internal)?,
        close_sequence,
        previous_close_sequence,
        lines,
        unrounded_total: unrounded_total.0,
        total: total.0,
        rounding_difference: rounding_difference.0,
        paid: paid.0,
        finalized_at: finalized_at.0,
    })
}

fn line_from_row(row: LineRow) -> Result<(String, InvoiceLine)> {
    let (invoice_id, (vendor, service, meter, unit), (quantity, unrounded, amount), adjusts) = row;
    let adjusts = match adjusts {
        (Some(start), Some(end), id, number) => Some(AdjustedPeriod {
            start: start.0,
            end: end.0,
            invoice: id.map(|id| InvoiceRef { id, number }),
        }),
        (None, None, None, None) => None,
        _ => {
            return Err(Error::Internal(format!(
                "invoice {invoice_id} has a half-stored adjustment line"
            )));
        }
    };
    Ok((
        invoice_id,
        InvoiceLine {
            vendor: vendor.parse().map_err(internal)?,
            service,
            meter,
            unit,
            quantity: quantity.0,
            unrounded_amount: unrounded.0,
            amount: amount.0,
            adjusts,
        },
    ))
}

/// The header columns, in [`InvoiceRow`]'s order.
macro_rules! header_columns {
    () => {
        (
            (
                invoices::id,
                invoices::customer_id,
                invoices::period_start,
                invoices::period_end,
                invoices::time_zone,
                invoices::cycle,
                invoices::close_sequence,
                invoices::previous_close_sequence,
            ),
            (
                invoices::number_counter,
                invoices::number,
                invoices::customer_external_ref,
                invoices::customer_name,
                invoices::currency,
                invoices::rounding,
            ),
            (
                invoices::unrounded_total,
                invoices::total,
                invoices::rounding_difference,
                invoices::paid,
                invoices::finalized_at,
            ),
        )
    };
}

/// Lines per SQLite INSERT: 14 parameters each, well under its parameter limit (PostgreSQL
/// takes all lines as arrays in one statement).
const LINES_PER_INSERT: usize = 1_000;

/// An invoice line as stored. `treat_none_as_default_value = false` binds NULL for a line that
/// adjusts nothing (SQLite has no DEFAULT in a multi-row VALUES).
#[derive(Insertable)]
#[diesel(table_name = invoice_lines, treat_none_as_default_value = false)]
pub struct LineInsert {
    tenant_id: String,
    invoice_id: String,
    line_number: i32,
    vendor: &'static str,
    service: String,
    meter: String,
    unit: String,
    quantity: DbDecimal,
    unrounded_amount: DbDecimal,
    amount: DbDecimal,
    adjusts_period_start: Option<DbTime>,
    adjusts_period_end: Option<DbTime>,
    adjusts_invoice_id: Option<String>,
    adjusts_invoice_number: Option<String>,
}

impl LineInsert {
    fn of(tenant_id: &str, invoice_id: &str, line_number: i32, line: &InvoiceLine) -> Self {
        let adjusts = line.adjusts.as_ref();
        let adjusted_invoice = adjusts.and_then(|a| a.invoice.as_ref());
        LineInsert {
            tenant_id: tenant_id.to_string(),
            invoice_id: invoice_id.to_string(),
            line_number,
            vendor: line.vendor.as_str(),
            service: line.service.clone(),
            meter: line.meter.clone(),
            unit: line.unit.clone(),
            quantity: DbDecimal(line.quantity),
            unrounded_amount: DbDecimal(line.unrounded_amount),
            amount: DbDecimal(line.amount),
            adjusts_period_start: adjusts.map(|a| DbTime(a.start)),
            adjusts_period_end: adjusts.map(|a| DbTime(a.end)),
            adjusts_invoice_id: adjusted_invoice.map(|i| i.id.clone()),
            adjusts_invoice_number: adjusted_invoice.and_then(|i| i.number.clone()),
        }
    }
}

/// Inserts an invoice's lines. PostgreSQL: one `INSERT … SELECT FROM UNNEST` with an array per
/// column, the same text for every invoice and so prepared once per connection; the multi-row
/// VALUES it replaces was new text for every line count and cost 27 ms of a 100-line close's
/// ~60 ms of statements in the month-close benchmark (BENCHMARKS.md). SQLite: all of them in
/// one call on the connection's thread.
pub trait LineWriter {
    fn insert_lines(&mut self, rows: Vec<LineInsert>) -> BoxFuture<'_, QueryResult<()>>;
}

/// The PostgreSQL statement of [`LineWriter`]: exact decimals and instants travel as text and
/// are cast by the server, so the arrays need no custom array types.
const INSERT_LINES_UNNEST: &str = "INSERT INTO invoice_lines (tenant_id, invoice_id, line_number, vendor, service, meter, unit, \
        quantity, unrounded_amount, amount, adjusts_period_start, adjusts_period_end, adjusts_invoice_id, \
        adjusts_invoice_number) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::text[], \
        $8::text[]::numeric[], $9::text[]::numeric[], $10::text[]::numeric[], $11::text[]::timestamptz[], \
        $12::text[]::timestamptz[], $13::text[], $14::text[])";

impl LineWriter for AsyncPgConnection {
    fn insert_lines(&mut self, rows: Vec<LineInsert>) -> BoxFuture<'_, QueryResult<()>> {
        Box::pin(async move {
            let mut shared: &AsyncPgConnection = self;
            shared.insert_lines(rows).await
        })
    }
}

/// On a shared connection, so the insert can go out pipelined with other statements.
impl LineWriter for &AsyncPgConnection {
    fn insert_lines(&mut self, rows: Vec<LineInsert>) -> BoxFuture<'_, QueryResult<()>> {
        use diesel::sql_types::{Array, Integer, Nullable, Text};
        let instant = |t: &Option<DbTime>| {
            t.as_ref()
                .map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        };
        let query = diesel::sql_query(INSERT_LINES_UNNEST)
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.tenant_id.clone()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                rows.iter()
                    .map(|r| r.invoice_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Integer>, _>(rows.iter().map(|r| r.line_number).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.vendor).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.service.clone()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.meter.clone()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.unit.clone()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                rows.iter()
                    .map(|r| r.quantity.0.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                rows.iter()
                    .map(|r| r.unrounded_amount.0.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                rows.iter()
                    .map(|r| r.amount.0.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| instant(&r.adjusts_period_start))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| instant(&r.adjusts_period_end))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.adjusts_invoice_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.adjusts_invoice_number.clone())
                    .collect::<Vec<_>>(),
            )
            .keep_prepared();
        Box::pin(async move {
            query.execute(self).await?;
            Ok(())
        })
    }
}

impl LineWriter for SqliteConn {
    fn insert_lines(&mut self, rows: Vec<LineInsert>) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for chunk in rows.chunks(LINES_PER_INSERT) {
                diesel::RunQueryDsl::execute(
                    diesel::insert_into(invoice_lines::table).values(chunk),
                    conn,
                )?;
            }
            Ok(())
        })
    }
}

for_each_backend! {
    use super::{InvoiceRow, LineInsert, LineRow, LineWriter, invoice_from_row, line_from_row};

    /// Stores an invoice and its lines; a close gives it its number last ([`set_number`]), under
    /// the ledger lock.
    pub async fn insert(conn: &mut Conn, tenant_id: &str, invoice: &Invoice) -> Result<()> {
        insert_row(conn, tenant_id, invoice).await?;
        insert_lines(conn, tenant_id, invoice).await
    }

    /// The invoice's own row, without its lines ([`insert_lines`]).
    pub async fn insert_row(conn: &mut impl Statements, tenant_id: &str, invoice: &Invoice) -> Result<()> {
        diesel::insert_into(invoices::table)
            .values((
                (
                    invoices::tenant_id.eq(tenant_id),
                    invoices::id.eq(&invoice.id),
                    invoices::customer_id.eq(&invoice.customer.id),
                    invoices::period_start.eq(DbTime(invoice.period_start)),
                    invoices::period_end.eq(DbTime(invoice.period_end)),
                    invoices::time_zone.eq(&invoice.time_zone),
                    invoices::cycle.eq(invoice.cycle.as_str()),
                    invoices::close_sequence.eq(invoice.close_sequence),
                    invoices::previous_close_sequence.eq(invoice.previous_close_sequence),
                    invoices::number_counter.eq(invoice.number_counter),
                    invoices::number.eq(&invoice.number),
                ),
                (
                    invoices::customer_external_ref.eq(&invoice.customer.external_ref),
                    invoices::customer_name.eq(&invoice.customer.display_name),
                    invoices::currency.eq(invoice.currency.code()),
                    invoices::rounding.eq(invoice.rounding.as_str()),
                    invoices::unrounded_total.eq(DbDecimal(invoice.unrounded_total)),
                    invoices::total.eq(DbDecimal(invoice.total)),
                    invoices::rounding_difference.eq(DbDecimal(invoice.rounding_difference)),
                    invoices::payment_status.eq(invoice.payment_status().as_str()),
                    invoices::paid.eq(DbDecimal(invoice.paid)),
                    invoices::finalized_at.eq(DbTime(invoice.finalized_at)),
                ),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The invoice's lines (its row is [`insert_row`]).
    pub async fn insert_lines(conn: &mut (impl Statements + LineWriter), tenant_id: &str, invoice: &Invoice) -> Result<()> {
        // One multi-row statement per chunk (was one per line: ~100 round trips per invoice).
        let rows: Vec<LineInsert> = (1..).zip(invoice.lines.iter()).map(|(n, line)| LineInsert::of(tenant_id, &invoice.id, n, line)).collect();
        conn.insert_lines(rows).await?;
        Ok(())
    }

    async fn lines_of(conn: &mut Conn, tenant_id: &str, invoice_ids: &[&str]) -> Result<Vec<(String, InvoiceLine)>> {
        let rows: Vec<LineRow> = invoice_lines::table
            .filter(invoice_lines::tenant_id.eq(tenant_id))
            .filter(invoice_lines::invoice_id.eq_any(invoice_ids))
            .order((invoice_lines::invoice_id, invoice_lines::line_number))
            .select((
                invoice_lines::invoice_id,
                (invoice_lines::vendor, invoice_lines::service, invoice_lines::meter, invoice_lines::unit),
                (invoice_lines::quantity, invoice_lines::unrounded_amount, invoice_lines::amount),
                (
                    invoice_lines::adjusts_period_start,
                    invoice_lines::adjusts_period_end,
                    invoice_lines::adjusts_invoice_id,
                    invoice_lines::adjusts_invoice_number,
                ),
            ))
            .load(conn)
            .await?;
        rows.into_iter().map(line_from_row).collect()
    }

    /// The invoice with its lines; NOT_FOUND for another tenant's.
    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Invoice> {
        let row: InvoiceRow = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .filter(invoices::id.eq(id))
            .select(header_columns!())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("invoice", id))?;
        let lines = lines_of(conn, tenant_id, &[id]).await?.into_iter().map(|(_, l)| l).collect();
        invoice_from_row(row, lines)
    }

    /// The customer's invoice for the period starting at `period_start`, if it was closed.
    pub async fn of_period(conn: &mut Conn, tenant_id: &str, customer_id: &str, period_start: DateTime<Utc>) -> Result<Option<Invoice>> {
        let id: Option<String> = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .filter(invoices::customer_id.eq(customer_id))
            .filter(invoices::period_start.eq(DbTime(period_start)))
            .select(invoices::id)
            .first(conn)
            .await
            .optional()?;
        match id {
            Some(id) => get(conn, tenant_id, &id).await.map(Some),
            None => Ok(None),
        }
    }

    /// The customer's closed periods and their invoices, to name on adjustment lines.
    pub async fn priors(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<Vec<PriorInvoice>> {
        let rows: Vec<(DbTime, DbTime, String, Option<String>)> = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .filter(invoices::customer_id.eq(customer_id))
            .order(invoices::period_start)
            .select((invoices::period_start, invoices::period_end, invoices::id, invoices::number))
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(start, end, id, number)| PriorInvoice {
                period_start: start.0,
                period_end: end.0,
                invoice: InvoiceRef { id, number },
            })
            .collect())
    }

    /// A page of invoices in id (creation) order, with their lines.
    pub async fn list(conn: &mut Conn, tenant_id: &str, filter: &InvoiceFilter, page: &PageRequest) -> Result<Page<Invoice>> {
        let mut query = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .select(header_columns!())
            .order(invoices::id)
            .limit(page.fetch_limit())
            .into_boxed();
        if let Some(customer_id) = &filter.customer_id {
            query = query.filter(invoices::customer_id.eq(customer_id));
        }
        if let Some(start) = filter.period_start {
            query = query.filter(invoices::period_start.eq(DbTime(start)));
        }
        if let Some(status) = filter.status {
            query = query.filter(invoices::payment_status.eq(status.as_str()));
        }
        if let Some(after) = &page.after {
            query = query.filter(invoices::id.gt(after));
        }
        let rows: Vec<InvoiceRow> = query.load(conn).await?;
        let out = with_lines(conn, tenant_id, rows).await?;
        Ok(page.page(out, |i| &i.id))
    }

    /// Invoices of `rows`, in their order, with their lines.
    async fn with_lines(conn: &mut Conn, tenant_id: &str, rows: Vec<InvoiceRow>) -> Result<Vec<Invoice>> {
        let ids: Vec<String> = rows.iter().map(|r| r.0.0.clone()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let lines = lines_of(conn, tenant_id, &id_refs).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut by_id: std::collections::HashMap<String, Vec<InvoiceLine>> = std::collections::HashMap::new();
        for (id, line) in lines {
            by_id.entry(id).or_default().push(line);
        }
        for row in rows {
            let own = by_id.remove(&row.0.0).unwrap_or_default();
            out.push(invoice_from_row(row, own)?);
        }
        Ok(out)
    }

    /// The customer's newest invoices (ids are time-ordered), newest first, with their lines:
    /// up to `limit` of those created before the invoice `before` (None: the newest).
    pub async fn latest(conn: &mut Conn, tenant_id: &str, customer_id: &str, before: Option<&str>, limit: i64) -> Result<Vec<Invoice>> {
        let mut query = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .filter(invoices::customer_id.eq(customer_id))
            .select(header_columns!())
            .order(invoices::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(invoices::id.lt(before));
        }
        let rows: Vec<InvoiceRow> = query.load(conn).await?;
        with_lines(conn, tenant_id, rows).await
    }

    /// At most `limit` numbered invoices with counters after `after`, in counter order (which is
    /// commit order: the counter row stays locked until the invoice commits); one customer's
    /// when `customer_id` is set.
    pub async fn numbered_after(conn: &mut Conn, tenant_id: &str, customer_id: Option<&str>, after: i64, limit: i64) -> Result<Vec<Invoice>> {
        let mut query = invoices::table
            .filter(invoices::tenant_id.eq(tenant_id))
            .filter(invoices::number_counter.gt(after))
            .select(header_columns!())
            .order(invoices::number_counter)
            .limit(limit)
            .into_boxed();
        if let Some(customer_id) = customer_id {
            query = query.filter(invoices::customer_id.eq(customer_id));
        }
        let rows: Vec<InvoiceRow> = query.load(conn).await?;
        with_lines(conn, tenant_id, rows).await
    }

    /// The tenant's last committed invoice number counter (0 before its first).
    pub async fn last_number(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        Ok(invoice_number_sequences::table
            .find(tenant_id)
            .select(invoice_number_sequences::last_number)
            .first(conn)
            .await
            .optional()?
            .unwrap_or(0))
    }

    /// The invoice's total, paid sum and currency, locked until the transaction ends on
    /// PostgreSQL (SQLite has one writer).
    pub async fn lock_for_payment(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Invoice> {
        if IS_POSTGRES {
            diesel::sql_query("SELECT 1 FROM invoices WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind::<diesel::sql_types::Text, _>(tenant_id)
                .bind::<diesel::sql_types::Text, _>(id)
                .keep_prepared()
                .execute(conn)
                .await?;
        }
        get(conn, tenant_id, id).await
    }

    /// Gives a stored invoice its number: written last in a close, under the ledger lock, with
    /// the counter just taken.
    pub async fn set_number(conn: &mut Conn, tenant_id: &str, id: &str, counter: i64, number: &str) -> Result<()> {
        let changed = diesel::update(invoices::table.find((tenant_id, id)))
            .filter(invoices::number_counter.is_null())
            .set((invoices::number_counter.eq(counter), invoices::number.eq(number)))
            .execute(conn)
            .await?;
        if changed != 1 {
            return Err(crate::domain::error::Error::Internal(format!("invoice {id} could not take number {number}")));
        }
        Ok(())
    }

    pub async fn set_paid(conn: &mut Conn, tenant_id: &str, id: &str, paid: rust_decimal::Decimal, status: PaymentStatus) -> Result<()> {
        diesel::update(invoices::table.find((tenant_id, id)))
            .set((invoices::paid.eq(DbDecimal(paid)), invoices::payment_status.eq(status.as_str())))
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Store {
    /// The invoice with its lines; NOT_FOUND for another tenant's.
    pub async fn invoice(&self, tenant_id: &str, id: &str) -> Result<Invoice> {
        dispatch!(self, read, self::get(tenant_id, id))
    }

    /// The customer's newest invoices, newest first (see [`latest`](self::pg::latest)).
    pub async fn latest_invoices(
        &self,
        tenant_id: &str,
        customer_id: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Invoice>> {
        dispatch!(
            self,
            read,
            self::latest(tenant_id, customer_id, before, limit)
        )
    }

    pub async fn list_invoices(
        &self,
        tenant_id: &str,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        dispatch!(self, read, self::list(tenant_id, filter, page))
    }

    /// At most `limit` numbered invoices after counter `after`, in counter order.
    pub async fn invoices_numbered_after(
        &self,
        tenant_id: &str,
        customer_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Invoice>> {
        dispatch!(
            self,
            read,
            self::numbered_after(tenant_id, customer_id, after, limit)
        )
    }

    /// The tenant's last committed invoice number counter (0 before its first).
    pub async fn last_invoice_number(&self, tenant_id: &str) -> Result<i64> {
        dispatch!(self, read, self::last_number(tenant_id))
    }
}
