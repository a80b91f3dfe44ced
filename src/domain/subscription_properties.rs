//! Property tests of subscription charges: for random sequences of seat changes, cancellations,
//! term changes and renewals in random time zones, every billing period's charges add up to
//! exactly the cost of the seat-time it held (computed here from the seat counts alone), no
//! refund takes a period below zero, and advancing in steps (a gateway that kept running)
//! charges exactly what advancing in one go (a gateway down across the boundaries) does.
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::catalog::{BillingFrequency, Offer, Term};
use super::error::Result;
use super::subscription::{ChangeOutcome, SeatCharge, SeatChargeKind, Subscription};
use super::subscription_period::period_amount;

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kathmandu",
];

#[derive(Debug, Clone)]
enum Op {
    SetQuantity(u32),
    Cancel,
    /// A term at least as long (the n-th such offer).
    LongerTerm(usize),
    StopRenewing,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (1u32..40).prop_map(Op::SetQuantity),
        1 => Just(Op::Cancel),
        1 => (0usize..6).prop_map(Op::LongerTerm),
        1 => Just(Op::StopRenewing),
    ]
}

fn offers() -> Vec<Offer> {
    Term::ALL
        .into_iter()
        .flat_map(|t| BillingFrequency::ALL.into_iter().map(move |b| (t, b)))
        .filter_map(|(t, b)| Offer::new(t, b).ok())
        .collect()
}

/// A price that moves with the offer and the month, in cents with odd fractions.
fn price(offer: Offer, at: DateTime<Utc>) -> Result<Decimal> {
    let base = Decimal::new(1_999 + i64::from(offer.billing.months()) * 1_000, 2);
    Ok(base + Decimal::new(i64::from(at.month()), 3))
}

/// The seat count over time as the outcomes state it: (from, seats), in order.
#[derive(Default)]
struct Timeline {
    steps: Vec<(DateTime<Utc>, i64)>,
    /// Each period seen: start -> (end, unit price).
    periods: BTreeMap<DateTime<Utc>, (DateTime<Utc>, Decimal)>,
}

impl Timeline {
    fn record(&mut self, charge: &SeatCharge, unit_price: Decimal) {
        let last = self.steps.last().map_or(0, |s| s.1);
        let seats = match charge.kind {
            SeatChargeKind::Fee => {
                self.periods
                    .insert(charge.period_start, (charge.period_end, unit_price));
                charge.seats
            }
            _ => last + charge.seats,
        };
        self.steps.push((charge.at, seats));
    }

    /// Σ over periods of price × (seat-seconds held in it) / (its seconds), the last seat count
    /// held on (fees are in advance: the current period is charged to its end).
    fn cost(&self) -> Decimal {
        let mut total = Decimal::ZERO;
        for (&start, &(end, unit)) in &self.periods {
            let mut seat_seconds = 0i64;
            for (i, &(from, seats)) in self.steps.iter().enumerate() {
                let to = self.steps.get(i + 1).map_or(end, |n| n.0.min(end));
                let from = from.max(start);
                if to > from {
                    seat_seconds += seats * (to - from).num_seconds();
                }
            }
            total += period_amount(unit, seat_seconds, (end - start).num_seconds()).unwrap();
        }
        total
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn charges_add_up_to_the_seat_time_and_refunds_never_exceed_charges(
        zone in 0..ZONES.len(),
        offer in 0usize..6,
        start_offset in 0i64..(3 * 365 * 86_400),
        initial in 1u32..40,
        steps in prop::collection::vec((0i64..(20 * 86_400), op_strategy()), 0..40),
    ) {
        let zone: Tz = ZONES[zone].parse().unwrap();
        let offer = offers()[offer];
        let bought = DateTime::from_timestamp(1_790_000_000 + start_offset, 0).unwrap();
        let (mut s, fee) = Subscription::purchase(bought, zone, offer, initial, price(offer, bought).unwrap()).unwrap();
        let mut timeline = Timeline::default();
        timeline.record(&fee, price(offer, bought).unwrap());
        let mut charges = vec![fee];
        let mut now = bought;
        let mut priced = |o: Offer, at: DateTime<Utc>| price(o, at);
        for (gap, op) in steps {
            now += Duration::seconds(gap);
            for fee in s.advance(now, &mut priced).unwrap() {
                timeline.record(&fee, price(s.offer, fee.period_start).unwrap());
                charges.push(fee);
            }
            if s.next_boundary().is_none() {
                break;
            }
            let outcome = match op {
                Op::SetQuantity(q) => s.change_quantity(q, now).unwrap(),
                Op::Cancel => s.cancel(now).unwrap(),
                Op::LongerTerm(n) => {
                    let longer: Vec<Offer> = offers().into_iter().filter(|o| o.term >= s.offer.term).collect();
                    let longer = longer[n % longer.len()];
                    s.change_offer(longer).unwrap();
                    continue;
                }
                Op::StopRenewing => {
                    s.set_auto_renew(false);
                    continue;
                }
            };
            if let ChangeOutcome::Applied(Some(charge)) = outcome {
                match charge.kind {
                    SeatChargeKind::Proration => prop_assert!(charge.amount >= Decimal::ZERO),
                    SeatChargeKind::Refund => prop_assert!(charge.amount <= Decimal::ZERO),
                    SeatChargeKind::Fee => prop_assert!(false, "a change charged a fee"),
                }
                timeline.record(&charge, Decimal::ZERO);
                charges.push(charge);
            }
        }
        // Per period, the running sum never goes below zero: no refund exceeds what was charged.
        let mut by_period: BTreeMap<DateTime<Utc>, Decimal> = BTreeMap::new();
        for c in &charges {
            let sum = by_period.entry(c.period_start).or_default();
            *sum += c.amount;
            prop_assert!(*sum >= Decimal::ZERO, "period {} went to {}", c.period_start, sum);
        }
        let charged: Decimal = charges.iter().map(|c| c.amount).sum();
        prop_assert_eq!(charged, timeline.cost());
    }

    #[test]
    fn a_gateway_down_across_boundaries_charges_what_a_running_one_does(
        zone in 0..ZONES.len(),
        offer in 0usize..6,
        seats in 1u32..40,
        checks in prop::collection::vec(1i64..(90 * 86_400), 1..30),
        stop_renewing in any::<bool>(),
    ) {
        let zone: Tz = ZONES[zone].parse().unwrap();
        let offer = offers()[offer];
        let bought = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let (mut running, _) = Subscription::purchase(bought, zone, offer, seats, Decimal::TEN).unwrap();
        running.set_auto_renew(!stop_renewing);
        let mut down = running.clone();
        let mut priced = |o: Offer, at: DateTime<Utc>| price(o, at);
        let mut now = bought;
        let mut running_fees = Vec::new();
        for gap in checks {
            now += Duration::seconds(gap);
            running_fees.extend(running.advance(now, &mut priced).unwrap());
            // Advancing twice to the same instant appends nothing the second time.
            prop_assert!(running.advance(now, &mut priced).unwrap().is_empty());
        }
        let caught_up = down.advance(now, &mut priced).unwrap();
        prop_assert_eq!(caught_up, running_fees);
        prop_assert_eq!(down, running);
    }
}
