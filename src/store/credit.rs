//! Credit control: each customer's exposure moves with the ledger (inside the appending
//! transaction), and every threshold crossing appends a credit event numbered by its own
//! per-tenant gap-free sequence, in the same transaction. An event is therefore never lost and
//! never duplicated, and exposure, crossings and charges always agree.
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;

use super::batch::CreditExposureRow;
use super::credit_schema::{credit_defaults, credit_events, credit_sequences, customer_credit};
use super::schema::{charge_totals, customers};
use super::sql_types::{DbDecimal, DbTime};
use super::{Store, dispatch, for_each_backend};
use crate::domain::access::Principal;
use crate::domain::credit::{
    CreditAction, CreditPolicy, Direction, Forecast, RUN_RATE_DAYS, Thresholds, crossed, crossings,
    decode_percents, encode_percents, forecast,
};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, Replay};
use crate::domain::ledger_append::usage_date;
use crate::domain::money::Currency;

/// A tenant's defaults for customers without their own thresholds or policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditDefaults {
    pub thresholds: Thresholds,
    pub policy: CreditPolicy,
}

impl CreditDefaults {
    /// A stored credit_defaults row's thresholds and policy.
    pub(crate) fn from_row(thresholds: &str, policy: &str) -> Result<Self> {
        Ok(CreditDefaults {
            thresholds: Thresholds::decode(thresholds).map_err(Error::Internal)?,
            policy: policy.parse().map_err(Error::Internal)?,
        })
    }
}

impl Default for CreditDefaults {
    fn default() -> Self {
        CreditDefaults {
            thresholds: Thresholds::default_set(),
            policy: CreditPolicy::Notify,
        }
    }
}

/// A customer's effective credit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditSettings {
    pub customer_id: String,
    pub credit_limit: Decimal,
    pub currency: Currency,
    pub thresholds: Thresholds,
    pub thresholds_inherited: bool,
    pub policy: CreditPolicy,
    pub policy_inherited: bool,
}

/// A change of settings: `None` leaves a field alone; `Some(None)` returns it to the tenant's
/// default.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CreditSettingsPatch {
    pub credit_limit: Option<Decimal>,
    pub thresholds: Option<Option<Thresholds>>,
    pub policy: Option<Option<CreditPolicy>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditPosition {
    pub customer_id: String,
    pub currency: Currency,
    pub credit_limit: Decimal,
    pub open_charges: Decimal,
    pub unpaid_invoices: Decimal,
    pub exposure: Decimal,
    /// Limit minus exposure (negative when over the limit).
    pub headroom: Decimal,
    pub crossed: Vec<u32>,
    pub policy: CreditPolicy,
    pub forecast: Forecast,
    /// The ledger sequence the figures include.
    pub as_of_sequence: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditEvent {
    pub sequence: i64,
    pub customer_id: String,
    pub threshold_percent: u32,
    pub direction: Direction,
    pub exposure: Decimal,
    pub credit_limit: Decimal,
    pub currency: Currency,
    pub policy: CreditPolicy,
    pub action: CreditAction,
    /// The ledger sequence whose write caused the crossing.
    pub ledger_sequence: i64,
    pub recorded_at: DateTime<Utc>,
}

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
);

fn event_from_row(row: CreditEventRow) -> Result<CreditEvent> {
    let (sequence, customer_id, pct, direction, exposure, limit, currency, policy, action, ls, at) =
        row;
    let corrupt = |e: String| Error::Internal(format!("stored credit event {sequence}: {e}"));
    Ok(CreditEvent {
        sequence,
        customer_id,
        threshold_percent: u32::try_from(pct).map_err(|e| corrupt(e.to_string()))?,
        direction: direction.parse().map_err(corrupt)?,
        exposure: exposure.0,
        credit_limit: limit.0,
        currency: Currency::parse("currency", &currency).map_err(|e| corrupt(e.to_string()))?,
        policy: policy.parse().map_err(corrupt)?,
        action: action.parse().map_err(corrupt)?,
        ledger_sequence: ls,
        recorded_at: at.0,
    })
}

/// A customer_credit row: (customer_id, thresholds, policy, open_charges, unpaid, crossed).
pub(crate) type StateRow = (
    String,
    Option<String>,
    Option<String>,
    DbDecimal,
    DbDecimal,
    String,
);

pub(crate) struct State {
    thresholds: Option<Thresholds>,
    policy: Option<CreditPolicy>,
    open_charges: Decimal,
    unpaid_invoices: Decimal,
    crossed: Vec<u32>,
}

impl State {
    fn empty() -> Self {
        State {
            thresholds: None,
            policy: None,
            open_charges: Decimal::ZERO,
            unpaid_invoices: Decimal::ZERO,
            crossed: Vec::new(),
        }
    }

    pub(crate) fn from_row(row: StateRow) -> Result<(String, State)> {
        let (id, thresholds, policy, open, unpaid, crossed) = row;
        let corrupt = |e: String| Error::Internal(format!("stored credit state of {id}: {e}"));
        let state = State {
            thresholds: thresholds
                .map(|t| Thresholds::decode(&t))
                .transpose()
                .map_err(corrupt)?,
            policy: policy.map(|p| p.parse()).transpose().map_err(corrupt)?,
            open_charges: open.0,
            unpaid_invoices: unpaid.0,
            crossed: decode_percents(&crossed).map_err(corrupt)?,
        };
        Ok((id, state))
    }
}

pub(crate) fn parse_currency(code: &str) -> Result<Currency> {
    Currency::parse("billing_currency", code)
        .map_err(|e| Error::Internal(format!("stored customer: {e}")))
}

/// What credit evaluation reads for the customers a ledger write touched.
pub(crate) struct CreditInputs {
    /// (limit, currency) by customer.
    pub limits: HashMap<String, (Decimal, Currency)>,
    pub states: HashMap<String, State>,
    pub defaults: CreditDefaults,
}

/// Moves each customer's open charges by its delta and re-evaluates its thresholds: the
/// customers' new exposure rows and the crossings to record (numbered by the caller).
pub(crate) fn assess(
    deltas: &[(String, Decimal)],
    mut inputs: CreditInputs,
    ledger_sequence: i64,
) -> Result<(Vec<CreditExposureRow>, Vec<CreditEvent>)> {
    let defaults = &inputs.defaults;
    let mut events = Vec::new();
    let mut exposure_rows = Vec::with_capacity(deltas.len());
    for (customer_id, delta) in deltas {
        let Some((limit, currency)) = inputs.limits.get(customer_id) else {
            return Err(Error::not_found("customer", customer_id.clone()));
        };
        let mut state = inputs
            .states
            .remove(customer_id)
            .unwrap_or_else(State::empty);
        state.open_charges += *delta;
        let thresholds = state
            .thresholds
            .clone()
            .unwrap_or_else(|| defaults.thresholds.clone());
        let policy = state.policy.unwrap_or(defaults.policy);
        let exposure = state.open_charges + state.unpaid_invoices;
        // Thresholds no longer configured are forgotten, not "crossed down".
        let before: Vec<u32> = state
            .crossed
            .iter()
            .copied()
            .filter(|p| thresholds.percents().contains(p))
            .collect();
        let after = crossed(exposure, *limit, &thresholds);
        for c in crossings(&before, &after, policy) {
            events.push(CreditEvent {
                sequence: 0,
                customer_id: customer_id.clone(),
                threshold_percent: c.threshold_percent,
                direction: c.direction,
                exposure,
                credit_limit: *limit,
                currency: *currency,
                policy,
                action: c.action,
                ledger_sequence,
                recorded_at: Utc::now(),
            });
        }
        state.crossed = after;
        exposure_rows.push(CreditExposureRow {
            customer_id: customer_id.clone(),
            open_charges: state.open_charges,
            crossed: encode_percents(&state.crossed),
        });
    }
    Ok((exposure_rows, events))
}

for_each_backend! {
    pub async fn defaults(conn: &mut Conn, tenant_id: &str) -> Result<CreditDefaults> {
        let row: Option<(String, String)> = credit_defaults::table
            .find(tenant_id)
            .select((credit_defaults::thresholds, credit_defaults::policy))
            .first(conn)
            .await
            .optional()?;
        match row {
            None => Ok(CreditDefaults::default()),
            Some((thresholds, policy)) => CreditDefaults::from_row(&thresholds, &policy),
        }
    }

    async fn states(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<HashMap<String, State>> {
        let rows: Vec<StateRow> = customer_credit::table
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
            .load(conn)
            .await?;
        rows.into_iter().map(State::from_row).collect()
    }

    /// (limit, currency) of the tenant's customers among `ids`.
    async fn limits(conn: &mut Conn, tenant_id: &str, ids: &[&str]) -> Result<HashMap<String, (Decimal, Currency)>> {
        // By id alone (ids are unique across tenants): a primary-key probe per id whatever the
        // planner's statistics say; the tenant is checked here.
        let rows: Vec<(String, String, DbDecimal, String)> = customers::table
            .filter(customers::id.eq_any(ids))
            .select((customers::id, customers::tenant_id, customers::credit_limit, customers::billing_currency))
            .load(conn)
            .await?;
        rows.into_iter()
            .filter(|(_, tenant, _, _)| tenant == tenant_id)
            .map(|(id, _, limit, currency)| Ok((id, (limit.0, parse_currency(&currency)?))))
            .collect()
    }

    async fn write_state(conn: &mut Conn, tenant_id: &str, customer_id: &str, state: &State) -> Result<()> {
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

    /// Numbers and appends credit events (callers hold the tenant's ledger lock).
    async fn append_events(conn: &mut Conn, tenant_id: &str, events: &[CreditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
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
                ))
                .execute(conn)
                .await?;
        }
        if IS_POSTGRES {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(crate::store::feed::CREDIT_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(format!("{tenant_id}:{last}"))
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Moves each customer's open charges by its delta, then re-evaluates its thresholds and
    /// records the crossings. Callers hold the tenant's ledger lock.
    pub async fn evaluate(conn: &mut Conn, tenant_id: &str, deltas: &[(String, Decimal)], ledger_sequence: i64) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = deltas.iter().map(|(id, _)| id.as_str()).collect();
        let inputs = CreditInputs {
            limits: limits(conn, tenant_id, &ids).await?,
            states: states(conn, tenant_id, &ids).await?,
            defaults: defaults(conn, tenant_id).await?,
        };
        let (exposure_rows, events) = assess(deltas, inputs, ledger_sequence)?;
        // One statement for every touched customer (the ledger hook may touch thousands).
        crate::store::batch::BatchWriter::write_credit_exposure(conn, tenant_id.to_string(), exposure_rows).await?;
        append_events(conn, tenant_id, &events).await
    }

    pub async fn settings(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<CreditSettings> {
        let ids = [customer_id];
        let (limit, currency) = limits(conn, tenant_id, &ids)
            .await?
            .remove(customer_id)
            .ok_or_else(|| Error::not_found("customer", customer_id))?;
        let state = states(conn, tenant_id, &ids).await?.remove(customer_id).unwrap_or_else(State::empty);
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

    /// A retry of a recorded request id answers the customer's settings without changing them.
    pub async fn update_settings(conn: &mut Conn, tenant_id: &str, customer_id: &str, patch: &CreditSettingsPatch, request: &IdempotencyKey) -> Result<CreditSettings> {
        conn.transaction(async |conn| {
            if let Replay::Done { resource_id } = q::idempotency::claim(conn, tenant_id, request, customer_id).await? {
                return settings(conn, tenant_id, &resource_id).await;
            }
            q::charges::lock_ledger(conn, tenant_id).await?;
            let ids = [customer_id];
            if !limits(conn, tenant_id, &ids).await?.contains_key(customer_id) {
                return Err(Error::not_found("customer", customer_id));
            }
            if let Some(limit) = patch.credit_limit {
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
            }
            let mut state = states(conn, tenant_id, &ids).await?.remove(customer_id).unwrap_or_else(State::empty);
            if let Some(thresholds) = &patch.thresholds {
                state.thresholds = thresholds.clone();
            }
            if let Some(policy) = patch.policy {
                state.policy = policy;
            }
            write_state(conn, tenant_id, customer_id, &state).await?;
            let hwm = q::charges::high_water_mark(conn, tenant_id).await?;
            evaluate(conn, tenant_id, &[(customer_id.to_string(), Decimal::ZERO)], hwm).await?;
            settings(conn, tenant_id, customer_id).await
        })
        .await
    }

    /// Replaces the tenant's defaults and re-evaluates the customers that inherit them. A retry
    /// of a recorded request id answers the defaults without changing them.
    pub async fn update_defaults(conn: &mut Conn, tenant_id: &str, new: &CreditDefaults, request: &IdempotencyKey) -> Result<CreditDefaults> {
        conn.transaction(async |conn| {
            if let Replay::Done { .. } = q::idempotency::claim(conn, tenant_id, request, tenant_id).await? {
                return defaults(conn, tenant_id).await;
            }
            q::charges::lock_ledger(conn, tenant_id).await?;
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
            let ids: Vec<String> = customer_credit::table
                .filter(customer_credit::tenant_id.eq(tenant_id))
                .filter(customer_credit::thresholds.is_null().or(customer_credit::policy.is_null()))
                .select(customer_credit::customer_id)
                .order(customer_credit::customer_id)
                .load(conn)
                .await?;
            let hwm = q::charges::high_water_mark(conn, tenant_id).await?;
            let deltas: Vec<(String, Decimal)> = ids.into_iter().map(|id| (id, Decimal::ZERO)).collect();
            evaluate(conn, tenant_id, &deltas, hwm).await?;
            defaults(conn, tenant_id).await
        })
        .await
    }

    /// Re-evaluates one customer after its credit limit changed elsewhere (UpdateCustomer).
    pub async fn reevaluate(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<()> {
        q::charges::lock_ledger(conn, tenant_id).await?;
        let hwm = q::charges::high_water_mark(conn, tenant_id).await?;
        evaluate(conn, tenant_id, &[(customer_id.to_string(), Decimal::ZERO)], hwm).await
    }

    pub async fn position(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>) -> Result<CreditPosition> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                // One snapshot for the figures and the sequence they include.
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let settings = settings(conn, tenant_id, customer_id).await?;
            let state = states(conn, tenant_id, &[customer_id]).await?.remove(customer_id).unwrap_or_else(State::empty);
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
            let recent: Vec<DbDecimal> = charge_totals::table
                .filter(charge_totals::tenant_id.eq(tenant_id))
                .filter(charge_totals::customer_id.eq(customer_id))
                .filter(charge_totals::usage_date.between(today - Duration::days(RUN_RATE_DAYS - 1), today))
                .select(charge_totals::amount)
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
                headroom: settings.credit_limit - exposure,
                crossed,
                policy: settings.policy,
                forecast: forecast(exposure, settings.credit_limit, recent, now),
                as_of_sequence,
            })
        })
        .await
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

impl Store {
    pub async fn credit_defaults(&self, principal: &Principal) -> Result<CreditDefaults> {
        dispatch!(self, read, credit::defaults(&principal.tenant_id))
    }

    pub async fn update_credit_defaults(
        &self,
        principal: &Principal,
        new: &CreditDefaults,
        request: &IdempotencyKey,
    ) -> Result<CreditDefaults> {
        dispatch!(
            self,
            write,
            credit::update_defaults(&principal.tenant_id, new, request)
        )
    }

    pub async fn credit_settings(
        &self,
        principal: &Principal,
        customer_id: &str,
    ) -> Result<CreditSettings> {
        principal.require_customer(customer_id)?;
        dispatch!(
            self,
            read,
            credit::settings(&principal.tenant_id, customer_id)
        )
    }

    pub async fn update_credit_settings(
        &self,
        principal: &Principal,
        customer_id: &str,
        patch: &CreditSettingsPatch,
        request: &IdempotencyKey,
    ) -> Result<CreditSettings> {
        principal.require_customer(customer_id)?;
        dispatch!(
            self,
            write,
            credit::update_settings(&principal.tenant_id, customer_id, patch, request)
        )
    }

    pub async fn credit_position(
        &self,
        principal: &Principal,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CreditPosition> {
        principal.require_customer(customer_id)?;
        dispatch!(
            self,
            read,
            credit::position(&principal.tenant_id, customer_id, now)
        )
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
            credit::events_after(tenant_id, customer_ids, after, limit)
        )
    }

    pub async fn credit_high_water_mark(&self, tenant_id: &str) -> Result<i64> {
        dispatch!(self, read, credit::high_water_mark(tenant_id))
    }
}
