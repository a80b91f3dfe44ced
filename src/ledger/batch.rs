//! Multi-row writes of the ledger, the one place where the dialects part ways for speed:
//! PostgreSQL gets each column as an array and UNNESTs it (one short statement per batch);
//! SQLite gets Diesel's batch INSERT, run through sync Diesel on the connection's blocking thread
//! because diesel-async cannot build Diesel's SQLite batch insert.
use diesel::result::QueryResult;
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;

use super::rows::{
    BATCH_ROWS, ChargeEventRow, UsageLineRow, charge_event_columns, usage_line_columns,
};
use crate::domain::ledger_append::{CustomerRun, Total, TotalKey};
use crate::domain::spend::rollup::RollupKey;
use crate::store::SqliteConn;
use crate::store::prepared::KeepPrepared;

/// INSERT of charge event runs: rows of (tenant, customer, first and last sequence, first and
/// last window).
macro_rules! insert_runs {
    ($tenant_id:expr, $runs:expr) => {{
        use diesel::prelude::*;
        use $crate::store::schema::charge_event_runs as r;
        let rows: Vec<_> = $runs
            .iter()
            .map(|run: &$crate::domain::ledger_append::CustomerRun| {
                (
                    r::tenant_id.eq($tenant_id),
                    r::customer_id.eq(&run.customer_id),
                    r::first_sequence.eq(run.first_sequence),
                    r::last_sequence.eq(run.last_sequence),
                    r::first_window.eq(Some($crate::store::sql_types::DbTime(run.first_window))),
                    r::last_window.eq(Some($crate::store::sql_types::DbTime(run.last_window))),
                )
            })
            .collect();
        diesel::insert_into(r::table).values(rows)
    }};
}

/// Upsert of daily totals, setting a stored row's amount and quantity to the SQL expressions
/// (of `charge_totals` and `excluded`) of `$set_sql`.
macro_rules! upsert_totals {
    ($tenant_id:expr, $totals:expr, $set_sql:expr) => {{
        let (amount_sql, quantity_sql): (&str, &str) = $set_sql;
        use diesel::prelude::*;
        use $crate::store::schema::charge_totals as t;
        use $crate::store::sql_types::{DbDecimal, Exact};
        let rows: Vec<_> = $totals
            .iter()
            .map(
                |(k, v): &(
                    $crate::domain::ledger_append::TotalKey,
                    $crate::domain::ledger_append::Total,
                )| {
                    (
                        t::tenant_id.eq($tenant_id),
                        t::customer_id.eq(&k.customer_id),
                        t::usage_date.eq(k.usage_date),
                        t::vendor.eq(k.vendor.as_str()),
                        t::service.eq(&k.service),
                        t::meter.eq(&k.meter),
                        t::amount.eq(DbDecimal(v.amount)),
                        t::quantity.eq(DbDecimal(v.quantity)),
                    )
                },
            )
            .collect();
        diesel::insert_into(t::table)
            .values(rows)
            .on_conflict((
                t::tenant_id,
                t::customer_id,
                t::usage_date,
                t::vendor,
                t::service,
                t::meter,
            ))
            .do_update()
            .set((
                t::amount.eq(diesel::dsl::sql::<Exact>(amount_sql)),
                t::quantity.eq(diesel::dsl::sql::<Exact>(quantity_sql)),
            ))
    }};
}

/// Upsert of rollup rows (see `domain::spend::rollup`), setting a stored row's figures to the
/// SQL expressions (of `charge_rollups` and `excluded`) of `$set_sql`.
macro_rules! upsert_rollups {
    ($tenant_id:expr, $rollups:expr, $set_sql:expr) => {{
        let (amount_sql, quantity_sql, events_sql, line_key_sql, unit_sql): (
            &str,
            &str,
            &str,
            &str,
            &str,
        ) = $set_sql;
        use diesel::prelude::*;
        use $crate::store::schema::charge_rollups as r;
        use $crate::store::sql_types::{DbDecimal, Exact};
        let rows: Vec<_> = $rollups
            .iter()
            .map(
                |(k, v): &(
                    $crate::domain::spend::rollup::RollupKey,
                    $crate::domain::ledger_append::Total,
                )| {
                    (
                        r::tenant_id.eq($tenant_id),
                        r::customer_id.eq(&k.customer_id),
                        r::grain.eq(k.grain.as_str()),
                        r::bucket.eq(k.bucket),
                        r::vendor.eq(k.vendor),
                        r::service.eq(&k.service),
                        r::meter.eq(&k.meter),
                        r::amount.eq(DbDecimal(v.amount)),
                        r::quantity.eq(DbDecimal(v.quantity)),
                        r::events.eq(v.events),
                        r::line_key.eq(v.line_key.map(|k| k.as_bytes().to_vec())),
                        r::unit.eq(v.unit.as_deref()),
                    )
                },
            )
            .collect();
        diesel::insert_into(r::table)
            .values(rows)
            .on_conflict((
                r::tenant_id,
                r::customer_id,
                r::grain,
                r::bucket,
                r::vendor,
                r::service,
                r::meter,
            ))
            .do_update()
            .set((
                r::amount.eq(diesel::dsl::sql::<Exact>(amount_sql)),
                r::quantity.eq(diesel::dsl::sql::<Exact>(quantity_sql)),
                r::events.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(events_sql)),
                r::line_key.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
                >(line_key_sql)),
                r::unit.eq(diesel::dsl::sql::<
                    diesel::sql_types::Nullable<diesel::sql_types::Text>,
                >(unit_sql)),
            ))
    }};
}

/// How written daily totals meet the stored values of their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TotalsWrite {
    /// The written values replace them.
    Replace,
    /// The written values are added to them.
    Add,
}

impl TotalsWrite {
    /// The SQLite SQL of the new amount and quantity: decimal text added with
    /// `mspgw_decimal_add` (see `sqlite_functions`), as SQLite's own arithmetic goes through
    /// floats. (PostgreSQL's statements are the `*_PG` constants.)
    fn set_sql(self) -> (&'static str, &'static str) {
        match self {
            TotalsWrite::Replace => ("excluded.amount", "excluded.quantity"),
            TotalsWrite::Add => (
                "mspgw_decimal_add(charge_totals.amount, excluded.amount)",
                "mspgw_decimal_add(charge_totals.quantity, excluded.quantity)",
            ),
        }
    }

    /// The same for rollup rows.
    /// A stored line key stays (any summed charge's will do); the unit is the latest write's
    /// that knows one (so a unit the vendor revised shows on the next invoice).
    fn rollup_set_sql(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            TotalsWrite::Replace => (
                "excluded.amount",
                "excluded.quantity",
                "excluded.events",
                "excluded.line_key",
                "excluded.unit",
            ),
            TotalsWrite::Add => (
                "mspgw_decimal_add(charge_rollups.amount, excluded.amount)",
                "mspgw_decimal_add(charge_rollups.quantity, excluded.quantity)",
                "charge_rollups.events + excluded.events",
                "coalesce(charge_rollups.line_key, excluded.line_key)",
                "coalesce(excluded.unit, charge_rollups.unit)",
            ),
        }
    }
}

/// Rows per multi-row statement of runs, totals and rollups (at most 12 columns: within
/// SQLite's 32766 binds).
const SMALL_ROWS: usize = 1000;

/// Usage line rows (each paired with whether its key is new) and numbered charge events.
#[derive(Default)]
struct LedgerRows {
    lines: Vec<(UsageLineRow, bool)>,
    events: Vec<ChargeEventRow>,
}

pub trait BatchWriter {
    /// The usage line rows with these keys (line keys are unique across tenants).
    fn usage_lines_by_keys(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, QueryResult<Vec<UsageLineRow>>>;
    /// Writes one ledger transaction's rows: usage lines (`fresh` marks a key not stored yet, for
    /// which a plain insert suffices) and the numbered charge events.
    fn write_ledger_rows(
        &mut self,
        lines: Vec<(UsageLineRow, bool)>,
        events: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<()>>;
    /// Inserts a write's runs of consecutive sequences.
    fn write_runs(
        &mut self,
        tenant_id: String,
        runs: Vec<CustomerRun>,
    ) -> BoxFuture<'_, QueryResult<()>>;
    /// Writes daily totals and their rollups, replacing or adding to the stored values.
    fn write_totals(
        &mut self,
        tenant_id: String,
        totals: Vec<(TotalKey, Total)>,
        rollups: Vec<(RollupKey, Total)>,
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>>;
}

impl BatchWriter for AsyncPgConnection {
    /// Keyed on the line key alone, the query can only be a primary-key probe per key, whatever
    /// the statistics say (see the `usage_line_key` migration).
    fn usage_lines_by_keys(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, QueryResult<Vec<UsageLineRow>>> {
        Box::pin(lookup_usage_lines(self, keys))
    }

    /// Every statement of the write goes out pipelined on the one connection (diesel-async
    /// pipelines queries issued through `&AsyncPgConnection`): while PostgreSQL executes one
    /// chunk, the next is being encoded and sent, so client-side encoding and server-side
    /// inserting overlap instead of taking turns.
    fn write_ledger_rows(
        &mut self,
        lines: Vec<(UsageLineRow, bool)>,
        events: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        use futures::{StreamExt, TryStreamExt};
        Box::pin(async move {
            let conn: &AsyncPgConnection = self;
            futures::stream::iter(LedgerStatement::split(LedgerRows { lines, events }))
                .map(|statement| statement.execute(conn))
                .buffered(PIPELINE_DEPTH)
                .try_for_each(|_| futures::future::ok(()))
                .await
        })
    }

    /// One UNNEST statement of constant text (prepared once per connection) instead of
    /// multi-row VALUES, whose text (and plan) was new for every row count: a period-boundary
    /// batch of 1,000 fees spent 76 ms in rollup upserts that way (BENCHMARKS.md).
    fn write_runs(
        &mut self,
        tenant_id: String,
        runs: Vec<CustomerRun>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        use crate::store::sql_types::{DbTime, Instant};
        use diesel::sql_types::{Array, BigInt, Text};
        let query = diesel::sql_query(INSERT_RUNS_PG)
            .bind::<Text, _>(tenant_id)
            .bind::<Array<Text>, _>(column(&runs, |r| r.customer_id.clone()))
            .bind::<Array<BigInt>, _>(column(&runs, |r| r.first_sequence))
            .bind::<Array<BigInt>, _>(column(&runs, |r| r.last_sequence))
            .bind::<Array<Instant>, _>(column(&runs, |r| DbTime(r.first_window)))
            .bind::<Array<Instant>, _>(column(&runs, |r| DbTime(r.last_window)))
            .keep_prepared();
        Box::pin(async move {
            diesel_async::RunQueryDsl::execute(query, self).await?;
            Ok(())
        })
    }

    fn write_totals(
        &mut self,
        tenant_id: String,
        totals: Vec<(TotalKey, Total)>,
        rollups: Vec<(RollupKey, Total)>,
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>> {
        use diesel::sql_types::{Array, BigInt, Binary, Date, Nullable, Text};
        let (totals_sql, rollups_sql) = match how {
            TotalsWrite::Add => (ADD_TOTALS_PG, ADD_ROLLUPS_PG),
            TotalsWrite::Replace => (REPLACE_TOTALS_PG, REPLACE_ROLLUPS_PG),
        };
        let totals_query = diesel::sql_query(totals_sql)
            .bind::<Text, _>(tenant_id.clone())
            .bind::<Array<Text>, _>(column(&totals, |(k, _)| k.customer_id.clone()))
            .bind::<Array<Date>, _>(column(&totals, |(k, _)| k.usage_date))
            .bind::<Array<Text>, _>(column(&totals, |(k, _)| k.vendor.as_str()))
            .bind::<Array<Text>, _>(column(&totals, |(k, _)| k.service.clone()))
            .bind::<Array<Text>, _>(column(&totals, |(k, _)| k.meter.clone()))
            .bind::<Array<Text>, _>(column(&totals, |(_, t)| t.amount.to_string()))
            .bind::<Array<Text>, _>(column(&totals, |(_, t)| t.quantity.to_string()))
            .keep_prepared();
        let rollups_query = diesel::sql_query(rollups_sql)
            .bind::<Text, _>(tenant_id)
            .bind::<Array<Text>, _>(column(&rollups, |(k, _)| k.customer_id.clone()))
            .bind::<Array<Text>, _>(column(&rollups, |(k, _)| k.grain.as_str()))
            .bind::<Array<Date>, _>(column(&rollups, |(k, _)| k.bucket))
            .bind::<Array<Text>, _>(column(&rollups, |(k, _)| k.vendor))
            .bind::<Array<Text>, _>(column(&rollups, |(k, _)| k.service.clone()))
            .bind::<Array<Text>, _>(column(&rollups, |(k, _)| k.meter.clone()))
            .bind::<Array<Text>, _>(column(&rollups, |(_, t)| t.amount.to_string()))
            .bind::<Array<Text>, _>(column(&rollups, |(_, t)| t.quantity.to_string()))
            .bind::<Array<BigInt>, _>(column(&rollups, |(_, t)| t.events))
            .bind::<Array<Nullable<Binary>>, _>(column(&rollups, |(_, t)| {
                t.line_key.map(|k| k.as_bytes().to_vec())
            }))
            .bind::<Array<Nullable<Text>>, _>(column(&rollups, |(_, t)| t.unit.clone()))
            .keep_prepared();
        Box::pin(async move {
            // Sent together: the connection pipelines them.
            let conn: &AsyncPgConnection = self;
            futures::try_join!(
                diesel_async::RunQueryDsl::execute(totals_query, &mut &*conn),
                diesel_async::RunQueryDsl::execute(rollups_query, &mut &*conn),
            )?;
            Ok(())
        })
    }
}

/// One column of `rows`, as an array bind takes it.
fn column<R, T>(rows: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

const INSERT_RUNS_PG: &str = "INSERT INTO charge_event_runs (tenant_id, customer_id, \
    first_sequence, last_sequence, first_window, last_window) SELECT $1, unnest($2::text[]), \
    unnest($3::int8[]), unnest($4::int8[]), unnest($5::timestamptz[]), unnest($6::timestamptz[])";

/// Daily totals from arrays (exact decimals travel as text), and what a stored row becomes.
macro_rules! upsert_totals_pg {
    ($set:literal) => {
        concat!(
            "INSERT INTO charge_totals (tenant_id, customer_id, usage_date, vendor, service, \
             meter, amount, quantity) SELECT $1, unnest($2::text[]), unnest($3::date[]), \
             unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), \
             unnest($7::text[]::numeric[]), unnest($8::text[]::numeric[]) \
             ON CONFLICT (tenant_id, customer_id, usage_date, vendor, service, meter) DO UPDATE SET ",
            $set
        )
    };
}

const ADD_TOTALS_PG: &str = upsert_totals_pg!(
    "amount = charge_totals.amount + excluded.amount, \
     quantity = charge_totals.quantity + excluded.quantity"
);
const REPLACE_TOTALS_PG: &str =
    upsert_totals_pg!("amount = excluded.amount, quantity = excluded.quantity");

/// Rollup rows from arrays, and what a stored row becomes.
macro_rules! upsert_rollups_pg {
    ($set:literal) => {
        concat!(
            "INSERT INTO charge_rollups (tenant_id, customer_id, grain, bucket, vendor, service, \
             meter, amount, quantity, events, line_key, unit) SELECT $1, unnest($2::text[]), \
             unnest($3::text[]), unnest($4::date[]), unnest($5::text[]), unnest($6::text[]), \
             unnest($7::text[]), unnest($8::text[]::numeric[]), unnest($9::text[]::numeric[]), \
             unnest($10::int8[]), unnest($11::bytea[]), unnest($12::text[]) \
             ON CONFLICT (tenant_id, customer_id, grain, bucket, vendor, service, meter) \
             DO UPDATE SET ",
            $set
        )
    };
}

const ADD_ROLLUPS_PG: &str = upsert_rollups_pg!(
    "amount = charge_rollups.amount + excluded.amount, \
     quantity = charge_rollups.quantity + excluded.quantity, \
     events = charge_rollups.events + excluded.events, \
     line_key = coalesce(charge_rollups.line_key, excluded.line_key), \
     unit = coalesce(excluded.unit, charge_rollups.unit)"
);
const REPLACE_ROLLUPS_PG: &str = upsert_rollups_pg!(
    "amount = excluded.amount, quantity = excluded.quantity, events = excluded.events, \
     line_key = excluded.line_key, unit = excluded.unit"
);

const LOOKUP_USAGE_LINES_PG: &str = "\
    SELECT line.* FROM unnest($1::bytea[]) AS wanted(line_key) \
    CROSS JOIN LATERAL (SELECT * FROM usage_lines \
        WHERE usage_lines.line_key = wanted.line_key LIMIT 1) AS line";

/// One primary-key probe per key, as a nested loop over the keys: the plan cannot change with
/// the table's size or statistics. `line_key = ANY($1)` can: with 5,000 keys PostgreSQL 15 chose
/// a bitmap scan over the array (~540 ms in a table of a million lines, against ~40 ms for the
/// probes) or, on a fresh table, a sequential scan.
async fn lookup_usage_lines(
    mut conn: &AsyncPgConnection,
    keys: Vec<Vec<u8>>,
) -> QueryResult<Vec<UsageLineRow>> {
    use diesel::sql_types::{Array, Binary};
    let query = diesel::sql_query(LOOKUP_USAGE_LINES_PG)
        .bind::<Array<Binary>, _>(keys)
        .keep_prepared();
    diesel_async::RunQueryDsl::load(query, &mut conn).await
}

/// Rows per pipelined statement: small enough that encoding the next chunk overlaps the
/// server's work on this one, large enough that per-statement costs stay negligible.
const PIPELINED_CHUNK_ROWS: usize = 5_000;

/// Statements in flight at once on the connection.
const PIPELINE_DEPTH: usize = 4;

enum LedgerStatement {
    /// Usage lines, upserted (`true`) or inserted.
    Lines(bool, Vec<UsageLineRow>),
    Events(Vec<ChargeEventRow>),
}

impl LedgerStatement {
    /// Inserts of new lines, upserts of known ones, then the events, at most
    /// `PIPELINED_CHUNK_ROWS` rows each.
    fn split(rows: LedgerRows) -> Vec<LedgerStatement> {
        let (new, known): (Vec<_>, Vec<_>) = rows.lines.into_iter().partition(|(_, fresh)| *fresh);
        let mut statements = Vec::new();
        for (upsert, rows) in [(false, new), (true, known)] {
            let mut rows = rows.into_iter().map(|(row, _)| row).peekable();
            while rows.peek().is_some() {
                let chunk: Vec<UsageLineRow> = rows.by_ref().take(PIPELINED_CHUNK_ROWS).collect();
                statements.push(LedgerStatement::Lines(upsert, chunk));
            }
        }
        let mut events = rows.events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<ChargeEventRow> = events.by_ref().take(PIPELINED_CHUNK_ROWS).collect();
            statements.push(LedgerStatement::Events(chunk));
        }
        statements
    }

    /// PostgreSQL takes each column as one array and UNNESTs it: one short statement per
    /// chunk instead of a VALUES list with a bind parameter per cell, which PostgreSQL parses
    /// and plans far faster. Lines known to be new get a plain INSERT, which skips ON CONFLICT's
    /// speculative insertion.
    async fn execute(self, conn: &AsyncPgConnection) -> QueryResult<usize> {
        let mut conn = conn;
        match self {
            LedgerStatement::Lines(upsert, rows) => {
                let query = usage_line_columns::Unnest {
                    columns: rows.into(),
                    conflict: if upsert {
                        usage_line_columns::on_conflict_sql()
                    } else {
                        ""
                    },
                };
                diesel_async::RunQueryDsl::execute(query, &mut conn).await
            }
            LedgerStatement::Events(rows) => {
                let query = charge_event_columns::Unnest {
                    columns: rows.into(),
                    conflict: "",
                };
                diesel_async::RunQueryDsl::execute(query, &mut conn).await
            }
        }
    }
}

impl BatchWriter for SqliteConn {
    fn usage_lines_by_keys(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, QueryResult<Vec<UsageLineRow>>> {
        use super::rows::usage_lines as ul;
        use diesel::prelude::*;
        self.spawn_blocking(move |conn| {
            let mut rows = Vec::with_capacity(keys.len());
            // Within SQLite's bind-parameter limit.
            for chunk in keys.chunks(BATCH_ROWS) {
                rows.extend(
                    ul::table
                        .filter(ul::line_key.eq_any(chunk))
                        .select(UsageLineRow::as_select())
                        .load(conn)?,
                );
            }
            Ok(rows)
        })
    }

    fn write_ledger_rows(
        &mut self,
        lines: Vec<(UsageLineRow, bool)>,
        events: Vec<ChargeEventRow>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            let lines: Vec<UsageLineRow> = lines.into_iter().map(|(row, _)| row).collect();
            for chunk in lines.chunks(BATCH_ROWS) {
                usage_line_columns::sqlite_upsert(conn, chunk)?;
            }
            for chunk in events.chunks(BATCH_ROWS) {
                charge_event_columns::sqlite_insert(conn, chunk)?;
            }
            Ok(())
        })
    }

    /// All in one call on the connection's thread: statements cost no round trip there.
    fn write_runs(
        &mut self,
        tenant_id: String,
        runs: Vec<CustomerRun>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for part in runs.chunks(SMALL_ROWS) {
                diesel::RunQueryDsl::execute(insert_runs!(&tenant_id, part), conn)?;
            }
            Ok(())
        })
    }

    fn write_totals(
        &mut self,
        tenant_id: String,
        totals: Vec<(TotalKey, Total)>,
        rollups: Vec<(RollupKey, Total)>,
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for part in totals.chunks(SMALL_ROWS) {
                let query = upsert_totals!(&tenant_id, part, how.set_sql());
                diesel::RunQueryDsl::execute(query, conn)?;
            }
            for part in rollups.chunks(SMALL_ROWS) {
                let query = upsert_rollups!(&tenant_id, part, how.rollup_set_sql());
                diesel::RunQueryDsl::execute(query, conn)?;
            }
            Ok(())
        })
    }
}
