//! The gRPC surface: one tonic service per proto service. Each validates its request, converts
//! proto to domain, calls the store, and lets `status` map errors.
pub mod auth;
pub mod charges;
mod convert;
pub mod credit;
pub mod customers;
pub mod partner_accounts;
pub mod pricing;
mod status;
pub mod tenants;
pub mod usage;
