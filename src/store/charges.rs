//! The append-only charge ledger: numbering events with the per-tenant sequence and reading them.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::schema::{charge_event_runs, charge_events, ledger_sequences};
use super::sql_types::{DbDecimal, DbTime};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::ChargeKind;
use crate::domain::ledger_append::NumberedEvent;
use crate::domain::line_key::LineKey;
use crate::domain::money::Currency;

/// A recorded charge event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeEvent {
    pub sequence: i64,
    pub line_key: LineKey,
    pub customer_id: String,
    pub kind: ChargeKind,
    pub amount: rust_decimal::Decimal,
    pub currency: Currency,
    pub quantity: rust_decimal::Decimal,
    pub vendor: crate::domain::vendor::Vendor,
    pub service: String,
    pub meter: String,
    pub window_start: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = charge_events, treat_none_as_default_value = false)]
pub struct ChargeEventRow {
    pub tenant_id: String,
    pub sequence: i64,
    pub line_key: Vec<u8>,
    pub customer_id: String,
    pub kind: String,
    pub amount: DbDecimal,
    pub currency: String,
    pub quantity: DbDecimal,
    pub vendor: String,
    pub service: String,
    pub meter: String,
    pub window_start: DbTime,
    pub recorded_at: DbTime,
}

impl ChargeEventRow {
    pub(crate) fn into_event(self) -> Result<ChargeEvent> {
        let corrupt =
            |e: String| Error::Internal(format!("stored charge event {}: {e}", self.sequence));
        Ok(ChargeEvent {
            line_key: LineKey::from_bytes(&self.line_key)
                .ok_or_else(|| corrupt("the line key is not 24 bytes".into()))?,
            kind: self.kind.parse().map_err(corrupt)?,
            vendor: self.vendor.parse().map_err(corrupt)?,
            currency: Currency::parse("currency", &self.currency)
                .map_err(|e| corrupt(e.to_string()))?,
            sequence: self.sequence,
            customer_id: self.customer_id,
            amount: self.amount.0,
            quantity: self.quantity.0,
            service: self.service,
            meter: self.meter,
            window_start: self.window_start.0,
            recorded_at: self.recorded_at.0,
        })
    }
}

impl ChargeEventRow {
    pub(crate) fn from_event(
        tenant_id: &str,
        numbered: &NumberedEvent,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let e = &numbered.event;
        ChargeEventRow {
            tenant_id: tenant_id.to_string(),
            sequence: numbered.sequence,
            line_key: e.line_key.as_bytes().to_vec(),
            customer_id: e.customer_id.clone(),
            kind: e.kind.as_str().to_string(),
            amount: DbDecimal(e.amount),
            currency: e.currency.code().to_string(),
            quantity: DbDecimal(e.quantity),
            vendor: e.vendor.as_str().to_string(),
            service: e.service.clone(),
            meter: e.meter.clone(),
            window_start: DbTime(e.window_start),
            recorded_at: DbTime(recorded_at),
        }
    }
}

/// Filters of a charge listing.
#[derive(Debug, Clone, Default)]
pub struct ChargeFilter {
    pub customer_id: Option<String>,
    pub kinds: Vec<ChargeKind>,
    /// Usage windows starting in `[from, to)`.
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
}

for_each_backend! {
    /// Takes the tenant's ledger lock: the sequence row stays locked until the transaction ends,
    /// so ledger writers of one tenant run one at a time and commit in sequence order. Returns
    /// the last sequence handed out.
    pub async fn lock_ledger(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        diesel::insert_into(ledger_sequences::table)
            .values((ledger_sequences::tenant_id.eq(tenant_id), ledger_sequences::last_sequence.eq(0i64)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(diesel::update(ledger_sequences::table.find(tenant_id))
            .set(ledger_sequences::last_sequence.eq(ledger_sequences::last_sequence))
            .returning(ledger_sequences::last_sequence)
            .get_result(conn)
            .await?)
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
                .select(ChargeEventRow::as_select())
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
            for row in rows {
                events.push(row.into_event()?);
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

impl super::Store {
    /// The tenant's last ledger sequence (0 before the first charge).
    pub async fn ledger_high_water_mark(&self, tenant_id: &str) -> Result<i64> {
        super::dispatch!(self, read, charges::high_water_mark(tenant_id))
    }
}
