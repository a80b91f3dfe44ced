//! The append-only charge ledger's sequence and events: the tenant's ledger lock, which numbers
//! events gap-free in commit order, and reads of events by sequence (every customer's, or some
//! customers' through their runs of consecutive sequences).
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::rows::ChargeEventRow;
use super::rows::charge_events;
use super::{Ledger, ledger_backends};
use crate::domain::charges::{ChargeEvent, ChargeFilter};
use crate::domain::error::Result;
use crate::domain::ledger::ChargeKind;
use crate::store::dispatch;
use crate::store::ledger_sequences::ledger_lock_query;
use crate::store::schema::{charge_event_runs, ledger_sequences};
use crate::store::sql_types::DbTime;

/// Each event's usage line's unit, none for a line with no usage line (a subscription's).
///
/// Read with the event rather than stored on it: the COPY ingest path writes every event, and a
/// column more costs it on every row. A correlated subquery on `usage_lines`' primary key
/// (`line_key`) is one index probe per event returned on both backends, after the LIMIT, where
/// PostgreSQL may plan a LEFT JOIN as a hash join over every usage line.
fn line_unit_sql()
-> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Text>> {
    diesel::dsl::sql("(SELECT u.unit FROM usage_lines u WHERE u.line_key = charge_events.line_key)")
}

ledger_backends! {
    /// Takes the tenant's ledger lock: the sequence row stays locked until the transaction ends,
    /// so ledger writers of one tenant run one at a time and commit in sequence order. Returns
    /// the last sequence handed out.
    pub async fn lock_ledger(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        let lock = || ledger_lock_query!(tenant_id);
        // The row exists after the tenant's first write: one round trip then, not two (a close
        // takes this lock twice, a push once).
        if let Some(last) = lock().get_result(conn).await.optional()? {
            return Ok(last);
        }
        diesel::insert_into(ledger_sequences::table)
            .values((ledger_sequences::tenant_id.eq(tenant_id), ledger_sequences::last_sequence.eq(0i64)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(lock().get_result(conn).await?)
    }

    /// Events after `after_sequence`, in sequence order, at most `limit`: fewer only when no
    /// more match (so far).
    pub async fn list(
        conn: &mut Conn,
        tenant_id: &str,
        filter: &ChargeFilter,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<ChargeEvent>> {
        let customers: Vec<&str> = filter.customer_id.iter().map(String::as_str).collect();
        let window = (filter.window_from, filter.window_to);
        events_after(conn, tenant_id, &customers, &filter.kinds, window, after_sequence, limit).await
    }

    /// Events after `after`, in sequence order, at most `limit` (fewer only when no more
    /// match): every customer's, or only `customers'`, read through their runs of consecutive
    /// sequences (the ledger keeps no per-event customer index).
    pub async fn events_after(
        conn: &mut Conn,
        tenant_id: &str,
        customers: &[&str],
        kinds: &[ChargeKind],
        (window_from, window_to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChargeEvent>> {
        /// Runs read per round: they become one OR of sequence ranges.
        const RUNS_PER_ROUND: i64 = 64;
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut events: Vec<ChargeEvent> = Vec::new();
        let mut cursor = after;
        loop {
            let wanted = limit - events.len() as i64;
            if wanted <= 0 {
                break;
            }
            let mut query = charge_events::table
                .filter(charge_events::tenant_id.eq(tenant_id))
                .filter(charge_events::sequence.gt(cursor))
                .select((ChargeEventRow::as_select(), line_unit_sql()))
                .order(charge_events::sequence)
                .limit(wanted)
                .into_boxed();
            let mut runs_exhausted = true;
            if !customers.is_empty() {
                let runs: Vec<(i64, i64)> = charge_event_runs::table
                    .filter(charge_event_runs::tenant_id.eq(tenant_id))
                    .filter(charge_event_runs::customer_id.eq_any(customers))
                    .filter(charge_event_runs::last_sequence.gt(cursor))
                    .select((charge_event_runs::first_sequence, charge_event_runs::last_sequence))
                    .order(charge_event_runs::last_sequence)
                    .limit(RUNS_PER_ROUND)
                    .load(conn)
                    .await?;
                let Some(&(_, last)) = runs.last() else { break };
                runs_exhausted = (runs.len() as i64) < RUNS_PER_ROUND;
                // Sequence numbers from the database, written out as integers.
                let ranges: Vec<String> = runs
                    .iter()
                    .map(|(first, last)| format!("sequence BETWEEN {first} AND {last}"))
                    .collect();
                query = query.filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!("({})", ranges.join(" OR "))));
                // This round reads or filters out every event of these runs.
                cursor = last;
            }
            if !kinds.is_empty() {
                query = query.filter(charge_events::kind.eq_any(kinds.clone()));
            }
            if let Some(from) = window_from {
                query = query.filter(charge_events::window_start.ge(DbTime(from)));
            }
            if let Some(to) = window_to {
                query = query.filter(charge_events::window_start.lt(DbTime(to)));
            }
            let rows = query.load(conn).await?;
            let full = rows.len() as i64 == wanted;
            for (row, unit) in rows {
                events.push(row.into_event(unit)?);
            }
            if full || runs_exhausted {
                break;
            }
        }
        Ok(events)
    }

    /// The tenant's last sequence (0 before the first event).
    pub async fn high_water_mark(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        Ok(ledger_sequences::table
            .find(tenant_id)
            .select(ledger_sequences::last_sequence)
            .first(conn)
            .await
            .optional()?
            .unwrap_or(0))
    }
}

impl Ledger {
    /// The tenant's last ledger sequence (0 before the first charge).
    pub async fn high_water_mark(&self, tenant_id: &str) -> Result<i64> {
        dispatch!(self.store, read, self::high_water_mark(tenant_id))
    }

    /// Charges after `after_sequence`, at most `limit`, plus the high-water mark read first.
    pub async fn list_charges(
        &self,
        tenant_id: &str,
        filter: &ChargeFilter,
        after_sequence: i64,
        limit: i64,
    ) -> Result<(Vec<ChargeEvent>, i64)> {
        let hwm = self.high_water_mark(tenant_id).await?;
        let events = dispatch!(
            self.store,
            read,
            self::list(tenant_id, filter, after_sequence, limit)
        )?;
        Ok((events, hwm))
    }
}
