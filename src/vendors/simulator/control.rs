//! SIMULATOR service control: an in-memory vendor whose accounts can be suspended, resumed and
//! closed, with a configurable latency and a seeded, deterministic rate of transient faults (for
//! the demo, tests and the service-action benchmark).
//!
//! Whether a call faults is a pure function of (seed, operation, account, how many times that
//! operation was called for that account), so a run repeats exactly.
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{fnv, mix};
use crate::domain::service_control::{
    Change, ControlError, ControlReport, ControlTarget, EnrollmentDetails, EnrollmentOrder,
    EnrollmentProgress, ResourceChange,
};
use crate::domain::vendor::{Vendor, VendorAccountKind};
use crate::vendors::service_control::{ControlResult, ServiceControl, wrong_vendor};

#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorControlConfig {
    pub seed: u64,
    /// How long every call takes.
    pub latency: Duration,
    /// The share of calls, 0 to 1, that fail with a transient fault.
    pub failure_rate: f64,
    /// Polls an enrollment stays pending (0: enrolled at once).
    pub polls_before_enrolled: u32,
    /// Accounts whose every call fails permanently ("refused by the vendor").
    pub refused_accounts: BTreeSet<String>,
}

impl Default for SimulatorControlConfig {
    fn default() -> Self {
        SimulatorControlConfig {
            seed: 0,
            latency: Duration::ZERO,
            failure_rate: 0.0,
            polls_before_enrolled: 1,
            refused_accounts: BTreeSet::new(),
        }
    }
}

/// Where a simulated account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedAccount {
    Active,
    Suspended,
    Closed,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, SimulatedAccount>,
    /// Calls so far per (operation, account), for the fault draw.
    calls: HashMap<(Operation, String), u64>,
    /// Enrollment operation id by idempotency key, and polls so far per operation.
    orders: HashMap<String, String>,
    polls: HashMap<String, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Enroll,
    Poll,
    Suspend,
    Resume,
    Purge,
}

pub struct SimulatorControl {
    config: SimulatorControlConfig,
    state: Mutex<State>,
    calls: AtomicU64,
}

impl SimulatorControl {
    pub fn new(config: SimulatorControlConfig) -> Result<Self, ControlError> {
        if !(0.0..=1.0).contains(&config.failure_rate) {
            return Err(ControlError::permanent(format!(
                "failure_rate must be between 0 and 1, not {}",
                config.failure_rate
            )));
        }
        Ok(SimulatorControl {
            config,
            state: Mutex::new(State::default()),
            calls: AtomicU64::new(0),
        })
    }

    /// Every call received, faulted ones included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The account's state (one never touched is active).
    pub fn account(&self, account_id: &str) -> SimulatedAccount {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .accounts
            .get(account_id)
            .copied()
            .unwrap_or(SimulatedAccount::Active)
    }

    /// Waits the latency, counts the call and draws its fault; the state lock is not held
    /// while waiting, so concurrent calls overlap as they would at a vendor.
    async fn call(&self, operation: Operation, subject: &str) -> ControlResult<()> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.config.refused_accounts.contains(subject) {
            return Err(ControlError::permanent(format!(
                "the simulator refuses {operation:?} for {subject}"
            )));
        }
        let n = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let n = state
                .calls
                .entry((operation, subject.to_string()))
                .or_insert(0);
            *n += 1;
            *n
        };
        let draw = mix(self.config.seed ^ fnv(subject) ^ (operation as u64) << 48 ^ n);
        // The top 53 bits as a fraction in [0, 1).
        let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
        if unit < self.config.failure_rate {
            return Err(ControlError::transient(format!(
                "simulated fault on {operation:?} of {subject} (call {n})"
            )));
        }
        Ok(())
    }

    fn account_id(target: &ControlTarget) -> ControlResult<&str> {
        match target.kind {
            VendorAccountKind::SimulatorAccount => Ok(&target.account_id),
            _ => Err(wrong_vendor(Vendor::Simulator, target)),
        }
    }

    /// Moves an account to `to` unless it is closed (then `closed` says what to answer).
    fn set(
        &self,
        account_id: &str,
        to: SimulatedAccount,
        closed: Option<&str>,
    ) -> ControlResult<ControlReport> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let current = state
            .accounts
            .entry(account_id.to_string())
            .or_insert(SimulatedAccount::Active);
        let change = match (*current, closed) {
            (SimulatedAccount::Closed, Some(refusal)) => {
                return Err(ControlError::permanent(format!(
                    "{account_id} is closed; {refusal}"
                )));
            }
            (now, _) if now == to => Change::AlreadyInState,
            _ => {
                *current = to;
                Change::Applied
            }
        };
        Ok(ControlReport {
            resources: vec![ResourceChange::new(account_id, change)],
            deny_policy_id: None,
        })
    }

    fn progress(&self, operation_id: &str, polls: u32) -> EnrollmentProgress {
        if polls >= self.config.polls_before_enrolled {
            EnrollmentProgress::Enrolled {
                kind: VendorAccountKind::SimulatorAccount,
                account_id: operation_id.replace("op-", "sim-"),
            }
        } else {
            EnrollmentProgress::Pending {
                operation_id: operation_id.to_string(),
            }
        }
    }
}

#[async_trait::async_trait]
impl ServiceControl for SimulatorControl {
    fn vendor(&self) -> Vendor {
        Vendor::Simulator
    }

    async fn enroll(&self, order: &EnrollmentOrder) -> ControlResult<EnrollmentProgress> {
        let EnrollmentDetails::Simulator(details) = &order.details else {
            return Err(ControlError::permanent(format!(
                "a {} enrollment cannot go through a SIMULATOR partner account",
                order.details.vendor()
            )));
        };
        self.call(Operation::Enroll, &details.account_name).await?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let operation_id = state
            .orders
            .entry(order.idempotency_key.clone())
            .or_insert_with(|| format!("op-{:012x}", fnv(&order.idempotency_key) >> 16))
            .clone();
        let polls = *state.polls.entry(operation_id.clone()).or_insert(0);
        Ok(self.progress(&operation_id, polls))
    }

    async fn poll_enrollment(&self, operation_id: &str) -> ControlResult<EnrollmentProgress> {
        self.call(Operation::Poll, operation_id).await?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(polls) = state.polls.get_mut(operation_id) else {
            return Err(ControlError::permanent(format!(
                "no simulator enrollment {operation_id:?}"
            )));
        };
        *polls += 1;
        let polls = *polls;
        Ok(self.progress(operation_id, polls))
    }

    async fn suspend(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = Self::account_id(target)?;
        self.call(Operation::Suspend, account).await?;
        self.set(
            account,
            SimulatedAccount::Suspended,
            Some("nothing to suspend"),
        )
    }

    async fn resume(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = Self::account_id(target)?;
        self.call(Operation::Resume, account).await?;
        self.set(
            account,
            SimulatedAccount::Active,
            Some("a purged account cannot be resumed"),
        )
    }

    async fn purge(&self, target: &ControlTarget) -> ControlResult<ControlReport> {
        let account = Self::account_id(target)?;
        self.call(Operation::Purge, account).await?;
        self.set(account, SimulatedAccount::Closed, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::service_control::SimulatorEnrollment;

    fn target(id: &str) -> ControlTarget {
        ControlTarget::new(VendorAccountKind::SimulatorAccount, id)
    }

    fn control(configure: impl FnOnce(&mut SimulatorControlConfig)) -> SimulatorControl {
        let mut config = SimulatorControlConfig::default();
        configure(&mut config);
        SimulatorControl::new(config).unwrap()
    }

    fn changes(report: ControlReport) -> Vec<Change> {
        report.resources.into_iter().map(|r| r.change).collect()
    }

    #[tokio::test]
    async fn suspend_resume_purge_are_idempotent_and_purge_is_final() {
        let sim = control(|_| {});
        let a = target("sim-a");
        assert_eq!(changes(sim.suspend(&a).await.unwrap()), [Change::Applied]);
        assert_eq!(
            changes(sim.suspend(&a).await.unwrap()),
            [Change::AlreadyInState]
        );
        assert_eq!(sim.account("sim-a"), SimulatedAccount::Suspended);
        assert_eq!(changes(sim.resume(&a).await.unwrap()), [Change::Applied]);
        assert_eq!(changes(sim.purge(&a).await.unwrap()), [Change::Applied]);
        assert_eq!(
            changes(sim.purge(&a).await.unwrap()),
            [Change::AlreadyInState]
        );
        let refused = sim.resume(&a).await.unwrap_err();
        assert!(!refused.is_transient() && refused.reason().contains("cannot be resumed"));
        assert_eq!(sim.calls(), 6);
    }

    #[tokio::test]
    async fn faults_are_seeded_and_repeat_exactly() {
        let run = |seed| async move {
            let sim = control(|c| {
                c.seed = seed;
                c.failure_rate = 0.3;
            });
            let mut outcomes = Vec::new();
            for i in 0..200 {
                let t = target(&format!("sim-{}", i % 7));
                outcomes.push(sim.suspend(&t).await.is_ok());
            }
            outcomes
        };
        let first = run(42).await;
        assert_eq!(first, run(42).await);
        assert_ne!(first, run(43).await);
        let failures = first.iter().filter(|ok| !**ok).count();
        assert!((30..=90).contains(&failures), "{failures} of 200 failed");
    }

    #[tokio::test]
    async fn refused_accounts_fail_permanently_and_other_vendors_are_refused() {
        let sim = control(|c| {
            c.refused_accounts.insert("sim-bad".into());
        });
        let error = sim.suspend(&target("sim-bad")).await.unwrap_err();
        assert!(!error.is_transient());
        let aws = ControlTarget::new(VendorAccountKind::AwsAccount, "444455556666");
        assert!(!sim.suspend(&aws).await.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn enrollment_is_pending_then_enrolled_and_idempotent() {
        let sim = control(|c| c.polls_before_enrolled = 2);
        let order = EnrollmentOrder {
            idempotency_key: "sva_1".into(),
            details: EnrollmentDetails::Simulator(SimulatorEnrollment {
                account_name: "Acme".into(),
            }),
        };
        let EnrollmentProgress::Pending { operation_id } = sim.enroll(&order).await.unwrap() else {
            panic!("pending first");
        };
        assert_eq!(
            sim.enroll(&order).await.unwrap(),
            EnrollmentProgress::Pending {
                operation_id: operation_id.clone()
            },
            "a repeated order finds the first operation"
        );
        assert!(matches!(
            sim.poll_enrollment(&operation_id).await.unwrap(),
            EnrollmentProgress::Pending { .. }
        ));
        let EnrollmentProgress::Enrolled { kind, account_id } =
            sim.poll_enrollment(&operation_id).await.unwrap()
        else {
            panic!("enrolled after two polls");
        };
        assert_eq!(kind, VendorAccountKind::SimulatorAccount);
        assert!(kind.check_account_id(&account_id).is_ok(), "{account_id}");
        assert!(sim.poll_enrollment("op-unknown").await.is_err());
    }

    #[tokio::test]
    async fn calls_take_the_configured_latency_and_overlap() {
        let sim = control(|c| c.latency = Duration::from_millis(50));
        let start = std::time::Instant::now();
        let (a, b) = (target("sim-a"), target("sim-b"));
        let (first, second) = tokio::join!(sim.suspend(&a), sim.suspend(&b));
        assert!(first.is_ok() && second.is_ok());
        let elapsed = start.elapsed();
        assert!(
            (Duration::from_millis(50)..Duration::from_millis(95)).contains(&elapsed),
            "{elapsed:?}"
        );
    }
}
