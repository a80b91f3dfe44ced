//! The charges a close bills, summed in the database: one `GROUP BY` over the customer's events
//! between the previous close's `open_from_sequence` and the close sequence (found through its
//! runs of consecutive sequences), classed as `domain::invoice_groups::CloseBounds` classes them,
//! each group joined to one of its usage lines for the unit. PostgreSQL sums NUMERIC exactly; SQLite, whose arithmetic goes
//! through floats, sums the stored decimal text with `mspgw_decimal_sum`.
//!
//! Before, a close read and decoded every event and looked up each meter's unit one query at a
//! time: ~1,100 rows and ~100 queries per 1,000-charge invoice (BENCHMARKS.md).
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use super::ledger_backends;
use crate::domain::error::{Error, Result};
use crate::domain::invoice::ChargeAmount;
use crate::domain::invoice_groups::{ChargeGroup, CloseBounds, GroupClass};
use crate::domain::money::Currency;
use crate::domain::subscription_record::line_unit;
use crate::domain::vendor::Vendor;
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
///
/// The events are reached through the customer's runs, each a range search of the ledger's
/// primary key (tenant, sequence): SQLite turned the earlier `sequence BETWEEN … OR …` list
/// into a scan of the tenant's whole ledger (56 ms a close at 100,000 charges, growing with the
/// ledger), and the list made every customer's statement text different.
fn group_sql(postgres: bool) -> String {
    let p = |n: u8| {
        if postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    };
    let (start, end) = (p(3), p(4));
    // PostgreSQL has no min(bytea); SQLite has no exact SUM, nor GREATEST / LEAST.
    let (sum, any_key, greatest, least) = if postgres {
        ("SUM", "(array_agg(e.line_key))[1]", "GREATEST", "LEAST")
    } else {
        ("mspgw_decimal_sum", "MIN(e.line_key)", "MAX", "MIN")
    };
    let range = format!(
        "e.tenant_id = r.tenant_id AND e.customer_id = r.customer_id \
         AND e.sequence BETWEEN {greatest}(r.first_sequence, {from}) AND {least}(r.last_sequence, {to})",
        from = p(6),
        to = p(7),
    );
    // PostgreSQL: each run's events by a range scan of the primary key, fenced (`OFFSET 0`)
    // so the planner cannot flatten it into a join it may choose to serve with a parallel
    // scan of the whole ledger: it did once the tables were analyzed (45 ms a close at
    // 200,000 events, growing with the ledger, against 2 ms; BENCHMARKS.md, session 10).
    let events = if postgres {
        format!("CROSS JOIN LATERAL (SELECT * FROM charge_events e WHERE {range} OFFSET 0) e")
    } else {
        format!("JOIN charge_events e ON {range}")
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
            AND (e.window_start >= {start} OR e.sequence > {settled}) \
          GROUP BY line_class, adjusted_window, e.vendor, e.service, e.meter, e.currency\
         ) g LEFT JOIN usage_lines u ON u.line_key = g.line_key",
        tenant = p(1),
        customer = p(2),
        settled = p(5),
        from = p(6),
        to = p(7),
    )
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
            unit: row
                .unit
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
    use super::{GroupRow, group_sql, into_group};

    /// The customer's charges from sequence `from` up to the close sequence of `bounds`, in
    /// groups (see the module).
    pub async fn groups(conn: &mut Conn, tenant_id: &str, customer_id: &str, bounds: &CloseBounds, from: i64) -> Result<Vec<ChargeGroup>> {
        let to = bounds.close_sequence;
        if to < from {
            return Ok(Vec::new());
        }
        let grouped: Vec<GroupRow> = diesel::sql_query(group_sql(IS_POSTGRES))
            .bind::<Text, _>(tenant_id)
            .bind::<Text, _>(customer_id)
            .bind::<Instant, _>(DbTime(bounds.period_start))
            .bind::<Instant, _>(DbTime(bounds.period_end))
            .bind::<BigInt, _>(bounds.settled_through)
            .bind::<BigInt, _>(from)
            .bind::<BigInt, _>(to)
            .load(conn)
            .await?;
        grouped.into_iter().map(into_group).collect()
    }
}
