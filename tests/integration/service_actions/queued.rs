//! A suspend asked for while an enrollment is creating the customer's vendor account is queued:
//! recorded at once (PENDING, the customer SUSPENDING), started only when the enrollment has
//! ended, and covering the account the enrollment linked. Any other request meanwhile is
//! refused with FAILED_PRECONDITION naming the open action and what to do.
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::enrollment_request::NewAccount;
use msp_gateway::vendors::simulator::control::SimulatedAccount;
use tonic::Code;

use super::{RunningWorker, customer_status, open_stream, services, simulator, test_settings};
use crate::customers::{new_customer, simulator_account};
use crate::harness::{Backend, TestGateway};

async fn a_suspend_waits_for_the_enrollment_and_covers_its_new_account(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    simulator_account(&gw).await;
    let mut request = new_customer("c-1", "SIM-QUEUED");
    request.enrollments = vec![v1::EnrollmentRequest {
        vendor: v1::Vendor::Simulator.into(),
        partner_account_id: String::new(),
        new_account: Some(NewAccount::Simulator(v1::NewSimulatorAccount {
            account_name: "Queued".into(),
        })),
    }];
    let created = gw
        .customers(&gw.admin_key)
        .await
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    let enroll_id = created.enrollments[0].service_action_id.clone();
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    // No worker yet: the enrollment stays PROVISIONING. The suspend is accepted and waits.
    let suspend = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: created.id.clone(),
            reason: "credit hold".into(),
            request_id: "s-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspend.status(), v1::ServiceActionStatus::Pending);
    assert!(
        suspend.steps.is_empty(),
        "no account linked yet: {suspend:?}"
    );
    assert_eq!(
        customer_status(&gw, &created.id).await,
        v1::CustomerStatus::Suspending
    );
    // Anything else meanwhile is refused, naming what runs and what to do.
    let resume = client
        .resume_customer(v1::ResumeCustomerRequest {
            customer_id: created.id.clone(),
            reason: "paid".into(),
            request_id: "r-1".into(),
        })
        .await
        .expect_err("a resume beside the enrollment and the queued suspend");
    assert_eq!(resume.code(), Code::FailedPrecondition);
    assert!(
        resume.message().contains(&enroll_id)
            && resume.message().contains("ENROLL")
            && resume.message().contains("GetServiceAction"),
        "{}",
        resume.message()
    );
    let again = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: created.id.clone(),
            reason: "credit hold".into(),
            request_id: "s-2".into(),
        })
        .await
        .expect_err("a second suspend");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains(&suspend.id) && again.message().contains("it will suspend"),
        "{}",
        again.message()
    );

    let sim = simulator();
    let worker = RunningWorker::start(&gw, test_settings("w"), sim.clone());
    // Every state of both actions, in change order, until the suspend has succeeded.
    let mut seen: Vec<v1::ServiceAction> = Vec::new();
    while !seen
        .iter()
        .any(|a| a.id == suspend.id && a.status() == v1::ServiceActionStatus::Succeeded)
    {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out; saw {seen:?}"))
            .unwrap()
            .unwrap();
        if let Some(v1::stream_service_actions_response::Event::ServiceAction(a)) = message.event {
            seen.push(a);
        }
    }
    let enrolled = seen
        .iter()
        .position(|a| a.id == enroll_id && a.status() == v1::ServiceActionStatus::Succeeded)
        .expect("the enrollment ended first");
    let started = seen
        .iter()
        .position(|a| a.id == suspend.id && a.status() != v1::ServiceActionStatus::Pending)
        .unwrap();
    assert!(enrolled < started, "never interleaved: {seen:?}");
    let new_account = seen[enrolled].steps[0].account_id.clone();
    let done = seen.last().unwrap();
    assert_eq!(done.steps.len(), 1, "{done:?}");
    assert_eq!(done.steps[0].account_id, new_account);
    assert_eq!(sim.account(&new_account), SimulatedAccount::Suspended);
    assert_eq!(
        customer_status(&gw, &created.id).await,
        v1::CustomerStatus::Suspended
    );
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(a_suspend_waits_for_the_enrollment_and_covers_its_new_account);
