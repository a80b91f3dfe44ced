//! Subscriptions read and written a batch at a time, for the period-boundary run
//! (`ledger::subscription_boundaries`): which are due, holding a batch of them, and writing
//! their new states in one statement.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;

use super::catalog_schema::subscriptions;
use super::prepared::KeepPrepared;
use super::sql_types::{DbDecimal, DbTime};
use super::subscriptions::{SubscriptionRow, json, state_columns};
use super::{SqliteConn, Store, dispatch, for_each_backend};
use crate::domain::error::{Error, Result};
use crate::domain::subscription_record::SubscriptionRecord;

/// A subscription whose billing period has ended, where the period-boundary run found it; the
/// run reads on after the last one it saw (`period_end`, `id`), so it visits each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSubscription {
    pub tenant_id: String,
    pub id: String,
    pub period_end: DateTime<Utc>,
}

/// One record's state as the bulk update binds it: decimals and instants as text, which the
/// server casts (the arrays need no custom array types).
struct StateUpdate {
    id: String,
    status: &'static str,
    quantity: i64,
    term: &'static str,
    billing_frequency: &'static str,
    term_start: String,
    period_index: i64,
    period_start: String,
    period_end: String,
    unit_price: String,
    seat_seconds: i64,
    lots: String,
    scheduled: String,
    auto_renew: bool,
    ended_at: Option<String>,
    updated_at: String,
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl StateUpdate {
    fn of(r: &SubscriptionRecord) -> Result<Self> {
        let s = &r.state;
        Ok(StateUpdate {
            id: r.id.clone(),
            status: s.status.as_str(),
            quantity: i64::from(s.quantity),
            term: s.offer.term.as_str(),
            billing_frequency: s.offer.billing.as_str(),
            term_start: instant(s.term_start),
            period_index: i64::from(s.period.index),
            period_start: instant(s.period.start),
            period_end: instant(s.period.end),
            unit_price: s.period.unit_price.to_string(),
            seat_seconds: s.period.seat_seconds,
            lots: json(&s.lots)?,
            scheduled: json(&s.scheduled)?,
            auto_renew: s.auto_renew,
            ended_at: s.ended_at.map(instant),
            updated_at: instant(r.updated_at),
        })
    }
}

/// Writes many records' states. PostgreSQL: one `UPDATE … FROM UNNEST` with an array per
/// column, the same text for every batch (prepared once per connection), where one UPDATE per
/// record would cost a round trip each. SQLite: the records' updates in one call on the
/// connection's thread.
trait StateWriter {
    fn update_states(
        &mut self,
        tenant_id: String,
        records: Vec<SubscriptionRecord>,
    ) -> BoxFuture<'_, Result<usize>>;
}

const UPDATE_STATES_UNNEST: &str = "UPDATE subscriptions AS s SET status = v.status, \
        quantity = v.quantity, term = v.term, billing_frequency = v.billing_frequency, \
        term_start = v.term_start, period_index = v.period_index, period_start = v.period_start, \
        period_end = v.period_end, unit_price = v.unit_price, seat_seconds = v.seat_seconds, \
        lots = v.lots, scheduled = v.scheduled, auto_renew = v.auto_renew, ended_at = v.ended_at, \
        updated_at = v.updated_at \
     FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], \
        $7::text[]::timestamptz[], $8::int8[], $9::text[]::timestamptz[], $10::text[]::timestamptz[], \
        $11::text[]::numeric[], $12::int8[], $13::text[], $14::text[], $15::bool[], \
        $16::text[]::timestamptz[], $17::text[]::timestamptz[]) \
        AS v(id, status, quantity, term, billing_frequency, term_start, period_index, period_start, \
             period_end, unit_price, seat_seconds, lots, scheduled, auto_renew, ended_at, updated_at) \
     WHERE s.tenant_id = $1 AND s.id = v.id";

impl StateWriter for AsyncPgConnection {
    fn update_states(
        &mut self,
        tenant_id: String,
        records: Vec<SubscriptionRecord>,
    ) -> BoxFuture<'_, Result<usize>> {
        use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
        Box::pin(async move {
            let rows = records
                .iter()
                .map(StateUpdate::of)
                .collect::<Result<Vec<_>>>()?;
            fn column<T>(rows: &[StateUpdate], f: impl Fn(&StateUpdate) -> T) -> Vec<T> {
                rows.iter().map(f).collect()
            }
            let updated = diesel::sql_query(UPDATE_STATES_UNNEST)
                .bind::<Text, _>(tenant_id)
                .bind::<Array<Text>, _>(column(&rows, |r| r.id.clone()))
                .bind::<Array<Text>, _>(column(&rows, |r| r.status))
                .bind::<Array<BigInt>, _>(column(&rows, |r| r.quantity))
                .bind::<Array<Text>, _>(column(&rows, |r| r.term))
                .bind::<Array<Text>, _>(column(&rows, |r| r.billing_frequency))
                .bind::<Array<Text>, _>(column(&rows, |r| r.term_start.clone()))
                .bind::<Array<BigInt>, _>(column(&rows, |r| r.period_index))
                .bind::<Array<Text>, _>(column(&rows, |r| r.period_start.clone()))
                .bind::<Array<Text>, _>(column(&rows, |r| r.period_end.clone()))
                .bind::<Array<Text>, _>(column(&rows, |r| r.unit_price.clone()))
                .bind::<Array<BigInt>, _>(column(&rows, |r| r.seat_seconds))
                .bind::<Array<Text>, _>(column(&rows, |r| r.lots.clone()))
                .bind::<Array<Text>, _>(column(&rows, |r| r.scheduled.clone()))
                .bind::<Array<Bool>, _>(column(&rows, |r| r.auto_renew))
                .bind::<Array<Nullable<Text>>, _>(column(&rows, |r| r.ended_at.clone()))
                .bind::<Array<Text>, _>(column(&rows, |r| r.updated_at.clone()))
                .keep_prepared()
                .execute(self)
                .await?;
            Ok(updated)
        })
    }
}

impl StateWriter for SqliteConn {
    fn update_states(
        &mut self,
        tenant_id: String,
        records: Vec<SubscriptionRecord>,
    ) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let updates = records
                .iter()
                .map(|r| -> Result<_> { Ok((r.id.clone(), state_columns!(r))) })
                .collect::<Result<Vec<_>>>()?;
            let updated = self
                .spawn_blocking(move |conn| -> QueryResult<usize> {
                    let mut updated = 0;
                    for (id, changes) in updates {
                        updated += diesel::RunQueryDsl::execute(
                            diesel::update(
                                subscriptions::table
                                    .filter(subscriptions::tenant_id.eq(&tenant_id))
                                    .filter(subscriptions::id.eq(id)),
                            )
                            .set(changes),
                            conn,
                        )?;
                    }
                    Ok(updated)
                })
                .await?;
            Ok(updated)
        })
    }
}

/// Reads the due subscriptions among `ids` (sorted) for a batch, holding them. PostgreSQL:
/// `FOR UPDATE`, one primary-key probe per id in id order, so the plan cannot change with the
/// table's statistics and two replicas' batches lock in the same order (no deadlock). SQLite:
/// a plain read (its one writer holds the database).
trait DueHolder {
    fn hold_due(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, QueryResult<Vec<SubscriptionRow>>>;
}

const HOLD_DUE_PG: &str = "SELECT s.* FROM unnest($2::text[]) WITH ORDINALITY AS wanted(id, n) \
    CROSS JOIN LATERAL (SELECT * FROM subscriptions WHERE subscriptions.id = wanted.id \
        AND subscriptions.tenant_id = $1 AND subscriptions.status = 'ACTIVE' \
        AND subscriptions.period_end <= $3 FOR UPDATE) AS s \
    ORDER BY wanted.n";

impl DueHolder for AsyncPgConnection {
    fn hold_due(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, QueryResult<Vec<SubscriptionRow>>> {
        use diesel::sql_types::{Array, Text};
        let query = diesel::sql_query(HOLD_DUE_PG)
            .bind::<Text, _>(tenant_id)
            .bind::<Array<Text>, _>(ids)
            .bind::<super::sql_types::Instant, _>(DbTime(now))
            .keep_prepared();
        Box::pin(async move { query.load(self).await })
    }
}

impl DueHolder for SqliteConn {
    fn hold_due(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, QueryResult<Vec<SubscriptionRow>>> {
        Box::pin(async move {
            subscriptions::table
                .filter(subscriptions::tenant_id.eq(tenant_id))
                .filter(subscriptions::id.eq_any(ids))
                .filter(subscriptions::status.eq("ACTIVE"))
                .filter(subscriptions::period_end.le(DbTime(now)))
                .select(SubscriptionRow::as_select())
                .order(subscriptions::id)
                .load(self)
                .await
        })
    }
}

for_each_backend! {
    use super::{DueHolder, DueSubscription, StateWriter};

    /// Active subscriptions (of every tenant) whose billing period ended by `now`, after
    /// `after` in (`period_end`, `id`) order; at most `limit`, the longest overdue first.
    pub async fn due(conn: &mut Conn, now: DateTime<Utc>, after: Option<&DueSubscription>, limit: i64) -> Result<Vec<DueSubscription>> {
        let mut query = subscriptions::table
            .filter(subscriptions::status.eq("ACTIVE"))
            .filter(subscriptions::period_end.le(DbTime(now)))
            .select((subscriptions::tenant_id, subscriptions::id, subscriptions::period_end))
            .order((subscriptions::period_end, subscriptions::id))
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            let at = DbTime(after.period_end);
            query = query.filter(
                subscriptions::period_end
                    .gt(at)
                    .or(subscriptions::period_end.eq(at).and(subscriptions::id.gt(after.id.clone()))),
            );
        }
        let rows: Vec<(String, String, DbTime)> = query.load(conn).await?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, id, period_end)| DueSubscription { tenant_id, id, period_end: period_end.0 })
            .collect())
    }

    /// The subscriptions among `ids` still due by `now`, each held until the transaction ends
    /// (see [`DueHolder`]). A replica whose run caught one up first has moved its period on, so
    /// it is left out here.
    pub async fn hold_due(conn: &mut Conn, tenant_id: &str, ids: &[String], now: DateTime<Utc>) -> Result<Vec<SubscriptionRecord>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        conn.hold_due(tenant_id.to_string(), ids, now)
            .await?
            .into_iter()
            .map(SubscriptionRow::into_record)
            .collect()
    }

    /// Writes the states of `records` (held by [`hold_due`]).
    pub async fn update_states(conn: &mut Conn, tenant_id: &str, records: Vec<SubscriptionRecord>) -> Result<()> {
        let expected = records.len();
        let updated = conn.update_states(tenant_id.to_string(), records).await?;
        if updated != expected {
            return Err(Error::Internal(format!(
                "wrote {updated} of {expected} held subscriptions of tenant {tenant_id}"
            )));
        }
        Ok(())
    }
}

impl Store {
    pub async fn due_subscriptions(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueSubscription>,
        limit: i64,
    ) -> Result<Vec<DueSubscription>> {
        dispatch!(self, read, self::due(now, after, limit))
    }
}
