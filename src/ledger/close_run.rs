//! Tenant-wide month close: every customer whose periods are due, one close transaction per
//! invoice (see [`super::invoicing`]), in customer id order with the progress recorded as it goes
//! (at least once a second and after every round of customers), so an interrupted run resumes
//! near where it stopped: customers it closed after the last record have nothing due when
//! visited again, and their invoices are not counted twice (nor in the resumed run's count). The automatic closer
//! ([`run_closer`]) closes due periods the same way, without a run record.
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::StreamExt;

use super::{Ledger, invoicing, ledger_backends};
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::{CloseRun, CloseRunStatus};
use crate::store::dispatch;
use crate::store::schema::{customers, tenants};

/// Customers read per round of a run.
const CUSTOMERS_PER_ROUND: i64 = 100;

/// Closes a PostgreSQL close run keeps in flight (2 cores here; see BENCHMARKS.md).
const CONCURRENT_CLOSES: usize = 4;

/// A customer's due periods read at once (more are read after closing these).
const DUE_PER_READ: usize = 12;

/// A run records its progress at most this often (and after every round of customers): each
/// save is a commit of its own, which doubled the commits of a run when made per customer.
/// Resuming re-visits the customers after the saved cursor; those closed already have nothing
/// due and cost one read each.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

ledger_backends! {
    /// Up to `limit` of the tenant's customer ids after `after`, in id order.
    pub async fn customer_ids(conn: &mut Conn, tenant_id: &str, after: Option<String>, limit: i64) -> Result<Vec<String>> {
        let mut query = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .select(customers::id)
            .order(customers::id)
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(customers::id.gt(after));
        }
        Ok(query.load(conn).await?)
    }

    pub async fn customer_count(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        Ok(customers::table.filter(customers::tenant_id.eq(tenant_id)).count().get_result(conn).await?)
    }

    pub async fn tenant_ids(conn: &mut Conn) -> Result<Vec<String>> {
        Ok(tenants::table.select(tenants::id).order(tenants::id).load(conn).await?)
    }

    pub async fn get_run(conn: &mut Conn, tenant_id: &str, id: &str) -> Result<Option<CloseRun>> {
        q::close_runs::get(conn, tenant_id, id).await
    }

    /// The stored run, or `fresh` recorded as new.
    pub async fn start_run(conn: &mut Conn, tenant_id: &str, fresh: &CloseRun) -> Result<CloseRun> {
        q::close_runs::insert(conn, tenant_id, fresh).await?;
        q::close_runs::get(conn, tenant_id, &fresh.id)
            .await?
            .ok_or_else(|| Error::Internal(format!("close run {} vanished", fresh.id)))
    }

    pub async fn save_run(conn: &mut Conn, tenant_id: &str, run: &CloseRun) -> Result<()> {
        q::close_runs::update(conn, tenant_id, run).await
    }
}

/// What closing one customer's due periods came to.
struct CustomerClosed {
    invoices: i32,
    error: Option<Error>,
}

impl Ledger {
    /// Customers a close run closes at once: on PostgreSQL closes of different customers read
    /// and sum their charges side by side and queue only for the ledger lock and the invoice
    /// number; SQLite writes one transaction at a time.
    fn concurrent_closes(&self) -> usize {
        if self.store.postgres_url().is_some() {
            CONCURRENT_CLOSES
        } else {
            1
        }
    }

    /// Closes the customer's `due` periods at `as_of` (read with its round: [`Ledger::due_counts`]),
    /// oldest first, then any read after them.
    async fn close_due(
        &self,
        tenant_id: &str,
        customer_id: &str,
        as_of: DateTime<Utc>,
        due: Result<usize>,
    ) -> CustomerClosed {
        let mut invoices = 0;
        let failed = |invoices, error: Error| CustomerClosed {
            invoices,
            error: Some(error),
        };
        let mut due = match due {
            Ok(due) => due,
            Err(error) => return failed(invoices, error),
        };
        loop {
            for _ in 0..due {
                match self
                    .close_billing_period(tenant_id, customer_id, None, as_of, None)
                    .await
                {
                    Ok(_) => invoices += 1,
                    // Not due after all (another closer got there first): done.
                    Err(Error::FailedPrecondition { .. }) => {
                        return CustomerClosed {
                            invoices,
                            error: None,
                        };
                    }
                    Err(error) => return failed(invoices, error),
                }
            }
            if due < DUE_PER_READ {
                return CustomerClosed {
                    invoices,
                    error: None,
                };
            }
            due = match self
                .due_periods(tenant_id, customer_id, as_of, DUE_PER_READ)
                .await
            {
                Ok(periods) => periods.len(),
                Err(error) => return failed(invoices, error),
            };
        }
    }

    /// How many periods each of `ids` may close at `as_of`, read for all of them at once.
    async fn due_counts(
        &self,
        tenant_id: &str,
        ids: &[String],
        as_of: DateTime<Utc>,
    ) -> Result<Vec<(String, Result<usize>)>> {
        dispatch!(
            self.store,
            read,
            invoicing::due_counts(tenant_id, ids, as_of, DUE_PER_READ)
        )
    }

    /// Runs (or resumes) the tenant's close run `run_id` as of its start, calling `progress`
    /// with the run after each customer; the finished run.
    pub async fn close_run(
        &self,
        tenant_id: &str,
        run_id: &str,
        now: DateTime<Utc>,
        mut progress: impl FnMut(&CloseRun),
    ) -> Result<CloseRun> {
        let planned = dispatch!(self.store, read, self::customer_count(tenant_id))?;
        let fresh = CloseRun {
            id: run_id.to_string(),
            as_of: now,
            status: CloseRunStatus::Running,
            customers_planned: i32::try_from(planned).unwrap_or(i32::MAX),
            customers_done: 0,
            invoices_closed: 0,
            cursor_customer_id: None,
            last_error: None,
            started_at: now,
            finished_at: None,
        };
        let mut run = dispatch!(self.store, write, self::start_run(tenant_id, &fresh))?;
        match run.status {
            CloseRunStatus::Succeeded => {
                progress(&run);
                return Ok(run);
            }
            // Customers that failed are behind the cursor: start over (closed ones are cheap).
            CloseRunStatus::Failed => {
                run.cursor_customer_id = None;
                run.customers_done = 0;
                run.last_error = None;
                run.finished_at = None;
            }
            CloseRunStatus::Running => {}
        }
        run.status = CloseRunStatus::Running;
        let mut failed = false;
        let mut saved_at = std::time::Instant::now();
        loop {
            let ids = dispatch!(
                self.store,
                read,
                self::customer_ids(
                    tenant_id,
                    run.cursor_customer_id.clone(),
                    CUSTOMERS_PER_ROUND
                )
            )?;
            if ids.is_empty() {
                break;
            }
            let round = ids.len();
            let as_of = run.as_of;
            let due = self.due_counts(tenant_id, &ids, as_of).await?;
            // Closes side by side, their results taken in id order (the cursor only moves past
            // customers whose close has finished).
            let mut closes = futures::stream::iter(due)
                .map(|(id, due)| async move {
                    let closed = self.close_due(tenant_id, &id, as_of, due).await;
                    (id, closed)
                })
                .buffered(self.concurrent_closes());
            let mut n = 0;
            let mut interrupted = None;
            while let Some((id, closed)) = closes.next().await {
                // The closes in flight finish; the cursor stays before the interrupted customer.
                if interrupted.is_some() {
                    continue;
                }
                n += 1;
                run.invoices_closed += closed.invoices;
                match closed.error {
                    // The database went away under the close (a restart, a failover, a
                    // terminated connection): no failure of the customer's. The call answers
                    // UNAVAILABLE and the run stays RUNNING from its last saved cursor, so the
                    // client's retry with the request id resumes it (customers closed since
                    // then have nothing due when visited again).
                    Some(error @ Error::Unavailable(..)) => {
                        interrupted = Some(error);
                        continue;
                    }
                    Some(error) => {
                        let error = format!("customer {id}: {error}");
                        tracing::warn!(tenant_id, run_id, %error, "close run: a customer could not be closed");
                        run.last_error = Some(error);
                        failed = true;
                    }
                    None => {}
                }
                run.customers_done += 1;
                run.customers_planned = run.customers_planned.max(run.customers_done);
                run.cursor_customer_id = Some(id);
                if n == round || saved_at.elapsed() >= SAVE_EVERY {
                    dispatch!(self.store, write, self::save_run(tenant_id, &run))?;
                    saved_at = std::time::Instant::now();
                }
                progress(&run);
            }
            if let Some(error) = interrupted {
                return Err(error);
            }
        }
        run.status = if failed {
            CloseRunStatus::Failed
        } else {
            CloseRunStatus::Succeeded
        };
        run.finished_at = Some(Utc::now());
        dispatch!(self.store, write, self::save_run(tenant_id, &run))?;
        progress(&run);
        Ok(run)
    }

    /// One pass of the automatic closer: every tenant's due periods as of `now`.
    pub async fn close_due_periods(&self, now: DateTime<Utc>) -> Result<ClosePass> {
        let mut pass = ClosePass::default();
        for tenant_id in dispatch!(self.store, read, self::tenant_ids())? {
            let mut after = None;
            loop {
                let ids = dispatch!(
                    self.store,
                    read,
                    self::customer_ids(&tenant_id, after.clone(), CUSTOMERS_PER_ROUND)
                )?;
                let Some(last) = ids.last().cloned() else {
                    break;
                };
                for (id, due) in self.due_counts(&tenant_id, &ids, now).await? {
                    let result = self.close_due(&tenant_id, &id, now, due).await;
                    pass.invoices += result.invoices as usize;
                    if let Some(error) = result.error {
                        pass.failed_customers += 1;
                        tracing::warn!(tenant_id, customer_id = %id, %error, "automatic close failed; retried next pass");
                    }
                }
                after = Some(last);
            }
        }
        Ok(pass)
    }
}

/// What one pass of the automatic closer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClosePass {
    /// Invoices finalized.
    pub invoices: usize,
    /// Customers with a due period that could not be closed (retried the next pass).
    pub failed_customers: usize,
}

/// One pass of the automatic closer, counted in `/metrics`.
pub async fn close_pass(ledger: &Ledger) -> Result<ClosePass> {
    use crate::telemetry::metrics::{
        AUTOMATIC_CLOSE_FAILURES, AUTOMATIC_CLOSE_LAST_SUCCESS, AUTOMATIC_CLOSES,
    };
    let pass = ledger.close_due_periods(Utc::now()).await?;
    metrics::counter!(AUTOMATIC_CLOSES).increment(pass.invoices as u64);
    metrics::gauge!(AUTOMATIC_CLOSE_FAILURES).set(pass.failed_customers as f64);
    if pass.failed_customers == 0 {
        metrics::gauge!(AUTOMATIC_CLOSE_LAST_SUCCESS).set(Utc::now().timestamp() as f64);
    }
    Ok(pass)
}

/// The automatic closer: closes every period whose grace has passed, every `every`, until
/// `stop` turns true. Closing is idempotent and serialized by the ledger lock, so replicas
/// running it side by side close each period once.
pub async fn run_closer(
    ledger: std::sync::Arc<Ledger>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    super::periodic::every(every, stop, || {
        let ledger = ledger.clone();
        async move {
            match close_pass(&ledger).await {
                Ok(ClosePass { invoices: 0, .. }) => {}
                Ok(pass) => tracing::info!(
                    invoices = pass.invoices,
                    failed_customers = pass.failed_customers,
                    "automatic close finalized invoices"
                ),
                Err(error) => tracing::warn!(%error, "automatic close pass failed"),
            }
        }
    })
    .await
}
