//! msp-gateway: a partner-integration gateway for ISPs that resell AWS, Azure and Microsoft 365.
//!
//! The layout follows the architecture; dependencies point one way,
//! `api` → `ledger` → `store` / `vendors` → `domain` (checked by `architecture_tests`):
//! - [`api`]: the tonic services; authorize (one permission table), validate, convert proto <->
//!   domain, call the ledger or the store, map errors. The only module that sees proto types.
//! - [`ledger`]: the charge engine (rating usage into charges, re-rates, credit exposure) and
//!   the reads of what it wrote (charges, streams, open periods, credit positions).
//! - [`store`]: per-table records through Diesel, for PostgreSQL and SQLite.
//! - [`vendors`]: one connector per vendor behind one trait.
//! - [`domain`]: the rules and every domain type, free of gRPC and SQL.
//! - [`poller`]: the background pulls from the vendors into the ledger.
//! - [`service_worker`]: carries out service actions (suspend, resume, purge) at the vendors.
//! - [`maintenance`]: housekeeping (request ids past their retention).
//! - [`config`], [`telemetry`], [`server`], [`demo`]: start-up.
pub mod api;
#[cfg(test)]
mod architecture_tests;
pub mod config;
pub mod demo;
pub mod domain;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod ledger;
pub mod maintenance;
pub mod operations;
pub mod poller;
pub mod proto;
pub mod server;
pub mod service_worker;
pub mod store;
pub mod telemetry;
pub mod vendors;

/// The allocator of every binary built on this crate (the server, its tests and benchmarks run
/// the same): ledger writes allocate and free many small strings beside megabyte-sized COPY
/// buffers, which glibc's malloc answers with costly consolidation passes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
