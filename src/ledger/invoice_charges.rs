//! The charges a close bills, summed in the database: one `GROUP BY` over the customer's events
//! between the previous close's `open_from_sequence` and the close sequence (found through its
//! runs of consecutive sequences), classed as `domain::invoice_groups::CloseBounds` classes them,
//! then one read of the units. PostgreSQL sums NUMERIC exactly; SQLite, whose arithmetic goes
//! through floats, sums the stored decimal text with `mspgw_decimal_sum`.
//!
//! Before, a close read and decoded every event and looked up each meter's unit one query at a
//! time: ~1,100 rows and ~100 queries per 1,000-charge invoice (BENCHMARKS.md).
use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::ledger_backends;
use super::rows::usage_lines;
use crate::domain::error::{Error, Result};
use crate::domain::invoice::{ChargeAmount, checked_sum};
use crate::domain::invoice_groups::{ChargeGroup, CloseBounds, GroupClass};
use crate::domain::money::Currency;
use crate::domain::subscription_record::line_unit;
use crate::domain::vendor::Vendor;
use crate::store::schema::charge_event_runs;
use crate::store::sql_types::{DbDecimal, DbTime, Exact, Instant};

/// Runs per statement: each is one `sequence BETWEEN` range of an OR.
const RUNS_PER_QUERY: usize = 256;

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
}

/// The grouping statement over `ranges` of sequences. Parameters: 1 tenant, 2 customer,
/// 3 period start, 4 period end, 5 settled-through sequence (`CloseBounds`).
fn group_sql(postgres: bool, ranges: &[(i64, i64)]) -> String {
    let p = |n: u8| {
        if postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    };
    let (start, end) = (p(3), p(4));
    // PostgreSQL has no min(bytea); SQLite has no exact SUM.
    let (sum, any_key) = if postgres {
        ("SUM", "(array_agg(line_key))[1]")
    } else {
        ("mspgw_decimal_sum", "MIN(line_key)")
    };
    // Sequence numbers from the database, written out as integers.
    let ranges: Vec<String> = ranges
        .iter()
        .map(|(first, last)| format!("sequence BETWEEN {first} AND {last}"))
        .collect();
    format!(
        "SELECT CASE WHEN window_start >= {end} THEN 2 WHEN window_start >= {start} THEN 0 ELSE 1 END AS line_class, \
                CASE WHEN window_start < {start} THEN window_start END AS adjusted_window, \
                vendor, service, meter, currency, \
                MIN(sequence) AS first_sequence, MIN(window_start) AS first_window, \
                {sum}(quantity) AS quantity, {sum}(amount) AS amount, {any_key} AS line_key \
           FROM charge_events \
          WHERE tenant_id = {tenant} AND customer_id = {customer} AND ({ranges}) \
            AND (window_start >= {start} OR sequence > {settled}) \
          GROUP BY line_class, adjusted_window, vendor, service, meter, currency",
        tenant = p(1),
        customer = p(2),
        ranges = ranges.join(" OR "),
        settled = p(5),
    )
}

/// `[from, to]` cut into the customer's runs that overlap it.
fn clip(runs: Vec<(i64, i64)>, from: i64, to: i64) -> Vec<(i64, i64)> {
    runs.into_iter()
        .map(|(first, last)| (first.max(from), last.min(to)))
        .filter(|(first, last)| first <= last)
        .collect()
}

/// Class, adjusted window (microseconds), vendor, service, meter, currency.
type GroupKey = (i32, Option<i64>, String, String, String, String);

/// Adds a statement's rows into `groups` (a customer with more runs than one statement takes
/// has its groups split across statements).
fn merge(groups: &mut BTreeMap<GroupKey, GroupRow>, rows: Vec<GroupRow>) -> Result<()> {
    for row in rows {
        let key = (
            row.line_class,
            row.adjusted_window.map(|w| w.0.timestamp_micros()),
            row.vendor.clone(),
            row.service.clone(),
            row.meter.clone(),
            row.currency.clone(),
        );
        match groups.get_mut(&key) {
            None => {
                groups.insert(key, row);
            }
            Some(group) => {
                group.quantity = DbDecimal(checked_sum(group.quantity.0, row.quantity.0)?);
                group.amount = DbDecimal(checked_sum(group.amount.0, row.amount.0)?);
                if row.first_sequence < group.first_sequence {
                    group.first_sequence = row.first_sequence;
                    group.line_key = row.line_key;
                }
                group.first_window = DbTime(group.first_window.0.min(row.first_window.0));
            }
        }
    }
    Ok(())
}

fn into_group(row: GroupRow, units: &HashMap<Vec<u8>, String>) -> Result<ChargeGroup> {
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
            unit: units
                .get(&row.line_key)
                .cloned()
                .or_else(|| line_unit(&row.line_key).map(str::to_string))
                .unwrap_or_default(),
            quantity: row.quantity.0,
            amount: row.amount.0,
            currency: Currency::from_stored(&row.currency)?,
            window_start,
        },
    })
}

ledger_backends! {
    use super::{GroupRow, RUNS_PER_QUERY, clip, group_sql, into_group, merge};

    /// The customer's charges from sequence `from` up to the close sequence of `bounds`, in
    /// groups (see the module).
    pub async fn groups(conn: &mut Conn, tenant_id: &str, customer_id: &str, bounds: &CloseBounds, from: i64) -> Result<Vec<ChargeGroup>> {
        let to = bounds.close_sequence;
        if to < from {
            return Ok(Vec::new());
        }
        let runs: Vec<(i64, i64)> = charge_event_runs::table
            .filter(charge_event_runs::tenant_id.eq(tenant_id))
            .filter(charge_event_runs::customer_id.eq(customer_id))
            .filter(charge_event_runs::last_sequence.ge(from))
            .filter(charge_event_runs::first_sequence.le(to))
            .select((charge_event_runs::first_sequence, charge_event_runs::last_sequence))
            .order(charge_event_runs::last_sequence)
            .load(conn)
            .await?;
        let runs = clip(runs, from, to);
        let mut grouped = BTreeMap::new();
        for chunk in runs.chunks(RUNS_PER_QUERY) {
            let rows: Vec<GroupRow> = diesel::sql_query(group_sql(IS_POSTGRES, chunk))
                .bind::<Text, _>(tenant_id)
                .bind::<Text, _>(customer_id)
                .bind::<Instant, _>(DbTime(bounds.period_start))
                .bind::<Instant, _>(DbTime(bounds.period_end))
                .bind::<BigInt, _>(bounds.settled_through)
                .load(conn)
                .await?;
            merge(&mut grouped, rows)?;
        }
        let keys: Vec<Vec<u8>> = grouped.values().map(|g| g.line_key.clone()).collect();
        let units: HashMap<Vec<u8>, String> = if keys.is_empty() {
            HashMap::new()
        } else {
            usage_lines::table
                .filter(usage_lines::line_key.eq_any(keys))
                .select((usage_lines::line_key, usage_lines::unit))
                .load(conn)
                .await?
                .into_iter()
                .collect()
        };
        grouped.into_values().map(|row| into_group(row, &units)).collect()
    }
}
