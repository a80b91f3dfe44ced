//! Calendar tests of billing periods, their schedule and their close: daylight saving changes in
//! both directions, midnights that do not exist or happen twice, a skipped day, half- and
//! quarter-hour offsets, month ends and 29 February, quarterly and annual anchors.
use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::billing_schedule::{BillingSchedule, TermsChange};
use super::customer::BillingCycle::{self, Annual, Monthly, Quarterly};
use super::error::Error;
use super::ledger_append::usage_date;
use super::period::{BillingAnchor, BillingTerms, Period, containing, local_date, start_of_day};
use super::period_close::{
    CloseOrder, Grace, check_close_order, check_may_close, closes_at, next_period_to_close,
    periods_to_close,
};

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap()
}

fn calendar(cycle: BillingCycle, tz: &str) -> BillingTerms {
    BillingTerms::calendar(cycle, zone(tz))
}

fn anchored(cycle: BillingCycle, tz: &str, month: u32, day: u32) -> BillingTerms {
    BillingTerms {
        cycle,
        anchor: BillingAnchor::parse("anchor", month, day).unwrap(),
        time_zone: zone(tz),
    }
}

fn period(terms: BillingTerms, at: DateTime<Utc>) -> Period {
    terms.period_containing(at).unwrap()
}

#[track_caller]
fn assert_bounds(p: &Period, start: DateTime<Utc>, end: DateTime<Utc>) {
    assert_eq!((p.start, p.end), (start, end), "{p}");
}

#[test]
fn periods_follow_the_cycle_in_the_time_zone() {
    // 2026-03-31 23:30 UTC is already April 1st in Johannesburg (UTC+2).
    let at = utc(2026, 3, 31, 23, 30);
    let (s, e) = containing(Monthly, "Africa/Johannesburg", at).unwrap();
    assert_eq!(s, utc(2026, 3, 31, 22, 0));
    assert_eq!(e, utc(2026, 4, 30, 22, 0));
    let (s, e) = containing(Quarterly, "UTC", at).unwrap();
    assert_eq!(s, utc(2026, 1, 1, 0, 0));
    assert_eq!(e, utc(2026, 4, 1, 0, 0));
    let at = utc(2026, 12, 15, 0, 0);
    let (s, e) = containing(Annual, "UTC", at).unwrap();
    assert_eq!(s, utc(2026, 1, 1, 0, 0));
    assert_eq!(e, utc(2027, 1, 1, 0, 0));
    let (_, e) = containing(Monthly, "UTC", at).unwrap();
    assert_eq!(e, utc(2027, 1, 1, 0, 0));
    assert!(matches!(
        containing(Monthly, "Mars/Olympus", at),
        Err(Error::Internal(_))
    ));
}

#[test]
fn london_months_across_both_daylight_saving_changes() {
    let london = calendar(Monthly, "Europe/London");
    // Clocks go forward on 29 March 2026: March starts in GMT and ends in BST.
    let march = period(london, utc(2026, 3, 29, 1, 30));
    assert_bounds(&march, utc(2026, 3, 1, 0, 0), utc(2026, 3, 31, 23, 0));
    assert_eq!(
        march.to_string(),
        "2026-03-01 to 2026-03-31 (Europe/London)"
    );
    // 23:30 UTC on 31 March is 00:30 on 1 April in London.
    let april = period(london, utc(2026, 3, 31, 23, 30));
    assert_bounds(&april, utc(2026, 3, 31, 23, 0), utc(2026, 4, 30, 23, 0));
    // Clocks go back on 25 October: 01:30 happens twice, both in October.
    for at in [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)] {
        let october = period(london, at);
        assert_bounds(&october, utc(2026, 9, 30, 23, 0), utc(2026, 11, 1, 0, 0));
    }
}

#[test]
fn new_york_months_across_both_daylight_saving_changes() {
    let new_york = calendar(Monthly, "America/New_York");
    // Clocks go forward on 8 March 2026.
    let march = period(new_york, utc(2026, 3, 8, 7, 30));
    assert_bounds(&march, utc(2026, 3, 1, 5, 0), utc(2026, 4, 1, 4, 0));
    // Clocks go back on 1 November 2026: the month starts in EDT, ends in EST; 01:30 local
    // happens twice that night, both in November.
    for at in [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)] {
        let november = period(new_york, at);
        assert_bounds(&november, utc(2026, 11, 1, 4, 0), utc(2026, 12, 1, 5, 0));
    }
    // 23:59 on 31 October local is still October.
    let october = period(new_york, utc(2026, 11, 1, 3, 59));
    assert_eq!(october.end, utc(2026, 11, 1, 4, 0));
}

#[test]
fn half_and_three_quarter_hour_offsets() {
    let kolkata = calendar(Monthly, "Asia/Kolkata");
    let november = period(kolkata, utc(2026, 10, 31, 18, 30));
    assert_bounds(
        &november,
        utc(2026, 10, 31, 18, 30),
        utc(2026, 11, 30, 18, 30),
    );
    let october = period(kolkata, utc(2026, 10, 31, 18, 29));
    assert_eq!(october.end, november.start);
    // Chatham: +12:45 in winter, +13:45 from the last Sunday of September.
    let chatham = calendar(Monthly, "Pacific/Chatham");
    let july = period(chatham, utc(2026, 7, 15, 0, 0));
    assert_bounds(&july, utc(2026, 6, 30, 11, 15), utc(2026, 7, 31, 11, 15));
    let september = period(chatham, utc(2026, 9, 15, 0, 0));
    assert_bounds(
        &september,
        utc(2026, 8, 31, 11, 15),
        utc(2026, 9, 30, 10, 15),
    );
    let quarter = period(
        calendar(Quarterly, "Pacific/Chatham"),
        utc(2026, 11, 2, 0, 0),
    );
    assert_bounds(
        &quarter,
        utc(2026, 9, 30, 10, 15),
        utc(2026, 12, 31, 10, 15),
    );
}

#[test]
fn quarterly_and_annual_cycles_with_anchor_months() {
    let q = period(calendar(Quarterly, "Europe/London"), utc(2026, 2, 10, 0, 0));
    assert_bounds(&q, utc(2026, 1, 1, 0, 0), utc(2026, 3, 31, 23, 0));
    // Quarters from February: Feb-Apr, May-Jul, Aug-Oct, Nov-Jan (across the year end).
    let from_feb = anchored(Quarterly, "Europe/London", 2, 1);
    let q = period(from_feb, utc(2027, 1, 15, 0, 0));
    assert_bounds(&q, utc(2026, 11, 1, 0, 0), utc(2027, 2, 1, 0, 0));
    assert_eq!(q.to_string(), "2026-11-01 to 2027-01-31 (Europe/London)");
    let q = period(from_feb, utc(2026, 5, 1, 0, 0));
    assert_bounds(&q, utc(2026, 4, 30, 23, 0), utc(2026, 7, 31, 23, 0));
    // A fiscal year from 1 April in Kolkata.
    let fiscal = anchored(Annual, "Asia/Kolkata", 4, 1);
    let y = period(fiscal, utc(2026, 2, 10, 0, 0));
    assert_bounds(&y, utc(2025, 3, 31, 18, 30), utc(2026, 3, 31, 18, 30));
    let y = period(calendar(Annual, "America/New_York"), utc(2026, 7, 4, 0, 0));
    assert_bounds(&y, utc(2026, 1, 1, 5, 0), utc(2027, 1, 1, 5, 0));
}

#[test]
fn february_in_a_leap_year_and_anchors_past_month_ends() {
    let utc_months = calendar(Monthly, "UTC");
    let feb = period(utc_months, utc(2028, 2, 29, 12, 0));
    assert_bounds(&feb, utc(2028, 2, 1, 0, 0), utc(2028, 3, 1, 0, 0));
    assert_eq!(
        feb.last_day(),
        NaiveDate::from_ymd_opt(2028, 2, 29).unwrap()
    );
    // Anchored on the 31st: the last day of shorter months.
    let on_31st = anchored(Monthly, "UTC", 1, 31);
    assert_bounds(
        &period(on_31st, utc(2028, 2, 15, 0, 0)),
        utc(2028, 1, 31, 0, 0),
        utc(2028, 2, 29, 0, 0),
    );
    assert_bounds(
        &period(on_31st, utc(2028, 2, 29, 0, 0)),
        utc(2028, 2, 29, 0, 0),
        utc(2028, 3, 31, 0, 0),
    );
    assert_bounds(
        &period(on_31st, utc(2027, 2, 27, 0, 0)),
        utc(2027, 1, 31, 0, 0),
        utc(2027, 2, 28, 0, 0),
    );
    assert_bounds(
        &period(on_31st, utc(2027, 4, 30, 0, 0)),
        utc(2027, 4, 30, 0, 0),
        utc(2027, 5, 31, 0, 0),
    );
    // A year from 29 February: 28 February in common years.
    let leap_day = anchored(Annual, "UTC", 2, 29);
    assert_bounds(
        &period(leap_day, utc(2027, 6, 1, 0, 0)),
        utc(2027, 2, 28, 0, 0),
        utc(2028, 2, 29, 0, 0),
    );
    assert_bounds(
        &period(leap_day, utc(2028, 3, 1, 0, 0)),
        utc(2028, 2, 29, 0, 0),
        utc(2029, 2, 28, 0, 0),
    );
}

#[test]
fn a_window_late_on_the_last_utc_day_belongs_to_the_next_month_in_johannesburg() {
    let zone = zone("Africa/Johannesburg");
    let schedule = BillingSchedule::new(BillingTerms::calendar(Monthly, zone));
    for (month, days) in [(1, 31), (4, 30), (2, 28)] {
        let window_start = utc(2026, month, days, 22, 30);
        let p = schedule.period_of_charge(window_start).unwrap();
        assert_eq!(p.start, utc(2026, month, days, 22, 0), "{p}");
        assert_eq!(p.first_day(), usage_date(window_start, zone));
        assert_eq!(
            p.first_day(),
            NaiveDate::from_ymd_opt(2026, month + 1, 1).unwrap()
        );
    }
}

#[test]
fn days_without_a_midnight_or_with_two() {
    // Havana jumps from 00:00 to 01:00 on 8 March 2026: that day starts at the jump.
    let havana = zone("America/Havana");
    let march_8 = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
    let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).unwrap();
    assert_eq!(
        havana.from_local_datetime(&midnight(march_8)),
        LocalResult::None
    );
    assert_eq!(start_of_day(havana, march_8), Some(utc(2026, 3, 8, 5, 0)));
    let on_8th = anchored(Monthly, "America/Havana", 1, 8);
    let p = period(on_8th, utc(2026, 3, 20, 0, 0));
    assert_bounds(&p, utc(2026, 3, 8, 5, 0), utc(2026, 4, 8, 4, 0));
    assert_eq!(p.first_day(), march_8);
    // It falls back from 01:00 to 00:00 on 1 November 2026: the month starts at the first
    // midnight, and the hour between the two midnights is November's.
    let november_1 = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert!(matches!(
        havana.from_local_datetime(&midnight(november_1)),
        LocalResult::Ambiguous(..)
    ));
    let november = period(calendar(Monthly, "America/Havana"), utc(2026, 11, 1, 4, 30));
    assert_bounds(&november, utc(2026, 11, 1, 4, 0), utc(2026, 12, 1, 5, 0));
    // Samoa skipped 30 December 2011 entirely: a period anchored on the 30th starts when
    // 31 December began.
    let apia = zone("Pacific/Apia");
    let dec_30 = NaiveDate::from_ymd_opt(2011, 12, 30).unwrap();
    assert_eq!(
        apia.from_local_datetime(&midnight(dec_30)),
        LocalResult::None
    );
    assert_eq!(start_of_day(apia, dec_30), Some(utc(2011, 12, 30, 10, 0)));
    let on_30th = anchored(Monthly, "Pacific/Apia", 1, 30);
    let before = period(on_30th, utc(2011, 12, 30, 9, 59));
    let after = period(on_30th, utc(2011, 12, 30, 10, 0));
    assert_eq!(before.end, after.start);
    assert_eq!(after.start, utc(2011, 12, 30, 10, 0));
    assert_eq!(
        after.first_day(),
        NaiveDate::from_ymd_opt(2011, 12, 31).unwrap()
    );
}

#[test]
fn anchors_are_validated_with_their_fields_named() {
    assert_eq!(
        BillingAnchor::parse("anchor", 0, 0).unwrap(),
        BillingAnchor::CALENDAR
    );
    let a = BillingAnchor::parse("anchor", 4, 15).unwrap();
    assert_eq!((a.month(), a.day()), (4, 15));
    let errors = BillingAnchor::parse("billing.anchor", 13, 32).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["billing.anchor.month", "billing.anchor.day"]);
}

fn london_monthly() -> BillingSchedule {
    BillingSchedule::new(calendar(Monthly, "Europe/London"))
}

#[test]
fn a_cycle_change_takes_effect_at_the_next_boundary() {
    let mut schedule = london_monthly();
    let quarterly = calendar(Quarterly, "Europe/London");
    let effective = schedule
        .change_terms(utc(2026, 2, 10, 12, 0), quarterly)
        .unwrap();
    assert_eq!(effective, utc(2026, 3, 1, 0, 0));
    let feb = schedule.period_containing(utc(2026, 2, 28, 0, 0)).unwrap();
    assert_bounds(&feb, utc(2026, 2, 1, 0, 0), utc(2026, 3, 1, 0, 0));
    assert_eq!(feb.terms.cycle, Monthly);
    // March is on no quarter boundary: it is a short first quarterly period, then Q2.
    let march = schedule.next(&feb).unwrap();
    assert_bounds(&march, utc(2026, 3, 1, 0, 0), utc(2026, 3, 31, 23, 0));
    assert_eq!(march.terms.cycle, Quarterly);
    let q2 = schedule.next(&march).unwrap();
    assert_bounds(&q2, utc(2026, 3, 31, 23, 0), utc(2026, 6, 30, 23, 0));
    assert_eq!(schedule.previous(&q2).unwrap(), march);
    assert_eq!(schedule.previous(&march).unwrap(), feb);
    // Back to monthly, asked in May: from July.
    let effective = schedule
        .change_terms(utc(2026, 5, 5, 0, 0), calendar(Monthly, "Europe/London"))
        .unwrap();
    assert_eq!(effective, utc(2026, 6, 30, 23, 0));
    let july = schedule.next(&q2).unwrap();
    assert_bounds(&july, utc(2026, 6, 30, 23, 0), utc(2026, 7, 31, 23, 0));
    assert_eq!(schedule.changes().len(), 2);
}

#[test]
fn the_latest_request_in_a_period_wins() {
    let mut schedule = london_monthly();
    schedule
        .change_terms(utc(2026, 2, 10, 0, 0), calendar(Quarterly, "Europe/London"))
        .unwrap();
    schedule
        .change_terms(utc(2026, 2, 20, 0, 0), calendar(Annual, "Europe/London"))
        .unwrap();
    assert_eq!(schedule.changes().len(), 1);
    assert_eq!(schedule.changes()[0].terms.cycle, Annual);
    let march = schedule.period_containing(utc(2026, 3, 5, 0, 0)).unwrap();
    assert_bounds(&march, utc(2026, 3, 1, 0, 0), utc(2027, 1, 1, 0, 0));
    // Asking for the terms in effect cancels what was pending.
    schedule
        .change_terms(utc(2026, 2, 25, 0, 0), calendar(Monthly, "Europe/London"))
        .unwrap();
    assert!(schedule.changes().is_empty());
}

#[test]
fn a_time_zone_change_also_waits_for_the_boundary() {
    let mut schedule = london_monthly();
    let effective = schedule
        .change_terms(utc(2026, 3, 10, 0, 0), calendar(Monthly, "Asia/Kolkata"))
        .unwrap();
    assert_eq!(effective, utc(2026, 3, 31, 23, 0));
    let april = schedule.period_containing(effective).unwrap();
    // From London's midnight to Kolkata's next one.
    assert_bounds(&april, utc(2026, 3, 31, 23, 0), utc(2026, 4, 30, 18, 30));
    assert_eq!(april.time_zone().name(), "Asia/Kolkata");
    // Moving west leaves a stub from Kolkata's midnight to London's, hours later.
    let mut west = BillingSchedule::new(calendar(Monthly, "Asia/Kolkata"));
    let effective = west
        .change_terms(utc(2026, 3, 10, 0, 0), calendar(Monthly, "Europe/London"))
        .unwrap();
    assert_eq!(effective, utc(2026, 3, 31, 18, 30));
    let stub = west.period_containing(effective).unwrap();
    assert_bounds(&stub, utc(2026, 3, 31, 18, 30), utc(2026, 3, 31, 23, 0));
    assert_bounds(
        &west.next(&stub).unwrap(),
        utc(2026, 3, 31, 23, 0),
        utc(2026, 4, 30, 23, 0),
    );
}

#[test]
fn stored_schedules_must_be_in_order() {
    let terms = calendar(Monthly, "UTC");
    let change = |at| TermsChange {
        effective_at: at,
        terms,
    };
    let ok = BillingSchedule::with_changes(
        terms,
        vec![change(utc(2026, 1, 1, 0, 0)), change(utc(2026, 2, 1, 0, 0))],
    );
    assert!(ok.is_ok());
    let bad = BillingSchedule::with_changes(
        terms,
        vec![change(utc(2026, 2, 1, 0, 0)), change(utc(2026, 2, 1, 0, 0))],
    );
    assert!(matches!(bad, Err(Error::Internal(_))));
}

#[test]
fn a_period_is_named_by_its_start() {
    let schedule = london_monthly();
    let p = schedule
        .period_starting_at("period_start", utc(2026, 3, 31, 23, 0))
        .unwrap();
    assert_eq!(p.first_day(), NaiveDate::from_ymd_opt(2026, 4, 1).unwrap());
    let Err(Error::InvalidArgument(v)) =
        schedule.period_starting_at("period_start", utc(2026, 4, 1, 0, 0))
    else {
        panic!("a mid-period instant named a period");
    };
    assert_eq!(v[0].field, "period_start");
    assert!(
        v[0].description.contains("starts at 2026-03-31T23:00:00Z"),
        "{}",
        v[0].description
    );
}

#[test]
fn a_period_closes_after_its_grace_days_in_its_time_zone() {
    let london = london_monthly();
    let november = london.period_containing(utc(2026, 11, 10, 0, 0)).unwrap();
    assert_eq!(
        closes_at(&november, Grace::DEFAULT).unwrap(),
        utc(2026, 12, 4, 0, 0)
    );
    assert!(check_may_close(&november, Grace::DEFAULT, utc(2026, 12, 4, 0, 0)).is_ok());
    let Err(Error::FailedPrecondition {
        subject,
        description,
    }) = check_may_close(&november, Grace::DEFAULT, utc(2026, 12, 3, 23, 59))
    else {
        panic!("closed within the grace period");
    };
    assert_eq!(subject, "period");
    assert!(
        description.contains("within its 3-day grace period")
            && description
                .contains("closes at 2026-12-04T00:00:00Z (2026-12-04 00:00 Europe/London)"),
        "{description}"
    );
    let err = check_may_close(&november, Grace::DEFAULT, utc(2026, 11, 20, 0, 0)).unwrap_err();
    assert!(err.to_string().contains("has not ended yet"), "{err}");
    // New York's October ends in daylight time; three days later is standard time.
    let new_york = BillingSchedule::new(calendar(Monthly, "America/New_York"));
    let october = new_york.period_containing(utc(2026, 10, 10, 0, 0)).unwrap();
    assert_eq!(october.end, utc(2026, 11, 1, 4, 0));
    assert_eq!(
        closes_at(&october, Grace::DEFAULT).unwrap(),
        utc(2026, 11, 4, 5, 0)
    );
    let no_grace = Grace::days("grace_days", 0).unwrap();
    assert_eq!(closes_at(&october, no_grace).unwrap(), october.end);
    assert_eq!(
        Grace::days("grace_days", 63).unwrap_err().field,
        "grace_days"
    );
}

#[test]
fn periods_close_in_order() {
    let schedule = london_monthly();
    let created = utc(2026, 9, 14, 0, 0);
    let september = next_period_to_close(&schedule, None, created).unwrap();
    assert_eq!(september.start, utc(2026, 8, 31, 23, 0));
    let due = periods_to_close(
        &schedule,
        september,
        Grace::DEFAULT,
        utc(2026, 12, 10, 0, 0),
        12,
    )
    .unwrap();
    let firsts: Vec<String> = due.iter().map(|p| p.first_day().to_string()).collect();
    assert_eq!(firsts, ["2026-09-01", "2026-10-01", "2026-11-01"]);
    let limited = periods_to_close(
        &schedule,
        september,
        Grace::DEFAULT,
        utc(2026, 12, 10, 0, 0),
        2,
    )
    .unwrap();
    assert_eq!(limited.len(), 2);
    let october = next_period_to_close(&schedule, Some(september.end), created).unwrap();
    assert_eq!(
        check_close_order(&september, &october).unwrap(),
        CloseOrder::AlreadyClosed
    );
    assert_eq!(
        check_close_order(&october, &october).unwrap(),
        CloseOrder::Next
    );
    let november = schedule.next(&october).unwrap();
    let err = check_close_order(&november, &october).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot close before 2026-10-01 to 2026-10-31"),
        "{err}"
    );
}

/// The open-period read's original cut, kept to show [`containing`] still gives its results.
fn containing_before(
    cycle: BillingCycle,
    tz: Tz,
    at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    use chrono::Datelike;
    let local = at.with_timezone(&tz);
    let months = match cycle {
        Monthly => 1,
        Quarterly => 3,
        Annual => 12,
    };
    let month0 = (local.month0() / months) * months;
    let start = NaiveDate::from_ymd_opt(local.year(), month0 + 1, 1)?;
    let end_total = month0 + months;
    let end = NaiveDate::from_ymd_opt(
        local.year() + (end_total / 12) as i32,
        end_total % 12 + 1,
        1,
    )?;
    let midnight = |d: NaiveDate| {
        let naive = d.and_hms_opt(0, 0, 0)?;
        tz.from_local_datetime(&naive)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(naive + Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
    };
    Some((midnight(start)?, midnight(end)?))
}

const ZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Africa/Johannesburg",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Tehran",
];

fn terms_strategy() -> impl Strategy<Value = BillingTerms> {
    (
        0..ZONES.len(),
        prop_oneof![Just(Monthly), Just(Quarterly), Just(Annual)],
        1u32..=12,
        prop_oneof![3 => Just(1u32), 1 => 1u32..=31],
    )
        .prop_map(|(z, cycle, month, day)| anchored(cycle, ZONES[z], month, day))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every instant lies in its period, periods tile time, each starts at the first instant of
    /// its first local day, and the period holds exactly the instants of its local days.
    #[test]
    fn periods_tile_time_by_local_days(
        terms in terms_strategy(),
        seconds in 946_684_800i64..2_208_988_800,
    ) {
        let at = DateTime::from_timestamp(seconds, 0).unwrap();
        let schedule = BillingSchedule::new(terms);
        let p = schedule.period_containing(at).unwrap();
        prop_assert!(p.contains(at), "{p} does not contain {at}");
        let next = schedule.next(&p).unwrap();
        prop_assert_eq!(next.start, p.end);
        prop_assert_eq!(schedule.previous(&next).unwrap(), p);
        let zone = terms.time_zone;
        prop_assert_eq!(start_of_day(zone, p.first_day()), Some(p.start));
        prop_assert!(local_date(p.start - Duration::seconds(1), zone) < p.first_day());
        let day = local_date(at, zone);
        prop_assert!(p.first_day() <= day && day <= p.last_day());
        prop_assert_eq!(schedule.period_of_charge(at).unwrap(), p);
    }

    /// The calendar cut keeps the open-period read's results.
    #[test]
    fn containing_keeps_its_results(
        z in 0..ZONES.len(),
        cycle in prop_oneof![Just(Monthly), Just(Quarterly), Just(Annual)],
        seconds in 946_684_800i64..2_208_988_800,
    ) {
        let at = DateTime::from_timestamp(seconds, 0).unwrap();
        let before = containing_before(cycle, zone(ZONES[z]), at);
        let now = containing(cycle, ZONES[z], at).ok();
        if before.is_some() {
            prop_assert_eq!(now, before);
        }
    }

    /// Whatever changes of terms are requested, periods still tile time and each change takes
    /// effect at the end of the period it was requested in.
    #[test]
    fn schedules_tile_time_across_changes(
        initial in terms_strategy(),
        requests in prop::collection::vec((0i64..400 * 24, terms_strategy()), 0..6),
        probe_hours in prop::collection::vec(0i64..500 * 24, 1..20),
    ) {
        let origin = utc(2026, 1, 1, 0, 0);
        let mut schedule = BillingSchedule::new(initial);
        let mut requests = requests;
        requests.sort_by_key(|(h, _)| *h);
        for (hours, terms) in requests {
            let at = origin + Duration::hours(hours);
            let before = schedule.period_containing(at).unwrap();
            let effective = schedule.change_terms(at, terms).unwrap();
            prop_assert_eq!(effective, before.end);
            prop_assert_eq!(schedule.terms_at(effective), terms);
            prop_assert_eq!(schedule.period_containing(at).unwrap(), before);
        }
        for hours in probe_hours {
            let at = origin + Duration::hours(hours);
            let p = schedule.period_containing(at).unwrap();
            prop_assert!(p.contains(at));
            prop_assert!(p.start < p.end);
            let next = schedule.next(&p).unwrap();
            prop_assert_eq!(next.start, p.end);
            prop_assert_eq!(schedule.previous(&next).unwrap(), p);
        }
    }
}

#[test]
fn extreme_instants_are_errors_not_panics() {
    for z in ZONES {
        for cycle in [Monthly, Quarterly, Annual] {
            let schedule = BillingSchedule::new(anchored(cycle, z, 12, 31));
            for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                if let Ok(p) = schedule.period_containing(at) {
                    assert!(p.contains(at), "{p} {at}");
                }
                let named = schedule.period_starting_at("period_start", at);
                assert!(
                    matches!(named, Ok(_) | Err(Error::InvalidArgument(_))),
                    "{named:?}"
                );
            }
        }
    }
}
