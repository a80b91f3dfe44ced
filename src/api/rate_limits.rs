//! Per-key request rate limits (`rate_limit_per_key_per_sec`, `rate_limit_burst`), checked by the
//! auth layer once the key is known, so that one BSS client calling in a loop cannot take the
//! gateway's cores and database connections from every other client. Each API key gets its own
//! budget; a call over it answers RESOURCE_EXHAUSTED with a RetryInfo saying when the next one
//! will be admitted. A call counts once however long it runs (a stream or an upload is one call).
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one instant per
//! key): a key's "theoretical arrival time" advances by one emission interval per admitted call
//! and may run at most `burst` intervals ahead of now. No timer, no refill task, 16 bytes a key.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::error::Error;

/// A key's budget: `per_second` calls a second sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The limit a configuration describes; `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then_some(RateLimit {
            per_second,
            burst: burst.max(1),
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second
    }
}

/// Keys tracked before idle ones (whose budget is full again) are dropped: far more keys than a
/// gateway serves at once, so pruning is rare and never forgets a key that is being limited.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimits {
    limit: RateLimit,
    arrivals: Mutex<HashMap<String, Instant>>,
}

impl RateLimits {
    pub fn new(limit: RateLimit) -> Self {
        RateLimits {
            limit,
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one call of `key_id` now, or says how long until one would be admitted.
    pub fn admit(&self, key_id: &str) -> Result<(), Error> {
        let now = Instant::now();
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() > PRUNE_ABOVE {
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let previous = arrivals.get(key_id).copied();
        match gcra(previous, now, self.limit) {
            Ok(next) => {
                arrivals.insert(key_id.to_string(), next);
                Ok(())
            }
            Err(wait) => Err(Error::ResourceExhausted {
                limit: "rate_limit_per_key_per_sec",
                description: format!(
                    "this API key may make {} calls a second (bursts of {}); retry in {} ms",
                    self.limit.per_second,
                    self.limit.burst,
                    wait.as_millis().max(1)
                ),
                retry_after: wait,
            }),
        }
    }
}

/// One GCRA step: the key's next theoretical arrival time if a call at `now` is admitted, or the
/// wait until it would be. `arrival` is the key's theoretical arrival time (`None`: never seen).
fn gcra(arrival: Option<Instant>, now: Instant, limit: RateLimit) -> Result<Instant, Duration> {
    let interval = limit.interval();
    let start = arrival.map_or(now, |arrival| arrival.max(now));
    let next = start + interval;
    let allowance = interval * limit.burst;
    let ahead = next - now;
    if ahead > allowance {
        Err(ahead - allowance)
    } else {
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit::new(per_second, burst).unwrap()
    }

    /// Admits calls at `offsets` (ms from a start) and returns which were admitted.
    fn run(limit: RateLimit, offsets_ms: &[u64]) -> Vec<bool> {
        let start = Instant::now();
        let mut arrival = None;
        offsets_ms
            .iter()
            .map(
                |ms| match gcra(arrival, start + Duration::from_millis(*ms), limit) {
                    Ok(next) => {
                        arrival = Some(next);
                        true
                    }
                    Err(_) => false,
                },
            )
            .collect()
    }

    #[test]
    fn a_burst_is_admitted_and_the_next_call_waits_one_interval() {
        let limit = limit(10, 3);
        assert_eq!(run(limit, &[0, 0, 0, 0]), [true, true, true, false]);
        let start = Instant::now();
        let mut arrival = None;
        for _ in 0..3 {
            arrival = Some(gcra(arrival, start, limit).unwrap());
        }
        assert_eq!(
            gcra(arrival, start, limit),
            Err(Duration::from_millis(100)),
            "the fourth call at once waits exactly one interval"
        );
        assert!(gcra(arrival, start + Duration::from_millis(100), limit).is_ok());
        assert!(gcra(arrival, start + Duration::from_millis(99), limit).is_err());
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_always_admitted() {
        let offsets: Vec<u64> = (0..100).map(|i| i * 100).collect();
        assert!(
            run(limit(10, 1), &offsets)
                .into_iter()
                .all(|admitted| admitted)
        );
    }

    #[test]
    fn a_steady_rate_above_the_limit_is_held_to_it() {
        // 1,000 calls, one a millisecond, against 100 a second with bursts of 10: in one second
        // the budget admits the burst plus one per 10 ms.
        let offsets: Vec<u64> = (0..1000).collect();
        let admitted = run(limit(100, 10), &offsets)
            .into_iter()
            .filter(|a| *a)
            .count();
        assert_eq!(admitted, 10 + 99);
    }

    #[test]
    fn idle_time_refills_the_budget_but_never_beyond_the_burst() {
        assert_eq!(
            run(limit(10, 2), &[0, 0, 0, 10_000, 10_000, 10_000]),
            [true, true, false, true, true, false]
        );
    }

    #[test]
    fn keys_have_budgets_of_their_own() {
        let limits = RateLimits::new(limit(1, 2));
        assert!(limits.admit("key_a").is_ok());
        assert!(limits.admit("key_a").is_ok());
        let refused = limits.admit("key_a").unwrap_err();
        assert!(matches!(
            refused,
            Error::ResourceExhausted { limit: "rate_limit_per_key_per_sec", retry_after, .. }
                if retry_after > Duration::from_millis(900) && retry_after <= Duration::from_secs(1)
        ));
        assert!(limits.admit("key_b").is_ok(), "another key is not limited");
    }

    #[test]
    fn zero_per_second_means_no_limit_and_zero_burst_means_one() {
        assert_eq!(RateLimit::new(0, 10), None);
        assert_eq!(limit(5, 0).burst, 1);
    }
}
