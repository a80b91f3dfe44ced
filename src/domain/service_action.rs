//! Service actions: suspend, resume or purge a customer's cloud services, or enroll it with a
//! vendor. An action has one step per vendor account; each step runs, retries and ends on its
//! own, and the action's status summarises its steps.
//!
//! - [`transitions`]: which action a customer's status allows, what the status becomes, and
//!   which actions conflict;
//! - [`step`]: one step's life (attempts, retries with backoff, the vendor's last error);
//! - [`retry`]: the backoff rule for transient vendor faults;
//! - [`record`]: an action as recorded, with its audit trail (who asked and why);
//! - [`credit_policy`]: the actions AUTO_SUSPEND's credit events call for;
//! - [`closure_budget`]: AWS's rolling 30-day quota on closing member accounts.
use std::fmt;
use std::str::FromStr;

use super::error::FieldViolation;
use super::text;

pub mod closure_budget;
pub mod credit_policy;
pub mod record;
pub mod retry;
pub mod step;
pub mod transitions;

pub use closure_budget::ClosureBudget;
pub use record::{ActionFilter, NewServiceAction, Requester, ServiceAction};
pub use retry::RetryPolicy;
pub use step::ServiceStep;
pub use transitions::{OpenAction, ShownStatus};

pub const SERVICE_ACTION_ID_PREFIX: &str = "sva";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ActionKind {
    Suspend,
    Resume,
    Purge,
    Enroll,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Suspend => "SUSPEND",
            ActionKind::Resume => "RESUME",
            ActionKind::Purge => "PURGE",
            ActionKind::Enroll => "ENROLL",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "SUSPEND" => Ok(ActionKind::Suspend),
            "RESUME" => Ok(ActionKind::Resume),
            "PURGE" => Ok(ActionKind::Purge),
            "ENROLL" => Ok(ActionKind::Enroll),
            other => Err(format!("unknown service action kind {other:?}")),
        }
    }
}

/// The status of a step, and of an action (which summarises its steps, see [`summarise`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ActionStatus {
    /// Not started, or waiting for its next attempt after a transient fault.
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// Steps share the action's statuses.
pub type StepStatus = ActionStatus;

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "PENDING",
            ActionStatus::Running => "RUNNING",
            ActionStatus::Succeeded => "SUCCEEDED",
            ActionStatus::Failed => "FAILED",
        }
    }

    /// Succeeded or failed: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, ActionStatus::Succeeded | ActionStatus::Failed)
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PENDING" => Ok(ActionStatus::Pending),
            "RUNNING" => Ok(ActionStatus::Running),
            "SUCCEEDED" => Ok(ActionStatus::Succeeded),
            "FAILED" => Ok(ActionStatus::Failed),
            other => Err(format!("unknown service action status {other:?}")),
        }
    }
}

/// An action's status from its steps' statuses:
/// - SUCCEEDED when every step succeeded (an action without steps has nothing left to do);
/// - FAILED when every step has ended and at least one failed;
/// - PENDING when no step has started;
/// - RUNNING otherwise (some step running, or some ended while others wait).
pub fn summarise(steps: impl IntoIterator<Item = StepStatus>) -> ActionStatus {
    let (mut pending, mut running, mut failed, mut total) = (0usize, 0usize, 0usize, 0usize);
    for status in steps {
        total += 1;
        match status {
            ActionStatus::Pending => pending += 1,
            ActionStatus::Running => running += 1,
            ActionStatus::Failed => failed += 1,
            ActionStatus::Succeeded => {}
        }
    }
    if running == 0 && pending == 0 {
        if failed == 0 {
            ActionStatus::Succeeded
        } else {
            ActionStatus::Failed
        }
    } else if running == 0 && pending == total {
        ActionStatus::Pending
    } else {
        ActionStatus::Running
    }
}

/// The longest reason an action keeps (characters).
pub const REASON_MAX: usize = 1_000;

/// Why an action was asked for: required (it is the audit trail), at most [`REASON_MAX`]
/// characters, no control characters.
pub fn parse_reason(field: &str, value: &str) -> Result<String, FieldViolation> {
    text::display_name(field, value, REASON_MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use ActionStatus::*;

    #[test]
    fn names_round_trip() {
        for kind in [
            ActionKind::Suspend,
            ActionKind::Resume,
            ActionKind::Purge,
            ActionKind::Enroll,
        ] {
            assert_eq!(kind.as_str().parse::<ActionKind>(), Ok(kind));
        }
        for status in [Pending, Running, Succeeded, Failed] {
            assert_eq!(status.as_str().parse::<ActionStatus>(), Ok(status));
        }
        assert!("suspend".parse::<ActionKind>().is_err());
    }

    #[test]
    fn summaries_of_typical_actions() {
        assert_eq!(summarise([]), Succeeded);
        assert_eq!(summarise([Pending, Pending]), Pending);
        assert_eq!(summarise([Running, Pending]), Running);
        assert_eq!(summarise([Succeeded, Pending]), Running);
        assert_eq!(summarise([Failed, Pending]), Running);
        assert_eq!(summarise([Succeeded, Succeeded]), Succeeded);
        assert_eq!(summarise([Succeeded, Failed, Succeeded]), Failed);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert_eq!(
            parse_reason("reason", "  over the credit limit "),
            Ok("over the credit limit".to_string())
        );
        assert!(parse_reason("reason", "").is_err());
        let long = parse_reason("reason", &"x".repeat(10 * 1024)).unwrap_err();
        assert_eq!(long.field, "reason");
        assert!(long.description.contains("1000"), "{}", long.description);
        assert!(parse_reason("reason", "a\u{0}b").is_err());
    }

    fn status() -> impl Strategy<Value = ActionStatus> {
        prop_oneof![Just(Pending), Just(Running), Just(Succeeded), Just(Failed)]
    }

    proptest! {
        #[test]
        fn the_summary_is_terminal_exactly_when_every_step_is(
            steps in proptest::collection::vec(status(), 0..12)
        ) {
            let summary = summarise(steps.iter().copied());
            prop_assert_eq!(summary.is_terminal(), steps.iter().all(|s| s.is_terminal()));
            prop_assert_eq!(summary == Succeeded, steps.iter().all(|s| *s == Succeeded));
            prop_assert_eq!(
                summary == Failed,
                steps.iter().all(|s| s.is_terminal()) && steps.contains(&Failed)
            );
            prop_assert_eq!(
                summary == Pending,
                !steps.is_empty() && steps.iter().all(|s| *s == Pending)
            );
            // Order of steps does not matter.
            let mut reversed = steps.clone();
            reversed.reverse();
            prop_assert_eq!(summarise(reversed), summary);
        }
    }
}
