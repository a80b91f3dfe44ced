//! SIMULATOR: a seeded, deterministic synthetic vendor for demos, tests and benchmarks.
//!
//! Each simulator account uses a handful of services every hour. The figures for an hour are a
//! pure function of (seed, account, meter, hour), so any pull can be reproduced. Like real
//! vendors it first reports an estimate, then revises it: an hour younger than
//! [`Simulator::SETTLE`] is estimated (and differs from the final figure), an older one is final;
//! a few estimates turn out to be spurious and vanish from later pulls.
pub mod control;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rust_decimal::Decimal;

use super::{Pull, PullOutcome, PullRequest, Pulled, RequestCount, UsageSource};
use crate::domain::usage::{UsageKey, UsageLine};
use crate::domain::vendor::Vendor;

/// (service, meter, meter name, unit, unit price in USD with 6 decimals, typical hourly quantity
/// in thousandths)
const METERS: &[(&str, &str, &str, &str, i64, u64)] = &[
    (
        "Compute",
        "vm.small",
        "General purpose VM, small",
        "Hrs",
        11_600,
        2_000,
    ),
    (
        "Compute",
        "vm.large",
        "General purpose VM, large",
        "Hrs",
        92_800,
        1_000,
    ),
    (
        "Storage",
        "object.gb-hours",
        "Object storage",
        "GB-Hrs",
        32,
        500_000,
    ),
    (
        "Network",
        "egress.gb",
        "Data transfer out",
        "GB",
        90_000,
        3_000,
    ),
    (
        "Database",
        "db.medium",
        "Managed database, medium",
        "Hrs",
        170_000,
        1_000,
    ),
];

const REGIONS: &[&str] = &["af-south-1", "eu-west-1", "us-east-1"];

#[derive(Debug, Clone)]
pub struct Simulator {
    seed: u64,
    accounts: Vec<String>,
    /// The simulated "now"; `None` means the wall clock.
    as_of: Option<DateTime<Utc>>,
}

impl Simulator {
    /// How long an hour's figures stay estimates.
    pub const SETTLE: Duration = Duration::hours(6);
    /// How far back each pull restates.
    pub const RESTATE: Duration = Duration::hours(48);

    pub fn new(seed: u64, accounts: Vec<String>) -> Self {
        Simulator {
            seed,
            accounts,
            as_of: None,
        }
    }

    /// Freezes the simulated clock (tests and benchmarks).
    pub fn at(mut self, as_of: DateTime<Utc>) -> Self {
        self.as_of = Some(as_of);
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.as_of.unwrap_or_else(Utc::now)
    }

    /// The window a poll should restate: the last two days, to the current hour.
    pub fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let end = self
            .now()
            .duration_trunc(Duration::hours(1))
            .unwrap_or_else(|_| self.now());
        (end - Self::RESTATE, end)
    }

    /// Every line with a window starting in `[start, end)` as reported at the simulated now.
    pub fn lines(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<UsageLine> {
        let now = self.now();
        let first = start.duration_trunc(Duration::hours(1)).unwrap_or(start);
        let first = if first < start {
            first + Duration::hours(1)
        } else {
            first
        };
        let mut lines = Vec::new();
        let mut hour = first;
        while hour < end && hour + Duration::hours(1) <= now {
            let estimated = now - (hour + Duration::hours(1)) < Self::SETTLE;
            for account in &self.accounts {
                for (i, meter) in METERS.iter().enumerate() {
                    if let Some(line) = self.line(account, i, meter, hour, estimated) {
                        lines.push(line);
                    }
                }
            }
            hour += Duration::hours(1);
        }
        lines
    }

    fn line(
        &self,
        account: &str,
        meter_index: usize,
        &(service, meter, meter_name, unit, unit_price_micros, typical): &(
            &str,
            &str,
            &str,
            &str,
            i64,
            u64,
        ),
        hour: DateTime<Utc>,
        estimated: bool,
    ) -> Option<UsageLine> {
        let h =
            mix(self.seed ^ fnv(account) ^ (meter_index as u64) << 56 ^ hour.timestamp() as u64);
        // Some meters are idle in some hours.
        if h.is_multiple_of(7) {
            return None;
        }
        // One estimate in 25 is spurious: it disappears once the hour settles.
        let spurious = mix(h ^ 0x5eed).is_multiple_of(25);
        if spurious && !estimated {
            return None;
        }
        // Final quantity: 50 % to 150 % of typical, in thousandths; estimates are 80 % to 100 % of it.
        let mut thousandths = typical / 2 + (h >> 8) % typical.max(1);
        if estimated {
            thousandths = thousandths * (80 + (h >> 40) % 21) / 100;
        }
        let quantity = Decimal::new(thousandths as i64, 3);
        let cost = quantity * Decimal::new(unit_price_micros, 6);
        let region = REGIONS[(fnv(account) % REGIONS.len() as u64) as usize];
        Some(UsageLine {
            key: UsageKey {
                vendor_account_id: account.to_string(),
                service: service.to_string(),
                meter: meter.to_string(),
                region: region.to_string(),
                window_start: hour,
            },
            window_end: hour + Duration::hours(1),
            meter_name: meter_name.to_string(),
            quantity,
            unit: unit.to_string(),
            cost,
            list_cost: None,
            currency: "USD".to_string(),
            estimated,
            vendor_tenant_id: None,
        })
    }
}

/// splitmix64's finaliser: a cheap, well-spread hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a string, to fold account ids into the seed.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[async_trait::async_trait]
impl UsageSource for Simulator {
    fn vendor(&self) -> Vendor {
        Vendor::Simulator
    }

    async fn pull(&self, request: &PullRequest) -> Pulled {
        let lines = self.lines(request.start, request.end);
        Pulled {
            outcome: Ok(PullOutcome::Data(Pull {
                start: request.start,
                end: request.end,
                lines,
                version: None,
            })),
            requests: RequestCount(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::hours(i64::from(h))
    }

    #[test]
    fn deterministic_and_revised_as_hours_settle() {
        let accounts = vec!["sim-a".to_string(), "sim-b".to_string()];
        let early = Simulator::new(7, accounts.clone()).at(at(10));
        let again = Simulator::new(7, accounts.clone()).at(at(10));
        let late = Simulator::new(7, accounts).at(at(30));
        let window = (at(0), at(10));
        assert_eq!(
            early.lines(window.0, window.1),
            again.lines(window.0, window.1)
        );
        let first = early.lines(window.0, window.1);
        let settled = late.lines(window.0, window.1);
        assert!(!first.is_empty());
        assert!(
            first.iter().any(|l| l.estimated),
            "recent hours are estimates"
        );
        assert!(settled.iter().all(|l| !l.estimated), "old hours are final");
        assert_ne!(first, settled, "estimates are revised");
        assert!(
            first
                .iter()
                .all(|l| l.cost == l.quantity * cost_per_unit(l))
        );
    }

    fn cost_per_unit(line: &UsageLine) -> Decimal {
        let meter = METERS.iter().find(|m| m.1 == line.key.meter).unwrap();
        Decimal::new(meter.4, 6)
    }

    #[test]
    fn nothing_from_the_future() {
        let sim = Simulator::new(1, vec!["sim-a".into()]).at(at(5));
        assert!(sim.lines(at(5), at(9)).is_empty());
        assert!(
            sim.lines(at(0), at(9))
                .iter()
                .all(|l| l.window_end <= at(5))
        );
    }
}
