//! Closing billing periods into invoices, and payments against them, in step with the ledger.
//!
//! A close runs in one transaction that takes the tenant's ledger lock first: the sequence it
//! reads (`S`) is then the last one committed, no charge can commit beside it, and every charge
//! up to `S` that the selection rule (`domain::invoice_selection`) puts on the invoice is on it,
//! none after. The invoice, its lines, its number (the tenant's gap-free counter), the
//! customer's close chain and its exposure (open charges move to unpaid invoices) are written in
//! the same transaction. Payments take the same lock, because exposure is written under it.
mod steps;

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Ledger, ledger_backends};
use crate::domain::billing_schedule::BillingSchedule;
use crate::domain::credit::CreditInputs;
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent, Written};
use crate::domain::ids::{INVOICE, PAYMENT, new_id};
use crate::domain::invoice::{BillingProfile, InvoiceContext};
use crate::domain::invoice_groups::{CloseBounds, GroupClass, close_from_groups, period_days};
use crate::domain::invoice_number::{format_invoice_number, number_stem};
use crate::domain::invoice_record::{CloseChain, Invoice, NewPayment, Payment, customer_schedule};
use crate::domain::invoice_selection::ClosePoint;
use crate::domain::invoice_settings::InvoiceSettings;
use crate::domain::payment::{Exposure, PaymentStatus, apply_payment, parse_payment_amount};
use crate::domain::period::{Period, local_date, start_of_day};
use crate::domain::period_close::{
    CloseOrder, check_close_order, check_may_close, next_period_to_close, periods_to_close,
};
use crate::store::dispatch;
use crate::store::idempotency::write_once;
use crate::store::schema::charge_totals;

/// See `plan`.
pub struct Plan {
    customer: BillingProfile,
    settings: InvoiceSettings,
    /// The tenant's time zone: an invoice's issue date is the tenant's.
    tenant_zone: String,
    chain: CloseChain,
    schedule: BillingSchedule,
    next: Period,
}

/// The plan of a close of `customer` from what was read: before its first close the next
/// period is the one containing its creation or its earliest usage (`first_day`), whichever is
/// earlier (usage from before a customer was created, such as imported history, is billed in
/// its own periods).
fn plan_of(
    customer: BillingProfile,
    (settings, tenant_zone): (InvoiceSettings, String),
    chain: CloseChain,
    first_day: Option<NaiveDate>,
) -> Result<Plan> {
    let last_end = chain.last.map(|l| l.period_end);
    let schedule = customer_schedule(
        customer.cycle,
        customer.anchor,
        &customer.time_zone,
        last_end,
    )?;
    let mut billing_start = customer.created_at;
    if last_end.is_none() {
        let zone = schedule.initial().time_zone;
        if let Some(start) = first_day.and_then(|day| start_of_day(zone, day)) {
            billing_start = billing_start.min(start);
        }
    }
    let next = next_period_to_close(&schedule, last_end, billing_start)?;
    Ok(Plan {
        customer,
        settings,
        tenant_zone,
        chain,
        schedule,
        next,
    })
}

/// What the number statement answered: the counter taken, and the number written on the
/// invoice (None: the counter was taken but the invoice not numbered).
#[derive(diesel::QueryableByName)]
struct Numbered {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    counter: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    number: Option<String>,
}

/// The ledger lock's sequence with the credit inputs read under it, the number taken and the
/// exposure moved in the store (see [`steps::CloseSteps::write_and_lock`]).
type SerialStarted = (
    Option<(i64, CreditInputs)>,
    Option<Numbered>,
    Option<Exposure>,
);

ledger_backends! {
    use super::{Numbered, Plan, plan_of};
    use super::steps::{CloseSteps, Started};

    /// What a close of the customer starts from: its record, the tenant's settings, its close
    /// chain and schedule, and the next period to close (see [`plan_of`]).
    pub async fn plan(conn: &mut Conn, tenant_id: &str, customer_id: &str) -> Result<Plan> {
        let customer = q::customers::billing_profile(conn, tenant_id, customer_id).await?;
        let (settings, tenant_zone) = q::invoice_settings::with_time_zone(conn, tenant_id).await?;
        let chain = q::customer_billing::get(conn, tenant_id, customer_id).await?;
        let first_day = match chain.last {
            None => first_usage_day(conn, tenant_id, customer_id).await?,
            Some(_) => None,
        };
        plan_of(customer, (settings, tenant_zone), chain, first_day)
    }

    /// The earliest day with usage of each customer among `ids` that has any (each customer's
    /// daily totals are on its own local days): [`first_usage_day`] of each.
    async fn first_usage_days(conn: &mut Conn, tenant_id: &str, ids: &[String]) -> Result<HashMap<String, NaiveDate>> {
        let mut days = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(day) = first_usage_day(conn, tenant_id, id).await? {
                days.insert(id.clone(), day);
            }
        }
        Ok(days)
    }

    /// The customer's earliest day with usage, if any: a `min` that both backends answer from
    /// the first entry of the daily totals' key (tenant, customer, day, …). Grouped over
    /// several customers, PostgreSQL read every total of each (1.6 ms a customer of 100 meters
    /// x 10 days, 1.6 of a 1,000-customer month close's PostgreSQL seconds).
    pub async fn first_usage_day(conn: &mut impl Statements, tenant_id: &str, customer_id: &str) -> Result<Option<NaiveDate>> {
        Ok(charge_totals::table
            .filter(charge_totals::tenant_id.eq(tenant_id))
            .filter(charge_totals::customer_id.eq(customer_id))
            .select(diesel::dsl::min(charge_totals::usage_date))
            .first(conn)
            .await?)
    }

    /// How many periods of each customer among `ids` may close at `now` (at most `limit`): a
    /// round of a close run reads them in four statements for all its customers, where a read
    /// per customer cost four each, and closes only the customers that have one. A customer
    /// not found (deleted since it was listed) or whose schedule fails answers its error.
    pub async fn due_counts(conn: &mut Conn, tenant_id: &str, ids: &[String], now: DateTime<Utc>, limit: usize) -> Result<Vec<(String, Result<usize>)>> {
        let settings = q::invoice_settings::with_time_zone(conn, tenant_id).await?;
        let mut profiles: HashMap<String, BillingProfile> = q::customers::billing_profiles(conn, tenant_id, ids)
            .await?
            .into_iter()
            .map(|p| (p.customer.id.clone(), p))
            .collect();
        let mut chains = q::customer_billing::get_many(conn, tenant_id, ids).await?;
        let never_closed: Vec<String> = ids.iter().filter(|id| !chains.contains_key(*id)).cloned().collect();
        let first_days = first_usage_days(conn, tenant_id, &never_closed).await?;
        Ok(ids
            .iter()
            .map(|id| {
                let due = profiles
                    .remove(id)
                    .ok_or_else(|| Error::not_found("customer", id))
                    .and_then(|customer| {
                        let chain = chains.remove(id).unwrap_or_default();
                        plan_of(customer, settings.clone(), chain, first_days.get(id).copied())
                    })
                    .and_then(|plan| periods_to_close(&plan.schedule, plan.next, plan.settings.grace, now, limit))
                    .map(|due| due.len());
                (id.clone(), due)
            })
            .collect())
    }

    /// The start of the customer's billing period containing `at`.
    pub async fn period_start_of(conn: &mut Conn, tenant_id: &str, customer_id: &str, at: DateTime<Utc>) -> Result<DateTime<Utc>> {
        Ok(plan(conn, tenant_id, customer_id).await?.schedule.period_containing(at)?.start)
    }

    /// The customer's periods that may close at `now`, oldest first, at most `limit`.
    pub async fn due(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>, limit: usize) -> Result<Vec<Period>> {
        let plan = plan(conn, tenant_id, customer_id).await?;
        periods_to_close(&plan.schedule, plan.next, plan.settings.grace, now, limit)
    }

    /// Closes the customer's period starting at `period_start` (None: the next one to close) as
    /// of `now`, inside the caller's transaction. Closing a closed period returns its invoice.
    pub async fn close_in_tx(conn: &mut Conn, tenant_id: &str, customer_id: &str, period_start: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<Written<Invoice>> {
        let invoice_id = new_id(INVOICE);
        let Started { last_sequence: close_sequence, ledger_lock_row, plan: Plan { customer, settings, tenant_zone, chain, schedule, next } } = conn.lock_and_plan(tenant_id, customer_id).await?;
        let close_sequence = close_sequence.max(chain.last.map_or(0, |l| l.sequence));
        let period: Period = match period_start {
            None => next,
            Some(start) => {
                if let Some(closed) = q::invoices::of_period(conn, tenant_id, customer_id, start).await? {
                    return Ok(Written { value: closed, fresh: false });
                }
                let requested = schedule.period_starting_at("period_start", start)?;
                match check_close_order(&requested, &next)? {
                    CloseOrder::Next => requested,
                    CloseOrder::AlreadyClosed => {
                        return Err(Error::invalid(
                            "period_start",
                            format!("no invoice of this customer covers the period {requested}; its next period to close starts at {}", crate::domain::period::rfc3339(next.start)),
                        ));
                    }
                }
            }
        };
        check_may_close(&period, settings.grace, now)?;
        let bounds = CloseBounds {
            period_start: period.start,
            period_end: period.end,
            close_sequence,
            settled_through: chain.last.map_or(0, |l| l.sequence),
        };
        // The period's own charges from the totals and rollups when it is whole local days of
        // the customer's zone (the totals' days); else, or when they lack a unit, all read.
        let zone: Option<chrono_tz::Tz> = customer.time_zone.parse().ok();
        let days = zone.and_then(|zone| period_days(&period, zone));
        let (period_charges, groups) = conn.read_charges(tenant_id, customer_id, &bounds, days, customer.currency, chain.open_from_sequence).await?;
        // Only adjustment lines name earlier invoices.
        let priors = if groups.iter().any(|g| g.class == GroupClass::Adjustment) {
            q::invoices::priors(conn, tenant_id, customer_id).await?
        } else {
            Vec::new()
        };
        let ctx = InvoiceContext {
            customer: customer.customer,
            currency: customer.currency,
            rounding: settings.rounding,
            period,
            close_sequence,
            previous: chain.last,
            schedule: &schedule,
            prior_invoices: &priors,
        };
        let (draft, open_from_sequence) = close_from_groups(&ctx, groups, period_charges)?;
        let this = ClosePoint { period_end: period.end, sequence: close_sequence };
        let next_chain = CloseChain { last: Some(this), open_from_sequence };
        let issued_on = if draft.needs_number() {
            let zone: chrono_tz::Tz = tenant_zone.parse().unwrap_or(chrono_tz::UTC);
            Some(local_date(now, zone))
        } else {
            None
        };
        let previous_sequence = chain.last.map_or(0, |l| l.sequence);
        // Stored to the microsecond (both backends' precision), so a re-read equals the answer.
        let mut invoice = Invoice::from_draft(invoice_id, None, draft, previous_sequence, now.trunc_subsecs(6));
        // The chain, the invoice and its lines are written before the ledger lock: closes of
        // different customers (on PostgreSQL) write them side by side. From the lock to the
        // commit, closes of the tenant run one at a time: the exposure is written under it, and
        // the gap-free number taken. Keep this part short.
        let (unrounded, total) = (invoice.unrounded_total, invoice.total);
        let number_request = issued_on.map(|day| (invoice.id.as_str(), number_stem(&settings.number_prefix, day)));
        // Moved in the store with the serial step where the ledger lock row exists (PostgreSQL).
        let change = ledger_lock_row.then(|| Exposure::close_move(unrounded, total));
        let (locked, numbered, moved) = conn.write_and_lock(tenant_id, customer_id, &chain, &next_chain, &invoice, number_request, change).await?;
        q::ledger_credit::apply_exposure(conn, tenant_id, customer_id, locked, |e| e.after_close(unrounded, total), moved).await?;
        if let Some(issued_on) = issued_on {
            let (counter, number) = number_invoice(conn, tenant_id, &invoice.id, &settings.number_prefix, issued_on, numbered).await?;
            invoice.number_counter = Some(counter);
            invoice.number = Some(number);
        }
        Ok(Written { value: invoice, fresh: true })
    }

    /// Numbers the invoice `invoice_id` with the tenant's next invoice counter. On PostgreSQL
    /// `numbered` is what the number statement sent with the close's ledger lock answered
    /// (see [`CloseSteps::write_and_lock`]; None: the tenant has no counter yet); then, and on SQLite, the
    /// counter is taken and written here. The number is checked against `format_invoice_number`.
    async fn number_invoice(conn: &mut Conn, tenant_id: &str, invoice_id: &str, prefix: &str, issued_on: NaiveDate, numbered: Option<Numbered>) -> Result<(i64, String)> {
        let (counter, number) = match numbered {
            Some(Numbered { counter, number: Some(number) }) => (counter, number),
            Some(Numbered { counter, number: None }) => {
                return Err(Error::Internal(format!("invoice {invoice_id} could not take number {counter}")));
            }
            None => {
                let counter = q::invoice_numbers::take_next(conn, tenant_id).await?;
                let number = format_invoice_number(prefix, issued_on, counter)?;
                q::invoices::set_number(conn, tenant_id, invoice_id, counter, &number).await?;
                (counter, number)
            }
        };
        let expected = format_invoice_number(prefix, issued_on, counter)?;
        if number != expected {
            return Err(Error::Internal(format!("invoice {invoice_id} was numbered {number:?}, not {expected:?}")));
        }
        Ok((counter, number))
    }

    /// Records a payment against an invoice; a retry of a recorded request id answers the first
    /// payment as it was.
    pub async fn record_payment(conn: &mut Conn, tenant_id: &str, new: &NewPayment, now: DateTime<Utc>) -> Result<Payment> {
        conn.transaction(async |conn| {
            let payment_id = new_id(PAYMENT);
            q::charges::lock_ledger(conn, tenant_id).await?;
            let invoice = q::invoices::lock_for_payment(conn, tenant_id, &new.invoice_id).await?;
            let amount = parse_payment_amount("amount", &new.amount, invoice.currency)
                .map_err(|v| Error::InvalidArgument(vec![v]))?;
            let paid = apply_payment("amount", amount, invoice.currency, invoice.total, invoice.paid)?;
            let payment = Payment {
                id: payment_id,
                invoice_id: invoice.id.clone(),
                amount,
                currency: invoice.currency,
                reference: new.reference.clone(),
                paid_after: paid,
                balance_after: invoice.total - paid,
                recorded_at: now.trunc_subsecs(6),
            };
            q::payments::insert(conn, tenant_id, &payment).await?;
            q::invoices::set_paid(conn, tenant_id, &invoice.id, paid, PaymentStatus::of(invoice.total, paid)).await?;
            q::ledger_credit::move_exposure(conn, tenant_id, &invoice.customer.id, |e| e.after_payment(amount)).await?;
            Ok(payment)
        })
        .await
    }
}

impl Ledger {
    /// Closes a customer's billing period (see [`close_in_tx`](self::pg::close_in_tx)).
    pub async fn close_billing_period(
        &self,
        tenant_id: &str,
        customer_id: &str,
        period_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        request: Option<&Idempotent<'_, Written<Invoice>>>,
    ) -> Result<Answer<Written<Invoice>>> {
        write_once!(
            self.store,
            tenant_id,
            request,
            // `write_once!` opens the transaction (a nested one cost a savepoint per close).
            self::close_in_tx(tenant_id, customer_id, period_start, now)
        )
    }

    pub async fn record_payment(
        &self,
        tenant_id: &str,
        new: &NewPayment,
        now: DateTime<Utc>,
        request: &Idempotent<'_, Payment>,
    ) -> Result<Answer<Payment>> {
        write_once!(
            self.store,
            tenant_id,
            Some(request),
            self::record_payment(tenant_id, new, now)
        )
    }

    /// The start of the customer's billing period containing `at`.
    pub async fn billing_period_containing(
        &self,
        tenant_id: &str,
        customer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        dispatch!(
            self.store,
            read,
            self::period_start_of(tenant_id, customer_id, at)
        )
    }

    /// The customer's periods that may close at `now`, oldest first, at most `limit` (a read:
    /// the closer takes the ledger lock only for customers that have something to close, and
    /// reads once for all of a customer's due periods rather than once per close).
    pub async fn due_periods(
        &self,
        tenant_id: &str,
        customer_id: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Period>> {
        dispatch!(
            self.store,
            read,
            self::due(tenant_id, customer_id, now, limit)
        )
    }
}
