//! The charge ledger: the engine that rates usage into charges and the reads of what it wrote.
//! Imports `store` (the per-table records it writes alongside) and `domain` (the rules and
//! plans), nothing else of the crate.
//!
//! A ledger write ([`write`]) records a vendor pull, pushed usage or a re-rate in one
//! transaction: the domain plans what changes (`domain::ledger`) and numbers the events
//! (`domain::ledger_append`); [`write`] runs the plan against a [`tx::LedgerTx`], a
//! transaction's statements on one connection (Diesel for SQLite and for re-rates, [`copy`] for
//! PostgreSQL pushes and pulls), in the lock order [`tx`] documents. Writes that change prices
//! or links (a rule, an FX rate, a link, a customer's limit or time zone) re-rate or re-evaluate
//! in the same transaction ([`changes`]). Each write keeps runs ([`charges`]), daily totals
//! ([`totals`]) and credit exposure ([`credit`]) in step, and wakes the live feeds ([`feed`]).
//!
//! Invoicing closes periods at a ledger sequence under the ledger lock ([`invoicing`]), one
//! customer or a tenant-wide run at a time ([`close_run`], also the automatic closer).
//!
//! Reads: pages and streams of charges ([`charges`], [`feed`]), a customer's open period
//! ([`open_period`]), unrated usage ([`usage_lines`]), credit positions ([`credit`]).
mod batch;
pub mod changes;
pub mod charges;
pub mod close_run;
mod copy;
pub mod credit;
mod diesel_tx;
pub mod feed;
mod invoice_charges;
pub mod invoicing;
pub mod open_period;
pub mod pending_orders;
mod periodic;
mod pricing_cache;
mod rows;
pub mod service_steps;
pub mod spend;
pub mod subscription_boundaries;
pub mod subscriptions;
pub mod totals;
mod tx;
pub mod usage_lines;
mod write;

use std::sync::Arc;

use crate::domain::error::Result;
use crate::domain::seat_order::{NoSeatVendors, SeatVendors};
use crate::store::Store;

/// The ledger's query modules on PostgreSQL beside the store's (see `store::for_each_backend!`).
pub mod pg_queries {
    pub use super::charges::pg as charges;
    pub use super::credit::pg as ledger_credit;
    pub use super::invoice_charges::pg as invoice_charges;
    pub use super::totals::pg as totals;
    pub use super::usage_lines::pg as usage_lines;
    pub use crate::store::pg_queries::*;
}

/// The ledger's query modules on SQLite beside the store's.
pub mod sqlite_queries {
    pub use super::charges::sqlite as charges;
    pub use super::credit::sqlite as ledger_credit;
    pub use super::invoice_charges::sqlite as invoice_charges;
    pub use super::totals::sqlite as totals;
    pub use super::usage_lines::sqlite as usage_lines;
    pub use crate::store::sqlite_queries::*;
}

/// `store::for_each_backend!` with `q` naming the ledger's query modules and the store's.
macro_rules! ledger_backends {
    ($($item:item)*) => {
        $crate::store::for_each_backend! {
            queries: $crate::ledger::pg_queries, $crate::ledger::sqlite_queries;
            $($item)*
        }
    };
}
pub(crate) use ledger_backends;

/// The ledger of every tenant in one database, with this process's caches and live feeds.
pub struct Ledger {
    store: Arc<Store>,
    /// Tenants' pricing as the ledger writers last loaded it.
    pricing: pricing_cache::PricingCache,
    /// PostgreSQL: the connections pushes and pulls COPY through (see [`copy`]).
    copy_pool: Option<copy::LedgerPool>,
    /// Live charge feeds of this process.
    feed: feed::LedgerHub,
    /// The vendors seats are bought from (see `subscriptions`).
    seat_vendors: std::sync::RwLock<Arc<dyn SeatVendors>>,
}

impl Ledger {
    /// The ledger over `store`'s database (its connections for COPY are opened lazily).
    pub fn new(store: Arc<Store>) -> Result<Self> {
        let copy_pool = match store.postgres_url() {
            Some(url) => Some(copy::pool(url, store.pool_options())?),
            None => None,
        };
        Ok(Ledger {
            feed: feed::LedgerHub::new(store.clone()),
            store,
            pricing: Default::default(),
            copy_pool,
            seat_vendors: std::sync::RwLock::new(Arc::new(NoSeatVendors)),
        })
    }

    /// Where Microsoft seats are bought (none until set: such purchases are refused).
    pub fn set_seat_vendors(&self, vendors: Arc<dyn SeatVendors>) {
        *self.seat_vendors.write().expect("seat vendors") = vendors;
    }

    pub fn seat_vendors(&self) -> Arc<dyn SeatVendors> {
        self.seat_vendors.read().expect("seat vendors").clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The process's live charge feeds.
    pub fn feed(&self) -> &feed::LedgerHub {
        &self.feed
    }
}
