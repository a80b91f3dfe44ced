//! The append-only charge ledger: numbering events with the per-tenant sequence and reading them.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::for_each_backend;
use super::schema::{charge_events, ledger_sequences};
use super::sql_types::{DbDecimal, DbTime};
use crate::domain::error::{Error, Result};
use crate::domain::ledger::{ChargeKind, NewChargeEvent};
use crate::domain::money::Currency;

/// A recorded charge event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeEvent {
    pub sequence: i64,
    pub line_key: String,
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
    pub line_key: String,
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
            kind: self.kind.parse().map_err(corrupt)?,
            vendor: self.vendor.parse().map_err(corrupt)?,
            currency: Currency::parse("currency", &self.currency)
                .map_err(|e| corrupt(e.to_string()))?,
            sequence: self.sequence,
            line_key: self.line_key,
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

/// `events` as rows numbered from `first`.
pub(crate) fn event_rows(
    tenant_id: &str,
    events: &[NewChargeEvent],
    first: i64,
    recorded_at: DateTime<Utc>,
) -> Vec<ChargeEventRow> {
    events
        .iter()
        .zip(first..)
        .map(|(e, sequence)| ChargeEventRow {
            tenant_id: tenant_id.to_string(),
            sequence,
            line_key: e.line_key.clone(),
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
        })
        .collect()
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

    /// Records `last` as the tenant's last handed-out sequence (the ledger lock must be held).
    pub async fn set_last_sequence(conn: &mut Conn, tenant_id: &str, last: i64) -> Result<()> {
        diesel::update(ledger_sequences::table.find(tenant_id))
            .set(ledger_sequences::last_sequence.eq(last))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// What follows appending `events` up to sequence `last`, in the same transaction: credit
    /// exposure moves with the ledger, and on PostgreSQL every replica's feed hears of it on
    /// commit.
    pub async fn appended(conn: &mut Conn, tenant_id: &str, events: &[NewChargeEvent], last: i64) -> Result<()> {
        q::credit::apply_charges(conn, tenant_id, events, last).await?;
        if IS_POSTGRES {
            // Delivered on commit to every replica's feed listener (see store::feed).
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(crate::store::feed::LEDGER_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(format!("{tenant_id}:{last}"))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Events after `after_sequence`, in sequence order.
    pub async fn list(
        conn: &mut Conn,
        tenant_id: &str,
        filter: &ChargeFilter,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<ChargeEvent>> {
        let mut query = charge_events::table
            .filter(charge_events::tenant_id.eq(tenant_id))
            .filter(charge_events::sequence.gt(after_sequence))
            .select(ChargeEventRow::as_select())
            .order(charge_events::sequence)
            .limit(limit)
            .into_boxed();
        if let Some(customer_id) = &filter.customer_id {
            query = query.filter(charge_events::customer_id.eq(customer_id));
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
            query = query.filter(charge_events::kind.eq_any(kinds));
        }
        if let Some(from) = filter.window_from {
            query = query.filter(charge_events::window_start.ge(DbTime(from)));
        }
        if let Some(to) = filter.window_to {
            query = query.filter(charge_events::window_start.lt(DbTime(to)));
        }
        query.load(conn).await?.into_iter().map(ChargeEventRow::into_event).collect()
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
