//! The writes of a service action's run: requesting one (admission, the audit record and its
//! steps in one transaction), a step's progress, and the action's end, which moves the
//! customer's status in the same transaction.
use chrono::Utc;
use diesel_async::AsyncConnection;

use super::idempotency::write_once;
use super::{Store, dispatch, for_each_backend};
use crate::domain::customer::{Customer, NewVendorAccountLink};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{Answer, Idempotent};
use crate::domain::ids;
use crate::domain::service_action::closure_budget;
use crate::domain::service_action::record::steps_for;
use crate::domain::service_action::transitions::{ActionRequest, admit, status_after};
use crate::domain::service_action::{
    ActionKind, ActionStatus, ClosureBudget, NewServiceAction, Requester, SERVICE_ACTION_ID_PREFIX,
    ServiceAction, ServiceStep,
};

/// What writing steps' progress did besides (see `record_steps`).
#[derive(Debug, Default)]
pub struct Recorded {
    /// An enrollment linked a new account: the usage waiting for it is to be rated.
    pub linked: bool,
    /// Queued suspends whose steps now cover the new account.
    pub requeued: Vec<String>,
}

/// A suspend, resume or purge as a caller asked for it.
#[derive(Debug, Clone)]
pub struct ActionOrder<'a> {
    pub customer_id: &'a str,
    pub kind: ActionKind,
    pub reason: &'a str,
    /// PURGE only: the customer's external_ref, repeated.
    pub confirm_external_ref: &'a str,
    /// The API key asking.
    pub key_id: &'a str,
    /// PURGE only: the closure quota of each partner account with a quota (AWS organizations),
    /// read from the vendor beforehand; the purge is refused when its closures do not fit.
    pub closure_budgets: &'a [(String, ClosureBudget)],
}

/// The refusal when another open action of the customer was recorded first (by another
/// replica, or by credit policy) between admission and insert.
fn raced(customer_id: &str, kind: ActionKind) -> Error {
    Error::precondition(
        format!("customer {customer_id}"),
        format!(
            "another service action on the customer started at the same time; retry the {} \
             when it has ended",
            kind.as_str().to_ascii_lowercase()
        ),
    )
}

for_each_backend! {
    /// Admits and records an action (see `domain::service_action::transitions::admit`).
    pub async fn request(conn: &mut Conn, tenant_id: &str, order: &ActionOrder<'_>) -> Result<ServiceAction> {
        conn.transaction(async |conn| {
            let id = ids::new_id(SERVICE_ACTION_ID_PREFIX);
            let customer = q::customers::get(conn, tenant_id, order.customer_id).await?;
            let open = q::service_actions::open_for_customer(conn, tenant_id, &customer.id).await?;
            let admitted = ActionRequest {
                kind: order.kind,
                vendor: None,
                confirm_external_ref: order.confirm_external_ref,
            };
            let next_status = admit(&customer, &admitted, &open)?;
            let key = q::api_keys::get(conn, tenant_id, order.key_id).await?;
            let requester = Requester::ApiKey { key_id: key.id, key_name: key.name };
            let new = NewServiceAction::for_customer(id, &customer, order.kind, order.reason.to_string(), requester);
            if order.kind == ActionKind::Purge {
                check_closure_budgets(conn, &new, order.closure_budgets).await?;
            }
            // The customer row before the change-sequence row: the lock order every writer
            // keeps (customer, then the ledger, then service-action sequences).
            if next_status != customer.status {
                q::customers::set_status(conn, tenant_id, &customer.id, next_status).await?;
            }
            if !q::service_actions::insert(conn, tenant_id, &new, Utc::now()).await? {
                return Err(raced(&customer.id, order.kind));
            }
            q::service_actions::get(conn, tenant_id, &new.id).await
        })
        .await
    }

    /// Refuses a purge whose closures do not fit a partner account's quota: those finished in
    /// the last 30 days and those of open purges (counted as made now) leave room for fewer
    /// than this purge's steps through that account. Checked before anything is written.
    async fn check_closure_budgets(conn: &mut Conn, new: &NewServiceAction, budgets: &[(String, ClosureBudget)]) -> Result<()> {
        let now = Utc::now();
        for (partner_account_id, budget) in budgets {
            let wanted = new.steps.iter().filter(|s| &s.partner_account_id == partner_account_id).count();
            if wanted == 0 {
                continue;
            }
            let mut closures = q::service_action_steps::closures_since(conn, partner_account_id, now - closure_budget::WINDOW).await?;
            let open = q::service_action_steps::open_closures(conn, partner_account_id).await?;
            closures.extend(std::iter::repeat_n(now, usize::try_from(open).unwrap_or(0)));
            budget.check(&closures, now, u32::try_from(wanted).unwrap_or(u32::MAX))?;
        }
        Ok(())
    }

    /// Writes the progress of steps (position, step) of one action, in the caller's
    /// transaction, without settling the action (the caller settles it after any ledger work:
    /// the lock order is customer, then ledger, then service-action sequences). An enrollment
    /// step that ended moves its enrollment too: ENROLLED with the new account linked, or
    /// ENROLLMENT_FAILED. True when an account was newly linked (its waiting usage is then
    /// to be rated in the same transaction, as a link by hand is).
    pub async fn record_steps(conn: &mut Conn, tenant_id: &str, action_id: &str, steps: &[(usize, ServiceStep)]) -> Result<Recorded> {
        let mut recorded = Recorded::default();
        let mut customer_id = None;
        for (position, step) in steps {
            let mut step = step.clone();
            if step.enrollment.is_some() && step.status.is_terminal() {
                if customer_id.is_none() {
                    customer_id = Some(q::service_actions::get(conn, tenant_id, action_id).await?.customer_id);
                }
                let customer_id = customer_id.as_deref().unwrap_or_default();
                enrollment_ended(conn, tenant_id, customer_id, &mut step, &mut recorded).await?;
            }
            q::service_action_steps::update(conn, action_id, *position, &step).await?;
        }
        Ok(recorded)
    }

    /// An enrollment step ended: link the new account (the customer row first, the lock order
    /// every writer keeps), or record the vendor's reason on the enrollment. A new account
    /// already linked to another customer fails the step.
    async fn enrollment_ended(conn: &mut Conn, tenant_id: &str, customer_id: &str, step: &mut ServiceStep, recorded: &mut Recorded) -> Result<()> {
        if step.status == ActionStatus::Succeeded {
            let link = NewVendorAccountLink {
                kind: step.target.kind,
                account_id: step.target.account_id.clone(),
                partner_account_id: Some(step.partner_account_id.clone()),
            };
            match q::customers::link(conn, tenant_id, customer_id, &link).await {
                Ok(change) => {
                    recorded.linked |= change.before.is_some();
                    recorded.requeued.extend(cover_new_links(conn, tenant_id, &change.after).await?);
                    return Ok(());
                }
                Err(Error::AlreadyExists { value, .. }) => {
                    step.status = ActionStatus::Failed;
                    step.last_error = Some(format!("the new account cannot be linked: {value}"));
                }
                Err(other) => return Err(other),
            }
        }
        let reason = step.last_error.clone().unwrap_or_else(|| "the vendor did not create the account".into());
        q::customers::enrollment_failed(conn, tenant_id, customer_id, &step.partner_account_id, &reason).await
    }

    /// A suspend queued behind the enrollment that linked a new account (see
    /// `transitions::queues_behind`) has not started, so its steps are written again from the
    /// customer's links, the new account with them. Returns the actions rewritten (their change
    /// sequence is taken by the caller, after any ledger work).
    async fn cover_new_links(conn: &mut Conn, tenant_id: &str, customer: &Customer) -> Result<Vec<String>> {
        let mut rewritten = Vec::new();
        for open in q::service_actions::open_for_customer(conn, tenant_id, &customer.id).await? {
            if open.kind != ActionKind::Suspend {
                continue;
            }
            let queued = q::service_actions::get(conn, tenant_id, &open.id).await?;
            if queued.steps.iter().any(|s| s.attempts > 0 || s.status != ActionStatus::Pending) {
                continue;
            }
            q::service_action_steps::delete_all(conn, &open.id).await?;
            q::service_action_steps::insert_all(conn, tenant_id, &open.id, &steps_for(&customer.vendor_accounts)).await?;
            rewritten.push(open.id);
        }
        Ok(rewritten)
    }

    /// Sets the action's status from its steps (and, once it ended, the customer's).
    pub async fn settle(conn: &mut Conn, tenant_id: &str, action_id: &str) -> Result<ServiceAction> {
        settle_changed(conn, tenant_id, action_id, false).await
    }

    /// [`settle`]; `changed`: a step changed, so the action takes a change sequence even when
    /// its status stays.
    pub async fn settle_changed(conn: &mut Conn, tenant_id: &str, action_id: &str, changed: bool) -> Result<ServiceAction> {
        let action = q::service_actions::get(conn, tenant_id, action_id).await?;
        let status = action.summary();
        if status == action.status && !changed {
            return Ok(action);
        }
        // The customer row before the change-sequence row (see `request`).
        if status.is_terminal() && status != action.status {
            let customer = q::customers::get(conn, tenant_id, &action.customer_id).await?;
            let next = status_after(action.kind, customer.status, status);
            if next != customer.status {
                q::customers::set_status(conn, tenant_id, &customer.id, next).await?;
            }
        }
        q::service_actions::set_status(conn, tenant_id, action_id, status, Utc::now()).await?;
        q::service_actions::get(conn, tenant_id, action_id).await
    }

    /// [`settle`] in a transaction of its own (an action without steps, or one recovered).
    pub async fn settle_alone(conn: &mut Conn, tenant_id: &str, action_id: &str) -> Result<ServiceAction> {
        conn.transaction(async |conn| settle(conn, tenant_id, action_id).await).await
    }
}

impl Store {
    pub async fn request_service_action(
        &self,
        tenant_id: &str,
        order: &ActionOrder<'_>,
        request: &Idempotent<'_, ServiceAction>,
    ) -> Result<Answer<ServiceAction>> {
        // A retry of a recorded request id answers the action as the first call did.
        write_once!(
            self,
            tenant_id,
            Some(request),
            self::request(tenant_id, order)
        )
    }

    pub async fn settle_service_action(
        &self,
        tenant_id: &str,
        action_id: &str,
    ) -> Result<ServiceAction> {
        dispatch!(self, write, self::settle_alone(tenant_id, action_id))
    }
}
