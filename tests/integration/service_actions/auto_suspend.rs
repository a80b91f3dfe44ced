//! AUTO_SUSPEND end to end: usage over the limit records a credit event and a suspend action in
//! one commit, the worker suspends the customer at the vendor; exposure back under the limit
//! resumes it, but only when the suspension was automatic.
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::credit_control_service_client::CreditControlServiceClient;
use msp_gateway::vendors::simulator::control::SimulatedAccount;
use prost_types::FieldMask;

use super::{
    RunningWorker, customer_status, open_stream, services, simulator, test_settings, until_status,
};
use crate::charge_streams::{Ledger, ledger, line};
use crate::harness::{Backend, Bearer, TestGateway, fresh_request};

async fn push(gw: &TestGateway, l: &Ledger, cost: &str) {
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![line(&l.customers[0], "vm", cost, l.base)],
            &fresh_request(),
        )
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id");
}

pub(super) async fn settings(
    gw: &TestGateway,
    customer: &str,
    limit: &str,
    policy: bool,
    request: &str,
) {
    let mut client = CreditControlServiceClient::with_interceptor(
        gw.channel().await,
        Bearer::new(&gw.admin_key),
    );
    let mut paths = vec!["credit_limit".to_string()];
    if policy {
        paths.push("policy".into());
    }
    client
        .update_credit_settings(v1::UpdateCreditSettingsRequest {
            settings: Some(v1::CreditSettings {
                customer_id: customer.into(),
                credit_limit: limit.into(),
                policy: v1::CreditPolicy::AutoSuspend.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask { paths }),
            request_id: request.into(),
        })
        .await
        .expect("credit settings");
}

/// The credit events so far with an action, as (action, service_action_id).
pub(super) async fn acting_events(gw: &TestGateway) -> Vec<(i32, String, i64)> {
    let events = gw
        .store
        .credit_events_after(&gw.tenant_id, &[], 0, 100)
        .await
        .unwrap();
    events
        .into_iter()
        .filter(|e| e.action != msp_gateway::domain::credit::CreditAction::Notify)
        .map(|e| {
            let action = match e.action {
                msp_gateway::domain::credit::CreditAction::SuspensionRequired => 1,
                _ => 2,
            };
            (action, e.service_action_id.unwrap_or_default(), e.sequence)
        })
        .collect()
}

async fn usage_over_the_limit_suspends_and_only_automatic_suspensions_resume(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "100").await;
    let customer = l.customers[0].clone();
    let account = format!("sim-{}", customer.trim_start_matches("cus_"));
    settings(&gw, &customer, "100", true, "auto").await;
    let sim = simulator();
    let worker = RunningWorker::start(&gw, test_settings("w"), sim.clone());
    let mut client = services(&gw, &gw.admin_key).await;
    let mut stream = open_stream(&mut client, 0).await;

    // Over the limit: the event and its suspend action are one commit.
    push(&gw, &l, "150").await;
    let events = acting_events(&gw).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (kind, action_id, sequence) = events[0].clone();
    assert_eq!(kind, 1);
    assert!(!action_id.is_empty(), "the event names its action");
    let action = gw
        .store
        .service_action(&gw.tenant_id, &action_id)
        .await
        .unwrap();
    assert!(action.is_automatic());
    assert_eq!(
        action.requester,
        msp_gateway::domain::service_action::Requester::CreditPolicy {
            credit_event_sequence: sequence
        }
    );
    let states = until_status(&mut stream, &action_id, v1::ServiceActionStatus::Succeeded).await;
    let done = states.last().unwrap();
    assert!(done.automatic && done.credit_event_sequence == sequence);
    assert!(done.reason.contains("AUTO_SUSPEND"), "{}", done.reason);
    assert_eq!(sim.account(&account), SimulatedAccount::Suspended);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );

    // The exposure back under the limit (a higher limit): resumed automatically.
    settings(&gw, &customer, "1000", false, "raise").await;
    let events = acting_events(&gw).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (kind, resume_id, _) = events[1].clone();
    assert_eq!(kind, 2);
    until_status(&mut stream, &resume_id, v1::ServiceActionStatus::Succeeded).await;
    assert_eq!(sim.account(&account), SimulatedAccount::Active);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Active
    );

    // A person suspends; crossing the limit and falling back leaves that suspension alone.
    let manual = client
        .suspend_customer(v1::SuspendCustomerRequest {
            customer_id: customer.clone(),
            reason: "fraud check".into(),
            request_id: "manual".into(),
        })
        .await
        .unwrap()
        .into_inner();
    until_status(&mut stream, &manual.id, v1::ServiceActionStatus::Succeeded).await;
    settings(&gw, &customer, "100", false, "lower").await;
    settings(&gw, &customer, "1000", false, "raise-again").await;
    let events = acting_events(&gw).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events[2].1.is_empty() && events[3].1.is_empty(),
        "no action for an already suspended customer, none to undo a person's suspension: {events:?}"
    );
    let actions = client
        .list_service_actions(v1::ListServiceActionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .service_actions;
    assert_eq!(actions.len(), 3);
    assert_eq!(sim.account(&account), SimulatedAccount::Suspended);
    assert_eq!(
        customer_status(&gw, &customer).await,
        v1::CustomerStatus::Suspended
    );
    worker.stop().await;
    gw.stop().await;
}

crate::both_backends!(usage_over_the_limit_suspends_and_only_automatic_suspensions_resume);
