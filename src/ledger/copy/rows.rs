//! Usage lines and charge events as the PostgreSQL ledger connection writes and reads them:
//! binary COPY of new rows, the UNNEST upsert of changed lines, and stored rows decoded — each
//! from the rows' one declaration (`ledger::rows`).
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Row};

use crate::domain::error::{Error, Result};
use crate::domain::ledger::LedgerLine;
use crate::domain::ledger_append::NumberedEvent;
use crate::ledger::rows::{UsageLineRow, charge_event_columns, usage_line_columns};

/// A chunk of lines: new ones as COPY data, changed ones to upsert.
pub(crate) struct PgLines {
    pub(super) new_lines: Option<Bytes>,
    pub(super) known_lines: Vec<LedgerLine>,
    pub(super) tenant_id: String,
    pub(super) now: DateTime<Utc>,
}

pub(super) fn lines_of(rows: Vec<Row>) -> Result<Vec<UsageLineRow>> {
    rows.iter()
        .map(|row| usage_line_columns::decode(row).map_err(Error::from))
        .collect()
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
    let conflict = usage_line_columns::on_conflict_sql();
    usage_line_columns::unnest_insert(client, conflict, lines, tenant_id, now).await?;
    Ok(())
}

/// A chunk of lines: new ones as COPY data, changed ones kept for the upsert.
pub(super) fn encode_lines(
    tenant_id: &str,
    lines: Vec<(LedgerLine, bool)>,
    now: DateTime<Utc>,
) -> Result<PgLines> {
    let mut new_lines = usage_line_columns::copy_rows(lines.len());
    let mut known_lines = Vec::new();
    for (line, fresh) in lines {
        if fresh {
            usage_line_columns::copy(&mut new_lines, &line, tenant_id, now)?;
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
    let mut rows = charge_event_columns::copy_rows(events.len());
    for event in events {
        charge_event_columns::copy(&mut rows, event, tenant_id, now)?;
    }
    Ok(rows.finish())
}
