//! Purchases whose answer was lost: a CreateSubscription of Microsoft seats keeps its order as
//! pending (`store::pending_seat_orders`) from before Partner Center is called until the
//! transaction that records the subscription. The sweeper finishes the ones left behind (the
//! answer lost to a timeout or a crash, and the client never retried): it repeats the order
//! with the request's own vendor request ids, so Partner Center answers with the first cart and
//! order instead of selling again, and records the subscription, its first fee and the request
//! id's answer, so the client's retry answers that subscription. A refusal marks the request
//! failed: its retries answer the refusal.
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Ledger, subscriptions};
use crate::domain::error::{Error, Result};
use crate::domain::idempotency::{IdempotencyKey, Idempotent};
use crate::domain::subscription_record::{PendingOrder, SubscriptionRecord};
use crate::store::idempotency::write_once;
use crate::store::{dispatch, pending_seat_orders};

/// A CreateSubscription answer as the API encodes it: the sweeper records the bytes a fresh
/// answer would have had.
pub type EncodeSubscription = Arc<dyn Fn(&SubscriptionRecord) -> Vec<u8> + Send + Sync>;

/// Pending orders finished per pass.
const SWEEP_BATCH: i64 = 100;

/// How often the sweeper looks (orders younger than the configured age are left alone).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Ledger {
    pub(super) async fn keep_pending(&self, order: &PendingOrder) -> Result<()> {
        dispatch!(self.store, write, pending_seat_orders::insert(order))
    }

    /// Drops the request's pending order (a refusal the caller got). Should that fail, the
    /// sweeper repeats the order and meets the same refusal.
    pub(super) async fn forget_pending(&self, tenant_id: &str, key: &IdempotencyKey) {
        if let Err(error) = self.remove_pending(tenant_id, key).await {
            tracing::warn!(%error, request = %key.request_id, "a refused order stays pending");
        }
    }

    async fn remove_pending(&self, tenant_id: &str, key: &IdempotencyKey) -> Result<()> {
        dispatch!(
            self.store,
            write,
            pending_seat_orders::remove(tenant_id, key)
        )
    }

    /// The refusal the sweeper met finishing the request's order: its answer from then on.
    pub(super) async fn pending_refusal(
        &self,
        tenant_id: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Error>> {
        let refusal = dispatch!(
            self.store,
            fresh,
            pending_seat_orders::refusal(tenant_id, key)
        )?;
        Ok(refusal.map(|reason| Error::precondition("Partner Center", reason)))
    }

    /// Finishes the pending orders written before `before` (see the module): how many were
    /// recorded or refused. An order the vendor cannot be reached for stays for the next pass.
    pub async fn finish_pending_orders(
        &self,
        before: DateTime<Utc>,
        encode: &EncodeSubscription,
    ) -> Result<usize> {
        let due = dispatch!(
            self.store,
            fresh,
            pending_seat_orders::due(before, SWEEP_BATCH)
        )?;
        let mut finished = 0;
        for order in &due {
            match self.finish_pending(order, encode).await {
                Ok(()) => finished += 1,
                Err(error) => tracing::warn!(
                    %error,
                    tenant = %order.tenant_id,
                    request = %order.key.request_id,
                    "a pending seat order stays for the next pass"
                ),
            }
        }
        Ok(finished)
    }

    async fn finish_pending(
        &self,
        order: &PendingOrder,
        encode: &EncodeSubscription,
    ) -> Result<()> {
        let tenant_id = order.tenant_id.as_str();
        let key = &order.key;
        if self.store.recorded_answer(tenant_id, key).await?.is_some() {
            // Recorded by the client's retry meanwhile.
            return dispatch!(
                self.store,
                write,
                pending_seat_orders::remove(tenant_id, key)
            );
        }
        let sold = async {
            let step = dispatch!(
                self.store,
                fresh,
                subscriptions::plan_purchase(tenant_id, &order.order, order.ordered_at)
            )?
            .ok_or_else(|| {
                Error::precondition(
                    "subscription.catalog_item_id",
                    "no longer sold through a vendor",
                )
            })?;
            self.vendor_step(tenant_id, step, key).await
        };
        match sold.await {
            Ok(vendor_subscription_id) => {
                let request =
                    Idempotent::new(key.clone(), |record: &SubscriptionRecord| encode(record));
                write_once!(
                    self.store,
                    tenant_id,
                    Some(&request),
                    subscriptions::create_ordered(
                        tenant_id,
                        &order.order,
                        order.ordered_at,
                        &vendor_subscription_id,
                        key
                    )
                )?;
                Ok(())
            }
            Err(Error::FailedPrecondition { description, .. }) => {
                dispatch!(
                    self.store,
                    write,
                    pending_seat_orders::refuse(tenant_id, key, &description)
                )
            }
            Err(refused @ (Error::InvalidArgument(_) | Error::NotFound { .. })) => {
                let reason = refused.to_string();
                dispatch!(
                    self.store,
                    write,
                    pending_seat_orders::refuse(tenant_id, key, &reason)
                )
            }
            Err(error) => Err(error),
        }
    }
}

/// The pending-order sweeper, every [`SWEEP_EVERY`] until `stop` turns true: finishes orders
/// pending longer than `age`.
pub async fn run_pending_orders(
    ledger: Arc<Ledger>,
    age: std::time::Duration,
    encode: EncodeSubscription,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::minutes(5));
    super::periodic::every(SWEEP_EVERY, stop, move || {
        let (ledger, encode) = (ledger.clone(), encode.clone());
        async move {
            match ledger
                .finish_pending_orders(Utc::now() - age, &encode)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(orders = n, "pending seat orders finished"),
                Err(error) => tracing::warn!(%error, "pending seat order pass failed"),
            }
        }
    })
    .await
}
