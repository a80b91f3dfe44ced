//! Spend reads for help desks and the portal: a customer's billing context and its daily
//! totals over a range of local days, read from the totals every ledger write keeps (never by
//! scanning charge events). The analytics are `domain::spend`.
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Ledger, ledger_backends};
use crate::domain::customer::BillingCycle;
use crate::domain::error::{Error, Result};
use crate::domain::ledger_append::usage_date;
use crate::domain::money::Currency;
use crate::domain::spend::{
    CostDriverReport, DailyTotal, DayRange, Grouping, OVERVIEW_DAYS, OVERVIEW_RECENT,
    OVERVIEW_TOP_SERVICES, SpendContext, SpendOverview, SpendSummary, cost_drivers, daily,
    forecast_to_period_end, summarize, top,
};
use crate::domain::vendor::Vendor;
use crate::store::dispatch;
use crate::store::schema::{charge_totals, customers};
use crate::store::sql_types::DbDecimal;

/// A customer's daily totals over a range, and the ledger sequence they include.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyTotals {
    pub totals: Vec<DailyTotal>,
    pub as_of_sequence: i64,
}

ledger_backends! {
    pub async fn context(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>) -> Result<SpendContext> {
        let (name, cycle, time_zone, currency): (String, String, String, String) = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq(customer_id))
            .select((customers::display_name, customers::billing_cycle, customers::time_zone, customers::billing_currency))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("customer", customer_id))?;
        let cycle: BillingCycle = cycle.parse().map_err(Error::Internal)?;
        let (start, end) = crate::domain::period::containing(cycle, &time_zone, now)?;
        let zone: chrono_tz::Tz = time_zone
            .parse()
            .map_err(|_| Error::Internal(format!("stored time zone {time_zone:?} is unknown")))?;
        Ok(SpendContext {
            customer_id: customer_id.to_string(),
            display_name: name,
            currency: Currency::from_stored(&currency)?,
            period_start: start,
            period_end: end,
            // Periods start at local midnight: whole days of the totals.
            period: DayRange { first: usage_date(start, zone), end: usage_date(end, zone) },
            today: usage_date(now, zone),
            time_zone,
        })
    }

    pub async fn daily_totals(conn: &mut Conn, tenant_id: &str, customer_id: &str, range: DayRange) -> Result<DailyTotals> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                // One snapshot for the totals and the sequence they include.
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let rows: Vec<(NaiveDate, String, String, String, DbDecimal, DbDecimal)> = charge_totals::table
                .filter(charge_totals::tenant_id.eq(tenant_id))
                .filter(charge_totals::customer_id.eq(customer_id))
                .filter(charge_totals::usage_date.ge(range.first))
                .filter(charge_totals::usage_date.lt(range.end))
                .select((
                    charge_totals::usage_date,
                    charge_totals::vendor,
                    charge_totals::service,
                    charge_totals::meter,
                    charge_totals::amount,
                    charge_totals::quantity,
                ))
                .load(conn)
                .await?;
            let totals = rows
                .into_iter()
                .map(|(day, vendor, service, meter, amount, quantity)| {
                    Ok(DailyTotal {
                        day,
                        vendor: vendor.parse::<Vendor>().map_err(Error::Internal)?,
                        service,
                        meter,
                        amount: amount.0,
                        quantity: quantity.0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(DailyTotals { totals, as_of_sequence })
        })
        .await
    }
}

impl Ledger {
    /// NOT_FOUND unless the tenant has the customer.
    pub async fn spend_context(
        &self,
        tenant_id: &str,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SpendContext> {
        dispatch!(self.store, read, self::context(tenant_id, customer_id, now))
    }

    pub async fn daily_totals(
        &self,
        tenant_id: &str,
        customer_id: &str,
        range: DayRange,
    ) -> Result<DailyTotals> {
        dispatch!(
            self.store,
            read,
            self::daily_totals(tenant_id, customer_id, range)
        )
    }

    /// A customer's spend over `range` (None: the period to date), grouped.
    pub async fn spend_summary(
        &self,
        tenant_id: &str,
        customer_id: &str,
        range: Option<DayRange>,
        grouping: Grouping,
        now: DateTime<Utc>,
    ) -> Result<SpendSummary> {
        let context = self.spend_context(tenant_id, customer_id, now).await?;
        let range = range.unwrap_or_else(|| context.to_date());
        let read = self.daily_totals(tenant_id, customer_id, range).await?;
        let (rows, total) = summarize(&read.totals, range, grouping);
        Ok(SpendSummary {
            context,
            range,
            grouping,
            rows,
            total,
            as_of_sequence: read.as_of_sequence,
        })
    }

    /// The services (or meters) of `range` (None: the period to date) that grew most against
    /// the range of equal length before it.
    pub async fn cost_drivers(
        &self,
        tenant_id: &str,
        customer_id: &str,
        range: Option<DayRange>,
        by_meter: bool,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<CostDriverReport> {
        let context = self.spend_context(tenant_id, customer_id, now).await?;
        let range = range.unwrap_or_else(|| context.to_date());
        let previous = range.previous();
        let both = DayRange {
            first: previous.first,
            end: range.end,
        };
        let read = self.daily_totals(tenant_id, customer_id, both).await?;
        Ok(CostDriverReport {
            drivers: cost_drivers(&read.totals, range, previous, by_meter, limit),
            context,
            range,
            previous,
            as_of_sequence: read.as_of_sequence,
        })
    }

    /// The period to date, its forecast to the period's end at the credit forecast's run rate,
    /// the credit position, the last 30 days and the top services.
    pub async fn spend_overview(
        &self,
        tenant_id: &str,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SpendOverview> {
        let context = self.spend_context(tenant_id, customer_id, now).await?;
        let to_date = context.to_date();
        let recent = DayRange::ending_with(context.today, OVERVIEW_DAYS);
        let span = DayRange {
            first: recent.first.min(to_date.first),
            end: recent.end.max(to_date.end),
        };
        let read = self.daily_totals(tenant_id, customer_id, span).await?;
        let credit = self.credit_position(tenant_id, customer_id, now).await?;
        let latest = OVERVIEW_RECENT as i64;
        let recent_invoices = self
            .store
            .latest_invoices(tenant_id, customer_id, None, latest)
            .await?;
        let recent_service_actions = self
            .store
            .latest_service_actions(tenant_id, customer_id, latest)
            .await?;
        let by_service = Grouping {
            vendor: true,
            service: true,
            ..Default::default()
        };
        let (services, month_to_date) = summarize(&read.totals, to_date, by_service);
        let run_rate_per_day = credit.forecast.run_rate_per_day;
        Ok(SpendOverview {
            forecast_to_period_end: forecast_to_period_end(
                month_to_date,
                run_rate_per_day,
                now,
                context.period_end,
            ),
            daily: daily(&read.totals, recent),
            top_services: top(services, OVERVIEW_TOP_SERVICES),
            context,
            to_date,
            month_to_date,
            run_rate_per_day,
            credit,
            as_of_sequence: read.as_of_sequence,
            recent_invoices,
            recent_service_actions,
        })
    }
}
