//! A close's statements in three steps, per backend. PostgreSQL sends each step's statements
//! pipelined on the connection (diesel-async pipelines what is sent on `&AsyncPgConnection`),
//! one round trip a step where they cost one each; SQLite runs them one after the other on its
//! thread, where a statement costs no round trip.
//!
//! On this 2-vCPU machine a close's gateway and server CPU went mostly to the kernel's work
//! around round trips (task switches, socket wake-ups; BENCHMARKS.md, session 13): a close made
//! ~16 of them, then 6 (BEGIN, these three, the exposure write, COMMIT; the pool's check only
//! for a connection idle a while, see `store::pool`): the 1,000-invoice benchmark run's median
//! went from 6.8 s to 4.9 s, with 27% less CPU (session 14). Now 5: the exposure moves with
//! step 3 (`write_and_lock`), so from the ledger lock to the commit the server waits for the
//! gateway once. A statement's fixed cost (bind, plan check, executor start, the reply's
//! send) was still ~40% of PostgreSQL's CPU in a close (perf, session 15): fewer statements
//! count as well as fewer round trips.
//!
//! The server runs pipelined statements in the order they arrive, and they arrive in the order
//! `try_join!` first polls their futures: diesel-async 0.9 sends a statement on its first poll,
//! and one not yet prepared holds the connection's statement cache (a fair tokio mutex) until
//! it is, so the ones polled after it wait their turn (see `store::credit`). Re-check on a
//! diesel-async upgrade.
use chrono::NaiveDate;
use diesel::OptionalExtension;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use super::{Numbered, Plan, SerialStarted, plan_of};
use crate::domain::error::{Error, Result};
use crate::domain::invoice_groups::{ChargeGroup, CloseBounds, PeriodCharges};
use crate::domain::invoice_number::COUNTER_DIGITS;
use crate::domain::invoice_record::{CloseChain, Invoice};
use crate::domain::money::Currency;
use crate::domain::payment::Exposure;
use crate::domain::spend::DayRange;
use crate::ledger::{pg_queries, sqlite_queries};
use crate::store::SqliteConn;
use crate::store::prepared::KeepPrepared;

/// The charges a close bills: the period's own, summed apart when they could be, and the groups.
pub(super) type ChargeReads = (PeriodCharges, Vec<ChargeGroup>);

/// What an invoice to be numbered is numbered with: its id and `number_stem`.
pub(super) type NumberRequest<'a> = Option<(&'a str, String)>;

/// Where a close starts ([`CloseSteps::lock_and_plan`]).
pub(super) struct Started {
    /// The last committed ledger sequence when the locks were asked for.
    pub(super) last_sequence: i64,
    /// The tenant's ledger lock row existed (it is never removed once made): the close's serial
    /// step will find it, and on PostgreSQL may move the exposure in the same round trip.
    pub(super) ledger_lock_row: bool,
    pub(super) plan: Plan,
}

pub(super) trait CloseSteps {
    /// 1. The customer's close lock and the tenant's ledger lock shared, with the last
    ///    committed ledger sequence (PostgreSQL; SQLite takes the ledger lock: it writes one
    ///    transaction at a time), then the plan's reads under them (see `close_in_tx`).
    fn lock_and_plan<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Started>>;

    /// 2. The charges from sequence `from` up to the close sequence of `bounds`: the period's
    ///    own summed when it is whole local `days` of the customer's zone (the daily totals'
    ///    days) and every meter has a unit, the rest in groups (`invoice_charges`).
    fn read_charges<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        bounds: &'a CloseBounds,
        days: Option<DayRange>,
        currency: Currency,
        from: i64,
    ) -> BoxFuture<'a, Result<ChargeReads>>;

    /// 3. The close's writes (the chain moved from `chain` to `next`, the invoice, its lines),
    ///    then the start of its serial part: the tenant's ledger lock, the customer's credit
    ///    inputs read under it (None: the tenant has no lock row yet, see
    ///    `ledger_credit::apply_exposure`), when the invoice takes a number, the number, and
    ///    with `exposure` (when the lock row exists) the customer's exposure moved by it in
    ///    the store, answering the exposure after (PostgreSQL; SQLite leaves the number to
    ///    `number_invoice` and the exposure to `apply_exposure`, and answers None for both).
    ///    The writes run before the lock, so closes of different customers write side by
    ///    side; closes of a tenant queue at the lock, and every round trip under it costs the
    ///    whole run: with the exposure moved here, the serial part waits for the gateway once
    ///    (for the commit) unless a threshold is crossed.
    #[allow(clippy::too_many_arguments)]
    fn write_and_lock<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        chain: &'a CloseChain,
        next: &'a CloseChain,
        invoice: &'a Invoice,
        number: NumberRequest<'a>,
        exposure: Option<Exposure>,
    ) -> BoxFuture<'a, Result<SerialStarted>>;
}

/// The close lock statement (PostgreSQL): the customer's closes one at a time; the tenant's
/// ledger lock only from the exposure step on, so closes of different customers read and sum
/// their charges side by side. The tenant's lock is taken shared, as ledger writers take it: a
/// change of the customer's time zone (which re-buckets its daily totals under the tenant
/// alone) waits for the close, whose period sums take the totals' days in the zone it reads.
/// The last committed sequence serves as the close sequence: ledger writers commit in sequence
/// order, so every event up to it is visible to the statements that follow, and none after it
/// is read. It is read by the same statement, so as of before the locks were waited for: it may
/// precede the customer's close that was waited for, and `close_in_tx` raises it to that close's
/// sequence (every event up to that one is committed too).
///
/// The same statement turns sort-based grouping off for this transaction: the planner
/// estimates the customer's events from a run's parameterised range and so picks a sort of its
/// ~1,000 events by six keys, which cost twice the hash aggregation (1.3 against 2.5 ms a
/// 100-line close; BENCHMARKS.md, session 10). The close's other reads need no sort (its prior
/// invoices come in the order of their unique index).
const CLOSE_LOCK_PG: &str = "SELECT pg_advisory_xact_lock(hashtextextended('close:' || $1 || ':' || $2, 0)), \
     pg_advisory_xact_lock_shared(1836281959, hashtext($1)), set_config('enable_sort', 'off', true), \
     COALESCE((SELECT last_sequence FROM ledger_sequences WHERE tenant_id = $1), 0) AS last_sequence, \
     EXISTS (SELECT 1 FROM ledger_sequences WHERE tenant_id = $1) AS ledger_lock_row";

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_sequence: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ledger_lock_row: bool,
}

/// PostgreSQL takes the tenant's next invoice counter and writes it, with the number it makes,
/// on the invoice ($2) in one statement, formatting the number in SQL as
/// `format_invoice_number` does (`number_invoice` checks it; $3 is the `number_stem`). No row:
/// the tenant has no counter yet.
fn number_sql() -> String {
    format!(
        "WITH taken AS (UPDATE invoice_number_sequences SET last_number = last_number + 1 \
                         WHERE tenant_id = $1 RETURNING last_number), \
              numbered AS (UPDATE invoices SET number_counter = taken.last_number, \
                number = $3 || lpad(taken.last_number::text, \
                                    greatest({COUNTER_DIGITS}, length(taken.last_number::text)), '0') \
                FROM taken \
               WHERE invoices.tenant_id = $1 AND invoices.id = $2 AND invoices.number_counter IS NULL \
              RETURNING invoices.number) \
         SELECT taken.last_number AS counter, numbered.number FROM taken LEFT JOIN numbered ON true"
    )
}

impl CloseSteps for AsyncPgConnection {
    fn lock_and_plan<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Started>> {
        use diesel::sql_types::Text;
        use pg_queries as q;
        Box::pin(async move {
            let conn: &AsyncPgConnection = self;
            let lock = diesel::sql_query(CLOSE_LOCK_PG)
                .bind::<Text, _>(tenant_id)
                .bind::<Text, _>(customer_id)
                .keep_prepared();
            // The first usage day matters only before the customer's first close; asked for
            // every close (one index probe) rather than a round trip later for the first.
            let (locked, customer, settings, chain, first_day) = futures::try_join!(
                async { Ok::<Locked, Error>(lock.get_result(&mut &*conn).await?) },
                async { q::customers::billing_profile(&mut &*conn, tenant_id, customer_id).await },
                async { q::invoice_settings::with_time_zone(&mut &*conn, tenant_id).await },
                async { q::customer_billing::get(&mut &*conn, tenant_id, customer_id).await },
                async { super::pg::first_usage_day(&mut &*conn, tenant_id, customer_id).await },
            )?;
            let first_day: Option<NaiveDate> = chain.last.is_none().then_some(first_day).flatten();
            Ok(Started {
                last_sequence: locked.last_sequence,
                ledger_lock_row: locked.ledger_lock_row,
                plan: plan_of(customer, settings, chain, first_day)?,
            })
        })
    }

    fn read_charges<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        bounds: &'a CloseBounds,
        days: Option<DayRange>,
        currency: Currency,
        from: i64,
    ) -> BoxFuture<'a, Result<ChargeReads>> {
        use crate::ledger::invoice_charges::{period_sums_of, pg as charges};
        Box::pin(async move {
            let conn: &AsyncPgConnection = self;
            let groups = |period: PeriodCharges| async move {
                charges::groups(&mut &*conn, tenant_id, customer_id, bounds, from, &period).await
            };
            let Some(days) = days else {
                return Ok((
                    PeriodCharges::InGroups,
                    groups(PeriodCharges::InGroups).await?,
                ));
            };
            // The groups read as though the sums will do (the statement's shape is all
            // `groups` takes of `PeriodCharges`); read again, all of them, if they will not.
            let (rows, outside) = futures::try_join!(
                async {
                    charges::period_sum_rows(&mut &*conn, tenant_id, customer_id, bounds, days)
                        .await
                },
                groups(PeriodCharges::Summed(Vec::new())),
            )?;
            match period_sums_of(rows, currency, bounds.period_start)? {
                Some(sums) => Ok((PeriodCharges::Summed(sums), outside)),
                None => Ok((
                    PeriodCharges::InGroups,
                    groups(PeriodCharges::InGroups).await?,
                )),
            }
        })
    }

    fn write_and_lock<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        chain: &'a CloseChain,
        next: &'a CloseChain,
        invoice: &'a Invoice,
        number: NumberRequest<'a>,
        exposure: Option<Exposure>,
    ) -> BoxFuture<'a, Result<SerialStarted>> {
        use diesel::sql_types::Text;
        use pg_queries as q;
        Box::pin(async move {
            let conn: &AsyncPgConnection = self;
            let ids = [customer_id.to_string()];
            // Polled after the lock and the reads, so sent behind them: under the lock.
            let numbered = async {
                let Some((invoice_id, stem)) = number else {
                    return Ok(None);
                };
                let taken = diesel::sql_query(number_sql())
                    .bind::<Text, _>(tenant_id)
                    .bind::<Text, _>(invoice_id)
                    .bind::<Text, _>(stem)
                    .keep_prepared()
                    .get_result::<Numbered>(&mut &*conn)
                    .await
                    .optional()?;
                Ok::<_, Error>(taken)
            };
            // Polled last: under the lock, after the credit reads (which so read the state
            // before it). Every statement of this step is kept prepared, so the step is one
            // round trip; one left unprepared would cost a prepare round trip of its own.
            let moved = async {
                match exposure {
                    Some(change) => Ok(Some(
                        crate::store::credit::pg_move_exposure(
                            conn,
                            tenant_id,
                            customer_id,
                            change,
                        )
                        .await?,
                    )),
                    None => Ok::<_, Error>(None),
                }
            };
            let ((), (), (), locked, numbered, moved) = futures::try_join!(
                async {
                    q::customer_billing::advance(&mut &*conn, tenant_id, customer_id, chain, next)
                        .await
                },
                async { q::invoices::insert_row(&mut &*conn, tenant_id, invoice).await },
                async { q::invoices::insert_lines(&mut &*conn, tenant_id, invoice).await },
                crate::store::credit::pg_inputs_under_ledger_lock(conn, tenant_id, &ids),
                numbered,
                moved,
            )?;
            Ok((locked, numbered, moved))
        })
    }
}

impl CloseSteps for SqliteConn {
    fn lock_and_plan<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Started>> {
        use sqlite_queries as q;
        Box::pin(async move {
            let sequence = q::charges::lock_ledger(self, tenant_id).await?;
            Ok(Started {
                last_sequence: sequence,
                // Taken (and made where missing) just now; unused here (see `write_and_lock`).
                ledger_lock_row: true,
                plan: super::sqlite::plan(self, tenant_id, customer_id).await?,
            })
        })
    }

    fn read_charges<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        bounds: &'a CloseBounds,
        days: Option<DayRange>,
        currency: Currency,
        from: i64,
    ) -> BoxFuture<'a, Result<ChargeReads>> {
        use crate::ledger::invoice_charges::sqlite as charges;
        Box::pin(async move {
            let sums = match days {
                Some(days) => {
                    charges::period_sums(self, tenant_id, customer_id, bounds, days, currency)
                        .await?
                }
                None => None,
            };
            let period = sums.map_or(PeriodCharges::InGroups, PeriodCharges::Summed);
            let groups =
                charges::groups(self, tenant_id, customer_id, bounds, from, &period).await?;
            Ok((period, groups))
        })
    }

    fn write_and_lock<'a>(
        &'a mut self,
        tenant_id: &'a str,
        customer_id: &'a str,
        chain: &'a CloseChain,
        next: &'a CloseChain,
        invoice: &'a Invoice,
        _number: NumberRequest<'a>,
        _exposure: Option<Exposure>,
    ) -> BoxFuture<'a, Result<SerialStarted>> {
        use sqlite_queries as q;
        Box::pin(async move {
            q::customer_billing::advance(self, tenant_id, customer_id, chain, next).await?;
            q::invoices::insert(self, tenant_id, invoice).await?;
            let locked = crate::store::credit::sqlite::inputs_under_ledger_lock(
                self,
                tenant_id,
                &[customer_id],
            )
            .await?;
            Ok((locked, None, None))
        })
    }
}
