//! Retrying transient vendor faults: capped exponential backoff, with the jitter supplied by the
//! caller so the rule stays a pure function.
use std::time::Duration;

use crate::domain::service_control::ControlError;

/// How often and how patiently a transient vendor fault is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; each further retry doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Eight attempts over about eight minutes: 5 s, 10 s, 20 s, … capped at 2 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the wait before retry `retry` (0 = the first retry):
    /// `min(max_delay, base_delay × 2^retry)`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_delay)
    }

    /// The wait before the next attempt after `attempts_made` attempts ended in `error`, or None
    /// when the fault is permanent or the attempts are spent. `jitter` in `[0, 1]` picks a wait
    /// between half the ceiling and all of it, so callers failing together spread out; the
    /// vendor's Retry-After, when longer, wins.
    pub fn next_attempt(
        &self,
        attempts_made: u32,
        error: &ControlError,
        jitter: f64,
    ) -> Option<Duration> {
        let ControlError::Transient { retry_after, .. } = error else {
            return None;
        };
        if attempts_made >= self.max_attempts {
            return None;
        }
        let ceiling = self.delay(attempts_made.saturating_sub(1));
        let jittered = ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        Some(retry_after.map_or(jittered, |hint| hint.max(jittered)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let p = policy();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(
            (0..6).map(|r| ms(p.delay(r))).collect::<Vec<_>>(),
            [100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn permanent_faults_and_spent_attempts_stop_retries() {
        let p = policy();
        let transient = ControlError::transient("HTTP 503");
        assert_eq!(
            p.next_attempt(1, &transient, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.next_attempt(3, &transient, 0.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(p.next_attempt(5, &transient, 1.0), None);
        assert_eq!(
            p.next_attempt(1, &ControlError::permanent("refused"), 1.0),
            None
        );
    }

    #[test]
    fn a_longer_retry_after_wins() {
        let throttled = ControlError::Transient {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            policy().next_attempt(1, &throttled, 1.0),
            Some(Duration::from_secs(7))
        );
        let short = ControlError::Transient {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_millis(1)),
        };
        assert_eq!(
            policy().next_attempt(1, &short, 1.0),
            Some(Duration::from_millis(100))
        );
    }

    proptest! {
        #[test]
        fn waits_stay_between_half_the_ceiling_and_the_cap(
            base_ms in 1u64..10_000,
            cap_ms in 1u64..600_000,
            attempts in 1u32..40,
            jitter in 0.0f64..=1.0,
        ) {
            let p = RetryPolicy {
                max_attempts: 100,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(cap_ms),
            };
            let wait = p.next_attempt(attempts, &ControlError::transient("x"), jitter).unwrap();
            let ceiling = p.delay(attempts - 1);
            prop_assert!(wait <= ceiling && wait <= p.max_delay);
            prop_assert!(wait >= ceiling / 2 - Duration::from_nanos(1));
            // Ceilings never shrink as attempts go on.
            prop_assert!(p.delay(attempts) >= p.delay(attempts - 1));
        }
    }
}
