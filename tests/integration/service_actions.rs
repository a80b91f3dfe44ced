//! ServiceManagementService through the real server and the real worker: suspend, resume and
//! purge carried out at the vendor (the simulator here; moto and the Partner Center emulator
//! in the submodules), conflicts refused, bad input and access refused with nothing written,
//! a gateway killed mid-action resumed, and AUTO_SUSPEND acting on its own credit events.
mod auto_suspend;
mod enrollment;
mod killed;
mod moto;
pub mod partner_center;
mod queued;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use msp_gateway::domain::service_action::RetryPolicy;
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::service_management_service_client::ServiceManagementServiceClient;
use msp_gateway::service_worker::{ControlFactory, Worker, WorkerSettings};
use msp_gateway::vendors::service_control::ServiceControl;
use msp_gateway::vendors::simulator::control::{
    SimulatedAccount, SimulatorControl, SimulatorControlConfig,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::charge_streams::ledger;
use crate::harness::{Backend, Bearer, TestGateway, assert_violation};

pub type Services = ServiceManagementServiceClient<InterceptedService<Channel, Bearer>>;

pub async fn services(gw: &TestGateway, key: &str) -> Services {
    ServiceManagementServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

/// Quick retries, for tests.
pub fn test_settings(owner: &str) -> WorkerSettings {
    WorkerSettings {
        owner: owner.into(),
        lease_ttl: Duration::from_secs(2),
        poll: Duration::from_millis(100),
        enrollment_poll: Duration::from_millis(100),
        per_partner_concurrency: 4,
        max_actions: 16,
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
    }
}

/// A worker on the gateway's store whose adapters are all `control`; stops with the guard.
pub struct RunningWorker {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningWorker {
    pub fn start(
        gw: &TestGateway,
        settings: WorkerSettings,
        control: Arc<dyn ServiceControl>,
    ) -> Self {
        let factory: ControlFactory = Arc::new(move |_| Ok(control.clone()));
        Self::with_factory(gw, settings, factory)
    }

    pub fn with_factory(
        gw: &TestGateway,
        settings: WorkerSettings,
        factory: ControlFactory,
    ) -> Self {
        Self::on_ledger(gw.ledger.clone(), settings, factory)
    }

    /// A worker on `store` (another replica's) whose adapters are all `control`.
    pub fn start_on(
        store: Arc<msp_gateway::store::Store>,
        settings: WorkerSettings,
        control: Arc<dyn ServiceControl>,
    ) -> Self {
        let factory: ControlFactory = Arc::new(move |_| Ok(control.clone()));
        let ledger = msp_gateway::ledger::Ledger::new(store).expect("ledger");
        Self::on_ledger(Arc::new(ledger), settings, factory)
    }

    fn on_ledger(
        ledger: Arc<msp_gateway::ledger::Ledger>,
        settings: WorkerSettings,
        factory: ControlFactory,
    ) -> Self {
        let worker = Worker::new(ledger, settings, factory);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(stop_rx));
        RunningWorker {
            stop,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

pub fn simulator() -> Arc<SimulatorControl> {
    Arc::new(
        SimulatorControl::new(SimulatorControlConfig {
            polls_before_enrolled: 0,
            ..Default::default()
        })
        .unwrap(),
    )
}

pub async fn open_stream(
    client: &mut Services,
    after: i64,
) -> Streaming<v1::StreamServiceActionsResponse> {
    client
        .stream_service_actions(v1::StreamServiceActionsRequest {
            after_sequence: after,
            customer_ids: vec![],
        })
        .await
        .expect("service action stream")
        .into_inner()
}

/// Reads the stream until action `id` is in `status`; every state of it seen on the way.
pub async fn until_status(
    stream: &mut Streaming<v1::StreamServiceActionsResponse>,
    id: &str,
    status: v1::ServiceActionStatus,
) -> Vec<v1::ServiceAction> {
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {id} to be {status:?}; saw {seen:?}"))
            .expect("stream error")
            .expect("stream ended");
        if let Some(v1::stream_service_actions_response::Event::ServiceAction(a)) = message.event
            && a.id == id
        {
            let done = a.status == status as i32;
            seen.push(a);
            if done {
                return seen;
            }
        }
    }
}

/// The states an action went through show it SUCCEEDED exactly once.
pub fn assert_succeeded_once(states: &[v1::ServiceAction]) {
    let succeeded = states
        .iter()
        .filter(|a| a.status() == v1::ServiceActionStatus::Succeeded)
        .count();
    assert_eq!(succeeded, 1, "finished once: {states:?}");
}

pub async fn customer_status(gw: &TestGateway, id: &str) -> v1::CustomerStatus {
    let customer = gw
        .customers(&gw.admin_key)
        .await
        .get_customer(v1::GetCustomerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    v1::CustomerStatus::try_from(customer.status).unwrap()
}

pub fn suspend(customer_id: &str, request_id: &str) -> v1::SuspendCustomerRequest {
    v1::SuspendCustomerRequest {
        customer_id: customer_id.into(),
        reason: "overdue invoice 2026-11".into(),
        request_id: request_id.into(),
    }
}

fn resume(customer_id: &str, request_id: &str) -> v1::ResumeCustomerRequest {
    v1::ResumeCustomerRequest {
        customer_id: customer_id.into(),
        reason: "paid".into(),
        request_id: request_id.into(),
    }
}

async fn suspend_resume_and_purge_at_the_vendor(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000").await;
    let customer = l.customers[0].clone();
    let account = format!("sim-{}", customer.trim_start_matches("cus_"));
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    // Recorded at once; nothing runs until a worker does.
    let first = client
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.status, v1::ServiceActionStatus::Pending as i32);
    assert_eq!(first.kind, v1::ServiceActionKind::Suspend as i32);
    assert_eq!(first.steps.len(), 1);
    assert_eq!(first.steps[0].account_id, account);
    assert_eq!(first.reason, "overdue invoice 2026-11");
    assert!(!first.requested_by_key_id.is_empty() && !first.automatic);
    // A retry answers the same action; a different request under the id is refused.
    let again = client
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, first.id);
    let mut other = suspend(&customer, "s-1");
    other.reason = "something else".into();
    assert_violation(
        client.suspend_customer(other).await,
        Code::InvalidArgument,
        "request_id",
    );
    // A conflicting action is refused while the suspend is open, naming it.
    let conflict = client
        .resume_customer(resume(&customer, "r-0"))
        .await
        .expect_err("resume during a suspend");
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert!(
        conflict.message().contains(&first.id),
        "{}",
        conflict.message()
    );

    let sim = simulator();
    let worker = RunningWorker::start(&gw, test_settings("w1"), sim.clone());
    let states = until_status(&mut stream, &first.id, v1::ServiceActionStatus::Succeeded).await;
    let done = states.last().unwrap();
    assert_eq!(
        done.steps[0].status,
        v1::ServiceActionStatus::Succeeded as i32
    );
    assert_eq!(done.steps[0].attempts, 1);
    assert!(done.finish_time.is_some());
    assert_eq!(sim.account(&account), SimulatedAccount::Suspended);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );

    let resumed = client
        .resume_customer(resume(&customer, "r-1"))
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &resumed.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(sim.account(&account), SimulatedAccount::Active);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Active
    );

    // Purge: refused from ACTIVE, then from SUSPENDED with the confirmation it closes.
    let purge = |request_id: &str, confirm: &str| v1::PurgeCustomerRequest {
        customer_id: customer.clone(),
        reason: "contract ended".into(),
        request_id: request_id.into(),
        confirm_external_ref: confirm.into(),
    };
    let active = client
        .purge_customer(purge("p-0", "ISP-0000"))
        .await
        .expect_err("purge from ACTIVE");
    assert_eq!(active.code(), Code::FailedPrecondition);
    assert!(
        active.message().contains("only from SUSPENDED"),
        "{}",
        active.message()
    );
    let suspended = client
        .suspend_customer(suspend(&customer, "s-2"))
        .await
        .unwrap()
        .into_inner();
    until_status(
        &mut stream,
        &suspended.id,
        v1::ServiceActionStatus::Succeeded,
    )
    .await;
    assert_violation(
        client.purge_customer(purge("p-1", "")).await,
        Code::InvalidArgument,
        "confirm_external_ref",
    );
    let purged = client
        .purge_customer(purge("p-2", "ISP-0000"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::PurgeScheduled
    );
    until_status(&mut stream, &purged.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(sim.account(&account), SimulatedAccount::Closed);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Purged
    );

    // Listed in creation order, filtered by kind.
    let list = client
        .list_service_actions(v1::ListServiceActionsRequest {
            customer_id: customer.clone(),
            kind: v1::ServiceActionKind::Suspend.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = list.service_actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [first.id.as_str(), suspended.id.as_str()]);
    worker.stop().await;
    gw.stop().await;
}

async fn bad_input_and_access_are_refused_with_nothing_written(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 2, "1000").await;
    let (mine, theirs) = (l.customers[0].clone(), l.customers[1].clone());
    let mut admin = services(&gw, &gw.admin_key).await;
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let mut keys = Vec::new();
    for (scope, customer) in [
        (v1::ApiKeyScope::HelpDesk, ""),
        (v1::ApiKeyScope::CreditControl, ""),
        (v1::ApiKeyScope::Portal, mine.as_str()),
    ] {
        let request = v1::CreateApiKeyRequest {
            request_id: format!("key-{scope:?}"),
            name: format!("{scope:?} key"),
            scope: scope.into(),
            customer_id: customer.into(),
        };
        keys.push(
            tenants
                .create_api_key(request)
                .await
                .unwrap()
                .into_inner()
                .secret,
        );
    }
    let [help_desk, credit_control, portal] = <[String; 3]>::try_from(keys).unwrap();

    let unknown = admin
        .suspend_customer(suspend("cus_nobody", "bad-1"))
        .await
        .expect_err("unknown customer");
    assert_eq!(unknown.code(), Code::NotFound);
    let other_tenant = gw.other_tenant().await;
    let foreign = services(&gw, &other_tenant)
        .await
        .suspend_customer(suspend(&mine, "bad-2"))
        .await
        .expect_err("another tenant's customer");
    assert_eq!(foreign.code(), Code::NotFound);
    let denied = services(&gw, &help_desk)
        .await
        .suspend_customer(suspend(&mine, "bad-3"))
        .await
        .expect_err("help desk");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let purge = v1::PurgeCustomerRequest {
        customer_id: mine.clone(),
        reason: "x".into(),
        request_id: "bad-4".into(),
        confirm_external_ref: "ISP-0000".into(),
    };
    let not_admin = services(&gw, &credit_control)
        .await
        .purge_customer(purge.clone())
        .await
        .expect_err("credit control may not purge");
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    let from_active = admin
        .purge_customer(purge)
        .await
        .expect_err("purge from ACTIVE");
    assert_eq!(from_active.code(), Code::FailedPrecondition);
    let mut long = suspend(&mine, "bad-5");
    long.reason = "x".repeat(10 * 1024);
    assert_violation(
        admin.suspend_customer(long).await,
        Code::InvalidArgument,
        "reason",
    );
    let mut empty = suspend(&mine, "bad-6");
    empty.reason = String::new();
    empty.request_id = String::new();
    let status = admin.suspend_customer(empty).await.expect_err("empty");
    let fields: Vec<String> = crate::harness::field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["reason", "request_id"]);
    // Portal keys: their own customer's actions only; they cannot act.
    let mut portal = services(&gw, &portal).await;
    assert_eq!(
        portal
            .suspend_customer(suspend(&mine, "bad-7"))
            .await
            .expect_err("portal")
            .code(),
        Code::PermissionDenied
    );
    let listing = portal
        .list_service_actions(v1::ListServiceActionsRequest {
            customer_id: theirs.clone(),
            ..Default::default()
        })
        .await
        .expect_err("another customer");
    assert_eq!(listing.code(), Code::NotFound);

    // Nothing was written by any of these.
    let all = admin
        .list_service_actions(v1::ListServiceActionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.service_actions.is_empty(), "{:?}", all.service_actions);
    assert_eq!(
        customer_status(&gw, &mine).await,
        v1::CustomerStatus::Active
    );

    // Credit control may suspend; the portal sees its own customer's action, not another's.
    let cc = services(&gw, &credit_control)
        .await
        .suspend_customer(suspend(&mine, "ok-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cc.requested_by_key_name, "CreditControl key");
    let theirs_action = admin
        .suspend_customer(suspend(&theirs, "ok-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        portal
            .get_service_action(v1::GetServiceActionRequest { id: cc.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .id,
        cc.id
    );
    assert_eq!(
        portal
            .get_service_action(v1::GetServiceActionRequest {
                id: theirs_action.id.clone()
            })
            .await
            .expect_err("another customer's action")
            .code(),
        Code::NotFound
    );
    let own = portal
        .list_service_actions(v1::ListServiceActionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.service_actions.len(), 1);
    assert_eq!(own.service_actions[0].id, cc.id);
    gw.stop().await;
}

/// A gateway that died after the vendor call and before recording it: its lease runs out,
/// another worker takes the action over, repeats the (idempotent) call and finishes it once.
async fn an_action_cut_off_mid_call_is_finished_by_another_worker(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000").await;
    let customer = l.customers[0].clone();
    let account = format!("sim-{}", customer.trim_start_matches("cus_"));
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let action = client
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();

    // The dead replica: it leased the action, recorded the attempt, called the vendor, died.
    let sim = simulator();
    let ttl = chrono::Duration::milliseconds(300);
    assert!(
        gw.store
            .lease_service_action(&action.id, "dead", ttl)
            .await
            .unwrap()
    );
    let stored = gw
        .store
        .service_action(&gw.tenant_id, &action.id)
        .await
        .unwrap();
    let mut step = stored.steps[0].clone();
    assert!(step.start(chrono::Utc::now()));
    gw.ledger
        .record_service_steps(&gw.tenant_id, &action.id, &[(0, step.clone())])
        .await
        .unwrap();
    sim.suspend(&step.target).await.unwrap();
    let running = until_status(&mut stream, &action.id, v1::ServiceActionStatus::Running).await;
    assert_eq!(running.last().unwrap().steps[0].attempts, 1);

    let worker = RunningWorker::start(&gw, test_settings("survivor"), sim.clone());
    let states = until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    let done = states.last().unwrap();
    assert_eq!(
        done.steps[0].attempts, 2,
        "attempted again after the takeover"
    );
    assert_eq!(sim.account(&account), SimulatedAccount::Suspended);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );
    let succeeded = states
        .iter()
        .filter(|a| a.status == v1::ServiceActionStatus::Succeeded as i32)
        .count();
    assert_eq!(succeeded, 1, "finished once");
    worker.stop().await;
    gw.stop().await;
}

async fn the_customer_shows_suspending_and_resuming_and_the_stream_shows_steps_running(
    backend: Backend,
) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000").await;
    let customer = l.customers[0].clone();
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;
    let slow = Arc::new(
        SimulatorControl::new(SimulatorControlConfig {
            latency: Duration::from_millis(300),
            ..Default::default()
        })
        .unwrap(),
    );

    // No worker yet: the suspend waits, and the customer reads SUSPENDING meanwhile.
    let suspend = client
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspending
    );
    let listed = gw
        .customers(&gw.admin_key)
        .await
        .list_customers(v1::ListCustomersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers[0].status(), v1::CustomerStatus::Suspending);
    // A status filter takes stored statuses only.
    assert_violation(
        gw.customers(&gw.admin_key)
            .await
            .list_customers(v1::ListCustomersRequest {
                status: v1::CustomerStatus::Suspending.into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "status",
    );
    let worker = RunningWorker::start(&gw, test_settings("w"), slow.clone());
    let seen = until_status(&mut stream, &suspend.id, v1::ServiceActionStatus::Succeeded).await;
    // Every step change is streamed: the step RUNNING during the vendor's 300 ms.
    assert!(
        seen.iter()
            .any(|a| a.status() == v1::ServiceActionStatus::Running
                && a.steps[0].status() == v1::ServiceActionStatus::Running),
        "{seen:?}"
    );
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );
    worker.stop().await;

    let resume = client
        .resume_customer(resume(&customer, "r-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Resuming
    );
    let worker = RunningWorker::start(&gw, test_settings("w"), slow);
    until_status(&mut stream, &resume.id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Active
    );
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(
    suspend_resume_and_purge_at_the_vendor,
    bad_input_and_access_are_refused_with_nothing_written,
    an_action_cut_off_mid_call_is_finished_by_another_worker,
    the_customer_shows_suspending_and_resuming_and_the_stream_shows_steps_running,
);
