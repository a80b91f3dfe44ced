//! Spend reads for help desks and the portal: a customer's billing context and its spend over a
//! range of local days, read from the daily totals and their rollups every ledger write keeps
//! (never by scanning charge events), the coarsest rows that hold the answer's dimensions (see
//! `domain::spend::rollup`): a customer with 100 meters reads 20 services a month, not 3,000
//! daily totals. The analytics are `domain::spend`.
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{Ledger, ledger_backends};
use crate::domain::customer::BillingCycle;
use crate::domain::error::{Error, Result};
use crate::domain::invoice_record::customer_schedule;
use crate::domain::ledger_append::usage_date;
use crate::domain::money::Currency;
use crate::domain::period::BillingAnchor;
use crate::domain::spend::rollup::{DayGrain, Grain, RangeParts, Source, net};
use crate::domain::spend::{
    CostDriverReport, DailyTotal, DayRange, Grouping, OVERVIEW_DAYS, OVERVIEW_RECENT,
    OVERVIEW_TOP_SERVICES, SpendContext, SpendOverview, SpendPart, SpendSummary, daily_of, drivers,
    forecast_to_period_end, group, top,
};
use crate::domain::vendor::Vendor;
use crate::store::dispatch;
use crate::store::schema::{charge_rollups, charge_totals, customers};
use crate::store::sql_types::DbDecimal;

/// A customer's daily totals over a range, and the ledger sequence they include.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyTotals {
    pub totals: Vec<DailyTotal>,
    pub as_of_sequence: i64,
}

/// The parts read for each of several (range, source) reads, in one snapshot, and the ledger
/// sequence they include.
struct Parts {
    reads: Vec<Vec<SpendPart>>,
    as_of_sequence: i64,
}

ledger_backends! {
    pub async fn context(conn: &mut Conn, tenant_id: &str, customer_id: &str, now: DateTime<Utc>) -> Result<SpendContext> {
        let (name, cycle, anchor_month, anchor_day, time_zone, currency): (String, String, i32, i32, String, String) = customers::table
            .filter(customers::tenant_id.eq(tenant_id))
            .filter(customers::id.eq(customer_id))
            .select((
                customers::display_name,
                customers::billing_cycle,
                customers::billing_anchor_month,
                customers::billing_anchor_day,
                customers::time_zone,
                customers::billing_currency,
            ))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found("customer", customer_id))?;
        let cycle: BillingCycle = cycle.parse().map_err(Error::Internal)?;
        let anchor = BillingAnchor::from_stored(anchor_month, anchor_day).map_err(Error::Internal)?;
        let last_closed_end = q::customer_billing::get(conn, tenant_id, customer_id).await?.last.map(|l| l.period_end);
        let period = customer_schedule(cycle, anchor, &time_zone, last_closed_end)?.period_containing(now)?;
        let (start, end) = (period.start, period.end);
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

    /// Every daily total of a customer over a range, one by one: per meter and day, so its
    /// cost follows the customer's meters × days. The spend reads take rollups instead; this
    /// is the reference they are tested against.
    pub async fn daily_totals(conn: &mut Conn, tenant_id: &str, customer_id: &str, range: DayRange) -> Result<DailyTotals> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                // One snapshot for the totals and the sequence they include.
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let totals = totals_in(conn, tenant_id, customer_id, range).await?;
            Ok(DailyTotals { totals, as_of_sequence })
        })
        .await
    }

    async fn totals_in(conn: &mut Conn, tenant_id: &str, customer_id: &str, range: DayRange) -> Result<Vec<DailyTotal>> {
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
        rows.into_iter()
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
            .collect()
    }

    /// The parts of each (range, source), in one snapshot.
    pub(super) async fn parts(conn: &mut Conn, tenant_id: &str, customer_id: &str, reads: &[(DayRange, Source)]) -> Result<Parts> {
        conn.transaction(async |conn| {
            if IS_POSTGRES {
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn).await?;
            }
            let as_of_sequence = q::charges::high_water_mark(conn, tenant_id).await?;
            let mut parts = Vec::with_capacity(reads.len());
            for (range, source) in reads {
                parts.push(read(conn, tenant_id, customer_id, *range, *source).await?);
            }
            Ok(Parts { reads: parts, as_of_sequence })
        })
        .await
    }

    /// One range from one source: daily rows with their days, or whole months and the days of
    /// partial months (see `RangeParts`) netted by key, without days.
    async fn read(conn: &mut Conn, tenant_id: &str, customer_id: &str, range: DayRange, source: Source) -> Result<Vec<SpendPart>> {
        let (months, days) = match source {
            Source::Days(days) => return days_in(conn, tenant_id, customer_id, days, range).await,
            Source::Months(months, days) => (months, days),
        };
        let plan = RangeParts::of(range, matches!(days, DayGrain::Rollup(_)));
        let mut parts = Vec::new();
        if let Some((first, end)) = plan.months {
            parts.extend(rollup_rows(conn, tenant_id, customer_id, months, DayRange { first, end }).await?);
        }
        for r in &plan.plus {
            parts.extend(days_in(conn, tenant_id, customer_id, days, *r).await?);
        }
        for r in &plan.minus {
            parts.extend(days_in(conn, tenant_id, customer_id, days, *r).await?.into_iter().map(SpendPart::negated));
        }
        for p in &mut parts {
            p.day = None;
        }
        Ok(net(parts))
    }

    async fn days_in(conn: &mut Conn, tenant_id: &str, customer_id: &str, days: DayGrain, range: DayRange) -> Result<Vec<SpendPart>> {
        match days {
            DayGrain::Meter => Ok(totals_in(conn, tenant_id, customer_id, range).await?.iter().map(SpendPart::of_total).collect()),
            DayGrain::Rollup(grain) => rollup_rows(conn, tenant_id, customer_id, grain, range).await,
        }
    }

    /// The rollup rows of `grain` with buckets in `buckets` (days, or months by their first day).
    async fn rollup_rows(conn: &mut Conn, tenant_id: &str, customer_id: &str, grain: Grain, buckets: DayRange) -> Result<Vec<SpendPart>> {
        let rows: Vec<(NaiveDate, String, String, String, DbDecimal, DbDecimal, i64)> = charge_rollups::table
            .filter(charge_rollups::tenant_id.eq(tenant_id))
            .filter(charge_rollups::customer_id.eq(customer_id))
            .filter(charge_rollups::grain.eq(grain.as_str()))
            .filter(charge_rollups::bucket.ge(buckets.first))
            .filter(charge_rollups::bucket.lt(buckets.end))
            .select((
                charge_rollups::bucket,
                charge_rollups::vendor,
                charge_rollups::service,
                charge_rollups::meter,
                charge_rollups::amount,
                charge_rollups::quantity,
                charge_rollups::events,
            ))
            .load(conn)
            .await?;
        rows.into_iter()
            .map(|(bucket, vendor, service, meter, amount, quantity, events)| {
                Ok(SpendPart {
                    day: Some(bucket),
                    vendor: match vendor.as_str() {
                        "" => None,
                        v => Some(v.parse::<Vendor>().map_err(Error::Internal)?),
                    },
                    service,
                    meter,
                    amount: amount.0,
                    quantity: quantity.0,
                    events,
                })
            })
            .collect()
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

    /// The parts of each (range, source), in one snapshot.
    async fn spend_parts(
        &self,
        tenant_id: &str,
        customer_id: &str,
        reads: &[(DayRange, Source)],
    ) -> Result<Parts> {
        dispatch!(self.store, read, self::parts(tenant_id, customer_id, reads))
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
        let read = self
            .spend_parts(tenant_id, customer_id, &[(range, Source::of(grouping))])
            .await?;
        let (rows, total) = group(&read.reads[0], grouping);
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
        let source = Source::of(Grouping {
            vendor: true,
            service: true,
            meter: by_meter,
            day: false,
        });
        let read = self
            .spend_parts(
                tenant_id,
                customer_id,
                &[(range, source), (previous, source)],
            )
            .await?;
        Ok(CostDriverReport {
            drivers: drivers(&read.reads[0], &read.reads[1], by_meter, limit),
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
        let by_service = Grouping {
            vendor: true,
            service: true,
            ..Default::default()
        };
        let per_day = Source::Days(DayGrain::Rollup(Grain::Day));
        let read = self
            .spend_parts(
                tenant_id,
                customer_id,
                &[(to_date, Source::of(by_service)), (recent, per_day)],
            )
            .await?;
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
        let (services, month_to_date) = group(&read.reads[0], by_service);
        let run_rate_per_day = credit.forecast.run_rate_per_day;
        Ok(SpendOverview {
            forecast_to_period_end: forecast_to_period_end(
                month_to_date,
                run_rate_per_day,
                now,
                context.period_end,
            ),
            daily: daily_of(&read.reads[1], recent),
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
