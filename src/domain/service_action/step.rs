//! One step of a service action: one vendor account, its attempts, and the vendor's last error.
//!
//! PENDING → RUNNING (an attempt starts) → SUCCEEDED, or FAILED on a permanent fault or when the
//! attempts are spent, or back to PENDING with a due time on a transient fault.
use chrono::{DateTime, Utc};

use super::retry::RetryPolicy;
use super::{ActionStatus, StepStatus};
use crate::domain::service_control::{ControlError, ControlTarget, EnrollmentOrder};
use crate::domain::vendor::VendorAccountKind;

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStep {
    pub partner_account_id: String,
    pub target: ControlTarget,
    pub status: StepStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The vendor's reason for the last failed attempt (kept after a later success, for the
    /// audit trail).
    pub last_error: Option<String>,
    /// When a PENDING step may next be attempted (None: at once).
    pub not_before: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// ENROLL only: the account to create. The target's `account_id` is empty until the vendor
    /// has created it, then the new account's id.
    pub enrollment: Option<EnrollmentOrder>,
    /// ENROLL only: the vendor's operation creating the account (AWS's CreateAccount request
    /// id), polled until it ends; kept so a restart polls instead of ordering again.
    pub operation_id: Option<String>,
}

impl ServiceStep {
    pub fn new(partner_account_id: impl Into<String>, target: ControlTarget) -> Self {
        ServiceStep {
            partner_account_id: partner_account_id.into(),
            target,
            status: ActionStatus::Pending,
            attempts: 0,
            last_error: None,
            not_before: None,
            started_at: None,
            finished_at: None,
            enrollment: None,
            operation_id: None,
        }
    }

    /// A step creating the account `order` describes, of kind `target_kind`.
    pub fn enroll(
        partner_account_id: impl Into<String>,
        target_kind: VendorAccountKind,
        order: EnrollmentOrder,
    ) -> Self {
        let mut step = ServiceStep::new(partner_account_id, ControlTarget::new(target_kind, ""));
        step.enrollment = Some(order);
        step
    }

    /// The running attempt found the vendor still working on `operation_id`: look again at
    /// `due`. A poll is not a failed attempt, so it does not count against the retries.
    pub fn wait(&mut self, operation_id: String, due: DateTime<Utc>) {
        self.status = ActionStatus::Pending;
        self.operation_id = Some(operation_id);
        self.not_before = Some(due);
        self.attempts = self.attempts.saturating_sub(1);
    }

    /// PENDING and its wait, if any, is over.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == ActionStatus::Pending && self.not_before.is_none_or(|t| t <= now)
    }

    /// An attempt starts. Only a due step starts; anything else is left as it is and false
    /// returned (a second worker that lost the race, or a finished step).
    pub fn start(&mut self, now: DateTime<Utc>) -> bool {
        if !self.is_due(now) {
            return false;
        }
        self.status = ActionStatus::Running;
        self.attempts += 1;
        self.not_before = None;
        self.started_at.get_or_insert(now);
        true
    }

    pub fn succeed(&mut self, now: DateTime<Utc>) {
        self.status = ActionStatus::Succeeded;
        self.finished_at = Some(now);
    }

    /// The running attempt failed: retry later (PENDING with a due time) while the fault is
    /// transient and attempts remain, else FAILED. `jitter` in `[0, 1]`, see
    /// [`RetryPolicy::next_attempt`].
    pub fn fail(
        &mut self,
        error: &ControlError,
        now: DateTime<Utc>,
        policy: &RetryPolicy,
        jitter: f64,
    ) {
        self.last_error = Some(error.reason().to_string());
        match policy.next_attempt(self.attempts, error, jitter) {
            Some(wait) => {
                self.status = ActionStatus::Pending;
                // A vendor's absurd Retry-After must not overflow the clock.
                let due = chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|wait| now.checked_add_signed(wait))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                self.not_before = Some(due);
            }
            None => {
                self.status = ActionStatus::Failed;
                self.finished_at = Some(now);
                if error.is_transient() {
                    self.last_error = Some(format!(
                        "{} (gave up after {} attempts)",
                        error.reason(),
                        self.attempts
                    ));
                }
            }
        }
    }

    /// A step found RUNNING after a restart: its attempt's outcome is unknown. Vendor calls are
    /// idempotent, so it is simply attempted again (the attempt counts).
    pub fn recover(&mut self) {
        if self.status == ActionStatus::Running {
            self.status = ActionStatus::Pending;
            self.not_before = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::vendor::VendorAccountKind;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn step() -> ServiceStep {
        ServiceStep::new(
            "pa_1",
            ControlTarget::new(VendorAccountKind::AwsAccount, "444455556666"),
        )
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_transient_fault_waits_then_retries_until_the_attempts_are_spent() {
        let mut s = step();
        assert!(s.start(t(0)));
        assert!(!s.start(t(0)), "a running step does not start twice");
        s.fail(&ControlError::transient("HTTP 503"), t(1), &policy(), 1.0);
        assert_eq!(
            (s.status, s.not_before),
            (ActionStatus::Pending, Some(t(11)))
        );
        assert!(!s.is_due(t(10)) && s.is_due(t(11)));
        assert!(s.start(t(11)));
        s.fail(&ControlError::transient("HTTP 503"), t(12), &policy(), 1.0);
        assert_eq!(s.not_before, Some(t(32)));
        assert!(s.start(t(40)));
        s.fail(&ControlError::transient("HTTP 503"), t(41), &policy(), 1.0);
        assert_eq!((s.status, s.attempts), (ActionStatus::Failed, 3));
        assert_eq!(
            s.last_error.as_deref(),
            Some("HTTP 503 (gave up after 3 attempts)")
        );
        assert_eq!((s.started_at, s.finished_at), (Some(t(0)), Some(t(41))));
    }

    #[test]
    fn a_permanent_fault_fails_at_once_with_the_vendors_reason() {
        let mut s = step();
        s.start(t(0));
        s.fail(
            &ControlError::permanent("the management account cannot be suspended"),
            t(1),
            &policy(),
            0.5,
        );
        assert_eq!(s.status, ActionStatus::Failed);
        assert_eq!(
            s.last_error.as_deref(),
            Some("the management account cannot be suspended")
        );
        assert!(!s.start(t(100)), "a failed step never starts again");
    }

    #[test]
    fn an_absurd_retry_after_does_not_overflow() {
        let mut s = step();
        s.start(t(0));
        let throttled = ControlError::Transient {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(u64::MAX)),
        };
        s.fail(&throttled, t(1), &policy(), 0.5);
        assert_eq!(s.status, ActionStatus::Pending);
        assert_eq!(s.not_before, Some(DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn a_step_running_at_a_crash_is_attempted_again() {
        let mut s = step();
        s.start(t(0));
        s.recover();
        assert!(s.is_due(t(0)));
        assert!(s.start(t(5)));
        s.succeed(t(6));
        assert_eq!((s.status, s.attempts), (ActionStatus::Succeeded, 2));
        s.recover();
        assert_eq!(
            s.status,
            ActionStatus::Succeeded,
            "recover leaves ended steps"
        );
    }

    proptest! {
        /// Whatever the vendor answers, a step makes at most `max_attempts` attempts and ends
        /// FAILED or SUCCEEDED once they are spent.
        #[test]
        fn attempts_are_bounded(
            outcomes in proptest::collection::vec(0u8..3, 1..30),
            max_attempts in 1u32..6,
        ) {
            let policy = RetryPolicy { max_attempts, ..policy() };
            let mut s = step();
            let mut now = t(0);
            for outcome in outcomes {
                now += chrono::Duration::hours(1);
                if !s.start(now) {
                    break;
                }
                match outcome {
                    0 => s.succeed(now),
                    1 => s.fail(&ControlError::transient("busy"), now, &policy, 0.5),
                    _ => s.fail(&ControlError::permanent("no"), now, &policy, 0.5),
                }
                prop_assert!(s.attempts <= max_attempts);
                if s.attempts == max_attempts {
                    prop_assert!(s.status.is_terminal());
                }
            }
        }
    }
}
