//! Credit policy acting on its own events: under AUTO_SUSPEND, reaching the limit
//! (SUSPENSION_REQUIRED) suspends the customer, and falling back below it
//! (RESUMPTION_ALLOWED) resumes it only when the suspension in force was automatic: a person's
//! suspension stays until a person resumes. An action is planned only where it would be
//! admitted: no other action open on the customer (a suspend queues behind an enrollment
//! creating an account, see `transitions`), and the customer in a status the action moves it
//! from.
use std::collections::HashMap;

use super::transitions::queues_behind;
use super::{ActionKind, NewServiceAction, OpenAction, Requester, SERVICE_ACTION_ID_PREFIX};
use crate::domain::credit::{CreditAction, CreditEvent};
use crate::domain::customer::{CustomerStatus, VendorAccountLink};
use crate::domain::ids;
use crate::domain::money::format_amount;

/// What credit policy needs to know of a customer to act on its events.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyCustomer {
    pub status: CustomerStatus,
    pub links: Vec<VendorAccountLink>,
    pub open: Vec<OpenAction>,
    /// The latest suspend or resume that succeeded or is under way: its kind, and whether
    /// credit policy asked for it.
    pub last_suspension: Option<(ActionKind, bool)>,
}

/// The actions `events` call for, one per customer at most. Each acting event gets the id of
/// its action; the actions' requester is filled in by the caller once the events are numbered
/// (`credit_event_sequence` is a placeholder until then). Returns (index of the event, action).
pub fn plan(
    events: &mut [CreditEvent],
    customers: &HashMap<String, PolicyCustomer>,
) -> Vec<(usize, NewServiceAction)> {
    let mut planned: Vec<(usize, NewServiceAction)> = Vec::new();
    for (index, event) in events.iter_mut().enumerate() {
        let kind = match event.action {
            CreditAction::SuspensionRequired => ActionKind::Suspend,
            CreditAction::ResumptionAllowed => ActionKind::Resume,
            CreditAction::Notify => continue,
        };
        let Some(customer) = customers.get(&event.customer_id) else {
            continue;
        };
        if planned
            .iter()
            .any(|(_, a)| a.customer_id == event.customer_id)
            || !(customer.open.is_empty() || queues_behind(kind, &customer.open))
        {
            continue;
        }
        let wanted = match kind {
            ActionKind::Suspend => customer.status == CustomerStatus::Active,
            _ => {
                customer.status == CustomerStatus::Suspended
                    && customer.last_suspension == Some((ActionKind::Suspend, true))
            }
        };
        if !wanted {
            continue;
        }
        let reason = match kind {
            ActionKind::Suspend => format!(
                "credit policy AUTO_SUSPEND: exposure {} {} reached the credit limit {}",
                format_amount(event.exposure, event.currency),
                event.currency.code(),
                format_amount(event.credit_limit, event.currency)
            ),
            _ => format!(
                "credit policy AUTO_SUSPEND: exposure {} {} fell below the credit limit {}",
                format_amount(event.exposure, event.currency),
                event.currency.code(),
                format_amount(event.credit_limit, event.currency)
            ),
        };
        let action = NewServiceAction::for_links(
            ids::new_id(SERVICE_ACTION_ID_PREFIX),
            &event.customer_id,
            &customer.links,
            kind,
            reason,
            Requester::CreditPolicy {
                credit_event_sequence: 0,
            },
        );
        event.service_action_id = Some(action.id.clone());
        planned.push((index, action));
    }
    planned
}

/// Fills in each planned action's credit event once the events are numbered: the events were
/// appended with sequences `first_sequence..`.
pub fn number(planned: &mut [(usize, NewServiceAction)], first_sequence: i64) {
    for (index, action) in planned {
        action.requester = Requester::CreditPolicy {
            credit_event_sequence: first_sequence + *index as i64,
        };
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::credit::{CreditPolicy, Direction};
    use crate::domain::money::Currency;
    use crate::domain::vendor::VendorAccountKind;

    fn event(customer: &str, action: CreditAction) -> CreditEvent {
        CreditEvent {
            sequence: 0,
            customer_id: customer.into(),
            threshold_percent: 100,
            direction: if action == CreditAction::ResumptionAllowed {
                Direction::Down
            } else {
                Direction::Up
            },
            exposure: Decimal::new(10050, 2),
            credit_limit: Decimal::new(100, 0),
            currency: Currency::parse("c", "ZAR").unwrap(),
            policy: CreditPolicy::AutoSuspend,
            action,
            ledger_sequence: 7,
            recorded_at: Utc::now(),
            service_action_id: None,
        }
    }

    fn customer(status: CustomerStatus, last: Option<(ActionKind, bool)>) -> PolicyCustomer {
        PolicyCustomer {
            status,
            links: vec![VendorAccountLink {
                kind: VendorAccountKind::SimulatorAccount,
                account_id: "sim-1".into(),
                partner_account_id: "pa_1".into(),
                linked_at: Utc::now(),
            }],
            open: Vec::new(),
            last_suspension: last,
        }
    }

    #[test]
    fn reaching_the_limit_suspends_and_the_event_names_the_action() {
        let mut events = vec![
            event("cus_a", CreditAction::Notify),
            event("cus_a", CreditAction::SuspensionRequired),
        ];
        let customers =
            HashMap::from([("cus_a".to_string(), customer(CustomerStatus::Active, None))]);
        let mut planned = plan(&mut events, &customers);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].0, 1);
        assert_eq!(planned[0].1.kind, ActionKind::Suspend);
        assert_eq!(planned[0].1.steps.len(), 1);
        assert_eq!(events[1].service_action_id.as_ref(), Some(&planned[0].1.id));
        assert_eq!(events[0].service_action_id, None);
        assert!(
            planned[0].1.reason.contains("100.50 ZAR"),
            "{}",
            planned[0].1.reason
        );
        number(&mut planned, 41);
        assert_eq!(
            planned[0].1.requester,
            Requester::CreditPolicy {
                credit_event_sequence: 42
            }
        );
    }

    #[test]
    fn only_an_automatic_suspension_is_resumed_automatically() {
        let resume = |last| {
            let mut events = vec![event("cus_a", CreditAction::ResumptionAllowed)];
            let customers = HashMap::from([(
                "cus_a".to_string(),
                customer(CustomerStatus::Suspended, last),
            )]);
            plan(&mut events, &customers).len()
        };
        assert_eq!(resume(Some((ActionKind::Suspend, true))), 1);
        assert_eq!(
            resume(Some((ActionKind::Suspend, false))),
            0,
            "a person's suspension stays"
        );
        assert_eq!(resume(None), 0);
    }

    #[test]
    fn nothing_is_planned_beside_an_open_action_or_for_a_suspended_customer() {
        let mut busy = customer(CustomerStatus::Active, None);
        busy.open.push(OpenAction {
            id: "sva_1".into(),
            kind: ActionKind::Resume,
            vendor: None,
        });
        let customers = HashMap::from([
            ("cus_busy".to_string(), busy),
            (
                "cus_done".to_string(),
                customer(
                    CustomerStatus::Suspended,
                    Some((ActionKind::Suspend, false)),
                ),
            ),
        ]);
        let mut events = vec![
            event("cus_busy", CreditAction::SuspensionRequired),
            event("cus_done", CreditAction::SuspensionRequired),
            event("cus_unknown", CreditAction::SuspensionRequired),
        ];
        assert!(plan(&mut events, &customers).is_empty());
        assert!(events.iter().all(|e| e.service_action_id.is_none()));
    }

    #[test]
    fn a_suspension_queues_behind_an_enrollment_under_way() {
        let mut enrolling = customer(CustomerStatus::Active, None);
        enrolling.open.push(OpenAction {
            id: "sva_enroll".into(),
            kind: ActionKind::Enroll,
            vendor: Some(crate::domain::vendor::Vendor::Aws),
        });
        let customers = HashMap::from([("cus_a".to_string(), enrolling)]);
        let mut events = vec![event("cus_a", CreditAction::SuspensionRequired)];
        let planned = plan(&mut events, &customers);
        assert_eq!(planned.len(), 1, "the stop is not dropped");
        assert_eq!(planned[0].1.kind, ActionKind::Suspend);
        assert_eq!(events[0].service_action_id.as_ref(), Some(&planned[0].1.id));
    }
}
