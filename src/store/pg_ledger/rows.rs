//! Usage lines and charge events as the PostgreSQL ledger connection writes and reads them:
//! binary COPY rows, the UNNEST upsert of changed lines, and stored rows decoded.
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use super::copy::CopyRows;
use crate::domain::error::{Error, Result};
use crate::domain::ledger::LedgerLine;
use crate::domain::ledger_append::NumberedEvent;
use crate::store::sql_types::{DbDecimal, DbTime};
use crate::store::usage_lines::{UsageLineRow, encode_reason};

/// A chunk of lines: new ones as COPY data, changed ones to upsert.
pub(crate) struct PgLines {
    pub(super) new_lines: Option<Bytes>,
    pub(super) known_lines: Vec<LedgerLine>,
    pub(super) tenant_id: String,
    pub(super) now: DateTime<Utc>,
}

pub(super) const LINE_COLUMNS: &str = "tenant_id, line_key, partner_account_id, vendor, vendor_account_id, \
    service, meter, region, window_start, window_end, meter_name, quantity, unit, cost, \
    list_cost, currency, estimated, removed, customer_id, rated_amount, rated_currency, rule_id, \
    unrated_reason, updated_at";

const LINE_TYPES: [Type; 24] = [
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::NUMERIC,
    Type::TEXT,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TEXT,
    Type::BOOL,
    Type::BOOL,
    Type::TEXT,
    Type::NUMERIC,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
];

const EVENT_COLUMNS: &str = "tenant_id, sequence, line_key, customer_id, kind, amount, currency, \
    quantity, vendor, service, meter, window_start, recorded_at";

/// Bytes reserved per row of a COPY buffer (rows are ~250-400 bytes).
const COPY_ROW_BYTES: usize = 384;

pub(super) fn copy_lines_sql() -> String {
    format!("COPY usage_lines ({LINE_COLUMNS}) FROM STDIN (FORMAT binary)")
}

pub(super) fn copy_events_sql() -> String {
    format!("COPY charge_events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)")
}

/// Changed lines of known keys: UNNEST of one array per column, ON CONFLICT replacing the line.
fn upsert_lines_sql() -> String {
    let casts = [
        "text",
        "bytea",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "text",
        "numeric",
        "text",
        "numeric",
        "numeric",
        "text",
        "bool",
        "bool",
        "text",
        "numeric",
        "text",
        "text",
        "text",
        "timestamptz",
    ];
    let unnests: Vec<String> = casts
        .iter()
        .enumerate()
        .map(|(i, cast)| format!("unnest(${}::{cast}[])", i + 1))
        .collect();
    format!(
        "{}{}{}",
        crate::store::batch::USAGE_LINES_COLUMNS_PG,
        unnests.join(", "),
        crate::store::batch::USAGE_LINES_UPSERT_PG
    )
}

fn line_row(row: &Row) -> std::result::Result<UsageLineRow, tokio_postgres::Error> {
    Ok(UsageLineRow {
        tenant_id: row.try_get(0)?,
        line_key: row.try_get(1)?,
        partner_account_id: row.try_get(2)?,
        vendor: row.try_get(3)?,
        vendor_account_id: row.try_get(4)?,
        service: row.try_get(5)?,
        meter: row.try_get(6)?,
        region: row.try_get(7)?,
        window_start: DbTime(row.try_get(8)?),
        window_end: DbTime(row.try_get(9)?),
        meter_name: row.try_get(10)?,
        quantity: DbDecimal(row.try_get(11)?),
        unit: row.try_get(12)?,
        cost: DbDecimal(row.try_get(13)?),
        list_cost: row.try_get::<_, Option<Decimal>>(14)?.map(DbDecimal),
        currency: row.try_get(15)?,
        estimated: row.try_get(16)?,
        removed: row.try_get(17)?,
        customer_id: row.try_get(18)?,
        rated_amount: row.try_get::<_, Option<Decimal>>(19)?.map(DbDecimal),
        rated_currency: row.try_get(20)?,
        rule_id: row.try_get(21)?,
        unrated_reason: row.try_get(22)?,
        updated_at: DbTime(row.try_get(23)?),
    })
}

pub(super) fn lines_of(rows: Vec<Row>) -> Result<Vec<UsageLineRow>> {
    rows.iter()
        .map(|row| line_row(row).map_err(Error::from))
        .collect()
}

/// One usage line as a COPY row, in `LINE_COLUMNS` order.
fn copy_line(
    rows: &mut CopyRows,
    tenant_id: &str,
    line: &LedgerLine,
    now: DateTime<Utc>,
) -> Result<()> {
    let u = &line.usage;
    let rating = line.rating.as_ref();
    let reason = line.unrated_reason.as_ref().map(encode_reason);
    let t = &LINE_TYPES;
    rows.row();
    rows.field(tenant_id, &t[0])?;
    rows.field(line.line_key.as_bytes(), &t[1])?;
    rows.field(line.partner_account_id.as_str(), &t[2])?;
    rows.field(line.vendor.as_str(), &t[3])?;
    rows.field(u.key.vendor_account_id.as_str(), &t[4])?;
    rows.field(u.key.service.as_str(), &t[5])?;
    rows.field(u.key.meter.as_str(), &t[6])?;
    rows.field(u.key.region.as_str(), &t[7])?;
    rows.field(u.key.window_start, &t[8])?;
    rows.field(u.window_end, &t[9])?;
    rows.field(u.meter_name.as_str(), &t[10])?;
    rows.field(u.quantity, &t[11])?;
    rows.field(u.unit.as_str(), &t[12])?;
    rows.field(u.cost, &t[13])?;
    rows.field(u.list_cost, &t[14])?;
    rows.field(u.currency.as_str(), &t[15])?;
    rows.field(u.estimated, &t[16])?;
    rows.field(line.removed, &t[17])?;
    rows.field(line.customer_id.as_deref(), &t[18])?;
    rows.field(rating.map(|r| r.amount), &t[19])?;
    rows.field(rating.map(|r| r.currency.code()), &t[20])?;
    rows.field(rating.map(|r| r.rule_id.as_str()), &t[21])?;
    rows.field(reason.as_deref(), &t[22])?;
    rows.field(now, &t[23])
}

/// One charge event as a COPY row, in `EVENT_COLUMNS` order.
fn copy_event(
    rows: &mut CopyRows,
    tenant_id: &str,
    numbered: &NumberedEvent,
    now: DateTime<Utc>,
) -> Result<()> {
    let e = &numbered.event;
    rows.row();
    rows.field(tenant_id, &Type::TEXT)?;
    rows.field(numbered.sequence, &Type::INT8)?;
    rows.field(e.line_key.as_bytes(), &Type::BYTEA)?;
    rows.field(e.customer_id.as_str(), &Type::TEXT)?;
    rows.field(e.kind.as_str(), &Type::TEXT)?;
    rows.field(e.amount, &Type::NUMERIC)?;
    rows.field(e.currency.code(), &Type::TEXT)?;
    rows.field(e.quantity, &Type::NUMERIC)?;
    rows.field(e.vendor.as_str(), &Type::TEXT)?;
    rows.field(e.service.as_str(), &Type::TEXT)?;
    rows.field(e.meter.as_str(), &Type::TEXT)?;
    rows.field(e.window_start, &Type::TIMESTAMPTZ)?;
    rows.field(now, &Type::TIMESTAMPTZ)
}

/// Changed lines of known keys, as one UNNEST upsert.
pub(super) async fn upsert_lines(
    client: &Client,
    tenant_id: &str,
    lines: &[LedgerLine],
    now: DateTime<Utc>,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&LedgerLine) -> Option<String>| -> Vec<Option<String>> {
        lines.iter().map(f).collect()
    };
    let tenant: Vec<&str> = vec![tenant_id; lines.len()];
    let keys: Vec<&[u8]> = lines.iter().map(|l| l.line_key.as_bytes()).collect();
    let partner: Vec<&str> = lines
        .iter()
        .map(|l| l.partner_account_id.as_str())
        .collect();
    let vendor: Vec<&str> = lines.iter().map(|l| l.vendor.as_str()).collect();
    let account: Vec<&str> = lines
        .iter()
        .map(|l| l.usage.key.vendor_account_id.as_str())
        .collect();
    let service: Vec<&str> = lines.iter().map(|l| l.usage.key.service.as_str()).collect();
    let meter: Vec<&str> = lines.iter().map(|l| l.usage.key.meter.as_str()).collect();
    let region: Vec<&str> = lines.iter().map(|l| l.usage.key.region.as_str()).collect();
    let start: Vec<DateTime<Utc>> = lines.iter().map(|l| l.usage.key.window_start).collect();
    let end: Vec<DateTime<Utc>> = lines.iter().map(|l| l.usage.window_end).collect();
    let meter_name: Vec<&str> = lines.iter().map(|l| l.usage.meter_name.as_str()).collect();
    let quantity: Vec<Decimal> = lines.iter().map(|l| l.usage.quantity).collect();
    let unit: Vec<&str> = lines.iter().map(|l| l.usage.unit.as_str()).collect();
    let cost: Vec<Decimal> = lines.iter().map(|l| l.usage.cost).collect();
    let list_cost: Vec<Option<Decimal>> = lines.iter().map(|l| l.usage.list_cost).collect();
    let currency: Vec<&str> = lines.iter().map(|l| l.usage.currency.as_str()).collect();
    let estimated: Vec<bool> = lines.iter().map(|l| l.usage.estimated).collect();
    let removed: Vec<bool> = lines.iter().map(|l| l.removed).collect();
    let customer = col(&|l| l.customer_id.clone());
    let rated: Vec<Option<Decimal>> = lines
        .iter()
        .map(|l| l.rating.as_ref().map(|r| r.amount))
        .collect();
    let rated_currency = col(&|l| l.rating.as_ref().map(|r| r.currency.code().to_string()));
    let rule = col(&|l| l.rating.as_ref().map(|r| r.rule_id.clone()));
    let reason = col(&|l| l.unrated_reason.as_ref().map(encode_reason));
    let updated: Vec<DateTime<Utc>> = vec![now; lines.len()];
    let params: [&(dyn ToSql + Sync); 24] = [
        &tenant,
        &keys,
        &partner,
        &vendor,
        &account,
        &service,
        &meter,
        &region,
        &start,
        &end,
        &meter_name,
        &quantity,
        &unit,
        &cost,
        &list_cost,
        &currency,
        &estimated,
        &removed,
        &customer,
        &rated,
        &rated_currency,
        &rule,
        &reason,
        &updated,
    ];
    client.execute(upsert_lines_sql().as_str(), &params).await?;
    Ok(())
}

/// A chunk of lines: new ones as COPY data, changed ones kept for the upsert.
pub(super) fn encode_lines(
    tenant_id: &str,
    lines: Vec<(LedgerLine, bool)>,
    now: DateTime<Utc>,
) -> Result<PgLines> {
    let mut new_lines = CopyRows::new(LINE_TYPES.len() as i16, lines.len() * COPY_ROW_BYTES);
    let mut known_lines = Vec::new();
    for (line, fresh) in lines {
        if fresh {
            copy_line(&mut new_lines, tenant_id, &line, now)?;
        } else {
            known_lines.push(line);
        }
    }
    Ok(PgLines {
        new_lines: (!new_lines.is_empty()).then(|| new_lines.finish()),
        known_lines,
        tenant_id: tenant_id.to_string(),
        now,
    })
}

/// Numbered charge events as COPY data.
pub(super) fn encode_events(
    tenant_id: &str,
    events: &[NumberedEvent],
    now: DateTime<Utc>,
) -> Result<Bytes> {
    let mut rows = CopyRows::new(13, events.len() * COPY_ROW_BYTES);
    for event in events {
        copy_event(&mut rows, tenant_id, event, now)?;
    }
    Ok(rows.finish())
}
