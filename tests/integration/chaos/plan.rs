//! The seeded plan of a run. Each round brings new customers' usage (whose billing periods then
//! fall due and close), pushes that revise the lines of every customer so far (after their
//! periods closed: prior-period adjustments), suspends or resumes a few customers, and strikes
//! with faults at moments drawn from the seed: one SIGKILL, and on PostgreSQL connections
//! terminated both mid-write and at a random moment (while the stream consumers read).
use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use msp_gateway::proto::v1;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rust_decimal::Decimal;

use super::setup::account_of;
use crate::harness::Backend;
use crate::usage::{ts, usage_line};

pub const METERS: [&str; 2] = ["vm.a", "vm.b"];
/// Usage lies in each of the `MONTHS` calendar months before this one, on these days at 12:00
/// UTC: inside the month in Johannesburg too, and long before the simulator's polled window
/// (the last 48 hours), so no poll restates a pushed line.
const MONTHS: u32 = 4;
const DAYS: [u32; 2] = [3, 17];
pub const CUSTOMERS_PER_ROUND: usize = 2;
const PUSHES_PER_ROUND: usize = 10;
pub const LINES_PER_PUSH: usize = 5;
const ACTIONS_PER_ROUND: usize = 2;
/// A fault strikes within this many milliseconds of the acknowledgement it follows, so that
/// it lands in the middle of the next calls about as often as between them.
const STRIKE_WITHIN_MS: u64 = 60;

/// A pushed line's identity in the ledger's answers: customer index, meter, window start.
pub type LineId = (usize, &'static str, i64);

pub struct Push {
    pub request_id: String,
    pub lines: Vec<v1::UsageLine>,
    /// Each line's identity and cost (USD).
    pub costs: Vec<(LineId, Decimal)>,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGKILL the gateway, and start it again.
    Kill { mid_write: bool },
    /// `pg_terminate_backend` on every connection of the gateway.
    Terminate { mid_write: bool },
}
// `mid_write` (PostgreSQL): the tenant's ledger lock is held first until a write waits for it,
// so the fault certainly cuts a write in flight.

/// A fault and when it strikes: `delay_ms` after the `after`-th push of the round is
/// acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Strike {
    pub after: usize,
    pub delay_ms: u64,
    pub fault: Fault,
}

pub struct Round {
    pub pushes: Vec<Push>,
    /// Customers whose first usage this round brings: their due periods close in it.
    pub new_customers: Vec<usize>,
    /// Customers suspended (or resumed, when suspended) in this round.
    pub actions: Vec<usize>,
    /// A tenant-wide close run (CloseBillingPeriods) as well.
    pub close_run: bool,
    pub strikes: Vec<Strike>,
}

/// The window of a line `months_back` calendar months before `now`'s, on `day` at 12:00 UTC.
fn window(now: DateTime<Utc>, months_back: u32, day: u32) -> DateTime<Utc> {
    let months = now.year() * 12 + now.month0() as i32 - months_back as i32;
    Utc.with_ymd_and_hms(
        months.div_euclid(12),
        months.rem_euclid(12) as u32 + 1,
        day,
        12,
        0,
        0,
    )
    .unwrap()
}

/// Every line a customer's usage may have.
fn lines_of(customer: usize, now: DateTime<Utc>) -> Vec<(usize, &'static str, DateTime<Utc>)> {
    let mut lines = Vec::new();
    for months_back in 1..=MONTHS {
        for day in DAYS {
            for meter in METERS {
                lines.push((customer, meter, window(now, months_back, day)));
            }
        }
    }
    lines
}

fn push(
    rng: &mut StdRng,
    request_id: String,
    pool: &[(usize, &'static str, DateTime<Utc>)],
) -> Push {
    let chosen: Vec<_> = pool.choose_multiple(rng, LINES_PER_PUSH).collect();
    let mut lines = Vec::new();
    let mut costs = Vec::new();
    for &(customer, meter, start) in chosen {
        let cost = Decimal::new(rng.random_range(1..10_000), 2);
        let mut line = usage_line(&account_of(customer), meter, 0, &cost.to_string());
        line.window_start = Some(ts(start));
        line.window_end = Some(ts(start + chrono::Duration::hours(1)));
        lines.push(line);
        costs.push(((customer, meter, start.timestamp()), cost));
    }
    Push {
        request_id,
        lines,
        costs,
    }
}

pub fn rounds(rng: &mut StdRng, rounds: usize, backend: Backend) -> Vec<Round> {
    let now = Utc::now();
    let customers = rounds * CUSTOMERS_PER_ROUND;
    (0..rounds)
        .map(|r| {
            let new_customers: Vec<usize> =
                (r * CUSTOMERS_PER_ROUND..(r + 1) * CUSTOMERS_PER_ROUND).collect();
            // The round's first push brings the new customers' usage; the others revise
            // everyone's so far.
            let fresh: Vec<_> = new_customers
                .iter()
                .flat_map(|&c| lines_of(c, now))
                .collect();
            let all: Vec<_> = (0..(r + 1) * CUSTOMERS_PER_ROUND)
                .flat_map(|c| lines_of(c, now))
                .collect();
            let pushes = (0..PUSHES_PER_ROUND)
                .map(|n| {
                    let pool = if n == 0 { &fresh } else { &all };
                    push(rng, format!("chaos-{r}-{n}"), pool)
                })
                .collect();
            let actions = (0..customers)
                .collect::<Vec<_>>()
                .choose_multiple(rng, ACTIONS_PER_ROUND)
                .copied()
                .collect();
            let postgres = backend == Backend::Postgres;
            let mut faults = vec![Fault::Kill {
                mid_write: postgres && rng.random_bool(0.5),
            }];
            if postgres {
                faults.push(Fault::Terminate { mid_write: true });
                faults.push(Fault::Terminate { mid_write: false });
            }
            let mut strikes: Vec<Strike> = faults
                .into_iter()
                .map(|fault| Strike {
                    after: rng.random_range(1..PUSHES_PER_ROUND),
                    delay_ms: rng.random_range(0..STRIKE_WITHIN_MS),
                    fault,
                })
                .collect();
            strikes.sort_by_key(|s| (s.after, s.delay_ms));
            Round {
                pushes,
                new_customers,
                actions,
                close_run: r % 3 == 2,
                strikes,
            }
        })
        .collect()
}

/// Each pushed line's latest cost once `pushes` are in, in order.
pub fn latest<'a>(
    pushes: impl IntoIterator<Item = &'a Push>,
    latest: &mut HashMap<LineId, Decimal>,
) {
    for push in pushes {
        for (id, cost) in &push.costs {
            latest.insert(*id, *cost);
        }
    }
}
