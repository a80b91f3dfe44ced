//! The charges a close bills, summed in the database, classed as
//! `domain::invoice_groups::CloseBounds` classes them. PostgreSQL sums NUMERIC exactly; SQLite,
//! whose arithmetic goes through floats, sums the stored decimal text with `mspgw_decimal_sum`.
//!
//! - [`period_sums`](self::pg::period_sums): the period's own charges, from the monthly rollups
//!   per meter (whole months) and the daily totals (the days of partial months) the ledger
//!   write keeps, less the charges recorded after the close sequence, in one statement (one
//!   snapshot): a 1,000-charge month of 100 meters reads 100 rollup rows, not 1,000 events.
//!   Each sum's unit is the one its meter's rollup row keeps, or on a row without one (written
//!   before rollups kept units, or rebuilt from stored events) the unit of the usage line of
//!   the line key the row keeps.
//! - [`groups`](self::pg::groups): one `GROUP BY` over the customer's events between the
//!   previous close's `open_from_sequence` and the close sequence (found through its runs of
//!   consecutive sequences), each group joined to one of its usage lines for the unit; beside
//!   `period_sums`, only the runs whose windows reach outside the period are read (prior-period
//!   adjustments, usage of later periods).
//!
//! Before, a close read and decoded every event and looked up each meter's unit one query at a
//! time: ~1,100 rows and ~100 queries per 1,000-charge invoice; then it summed every event in
//! SQL, ~3.7 µs a charge on PostgreSQL (BENCHMARKS.md).
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Date, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use super::ledger_backends;
use crate::domain::error::{Error, Result};
use crate::domain::invoice::ChargeAmount;
use crate::domain::invoice_groups::{ChargeGroup, CloseBounds, GroupClass, PeriodCharges};
use crate::domain::money::Currency;
use crate::domain::spend::DayRange;
use crate::domain::spend::rollup::{Grain, RangeParts, month_of};
use crate::domain::subscription_record::charge_unit;
use crate::domain::vendor::Vendor;
use crate::store::prepared::KeepPrepared;
use crate::store::sql_types::{DbDecimal, DbTime, Exact, Instant};

#[derive(QueryableByName)]
struct GroupRow {
    #[diesel(sql_type = Integer)]
    line_class: i32,
    #[diesel(sql_type = Nullable<Instant>)]
    adjusted_window: Option<DbTime>,
    #[diesel(sql_type = Text)]
    vendor: String,
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Text)]
    meter: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    first_sequence: i64,
    #[diesel(sql_type = Instant)]
    first_window: DbTime,
    #[diesel(sql_type = Exact)]
    quantity: DbDecimal,
    #[diesel(sql_type = Exact)]
    amount: DbDecimal,
    /// One of the group's line keys, for its unit.
    #[diesel(sql_type = Binary)]
    line_key: Vec<u8>,
    /// That line's unit (none for a seat charge, whose key names its own).
    #[diesel(sql_type = Nullable<Text>)]
    unit: Option<String>,
}

/// The grouping statement. Parameters: 1 tenant, 2 customer, 3 period start, 4 period end,
/// 5 settled-through sequence (`CloseBounds`), 6 and 7 the first and last sequence to read.
/// With the period's charges `Summed` apart, only the runs whose window bounds reach before the period (and hold
/// charges after the previous close) or after it, and of them only the events outside it; a
/// run without window bounds (written before they were kept) is read.
///
/// The events are reached through the customer's runs, each a range search of the ledger's
/// primary key (tenant, sequence): SQLite turned the earlier `sequence BETWEEN … OR …` list
/// into a scan of the tenant's whole ledger (56 ms a close at 100,000 charges, growing with the
/// ledger), and the list made every customer's statement text different.
fn group_sql(postgres: bool, period: &PeriodCharges) -> String {
    let d = Dialect { postgres };
    let p = |n| d.param(n);
    let (start, end) = (p(3), p(4));
    // PostgreSQL has no min(bytea).
    let (sum, any_key) = if postgres {
        ("SUM", "(array_agg(e.line_key))[1]")
    } else {
        (d.sum(), "MIN(e.line_key)")
    };
    let events = d.run_events(&p(6), Some(&p(7)));
    let outside = match period {
        PeriodCharges::InGroups => String::new(),
        PeriodCharges::Summed(_) => format!(
            "AND ((r.last_sequence > {settled} AND (r.first_window IS NULL OR r.first_window < {start})) \
                  OR r.last_window IS NULL OR r.last_window >= {end}) \
             AND (e.window_start < {start} OR e.window_start >= {end}) ",
            settled = p(5),
        ),
    };
    format!(
        "SELECT g.*, u.unit FROM (\
         SELECT CASE WHEN e.window_start >= {end} THEN 2 WHEN e.window_start >= {start} THEN 0 ELSE 1 END AS line_class, \
                CASE WHEN e.window_start < {start} THEN e.window_start END AS adjusted_window, \
                e.vendor, e.service, e.meter, e.currency, \
                MIN(e.sequence) AS first_sequence, MIN(e.window_start) AS first_window, \
                {sum}(e.quantity) AS quantity, {sum}(e.amount) AS amount, {any_key} AS line_key \
           FROM charge_event_runs r {events} \
          WHERE r.tenant_id = {tenant} AND r.customer_id = {customer} \
            AND r.last_sequence >= {from} AND r.first_sequence <= {to} \
            AND (e.window_start >= {start} OR e.sequence > {settled}) {outside}\
          GROUP BY line_class, adjusted_window, e.vendor, e.service, e.meter, e.currency\
         ) g LEFT JOIN usage_lines u ON u.line_key = g.line_key",
        tenant = p(1),
        customer = p(2),
        settled = p(5),
        from = p(6),
        to = p(7),
    )
}

/// What the close's statements write differently for each backend.
#[derive(Clone, Copy)]
struct Dialect {
    postgres: bool,
}

impl Dialect {
    /// Statement parameter `n`.
    fn param(self, n: u8) -> String {
        if self.postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    }

    /// The exact sum of a NUMERIC (PostgreSQL) or decimal text (SQLite, whose own SUM goes
    /// through floats) column.
    fn sum(self) -> &'static str {
        if self.postgres {
            "SUM"
        } else {
            "mspgw_decimal_sum"
        }
    }

    /// The join of each run `r` to its events `e` with sequences from `from` to `to` (SQL
    /// expressions; no `to`: to the run's end): a range search of the ledger's primary key (tenant, sequence) per run.
    /// PostgreSQL's is fenced (`OFFSET 0`) so the planner cannot flatten it into a join it may
    /// serve with a parallel scan of the whole ledger: it did once the tables were analyzed
    /// (45 ms a close at 200,000 events, growing with the ledger, against 2 ms; BENCHMARKS.md,
    /// session 10).
    fn run_events(self, from: &str, to: Option<&str>) -> String {
        // SQLite has no GREATEST / LEAST; its two-argument MAX / MIN are the same.
        let (greatest, least) = if self.postgres {
            ("GREATEST", "LEAST")
        } else {
            ("MAX", "MIN")
        };
        let to = match to {
            Some(to) => format!("{least}(r.last_sequence, {to})"),
            None => "r.last_sequence".to_string(),
        };
        let range = format!(
            "e.tenant_id = r.tenant_id AND e.customer_id = r.customer_id \
             AND e.sequence BETWEEN {greatest}(r.first_sequence, {from}) AND {to}"
        );
        if self.postgres {
            format!("CROSS JOIN LATERAL (SELECT * FROM charge_events e WHERE {range} OFFSET 0) e")
        } else {
            format!("JOIN charge_events e ON {range}")
        }
    }
}

fn into_group(row: GroupRow) -> Result<ChargeGroup> {
    let corrupt = |e: String| Error::Internal(format!("stored charge events: {e}"));
    let class = match row.line_class {
        0 => GroupClass::Period,
        1 => GroupClass::Adjustment,
        _ => GroupClass::Later,
    };
    let window_start = match (class, row.adjusted_window) {
        (GroupClass::Adjustment, Some(window)) => window.0,
        _ => row.first_window.0,
    };
    let vendor: Vendor = row.vendor.parse().map_err(corrupt)?;
    Ok(ChargeGroup {
        class,
        first_sequence: row.first_sequence,
        amount: ChargeAmount {
            vendor,
            service: row.service,
            meter: row.meter,
            unit: charge_unit(row.unit, &row.line_key),
            quantity: row.quantity.0,
            amount: row.amount.0,
            currency: Currency::from_stored(&row.currency)?,
            window_start,
        },
    })
}

ledger_backends! {
    use super::{GroupRow, PeriodSumRow, group_sql, period_sums_of, period_sums_sql};

    /// The customer's charges from sequence `from` up to the close sequence of `bounds`, in
    /// groups (see the module); those of the period itself only when `period` does not bring
    /// them summed.
    pub async fn groups(conn: &mut impl Statements, tenant_id: &str, customer_id: &str, bounds: &CloseBounds, from: i64, period: &PeriodCharges) -> Result<Vec<ChargeGroup>> {
        let to = bounds.close_sequence;
        if to < from {
            return Ok(Vec::new());
        }
        let grouped: Vec<GroupRow> = diesel::sql_query(group_sql(IS_POSTGRES, period))
            .bind::<Text, _>(tenant_id)
            .bind::<Text, _>(customer_id)
            .bind::<Instant, _>(DbTime(bounds.period_start))
            .bind::<Instant, _>(DbTime(bounds.period_end))
            .bind::<BigInt, _>(bounds.settled_through)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(to)
            .keep_prepared()
            .load(conn)
            .await?;
        grouped.into_iter().map(into_group).collect()
    }

    /// The charges of the period of `bounds`, the local days `days` of the customer's zone,
    /// recorded by its close sequence, summed per vendor, service, meter and unit (see the
    /// module), in `currency`. None when a meter with charges has no line key for its unit
    /// (rollups written before line keys were kept): the close then reads the charges.
    /// PostgreSQL's close sends the statement pipelined with its other reads
    /// ([`period_sum_rows`], then [`period_sums_of`](super::period_sums_of)).
    pub async fn period_sums(conn: &mut impl Statements, tenant_id: &str, customer_id: &str, bounds: &CloseBounds, days: DayRange, currency: Currency) -> Result<Option<Vec<ChargeAmount>>> {
        let rows = period_sum_rows(conn, tenant_id, customer_id, bounds, days).await?;
        period_sums_of(rows, currency, bounds.period_start)
    }

    /// The rollups' and totals' sums of the period's days, the charges after the close
    /// sequence to subtract, and the meters' units (`period_sums_sql`).
    pub async fn period_sum_rows(conn: &mut impl Statements, tenant_id: &str, customer_id: &str, bounds: &CloseBounds, days: DayRange) -> Result<Vec<PeriodSumRow>> {
        let parts = RangeParts::of(days, false);
        // Without subtracting, a range is its whole months and at most two partial ones.
        let ([head, tail], []) = (day_ranges(&parts.plus, days.first)?, parts.minus.as_slice()) else {
            return Err(Error::Internal(format!("the days {days:?} as rollups: {parts:?}")));
        };
        let (months_first, months_end) = parts.months.unwrap_or((days.first, days.first));
        Ok(diesel::sql_query(period_sums_sql(IS_POSTGRES))
            .bind::<Text, _>(tenant_id)
            .bind::<Text, _>(customer_id)
            .bind::<Instant, _>(DbTime(bounds.period_start))
            .bind::<Instant, _>(DbTime(bounds.period_end))
            .bind::<BigInt, _>(bounds.close_sequence)
            .bind::<Date, _>(months_first)
            .bind::<Date, _>(months_end)
            .bind::<Date, _>(head.first)
            .bind::<Date, _>(head.end)
            .bind::<Date, _>(tail.first)
            .bind::<Date, _>(tail.end)
            .bind::<Date, _>(month_of(days.first))
            .bind::<Date, _>(days.end)
            .keep_prepared()
            .load(conn)
            .await?)
    }
}

/// Two day ranges from the partial months of a `RangeParts` (empty ones at `at` when fewer).
fn day_ranges(plus: &[DayRange], at: NaiveDate) -> Result<[DayRange; 2]> {
    let empty = DayRange { first: at, end: at };
    match plus {
        [] => Ok([empty, empty]),
        [one] => Ok([*one, empty]),
        [head, tail] => Ok([*head, *tail]),
        more => Err(Error::Internal(format!(
            "{} partial months in one range of days",
            more.len()
        ))),
    }
}

/// A row of `period_sums_sql`.
#[derive(QueryableByName)]
pub struct PeriodSumRow {
    /// 0: the rollups' and totals' sums; 1: the charges after the close sequence, to subtract;
    /// 2: a meter's unit (with its line key; zero sums).
    #[diesel(sql_type = Integer)]
    part: i32,
    #[diesel(sql_type = Text)]
    vendor: String,
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Text)]
    meter: String,
    #[diesel(sql_type = Exact)]
    quantity: DbDecimal,
    #[diesel(sql_type = Exact)]
    amount: DbDecimal,
    /// Part 2: the line key the meter's rollup row keeps.
    #[diesel(sql_type = Nullable<Binary>)]
    line_key: Option<Vec<u8>>,
    /// Part 2: the row's unit, else its line key's usage line's (none for a seat charge, whose
    /// key names its own).
    #[diesel(sql_type = Nullable<Text>)]
    unit: Option<String>,
}

/// The period-sums statement. Parameters: 1 tenant, 2 customer, 3 period start, 4 period end,
/// 5 close sequence, 6 and 7 the whole months' buckets `[first, end)`, 8 to 11 two ranges of
/// days `[first, end)` (empty ones when fewer), 12 and 13 the buckets of every month the days
/// fall in. Part 0 adds the rollups per meter of the whole months and the daily totals of the
/// days; part 1, to subtract, sums the events after the close sequence whose windows start in
/// the period (a ledger write commits its totals with its events, and writes commit in
/// sequence order, so the statement's snapshot holds the totals of every event up to some
/// sequence and exactly the events after the close sequence up to it); part 2 brings each
/// meter's unit (`units_sql`), in the same statement: one fewer per close, whose fixed cost
/// (bind, plan check, executor start, the reply's send) was ~40% of PostgreSQL's CPU in a
/// close (perf; BENCHMARKS.md, session 15). Empty ranges cost an index probe each.
fn period_sums_sql(postgres: bool) -> String {
    let d = Dialect { postgres };
    let p = |n| d.param(n);
    let sum = d.sum();
    // Parts 0 and 1 have no unit; part 2 no sums.
    let (no_key, no_unit, zero) = if postgres {
        ("NULL::bytea", "NULL::text", "0::numeric")
    } else {
        ("NULL", "NULL", "'0'")
    };
    let (tenant, customer, start, end, close) = (p(1), p(2), p(3), p(4), p(5));
    let events = d.run_events(&format!("{close} + 1"), None);
    let days = |first: u8, end: u8| {
        format!(
            "SELECT vendor, service, meter, quantity, amount FROM charge_totals \
              WHERE tenant_id = {tenant} AND customer_id = {customer} \
                AND usage_date >= {} AND usage_date < {}",
            p(first),
            p(end)
        )
    };
    format!(
        "SELECT 0 AS part, s.vendor, s.service, s.meter, {sum}(s.quantity) AS quantity, \
                {sum}(s.amount) AS amount, {no_key} AS line_key, {no_unit} AS unit FROM (\
           SELECT vendor, service, meter, quantity, amount FROM charge_rollups \
            WHERE tenant_id = {tenant} AND customer_id = {customer} AND grain = '{grain}' \
              AND bucket >= {months_first} AND bucket < {months_end} \
           UNION ALL {head} UNION ALL {tail}\
         ) s GROUP BY s.vendor, s.service, s.meter \
         UNION ALL \
         SELECT 1, e.vendor, e.service, e.meter, {sum}(e.quantity), {sum}(e.amount), {no_key}, {no_unit} \
           FROM charge_event_runs r {events} \
          WHERE r.tenant_id = {tenant} AND r.customer_id = {customer} AND r.last_sequence > {close} \
            AND (r.last_window IS NULL OR r.last_window >= {start}) \
            AND (r.first_window IS NULL OR r.first_window < {end}) \
            AND e.window_start >= {start} AND e.window_start < {end} \
          GROUP BY e.vendor, e.service, e.meter \
         UNION ALL {units}",
        grain = Grain::MonthMeter.as_str(),
        months_first = p(6),
        months_end = p(7),
        head = days(8, 9),
        tail = days(10, 11),
        units = units_sql(postgres, zero),
    )
}

/// Part 2 of `period_sums_sql`: the units the monthly rollups per meter keep, of the months
/// from bucket `12` to before `13`, with their line keys (and `zero` for the sums); a row
/// without a unit takes its line key's usage line's (COALESCE evaluates the probe only then).
fn units_sql(postgres: bool, zero: &str) -> String {
    let p = |n| Dialect { postgres }.param(n);
    format!(
        "SELECT 2, r.vendor, r.service, r.meter, {zero}, {zero}, r.line_key, \
                COALESCE(r.unit, (SELECT u.unit FROM usage_lines u WHERE u.line_key = r.line_key)) \
           FROM charge_rollups r \
          WHERE r.tenant_id = {} AND r.customer_id = {} AND r.grain = '{}' \
            AND r.bucket >= {} AND r.bucket < {} AND r.line_key IS NOT NULL",
        p(1),
        p(2),
        Grain::MonthMeter.as_str(),
        p(12),
        p(13),
    )
}

/// The period's sums from the rows of `period_sums_sql`, dated `period_start`.
pub fn period_sums_of(
    rows: Vec<PeriodSumRow>,
    currency: Currency,
    period_start: DateTime<Utc>,
) -> Result<Option<Vec<ChargeAmount>>> {
    type Key = (String, String, String);
    let mut sums: BTreeMap<Key, (Decimal, Decimal)> = BTreeMap::new();
    let mut unit_of: HashMap<Key, String> = HashMap::new();
    for row in rows {
        let key = (row.vendor, row.service, row.meter);
        let sign = match row.part {
            0 => Decimal::ONE,
            1 => Decimal::NEGATIVE_ONE,
            _ => {
                let line_key = row.line_key.unwrap_or_default();
                unit_of
                    .entry(key)
                    .or_insert_with(|| charge_unit(row.unit, &line_key));
                continue;
            }
        };
        let sum = sums.entry(key).or_default();
        sum.0 += sign * row.quantity.0;
        sum.1 += sign * row.amount.0;
    }
    let mut amounts = Vec::with_capacity(sums.len());
    for (key, (quantity, amount)) in sums {
        // Nothing left to bill (the meter's charges cancel out, or all came after the close).
        if quantity.is_zero() && amount.is_zero() {
            continue;
        }
        let Some(unit) = unit_of.get(&key) else {
            return Ok(None);
        };
        let (vendor, service, meter) = key;
        amounts.push(ChargeAmount {
            vendor: vendor
                .parse()
                .map_err(|e: String| Error::Internal(format!("stored charge totals: {e}")))?,
            service,
            meter,
            unit: unit.clone(),
            quantity,
            amount,
            currency,
            window_start: period_start,
        });
    }
    Ok(Some(amounts))
}
