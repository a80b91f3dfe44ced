//! How service actions move a customer's status, and which requests are refused.
//!
//! ```text
//!   ACTIVE ──suspend──▶ (SUSPENDING) ──all steps succeeded──▶ SUSPENDED
//!     ▲                      └──a step failed──▶ ACTIVE (retry the suspend, or resume)
//!     └──────────resume, all steps succeeded─────────────────────┘
//!   SUSPENDED ──purge (external_ref confirmed)──▶ PURGE_SCHEDULED ──all closed──▶ PURGED
//! ```
//!
//! SUSPENDING is not stored: it is an ACTIVE customer with a suspend under way
//! ([`shown_status`]), so a stored status never disagrees with the actions. PURGE_SCHEDULED is
//! stored when the purge is accepted, because a purge cannot be taken back even if a step fails
//! (a failed purge is retried by purging again). Suspend and resume are idempotent at the
//! vendor, so each is allowed from ACTIVE and SUSPENDED: resuming an ACTIVE customer undoes a
//! suspend that failed part-way, suspending a SUSPENDED one reaches a newly linked account.
//! One action at a time changes a customer's services, never interleaved:
//! - a SUSPEND asked for while an ENROLL is creating a vendor account is *queued*: recorded at
//!   once (PENDING, the customer reads SUSPENDING), started when every older open action has
//!   ended, and covering the account the enrollment linked. Credit control cannot wait on an
//!   account creation (AWS takes minutes, a Partner Center customer longer) nor lose the stop:
//!   credit policy's SUSPENSION_REQUIRED is a one-off crossing, so a refusal would drop it;
//! - any other request while an action is open is refused (FAILED_PRECONDITION) naming the open
//!   action and what to do: wait for it to end (GetServiceAction, StreamServiceActions), then
//!   ask again. An enrollment with another vendor may run beside an enrollment.
use super::{ActionKind, ActionStatus};
use crate::domain::customer::{Customer, CustomerStatus};
use crate::domain::error::{Error, Result};
use crate::domain::vendor::Vendor;

/// An action on the customer that has not ended (PENDING or RUNNING).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAction {
    pub id: String,
    pub kind: ActionKind,
    /// The vendor of an ENROLL action.
    pub vendor: Option<Vendor>,
}

/// A new action as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRequest<'a> {
    pub kind: ActionKind,
    /// The vendor of an ENROLL action.
    pub vendor: Option<Vendor>,
    /// PURGE only: the customer's external_ref, repeated to confirm an irreversible purge.
    pub confirm_external_ref: &'a str,
}

/// The request field that carries the purge confirmation.
pub const CONFIRMATION_FIELD: &str = "confirm_external_ref";

/// Checks a new action against the customer and its open actions; on success, the customer's
/// stored status from the moment the action is recorded (write both in one transaction).
pub fn admit(
    customer: &Customer,
    request: &ActionRequest<'_>,
    open: &[OpenAction],
) -> Result<CustomerStatus> {
    let subject = format!("customer {}", customer.id);
    if request.kind == ActionKind::Purge && request.confirm_external_ref != customer.external_ref {
        let description = if request.confirm_external_ref.is_empty() {
            "is required for a purge: repeat the customer's external_ref to confirm it (a purge \
             closes the customer's vendor accounts and cannot be undone)"
        } else {
            "does not match the customer's external_ref; a purge cannot be undone, so it must"
        };
        return Err(Error::invalid(CONFIRMATION_FIELD, description));
    }
    if let Some(conflict) = conflicting(request, open) {
        return Err(Error::precondition(
            subject,
            refusal_behind(request.kind, conflict),
        ));
    }
    use CustomerStatus::*;
    let refusal = match (request.kind, customer.status) {
        (_, Purged) => "is PURGED; nothing more can be done to its services",
        (ActionKind::Purge, PurgeScheduled) => return Ok(PurgeScheduled),
        (_, PurgeScheduled) => "is scheduled for purge, which cannot be undone",
        (ActionKind::Suspend | ActionKind::Resume, Active | Suspended) => {
            return Ok(customer.status);
        }
        (ActionKind::Purge, Suspended) => return Ok(PurgeScheduled),
        (ActionKind::Purge, Active) => {
            "is ACTIVE; a purge is allowed only from SUSPENDED: suspend the customer first"
        }
        (ActionKind::Enroll, Active) => return Ok(Active),
        (ActionKind::Enroll, Suspended) => {
            "is SUSPENDED; resume it before enrolling it with another vendor"
        }
    };
    Err(Error::precondition(subject, refusal))
}

fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Suspend => "suspend",
        ActionKind::Resume => "resume",
        ActionKind::Purge => "purge",
        ActionKind::Enroll => "enroll",
    }
}

/// Why a request is refused while `open` runs, and what to do instead.
fn refusal_behind(kind: ActionKind, open: &OpenAction) -> String {
    let what = match open.vendor {
        Some(vendor) => format!("{} with {vendor}", open.kind),
        None => open.kind.to_string(),
    };
    let advice = match (kind, open.kind) {
        (ActionKind::Suspend, ActionKind::Suspend) => {
            "it will suspend the customer: follow it with GetServiceAction or \
             StreamServiceActions instead of asking again"
                .to_string()
        }
        _ => format!(
            "one action at a time changes a customer's services: follow that one with \
             GetServiceAction or StreamServiceActions and {} the customer when it has ended",
            verb(kind)
        ),
    };
    format!("a {what} action ({}) has not finished; {advice}", open.id)
}

/// Whether an action of `kind` asked for while `open` are open waits for them (recorded now,
/// started when they have ended): a suspend behind enrollments only.
pub fn queues_behind(kind: ActionKind, open: &[OpenAction]) -> bool {
    kind == ActionKind::Suspend
        && !open.is_empty()
        && open.iter().all(|other| other.kind == ActionKind::Enroll)
}

/// The open action a request would interleave with: any open action, except an enrollment
/// with another vendor beside a new enrollment, and enrollments a suspend queues behind.
fn conflicting<'a>(request: &ActionRequest<'_>, open: &'a [OpenAction]) -> Option<&'a OpenAction> {
    if queues_behind(request.kind, open) {
        return None;
    }
    let conflicts = |other: &&OpenAction| {
        !(request.kind == ActionKind::Enroll
            && other.kind == ActionKind::Enroll
            && other.vendor != request.vendor)
    };
    // The same kind first (a second suspend names the suspend already queued or running).
    open.iter()
        .filter(conflicts)
        .find(|other| other.kind == request.kind && other.vendor == request.vendor)
        .or_else(|| open.iter().find(conflicts))
}

/// The customer's stored status once an action of `kind` has ended with `outcome` (unchanged
/// while it runs). `current` is the stored status at that moment.
pub fn status_after(
    kind: ActionKind,
    current: CustomerStatus,
    outcome: ActionStatus,
) -> CustomerStatus {
    match (kind, outcome) {
        (ActionKind::Suspend, ActionStatus::Succeeded) => CustomerStatus::Suspended,
        (ActionKind::Resume, ActionStatus::Succeeded) => CustomerStatus::Active,
        (ActionKind::Purge, ActionStatus::Succeeded) => CustomerStatus::Purged,
        _ => current,
    }
}

/// What a customer's status reads: the stored status, SUSPENDING while a suspend of an ACTIVE
/// customer is under way, or RESUMING while a resume of a SUSPENDED one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownStatus {
    Stored(CustomerStatus),
    Suspending,
    Resuming,
}

impl ShownStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownStatus::Stored(status) => status.as_str(),
            ShownStatus::Suspending => "SUSPENDING",
            ShownStatus::Resuming => "RESUMING",
        }
    }
}

pub fn shown_status(stored: CustomerStatus, open: &[OpenAction]) -> ShownStatus {
    let under_way = |kind| open.iter().any(|a| a.kind == kind);
    match stored {
        CustomerStatus::Active if under_way(ActionKind::Suspend) => ShownStatus::Suspending,
        CustomerStatus::Suspended if under_way(ActionKind::Resume) => ShownStatus::Resuming,
        _ => ShownStatus::Stored(stored),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::customer::BillingCycle;
    use crate::domain::money::Currency;

    fn customer(status: CustomerStatus) -> Customer {
        Customer {
            id: "cus_1".into(),
            tenant_id: "ten_1".into(),
            external_ref: "ISP-1001".into(),
            display_name: "Acme".into(),
            billing_currency: Currency::parse("c", "ZAR").unwrap(),
            billing_cycle: BillingCycle::Monthly,
            billing_anchor: Default::default(),
            time_zone: "Africa/Johannesburg".into(),
            credit_limit: Decimal::ZERO,
            status,
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            enrollments: Vec::new(),
            vendor_accounts: Vec::new(),
        }
    }

    fn request(kind: ActionKind) -> ActionRequest<'static> {
        ActionRequest {
            kind,
            vendor: None,
            confirm_external_ref: if kind == ActionKind::Purge {
                "ISP-1001"
            } else {
                ""
            },
        }
    }

    fn open(kind: ActionKind, vendor: Option<Vendor>) -> OpenAction {
        OpenAction {
            id: "sva_open".into(),
            kind,
            vendor,
        }
    }

    fn refusal(result: Result<CustomerStatus>) -> String {
        match result {
            Err(Error::FailedPrecondition {
                subject,
                description,
            }) => {
                assert_eq!(subject, "customer cus_1");
                description
            }
            other => panic!("expected a precondition failure, got {other:?}"),
        }
    }

    use ActionKind::*;
    use CustomerStatus::*;

    #[test]
    fn the_lifecycle_of_a_customer() {
        let mut c = customer(Active);
        assert_eq!(admit(&c, &request(Suspend), &[]).unwrap(), Active);
        assert_eq!(
            shown_status(Active, &[open(Suspend, None)]),
            ShownStatus::Suspending
        );
        assert_eq!(
            shown_status(Suspended, &[open(Resume, None)]),
            ShownStatus::Resuming
        );
        assert_eq!(
            shown_status(Suspended, &[open(Suspend, None)]),
            ShownStatus::Stored(Suspended)
        );
        assert_eq!(
            shown_status(Active, &[open(Enroll, Some(Vendor::Aws))]),
            ShownStatus::Stored(Active)
        );
        c.status = status_after(Suspend, c.status, ActionStatus::Succeeded);
        assert_eq!(c.status, Suspended);
        assert_eq!(admit(&c, &request(Purge), &[]).unwrap(), PurgeScheduled);
        c.status = PurgeScheduled;
        c.status = status_after(Purge, c.status, ActionStatus::Failed);
        assert_eq!(c.status, PurgeScheduled, "a failed purge stays scheduled");
        assert_eq!(admit(&c, &request(Purge), &[]).unwrap(), PurgeScheduled);
        assert!(refusal(admit(&c, &request(Resume), &[])).contains("cannot be undone"));
        c.status = status_after(Purge, c.status, ActionStatus::Succeeded);
        assert_eq!(c.status, Purged);
        for kind in [Suspend, Resume, Purge, Enroll] {
            assert!(refusal(admit(&c, &request(kind), &[])).contains("PURGED"));
        }
    }

    #[test]
    fn purge_needs_suspended_and_the_confirmation() {
        let active = customer(Active);
        assert!(refusal(admit(&active, &request(Purge), &[])).contains("only from SUSPENDED"));
        let suspended = customer(Suspended);
        for confirmation in ["", "ISP-1002", "isp-1001"] {
            let request = ActionRequest {
                confirm_external_ref: confirmation,
                ..request(Purge)
            };
            match admit(&suspended, &request, &[]) {
                Err(Error::InvalidArgument(v)) => assert_eq!(v[0].field, CONFIRMATION_FIELD),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_failed_suspend_leaves_the_customer_active_and_resume_undoes_it() {
        assert_eq!(status_after(Suspend, Active, ActionStatus::Failed), Active);
        assert_eq!(
            admit(&customer(Active), &request(Resume), &[]).unwrap(),
            Active
        );
        assert_eq!(
            status_after(Resume, Active, ActionStatus::Succeeded),
            Active
        );
        assert_eq!(
            status_after(Resume, Suspended, ActionStatus::Failed),
            Suspended
        );
    }

    #[test]
    fn open_actions_refuse_others_with_their_id() {
        let c = customer(Active);
        let running = [open(Suspend, None)];
        let message = refusal(admit(&c, &request(Resume), &running));
        assert!(
            message.contains("SUSPEND action (sva_open) has not finished")
                && message.contains("resume the customer when it has ended")
                && message.contains("GetServiceAction"),
            "{message}"
        );
        let again = refusal(admit(&c, &request(Suspend), &running));
        assert!(again.contains("it will suspend the customer"), "{again}");
        let enrolling = [open(Enroll, Some(Vendor::Aws))];
        for kind in [Resume, Purge] {
            let message = refusal(admit(&customer(Suspended), &request(kind), &enrolling));
            assert!(
                message.contains("ENROLL with AWS action (sva_open)"),
                "{message}"
            );
        }
        let enroll = |vendor| ActionRequest {
            vendor: Some(vendor),
            ..request(Enroll)
        };
        assert_eq!(
            admit(&c, &enroll(Vendor::Microsoft), &enrolling).unwrap(),
            Active
        );
        assert!(refusal(admit(&c, &enroll(Vendor::Aws), &enrolling)).contains("ENROLL with AWS"));
    }

    #[test]
    fn a_suspend_queues_behind_enrollments_only() {
        let c = customer(Active);
        let aws = open(Enroll, Some(Vendor::Aws));
        let both = [aws.clone(), open(Enroll, Some(Vendor::Microsoft))];
        assert_eq!(admit(&c, &request(Suspend), &both).unwrap(), Active);
        assert!(queues_behind(Suspend, &both));
        assert!(!queues_behind(Suspend, &[]), "nothing to wait for");
        assert!(!queues_behind(Resume, &both));
        let queued = [aws, open(Suspend, None)];
        assert!(!queues_behind(Suspend, &queued), "one suspend at a time");
        let again = refusal(admit(&c, &request(Suspend), &queued));
        assert!(
            again.contains("SUSPEND action") && again.contains("it will suspend"),
            "{again}"
        );
        assert!(refusal(admit(&c, &request(Resume), &queued)).contains("ENROLL with AWS"));
    }

    fn status() -> impl Strategy<Value = CustomerStatus> {
        prop_oneof![
            Just(Active),
            Just(Suspended),
            Just(PurgeScheduled),
            Just(Purged)
        ]
    }

    fn kind() -> impl Strategy<Value = ActionKind> {
        prop_oneof![Just(Suspend), Just(Resume), Just(Purge), Just(Enroll)]
    }

    proptest! {
        /// Random sequences of admitted actions and outcomes: a purged customer never comes
        /// back, PURGED is reached only through a confirmed purge of a SUSPENDED (or already
        /// scheduled) customer, and nothing is admitted while another action is open.
        #[test]
        fn purge_is_irreversible_and_only_from_suspended(
            steps in proptest::collection::vec((kind(), any::<bool>(), any::<bool>()), 1..40),
            start in status(),
        ) {
            let mut c = customer(start);
            let mut open_action: Option<OpenAction> = None;
            for (kind, succeed, finish_first) in steps {
                if finish_first && let Some(action) = open_action.take() {
                    let outcome = if succeed { ActionStatus::Succeeded } else { ActionStatus::Failed };
                    let before = c.status;
                    c.status = status_after(action.kind, c.status, outcome);
                    if c.status == Purged && before != Purged {
                        prop_assert_eq!(before, PurgeScheduled);
                    }
                }
                let before = c.status;
                let open: Vec<OpenAction> = open_action.iter().cloned().collect();
                let request = ActionRequest { vendor: Some(Vendor::Aws), ..request(kind) };
                match admit(&c, &request, &open) {
                    Ok(next) => {
                        prop_assert!(open.is_empty() || queues_behind(kind, &open));
                        prop_assert!(before != Purged);
                        if kind == Purge {
                            prop_assert!(matches!(before, Suspended | PurgeScheduled));
                            prop_assert_eq!(next, PurgeScheduled);
                        } else {
                            prop_assert_eq!(next, before);
                        }
                        c.status = next;
                        open_action = Some(OpenAction { id: "sva_x".into(), kind, vendor: request.vendor });
                    }
                    Err(_) => prop_assert_eq!(c.status, before),
                }
                if before == Purged {
                    prop_assert_eq!(c.status, Purged);
                }
            }
        }
    }
}
