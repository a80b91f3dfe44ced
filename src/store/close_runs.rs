//! Tenant-wide close runs and their progress (resumed after the last customer done).
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::invoicing_schema::close_runs;
use super::sql_types::DbTime;
use super::{dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::{CloseRun, CloseRunStatus};
use crate::domain::work_queues::CloseRunQueue;

type RunRow = (
    String,
    DbTime,
    String,
    i32,
    i32,
    i32,
    Option<String>,
    Option<String>,
    DbTime,
    Option<DbTime>,
);

fn from_row(row: RunRow) -> Result<CloseRun> {
    let (id, as_of, status, planned, done, closed, cursor, error, started, finished) = row;
    Ok(CloseRun {
        id,
        as_of: as_of.0,
        status: CloseRunStatus::parse_stored(&status)?,
        customers_planned: planned,
        customers_done: done,
        invoices_closed: closed,
        cursor_customer_id: cursor,
        last_error: error,
        started_at: started.0,
        finished_at: finished.map(|f| f.0),
    })
}

for_each_backend! {
    use super::{RunRow, from_row};

    pub async fn get(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<CloseRun>> {
        let row: Option<RunRow> = close_runs::table
            .find((tenant_id, id))
            .select((
                close_runs::id,
                close_runs::as_of,
                close_runs::status,
                close_runs::customers_planned,
                close_runs::customers_done,
                close_runs::invoices_closed,
                close_runs::cursor_customer_id,
                close_runs::last_error,
                close_runs::started_at,
                close_runs::finished_at,
            ))
            .first(conn)
            .await
            .optional()?;
        row.map(from_row).transpose()
    }

    pub async fn insert(conn: &mut Conn, tenant_id: &str, run: &CloseRun) -> Result<()> {
        diesel::insert_into(close_runs::table)
            .values((
                close_runs::tenant_id.eq(tenant_id),
                close_runs::id.eq(&run.id),
                close_runs::as_of.eq(DbTime(run.as_of)),
                close_runs::status.eq(run.status.as_str()),
                close_runs::customers_planned.eq(run.customers_planned),
                close_runs::customers_done.eq(run.customers_done),
                close_runs::invoices_closed.eq(run.invoices_closed),
                close_runs::cursor_customer_id.eq(&run.cursor_customer_id),
                close_runs::last_error.eq(&run.last_error),
                close_runs::started_at.eq(DbTime(run.started_at)),
                close_runs::finished_at.eq(run.finished_at.map(DbTime)),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Records the run's progress.
    pub async fn update(conn: &mut Conn, tenant_id: &str, run: &CloseRun) -> Result<()> {
        let changed = diesel::update(close_runs::table.find((tenant_id, &run.id)))
            .set((
                close_runs::status.eq(run.status.as_str()),
                close_runs::customers_planned.eq(run.customers_planned),
                close_runs::customers_done.eq(run.customers_done),
                close_runs::invoices_closed.eq(run.invoices_closed),
                close_runs::cursor_customer_id.eq(&run.cursor_customer_id),
                close_runs::last_error.eq(&run.last_error),
                close_runs::finished_at.eq(run.finished_at.map(DbTime)),
            ))
            .execute(conn)
            .await?;
        if changed != 1 {
            return Err(Error::Internal(format!("close run {} vanished ({})", run.id, Utc::now())));
        }
        Ok(())
    }

    /// Unfinished runs (running or interrupted): (tenant, customers planned, customers done).
    pub async fn unfinished(conn: &mut Conn) -> Result<Vec<(String, i32, i32)>> {
        Ok(close_runs::table
            .filter(close_runs::status.eq(CloseRunStatus::Running.as_str()))
            .select((
                close_runs::tenant_id,
                close_runs::customers_planned,
                close_runs::customers_done,
            ))
            .load(conn)
            .await?)
    }
}

impl super::Store {
    /// Unfinished close runs per tenant (for `/metrics`).
    pub async fn close_run_queues(&self) -> Result<Vec<CloseRunQueue>> {
        let runs = dispatch!(self, read, self::unfinished())?;
        Ok(CloseRunQueue::per_tenant(runs))
    }
}
