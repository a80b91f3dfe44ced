//! When a partner account is polled next: its interval after a success; after failures an
//! exponential back-off, so an account that cannot succeed (spent request budget, refused
//! credentials) stops spending money and requests every interval; and never before a vendor's
//! `Retry-After`.
use std::time::Duration;

/// The longest back-off after failures, unless the poll interval itself is longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 60 * 60);
/// The longest pause a vendor's `Retry-After` can impose: a larger one is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The wait before the next poll, after a poll that left `consecutive_failures` failures in a
/// row (0: it succeeded) and, maybe, a vendor's `retry_after`.
///
/// interval × 2^failures, capped at [`MAX_BACKOFF`] (or the interval, if longer), and at least
/// the vendor's `Retry-After` (itself capped at [`MAX_RETRY_AFTER`]).
pub fn next_poll_delay(
    interval: Duration,
    consecutive_failures: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let factor = 1u32
        .checked_shl(consecutive_failures.min(31))
        .unwrap_or(u32::MAX);
    let backoff = interval.checked_mul(factor).unwrap_or(cap).min(cap);
    backoff.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn back_off_doubles_to_the_cap_and_resets() {
        let interval = 15 * MINUTE;
        let delays: Vec<u64> = (0..7)
            .map(|f| next_poll_delay(interval, f, None).as_secs() / 60)
            .collect();
        assert_eq!(delays, [15, 30, 60, 120, 240, 360, 360]);
        assert_eq!(next_poll_delay(interval, 0, None), interval);
        // A day-long interval is never shortened by the cap.
        let day = 24 * 60 * MINUTE;
        assert_eq!(next_poll_delay(day, 3, None), day);
    }

    #[test]
    fn retry_after_is_honoured_even_after_a_success() {
        let two_seconds = Duration::from_secs(2);
        let asked = Duration::from_secs(600);
        assert_eq!(next_poll_delay(two_seconds, 1, Some(asked)), asked);
        assert_eq!(
            next_poll_delay(two_seconds, 0, Some(Duration::from_secs(30 * 24 * 3600))),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            next_poll_delay(15 * MINUTE, 0, Some(Duration::from_secs(1))),
            15 * MINUTE
        );
    }

    proptest! {
        #[test]
        fn delays_grow_with_failures_within_their_bounds(
            interval_secs in 1u64..=86_400,
            failures in 0u32..100,
            retry_after_secs in proptest::option::of(0u64..10_000_000),
        ) {
            let interval = Duration::from_secs(interval_secs);
            let retry_after = retry_after_secs.map(Duration::from_secs);
            let delay = next_poll_delay(interval, failures, retry_after);
            prop_assert!(delay >= interval);
            prop_assert!(delay <= MAX_BACKOFF.max(interval).max(MAX_RETRY_AFTER));
            prop_assert!(delay >= retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
            prop_assert!(next_poll_delay(interval, failures + 1, retry_after) >= delay);
        }
    }
}
