//! msp-gateway: a partner-integration gateway for ISPs that resell AWS, Azure and Microsoft 365.
//!
//! The layout follows the architecture:
//! - [`api`]: the tonic services; validate, convert proto <-> domain, call the store, map errors.
//! - [`domain`]: the rules, free of gRPC and SQL.
//! - [`store`]: Diesel persistence for PostgreSQL and SQLite.
//! - [`vendors`]: one connector per vendor behind one trait.
//! - [`config`], [`telemetry`], [`server`], [`demo`]: start-up.
pub mod api;
pub mod config;
pub mod demo;
pub mod domain;
pub mod poller;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod vendors;

/// The allocator of every binary built on this crate (the server, its tests and benchmarks run
/// the same): ledger writes allocate and free many small strings beside megabyte-sized COPY
/// buffers, which glibc's malloc answers with costly consolidation passes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
