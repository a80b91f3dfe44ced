//! Credit control in step with the ledger: each customer's exposure moves inside the appending
//! transaction, and every threshold crossing appends a credit event numbered by its own
//! per-tenant gap-free sequence in the same transaction. An event is therefore never lost and
//! never duplicated, and exposure, crossings and charges always agree. The rules are
//! `domain::credit`; the records `store::credit`.
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;

use super::diesel_tx::DieselLedger;
use super::tx::LedgerTx;
use super::{Ledger, ledger_backends};
use crate::domain::credit::{
    CreditAction, CreditDefaults, CreditEvent, CreditInputs, CreditPosition, CreditSettings,
    CreditSettingsPatch, RUN_RATE_DAYS, assess, forecast,
};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ledger_append::{Appended, usage_date};
use crate::domain::payment::Exposure;
use crate::domain::service_action::credit_policy;
use crate::domain::spend::rollup::Grain;
use crate::store::dispatch;
use crate::store::idempotency::write_once;
use crate::store::schema::{charge_rollups, customers};
use crate::store::sql_types::DbDecimal;

/// The credit hook of a ledger write that appended events: exposure moves by each customer's
/// delta, and crossings become credit events.
pub(super) async fn hook<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    appended: &Appended,
) -> Result<()> {
    let deltas: Vec<(String, Decimal)> = appended
        .exposure
        .iter()
        .map(|(id, sum)| (id.clone(), *sum))
        .collect();
    evaluate(tx, tenant_id, &deltas, appended.last_sequence).await
}

/// Moves each customer's open charges by its delta, then re-evaluates its thresholds and
/// records the crossings, caused by the write that ended at `ledger_sequence`. Callers hold the
/// tenant's ledger lock.
async fn evaluate<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    deltas: &[(String, Decimal)],
    ledger_sequence: i64,
) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = deltas.iter().map(|(id, _)| id.as_str()).collect();
    let inputs = tx.credit_inputs(tenant_id, &ids).await?;
    let (exposure, events) = assess(deltas, inputs, ledger_sequence)?;
    // One statement for every touched customer (a ledger write may touch thousands).
    tx.write_exposure(tenant_id, &exposure).await?;
    record_crossings(tx, tenant_id, events).await
}

/// Appends the crossings of an assessment as credit events, with the suspends and resumes an
/// AUTO_SUSPEND policy asks for. Callers hold the tenant's ledger lock.
async fn record_crossings<T: LedgerTx>(
    tx: &mut T,
    tenant_id: &str,
    mut events: Vec<CreditEvent>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // AUTO_SUSPEND acts: its suspend or resume is recorded in this transaction, and the event
    // names it.
    let acting: Vec<&str> = events
        .iter()
        .filter(|e| e.action != CreditAction::Notify)
        .map(|e| e.customer_id.as_str())
        .collect();
    let mut planned = Vec::new();
    if !acting.is_empty() {
        let customers = tx.policy_customers(tenant_id, &acting).await?;
        planned = credit_policy::plan(&mut events, &customers);
    }
    let last = tx.append_credit_events(tenant_id, &events).await?;
    if !planned.is_empty() {
        credit_policy::number(&mut planned, last - events.len() as i64 + 1);
        let actions: Vec<_> = planned.into_iter().map(|(_, action)| action).collect();
        tx.insert_service_actions(tenant_id, &actions).await?;
    }
    tx.notify(
        super::feed::CREDIT_CHANNEL,
        &super::feed::notification(tenant_id, last),
    )
    .await
}

ledger_backends! {
    use super::{evaluate, record_crossings};

    /// Moves a customer's exposure by `change` (a close moves open charges to an unpaid
    /// invoice, a payment lowers the unpaid part) and records the crossings that causes (a
    /// payment can allow resumption). Takes the ledger lock, which the caller keeps to its
    /// commit: this is a close's serial part, so the credit inputs are read once and the state
    /// written once (it was read and written twice, 8 statements under the lock, now 5), and
    /// on PostgreSQL the lock and the reads go out in one round trip.
    pub async fn move_exposure(conn: &mut Conn, tenant_id: &str, customer_id: &str, change: impl FnOnce(Exposure) -> Result<Exposure>) -> Result<()> {
        let locked = q::credit::inputs_under_ledger_lock(conn, tenant_id, &[customer_id]).await?;
        apply_exposure(conn, tenant_id, customer_id, locked, change, None).await
    }

    /// [`move_exposure`] from `locked`, the ledger lock's sequence and the customer's credit
    /// inputs read under it (`store::credit::inputs_under_ledger_lock`: a close reads them
    /// pipelined with its invoice number). None: the tenant had no lock row, nothing is
    /// locked yet. `stored`: the exposure after the change, as the store already wrote it
    /// under the same lock (a close on PostgreSQL moves it with its serial step); the state is
    /// then written again only if the crossed thresholds changed.
    pub async fn apply_exposure(conn: &mut Conn, tenant_id: &str, customer_id: &str, locked: Option<(i64, CreditInputs)>, change: impl FnOnce(Exposure) -> Result<Exposure>, stored: Option<Exposure>) -> Result<()> {
        let (ledger_sequence, mut inputs) = match (locked, stored) {
            (Some(locked), _) => locked,
            // The tenant's first ledger write: its lock row is made, then the inputs read.
            (None, None) => {
                let sequence = q::charges::lock_ledger(conn, tenant_id).await?;
                (sequence, DieselLedger::new(conn).credit_inputs(tenant_id, &[customer_id]).await?)
            }
            // Moved only where the lock row existed, and it is never removed.
            (None, Some(_)) => return Err(Error::Internal(format!("the exposure of {customer_id} was moved without the ledger lock of {tenant_id}"))),
        };
        let mut state = inputs.states.remove(customer_id).unwrap_or_default();
        let moved = change(Exposure { open_charges: state.open_charges, unpaid_invoices: state.unpaid_invoices })?;
        // The store's sum and the domain's rule agree, or nothing is committed.
        if let Some(stored) = stored
            && stored != moved
        {
            return Err(Error::Internal(format!("the exposure of {customer_id} moved to {stored:?} in the store, {moved:?} by its rule")));
        }
        state.open_charges = moved.open_charges;
        state.unpaid_invoices = moved.unpaid_invoices;
        inputs.states.insert(customer_id.to_string(), state.clone());
        let (assessed, events) = assess(&[(customer_id.to_string(), Decimal::ZERO)], inputs, ledger_sequence)?;
        let crossed = assessed.into_iter().next().map(|a| a.crossed).unwrap_or_default();
        if stored.is_none() || crossed != state.crossed {
            state.crossed = crossed;
            q::credit::write_state(conn, tenant_id, customer_id, &state).await?;
        }
        record_crossings(&mut DieselLedger::new(conn), tenant_id, events).await
    }

    /// Re-evaluates customers (their exposure unchanged) after their settings moved: takes the
    /// ledger lock so the crossings are numbered in order with every write's.
    pub async fn reevaluate(conn: &mut Conn, tenant_id: &str, customer_ids: Vec<String>) -> Result<()> {
        let hwm = q::charges::lock_ledger(conn, tenant_id).await?;
        let deltas: Vec<(String, Decimal)> = customer_ids.into_iter().map(|id| (id, Decimal::ZERO)).collect();
        evaluate(&mut DieselLedger::new(conn), tenant_id, &deltas, hwm).await
    }

    /// Changes a customer's settings.
    pub async fn update_settings(conn: &mut Conn, tenant_id: &str, customer_id: &str, patch: &CreditSettingsPatch) -> Result<CreditSettings> {
        conn.transaction(async |conn| {
            q::charges::lock_ledger(conn, tenant_id).await?;
            let ids = [customer_id];
            if !q::credit::limits(conn, tenant_id, &ids).await?.contains_key(customer_id) {
                return Err(Error::not_found("customer", customer_id));
            }
            if let Some(limit) = patch.credit_limit {
                q::credit::set_limit(conn, tenant_id, customer_id, limit).await?;
            }
            let mut state = q::credit::states(conn, tenant_id, &ids).await?.remove(customer_id).unwrap_or_default();
            if let Some(thresholds) = &patch.thresholds {
                state.thresholds = thresholds.clone();
            }
            if let Some(policy) = patch.policy {
                state.policy = policy;
            }
            q::credit::write_state(conn, tenant_id, customer_id, &state).await?;
            reevaluate(conn, tenant_id, vec![customer_id.to_string()]).await?;
            q::credit::settings(conn, tenant_id, customer_id).await
        })
        .await
    }

    /// Replaces the tenant's defaults and re-evaluates the customers that inherit them.
    pub async fn update_defaults(conn: &mut Conn, tenant_id: &str, new: &CreditDefaults) -> Result<CreditDefaults> {
        conn.transaction(async |conn| {
            q::charges::lock_ledger(conn, tenant_id).await?;
            q::credit::write_defaults(conn, tenant_id, new).await?;
            let inheriting = q::credit::inheriting_defaults(conn, tenant_id).await?;
            reevaluate(conn, tenant_id, inheriting).await?;
            q::credit::defaults(conn, tenant_id).await
        })
        .await
    }

    pub async fn position(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>) -> Result<CreditPosition> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                // One snapshot for the figures and the sequence they include.
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let settings = q::credit::settings(conn, tenant_id, customer_id).await?;
            let state = q::credit::states(conn, tenant_id, &[customer_id]).await?.remove(customer_id).unwrap_or_default();
            // By usage day in the customer's time zone: today and the days before it.
            let zone: String = customers::table
                .filter(customers::tenant_id.eq(tenant_id))
                .filter(customers::id.eq(customer_id))
                .select(customers::time_zone)
                .first(conn)
                .await?;
            let zone: chrono_tz::Tz = zone
                .parse()
                .map_err(|_| Error::Internal(format!("stored time zone {zone:?} is unknown")))?;
            let today = usage_date(now, zone);
            // The per-day rollup (see `domain::spend::rollup`): a row a day, whatever the meters.
            let recent: Vec<DbDecimal> = charge_rollups::table
                .filter(charge_rollups::tenant_id.eq(tenant_id))
                .filter(charge_rollups::customer_id.eq(customer_id))
                .filter(charge_rollups::grain.eq(Grain::Day.as_str()))
                .filter(charge_rollups::bucket.between(today - Duration::days(RUN_RATE_DAYS - 1), today))
                .select(charge_rollups::amount)
                .load(conn)
                .await?;
            let recent: Decimal = recent.into_iter().map(|d| d.0).sum();
            let exposure = state.open_charges + state.unpaid_invoices;
            let crossed = state.crossed.iter().copied().filter(|p| settings.thresholds.percents().contains(p)).collect();
            Ok(CreditPosition {
                customer_id: customer_id.to_string(),
                currency: settings.currency,
                credit_limit: settings.credit_limit,
                open_charges: state.open_charges,
                unpaid_invoices: state.unpaid_invoices,
                exposure,
                // A limit of zero is no limit: nothing to be over.
                headroom: (settings.credit_limit > Decimal::ZERO).then(|| settings.credit_limit - exposure),
                crossed,
                policy: settings.policy,
                forecast: forecast(exposure, settings.credit_limit, recent, now),
                as_of_sequence,
            })
        })
        .await
    }
}

impl Ledger {
    pub async fn update_credit_defaults(
        &self,
        tenant_id: &str,
        new: &CreditDefaults,
        request: &Idempotent<'_, CreditDefaults>,
    ) -> Result<Answer<CreditDefaults>> {
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::update_defaults(tenant_id, new)
        )
    }

    pub async fn update_credit_settings(
        &self,
        tenant_id: &str,
        customer_id: &str,
        patch: &CreditSettingsPatch,
        request: &Idempotent<'_, CreditSettings>,
    ) -> Result<Answer<CreditSettings>> {
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::update_settings(tenant_id, customer_id, patch)
        )
    }

    pub async fn credit_position(
        &self,
        tenant_id: &str,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CreditPosition> {
        dispatch!(
            self.store,
            read,
            self::position(tenant_id, customer_id, now)
        )
    }
}
