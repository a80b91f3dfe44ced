//! Credit-control records: the tenant's defaults, each customer's credit state (settings,
//! exposure, crossed thresholds) and the credit events with their own per-tenant gap-free
//! sequence. The rules are `domain::credit`; keeping exposure and events in step with the ledger
//! (inside its transactions) is `ledger::credit`.
use std::collections::HashMap;

use chrono::Utc;
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use rust_decimal::Decimal;

use super::credit_schema::{credit_defaults, credit_events, credit_sequences, customer_credit};
use super::ledger_sequences::ledger_lock_query;
use super::prepared::KeepPrepared;
use super::schema::customers;
use super::sql_types::{DbDecimal, DbTime};
use super::{SqliteConn, Store, dispatch, for_each_backend};
use crate::domain::credit::{
    CreditDefaults, CreditEvent, CreditInputs, CreditPolicy, CreditSettings, CreditState,
    ExposureUpdate, Thresholds, encode_percents,
};
use crate::domain::error::{Error, Result};
use crate::domain::money::Currency;
use crate::domain::payment::Exposure;

type CreditEventRow = (
    i64,
    String,
    i32,
    String,
    DbDecimal,
    DbDecimal,
    String,
    String,
    String,
    i64,
    DbTime,
    Option<String>,
);

fn event_from_row(row: CreditEventRow) -> Result<CreditEvent> {
    let (
        sequence,
        customer_id,
        pct,
        direction,
        exposure,
        limit,
        currency,
        policy,
        action,
        ls,
        at,
        service_action_id,
    ) = row;
    let corrupt = |e: String| Error::Internal(format!("stored credit event {sequence}: {e}"));
    Ok(CreditEvent {
        sequence,
        customer_id,
        threshold_percent: u32::try_from(pct).map_err(|e| corrupt(e.to_string()))?,
        direction: direction.parse().map_err(corrupt)?,
        exposure: exposure.0,
        credit_limit: limit.0,
        currency: Currency::from_stored(&currency)?,
        policy: policy.parse().map_err(corrupt)?,
        action: action.parse().map_err(corrupt)?,
        ledger_sequence: ls,
        recorded_at: at.0,
        service_action_id,
    })
}

/// The upsert of customers' exposure after a ledger write: one statement for every customer
/// the write touched (thousands, for a big pull), each column an array. Shared with the
/// PostgreSQL COPY path of the ledger (`ledger::copy`).
pub const UPSERT_EXPOSURE_PG: &str = "\
    INSERT INTO customer_credit (tenant_id, customer_id, thresholds, policy, open_charges, \
        unpaid_invoices, crossed, updated_at) \
    SELECT $1, customer_id, NULL, NULL, open_charges, 0, crossed, $4 \
    FROM UNNEST($2::text[], $3::numeric[], $5::text[]) AS t(customer_id, open_charges, crossed) \
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET \
        open_charges = EXCLUDED.open_charges, crossed = EXCLUDED.crossed, \
        updated_at = EXCLUDED.updated_at";

/// Customers' credit states (of `$1`, among the ids `$2`) on PostgreSQL: one primary-key probe
/// per id, so the plan cannot change with the table's statistics. `customer_id = ANY($2)` was
/// planned, on a `customer_credit` analyzed while nearly empty, as a scan comparing every row
/// with every id: 57-172 ms per read of 2,000 ids in the period-boundary benchmark, 12 of its
/// 22 s. Shared with the PostgreSQL COPY path of the ledger (`ledger::copy`).
pub const CREDIT_STATES_PG: &str = "SELECT c.customer_id, c.thresholds, c.policy, \
        c.open_charges, c.unpaid_invoices, c.crossed \
    FROM unnest($2::text[]) AS wanted(id) \
    CROSS JOIN LATERAL (SELECT * FROM customer_credit \
        WHERE customer_credit.tenant_id = $1 AND customer_credit.customer_id = wanted.id) AS c";

#[derive(QueryableByName, Queryable)]
struct CreditStateRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    customer_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    thresholds: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    policy: Option<String>,
    #[diesel(sql_type = super::sql_types::Exact)]
    open_charges: DbDecimal,
    #[diesel(sql_type = super::sql_types::Exact)]
    unpaid_invoices: DbDecimal,
    #[diesel(sql_type = diesel::sql_types::Text)]
    crossed: String,
}

/// Reads customers' credit states (see [`CREDIT_STATES_PG`]).
trait CreditStateReader {
    fn credit_states(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<Vec<CreditStateRow>>>;
}

impl CreditStateReader for AsyncPgConnection {
    fn credit_states(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<Vec<CreditStateRow>>> {
        use diesel::sql_types::{Array, Text};
        let query = diesel::sql_query(CREDIT_STATES_PG)
            .bind::<Text, _>(tenant_id)
            .bind::<Array<Text>, _>(ids)
            .keep_prepared();
        Box::pin(async move { query.load(self).await })
    }
}

impl CreditStateReader for SqliteConn {
    fn credit_states(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<Vec<CreditStateRow>>> {
        Box::pin(async move {
            customer_credit::table
                .filter(customer_credit::tenant_id.eq(tenant_id))
                .filter(customer_credit::customer_id.eq_any(ids))
                .select((
                    customer_credit::customer_id,
                    customer_credit::thresholds,
                    customer_credit::policy,
                    customer_credit::open_charges,
                    customer_credit::unpaid_invoices,
                    customer_credit::crossed,
                ))
                .load(self)
                .await
        })
    }
}

/// A customer's limit row: (id, tenant, limit, currency).
type LimitRow = (String, String, DbDecimal, String);

/// The rows of [`inputs`](self::pg::inputs): customers' limits, their credit states, the
/// tenant's defaults (thresholds, policy).
type CreditInputRows = (Vec<LimitRow>, Vec<CreditStateRow>, Option<(String, String)>);

/// Reads the rows of a credit evaluation: on PostgreSQL the three reads go out pipelined on the
/// connection, one round trip instead of three (a close takes them under the tenant's ledger
/// lock, where the closes of a month-close run queue one behind the other).
trait CreditInputsReader {
    fn credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<CreditInputRows>>;

    /// The tenant's ledger lock (`store::ledger_sequences`; None: the tenant has no lock row yet,
    /// and the rows were read without it), then the rows: on PostgreSQL in the same round trip
    /// (the server runs the reads once the lock is granted). A close and a payment take their
    /// serial part this way, a round trip shorter.
    fn locked_credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<(Option<i64>, CreditInputRows)>>;
}

/// By id alone (ids are unique across tenants): a primary-key probe per id whatever the
/// planner's statistics say; the caller checks the tenant.
macro_rules! limits_query {
    ($ids:expr) => {
        customers::table.filter(customers::id.eq_any($ids)).select((
            customers::id,
            customers::tenant_id,
            customers::credit_limit,
            customers::billing_currency,
        ))
    };
}

macro_rules! defaults_query {
    ($tenant_id:expr) => {
        credit_defaults::table
            .find($tenant_id)
            .select((credit_defaults::thresholds, credit_defaults::policy))
    };
}

/// The three reads of [`CreditInputsReader`], sent pipelined on the connection.
async fn pipelined_input_rows(
    conn: &AsyncPgConnection,
    tenant_id: &str,
    ids: &[String],
) -> QueryResult<CreditInputRows> {
    use diesel::sql_types::{Array, Text};
    let limits = limits_query!(ids);
    let states = diesel::sql_query(CREDIT_STATES_PG)
        .bind::<Text, _>(tenant_id)
        .bind::<Array<Text>, _>(ids)
        .keep_prepared();
    let defaults = defaults_query!(tenant_id);
    futures::try_join!(limits.load(&mut &*conn), states.load(&mut &*conn), async {
        defaults.first(&mut &*conn).await.optional()
    },)
}

impl CreditInputsReader for AsyncPgConnection {
    fn credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<CreditInputRows>> {
        Box::pin(async move { pipelined_input_rows(self, &tenant_id, &ids).await })
    }

    fn locked_credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<(Option<i64>, CreditInputRows)>> {
        Box::pin(async move { pg_locked_input_rows(self, &tenant_id, &ids).await })
    }
}

/// The ledger lock, then the three reads, sent on `conn` without waiting: the server runs
/// pipelined statements in the order they are sent, and the lock is sent first (`try_join!`
/// polls it first, and diesel-async 0.9 sends a prepared statement on its first poll; one not
/// yet prepared holds the connection's statement cache while it is, which keeps the reads from
/// being sent before it). So the reads take their snapshots once the lock is granted, and so
/// does any statement the caller pipelines after this future's first poll.
async fn pg_locked_input_rows(
    conn: &AsyncPgConnection,
    tenant_id: &str,
    ids: &[String],
) -> QueryResult<(Option<i64>, CreditInputRows)> {
    let lock = ledger_lock_query!(tenant_id);
    futures::try_join!(
        async { lock.get_result(&mut &*conn).await.optional() },
        pipelined_input_rows(conn, tenant_id, ids),
    )
}

/// [`inputs_under_ledger_lock`](self::pg::inputs_under_ledger_lock) on a shared PostgreSQL
/// connection, so the caller can pipeline statements of its own behind it (see
/// [`pg_locked_input_rows`]; they run under the ledger lock too).
pub async fn pg_inputs_under_ledger_lock(
    conn: &AsyncPgConnection,
    tenant_id: &str,
    ids: &[String],
) -> Result<Option<(i64, CreditInputs)>> {
    locked_inputs_of(pg_locked_input_rows(conn, tenant_id, ids).await?, tenant_id)
}

/// Adds `change` to the customer's stored exposure (creating its credit state as
/// `write_state` creates a default one: no thresholds, policy or crossings of its own) and
/// answers the exposure after it. On a shared PostgreSQL connection: a close sends it pipelined
/// behind its ledger lock and credit reads, so its serial part waits for the gateway once
/// fewer (`ledger::invoicing::steps`); the caller must hold the ledger lock when it runs, as
/// every writer of `customer_credit` does.
pub async fn pg_move_exposure(
    conn: &AsyncPgConnection,
    tenant_id: &str,
    customer_id: &str,
    change: Exposure,
) -> Result<Exposure> {
    use crate::store::sql_types::Exact;
    let (open_charges, unpaid_invoices): (DbDecimal, DbDecimal) =
        diesel::insert_into(customer_credit::table)
            .values((
                customer_credit::tenant_id.eq(tenant_id),
                customer_credit::customer_id.eq(customer_id),
                customer_credit::thresholds.eq(None::<String>),
                customer_credit::policy.eq(None::<&str>),
                customer_credit::open_charges.eq(DbDecimal(change.open_charges)),
                customer_credit::unpaid_invoices.eq(DbDecimal(change.unpaid_invoices)),
                customer_credit::crossed.eq(encode_percents(&[])),
                customer_credit::updated_at.eq(DbTime(Utc::now())),
            ))
            .on_conflict((customer_credit::tenant_id, customer_credit::customer_id))
            .do_update()
            .set((
                customer_credit::open_charges.eq(diesel::dsl::sql::<Exact>(
                    "customer_credit.open_charges + excluded.open_charges",
                )),
                customer_credit::unpaid_invoices.eq(diesel::dsl::sql::<Exact>(
                    "customer_credit.unpaid_invoices + excluded.unpaid_invoices",
                )),
                customer_credit::updated_at.eq(
                    diesel::dsl::sql::<crate::store::sql_types::Instant>("excluded.updated_at"),
                ),
            ))
            .returning((
                customer_credit::open_charges,
                customer_credit::unpaid_invoices,
            ))
            // A fixed text: Diesel leaves upserts unprepared, a prepare round trip under the lock.
            .keep_prepared()
            .get_result(&mut &*conn)
            .await?;
    Ok(Exposure {
        open_charges: open_charges.0,
        unpaid_invoices: unpaid_invoices.0,
    })
}

impl CreditInputsReader for SqliteConn {
    fn credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<CreditInputRows>> {
        Box::pin(async move {
            let limits = limits_query!(&ids).load(self).await?;
            let states = self.credit_states(tenant_id.clone(), ids).await?;
            let defaults = defaults_query!(&tenant_id).first(self).await.optional()?;
            Ok((limits, states, defaults))
        })
    }

    fn locked_credit_input_rows(
        &mut self,
        tenant_id: String,
        ids: Vec<String>,
    ) -> BoxFuture<'_, QueryResult<(Option<i64>, CreditInputRows)>> {
        Box::pin(async move {
            let locked = ledger_lock_query!(&tenant_id)
                .get_result(self)
                .await
                .optional()?;
            Ok((locked, self.credit_input_rows(tenant_id, ids).await?))
        })
    }
}

fn inputs_of((limits, states, defaults): CreditInputRows, tenant_id: &str) -> Result<CreditInputs> {
    Ok(CreditInputs {
        limits: limits_of(limits, tenant_id)?,
        states: states_of(states)?,
        defaults: defaults_of(defaults)?,
    })
}

/// The ledger lock's sequence and the inputs read under it; None when no lock row was found.
fn locked_inputs_of(
    (locked, rows): (Option<i64>, CreditInputRows),
    tenant_id: &str,
) -> Result<Option<(i64, CreditInputs)>> {
    locked
        .map(|sequence| Ok((sequence, inputs_of(rows, tenant_id)?)))
        .transpose()
}

fn defaults_of(row: Option<(String, String)>) -> Result<CreditDefaults> {
    match row {
        None => Ok(CreditDefaults::default()),
        Some((thresholds, policy)) => CreditDefaults::decode(&thresholds, &policy),
    }
}

fn states_of(rows: Vec<CreditStateRow>) -> Result<HashMap<String, CreditState>> {
    rows.into_iter()
        .map(|r| {
            let state = CreditState::decode(
                &r.customer_id,
                r.thresholds.as_deref(),
                r.policy.as_deref(),
                r.open_charges.0,
                r.unpaid_invoices.0,
                &r.crossed,
            )?;
            Ok((r.customer_id, state))
        })
        .collect()
}

/// (limit, currency) by customer, of the rows of `tenant_id`'s customers.
fn limits_of(rows: Vec<LimitRow>, tenant_id: &str) -> Result<HashMap<String, (Decimal, Currency)>> {
    rows.into_iter()
        .filter(|(_, tenant, _, _)| tenant == tenant_id)
        .map(|(id, _, limit, currency)| Ok((id, (limit.0, Currency::from_stored(&currency)?))))
        .collect()
}

for_each_backend! {
    pub async fn defaults(conn: &mut Conn, tenant_id: &str) -> Result<CreditDefaults> {
        defaults_of(defaults_query!(tenant_id).first(conn).await.optional()?)
    }

    /// Everything a credit evaluation of the tenant's customers among `ids` reads.
    pub async fn inputs(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<CreditInputs> {
        let ids = ids.iter().map(|id| id.to_string()).collect();
        inputs_of(conn.credit_input_rows(tenant_id.to_string(), ids).await?, tenant_id)
    }

    /// The tenant's ledger lock and the last sequence handed out, then [`inputs`] under it;
    /// None when the tenant has no lock row yet (nothing was locked: take the lock with
    /// `ledger::charges::lock_ledger`, which makes the row, and read again).
    pub async fn inputs_under_ledger_lock(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<Option<(i64, CreditInputs)>> {
        let ids = ids.iter().map(|id| id.to_string()).collect();
        locked_inputs_of(conn.locked_credit_input_rows(tenant_id.to_string(), ids).await?, tenant_id)
    }

    pub async fn write_defaults(conn: &mut Conn, tenant_id: &str, new: &CreditDefaults) -> Result<()> {
        let now = DbTime(Utc::now());
        let thresholds = new.thresholds.encode();
        diesel::insert_into(credit_defaults::table)
            .values((
                credit_defaults::tenant_id.eq(tenant_id),
                credit_defaults::thresholds.eq(&thresholds),
                credit_defaults::policy.eq(new.policy.as_str()),
                credit_defaults::updated_at.eq(now),
            ))
            .on_conflict(credit_defaults::tenant_id)
            .do_update()
            .set((
                credit_defaults::thresholds.eq(&thresholds),
                credit_defaults::policy.eq(new.policy.as_str()),
                credit_defaults::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The customers with a credit state that inherits the tenant's thresholds or policy.
    pub async fn inheriting_defaults(conn: &mut Conn, tenant_id: &str) -> Result<Vec<String>> {
        Ok(customer_credit::table
            .filter(customer_credit::tenant_id.eq(tenant_id))
            .filter(customer_credit::thresholds.is_null().or(customer_credit::policy.is_null()))
            .select(customer_credit::customer_id)
            .order(customer_credit::customer_id)
            .load(conn)
            .await?)
    }

    /// The stored credit states of the tenant's customers among `ids`.
    pub async fn states(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<HashMap<String, CreditState>> {
        let ids = ids.iter().map(|id| id.to_string()).collect();
        states_of(conn.credit_states(tenant_id.to_string(), ids).await?)
    }

    /// (limit, currency) of the tenant's customers among `ids`.
    pub async fn limits(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<HashMap<String, (Decimal, Currency)>> {
        limits_of(limits_query!(ids).load(conn).await?, tenant_id)
    }

    /// Sets a customer's credit limit (its customer record's version moves with it).
    pub async fn set_limit(conn: &mut Conn, tenant_id: &str, customer_id: &str, limit: Decimal) -> Result<()> {
        diesel::update(customers::table)
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq(customer_id))
            .set((
                customers::credit_limit.eq(DbDecimal(limit)),
                customers::version.eq(customers::version + 1),
                customers::updated_at.eq(DbTime(Utc::now())),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    pub async fn write_state(conn: &mut Conn, tenant_id: &str, customer_id: &str, state: &CreditState) -> Result<()> {
        let thresholds = state.thresholds.as_ref().map(Thresholds::encode);
        let policy = state.policy.map(CreditPolicy::as_str);
        let crossed = encode_percents(&state.crossed);
        let now = DbTime(Utc::now());
        diesel::insert_into(customer_credit::table)
            .values((
                customer_credit::tenant_id.eq(tenant_id),
                customer_credit::customer_id.eq(customer_id),
                customer_credit::thresholds.eq(&thresholds),
                customer_credit::policy.eq(policy),
                customer_credit::open_charges.eq(DbDecimal(state.open_charges)),
                customer_credit::unpaid_invoices.eq(DbDecimal(state.unpaid_invoices)),
                customer_credit::crossed.eq(&crossed),
                customer_credit::updated_at.eq(now),
            ))
            .on_conflict((customer_credit::tenant_id, customer_credit::customer_id))
            .do_update()
            .set((
                customer_credit::thresholds.eq(&thresholds),
                customer_credit::policy.eq(policy),
                customer_credit::open_charges.eq(DbDecimal(state.open_charges)),
                customer_credit::unpaid_invoices.eq(DbDecimal(state.unpaid_invoices)),
                customer_credit::crossed.eq(&crossed),
                customer_credit::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Sets the open charges and crossed thresholds of each customer's credit state, creating
    /// the state (inheriting the tenant's thresholds and policy) where there is none.
    pub async fn write_exposure(conn: &mut Conn, tenant_id: &str, updates: &[ExposureUpdate]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        Ok(conn.write_exposure(tenant_id, updates).await?)
    }

    /// Numbers `events` with the tenant's credit sequence and appends them; the last sequence
    /// (callers hold the tenant's ledger lock, which orders credit appends too).
    pub async fn append_events(conn: &mut Conn, tenant_id: &str, events: &[CreditEvent]) -> Result<i64> {
        diesel::insert_into(credit_sequences::table)
            .values((credit_sequences::tenant_id.eq(tenant_id), credit_sequences::last_sequence.eq(0i64)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let count = events.len() as i64;
        let last: i64 = diesel::update(credit_sequences::table.find(tenant_id))
            .set(credit_sequences::last_sequence.eq(credit_sequences::last_sequence + count))
            .returning(credit_sequences::last_sequence)
            .get_result(conn)
            .await?;
        let now = DbTime(Utc::now());
        for (i, e) in events.iter().enumerate() {
            diesel::insert_into(credit_events::table)
                .values((
                    credit_events::tenant_id.eq(tenant_id),
                    credit_events::sequence.eq(last - count + 1 + i as i64),
                    credit_events::customer_id.eq(&e.customer_id),
                    credit_events::threshold_percent.eq(e.threshold_percent as i32),
                    credit_events::direction.eq(e.direction.as_str()),
                    credit_events::exposure.eq(DbDecimal(e.exposure)),
                    credit_events::credit_limit.eq(DbDecimal(e.credit_limit)),
                    credit_events::currency.eq(e.currency.code()),
                    credit_events::policy.eq(e.policy.as_str()),
                    credit_events::action.eq(e.action.as_str()),
                    credit_events::ledger_sequence.eq(e.ledger_sequence),
                    credit_events::recorded_at.eq(now),
                    credit_events::service_action_id.eq(e.service_action_id.as_deref()),
                ))
                .execute(conn)
                .await?;
        }
        Ok(last)
    }

    /// A customer's effective settings: its own, else the tenant's defaults.
    pub async fn settings(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<CreditSettings> {
        let ids = [customer_id];
        let (limit, currency) = limits(conn, tenant_id, &ids)
            .await?
            .remove(customer_id)
            .ok_or_else(|| Error::not_found("customer", customer_id))?;
        let state = states(conn, tenant_id, &ids).await?.remove(customer_id).unwrap_or_default();
        let defaults = defaults(conn, tenant_id).await?;
        Ok(CreditSettings {
            customer_id: customer_id.to_string(),
            credit_limit: limit,
            currency,
            thresholds_inherited: state.thresholds.is_none(),
            thresholds: state.thresholds.unwrap_or(defaults.thresholds),
            policy_inherited: state.policy.is_none(),
            policy: state.policy.unwrap_or(defaults.policy),
        })
    }

    /// Credit events after `after`, in sequence order (only `customer_ids`' when set).
    pub async fn events_after(conn: &mut Conn, tenant_id: &str, customer_ids: &[String], after: i64, limit: i64) -> Result<Vec<CreditEvent>> {
        let mut query = credit_events::table
            .filter(credit_events::tenant_id.eq(tenant_id))
            .filter(credit_events::sequence.gt(after))
            .select((
                credit_events::sequence,
                credit_events::customer_id,
                credit_events::threshold_percent,
                credit_events::direction,
                credit_events::exposure,
                credit_events::credit_limit,
                credit_events::currency,
                credit_events::policy,
                credit_events::action,
                credit_events::ledger_sequence,
                credit_events::recorded_at,
                credit_events::service_action_id,
            ))
            .order(credit_events::sequence)
            .limit(limit)
            .into_boxed();
        if !customer_ids.is_empty() {
            query = query.filter(credit_events::customer_id.eq_any(customer_ids));
        }
        let rows: Vec<CreditEventRow> = query.load(conn).await?;
        rows.into_iter().map(event_from_row).collect()
    }

    /// The tenant's last credit event sequence (0 before the first).
    pub async fn high_water_mark(conn: &mut Conn, tenant_id: &str) -> Result<i64> {
        Ok(credit_sequences::table
            .find(tenant_id)
            .select(credit_sequences::last_sequence)
            .first(conn)
            .await
            .optional()?
            .unwrap_or(0))
    }
}

/// The exposure upsert, where the dialects part ways for speed.
trait ExposureWriter {
    fn write_exposure<'a>(
        &'a mut self,
        tenant_id: &'a str,
        updates: &'a [ExposureUpdate],
    ) -> BoxFuture<'a, QueryResult<()>>;
}

impl ExposureWriter for AsyncPgConnection {
    /// One statement for every customer a ledger write touched (thousands, for a big pull).
    fn write_exposure<'a>(
        &'a mut self,
        tenant_id: &'a str,
        updates: &'a [ExposureUpdate],
    ) -> BoxFuture<'a, QueryResult<()>> {
        use diesel::sql_types::{Array, Numeric, Text, Timestamptz};
        let ids: Vec<&str> = updates.iter().map(|u| u.customer_id.as_str()).collect();
        let open: Vec<Decimal> = updates.iter().map(|u| u.open_charges).collect();
        let crossed: Vec<String> = updates
            .iter()
            .map(|u| encode_percents(&u.crossed))
            .collect();
        Box::pin(async move {
            diesel::sql_query(UPSERT_EXPOSURE_PG)
                .bind::<Text, _>(tenant_id)
                .bind::<Array<Text>, _>(ids)
                .bind::<Array<Numeric>, _>(open)
                .bind::<Timestamptz, _>(Utc::now())
                .bind::<Array<Text>, _>(crossed)
                .keep_prepared()
                .execute(self)
                .await?;
            Ok(())
        })
    }
}

impl ExposureWriter for SqliteConn {
    /// One prepared single-row upsert per customer: in process, a statement costs no round trip.
    fn write_exposure<'a>(
        &'a mut self,
        tenant_id: &'a str,
        updates: &'a [ExposureUpdate],
    ) -> BoxFuture<'a, QueryResult<()>> {
        Box::pin(async move {
            let now = DbTime(Utc::now());
            for update in updates {
                let crossed = encode_percents(&update.crossed);
                diesel::insert_into(customer_credit::table)
                    .values((
                        customer_credit::tenant_id.eq(tenant_id),
                        customer_credit::customer_id.eq(&update.customer_id),
                        customer_credit::thresholds.eq(None::<String>),
                        customer_credit::policy.eq(None::<String>),
                        customer_credit::open_charges.eq(DbDecimal(update.open_charges)),
                        customer_credit::unpaid_invoices.eq(DbDecimal(Decimal::ZERO)),
                        customer_credit::crossed.eq(&crossed),
                        customer_credit::updated_at.eq(now),
                    ))
                    .on_conflict((customer_credit::tenant_id, customer_credit::customer_id))
                    .do_update()
                    .set((
                        customer_credit::open_charges.eq(DbDecimal(update.open_charges)),
                        customer_credit::crossed.eq(&crossed),
                        customer_credit::updated_at.eq(now),
                    ))
                    .execute(self)
                    .await?;
            }
            Ok(())
        })
    }
}

impl Store {
    pub async fn credit_defaults(&self, tenant_id: &str) -> Result<CreditDefaults> {
        dispatch!(self, read, self::defaults(tenant_id))
    }

    pub async fn credit_settings(
        &self,
        tenant_id: &str,
        customer_id: &str,
    ) -> Result<CreditSettings> {
        dispatch!(self, read, self::settings(tenant_id, customer_id))
    }

    pub async fn credit_events_after(
        &self,
        tenant_id: &str,
        customer_ids: &[String],
        after: i64,
        limit: i64,
    ) -> Result<Vec<CreditEvent>> {
        dispatch!(
            self,
            read,
            self::events_after(tenant_id, customer_ids, after, limit)
        )
    }

    pub async fn credit_high_water_mark(&self, tenant_id: &str) -> Result<i64> {
        dispatch!(self, read, self::high_water_mark(tenant_id))
    }
}
