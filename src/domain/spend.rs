//! Spend analytics for help desks and the portal: a customer's daily totals (the ledger keeps
//! them per customer, local day, vendor, service and meter) summed over a range of local days,
//! grouped, compared with the previous range, and projected to the end of the billing period.
//! Pure and exact (rust_decimal); the ledger reads the totals, the API and the portal show them.
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::error::FieldViolation;
use super::money::Currency;
use super::vendor::Vendor;

pub mod rollup;

pub use rollup::SpendPart;

/// Longest range a summary may cover, so one request reads a bounded number of totals.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Most cost drivers one request may ask for, and how many it gets by default.
pub const MAX_DRIVERS: usize = 100;
pub const DEFAULT_DRIVERS: usize = 10;

/// Local days `[first, end)` in the customer's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub first: NaiveDate,
    pub end: NaiveDate,
}

impl DayRange {
    pub fn days(self) -> i64 {
        (self.end - self.first).num_days()
    }

    /// The range of equal length just before this one.
    pub fn previous(self) -> DayRange {
        DayRange {
            first: self.first - Duration::days(self.days()),
            end: self.first,
        }
    }

    /// `days` days ending with `last` (included).
    pub fn ending_with(last: NaiveDate, days: i64) -> DayRange {
        DayRange {
            first: last - Duration::days(days - 1),
            end: last + Duration::days(1),
        }
    }

    pub fn contains(self, day: NaiveDate) -> bool {
        self.first <= day && day < self.end
    }

    /// Each day of the range, in order.
    pub fn each_day(self) -> impl Iterator<Item = NaiveDate> {
        self.first.iter_days().take_while(move |d| *d < self.end)
    }
}

/// Month (period) to date: the billing period's first local day up to and including `today`
/// (never past the period's end).
pub fn period_to_date(
    period_first: NaiveDate,
    period_end: NaiveDate,
    today: NaiveDate,
) -> DayRange {
    let end = (today + Duration::days(1)).clamp(period_first + Duration::days(1), period_end);
    DayRange {
        first: period_first,
        end,
    }
}

/// A client's range: both dates empty means None (the default, period to date); otherwise both
/// are "YYYY-MM-DD", start before end, at most [`MAX_RANGE_DAYS`].
pub fn parse_range(
    start_field: &str,
    start: &str,
    end_field: &str,
    end: &str,
) -> Result<Option<DayRange>, Vec<FieldViolation>> {
    if start.is_empty() && end.is_empty() {
        return Ok(None);
    }
    let date = |field: &str, text: &str| {
        if text.is_empty() {
            return Err(FieldViolation::new(
                field,
                "is required when the other end of the range is given (YYYY-MM-DD)",
            ));
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == text)
            .ok_or_else(|| {
                FieldViolation::new(field, format!("{text:?} is not a date (YYYY-MM-DD)"))
            })
    };
    let (first, end_day) = match (date(start_field, start), date(end_field, end)) {
        (Ok(first), Ok(end)) => (first, end),
        (a, b) => return Err([a.err(), b.err()].into_iter().flatten().collect()),
    };
    let range = DayRange {
        first,
        end: end_day,
    };
    if range.days() <= 0 {
        return Err(vec![FieldViolation::new(
            end_field,
            format!("{end} is not after {start_field} {start} (the end date is excluded)"),
        )]);
    }
    if range.days() > MAX_RANGE_DAYS {
        return Err(vec![FieldViolation::new(
            end_field,
            format!(
                "the range covers {} days; at most {MAX_RANGE_DAYS}",
                range.days()
            ),
        )]);
    }
    Ok(Some(range))
}

/// What a customer's spend is read in: its currency, time zone, current billing period and
/// today's local date.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendContext {
    pub customer_id: String,
    pub display_name: String,
    pub currency: Currency,
    pub time_zone: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The period as local days.
    pub period: DayRange,
    pub today: NaiveDate,
}

impl SpendContext {
    /// The period so far: its first day up to and including today.
    pub fn to_date(&self) -> DayRange {
        period_to_date(self.period.first, self.period.end, self.today)
    }
}

/// A customer's spend over a range, grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendSummary {
    pub context: SpendContext,
    pub range: DayRange,
    pub grouping: Grouping,
    pub rows: Vec<SpendRow>,
    pub total: Decimal,
    pub as_of_sequence: i64,
}

/// The cost drivers of a range against the previous one.
#[derive(Debug, Clone, PartialEq)]
pub struct CostDriverReport {
    pub context: SpendContext,
    pub range: DayRange,
    pub previous: DayRange,
    pub drivers: Vec<CostDriver>,
    pub as_of_sequence: i64,
}

/// Days of daily spend an overview shows.
pub const OVERVIEW_DAYS: i64 = 30;
/// Services an overview ranks.
pub const OVERVIEW_TOP_SERVICES: usize = 5;
/// How many of its newest invoices and service actions the overview shows.
pub const OVERVIEW_RECENT: usize = 5;

/// The period so far, where it is heading, and the last [`OVERVIEW_DAYS`] days.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendOverview {
    pub context: SpendContext,
    pub to_date: DayRange,
    pub month_to_date: Decimal,
    pub run_rate_per_day: Decimal,
    pub forecast_to_period_end: Decimal,
    pub credit: super::credit::CreditPosition,
    /// Every day of the last [`OVERVIEW_DAYS`] days up to today.
    pub daily: Vec<(NaiveDate, Decimal)>,
    /// The period's largest services so far (by vendor and service), largest first.
    pub top_services: Vec<SpendRow>,
    pub as_of_sequence: i64,
    /// The customer's newest invoices (up to [`OVERVIEW_RECENT`]), newest first.
    pub recent_invoices: Vec<super::invoice_record::Invoice>,
    /// The customer's newest service actions (up to [`OVERVIEW_RECENT`]), newest first.
    pub recent_service_actions: Vec<super::service_action::ServiceAction>,
}

/// The largest `n` rows by amount, ties in their given order.
pub fn top(mut rows: Vec<SpendRow>, n: usize) -> Vec<SpendRow> {
    rows.sort_by_key(|r| std::cmp::Reverse(r.amount));
    rows.truncate(n);
    rows
}

/// One stored daily total of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyTotal {
    pub day: NaiveDate,
    pub vendor: Vendor,
    pub service: String,
    pub meter: String,
    pub amount: Decimal,
    pub quantity: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Vendor,
    Service,
    Meter,
    Day,
}

/// Which dimensions a summary groups by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grouping {
    pub vendor: bool,
    pub service: bool,
    pub meter: bool,
    pub day: bool,
}

impl Grouping {
    /// From a client's list: each dimension at most once.
    pub fn parse(field: &str, dimensions: &[Dimension]) -> Result<Self, FieldViolation> {
        let mut g = Grouping::default();
        for (i, d) in dimensions.iter().enumerate() {
            let slot = match d {
                Dimension::Vendor => &mut g.vendor,
                Dimension::Service => &mut g.service,
                Dimension::Meter => &mut g.meter,
                Dimension::Day => &mut g.day,
            };
            if *slot {
                return Err(FieldViolation::new(
                    format!("{field}[{i}]"),
                    format!("{d:?} appears twice"),
                ));
            }
            *slot = true;
        }
        Ok(g)
    }

    pub fn dimensions(self) -> Vec<Dimension> {
        [
            (self.vendor, Dimension::Vendor),
            (self.service, Dimension::Service),
            (self.meter, Dimension::Meter),
            (self.day, Dimension::Day),
        ]
        .into_iter()
        .filter_map(|(on, d)| on.then_some(d))
        .collect()
    }
}

/// One group's spend; dimensions not grouped by are None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    pub vendor: Option<Vendor>,
    pub service: Option<String>,
    pub meter: Option<String>,
    pub day: Option<NaiveDate>,
    pub amount: Decimal,
    /// Only when grouped by meter (quantities of different meters do not add up).
    pub quantity: Option<Decimal>,
}

type GroupKey = (
    Option<&'static str>,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
);

/// Sums the totals within `range` by `grouping`: rows ordered by vendor, service, meter and day,
/// and their total. (The daily totals one by one: the reference the rollups' reads are tested
/// against; the ledger reads rollups and calls [`group`].)
pub fn summarize(
    totals: &[DailyTotal],
    range: DayRange,
    grouping: Grouping,
) -> (Vec<SpendRow>, Decimal) {
    group(&in_range(totals, range), grouping)
}

/// The daily totals within `range`, as parts.
pub fn in_range(totals: &[DailyTotal], range: DayRange) -> Vec<SpendPart> {
    totals
        .iter()
        .filter(|t| range.contains(t.day))
        .map(SpendPart::of_total)
        .collect()
}

/// Sums parts read for one range (see `spend_rollup`) by `grouping`: rows ordered by vendor,
/// service, meter and day, and their total.
pub fn group(parts: &[SpendPart], grouping: Grouping) -> (Vec<SpendRow>, Decimal) {
    let mut groups: BTreeMap<GroupKey, SpendRow> = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for t in parts {
        total += t.amount;
        let vendor = t.vendor.filter(|_| grouping.vendor);
        let day = t.day.filter(|_| grouping.day);
        let key = (
            vendor.map(Vendor::as_str),
            grouping.service.then(|| t.service.clone()),
            grouping.meter.then(|| t.meter.clone()),
            day,
        );
        let row = groups.entry(key).or_insert_with(|| SpendRow {
            vendor,
            service: grouping.service.then(|| t.service.clone()),
            meter: grouping.meter.then(|| t.meter.clone()),
            day,
            amount: Decimal::ZERO,
            quantity: grouping.meter.then_some(Decimal::ZERO),
        });
        row.amount += t.amount;
        if let Some(q) = &mut row.quantity {
            *q += t.quantity;
        }
    }
    (groups.into_values().collect(), total)
}

/// Spend per day of `range`, every day present (zero when nothing was charged).
pub fn daily(totals: &[DailyTotal], range: DayRange) -> Vec<(NaiveDate, Decimal)> {
    daily_of(&in_range(totals, range), range)
}

/// Spend per day of `range` from daily parts, every day present.
pub fn daily_of(parts: &[SpendPart], range: DayRange) -> Vec<(NaiveDate, Decimal)> {
    let mut by_day: BTreeMap<NaiveDate, Decimal> =
        range.each_day().map(|d| (d, Decimal::ZERO)).collect();
    for t in parts {
        if let Some(day) = t.day.filter(|d| range.contains(*d)) {
            *by_day.entry(day).or_default() += t.amount;
        }
    }
    by_day.into_iter().collect()
}

/// A service (or meter) whose spend changed against the previous range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostDriver {
    pub vendor: Vendor,
    pub service: String,
    pub meter: Option<String>,
    pub amount: Decimal,
    pub previous_amount: Decimal,
    pub change: Decimal,
    /// change / previous × 100, to two places; None when the previous amount is zero.
    pub change_percent: Option<Decimal>,
}

/// The groups (by service, or by meter) whose spend in `current` grew most over `previous`:
/// only those that grew, largest growth first, ties in vendor, service, meter order; at most
/// `limit`.
pub fn cost_drivers(
    totals: &[DailyTotal],
    current: DayRange,
    previous: DayRange,
    by_meter: bool,
    limit: usize,
) -> Vec<CostDriver> {
    drivers(
        &in_range(totals, current),
        &in_range(totals, previous),
        by_meter,
        limit,
    )
}

/// [`cost_drivers`] from the parts read for each range (see `spend_rollup`).
pub fn drivers(
    current: &[SpendPart],
    previous: &[SpendPart],
    by_meter: bool,
    limit: usize,
) -> Vec<CostDriver> {
    let mut groups: BTreeMap<(&'static str, String, Option<String>), CostDriver> = BTreeMap::new();
    for (now, parts) in [(true, current), (false, previous)] {
        for t in parts {
            // Both sources keep the vendor (by service or by meter).
            let Some(vendor) = t.vendor else { continue };
            let meter = by_meter.then(|| t.meter.clone());
            let d = groups
                .entry((vendor.as_str(), t.service.clone(), meter.clone()))
                .or_insert_with(|| CostDriver {
                    vendor,
                    service: t.service.clone(),
                    meter,
                    amount: Decimal::ZERO,
                    previous_amount: Decimal::ZERO,
                    change: Decimal::ZERO,
                    change_percent: None,
                });
            if now {
                d.amount += t.amount;
            } else {
                d.previous_amount += t.amount;
            }
        }
    }
    let mut drivers: Vec<CostDriver> = groups
        .into_values()
        .map(|mut d| {
            d.change = d.amount - d.previous_amount;
            d.change_percent = (!d.previous_amount.is_zero())
                .then(|| (d.change * Decimal::ONE_HUNDRED / d.previous_amount).round_dp(2));
            d
        })
        .filter(|d| d.change > Decimal::ZERO)
        .collect();
    // Stable: equal changes keep the key order.
    drivers.sort_by_key(|d| std::cmp::Reverse(d.change));
    drivers.truncate(limit);
    drivers
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Spend by the end of the period at the run rate: `so_far` + `run_rate_per_day` × the days
/// (fractional) from `now` to `period_end`.
pub fn forecast_to_period_end(
    so_far: Decimal,
    run_rate_per_day: Decimal,
    now: DateTime<Utc>,
    period_end: DateTime<Utc>,
) -> Decimal {
    let left = (period_end - now).num_microseconds().unwrap_or(0).max(0);
    so_far + run_rate_per_day * Decimal::from(left) / Decimal::from(MICROS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn total(d: &str, vendor: Vendor, service: &str, meter: &str, amount: &str) -> DailyTotal {
        DailyTotal {
            day: day(d),
            vendor,
            service: service.into(),
            meter: meter.into(),
            amount: dec(amount),
            quantity: Decimal::ONE,
        }
    }

    fn fixture() -> Vec<DailyTotal> {
        vec![
            total("2026-11-30", Vendor::Aws, "EC2", "box", "5"),
            total("2026-12-01", Vendor::Aws, "EC2", "box", "1.0000000001"),
            total("2026-12-01", Vendor::Aws, "S3", "gb", "0.25"),
            total("2026-12-02", Vendor::Aws, "EC2", "box", "2"),
            total("2026-12-02", Vendor::Microsoft, "Azure VM", "d2", "3.5"),
            total("2026-12-02", Vendor::Aws, "EC2", "big", "-0.5"),
        ]
    }

    #[test]
    fn summaries_group_exactly_within_the_range() {
        let range = DayRange {
            first: day("2026-12-01"),
            end: day("2026-12-03"),
        };
        let (rows, sum) = summarize(&fixture(), range, Grouping::default());
        assert_eq!(sum, dec("6.2500000001"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].amount, sum);
        let by = Grouping {
            vendor: true,
            service: true,
            ..Default::default()
        };
        let (rows, _) = summarize(&fixture(), range, by);
        let got: Vec<(Option<Vendor>, Option<String>, String)> = rows
            .iter()
            .map(|r| (r.vendor, r.service.clone(), r.amount.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(Vendor::Aws), Some("EC2".into()), "2.5000000001".into()),
                (Some(Vendor::Aws), Some("S3".into()), "0.25".into()),
                (
                    Some(Vendor::Microsoft),
                    Some("Azure VM".into()),
                    "3.5".into()
                ),
            ]
        );
        assert!(rows.iter().all(|r| r.quantity.is_none() && r.day.is_none()));
        let by_day = Grouping {
            day: true,
            ..Default::default()
        };
        let (rows, _) = summarize(&fixture(), range, by_day);
        assert_eq!(rows[0].day, Some(day("2026-12-01")));
        assert_eq!(rows[1].amount, dec("5.0"));
    }

    #[test]
    fn drivers_compare_with_the_previous_equal_range() {
        let current = DayRange {
            first: day("2026-12-01"),
            end: day("2026-12-03"),
        };
        let previous = current.previous();
        assert_eq!(previous.first, day("2026-11-29"));
        let drivers = cost_drivers(&fixture(), current, previous, false, 10);
        let got: Vec<(String, String, String, Option<String>)> = drivers
            .iter()
            .map(|d| {
                (
                    d.service.clone(),
                    d.previous_amount.to_string(),
                    d.change.to_string(),
                    d.change_percent.map(|p| p.to_string()),
                )
            })
            .collect();
        // EC2 fell (5 -> 2.5000000001): not a driver.
        assert_eq!(
            got,
            vec![
                ("Azure VM".into(), "0".into(), "3.5".into(), None),
                ("S3".into(), "0".into(), "0.25".into(), None),
            ]
        );
        let by_meter = cost_drivers(&fixture(), current, previous, true, 1);
        assert_eq!(by_meter.len(), 1);
        assert_eq!(by_meter[0].meter.as_deref(), Some("d2"));
        let grew = vec![
            total("2026-11-30", Vendor::Aws, "EC2", "box", "3"),
            total("2026-12-01", Vendor::Aws, "EC2", "box", "4"),
        ];
        let d = cost_drivers(&grew, current, previous, false, 10);
        assert_eq!(d[0].change_percent, Some(dec("33.33")));
    }

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(parse_range("s", "", "e", "").unwrap(), None);
        let r = parse_range("s", "2026-02-01", "e", "2026-03-01")
            .unwrap()
            .unwrap();
        assert_eq!(r.days(), 28);
        for (s, e, field) in [
            ("2026-02-01", "", "e"),
            ("2026-2-01", "2026-03-01", "s"),
            ("2026-02-30", "2026-03-01", "s"),
            ("2026-03-01", "2026-03-01", "e"),
            ("2024-01-01", "2026-01-01", "e"),
        ] {
            let err = parse_range("s", s, "e", e).unwrap_err();
            assert_eq!(err[0].field, field, "{s}..{e}: {err:?}");
        }
        assert_eq!(
            Grouping::parse("g", &[Dimension::Day, Dimension::Day])
                .unwrap_err()
                .field,
            "g[1]"
        );
    }

    #[test]
    fn period_to_date_and_the_forecast() {
        let r = period_to_date(day("2026-12-01"), day("2027-01-01"), day("2026-12-04"));
        assert_eq!((r.first, r.end), (day("2026-12-01"), day("2026-12-05")));
        let r = period_to_date(day("2026-12-01"), day("2027-01-01"), day("2027-02-01"));
        assert_eq!(r.end, day("2027-01-01"));
        let now = DateTime::parse_from_rfc3339("2026-12-30T12:00:00Z")
            .unwrap()
            .to_utc();
        let end = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            forecast_to_period_end(dec("100"), dec("10"), now, end),
            dec("115")
        );
        assert_eq!(
            forecast_to_period_end(dec("100"), dec("10"), end, now),
            dec("100")
        );
        let d = daily(&fixture(), DayRange::ending_with(day("2026-12-03"), 3));
        assert_eq!(d.len(), 3);
        assert_eq!(d[2].1, Decimal::ZERO);
    }
}
