//! AWS's quota on closing member accounts: an organization may close 10 % of its member
//! accounts, at least 10 and at most 1,000, in any rolling 30 days. The gateway keeps the count
//! itself and refuses a purge that would exceed it before calling AWS, so a purge never closes
//! some of a customer's accounts and then hits the quota.
use chrono::{DateTime, Duration, Utc};

use crate::domain::error::{Error, Result};

/// The rolling window of the quota.
pub const WINDOW: Duration = Duration::days(30);
const MIN_CLOSURES: u32 = 10;
const MAX_CLOSURES: u32 = 1_000;

/// The quota of one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosureBudget {
    pub member_accounts: u32,
    /// Closures allowed in any 30 days.
    pub limit: u32,
}

impl ClosureBudget {
    /// 10 % of the member accounts (rounded down, so the gateway never counts on a closure AWS
    /// might refuse), at least 10, at most 1,000.
    pub fn for_members(member_accounts: u32) -> Self {
        ClosureBudget {
            member_accounts,
            limit: (member_accounts / 10).clamp(MIN_CLOSURES, MAX_CLOSURES),
        }
    }

    /// Closures that still count at `now`: those in the last 30 days.
    pub fn used(&self, closures: &[DateTime<Utc>], now: DateTime<Utc>) -> u32 {
        let counted = closures.iter().filter(|&&t| counts(t, now)).count();
        u32::try_from(counted).unwrap_or(u32::MAX)
    }

    pub fn remaining(&self, closures: &[DateTime<Utc>], now: DateTime<Utc>) -> u32 {
        self.limit.saturating_sub(self.used(closures, now))
    }

    /// When the earliest closure still counted leaves the window (None if none counts).
    pub fn next_release(
        &self,
        closures: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        closures
            .iter()
            .filter(|&&t| counts(t, now))
            .min()
            .map(|&t| t + WINDOW)
    }

    /// Whether `wanted` more closures fit now; the refusal names the budget and when room frees up.
    pub fn check(&self, closures: &[DateTime<Utc>], now: DateTime<Utc>, wanted: u32) -> Result<()> {
        let remaining = self.remaining(closures, now);
        if wanted <= remaining {
            return Ok(());
        }
        let release = self
            .next_release(closures, now)
            .map(|t| {
                format!(
                    "; the earliest counted closure leaves the window at {}",
                    t.to_rfc3339()
                )
            })
            .unwrap_or_default();
        Err(Error::precondition(
            "AWS account closure budget",
            format!(
                "AWS lets this organization close {} member accounts in any 30 days (10 % of its \
                 {} member accounts, at least {MIN_CLOSURES}, at most {MAX_CLOSURES}); {} were \
                 closed in the last 30 days, so {remaining} more can be closed now and this purge \
                 needs {wanted}{release}",
                self.limit,
                self.member_accounts,
                self.used(closures, now),
            ),
        ))
    }
}

/// A closure at `at` counts at `now` for 30 days; a closure recorded in the future (clock skew
/// between replicas) counts too.
fn counts(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < at + WINDOW
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(d)
    }

    #[test]
    fn ten_percent_with_a_floor_and_a_ceiling() {
        let limit = |members| ClosureBudget::for_members(members).limit;
        assert_eq!(limit(0), 10);
        assert_eq!(limit(50), 10);
        assert_eq!(limit(109), 10);
        assert_eq!(limit(155), 15);
        assert_eq!(limit(10_000), 1_000);
        assert_eq!(limit(u32::MAX), 1_000);
    }

    #[test]
    fn the_eleventh_closure_of_fifty_members_is_refused_naming_the_budget() {
        let budget = ClosureBudget::for_members(50);
        let closures: Vec<_> = (0..10).map(day).collect();
        assert_eq!(budget.remaining(&closures, day(10)), 0);
        let Err(Error::FailedPrecondition {
            subject,
            description,
        }) = budget.check(&closures, day(10), 1)
        else {
            panic!("the 11th closure must be refused");
        };
        assert_eq!(subject, "AWS account closure budget");
        assert!(
            description.contains("close 10 member accounts in any 30 days")
                && description.contains("50 member accounts")
                && description.contains(&day(30).to_rfc3339()),
            "{description}"
        );
        // 30 days after the first closure, one slot is free again.
        assert!(budget.check(&closures, day(30), 1).is_ok());
        assert!(budget.check(&closures, day(30), 2).is_err());
    }

    #[test]
    fn a_purge_of_several_accounts_needs_room_for_all() {
        let budget = ClosureBudget::for_members(20);
        let closures: Vec<_> = (0..8).map(day).collect();
        assert!(budget.check(&closures, day(9), 2).is_ok());
        assert!(budget.check(&closures, day(9), 3).is_err());
    }

    proptest! {
        /// Closures admitted one purge at a time through `check`, at random times: no 30-day
        /// window ever holds more than the limit.
        #[test]
        fn no_window_ever_exceeds_the_limit(
            members in 0u32..300,
            requests in proptest::collection::vec((0i64..(90 * 24), 1u32..4), 1..200),
        ) {
            let budget = ClosureBudget::for_members(members);
            let mut hours: Vec<i64> = requests.iter().map(|r| r.0).collect();
            hours.sort_unstable();
            let mut closures: Vec<DateTime<Utc>> = Vec::new();
            for (hour, (_, wanted)) in hours.iter().zip(&requests) {
                let now = day(0) + Duration::hours(*hour);
                if budget.check(&closures, now, *wanted).is_ok() {
                    closures.extend(std::iter::repeat_n(now, *wanted as usize));
                }
            }
            for start in &closures {
                let in_window = closures.iter().filter(|&&t| t >= *start && t < *start + WINDOW).count();
                prop_assert!(in_window as u32 <= budget.limit);
            }
        }
    }
}
