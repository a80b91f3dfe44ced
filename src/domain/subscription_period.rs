//! A subscription's calendar and its money: where its billing periods and terms start and end
//! in the customer's time zone, and what a period's seats cost, prorated exactly.
//!
//! **Proration is by the second.** A period's amount is `unit price × seat-seconds / period
//! seconds`, where the period's seconds are real elapsed seconds between its local boundaries
//! (so a month with a DST change is an hour shorter or longer, and a change at 14:00 is charged
//! for what is left of that day, not for a whole day). Seconds rather than days because the
//! vendor's own rule is in hours (168 of them), because a seat added and removed on the same day
//! then costs what it was held for rather than a day or nothing, and because days would need a
//! rule for the partial days at both ends, which seconds do not.
//!
//! **Exactness.** The amount is divided once and rounded once (to [`AMOUNT_SCALE`] places, far
//! below any currency's minor unit) for the period's whole seat-seconds. Each change charges
//! the difference between the period's amount after it and before it, so a period's charges
//! add up to exactly its amount however many changes it saw, and a refund (a negative
//! difference) never exceeds what the period charged: the amount of fewer seat-seconds is never
//! above the amount of more.
use chrono::{DateTime, Duration, LocalResult, Months, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::catalog::Offer;
use super::error::{Error, Result};
use super::rating::AMOUNT_SCALE;

/// The instant `months` months after `anchor`'s local wall-clock time in `zone`. The day is
/// clamped to the month's end and counted from the anchor each time (an anchor on 31 January
/// gives 28 February, then 31 March), a wall-clock time the clock skips (spring forward) is
/// read with the offset before the jump (so it lands just after it), and one that happens twice
/// is the first.
pub fn months_after(anchor: DateTime<Utc>, zone: Tz, months: u32) -> Result<DateTime<Utc>> {
    let local = anchor.with_timezone(&zone).naive_local();
    let target = local
        .checked_add_months(Months::new(months))
        .ok_or_else(|| {
            Error::Internal(format!("{months} months after {anchor} is out of range"))
        })?;
    from_local(zone, target)
}

fn from_local(zone: Tz, local: NaiveDateTime) -> Result<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Ok(first.min(second).with_timezone(&Utc)),
        LocalResult::None => {
            // Gaps are at most a few hours; the offset three hours earlier is the one before it.
            let before = zone
                .from_local_datetime(&(local - Duration::hours(3)))
                .earliest()
                .ok_or_else(|| Error::Internal(format!("no offset before {local} in {zone}")))?;
            let offset = before.offset().fix();
            Ok((local - offset).and_utc())
        }
    }
}

/// One billing period of a subscription: `[start, end)` at `unit_price` per seat, with the
/// seat-seconds it is charged for so far (the current quantity held to `end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingPeriod {
    /// 0 for the first period of a term.
    pub index: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The selling price of one seat for the whole period, in the customer's currency.
    pub unit_price: Decimal,
    pub seat_seconds: i64,
}

impl BillingPeriod {
    /// Period `index` of the term starting at `term_start`, with `quantity` seats for the whole
    /// of it.
    pub fn of_term(
        term_start: DateTime<Utc>,
        zone: Tz,
        offer: Offer,
        index: u32,
        unit_price: Decimal,
        quantity: u32,
    ) -> Result<Self> {
        let months = offer.billing.months();
        let start = months_after(term_start, zone, index * months)?;
        let end = months_after(term_start, zone, (index + 1) * months)?;
        let mut period = BillingPeriod {
            index,
            start,
            end,
            unit_price,
            seat_seconds: 0,
        };
        period.seat_seconds = i64::from(quantity) * period.seconds();
        Ok(period)
    }

    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    /// The seconds left from `at` to the end (0 at or after it, all of them before the start).
    pub fn seconds_left(&self, at: DateTime<Utc>) -> i64 {
        (self.end - at.max(self.start)).num_seconds().max(0)
    }

    /// What the period's seats cost so far (see the module documentation).
    pub fn amount(&self) -> Result<Decimal> {
        period_amount(self.unit_price, self.seat_seconds, self.seconds())
    }

    /// The period after `quantity` changes by `delta` seats at `at` (held to the end), and the
    /// charge that takes its amount there: positive for seats added, negative for a refund.
    pub fn change(&self, delta: i64, at: DateTime<Utc>) -> Result<(BillingPeriod, Decimal)> {
        let moved = delta
            .checked_mul(self.seconds_left(at))
            .and_then(|s| self.seat_seconds.checked_add(s))
            .filter(|s| *s >= 0)
            .ok_or_else(|| {
                Error::Internal(format!("seat-seconds out of range changing by {delta}"))
            })?;
        let after = BillingPeriod {
            seat_seconds: moved,
            ..*self
        };
        Ok((after, after.amount()? - self.amount()?))
    }
}

/// `unit_price × seat_seconds / period_seconds`, divided once and rounded once.
pub fn period_amount(
    unit_price: Decimal,
    seat_seconds: i64,
    period_seconds: i64,
) -> Result<Decimal> {
    if period_seconds <= 0 {
        return Err(Error::Internal(format!(
            "a billing period of {period_seconds} seconds"
        )));
    }
    unit_price
        .checked_mul(Decimal::from(seat_seconds))
        .and_then(|v| v.checked_div(Decimal::from(period_seconds)))
        .map(|v| v.round_dp(AMOUNT_SCALE).normalize())
        .ok_or_else(|| {
            Error::Internal(format!(
                "{unit_price} × {seat_seconds} seat-seconds is out of range"
            ))
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::catalog::{BillingFrequency, Term};

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn month_ends_clamp_and_recover_from_the_anchor() {
        let zone: Tz = "UTC".parse().unwrap();
        let anchor = utc(2027, 1, 31, 9, 30, 0);
        let ends: Vec<String> = (1..=3)
            .map(|m| months_after(anchor, zone, m).unwrap().to_string())
            .collect();
        assert_eq!(
            ends,
            [
                "2027-02-28 09:30:00 UTC",
                "2027-03-31 09:30:00 UTC",
                "2027-04-30 09:30:00 UTC"
            ]
        );
        // A leap year's February.
        let leap = months_after(utc(2028, 1, 31, 0, 0, 0), zone, 1).unwrap();
        assert_eq!(leap, utc(2028, 2, 29, 0, 0, 0));
    }

    #[test]
    fn periods_follow_local_time_across_dst() {
        let london: Tz = "Europe/London".parse().unwrap();
        // 15 March 2027 10:00 GMT; 15 April 10:00 BST is 09:00 UTC: 31 days less one hour.
        let offer = Offer::new(Term::P1Y, BillingFrequency::Monthly).unwrap();
        let start = utc(2027, 3, 15, 10, 0, 0);
        let p = BillingPeriod::of_term(start, london, offer, 0, dec("31"), 1).unwrap();
        assert_eq!(p.end, utc(2027, 4, 15, 9, 0, 0));
        assert_eq!(p.seconds(), 31 * 86_400 - 3_600);
        // Half the period's seconds for one seat costs exactly half the price.
        let half = p.start + Duration::seconds(p.seconds() / 2);
        let (after, charge) = p.change(1, half).unwrap();
        assert_eq!(charge, dec("15.5"));
        assert_eq!(after.amount().unwrap(), dec("46.5"));
        // The skipped wall-clock time 01:30 on 28 March 2027 lands just after the jump.
        let anchor = utc(2027, 2, 28, 1, 30, 0);
        assert_eq!(
            months_after(anchor, london, 1).unwrap(),
            utc(2027, 3, 28, 1, 30, 0)
        );
        // The twice-happening 01:30 on 31 October 2027 is the first (BST, 00:30 UTC).
        let anchor = utc(2027, 8, 31, 0, 30, 0); // 01:30 BST
        assert_eq!(
            months_after(anchor, london, 2).unwrap(),
            utc(2027, 10, 31, 0, 30, 0)
        );
    }

    #[test]
    fn a_whole_period_costs_the_price_and_thirds_are_rounded_once() {
        let zone: Tz = "UTC".parse().unwrap();
        let offer = Offer::new(Term::P1M, BillingFrequency::Monthly).unwrap();
        let p =
            BillingPeriod::of_term(utc(2027, 1, 1, 0, 0, 0), zone, offer, 0, dec("10"), 3).unwrap();
        assert_eq!(p.amount().unwrap(), dec("30"));
        let third = p.start + Duration::seconds(p.seconds() / 3);
        let (after, refund) = p.change(-1, third).unwrap();
        // 10 × 2/3 of a seat-period left: 6.666…7 at 16 places, and the sum is the amount.
        assert_eq!(refund, dec("-6.6666666666666667"));
        assert_eq!(after.amount().unwrap() - p.amount().unwrap(), refund);
        assert!(p.change(-4, p.start).is_err(), "below zero seats");
    }
}
