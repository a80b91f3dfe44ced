//! Coarser sums of the daily totals (see `ledger_append`), kept by the same ledger write, so a
//! spend read costs what its answer holds rather than the customer's days × meters: a customer
//! with 100 meters over 30 days has 3,000 daily totals but 30 days, 600 days × services and 20
//! services of a month. Each rollup row is a sum of daily-total changes, so it stays exact under
//! revisions, reversals and re-rates (they change the totals by appending changes, and the
//! rollups add the same changes). What is stored (`rollups`), and which rows a read of a range
//! and grouping takes (`RangeParts`, `Source`).
use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;

use super::{DailyTotal, DayRange, Grouping};
use crate::domain::ledger_append::{Total, TotalKey};
use crate::domain::vendor::Vendor;

/// How coarse a rollup row is: what its bucket is (a day, or a month by its first day) and
/// which of vendor, service and meter it keeps (the others are stored as "").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    /// Per day, all vendors, services and meters: the chart, the credit run rate.
    Day,
    /// Per day, vendor and service.
    DayService,
    /// Per month, vendor and service.
    MonthService,
    /// Per month, vendor, service and meter.
    MonthMeter,
}

impl Grain {
    pub const ALL: [Grain; 4] = [
        Grain::Day,
        Grain::DayService,
        Grain::MonthService,
        Grain::MonthMeter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::DayService => "day_service",
            Grain::MonthService => "month_service",
            Grain::MonthMeter => "month_meter",
        }
    }

    fn monthly(self) -> bool {
        matches!(self, Grain::MonthService | Grain::MonthMeter)
    }

    /// The bucket of a usage day.
    pub fn bucket(self, day: NaiveDate) -> NaiveDate {
        if self.monthly() { month_of(day) } else { day }
    }

    /// The key of a daily total's contribution to this grain.
    fn key(self, total: &TotalKey) -> RollupKey {
        let (vendor, service, meter) = match self {
            Grain::Day => ("", "", ""),
            Grain::DayService | Grain::MonthService => {
                (total.vendor.as_str(), total.service.as_str(), "")
            }
            Grain::MonthMeter => (
                total.vendor.as_str(),
                total.service.as_str(),
                total.meter.as_str(),
            ),
        };
        RollupKey {
            customer_id: total.customer_id.clone(),
            grain: self,
            bucket: self.bucket(total.usage_date),
            vendor,
            service: service.to_string(),
            meter: meter.to_string(),
        }
    }
}

/// One rollup row's key; `vendor`, `service` and `meter` are "" where the grain drops them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub customer_id: String,
    pub grain: Grain,
    pub bucket: NaiveDate,
    pub vendor: &'static str,
    pub service: String,
    pub meter: String,
}

/// The first day of `day`'s month.
pub fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).expect("every month has a first day")
}

/// The first day of the month after `month`'s.
fn next_month(month: NaiveDate) -> NaiveDate {
    // Day 1 + 32 days is always in the next month.
    month_of(month_of(month) + Duration::days(32))
}

/// The changes of the rollups implied by changes of daily totals (a write's, or a customer's
/// rebuilt totals): each daily total adds to one row of every grain. Quantities are summed
/// alongside but mean something only per meter (`MonthMeter`); no read uses them otherwise.
/// `MonthMeter` rows keep one of their charges' line keys and units (an invoice line's unit).
pub fn rollups(totals: &BTreeMap<TotalKey, Total>) -> BTreeMap<RollupKey, Total> {
    let mut out: BTreeMap<RollupKey, Total> = BTreeMap::new();
    for (key, total) in totals {
        for grain in Grain::ALL {
            let sum = out.entry(grain.key(key)).or_default();
            sum.amount += total.amount;
            sum.quantity += total.quantity;
            sum.events += total.events;
            // Only a row per meter has a unit to give an invoice line.
            if grain == Grain::MonthMeter {
                sum.line_key = sum.line_key.or(total.line_key);
                if sum.unit.is_none() {
                    sum.unit.clone_from(&total.unit);
                }
            }
        }
    }
    out
}

/// Where a read of one grouping takes its rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Day by day from the daily totals (per meter) or a daily grain.
    Days(DayGrain),
    /// Whole months from a monthly grain; the days of a range's partial months from the daily
    /// source with the same dimensions (see [`RangeParts`]).
    Months(Grain, DayGrain),
}

/// A daily source: the daily totals themselves (per meter) or a daily rollup grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayGrain {
    Meter,
    Rollup(Grain),
}

impl Source {
    /// The coarsest rows that still hold every dimension of `grouping`: with days, the daily
    /// rows (the answer has a row per day anyway); without, the monthly ones.
    pub fn of(grouping: Grouping) -> Source {
        match (
            grouping.day,
            grouping.meter,
            grouping.vendor || grouping.service,
        ) {
            (true, true, _) => Source::Days(DayGrain::Meter),
            (true, false, true) => Source::Days(DayGrain::Rollup(Grain::DayService)),
            (true, false, false) => Source::Days(DayGrain::Rollup(Grain::Day)),
            (false, true, _) => Source::Months(Grain::MonthMeter, DayGrain::Meter),
            (false, false, _) => {
                Source::Months(Grain::MonthService, DayGrain::Rollup(Grain::DayService))
            }
        }
    }
}

/// A range of days as monthly rows and daily rows: the sum over `months` (month buckets
/// `[first, end)`), plus the days of `plus`, minus the days of `minus`, is the sum over the
/// range. A partial month is read as its days in the range or, when fewer, as the whole month
/// less its days outside the range (month to date: the month less the days after today, which
/// usually hold nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeParts {
    pub months: Option<(NaiveDate, NaiveDate)>,
    pub plus: Vec<DayRange>,
    pub minus: Vec<DayRange>,
}

impl RangeParts {
    /// The parts of `range`; `subtract`: whether the daily source counts events, so days may
    /// be taken from a month (the daily totals do not: per meter, partial months are read
    /// as their days in the range).
    pub fn of(range: DayRange, subtract: bool) -> RangeParts {
        let mut parts = RangeParts::default();
        if range.days() <= 0 {
            return parts;
        }
        let mut month = month_of(range.first);
        while month < range.end {
            let month_days = DayRange {
                first: month,
                end: next_month(month),
            };
            let inside = DayRange {
                first: month_days.first.max(range.first),
                end: month_days.end.min(range.end),
            };
            let outside = month_days.days() - inside.days();
            if outside > 0 && (!subtract || inside.days() <= outside) {
                parts.plus.push(inside);
            } else {
                parts.months = Some(match parts.months {
                    Some((first, _)) => (first, month_days.end),
                    None => (month, month_days.end),
                });
                for gap in [
                    DayRange {
                        first: month_days.first,
                        end: inside.first,
                    },
                    DayRange {
                        first: inside.end,
                        end: month_days.end,
                    },
                ] {
                    if gap.days() > 0 {
                        parts.minus.push(gap);
                    }
                }
            }
            month = month_days.end;
        }
        parts
    }
}

/// A row read for a spend answer: a daily total, or a rollup row (whole months, or a day) with
/// the sign its part of the range gives it. `day` only for daily rows; `vendor`, `service`,
/// `meter` as the source keeps them (None / "" otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendPart {
    pub day: Option<NaiveDate>,
    pub vendor: Option<Vendor>,
    pub service: String,
    pub meter: String,
    pub amount: Decimal,
    pub quantity: Decimal,
    /// Charge events summed (see [`rollups`]); 1 for a daily total, which exists only when
    /// some event made it.
    pub events: i64,
}

impl SpendPart {
    /// A daily total as a part (its day kept).
    pub fn of_total(t: &DailyTotal) -> SpendPart {
        SpendPart {
            day: Some(t.day),
            vendor: Some(t.vendor),
            service: t.service.clone(),
            meter: t.meter.clone(),
            amount: t.amount,
            quantity: t.quantity,
            events: 1,
        }
    }

    /// The part with its figures negated (a day subtracted from its month).
    pub fn negated(mut self) -> SpendPart {
        self.amount = -self.amount;
        self.quantity = -self.quantity;
        self.events = -self.events;
        self
    }
}

/// Nets parts of the same key and day (a month less its days outside the range) and drops the
/// keys left without events: what remains is what the daily totals within the range would
/// have given, key by key (a key whose charges in the range sum to zero stays, at zero, as a
/// daily total at zero would).
pub fn net(parts: Vec<SpendPart>) -> Vec<SpendPart> {
    if parts.iter().all(|p| p.events > 0) {
        return parts;
    }
    type Key = (Option<NaiveDate>, Option<Vendor>, String, String);
    let mut netted: BTreeMap<Key, SpendPart> = BTreeMap::new();
    for p in parts {
        let key = (p.day, p.vendor, p.service.clone(), p.meter.clone());
        match netted.get_mut(&key) {
            Some(sum) => {
                sum.amount += p.amount;
                sum.quantity += p.quantity;
                sum.events += p.events;
            }
            None => {
                netted.insert(key, p);
            }
        }
    }
    netted.into_values().filter(|p| p.events > 0).collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn range(first: &str, end: &str) -> DayRange {
        DayRange {
            first: day(first),
            end: day(end),
        }
    }

    /// How many times the parts count `d` (months and plus days add one, minus days take one).
    fn coverage(parts: &RangeParts, d: NaiveDate) -> i64 {
        let months = parts
            .months
            .is_some_and(|(first, end)| first <= d && d < end) as i64;
        let plus = parts.plus.iter().filter(|r| r.contains(d)).count() as i64;
        let minus = parts.minus.iter().filter(|r| r.contains(d)).count() as i64;
        months + plus - minus
    }

    #[test]
    fn parts_count_every_day_of_the_range_once_and_no_other() {
        // Every range of up to 400 days starting on each day of 2024-2025 (a leap February).
        let start = day("2023-12-01");
        for offset in (0..800).step_by(7) {
            for len in [
                1, 2, 14, 15, 16, 17, 28, 29, 30, 31, 45, 59, 60, 61, 92, 366,
            ] {
                let r = DayRange {
                    first: start + Duration::days(offset),
                    end: start + Duration::days(offset + len),
                };
                let parts = RangeParts::of(r, true);
                let plus_only = RangeParts::of(r, false);
                assert!(plus_only.minus.is_empty());
                let probe = DayRange {
                    first: month_of(r.first) - Duration::days(1),
                    end: next_month(r.end) + Duration::days(1),
                };
                for d in probe.each_day() {
                    assert_eq!(
                        coverage(&parts, d),
                        r.contains(d) as i64,
                        "{r:?} {d} {parts:?}"
                    );
                    assert_eq!(coverage(&plus_only, d), r.contains(d) as i64, "{r:?} {d}");
                }
                // Never more daily rows than half a month at each edge.
                let daily: i64 = parts
                    .plus
                    .iter()
                    .chain(&parts.minus)
                    .map(|r| r.days())
                    .sum();
                assert!(daily <= 31, "{r:?}: {daily} days read one by one");
            }
        }
    }

    #[test]
    fn month_to_date_is_the_month_less_the_days_after_today() {
        let parts = RangeParts::of(range("2026-12-01", "2026-12-21"), true);
        assert_eq!(parts.months, Some((day("2026-12-01"), day("2027-01-01"))));
        assert_eq!(parts.minus, vec![range("2026-12-21", "2027-01-01")]);
        assert!(parts.plus.is_empty());
        // Early in the month the days themselves are fewer.
        let early = RangeParts::of(range("2026-12-01", "2026-12-04"), true);
        assert_eq!(early.months, None);
        assert_eq!(early.plus, vec![range("2026-12-01", "2026-12-04")]);
        // A whole month is one row per key.
        let whole = RangeParts::of(range("2026-02-01", "2026-03-01"), true);
        assert_eq!(whole.months, Some((day("2026-02-01"), day("2026-03-01"))));
        assert!(whole.plus.is_empty() && whole.minus.is_empty());
        // Per meter, the partial month's days.
        let by_meter = RangeParts::of(range("2026-11-15", "2026-12-21"), false);
        assert_eq!(by_meter.months, None);
        assert_eq!(
            by_meter.plus,
            vec![
                range("2026-11-15", "2026-12-01"),
                range("2026-12-01", "2026-12-21")
            ]
        );
    }

    #[test]
    fn each_daily_total_adds_to_one_row_of_every_grain() {
        let key = |d: &str, service: &str, meter: &str| TotalKey {
            customer_id: "c".into(),
            usage_date: day(d),
            vendor: Vendor::Aws,
            service: service.into(),
            meter: meter.into(),
        };
        let line = |meter: &str| {
            let usage = crate::domain::usage::UsageKey {
                vendor_account_id: "acct".into(),
                service: "EC2".into(),
                meter: meter.into(),
                region: String::new(),
                window_start: day("2026-12-01").and_hms_opt(0, 0, 0).unwrap().and_utc(),
            };
            crate::domain::line_key::LineKey::of(1, "pa_1", &usage)
        };
        let t = |a: &str| Total {
            amount: Decimal::from_str(a).unwrap(),
            quantity: Decimal::ONE,
            events: 2,
            line_key: Some(line(a)),
            unit: Some(format!("unit of {a}")),
        };
        let totals: BTreeMap<TotalKey, Total> = [
            (key("2026-11-30", "EC2", "a"), t("1.5")),
            (key("2026-12-01", "EC2", "a"), t("0.0000000001")),
            (key("2026-12-01", "EC2", "b"), t("-2")),
            (key("2026-12-02", "S3", "a"), t("3")),
        ]
        .into_iter()
        .collect();
        let rolled = rollups(&totals);
        let get = |grain: Grain, bucket: &str, vendor: &'static str, service: &str, meter: &str| {
            rolled[&RollupKey {
                customer_id: "c".into(),
                grain,
                bucket: day(bucket),
                vendor,
                service: service.into(),
                meter: meter.into(),
            }]
                .amount
                .to_string()
        };
        assert_eq!(get(Grain::Day, "2026-12-01", "", "", ""), "-1.9999999999");
        assert_eq!(
            get(Grain::DayService, "2026-12-01", "AWS", "EC2", ""),
            "-1.9999999999"
        );
        assert_eq!(
            get(Grain::MonthService, "2026-12-01", "AWS", "EC2", ""),
            "-1.9999999999"
        );
        assert_eq!(
            get(Grain::MonthService, "2026-11-01", "AWS", "EC2", ""),
            "1.5"
        );
        assert_eq!(
            get(Grain::MonthMeter, "2026-12-01", "AWS", "EC2", "b"),
            "-2"
        );
        assert_eq!(get(Grain::MonthMeter, "2026-12-01", "AWS", "S3", "a"), "3");
        // 3 days + 3 (day, service) + 3 (month, service) + 4 (month, meter).
        assert_eq!(rolled.len(), 13);
        let december = RollupKey {
            customer_id: "c".into(),
            grain: Grain::MonthService,
            bucket: day("2026-12-01"),
            vendor: "AWS",
            service: "EC2".into(),
            meter: String::new(),
        };
        assert_eq!(rolled[&december].events, 4);
        // Rows per meter keep a line key and a unit of their charges, the others neither.
        assert_eq!(rolled[&december].line_key, None);
        assert_eq!(rolled[&december].unit, None);
        let per_meter = |bucket: &str, service: &str, meter: &str| RollupKey {
            customer_id: "c".into(),
            grain: Grain::MonthMeter,
            bucket: day(bucket),
            vendor: "AWS",
            service: service.into(),
            meter: meter.into(),
        };
        assert_eq!(
            rolled[&per_meter("2026-12-01", "EC2", "b")].line_key,
            Some(line("-2"))
        );
        assert_eq!(
            rolled[&per_meter("2026-11-01", "EC2", "a")].line_key,
            Some(line("1.5"))
        );
        assert_eq!(
            rolled[&per_meter("2026-12-01", "EC2", "b")].unit.as_deref(),
            Some("unit of -2")
        );
    }
}
