//! A service action as recorded: what was asked, by whom and why (the audit trail), its steps,
//! and the change sequence streams resume from.
use chrono::{DateTime, Utc};

use super::{ActionKind, ActionStatus, ServiceStep, summarise};
use crate::domain::customer::{Customer, VendorAccountLink};
use crate::domain::service_control::ControlTarget;
use crate::domain::vendor::{Vendor, VendorAccountKind};

/// Who asked for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A person or system through an API key (its id and its name at the time).
    ApiKey { key_id: String, key_name: String },
    /// The customer's credit policy, through the credit event that crossed the limit.
    CreditPolicy { credit_event_sequence: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAction {
    pub id: String,
    pub tenant_id: String,
    pub customer_id: String,
    pub kind: ActionKind,
    pub status: ActionStatus,
    /// ENROLL only.
    pub vendor: Option<Vendor>,
    pub reason: String,
    pub requester: Requester,
    pub steps: Vec<ServiceStep>,
    /// The tenant's service-action change sequence of the action's last change.
    pub change_sequence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ServiceAction {
    pub fn is_automatic(&self) -> bool {
        matches!(self.requester, Requester::CreditPolicy { .. })
    }

    /// The status its steps add up to.
    pub fn summary(&self) -> ActionStatus {
        summarise(self.steps.iter().map(|s| s.status))
    }
}

/// A new action, admitted (see [`super::transitions::admit`]) and ready to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewServiceAction {
    pub id: String,
    pub customer_id: String,
    pub kind: ActionKind,
    pub vendor: Option<Vendor>,
    pub reason: String,
    pub requester: Requester,
    pub steps: Vec<ServiceStep>,
}

impl NewServiceAction {
    /// A suspend, resume or purge of every vendor account linked to `customer`, one step each.
    pub fn for_customer(
        id: String,
        customer: &Customer,
        kind: ActionKind,
        reason: String,
        requester: Requester,
    ) -> Self {
        Self::for_links(
            id,
            &customer.id,
            &customer.vendor_accounts,
            kind,
            reason,
            requester,
        )
    }

    /// The same for a customer known by its id and links.
    pub fn for_links(
        id: String,
        customer_id: &str,
        links: &[VendorAccountLink],
        kind: ActionKind,
        reason: String,
        requester: Requester,
    ) -> Self {
        NewServiceAction {
            id,
            customer_id: customer_id.to_string(),
            kind,
            vendor: None,
            reason,
            requester,
            steps: steps_for(links),
        }
    }
}

/// One step per linked vendor account. A Microsoft subscription is addressed under its customer
/// tenant, which is the tenant linked through the same partner account, if any.
pub fn steps_for(links: &[VendorAccountLink]) -> Vec<ServiceStep> {
    links
        .iter()
        .map(|link| {
            let mut target = ControlTarget::new(link.kind, link.account_id.clone());
            if link.kind == VendorAccountKind::MicrosoftSubscription {
                target.tenant_id = links
                    .iter()
                    .find(|other| {
                        other.kind == VendorAccountKind::MicrosoftTenant
                            && other.partner_account_id == link.partner_account_id
                    })
                    .map(|tenant| tenant.account_id.clone());
            }
            ServiceStep::new(link.partner_account_id.clone(), target)
        })
        .collect()
}

/// Filters of a list of actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    pub customer_id: Option<String>,
    pub status: Option<ActionStatus>,
    pub kind: Option<ActionKind>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: VendorAccountKind, id: &str, partner: &str) -> VendorAccountLink {
        VendorAccountLink {
            kind,
            account_id: id.into(),
            partner_account_id: partner.into(),
            linked_at: Utc::now(),
        }
    }

    #[test]
    fn a_subscription_is_addressed_under_the_tenant_of_its_partner_account() {
        let links = [
            link(VendorAccountKind::AwsAccount, "111122223333", "pa_aws"),
            link(VendorAccountKind::MicrosoftSubscription, "sub-1", "pa_ms"),
            link(VendorAccountKind::MicrosoftTenant, "tenant-1", "pa_ms"),
            link(
                VendorAccountKind::MicrosoftSubscription,
                "sub-2",
                "pa_other",
            ),
        ];
        let steps = steps_for(&links);
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[0].partner_account_id, "pa_aws");
        assert_eq!(steps[1].target.tenant_id.as_deref(), Some("tenant-1"));
        assert_eq!(steps[3].target.tenant_id, None);
        assert!(steps.iter().all(|s| s.status == ActionStatus::Pending));
    }
}
