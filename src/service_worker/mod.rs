//! The service-action worker: carries out the suspend, resume and purge actions the API and
//! credit policy record, one step per vendor account, and the enroll actions CreateCustomer
//! records, one step per vendor account to create (ordered, then polled while the vendor
//! works; the new account is linked to the customer in the commit that ends the step).
//!
//! - Each action is held through a lease on its row (`service_actions.lease_owner`), renewed
//!   while it runs, so with several replicas on one PostgreSQL one runs it; when that replica
//!   dies the lease expires and another takes the action over.
//! - A step found RUNNING by a new holder (its replica died between the vendor call and the
//!   commit) is attempted again: every adapter call is idempotent at the vendor, so the repeat
//!   answers "already in state" instead of changing the outcome.
//! - Transient vendor faults are retried with backoff (`RetryPolicy`), the wait kept in the
//!   step (`not_before`), so a restart honours it.
//! - Vendor calls through one partner account run at most `per_partner_concurrency` at a time:
//!   the vendors throttle per partner (AWS Organizations' write calls allow a few per second;
//!   Partner Center limits each partner tenant), and a bulk credit run must not trip that.
//! - An action's due steps go in rounds: their vendor slots taken (partner accounts in id
//!   order, so two actions never wait on each other's), one commit marks them RUNNING, the calls
//!   run side by side, one commit records their outcomes. Every service-action commit takes
//!   the tenant's change sequence and holds it until it is durable, so on PostgreSQL these
//!   commits run one after another (~2 ms each, fsync included): a commit per step change cost
//!   6 a suspend of three accounts; in rounds it costs 2.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{Semaphore, watch};

use crate::domain::error::Result;
use crate::domain::partner_account::PartnerAccount;
use crate::domain::service_action::{
    ActionKind, ActionStatus, ClosureBudget, RetryPolicy, ServiceAction, ServiceStep,
    closure_budget,
};
use crate::domain::service_control::{ControlError, ControlReport, EnrollmentProgress};
use crate::domain::vendor::VendorAccountKind;
use crate::ledger::Ledger;
use crate::store::Store;
use crate::vendors::service_control::{ControlResult, ServiceControl};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This replica's name in leases.
    pub owner: String,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// The longest the worker waits before looking for new actions again (this process's own
    /// requests wake it at once).
    pub poll: Duration,
    /// How long an enrollment waits before asking the vendor again whether the account it is
    /// creating exists (AWS's CreateAccount takes a minute or more).
    pub enrollment_poll: Duration,
    /// Vendor calls at once through one partner account.
    pub per_partner_concurrency: usize,
    /// Actions this replica runs at once.
    pub max_actions: usize,
    pub retry: RetryPolicy,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease_ttl: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            enrollment_poll: Duration::from_secs(10),
            per_partner_concurrency: 8,
            max_actions: 256,
            retry: RetryPolicy::default(),
        }
    }
}

/// What one attempt of a step came to, short of a failure.
enum StepOutcome {
    /// A suspend, resume or purge done.
    Done(ControlReport),
    /// An enrollment's account exists.
    Enrolled {
        kind: VendorAccountKind,
        account_id: String,
    },
    /// The vendor is still creating the account: poll this operation later.
    Waiting(String),
}

/// Builds the adapter of a partner account.
pub type ControlFactory =
    Arc<dyn Fn(&PartnerAccount) -> ControlResult<Arc<dyn ServiceControl>> + Send + Sync>;

/// The adapters `vendors::service_control_for` builds.
pub fn vendor_adapters() -> ControlFactory {
    Arc::new(|account| crate::vendors::service_control_for(account, None).map(Arc::from))
}

pub struct Worker {
    ledger: Arc<Ledger>,
    store: Arc<Store>,
    settings: WorkerSettings,
    factory: ControlFactory,
    /// Adapters by (partner account, version): a changed account gets a new one.
    adapters: Mutex<HashMap<(String, i64), Arc<dyn ServiceControl>>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    running: Mutex<HashSet<String>>,
}

impl Worker {
    /// A worker on `ledger`'s database (an enrollment's link rates waiting usage through it).
    pub fn new(
        ledger: Arc<Ledger>,
        settings: WorkerSettings,
        factory: ControlFactory,
    ) -> Arc<Self> {
        Arc::new(Worker {
            store: ledger.store().clone(),
            ledger,
            settings,
            factory,
            adapters: Mutex::default(),
            limits: Mutex::default(),
            running: Mutex::default(),
        })
    }

    /// Runs until `stop` turns true; actions under way are left to their leases (another
    /// replica, or this one restarted, resumes them).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut written = self.store.written().subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            written.borrow_and_update();
            if let Err(error) = self.start_runnable().await {
                tracing::warn!(%error, "service worker could not look for actions");
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = written.changed() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Spawns the run of every open action no live replica holds, up to `max_actions`.
    async fn start_runnable(self: &Arc<Self>) -> Result<()> {
        let free = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            self.settings.max_actions.saturating_sub(running.len())
        };
        if free == 0 {
            return Ok(());
        }
        let limit = i64::try_from(self.settings.max_actions * 2).unwrap_or(i64::MAX);
        let candidates = self
            .store
            .runnable_service_actions(&self.settings.owner, limit)
            .await?;
        for (tenant_id, id) in candidates.into_iter().take(free.max(1) * 2) {
            {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if running.len() >= self.settings.max_actions || !running.insert(id.clone()) {
                    continue;
                }
            }
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(error) = worker.run_action(&tenant_id, &id).await {
                    tracing::warn!(%error, action = %id, "service action run interrupted; it will be resumed");
                }
                worker
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        }
        Ok(())
    }

    fn ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease_ttl).unwrap_or(chrono::Duration::seconds(30))
    }

    /// Leases the action and carries it out to its end (or until the lease is lost).
    pub async fn run_action(self: &Arc<Self>, tenant_id: &str, id: &str) -> Result<()> {
        let owner = self.settings.owner.clone();
        if !self
            .store
            .lease_service_action(id, &owner, self.ttl())
            .await?
        {
            return Ok(());
        }
        // Renews the lease while the run lasts; a lost lease stops the run.
        let (lost_tx, lost) = watch::channel(false);
        let renewer = {
            let store = self.store.clone();
            let (id, owner, ttl) = (id.to_string(), owner.clone(), self.ttl());
            let every = self.settings.lease_ttl / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match store.lease_service_action(&id, &owner, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "could not renew a service action lease")
                        }
                    }
                }
            })
        };
        let outcome = self.carry_out(tenant_id, id, lost).await;
        renewer.abort();
        let released = self.store.release_service_action(id, &owner).await;
        outcome.and(released)
    }

    async fn carry_out(
        self: &Arc<Self>,
        tenant_id: &str,
        id: &str,
        lost: watch::Receiver<bool>,
    ) -> Result<()> {
        let action = self.store.service_action(tenant_id, id).await?;
        // Steps left RUNNING by a replica that died mid-call: attempt them again.
        let recovered: Vec<(usize, ServiceStep)> = action
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| step.status == ActionStatus::Running)
            .map(|(position, step)| {
                let mut step = step.clone();
                step.recover();
                (position, step)
            })
            .collect();
        if !recovered.is_empty() {
            self.ledger
                .record_service_steps(tenant_id, id, &recovered)
                .await?;
        }
        let mut action = self.store.settle_service_action(tenant_id, id).await?;
        while !action.status.is_terminal() {
            if *lost.borrow() {
                return Ok(());
            }
            let now = Utc::now();
            let due: Vec<usize> = (0..action.steps.len())
                .filter(|&i| action.steps[i].is_due(now))
                .collect();
            if due.is_empty() {
                // Wait for the earliest retry (the lease is renewed meanwhile).
                let next = action
                    .steps
                    .iter()
                    .filter_map(|s| s.not_before)
                    .min()
                    .map(|t| (t - now).to_std().unwrap_or_default())
                    .unwrap_or(self.settings.poll);
                tokio::time::sleep(next.min(self.settings.lease_ttl)).await;
                action = self.store.service_action(tenant_id, id).await?;
            } else {
                action = self.round(&action, due).await?;
            }
        }
        Ok(())
    }

    /// One attempt of each of the steps at `due`: their vendor slots taken, RUNNING committed,
    /// the vendor called for each side by side, the outcomes committed together. Returns the
    /// action as it then stands.
    async fn round(
        self: &Arc<Self>,
        action: &ServiceAction,
        due: Vec<usize>,
    ) -> Result<ServiceAction> {
        let (tenant_id, id) = (&action.tenant_id, &action.id);
        // Slots per partner account in id order: actions queue for them in the same order, so
        // none holds one slot while waiting for another that a waiter on its own holds.
        let mut by_partner: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for position in due {
            by_partner
                .entry(action.steps[position].partner_account_id.as_str())
                .or_default()
                .push(position);
        }
        let cap = self.settings.per_partner_concurrency.max(1);
        let mut started: Vec<(usize, ServiceStep, tokio::sync::OwnedSemaphorePermit)> = Vec::new();
        for (partner_account_id, mut positions) in by_partner {
            // More steps through one partner account than its bound: the rest go next round.
            positions.truncate(cap);
            let permits = self
                .limit(partner_account_id)
                .acquire_many_owned(u32::try_from(positions.len()).unwrap_or(1))
                .await;
            let Ok(mut permits) = permits else {
                continue;
            };
            for position in positions {
                let Some(permit) = permits.split(1) else {
                    break;
                };
                let mut step = action.steps[position].clone();
                if step.start(Utc::now()) {
                    started.push((position, step, permit));
                }
            }
        }
        if started.is_empty() {
            return self.store.service_action(tenant_id, id).await;
        }
        let running: Vec<(usize, ServiceStep)> = started
            .iter()
            .map(|(position, step, _)| (*position, step.clone()))
            .collect();
        self.ledger
            .record_service_steps(tenant_id, id, &running)
            .await?;
        let calls = started
            .into_iter()
            .map(|(position, step, permit)| async move {
                let outcome = self.call(action, &step).await;
                drop(permit);
                (position, self.outcome(action, step, outcome))
            });
        let ended: Vec<(usize, ServiceStep)> = futures::future::join_all(calls).await;
        self.ledger
            .record_service_steps(tenant_id, id, &ended)
            .await
    }

    /// The step after one attempt that came to `outcome`.
    fn outcome(
        &self,
        action: &ServiceAction,
        mut step: ServiceStep,
        outcome: ControlResult<StepOutcome>,
    ) -> ServiceStep {
        let id = &action.id;
        let now = Utc::now();
        match outcome {
            Ok(StepOutcome::Done(report)) => {
                tracing::info!(action = %id, target = %step.target, changes = ?report.resources, "service step done");
                step.succeed(now);
            }
            Ok(StepOutcome::Enrolled { kind, account_id }) => {
                tracing::info!(action = %id, partner_account = %step.partner_account_id, %account_id, "vendor account created");
                step.target.kind = kind;
                step.target.account_id = account_id;
                step.succeed(now);
            }
            Ok(StepOutcome::Waiting(operation_id)) => {
                let wait = chrono::Duration::from_std(self.settings.enrollment_poll)
                    .unwrap_or(chrono::Duration::seconds(10));
                step.wait(operation_id, now + wait);
            }
            Err(error) => {
                tracing::warn!(action = %id, target = %step.target, %error, "service step failed");
                let jitter: f64 = rand::rng().random();
                step.fail(&error, now, &self.settings.retry, jitter);
            }
        }
        step
    }

    async fn call(&self, action: &ServiceAction, step: &ServiceStep) -> ControlResult<StepOutcome> {
        let adapter = self
            .adapter(&action.tenant_id, &step.partner_account_id)
            .await?;
        let target = &step.target;
        match action.kind {
            ActionKind::Suspend => adapter.suspend(target).await.map(StepOutcome::Done),
            ActionKind::Resume => adapter.resume(target).await.map(StepOutcome::Done),
            ActionKind::Purge => {
                self.check_closure_budget(adapter.as_ref(), &step.partner_account_id)
                    .await?;
                adapter.purge(target).await.map(StepOutcome::Done)
            }
            ActionKind::Enroll => {
                let Some(order) = &step.enrollment else {
                    return Err(ControlError::permanent(
                        "the enrollment step has no order to send the vendor",
                    ));
                };
                // A pending creation is polled, never ordered again.
                let progress = match &step.operation_id {
                    Some(operation_id) => adapter.poll_enrollment(operation_id).await?,
                    None => adapter.enroll(order).await?,
                };
                match progress {
                    EnrollmentProgress::Pending { operation_id } => {
                        Ok(StepOutcome::Waiting(operation_id))
                    }
                    EnrollmentProgress::Enrolled { kind, account_id } => {
                        Ok(StepOutcome::Enrolled { kind, account_id })
                    }
                    EnrollmentProgress::Failed { reason } => Err(ControlError::permanent(reason)),
                }
            }
        }
    }

    /// AWS's closure quota, checked before CloseAccount is called: the closures this gateway
    /// made through the partner account in the last 30 days, against 10 % of its members.
    async fn check_closure_budget(
        &self,
        adapter: &dyn ServiceControl,
        partner_account_id: &str,
    ) -> ControlResult<()> {
        let Some(members) = adapter.closure_quota_members().await? else {
            return Ok(());
        };
        let now = Utc::now();
        let closures = self
            .store
            .closures_since(partner_account_id, now - closure_budget::WINDOW)
            .await
            .map_err(|e| ControlError::transient(e.to_string()))?;
        ClosureBudget::for_members(members)
            .check(&closures, now, 1)
            .map_err(|e| ControlError::permanent(e.to_string()))
    }

    async fn adapter(
        &self,
        tenant_id: &str,
        partner_account_id: &str,
    ) -> ControlResult<Arc<dyn ServiceControl>> {
        let account = self
            .store
            .partner_account_in(tenant_id, partner_account_id)
            .await
            .map_err(|e| ControlError::transient(format!("reading the partner account: {e}")))?;
        let key = (account.id.clone(), account.version);
        if let Some(adapter) = self
            .adapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(adapter.clone());
        }
        let adapter = (self.factory)(&account)?;
        self.adapters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, adapter.clone());
        Ok(adapter)
    }

    fn limit(&self, partner_account_id: &str) -> Arc<Semaphore> {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partner_account_id.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.settings.per_partner_concurrency.max(1)))
            })
            .clone()
    }
}
