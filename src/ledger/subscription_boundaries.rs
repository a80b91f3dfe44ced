//! The period-boundary run: every active subscription whose billing period has ended gets the
//! fees of the periods (and renewals) it passed, appended to the ledger like any charge.
//!
//! A batch of one tenant's due subscriptions goes in one transaction: it holds their rows,
//! re-reads which are still due (a replica's run may have got there first), plans each one's
//! fees in memory (`domain::subscription`), writes the new states in one statement and appends
//! the fees in one ledger write. One transaction per subscription cost a commit (an fsync) and
//! ~10 statements each: the 100,000-subscription benchmark (`benches/subscription_boundaries.rs`,
//! BENCHMARKS.md) is what decided the batch.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use diesel_async::AsyncConnection;

use super::diesel_tx::DieselLedger;
use super::pricing_cache::{PricingCache, pricing};
use super::subscriptions::advance;
use super::tx::{Access, LedgerTx};
use super::write::append_unlined;
use super::{Ledger, ledger_backends};
use crate::domain::catalog::CatalogItem;
use crate::domain::error::{Error, Result};
use crate::domain::ledger::{NewChargeEvent, TenantPricing};
use crate::domain::rating::{Chargee, PriceBook};
use crate::domain::subscription_record::SubscriptionRecord;
use crate::store::subscription_batches::DueSubscription;

/// What one batch did: fees appended, and the subscriptions it could not catch up (left due).
#[derive(Debug, Default)]
pub struct Caught {
    pub fees: usize,
    pub failed: Vec<(String, Error)>,
}

/// The held subscriptions' new states and the fees they imply.
struct Planned {
    advanced: Vec<SubscriptionRecord>,
    events: Vec<NewChargeEvent>,
    failed: Vec<(String, Error)>,
}

/// Takes each of `held` to `now`, pricing each new period from its catalogue item and the
/// tenant's price rules. A subscription that cannot be priced (its item gone, no unit cost in
/// force) is left out, so one bad subscription does not hold back the batch.
fn plan(
    held: Vec<SubscriptionRecord>,
    items: &HashMap<String, CatalogItem>,
    pricing: &TenantPricing,
    now: DateTime<Utc>,
) -> Planned {
    let book = PriceBook {
        rules: &pricing.rules,
        fx: &pricing.fx,
        policy: pricing.policy,
    };
    let mut planned = Planned {
        advanced: Vec::with_capacity(held.len()),
        events: Vec::with_capacity(held.len()),
        failed: Vec::new(),
    };
    for mut record in held {
        let Some(item) = items.get(&record.item_id) else {
            let error = Error::not_found("catalogue item", &record.item_id);
            planned.failed.push((record.id, error));
            continue;
        };
        let chargee = Chargee {
            customer_id: record.customer_id.clone(),
            currency: record.currency,
        };
        match advance(&mut record.state, now, item, &chargee, &book) {
            Ok(fees) => {
                planned
                    .events
                    .extend(fees.iter().map(|fee| record.charge_event(item, fee)));
                record.updated_at = now.trunc_subsecs(6);
                planned.advanced.push(record);
            }
            Err(error) => planned.failed.push((record.id, error)),
        }
    }
    planned
}

ledger_backends! {
    use super::*;

    /// Catches up the subscriptions among `ids` (of `tenant_id`) still due by `now`, in one
    /// transaction. The tenant is entered first and the rows held next, then the ledger lock
    /// is taken for the fees: the order every subscription write takes (see `tx`).
    pub(in crate::ledger) async fn catch_up(conn: &mut Conn, cache: &PricingCache, tenant_id: &str, ids: &[String], now: DateTime<Utc>) -> Result<Caught> {
        conn.transaction(async |conn| {
            DieselLedger::new(conn).enter(tenant_id, Access::Shared).await?;
            let held = q::subscription_batches::hold_due(conn, tenant_id, ids, now).await?;
            if held.is_empty() {
                return Ok(Caught::default());
            }
            let pricing = pricing(&mut DieselLedger::new(conn), cache, tenant_id).await?;
            let mut item_ids: Vec<&str> = held.iter().map(|r| r.item_id.as_str()).collect();
            item_ids.sort_unstable();
            item_ids.dedup();
            let items = q::catalog::get_many(conn, tenant_id, &item_ids).await?;
            let items = items.into_iter().map(|item| (item.id.clone(), item)).collect();
            let Planned { advanced, events, failed } = plan(held, &items, &pricing, now);
            let fees = events.len();
            q::subscription_batches::update_states(conn, tenant_id, advanced).await?;
            if !events.is_empty() {
                append_unlined(&mut DieselLedger::new(conn), tenant_id, pricing.zones.clone(), events).await?;
            }
            Ok(Caught { fees, failed })
        })
        .await
    }
}

/// The fees of a finished batch task.
fn fees_of(done: std::result::Result<usize, tokio::task::JoinError>) -> Result<usize> {
    done.map_err(|error| {
        Error::Internal(format!("a period-boundary batch did not finish: {error}"))
    })
}

/// `due` grouped by tenant, each tenant's ids in the order they were found.
fn by_tenant(due: &[DueSubscription]) -> BTreeMap<&str, Vec<String>> {
    let mut tenants: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for found in due {
        tenants
            .entry(found.tenant_id.as_str())
            .or_default()
            .push(found.id.clone());
    }
    tenants
}

impl Ledger {
    /// The period-boundary run: appends every active subscription's fees due by `now` (of every
    /// tenant), reading `batch` due subscriptions at a time, the longest overdue first; how many
    /// fees. Each batch is caught up in a transaction per tenant that holds its rows and
    /// re-reads whether they are still due: replicas running this side by side append each
    /// boundary once, and a gateway that was down appends every boundary it missed, once. A
    /// subscription that cannot be caught up (e.g. no unit cost in force) is logged and left
    /// due; the run reads on past it, so it holds back no other.
    ///
    /// On PostgreSQL [`BOUNDARY_BATCHES_IN_FLIGHT`] batches are written side by side: a batch's
    /// holds, state updates and daily totals take only row locks, so one batch's go on while
    /// another holds the tenant's ledger lock for its fees.
    pub async fn catch_up_due_subscriptions(
        self: &Arc<Self>,
        now: DateTime<Utc>,
        batch: i64,
    ) -> Result<usize> {
        let in_flight = self.boundary_batches_in_flight();
        let mut writing = tokio::task::JoinSet::new();
        let mut appended = 0;
        let read = async {
            let mut after: Option<DueSubscription> = None;
            loop {
                if writing.len() >= in_flight
                    && let Some(done) = writing.join_next().await
                {
                    appended += fees_of(done)?;
                }
                let due = self
                    .store
                    .due_subscriptions(now, after.as_ref(), batch)
                    .await?;
                let more = (due.len() as i64) >= batch;
                after = due.last().cloned();
                let ledger = self.clone();
                writing.spawn(async move { ledger.catch_up_page(&due, now).await });
                if !more {
                    return Ok::<_, Error>(());
                }
            }
        }
        .await;
        // Every batch under way finishes (a dropped one would be cut off mid-transaction)
        // before a failed read is answered.
        let mut first_error = read.err();
        while let Some(done) = writing.join_next().await {
            match fees_of(done) {
                Ok(fees) => appended += fees,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(appended),
        }
    }

    /// How many batches of the period-boundary run are written side by side. SQLite writes
    /// one transaction at a time, so a second batch could only wait: one, read after the last
    /// one is written.
    fn boundary_batches_in_flight(&self) -> usize {
        match self.store.backend() {
            crate::store::Backend::Postgres(_) => BOUNDARY_BATCHES_IN_FLIGHT,
            crate::store::Backend::Sqlite { .. } => 1,
        }
    }

    /// Catches up one read of due subscriptions, tenant by tenant; how many fees.
    async fn catch_up_page(&self, due: &[DueSubscription], now: DateTime<Utc>) -> usize {
        let mut appended = 0;
        for (tenant_id, ids) in by_tenant(due) {
            appended += self.catch_up_batch(tenant_id, &ids, now).await;
        }
        appended
    }

    /// Catches up one tenant's batch, logging what fails; how many fees. A batch whose
    /// transaction fails is retried a subscription at a time, so a row that breaks the write
    /// (not only its planning) holds back only itself.
    async fn catch_up_batch(&self, tenant_id: &str, ids: &[String], now: DateTime<Utc>) -> usize {
        let log = |caught: Caught| {
            for (id, error) in &caught.failed {
                tracing::warn!(%error, subscription = %id, "subscription catch-up failed");
            }
            caught.fees
        };
        match self.catch_up_subscriptions(tenant_id, ids, now).await {
            Ok(caught) => log(caught),
            Err(error) if ids.len() > 1 => {
                tracing::warn!(%error, tenant = %tenant_id, subscriptions = ids.len(),
                    "subscription batch failed; catching up one at a time");
                let mut fees = 0;
                for id in ids {
                    match self
                        .catch_up_subscriptions(tenant_id, std::slice::from_ref(id), now)
                        .await
                    {
                        Ok(caught) => fees += log(caught),
                        Err(error) => {
                            tracing::warn!(%error, subscription = %id, "subscription catch-up failed")
                        }
                    }
                }
                fees
            }
            Err(error) => {
                tracing::warn!(%error, subscription = ?ids, "subscription catch-up failed");
                0
            }
        }
    }

    async fn catch_up_subscriptions(
        &self,
        tenant_id: &str,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Caught> {
        crate::store::dispatch!(
            self.store,
            write,
            self::catch_up(&self.pricing, tenant_id, ids, now)
        )
    }

    /// Appends one subscription's fees due by `now`; how many (none when it is not due).
    pub async fn catch_up_subscription(
        &self,
        tenant_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let ids = [id.to_string()];
        let caught = self.catch_up_subscriptions(tenant_id, &ids, now).await?;
        match caught.failed.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(caught.fees),
        }
    }
}

/// How often the period-boundary run looks for due subscriptions: a fee is appended within this
/// long of its period's start.
pub const BOUNDARY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Subscriptions read, and caught up in one transaction per tenant, at a time.
pub const BOUNDARY_BATCH: i64 = 2_000;

/// Batches of the period-boundary run written side by side on PostgreSQL (see
/// [`Ledger::catch_up_due_subscriptions`]). Two keep both of this machine's cores busy; before
/// daily totals moved out of the ledger lock, two gained nothing (most of a batch was under
/// it; BENCHMARKS.md).
pub const BOUNDARY_BATCHES_IN_FLIGHT: usize = 2;

/// The period-boundary run, every `every` until `stop` turns true (see
/// [`Ledger::catch_up_due_subscriptions`]).
pub async fn run_boundaries(
    ledger: Arc<Ledger>,
    every: std::time::Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    super::periodic::every(every, stop, move || {
        let ledger = ledger.clone();
        async move {
            match ledger
                .catch_up_due_subscriptions(Utc::now(), BOUNDARY_BATCH)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(fees = n, "subscription fees appended at period boundaries")
                }
                Err(error) => tracing::warn!(%error, "subscription boundary pass failed"),
            }
        }
    })
    .await
}
