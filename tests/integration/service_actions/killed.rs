//! The gateway binary, running its own service worker, SIGKILLed between a vendor call and the
//! commit of its outcome: AWS has attached the deny policy (moto applied the call) but the
//! gateway never heard back. On PostgreSQL a second replica, running all along, takes the action
//! over once the dead one's lease lapses; on SQLite the gateway restarted does. It reads the
//! account's policies at AWS, finds the deny policy attached (so attaches nothing again) and
//! finishes the action exactly once.
use std::time::{Duration, Instant};

use msp_gateway::domain::vendor::{Vendor, VendorAccountKind};
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::service_management_service_client::ServiceManagementServiceClient;
use msp_gateway::vendors::aws::organizations::DENY_POLICY_NAME;

use super::moto::aws_partner_account;
use super::{Services, customer_status, open_stream, suspend, until_status};
use crate::gateway_process::{CALL_TIMEOUT, Gateway, free_port};
use crate::harness::{Backend, Bearer, TestGateway};
use crate::service_control::aws_organizations::Org;

/// The service worker on, with a lease short enough that the restarted gateway takes the dead
/// one's action over within seconds (the minimum the gateway accepts).
const WORKER: &[(&str, &str)] = &[
    ("MSPGW_POLLERS", "true"),
    ("MSPGW_SERVICE_ACTION_LEASE_SECS", "3"),
];

async fn client(gateway: &mut Gateway, key: &str) -> Services {
    ServiceManagementServiceClient::with_interceptor(gateway.channel().await, Bearer::new(key))
}

async fn a_gateway_killed_after_the_vendor_call_finishes_the_action_once_restarted(
    backend: Backend,
) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let org = Org::start().await;
    let member = org.member("acme-prod").await;
    aws_partner_account(&gw, &org).await;
    let customer = gw
        .linked_customer(Vendor::Aws, VendorAccountKind::AwsAccount, &member, "USD")
        .await;
    // AttachPolicy reaches moto and takes effect; the gateway never gets the answer.
    org.proxy.withhold_answers("AttachPolicy");

    let port = free_port();
    let mut gateway = Gateway::start_with(gw.database_url(), port, WORKER).await;
    let mut first = client(&mut gateway, &gw.admin_key).await;
    let action = first
        .suspend_customer(suspend(&customer, "s-1"))
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    while org.proxy.withheld() == 0 {
        assert!(
            started.elapsed() < CALL_TIMEOUT,
            "the worker never called AttachPolicy; operations seen: {:?}",
            org.proxy.operations()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The vendor call took effect; the outcome is not committed: the step is still RUNNING.
    let names: Vec<String> = org.scps(&member).await.into_iter().map(|p| p.1).collect();
    assert_eq!(names, ["FullAWSAccess", DENY_POLICY_NAME]);
    let running = first
        .get_service_action(v1::GetServiceActionRequest {
            id: action.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.status(), v1::ServiceActionStatus::Running);
    assert_eq!(running.steps[0].attempts, 1);

    // PostgreSQL: a second replica is already running when the first dies, and takes over.
    // SQLite (one process per database file): the gateway is started again after the kill.
    let second_replica = match backend {
        Backend::Postgres => {
            Some(Gateway::start_with(gw.database_url(), free_port(), WORKER).await)
        }
        Backend::Sqlite => None,
    };
    gateway.kill().await;
    org.proxy.release();
    let seen_before_restart = org.proxy.operations().len();
    let mut gateway = match second_replica {
        Some(replica) => replica,
        None => Gateway::start_with(gw.database_url(), port, WORKER).await,
    };
    let mut second = client(&mut gateway, &gw.admin_key).await;
    // Every state the action went through, from the start of the stream.
    let mut stream = open_stream(&mut second, 0).await;
    let states = until_status(&mut stream, &action.id, v1::ServiceActionStatus::Succeeded).await;
    let done = states.last().unwrap();
    assert_eq!(
        done.steps[0].attempts, 2,
        "attempted again after the restart: {done:?}"
    );
    assert_eq!(
        done.steps[0].status(),
        v1::ServiceActionStatus::Succeeded,
        "{done:?}"
    );
    super::assert_succeeded_once(&states);
    // The restarted gateway asked AWS what the account has rather than assuming, found the
    // policy attached, and attached nothing twice.
    let after_restart = org.proxy.operations()[seen_before_restart..].to_vec();
    assert!(
        after_restart.iter().any(|o| o == "ListPoliciesForTarget"),
        "{after_restart:?}"
    );
    assert_eq!(org.proxy.count("AttachPolicy"), 1, "{after_restart:?}");
    // At AWS the deny policy is attached once, FullAWSAccess still beside it.
    let names: Vec<String> = org.scps(&member).await.into_iter().map(|p| p.1).collect();
    assert_eq!(names, ["FullAWSAccess", DENY_POLICY_NAME]);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );
    gateway.kill().await;
    gw.stop().await;
}

crate::both_backends!(a_gateway_killed_after_the_vendor_call_finishes_the_action_once_restarted);
