//! A service action's steps as the worker records them. An enrollment step that ends with the
//! new vendor account linked rates the usage already received for that account in the same
//! transaction, exactly as a link by hand does (`changes::link_vendor_account`): usage that
//! arrived while the account was being created waits as UNKNOWN_VENDOR_ACCOUNT until then.
use diesel_async::AsyncConnection;

use super::diesel_tx::DieselLedger;
use super::write::rerate;
use super::{Ledger, ledger_backends};
use crate::domain::error::Result;
use crate::domain::service_action::{ServiceAction, ServiceStep};

ledger_backends! {
    use super::{DieselLedger, rerate};

    /// Writes steps (position, step) of action `action_id` in one transaction, rates what a new
    /// link lets be rated, then settles the action (taking one change sequence). The order is
    /// the lock order every writer keeps: customer, ledger, service-action sequences.
    pub async fn record_steps(conn: &mut Conn, tenant_id: &str, action_id: &str, steps: &[(usize, ServiceStep)]) -> Result<ServiceAction> {
        conn.transaction(async |conn| {
            let recorded = q::service_action_runs::record_steps(conn, tenant_id, action_id, steps).await?;
            if recorded.linked {
                rerate(&mut DieselLedger::new(conn), tenant_id, true).await?;
            }
            for queued in &recorded.requeued {
                q::service_action_runs::settle_changed(conn, tenant_id, queued, true).await?;
            }
            q::service_action_runs::settle_changed(conn, tenant_id, action_id, true).await
        })
        .await
    }
}

impl Ledger {
    /// Records the progress of some of an action's steps (see [`record_steps`]); the action as
    /// it now stands.
    pub async fn record_service_steps(
        &self,
        tenant_id: &str,
        action_id: &str,
        steps: &[(usize, ServiceStep)],
    ) -> Result<ServiceAction> {
        crate::store::dispatch!(
            self.store,
            write,
            self::record_steps(tenant_id, action_id, steps)
        )
    }
}
