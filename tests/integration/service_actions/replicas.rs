//! Two gateways on one PostgreSQL database: replica A leases an action and dies mid-call (its
//! runtime torn down: no release, no commit), replica B takes the action over when A's lease
//! lapses and finishes it exactly once; clients talk to B throughout.
use std::sync::Arc;
use std::time::Duration;

use msp_gateway::proto::v1;
use msp_gateway::proto::v1::service_management_service_client::ServiceManagementServiceClient;
use msp_gateway::service_worker::{ControlFactory, Worker};
use msp_gateway::store::Store;
use msp_gateway::vendors::service_control::ServiceControl;
use msp_gateway::vendors::simulator::control::{
    SimulatedAccount, SimulatorControl, SimulatorControlConfig,
};

use super::{RunningWorker, simulator, suspend, test_settings, until_status};
use crate::charge_streams::ledger;
use crate::harness::{Backend, Bearer, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_action_is_taken_over_by_the_other() {
    let Some(gw) = TestGateway::start(Backend::Postgres).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000").await;
    let customer = l.customers[0].clone();
    let account = format!("sim-{}", customer.trim_start_matches("cus_"));
    let b = gw.replica().await;
    let mut client = ServiceManagementServiceClient::with_interceptor(
        b.channel().await,
        Bearer::new(&gw.admin_key),
    );
    let mut stream = super::open_stream(&mut client, 0).await;

    // Replica A: its own runtime and store, a vendor call that never returns.
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = gw.database_url().to_string();
    let hanging: Arc<dyn ServiceControl> = Arc::new(
        SimulatorControl::new(SimulatorControlConfig {
            latency: Duration::from_secs(3600),
            ..Default::default()
        })
        .unwrap(),
    );
    let factory: ControlFactory = Arc::new(move |_| Ok(hanging.clone()));
    let (_stop_a, stop_a) = tokio::sync::watch::channel(false);
    a_runtime.spawn(async move {
        let store = Arc::new(Store::connect(&url, &Default::default()).expect("store A"));
        let ledger = Arc::new(msp_gateway::ledger::Ledger::new(store).expect("ledger A"));
        Worker::new(ledger, test_settings("replica-a"), factory)
            .run(stop_a)
            .await
    });

    let action = client
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    let running = until_status(&mut stream, &action.id, v1::ServiceActionStatus::Running).await;
    assert_eq!(running.last().unwrap().steps[0].attempts, 1);

    // A dies: every task of its runtime dropped, its lease left to lapse.
    a_runtime.shutdown_background();
    let sim = simulator();
    let worker_b = RunningWorker::start_on(
        b.ledger.store().clone(),
        test_settings("replica-b"),
        sim.clone(),
    );
    let states = until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    let done = states.last().unwrap();
    assert_eq!(done.steps[0].attempts, 2, "attempted again by B: {done:?}");
    assert_eq!(sim.account(&account), SimulatedAccount::Suspended);
    super::assert_succeeded_once(&states);
    assert_eq!(
        super::customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );
    worker_b.stop().await;
    b.stop().await;
    gw.stop().await;
}
