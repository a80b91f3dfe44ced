//! Multi-row writes of the ledger, the one place where the dialects part ways for speed:
//! PostgreSQL gets each column as an array and UNNESTs it (one short statement per batch);
//! SQLite gets Diesel's batch INSERT, run through sync Diesel on the connection's blocking thread
//! because diesel-async cannot build Diesel's SQLite batch insert.
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use rust_decimal::Decimal;

use super::SqliteConn;
use super::charges::ChargeEventRow;
use super::usage_lines::UsageLineRow;
use crate::domain::ledger_append::{CustomerRun, Total, TotalKey};

/// INSERT … ON CONFLICT DO UPDATE of usage line rows.
macro_rules! upsert_usage_lines {
    ($rows:expr) => {{
        use diesel::prelude::*;
        use diesel::upsert::excluded;
        use $crate::store::schema::usage_lines as ul;
        diesel::insert_into(ul::table)
            .values($rows)
            .on_conflict(ul::line_key)
            .do_update()
            .set((
                ul::window_end.eq(excluded(ul::window_end)),
                ul::meter_name.eq(excluded(ul::meter_name)),
                ul::quantity.eq(excluded(ul::quantity)),
                ul::unit.eq(excluded(ul::unit)),
                ul::cost.eq(excluded(ul::cost)),
                ul::list_cost.eq(excluded(ul::list_cost)),
                ul::currency.eq(excluded(ul::currency)),
                ul::estimated.eq(excluded(ul::estimated)),
                ul::removed.eq(excluded(ul::removed)),
                ul::customer_id.eq(excluded(ul::customer_id)),
                ul::rated_amount.eq(excluded(ul::rated_amount)),
                ul::rated_currency.eq(excluded(ul::rated_currency)),
                ul::rule_id.eq(excluded(ul::rule_id)),
                ul::unrated_reason.eq(excluded(ul::unrated_reason)),
                ul::updated_at.eq(excluded(ul::updated_at)),
            ))
    }};
}

macro_rules! insert_charge_events {
    ($rows:expr) => {
        diesel::insert_into($crate::store::schema::charge_events::table).values($rows)
    };
}

/// INSERT of charge event runs: rows of (tenant, customer, first, last sequence).
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

/// How written daily totals meet the stored values of their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TotalsWrite {
    /// The written values replace them.
    Replace,
    /// The written values are added to them.
    Add,
}

impl TotalsWrite {
    /// The SQL of the new amount and quantity; SQLite adds decimal text with
    /// `mspgw_decimal_add` (see `sqlite_functions`), as its own arithmetic goes through floats.
    fn set_sql(self, postgres: bool) -> (&'static str, &'static str) {
        match (self, postgres) {
            (TotalsWrite::Replace, _) => ("excluded.amount", "excluded.quantity"),
            (TotalsWrite::Add, true) => (
                "charge_totals.amount + excluded.amount",
                "charge_totals.quantity + excluded.quantity",
            ),
            (TotalsWrite::Add, false) => (
                "mspgw_decimal_add(charge_totals.amount, excluded.amount)",
                "mspgw_decimal_add(charge_totals.quantity, excluded.quantity)",
            ),
        }
    }
}

/// Rows per multi-row statement of runs and totals (8 columns: within SQLite's 32766 binds).
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
    /// Sets the open charges and crossed thresholds of each customer's credit state, creating
    /// the state (inheriting the tenant's thresholds and policy) where there is none.
    fn write_credit_exposure(
        &mut self,
        tenant_id: String,
        rows: Vec<CreditExposureRow>,
    ) -> BoxFuture<'_, QueryResult<usize>>;
    /// Inserts a write's runs of consecutive sequences.
    fn write_runs(
        &mut self,
        tenant_id: String,
        runs: Vec<CustomerRun>,
    ) -> BoxFuture<'_, QueryResult<()>>;
    /// Writes daily totals, replacing or adding to the stored values.
    fn write_totals(
        &mut self,
        tenant_id: String,
        totals: Vec<(TotalKey, Total)>,
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>>;
}

/// One customer's exposure after a ledger write.
pub struct CreditExposureRow {
    pub customer_id: String,
    pub open_charges: Decimal,
    pub crossed: String,
}

pub(crate) const UPSERT_CREDIT_EXPOSURE_PG: &str = "\
    INSERT INTO customer_credit (tenant_id, customer_id, thresholds, policy, open_charges, \
        unpaid_invoices, crossed, updated_at) \
    SELECT $1, customer_id, NULL, NULL, open_charges, 0, crossed, $4 \
    FROM UNNEST($2::text[], $3::numeric[], $5::text[]) AS t(customer_id, open_charges, crossed) \
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET \
        open_charges = EXCLUDED.open_charges, crossed = EXCLUDED.crossed, \
        updated_at = EXCLUDED.updated_at";

/// PostgreSQL takes each column as one array and UNNESTs it: one short statement per batch
/// instead of a VALUES list with a bind parameter per cell, which PostgreSQL parses and plans far
/// faster. The statements are built by [`UnnestUsageLines`] and [`UnnestChargeEvents`] from these
/// fixed parts, so their SQL never varies and the connection's prepared statement cache serves
/// every execution after the first.
pub(crate) const USAGE_LINES_COLUMNS_PG: &str = "\
    INSERT INTO usage_lines (tenant_id, line_key, partner_account_id, vendor, vendor_account_id, \
        service, meter, region, window_start, window_end, meter_name, quantity, unit, cost, \
        list_cost, currency, estimated, removed, customer_id, rated_amount, rated_currency, \
        rule_id, unrated_reason, updated_at) \
    SELECT ";

/// Keys that may be stored already replace the stored line.
pub(crate) const USAGE_LINES_UPSERT_PG: &str = " \
    ON CONFLICT (line_key) DO UPDATE SET \
        window_end = EXCLUDED.window_end, meter_name = EXCLUDED.meter_name, \
        quantity = EXCLUDED.quantity, unit = EXCLUDED.unit, cost = EXCLUDED.cost, \
        list_cost = EXCLUDED.list_cost, currency = EXCLUDED.currency, \
        estimated = EXCLUDED.estimated, removed = EXCLUDED.removed, \
        customer_id = EXCLUDED.customer_id, rated_amount = EXCLUDED.rated_amount, \
        rated_currency = EXCLUDED.rated_currency, rule_id = EXCLUDED.rule_id, \
        unrated_reason = EXCLUDED.unrated_reason, updated_at = EXCLUDED.updated_at";

const CHARGE_EVENTS_COLUMNS_PG: &str = "\
    INSERT INTO charge_events (tenant_id, sequence, line_key, customer_id, kind, amount, \
        currency, quantity, vendor, service, meter, window_start, recorded_at) \
    SELECT ";

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

    fn write_credit_exposure(
        &mut self,
        tenant_id: String,
        rows: Vec<CreditExposureRow>,
    ) -> BoxFuture<'_, QueryResult<usize>> {
        use diesel::sql_types::{Array, Numeric, Text, Timestamptz};
        Box::pin(async move {
            let (mut ids, mut open, mut crossed) = (Vec::new(), Vec::new(), Vec::new());
            for row in rows {
                ids.push(row.customer_id);
                open.push(row.open_charges);
                crossed.push(row.crossed);
            }
            let query = diesel::sql_query(UPSERT_CREDIT_EXPOSURE_PG)
                .bind::<Text, _>(tenant_id)
                .bind::<Array<Text>, _>(ids)
                .bind::<Array<Numeric>, _>(open)
                .bind::<Timestamptz, _>(Utc::now())
                .bind::<Array<Text>, _>(crossed);
            diesel_async::RunQueryDsl::execute(query, self).await
        })
    }
    fn write_runs(
        &mut self,
        tenant_id: String,
        runs: Vec<CustomerRun>,
    ) -> BoxFuture<'_, QueryResult<()>> {
        Box::pin(async move {
            for part in runs.chunks(SMALL_ROWS) {
                diesel_async::RunQueryDsl::execute(insert_runs!(&tenant_id, part), self).await?;
            }
            Ok(())
        })
    }

    fn write_totals(
        &mut self,
        tenant_id: String,
        totals: Vec<(TotalKey, Total)>,
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>> {
        Box::pin(async move {
            for part in totals.chunks(SMALL_ROWS) {
                let query = upsert_totals!(&tenant_id, part, how.set_sql(true));
                diesel_async::RunQueryDsl::execute(query, self).await?;
            }
            Ok(())
        })
    }
}

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
    let query = diesel::sql_query(LOOKUP_USAGE_LINES_PG).bind::<Array<Binary>, _>(keys);
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

    async fn execute(self, conn: &AsyncPgConnection) -> QueryResult<usize> {
        let mut conn = conn;
        match self {
            LedgerStatement::Lines(upsert, rows) => {
                let query = UnnestUsageLines {
                    upsert,
                    columns: UsageLineColumns::from(rows),
                };
                diesel_async::RunQueryDsl::execute(query, &mut conn).await
            }
            LedgerStatement::Events(rows) => {
                let query = UnnestChargeEvents(ChargeEventColumns::from(rows));
                diesel_async::RunQueryDsl::execute(query, &mut conn).await
            }
        }
    }
}

/// Binds one column array of the select list: `unnest($n::<cast>)`, comma-separated after the
/// first. Set-returning functions in the select list advance in lockstep (the arrays have equal
/// lengths) without materializing anything, where `SELECT * FROM UNNEST($1, …, $24)` fills a
/// tuplestore per array: for 5,000 rows of 24 columns, ~3 ms against ~18 ms on the server.
fn bind_column<'b, ST, U>(
    out: &mut AstPass<'_, 'b, Pg>,
    first: bool,
    value: &'b U,
    cast: &str,
) -> QueryResult<()>
where
    Pg: HasSqlType<ST>,
    U: ToSql<ST, Pg>,
{
    if !first {
        out.push_sql(", ");
    }
    out.push_sql("unnest(");
    out.push_bind_param::<ST, U>(value)?;
    out.push_sql(cast);
    out.push_sql(")");
    Ok(())
}

/// The UNNEST insert (or upsert) of a chunk of usage lines. Unlike `sql_query`, whose SQL diesel
/// cannot know to be fixed, it is safe to cache: every execution after the first on a connection
/// skips the Parse round trip, so pipelined statements go out back to back.
struct UnnestUsageLines {
    /// ON CONFLICT DO UPDATE; keys known to be new get a plain INSERT, which skips ON CONFLICT's
    /// speculative insertion.
    upsert: bool,
    columns: UsageLineColumns,
}

impl QueryId for UnnestUsageLines {
    type QueryId = ();
    // Cached by its SQL text (two variants).
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for UnnestUsageLines {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, Binary, Bool, Nullable, Numeric, Text, Timestamptz};
        let c = &self.columns;
        let out = &mut out;
        out.push_sql(USAGE_LINES_COLUMNS_PG);
        bind_column::<Array<Text>, _>(out, true, &c.tenant_id, "::text[]")?;
        bind_column::<Array<Binary>, _>(out, false, &c.line_key, "::bytea[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.partner_account_id, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.vendor, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.vendor_account_id, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.service, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.meter, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.region, "::text[]")?;
        bind_column::<Array<Timestamptz>, _>(out, false, &c.window_start, "::timestamptz[]")?;
        bind_column::<Array<Timestamptz>, _>(out, false, &c.window_end, "::timestamptz[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.meter_name, "::text[]")?;
        bind_column::<Array<Numeric>, _>(out, false, &c.quantity, "::numeric[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.unit, "::text[]")?;
        bind_column::<Array<Numeric>, _>(out, false, &c.cost, "::numeric[]")?;
        bind_column::<Array<Nullable<Numeric>>, _>(out, false, &c.list_cost, "::numeric[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.currency, "::text[]")?;
        bind_column::<Array<Bool>, _>(out, false, &c.estimated, "::boolean[]")?;
        bind_column::<Array<Bool>, _>(out, false, &c.removed, "::boolean[]")?;
        bind_column::<Array<Nullable<Text>>, _>(out, false, &c.customer_id, "::text[]")?;
        bind_column::<Array<Nullable<Numeric>>, _>(out, false, &c.rated_amount, "::numeric[]")?;
        bind_column::<Array<Nullable<Text>>, _>(out, false, &c.rated_currency, "::text[]")?;
        bind_column::<Array<Nullable<Text>>, _>(out, false, &c.rule_id, "::text[]")?;
        bind_column::<Array<Nullable<Text>>, _>(out, false, &c.unrated_reason, "::text[]")?;
        bind_column::<Array<Timestamptz>, _>(out, false, &c.updated_at, "::timestamptz[]")?;
        if self.upsert {
            out.push_sql(USAGE_LINES_UPSERT_PG);
        }
        Ok(())
    }
}

/// The UNNEST insert of a chunk of charge events; cacheable like [`UnnestUsageLines`].
struct UnnestChargeEvents(ChargeEventColumns);

impl QueryId for UnnestChargeEvents {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for UnnestChargeEvents {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Binary, Numeric, Text, Timestamptz};
        let c = &self.0;
        let out = &mut out;
        out.push_sql(CHARGE_EVENTS_COLUMNS_PG);
        bind_column::<Array<Text>, _>(out, true, &c.tenant_id, "::text[]")?;
        bind_column::<Array<BigInt>, _>(out, false, &c.sequence, "::bigint[]")?;
        bind_column::<Array<Binary>, _>(out, false, &c.line_key, "::bytea[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.customer_id, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.kind, "::text[]")?;
        bind_column::<Array<Numeric>, _>(out, false, &c.amount, "::numeric[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.currency, "::text[]")?;
        bind_column::<Array<Numeric>, _>(out, false, &c.quantity, "::numeric[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.vendor, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.service, "::text[]")?;
        bind_column::<Array<Text>, _>(out, false, &c.meter, "::text[]")?;
        bind_column::<Array<Timestamptz>, _>(out, false, &c.window_start, "::timestamptz[]")?;
        bind_column::<Array<Timestamptz>, _>(out, false, &c.recorded_at, "::timestamptz[]")?;
        Ok(())
    }
}

/// Usage line rows as one vector per column, for UNNEST.
#[derive(Default)]
struct UsageLineColumns {
    tenant_id: Vec<String>,
    line_key: Vec<Vec<u8>>,
    partner_account_id: Vec<String>,
    vendor: Vec<String>,
    vendor_account_id: Vec<String>,
    service: Vec<String>,
    meter: Vec<String>,
    region: Vec<String>,
    window_start: Vec<DateTime<Utc>>,
    window_end: Vec<DateTime<Utc>>,
    meter_name: Vec<String>,
    quantity: Vec<Decimal>,
    unit: Vec<String>,
    cost: Vec<Decimal>,
    list_cost: Vec<Option<Decimal>>,
    currency: Vec<String>,
    estimated: Vec<bool>,
    removed: Vec<bool>,
    customer_id: Vec<Option<String>>,
    rated_amount: Vec<Option<Decimal>>,
    rated_currency: Vec<Option<String>>,
    rule_id: Vec<Option<String>>,
    unrated_reason: Vec<Option<String>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl From<Vec<UsageLineRow>> for UsageLineColumns {
    fn from(rows: Vec<UsageLineRow>) -> Self {
        let mut c = UsageLineColumns::default();
        for r in rows {
            c.tenant_id.push(r.tenant_id);
            c.line_key.push(r.line_key);
            c.partner_account_id.push(r.partner_account_id);
            c.vendor.push(r.vendor);
            c.vendor_account_id.push(r.vendor_account_id);
            c.service.push(r.service);
            c.meter.push(r.meter);
            c.region.push(r.region);
            c.window_start.push(r.window_start.0);
            c.window_end.push(r.window_end.0);
            c.meter_name.push(r.meter_name);
            c.quantity.push(r.quantity.0);
            c.unit.push(r.unit);
            c.cost.push(r.cost.0);
            c.list_cost.push(r.list_cost.map(|d| d.0));
            c.currency.push(r.currency);
            c.estimated.push(r.estimated);
            c.removed.push(r.removed);
            c.customer_id.push(r.customer_id);
            c.rated_amount.push(r.rated_amount.map(|d| d.0));
            c.rated_currency.push(r.rated_currency);
            c.rule_id.push(r.rule_id);
            c.unrated_reason.push(r.unrated_reason);
            c.updated_at.push(r.updated_at.0);
        }
        c
    }
}

/// Charge event rows as one vector per column, for UNNEST.
#[derive(Default)]
struct ChargeEventColumns {
    tenant_id: Vec<String>,
    sequence: Vec<i64>,
    line_key: Vec<Vec<u8>>,
    customer_id: Vec<String>,
    kind: Vec<String>,
    amount: Vec<Decimal>,
    currency: Vec<String>,
    quantity: Vec<Decimal>,
    vendor: Vec<String>,
    service: Vec<String>,
    meter: Vec<String>,
    window_start: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl From<Vec<ChargeEventRow>> for ChargeEventColumns {
    fn from(rows: Vec<ChargeEventRow>) -> Self {
        let mut c = ChargeEventColumns::default();
        for r in rows {
            c.tenant_id.push(r.tenant_id);
            c.sequence.push(r.sequence);
            c.line_key.push(r.line_key);
            c.customer_id.push(r.customer_id);
            c.kind.push(r.kind);
            c.amount.push(r.amount.0);
            c.currency.push(r.currency);
            c.quantity.push(r.quantity.0);
            c.vendor.push(r.vendor);
            c.service.push(r.service);
            c.meter.push(r.meter);
            c.window_start.push(r.window_start.0);
            c.recorded_at.push(r.recorded_at.0);
        }
        c
    }
}

impl BatchWriter for SqliteConn {
    fn usage_lines_by_keys(
        &mut self,
        keys: Vec<Vec<u8>>,
    ) -> BoxFuture<'_, QueryResult<Vec<UsageLineRow>>> {
        use crate::store::schema::usage_lines as ul;
        use diesel::prelude::*;
        self.spawn_blocking(move |conn| {
            let mut rows = Vec::with_capacity(keys.len());
            // Within SQLite's bind-parameter limit.
            for chunk in keys.chunks(crate::store::usage_lines::BATCH_ROWS) {
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
            for chunk in lines.chunks(crate::store::usage_lines::BATCH_ROWS) {
                diesel::RunQueryDsl::execute(upsert_usage_lines!(chunk), conn)?;
            }
            for chunk in events.chunks(crate::store::usage_lines::BATCH_ROWS) {
                diesel::RunQueryDsl::execute(insert_charge_events!(chunk), conn)?;
            }
            Ok(())
        })
    }

    /// One prepared single-row upsert per customer: in-process, so a statement costs no round trip.
    fn write_credit_exposure(
        &mut self,
        tenant_id: String,
        rows: Vec<CreditExposureRow>,
    ) -> BoxFuture<'_, QueryResult<usize>> {
        use crate::store::credit_schema::customer_credit as cc;
        use crate::store::sql_types::{DbDecimal, DbTime};
        use diesel::prelude::*;
        self.spawn_blocking(move |conn| {
            let now = DbTime(Utc::now());
            let mut written = 0;
            for row in rows {
                written += diesel::insert_into(cc::table)
                    .values((
                        cc::tenant_id.eq(&tenant_id),
                        cc::customer_id.eq(&row.customer_id),
                        cc::thresholds.eq(None::<String>),
                        cc::policy.eq(None::<String>),
                        cc::open_charges.eq(DbDecimal(row.open_charges)),
                        cc::unpaid_invoices.eq(DbDecimal(Decimal::ZERO)),
                        cc::crossed.eq(&row.crossed),
                        cc::updated_at.eq(now),
                    ))
                    .on_conflict((cc::tenant_id, cc::customer_id))
                    .do_update()
                    .set((
                        cc::open_charges.eq(DbDecimal(row.open_charges)),
                        cc::crossed.eq(&row.crossed),
                        cc::updated_at.eq(now),
                    ))
                    .execute(conn)?;
            }
            Ok(written)
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
        how: TotalsWrite,
    ) -> BoxFuture<'_, QueryResult<()>> {
        self.spawn_blocking(move |conn| {
            for part in totals.chunks(SMALL_ROWS) {
                let query = upsert_totals!(&tenant_id, part, how.set_sql(false));
                diesel::RunQueryDsl::execute(query, conn)?;
            }
            Ok(())
        })
    }
}
