//! The subscription rules at their edges: the 168-hour window, renewal reopening it, each
//! term with each billing frequency, cancellation and term changes.
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::catalog::{BillingFrequency, Offer, Term};
use super::error::{Error, Result};
use super::subscription::{ChangeOutcome, SeatChargeKind, Subscription, SubscriptionStatus};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn offer(term: Term, billing: BillingFrequency) -> Offer {
    Offer::new(term, billing).unwrap()
}

fn utc() -> Tz {
    "UTC".parse().unwrap()
}

fn bought() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 10, 12, 0, 0).unwrap()
}

/// Every period at 30 per seat.
fn flat(_: Offer, _: DateTime<Utc>) -> Result<Decimal> {
    Ok(dec("30"))
}

fn buy(offer: Offer, seats: u32) -> Subscription {
    Subscription::purchase(bought(), utc(), offer, seats, dec("30"))
        .unwrap()
        .0
}

fn hms(h: i64, m: i64, s: i64) -> Duration {
    Duration::hours(h) + Duration::minutes(m) + Duration::seconds(s)
}

#[test]
fn seats_come_off_at_167_59_59_and_are_scheduled_at_168_00_00() {
    let monthly = offer(Term::P1Y, BillingFrequency::Monthly);
    let mut inside = buy(monthly, 10);
    let outcome = inside
        .change_quantity(7, bought() + hms(167, 59, 59))
        .unwrap();
    let ChangeOutcome::Applied(Some(refund)) = outcome else {
        panic!("expected a refund, got {outcome:?}");
    };
    assert_eq!(refund.kind, SeatChargeKind::Refund);
    assert_eq!(refund.seats, -3);
    assert!(refund.amount < Decimal::ZERO);
    assert_eq!(inside.quantity, 7);

    let mut outside = buy(monthly, 10);
    let term_end = outside.term_end().unwrap();
    let outcome = outside
        .change_quantity(7, bought() + hms(168, 0, 0))
        .unwrap();
    let ChangeOutcome::Scheduled {
        effective_at,
        reason,
    } = outcome
    else {
        panic!("expected a scheduled change, got {outcome:?}");
    };
    assert_eq!(effective_at, term_end);
    assert_eq!(
        term_end,
        Utc.with_ymd_and_hms(2028, 1, 10, 12, 0, 0).unwrap()
    );
    assert!(reason.contains("168 hours") && reason.contains("2028-01-10T12:00:00Z"));
    assert_eq!(outside.quantity, 10, "nothing changes before the renewal");
    assert_eq!(outside.scheduled.quantity, Some(7));
    // Sub-second parts do not move the edge: 167:59:59.999 is still 167:59:59.
    let mut edge = buy(monthly, 10);
    let almost = bought() + hms(167, 59, 59) + Duration::milliseconds(999);
    assert!(matches!(
        edge.change_quantity(9, almost).unwrap(),
        ChangeOutcome::Applied(Some(_))
    ));
}

#[test]
fn an_addition_opens_the_window_for_its_own_seats_only() {
    let mut s = buy(offer(Term::P1Y, BillingFrequency::Annual), 10);
    let added = bought() + Duration::days(10);
    let ChangeOutcome::Applied(Some(proration)) = s.change_quantity(15, added).unwrap() else {
        panic!("an increase applies at once");
    };
    assert_eq!(proration.kind, SeatChargeKind::Proration);
    assert!(proration.amount > Decimal::ZERO);
    // 100 hours later: 3 of the 5 added seats may go.
    let later = added + Duration::hours(100);
    assert!(matches!(
        s.change_quantity(12, later).unwrap(),
        ChangeOutcome::Applied(Some(_))
    ));
    // Two are left in the window; three more is too many.
    assert!(matches!(
        s.change_quantity(9, later).unwrap(),
        ChangeOutcome::Scheduled { .. }
    ));
    assert_eq!(s.quantity, 12);
    // A refund never gives back more than the addition charged.
    assert_eq!(s.removable_seats(later), 2);
    assert_eq!(s.removable_seats(added + CHANGE_EDGE), 0);
}

const CHANGE_EDGE: Duration = Duration::hours(168);

#[test]
fn renewal_applies_scheduled_changes_and_reopens_the_window() {
    let monthly_term = offer(Term::P1M, BillingFrequency::Monthly);
    let mut s = buy(monthly_term, 10);
    let late = bought() + Duration::days(20);
    assert!(matches!(
        s.change_quantity(4, late).unwrap(),
        ChangeOutcome::Scheduled { .. }
    ));
    let renewed = Utc.with_ymd_and_hms(2027, 2, 10, 12, 0, 0).unwrap();
    let fees = s.advance(renewed, &mut flat).unwrap();
    assert_eq!(fees.len(), 1);
    assert_eq!((fees[0].seats, fees[0].amount), (4, dec("120")));
    assert_eq!(fees[0].at, renewed);
    assert_eq!(s.term_start, renewed);
    assert_eq!(s.scheduled, Default::default());
    // The window is open again for every seat.
    let outcome = s.change_quantity(1, renewed + hms(167, 59, 59)).unwrap();
    assert!(matches!(outcome, ChangeOutcome::Applied(Some(_))));
}

#[test]
fn a_p1y_billed_annually_charges_once_a_year() {
    let mut s = buy(offer(Term::P1Y, BillingFrequency::Annual), 2);
    let eleven_months = Utc.with_ymd_and_hms(2027, 12, 31, 0, 0, 0).unwrap();
    assert!(s.advance(eleven_months, &mut flat).unwrap().is_empty());
    let year = Utc.with_ymd_and_hms(2028, 1, 10, 12, 0, 0).unwrap();
    let fees = s.advance(year, &mut flat).unwrap();
    assert_eq!(fees.len(), 1);
    assert_eq!((fees[0].period_start, fees[0].amount), (year, dec("60")));
}

#[test]
fn a_p1y_billed_monthly_charges_twelve_times_across_month_ends() {
    let jan31 = Utc.with_ymd_and_hms(2027, 1, 31, 8, 0, 0).unwrap();
    let o = offer(Term::P1Y, BillingFrequency::Monthly);
    let (mut s, first) = Subscription::purchase(jan31, utc(), o, 1, dec("30")).unwrap();
    let year_end = Utc.with_ymd_and_hms(2028, 1, 31, 7, 59, 59).unwrap();
    let fees = s.advance(year_end, &mut flat).unwrap();
    assert_eq!(fees.len(), 11, "the purchase charged the first of twelve");
    let starts: Vec<String> = std::iter::once(&first)
        .chain(&fees)
        .take(4)
        .map(|f| f.period_start.format("%Y-%m-%d").to_string())
        .collect();
    assert_eq!(
        starts,
        ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    );
    assert!(fees.iter().all(|f| f.amount == dec("30")));
    // One second later the term renews: the thirteenth fee.
    let fees = s
        .advance(year_end + Duration::seconds(1), &mut flat)
        .unwrap();
    assert_eq!(fees.len(), 1);
    assert_eq!(s.period.index, 0);
}

#[test]
fn a_p3y_billed_annually_or_triennially() {
    let three_years = Utc.with_ymd_and_hms(2030, 1, 10, 11, 59, 59).unwrap();
    let mut annual = buy(offer(Term::P3Y, BillingFrequency::Annual), 1);
    assert_eq!(annual.advance(three_years, &mut flat).unwrap().len(), 2);
    let mut triennial = buy(offer(Term::P3Y, BillingFrequency::Triennial), 1);
    assert!(
        triennial
            .advance(three_years, &mut flat)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        triennial.term_end().unwrap(),
        three_years + Duration::seconds(1)
    );
}

#[test]
fn cancelling_inside_the_window_refunds_the_rest_and_outside_ends_the_term() {
    let o = offer(Term::P1M, BillingFrequency::Monthly);
    let mut inside = buy(o, 2);
    let at = bought() + Duration::days(1);
    let ChangeOutcome::Applied(Some(refund)) = inside.cancel(at).unwrap() else {
        panic!("cancellation inside the window applies");
    };
    // 31 days in January's period from the 10th: 30 of 31 days refunded on 2 × 30.
    assert_eq!(
        refund.amount,
        -(dec("60") * dec("30") / dec("31")).round_dp(16)
    );
    assert_eq!(inside.status, SubscriptionStatus::Cancelled);
    assert!(
        inside
            .advance(at + Duration::days(90), &mut flat)
            .unwrap()
            .is_empty()
    );

    let mut outside = buy(o, 2);
    let late = bought() + Duration::days(8);
    assert!(matches!(
        outside.cancel(late).unwrap(),
        ChangeOutcome::Scheduled { .. }
    ));
    assert!(
        outside
            .advance(late + Duration::days(60), &mut flat)
            .unwrap()
            .is_empty()
    );
    assert_eq!(outside.status, SubscriptionStatus::Expired);
    assert_eq!(outside.ended_at, Some(outside.period.end));
    // An ended subscription refuses changes.
    assert!(matches!(
        outside.change_quantity(3, late + Duration::days(61)),
        Err(Error::FailedPrecondition { .. })
    ));
}

#[test]
fn terms_change_only_to_longer_ones_at_renewal() {
    let mut s = buy(offer(Term::P1Y, BillingFrequency::Monthly), 1);
    let Err(Error::InvalidArgument(violations)) =
        s.change_offer(offer(Term::P1M, BillingFrequency::Monthly))
    else {
        panic!("a shorter term is refused");
    };
    assert_eq!(violations[0].field, "term");
    let longer = offer(Term::P3Y, BillingFrequency::Annual);
    let at = s.change_offer(longer).unwrap();
    assert_eq!(at, s.term_end().unwrap());
    let mut priced = |o: Offer, _: DateTime<Utc>| -> Result<Decimal> {
        Ok(if o == longer { dec("300") } else { dec("30") })
    };
    let fees = s.advance(at, &mut priced).unwrap();
    assert_eq!(fees.last().unwrap().amount, dec("300"));
    assert_eq!(s.offer, longer);
}

#[test]
fn renewal_turned_on_withdraws_a_scheduled_cancellation_and_off_ends_the_term() {
    let monthly = offer(Term::P1M, BillingFrequency::Monthly);
    let mut s = buy(monthly, 2);
    let late = bought() + Duration::days(8);
    assert!(matches!(
        s.cancel(late),
        Ok(ChangeOutcome::Scheduled { .. })
    ));
    let Ok(ChangeOutcome::Scheduled { effective_at, .. }) = s.schedule_auto_renew(true) else {
        panic!("scheduled for the term's end");
    };
    assert_eq!(effective_at, s.term_end().unwrap());
    assert!(!s.scheduled.cancel);
    assert_eq!(s.advance(effective_at, &mut flat).unwrap().len(), 1);
    assert_eq!(s.status, SubscriptionStatus::Active);

    s.schedule_auto_renew(false).unwrap();
    let end = s.term_end().unwrap();
    assert!(s.advance(end, &mut flat).unwrap().is_empty());
    assert_eq!(
        (s.status, s.ended_at),
        (SubscriptionStatus::Expired, Some(end))
    );
    assert!(matches!(
        s.schedule_auto_renew(true),
        Err(Error::FailedPrecondition { .. })
    ));
}
